//! `corral logs`: a task's stdout or stderr, read through the master (which proxies
//! Operator.ReadFile to the task's agent); `--tail N` starts at its last N lines; `-f`
//! follows until the task is terminal, and prints each new progress the task reports (task
//! SDK) on stderr. The task's changes (progress, its end) come from the master's event
//! stream; only the file's new bytes are read on a timer, as files have no events.

use std::time::Duration;

use corral_proto::{ProtoEnum, v1};

use crate::cli::LogsArgs;
use crate::client;
use crate::commands::Exit;
use crate::commands::follow::FileFollower;

const READ_INTERVAL: Duration = Duration::from_millis(200);

pub(super) async fn run(args: LogsArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let path = if args.stderr { "stderr" } else { "stdout" };
    let mut file = FileFollower::new(&args.task, args.framework.clone(), path);
    if let Some(lines) = args.tail {
        file.skip_to_tail(&mut client, lines)
            .await
            .map_err(|s| read_error(&args, path, &s))?;
    }
    let mut events = if args.follow {
        Some(client::events(&mut client).await?)
    } else {
        None
    };
    let mut out = std::io::stdout();
    let mut progress = None;
    let mut reads = tokio::time::interval(READ_INTERVAL);
    loop {
        let read = file
            .read_new(&mut client, &mut out)
            .await
            .map_err(|s| read_error(&args, path, &s))?;
        let Some(stream) = events.as_mut() else {
            return Ok(0);
        };
        if read.complete {
            return Ok(0);
        }
        // Until the next read: the task's progress as it changes; its end reads at once.
        loop {
            tokio::select! {
                event = stream.message() => {
                    let Some(event) = event? else {
                        return Err(Exit::unreachable("the master ended the event stream").into());
                    };
                    let Some(v1::operator_event::Event::TaskUpdated(t)) = event.event else {
                        continue;
                    };
                    if t.id != args.task
                        || args.framework.as_ref().is_some_and(|f| *f != t.framework_id)
                    {
                        continue;
                    }
                    if t.progress.is_some() && t.progress != progress {
                        if let Some(p) = &t.progress {
                            eprintln!("corral: progress {:.0}% {}", p.fraction * 100.0, p.message);
                        }
                        progress = t.progress;
                    }
                    if corral_types::TaskState::from_proto_opt("state", t.state)
                        .is_ok_and(|s| s.is_some_and(|s| s.is_terminal()))
                    {
                        break;
                    }
                }
                _ = reads.tick() => break,
            }
        }
    }
}

fn read_error(args: &LogsArgs, path: &str, s: &tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::NotFound | tonic::Code::InvalidArgument => anyhow::Error::from(Exit::invalid(
            format!("cannot read {path} of task {}: {}", args.task, s.message()),
        )),
        _ => anyhow::anyhow!("reading {path} of task {}: {}", args.task, s.message()),
    }
}

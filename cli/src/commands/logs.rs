//! `corral logs`: a task's stdout or stderr, read through the master (which proxies
//! Operator.ReadFile to the task's agent); `--tail N` starts at its last N lines; `-f`
//! follows until the task is terminal, and prints each new progress the task reports (task
//! SDK) on stderr.

use std::time::Duration;

use corral_proto::v1;

use crate::cli::LogsArgs;
use crate::client;
use crate::commands::Exit;
use crate::commands::follow::FileFollower;

const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Progress is asked for every this many polls of the file (once a second).
const PROGRESS_EVERY: u32 = 5;

/// The task's latest progress as the master knows it; `None` when it reports none (or the
/// master cannot say right now: the next poll asks again).
async fn latest_progress(
    client: &mut client::OperatorClient,
    args: &LogsArgs,
) -> Option<v1::Progress> {
    let page = client
        .list_tasks(v1::ListTasksRequest {
            task_id: Some(args.task.clone()),
            framework_id: args.framework.clone(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    page.tasks.into_iter().find_map(|t| t.progress)
}

pub(super) async fn run(args: LogsArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let path = if args.stderr { "stderr" } else { "stdout" };
    let mut file = FileFollower::new(&args.task, args.framework.clone(), path);
    if let Some(lines) = args.tail {
        file.skip_to_tail(&mut client, lines)
            .await
            .map_err(|s| read_error(&args, path, &s))?;
    }
    let mut out = std::io::stdout();
    let mut progress = None;
    let mut polls: u32 = 0;
    loop {
        let read = file
            .read_new(&mut client, &mut out)
            .await
            .map_err(|s| read_error(&args, path, &s))?;
        if !args.follow || read.complete {
            return Ok(0);
        }
        if polls.is_multiple_of(PROGRESS_EVERY) {
            let now = latest_progress(&mut client, &args).await;
            if now.is_some() && now != progress {
                if let Some(p) = &now {
                    eprintln!("corral: progress {:.0}% {}", p.fraction * 100.0, p.message);
                }
                progress = now;
            }
        }
        polls = polls.wrapping_add(1);
        tokio::time::sleep(POLL_INTERVAL).await;
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

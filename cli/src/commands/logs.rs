//! `corral logs`: a task's stdout or stderr, read through the master (which proxies
//! Operator.ReadFile to the task's agent); `-f` follows until the task is terminal.

use std::time::Duration;

use crate::cli::LogsArgs;
use crate::client;
use crate::commands::Exit;
use crate::commands::follow::FileFollower;

const POLL_INTERVAL: Duration = Duration::from_millis(200);

pub(super) async fn run(args: LogsArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let path = if args.stderr { "stderr" } else { "stdout" };
    let mut file = FileFollower::new(&args.task, args.framework.clone(), path);
    let mut out = std::io::stdout();
    loop {
        let read = file
            .read_new(&mut client, &mut out)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound | tonic::Code::InvalidArgument => {
                    anyhow::Error::from(Exit::invalid(format!(
                        "cannot read {path} of task {}: {}",
                        args.task,
                        s.message()
                    )))
                }
                _ => anyhow::anyhow!("reading {path} of task {}: {}", args.task, s.message()),
            })?;
        if !args.follow || read.complete {
            return Ok(0);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

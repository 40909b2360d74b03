//! `corral logs`: a task's stdout or stderr, read through the master (which proxies
//! Operator.ReadFile to the task's agent); `-f` follows until the task is terminal.

use std::io::Write;
use std::time::Duration;

use corral_proto::{limits, v1};

use crate::cli::LogsArgs;
use crate::client;
use crate::commands::Exit;

const POLL_INTERVAL: Duration = Duration::from_millis(200);

pub(super) async fn run(args: LogsArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let path = if args.stderr { "stderr" } else { "stdout" };
    let mut offset = 0;
    let mut out = std::io::stdout();
    loop {
        let response = client
            .read_file(v1::ReadFileRequest {
                task_id: args.task.clone(),
                path: path.into(),
                offset,
                length: limits::MAX_READ_FILE_BYTES,
                framework_id: args.framework.clone(),
            })
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
            })?
            .into_inner();
        if !response.data.is_empty() {
            offset += response.data.len() as u64;
            out.write_all(&response.data)?;
            out.flush()?;
            continue;
        }
        if !args.follow || response.complete {
            return Ok(0);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

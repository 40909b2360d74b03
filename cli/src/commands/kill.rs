//! `corral kill`: kills a task through Operator.KillTask, then (unless `--no-wait`) waits for
//! its terminal status, as `kubectl delete` waits for the pod to go.

use std::time::Duration;

use corral_proto::ProtoEnum;
use corral_proto::v1;
use tokio::time::Instant;

use serde_json::json;

use crate::cli::{KillArgs, OutputFormat};
use crate::client::{self, OperatorClient};
use crate::commands::Exit;
use crate::output;

const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub(super) async fn run(args: KillArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let killed = client
        .kill_task(v1::KillTaskRequest {
            task_id: args.task.clone(),
            framework_id: args.framework.clone(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition => anyhow::Error::from(Exit::invalid(format!(
                "cannot kill task {}: {}",
                args.task,
                s.message()
            ))),
            _ => anyhow::anyhow!("killing task {}: {}", args.task, s.message()),
        })?
        .into_inner();
    let document = matches!(args.output, OutputFormat::Json | OutputFormat::Yaml);
    if args.no_wait {
        if document {
            output::print_doc(
                args.output,
                &json!({
                    "task_id": args.task,
                    "framework_id": killed.framework_id,
                    "agent_id": killed.agent_id,
                    "kill": "sent",
                }),
            )?;
        } else {
            println!(
                "kill of task {} sent to agent {}",
                args.task, killed.agent_id
            );
        }
        return Ok(0);
    }
    let task = wait_terminal(&mut client, &args.task, &killed.framework_id, args.timeout).await?;
    if document {
        output::print_doc(args.output, &corral_proto::json::task(&task))?;
        return Ok(0);
    }
    let reason = output::reason(task.reason);
    println!(
        "task {}: {}{}",
        args.task,
        output::task_state(task.state),
        if reason == "-" {
            String::new()
        } else {
            format!(" ({reason})")
        }
    );
    Ok(0)
}

/// Polls the task until it is terminal or `timeout` passes.
async fn wait_terminal(
    client: &mut OperatorClient,
    task: &str,
    framework: &str,
    timeout: Duration,
) -> anyhow::Result<v1::TaskSummary> {
    let deadline = Instant::now() + timeout;
    loop {
        let summary = client
            .list_tasks(v1::ListTasksRequest {
                task_id: Some(task.to_owned()),
                framework_id: Some(framework.to_owned()),
                ..Default::default()
            })
            .await?
            .into_inner()
            .tasks
            .into_iter()
            .next();
        let terminal = summary.as_ref().is_some_and(|t| {
            corral_types::TaskState::from_proto("state", t.state).is_ok_and(|s| s.is_terminal())
        });
        if let (true, Some(t)) = (terminal, summary) {
            return Ok(t);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the kill of task {task} was sent, but it was not terminal after {timeout:?}"
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

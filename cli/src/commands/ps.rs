//! `corral ps`: tasks, through Operator.ListTasks (all pages); `--watch` then prints each
//! change the master's event stream (Operator.Subscribe) reports, as kubectl's `get -w` does.

use std::collections::HashMap;

use corral_proto::{ProtoEnum, v1};
use corral_types::TaskState;
use serde_json::json;

use crate::cli::{OutputFormat, PsArgs};
use crate::{client, output};

pub(super) async fn run(args: PsArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    // Subscribed before listing, so no change between the two is missed.
    let events = if args.watch {
        Some(client::events(&mut client).await?)
    } else {
        None
    };
    let states: Vec<i32> = if args.all {
        Vec::new()
    } else {
        [
            v1::TaskState::Staging,
            v1::TaskState::Starting,
            v1::TaskState::Running,
            v1::TaskState::Killing,
            v1::TaskState::Unreachable,
        ]
        .into_iter()
        .map(|s| s as i32)
        .collect()
    };
    let mut tasks = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_tasks(v1::ListTasksRequest {
                states: states.clone(),
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => output::print_doc(
            args.output,
            &json!({
                "tasks": tasks.iter().map(corral_proto::json::task).collect::<Vec<_>>()
            }),
        )?,
        format @ (OutputFormat::Table | OutputFormat::Wide) => {
            let wide = format == OutputFormat::Wide;
            let mut header = vec![
                "TASK",
                "NAME",
                "STATE",
                "REASON",
                "PROGRESS",
                "AGENT",
                "FRAMEWORK",
                "UPDATED",
            ];
            if wide {
                header.extend(["OWNER", "RESOURCES", "MODULE", "MESSAGE"]);
            }
            let mut table = output::table(&header);
            for t in &tasks {
                let mut row = vec![
                    t.id.clone(),
                    t.name.clone(),
                    output::task_state(t.state),
                    output::reason(t.reason),
                    progress(t.progress.as_ref()),
                    t.agent_id.clone(),
                    t.framework_id.clone(),
                    output::ago(t.updated_at_millis),
                ];
                if wide {
                    row.extend([
                        t.owner.clone(),
                        output::resources_short(t.resources.as_ref()),
                        t.module.clone(),
                        t.message.clone(),
                    ]);
                }
                table.add_row(row);
            }
            println!("{table}");
        }
    }
    match events {
        Some(events) => watch(events, args.output, tasks).await,
        None => Ok(0),
    }
}

/// Prints every task change until the stream ends (the master went away: exit 69).
async fn watch(
    mut events: tonic::Streaming<v1::OperatorEvent>,
    format: OutputFormat,
    listed: Vec<v1::TaskSummary>,
) -> anyhow::Result<u8> {
    use v1::operator_event::Event;
    // The live tasks seen, so that a change prints the whole task, as `kubectl get -w` does;
    // a TASK_UPDATED carries only what changed. Ended tasks are let go.
    let key = |t: &v1::TaskSummary| (t.framework_id.clone(), t.id.clone());
    let mut held: HashMap<(String, String), v1::TaskSummary> =
        listed.into_iter().map(|t| (key(&t), t)).collect();
    while let Some(event) = events.message().await? {
        let t = match event.event {
            Some(Event::TaskAdded(t)) => t,
            Some(Event::TaskUpdated(u)) => {
                match held.remove(&(u.framework_id.clone(), u.id.clone())) {
                    Some(mut t) => {
                        u.apply_to(&mut t);
                        t
                    }
                    None => u.into_summary(),
                }
            }
            _ => continue,
        };
        match format {
            // One document per line, as `kubectl get -w -o json` streams them.
            OutputFormat::Json => println!("{}", corral_proto::json::task(&t)),
            OutputFormat::Yaml => output::print_doc(format, &corral_proto::json::task(&t))?,
            OutputFormat::Table | OutputFormat::Wide => println!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                t.id,
                output::task_state(t.state),
                output::reason(t.reason),
                progress(t.progress.as_ref()),
                t.agent_id,
                t.framework_id
            ),
        }
        if !TaskState::from_proto("state", t.state).is_ok_and(|s| s.is_terminal()) {
            held.insert(key(&t), t);
        }
    }
    Err(crate::commands::Exit::unreachable("the master ended the event stream").into())
}

/// `42% reading input`, or nothing for a task that reports no progress.
fn progress(progress: Option<&v1::Progress>) -> String {
    progress.map_or_else(String::new, |p| {
        let percent = format!("{:.0}%", p.fraction * 100.0);
        if p.message.is_empty() {
            percent
        } else {
            format!("{percent} {}", p.message)
        }
    })
}

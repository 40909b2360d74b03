//! `corral ps`: tasks, through Operator.ListTasks (all pages), filtered by state, framework,
//! agent and labels as the master filters them; `--watch` then prints each change the
//! master's event stream (Operator.Subscribe) reports, as kubectl's `get -w` does.

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
    let filter = Filter::of(&args);
    let states: Vec<TaskState> = match (&filter.states[..], args.all) {
        ([], true) => Vec::new(),
        ([], false) => LIVE.to_vec(),
        (named, _) => named.to_vec(),
    };
    let tasks = list(&mut client, &filter, &states).await?;
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
            output::print_listing(&table, "no tasks");
        }
    }
    let Some(events) = events else {
        return Ok(0);
    };
    // A change prints the whole task, so the live tasks the filters leave out by state alone
    // are held too: one may come to match.
    let held = if filter.states.is_empty() {
        tasks
    } else {
        list(&mut client, &filter, LIVE).await?
    };
    watch(events, args.output, held, &filter).await
}

/// The states of tasks that may still change: what `corral ps` lists without `--all`.
const LIVE: &[TaskState] = &[
    TaskState::Staging,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Killing,
    TaskState::Unreachable,
];

/// What `corral ps` shows: tasks in any of `states` (all when empty), of `framework`, on
/// `agent`, with every one of `labels`.
struct Filter {
    states: Vec<TaskState>,
    framework: Option<String>,
    agent: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
}

impl Filter {
    fn of(args: &PsArgs) -> Self {
        let job = args
            .job
            .iter()
            .map(|j| ("corral.job".to_owned(), j.clone()));
        Self {
            states: args.state.clone(),
            framework: args.framework.clone(),
            agent: args.agent.clone(),
            labels: args.label.iter().cloned().chain(job).collect(),
        }
    }

    /// Whether `task` matches; labels are known only of tasks listed or added while watched.
    fn matches(&self, task: &v1::TaskSummary) -> bool {
        let state = TaskState::from_proto("state", task.state).ok();
        (self.states.is_empty() || state.is_some_and(|s| self.states.contains(&s)))
            && self
                .framework
                .as_ref()
                .is_none_or(|f| *f == task.framework_id)
            && self.agent.as_ref().is_none_or(|a| *a == task.agent_id)
            && self
                .labels
                .iter()
                .all(|(k, v)| task.labels.get(k) == Some(v))
    }
}

/// Every page of the tasks in `states` (all when empty) that match `filter` otherwise.
async fn list(
    client: &mut client::OperatorClient,
    filter: &Filter,
    states: &[TaskState],
) -> anyhow::Result<Vec<v1::TaskSummary>> {
    let mut tasks = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_tasks(v1::ListTasksRequest {
                states: states.iter().map(|s| s.to_proto() as i32).collect(),
                framework_id: filter.framework.clone(),
                agent_id: filter.agent.clone(),
                labels: filter.labels.clone().into_iter().collect(),
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            return Ok(tasks);
        }
        page_token = page.next_page_token;
    }
}

/// Prints every change of a task matching `filter` until the stream ends (the master went
/// away: exit 69).
async fn watch(
    mut events: tonic::Streaming<v1::OperatorEvent>,
    format: OutputFormat,
    listed: Vec<v1::TaskSummary>,
    filter: &Filter,
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
        if !TaskState::from_proto("state", t.state).is_ok_and(|s| s.is_terminal()) {
            held.insert(key(&t), t.clone());
        }
        if !filter.matches(&t) {
            continue;
        }
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

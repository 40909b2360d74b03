//! The operators' event stream, over gRPC (`Operator.Subscribe`) and as server-sent events
//! (`/api/v1/events`): the state first, then every change to tasks, agents and frameworks.

use std::time::Duration;

use corral_proto::{limits, v1};
use serde_json::Value;
use v1::operator_event::Event;

use crate::cluster::{Cluster, text};

/// The next event that is not a heartbeat (bounded: 30 s).
async fn next(stream: &mut tonic::Streaming<v1::OperatorEvent>) -> Event {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("an event within 30 s")
            .unwrap()
            .expect("the stream goes on")
            .event
            .unwrap();
        if !matches!(event, Event::Heartbeat(_)) {
            return event;
        }
    }
}

async fn subscribe(cluster: &Cluster) -> tonic::Streaming<v1::OperatorEvent> {
    let channel = limits::endpoint(format!("http://{}", cluster.master_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    limits::operator_client(channel)
        .subscribe(v1::SubscribeEventsRequest { max_tasks: 0 })
        .await
        .unwrap()
        .into_inner()
}

fn task_state(t: &v1::TaskSummary) -> String {
    corral_proto::json::task_state(t.state)
}

#[tokio::test]
async fn grpc_subscribers_get_the_state_then_every_task_agent_and_framework_change() {
    let cluster = Cluster::start(&[]).await;
    let mut stream = subscribe(&cluster).await;
    let Event::Subscribed(subscribed) = next(&mut stream).await else {
        panic!("the first event is SUBSCRIBED");
    };
    assert_eq!(subscribed.heartbeat_interval_seconds, 15);
    let state = subscribed.state.unwrap();
    assert_eq!(state.agents.len(), 1);
    assert!(state.tasks.is_empty());
    let agent = state.agents[0].id.clone();

    // A run: its framework subscribes, its task is added and goes to FINISHED, and the
    // framework is torn down; in that order.
    cluster.run_hello().await;
    let mut framework = None;
    let mut task = None;
    let mut states = Vec::new();
    loop {
        match next(&mut stream).await {
            Event::FrameworkAdded(f) => {
                assert!(framework.is_none() && task.is_none(), "{f:?}");
                framework = Some(f.id);
            }
            Event::FrameworkUpdated(_) => {}
            Event::TaskAdded(t) => {
                assert_eq!(Some(&t.framework_id), framework.as_ref(), "{t:?}");
                assert!(task.is_none(), "one task was added: {t:?}");
                task = Some(t.id.clone());
                states.push(task_state(&t));
            }
            Event::TaskUpdated(u) => {
                let t = u.into_summary();
                assert_eq!(Some(&t.id), task.as_ref(), "{t:?}");
                assert_eq!(t.agent_id, agent);
                states.push(task_state(&t));
            }
            Event::FrameworkRemoved(id) => {
                assert_eq!(Some(&id), framework.as_ref());
                break;
            }
            Event::AgentUpdated(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        states.last().map(String::as_str),
        Some("FINISHED"),
        "{states:?}"
    );
    let order = ["STAGING", "STARTING", "RUNNING", "FINISHED"];
    let ranks: Vec<usize> = states
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect(s))
        .collect();
    assert!(ranks.is_sorted(), "states went backwards: {states:?}");

    // Drain and reactivate: the agent's state changes, seen as it happens (with no task
    // left to wait for, the drain is over at once).
    let out = cluster
        .corral(&["agent", "drain", &agent, "--deadline", "10m"])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Event::AgentUpdated(a) = next(&mut stream).await else {
        panic!("AGENT_UPDATED after a drain");
    };
    assert_eq!(
        (a.id.as_str(), a.state),
        (agent.as_str(), v1::AgentState::Drained as i32)
    );
    let out = cluster.corral(&["agent", "reactivate", &agent]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Event::AgentUpdated(a) = next(&mut stream).await else {
        panic!("AGENT_UPDATED after a reactivate");
    };
    assert_eq!(a.state, v1::AgentState::Admitted as i32);
}

/// Server-sent events, parsed: each event's type and JSON document.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(cluster: &Cluster, query: &str) -> reqwest::Response {
        reqwest::get(format!(
            "http://{}/api/v1/events{query}",
            cluster.master_addr
        ))
        .await
        .unwrap()
    }

    /// The next event that is not a heartbeat (bounded: 30 s).
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim_start().to_owned())
                };
                let (Some(kind), Some(data)) = (field("event:"), field("data:")) else {
                    continue;
                };
                if kind == "HEARTBEAT" {
                    continue;
                }
                let doc: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(doc["type"], kind.as_str(), "{doc}");
                return (kind, doc);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn server_sent_events_carry_the_same_events_as_json() {
    let cluster = Cluster::start(&[]).await;
    let response = Sse::open(&cluster, "").await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut events = Sse {
        response,
        buffer: String::new(),
    };
    let (kind, doc) = events.next().await;
    assert_eq!(kind, "SUBSCRIBED");
    assert_eq!(doc["heartbeat_interval_seconds"], 15);
    assert_eq!(doc["state"]["agents"][0]["state"], "ADMITTED", "{doc}");

    let (_run, running) = cluster.start_sleeping_task().await;
    let mut seen = Vec::new();
    loop {
        let (kind, doc) = events.next().await;
        if kind.starts_with("TASK_") {
            assert_eq!(doc["task"]["id"], running.as_str(), "{doc}");
            // An update carries only what can change; the watcher holds the rest.
            let whole = kind == "TASK_ADDED";
            for fixed in ["name", "module", "resources", "labels"] {
                assert_eq!(doc["task"].get(fixed).is_some(), whole, "{fixed}: {doc}");
            }
            seen.push((kind, doc["task"]["state"].as_str().unwrap().to_owned()));
            if seen.last().unwrap().1 == "RUNNING" {
                break;
            }
        }
    }
    assert_eq!(seen[0].0, "TASK_ADDED", "{seen:?}");

    // Bad parameters are refused before the stream starts.
    let refused = Sse::open(&cluster, "?max_tasks=many").await;
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    let doc: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("many"),
        "{doc}"
    );
}

#[tokio::test]
async fn ps_watch_prints_each_task_change_as_it_happens() {
    use tokio::io::AsyncBufReadExt;
    let cluster = Cluster::start(&[]).await;
    let mut watch = cluster.spawn_corral(&["ps", "--watch", "-o", "json"]);
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    // The listing first: no task yet.
    let listing = lines.next_line().await.unwrap().unwrap();
    assert!(listing.starts_with('{'), "{listing}");

    let (_run, running) = cluster.start_sleeping_task().await;
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("RUNNING") {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a change within 30 s")
            .unwrap()
            .expect("ps --watch goes on");
        if !line.starts_with('{') || line == "{" {
            continue;
        }
        let task: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(task["id"], running.as_str(), "{task}");
        // The whole task each time, as `kubectl get -w` prints it, though updates are slim.
        assert!(
            task["module"].as_str().is_some_and(|m| !m.is_empty()),
            "{task}"
        );
        states.push(task["state"].as_str().unwrap().to_owned());
    }
    assert!(states.len() >= 2, "{states:?}");
}

#[tokio::test]
async fn every_transition_of_a_thousand_task_run_comes_once_in_order_despite_a_stalled_subscriber()
{
    let cluster = Cluster::start(&[]).await;
    cluster.run_hello().await; // Puts the module in the artifact store.
    let mut stream = subscribe(&cluster).await;
    assert!(matches!(next(&mut stream).await, Event::Subscribed(_)));
    // A subscriber that never reads: the master must not wait for it.
    let _stalled = Sse::open(&cluster, "").await;

    let hello = crate::cluster::module_digest(corral_wasm_tasks::HELLO);
    let spec = format!(
        "version = 1\nname = \"thousand\"\nkind = \"batch\"\nmodule = \"{hello}\"\n\
         instances = 1000\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n"
    );
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/jobs", cluster.master_addr))
        .header("content-type", "application/toml")
        .body(spec)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);

    let order = ["STAGING", "STARTING", "RUNNING", "FINISHED"];
    let mut seen: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut finished = 0;
    while finished < 1000 {
        let (added, t) = match next(&mut stream).await {
            Event::TaskAdded(t) => (true, t),
            Event::TaskUpdated(u) => (false, u.into_summary()),
            _ => continue,
        };
        if t.framework_id != corral_proto::jobs::FRAMEWORK_ID {
            continue;
        }
        let states = seen.entry(t.id.clone()).or_default();
        assert_eq!(added, states.is_empty(), "{}: added first, once", t.id);
        let state = task_state(&t);
        let rank = order.iter().position(|o| *o == state).expect(&state);
        if let Some(last) = states.last() {
            let last = order.iter().position(|o| o == last).unwrap();
            assert!(rank > last, "{}: {state} after {states:?}", t.id);
        }
        finished += usize::from(state == "FINISHED");
        states.push(state);
    }
    assert_eq!(seen.len(), 1000);
    for (id, states) in &seen {
        assert_eq!(states, &order, "{id}: every transition once");
    }
}

//! The agent as a cluster member, against an in-process fake master: registration, the task
//! status lifecycle, kills, reliable delivery, epochs, reconnection and task files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_agent::node::{Agent, AgentConfig, ResourceOverrides};
use corral_proto::ProtoEnum;
use corral_proto::{limits, v1};
use corral_types::{Reason, TaskState};

use crate::fake_master::{Event, FakeMaster, states};

pub(crate) const FRAMEWORK: &str = "fw-1";

/// A fresh work directory under the target directory.
pub(crate) fn work_dir() -> PathBuf {
    tempfile::Builder::new()
        .prefix("node-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep()
}

/// An agent of `master` on `work_dir`, as the tests configure it.
pub(crate) fn agent_config(master: &FakeMaster, work_dir: &Path) -> AgentConfig {
    let mut config = AgentConfig::new(vec![master.addr.to_string()], work_dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.status_retry_interval = Duration::from_millis(300);
    config.attributes = vec![("zone".into(), "test-1".into())];
    config.resources = Some(ResourceOverrides {
        cpus_milli: Some(2000),
        ..ResourceOverrides::default()
    });
    config
}

async fn start_agent(master: &FakeMaster) -> Agent {
    Agent::start(agent_config(master, &work_dir()))
        .await
        .unwrap()
}

/// Starts a master and an agent and waits for the registration.
async fn cluster() -> (FakeMaster, Agent, v1::agent_message::Register) {
    let mut master = FakeMaster::start().await;
    let agent = start_agent(&master).await;
    let Event::Register(register) = master.next().await else {
        panic!("the agent did not register first");
    };
    (master, agent, register)
}

pub(crate) fn task(id: &str, digest: &str, args: &[&str]) -> v1::TaskInfo {
    v1::TaskInfo {
        task_id: id.into(),
        module: Some(v1::ModuleRef {
            source: Some(v1::module_ref::Source::Digest(digest.into())),
        }),
        args: args.iter().map(|a| a.to_string()).collect(),
        resources: Some(v1::Resources {
            cpus_milli: 1000,
            mem_bytes: 64 << 20,
            disk_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn state(status: &v1::TaskStatus) -> TaskState {
    TaskState::from_proto("state", status.state).unwrap()
}

pub(crate) fn reason(status: &v1::TaskStatus) -> Reason {
    Reason::from_proto("reason", status.reason).unwrap()
}

/// All of a task's stdout, through the agent's files service.
pub(crate) async fn read_stdout(agent: &Agent, task_id: &str) -> v1::ReadFileResponse {
    files_client(agent)
        .await
        .read_file(v1::ReadFileRequest {
            task_id: task_id.into(),
            path: "stdout".into(),
            offset: 0,
            length: u64::MAX,
            framework_id: None,
        })
        .await
        .unwrap()
        .into_inner()
}

pub(crate) async fn files_client(
    agent: &Agent,
) -> v1::operator_client::OperatorClient<tonic::transport::Channel> {
    let channel = limits::endpoint(format!("http://{}", agent.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    limits::operator_client(channel)
}

/// A client of the agent's gRPC health service.
async fn health_client(
    agent: &Agent,
) -> tonic_health::pb::health_client::HealthClient<tonic::transport::Channel> {
    let channel = limits::endpoint(format!("http://{}", agent.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
}

#[tokio::test]
async fn the_files_api_answers_health_checks() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let (_master, agent, _) = cluster().await;
    let mut health = health_client(&agent).await;
    for service in ["", "corral.v1.Operator"] {
        let request = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        let status = health.check(request).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn a_draining_agent_is_not_serving_until_reactivated_or_registered_afresh() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let (master, agent, _) = cluster().await;
    let mut health = health_client(&agent).await;
    let mut status_of = async |service: &str| {
        let request = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        health.check(request).await.unwrap().into_inner().status
    };
    // Polled: the report is applied on the agent's own task (bounded: 10 s).
    let mut wait_for = async |service: &str, want: ServingStatus| {
        for _ in 0..1000 {
            if status_of(service).await == want as i32 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{service:?} is not {want:?} after 10 s");
    };
    let maintenance = |draining| {
        v1::master_message::Kind::Maintenance(v1::master_message::Maintenance { draining })
    };

    master.send(maintenance(true)).await;
    wait_for("", ServingStatus::NotServing).await;
    // Its files stay readable.
    wait_for("corral.v1.Operator", ServingStatus::Serving).await;
    master.send(maintenance(false)).await;
    wait_for("", ServingStatus::Serving).await;

    // Draining, then a new session whose REGISTERED says nothing of it: serving again.
    master.send(maintenance(true)).await;
    wait_for("", ServingStatus::NotServing).await;
    master.drop_link().await;
    wait_for("", ServingStatus::Serving).await;
    agent.shutdown().await;
}

#[tokio::test]
async fn agent_registers_with_resources_and_attributes() {
    let (_master, agent, register) = cluster().await;
    let info = register.agent_info.unwrap();
    let resources = info.resources.unwrap();
    assert_eq!(resources.cpus_milli, 2000);
    assert!(resources.mem_bytes > 0);
    assert!(resources.disk_bytes > 0);
    let attribute = |key: &str| {
        info.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.value.clone())
    };
    assert_eq!(attribute("arch").as_deref(), Some(std::env::consts::ARCH));
    assert_eq!(attribute("os").as_deref(), Some(std::env::consts::OS));
    let (components, wasi) = corral_types::COMPONENTS_ATTRIBUTE;
    assert_eq!(attribute(components).as_deref(), Some(wasi));
    assert_eq!(attribute("zone").as_deref(), Some("test-1"));
    assert_eq!(info.address, agent.local_addr().to_string());
    assert!(!info.engine_hash.is_empty());
    assert!(info.fuel_per_cpu_second > 0);
    assert_eq!(agent.registered().await.to_string(), "agent-1");
    agent.shutdown().await;
}

#[tokio::test]
async fn hello_reports_starting_running_finished_and_its_stdout_is_readable() {
    let (mut master, agent, _) = cluster().await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master
        .launch(FRAMEWORK, task("hello-1", &digest, &[]))
        .await;

    let mut statuses = Vec::new();
    let mut cached = Vec::new();
    // The fetched module is announced; statuses come in order around it.
    while statuses.last().is_none_or(|s| !state(s).is_terminal()) {
        match master.next().await {
            Event::ModuleCached(module) => cached.push(module),
            Event::Status(s) if statuses.iter().all(|o: &v1::TaskStatus| o.uuid != s.uuid) => {
                statuses.push(s)
            }
            _ => {}
        }
    }
    assert_eq!(cached, std::slice::from_ref(&digest));
    assert_eq!(
        states(&statuses),
        [TaskState::Starting, TaskState::Running, TaskState::Finished]
    );
    let finished = statuses.last().unwrap();
    assert_eq!(reason(finished), Reason::Exited);
    assert_eq!(finished.agent_id, "agent-1");
    let usage = finished.usage.unwrap();
    assert_eq!(usage.exit_code, Some(0));
    assert!(usage.fuel_consumed > 0);
    assert!(usage.peak_memory_bytes > 0);
    assert!(statuses.iter().all(|s| s.uuid.len() == 16));

    let mut files = files_client(&agent).await;
    let read = read_stdout(&agent, "hello-1").await;
    assert_eq!(&read.data[..], b"hello from corral\n");
    assert_eq!(read.size, read.data.len() as u64);
    assert!(read.complete);

    let listing = files
        .list_files(v1::ListFilesRequest {
            task_id: "hello-1".into(),
            path: String::new(),
            framework_id: Some(FRAMEWORK.into()),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listing.files.iter().map(|f| f.path.as_str()).collect();
    // `hello` cannot reach files (it imports no WASI path functions): it got no root.
    assert_eq!(names, ["stdout"]);
    agent.shutdown().await;
}

#[tokio::test]
async fn completed_tasks_beyond_the_limit_are_removed_with_their_files() {
    let mut master = FakeMaster::start().await;
    let dir = work_dir();
    let mut config = agent_config(&master, &dir);
    config.max_completed_tasks = 1;
    let agent = Agent::start(config).await.unwrap();
    assert!(matches!(master.next().await, Event::Register(_)));
    let limits = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::LIMITS));
    let sandboxes = dir.join("sandboxes").join(FRAMEWORK);
    let files_of = |task_id: &str| -> Vec<String> {
        std::fs::read_dir(&sandboxes)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|name| name.starts_with(&format!("{task_id}.")))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut files = files_client(&agent).await;
    let read_stdout = |task_id: &str| v1::ReadFileRequest {
        task_id: task_id.into(),
        path: "stdout".into(),
        offset: 0,
        length: 16,
        framework_id: None,
    };

    // A megabyte of output goes to a file; a root is made for a module that can reach files.
    for task_id in ["big-1", "big-2"] {
        master
            .launch(FRAMEWORK, task(task_id, &limits, &["flood-stdout", "1"]))
            .await;
        for status in master.statuses_until_terminal(task_id).await {
            master.acknowledge(&status).await;
        }
        master.handled(FRAMEWORK).await;
    }
    // The second completion pushed the first out: its entry at once, its files shortly.
    let gone = files.read_file(read_stdout("big-1")).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !files_of("big-1").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            files_of("big-1")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(files_of("big-2").len(), 2, "{:?}", files_of("big-2"));
    assert!(files.read_file(read_stdout("big-2")).await.is_ok());
    agent.shutdown().await;
}

#[tokio::test]
async fn reading_outside_the_sandbox_is_refused() {
    let (mut master, agent, _) = cluster().await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master
        .launch(FRAMEWORK, task("escape-1", &digest, &[]))
        .await;
    master.statuses_until_terminal("escape-1").await;

    let mut files = files_client(&agent).await;
    for path in ["../../../../etc/passwd", "/etc/passwd", "root/../../x"] {
        let error = files
            .read_file(v1::ReadFileRequest {
                task_id: "escape-1".into(),
                path: path.into(),
                offset: 0,
                length: 100,
                framework_id: None,
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{path}");
    }
    let error = files
        .read_file(v1::ReadFileRequest {
            task_id: "no-such-task".into(),
            path: "stdout".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    let error = files
        .get_state(v1::GetStateRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unimplemented);
    agent.shutdown().await;
}

#[tokio::test]
async fn killing_a_spinning_task_reports_killed_and_unknown_tasks_lost() {
    let (mut master, agent, _) = cluster().await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::LIMITS));
    master
        .launch(FRAMEWORK, task("spin-1", &digest, &["spin"]))
        .await;
    // Resends may repeat STARTING while the module compiles.
    while state(&master.next_status_of("spin-1").await) != TaskState::Running {}
    master.kill(FRAMEWORK, "spin-1").await;
    let statuses = master.statuses_until_terminal("spin-1").await;
    let killed = statuses.last().unwrap();
    assert_eq!(state(killed), TaskState::Killed);
    assert_eq!(reason(killed), Reason::TaskKilledByRequest);
    assert!(killed.usage.is_some());

    // A kill for a drain says so in the KILLED update.
    master
        .launch(FRAMEWORK, task("spin-2", &digest, &["spin"]))
        .await;
    while state(&master.next_status_of("spin-2").await) != TaskState::Running {}
    master
        .kill_because(FRAMEWORK, "spin-2", Reason::AgentDraining.to_i32())
        .await;
    let statuses = master.statuses_until_terminal("spin-2").await;
    let killed = statuses.last().unwrap();
    assert_eq!(state(killed), TaskState::Killed);
    assert_eq!(reason(killed), Reason::AgentDraining);
    assert_eq!(
        killed.message,
        "killed: its agent is draining and the deadline passed"
    );

    master.kill(FRAMEWORK, "never-launched").await;
    let lost = master.next_status_of("never-launched").await;
    assert_eq!(state(&lost), TaskState::Lost);
    assert!(lost.uuid.is_empty(), "no acknowledgement expected");
    agent.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_updates_are_resent_until_acknowledged() {
    let (mut master, agent, _) = cluster().await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master.launch(FRAMEWORK, task("ack-1", &digest, &[])).await;
    let statuses = master.statuses_until_terminal("ack-1").await;
    let (starting, running) = (&statuses[0], &statuses[1]);

    // Nothing is acknowledged yet: STARTING comes again.
    loop {
        if master.next_status_of("ack-1").await.uuid == starting.uuid {
            break;
        }
    }
    master.acknowledge(starting).await;
    // Resends come in bursts, in order: STARTING (while unacknowledged), RUNNING, FINISHED.
    // The burst holding the second RUNNING after the ack began after the ack was handled.
    let mut runnings = 0;
    let mut starting_since_first_running = false;
    while runnings < 2 {
        let status = master.next_status_of("ack-1").await;
        if status.uuid == running.uuid {
            runnings += 1;
        } else if status.uuid == starting.uuid && runnings == 1 {
            starting_since_first_running = true;
        }
    }
    assert!(
        !starting_since_first_running,
        "an acknowledged update was resent"
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn messages_from_a_stale_epoch_are_ignored() {
    let mut master = FakeMaster::start().await;
    master.set_epoch(5);
    let agent = start_agent(&master).await;
    assert!(matches!(master.next().await, Event::Register(_)));
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));

    master
        .send_at(
            3,
            v1::master_message::Kind::LaunchTasks(v1::master_message::LaunchTasks {
                framework_id: FRAMEWORK.into(),
                tasks: vec![task("stale-1", &digest, &[])],
            }),
        )
        .await;
    // Messages are handled in order and updates are sent in the order they were produced,
    // so the probe's STARTING comes after anything the stale launch would have produced.
    master.launch(FRAMEWORK, task("probe", &digest, &[])).await;
    let first = master.next_status().await;
    assert_eq!(first.task_id, "probe");
    assert_eq!(state(&first), TaskState::Starting);
    agent.shutdown().await;
}

#[tokio::test]
async fn messages_with_invalid_ids_are_dropped_and_the_agent_carries_on() {
    let (mut master, agent, _) = cluster().await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master.launch("fw/1", task("bad-fw", &digest, &[])).await;
    master
        .launch(FRAMEWORK, task("bad/task", &digest, &[]))
        .await;
    master.kill(FRAMEWORK, "..").await;
    master
        .send(v1::master_message::Kind::Acknowledge(
            v1::master_message::Acknowledge {
                framework_id: String::new(),
                task_id: "t".into(),
                uuid: vec![1; 16].into(),
            },
        ))
        .await;
    // Nothing came of them: the first update is the answer to a kill of an unknown task.
    master.kill(FRAMEWORK, "probe").await;
    let first = master.next_status().await;
    assert_eq!(
        (first.task_id.as_str(), state(&first)),
        ("probe", TaskState::Lost)
    );
    master.launch(FRAMEWORK, task("good-2", &digest, &[])).await;
    let statuses = master.statuses_until_terminal("good-2").await;
    assert_eq!(state(statuses.last().unwrap()), TaskState::Finished);
    agent.shutdown().await;
}

#[tokio::test]
async fn an_invalid_module_fails_the_task_and_the_agent_carries_on() {
    let (mut master, agent, _) = cluster().await;
    let bad = master.add_module(b"\0asm but not really".to_vec());
    master.launch(FRAMEWORK, task("bad-1", &bad, &[])).await;
    let statuses = master.statuses_until_terminal("bad-1").await;
    assert_eq!(states(&statuses), [TaskState::Starting, TaskState::Failed]);
    assert_eq!(reason(&statuses[1]), Reason::InvalidModule);
    assert!(statuses[1].usage.is_none());

    let missing = corral_types::Digest::of(b"nobody uploaded this").to_string();
    master
        .launch(FRAMEWORK, task("missing-1", &missing, &[]))
        .await;
    let statuses = master.statuses_until_terminal("missing-1").await;
    assert_eq!(reason(statuses.last().unwrap()), Reason::FetchFailed);

    let mut local = task("local-1", &missing, &[]);
    local.module = Some(v1::ModuleRef {
        source: Some(v1::module_ref::Source::FilePath(
            corral_wasm_tasks::HELLO.into(),
        )),
    });
    master.launch(FRAMEWORK, local).await;
    let statuses = master.statuses_until_terminal("local-1").await;
    assert_eq!(reason(statuses.last().unwrap()), Reason::FetchFailed);

    let good = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master.launch(FRAMEWORK, task("good-1", &good, &[])).await;
    let statuses = master.statuses_until_terminal("good-1").await;
    assert_eq!(state(statuses.last().unwrap()), TaskState::Finished);
    agent.shutdown().await;
}

#[tokio::test]
async fn after_a_master_restart_the_agent_reregisters_with_its_running_task() {
    let (mut master, agent, _) = cluster().await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::LIMITS));
    master
        .launch(FRAMEWORK, task("spin-2", &digest, &["spin"]))
        .await;
    while state(&master.next_status_of("spin-2").await) != TaskState::Running {}

    master.drop_link().await;
    let reregister = loop {
        if let Event::ReRegister(reregister) = master.next().await {
            break reregister;
        }
    };
    assert_eq!(reregister.agent_id, "agent-1");
    assert_eq!(reregister.last_epoch, 1);
    assert_eq!(reregister.tasks.len(), 1);
    let running = &reregister.tasks[0];
    assert_eq!(running.framework_id, FRAMEWORK);
    assert_eq!(running.task.as_ref().unwrap().task_id, "spin-2");
    assert_eq!(state(running.status.as_ref().unwrap()), TaskState::Running);
    let unacked: Vec<_> = reregister
        .unacknowledged_updates
        .iter()
        .map(state)
        .collect();
    assert_eq!(unacked, [TaskState::Starting, TaskState::Running]);
    assert!(reregister.cached_modules.contains(&digest));

    // The new session carries commands again.
    master.kill(FRAMEWORK, "spin-2").await;
    let statuses = master.statuses_until_terminal("spin-2").await;
    assert_eq!(state(statuses.last().unwrap()), TaskState::Killed);
    agent.shutdown().await;
}

#[tokio::test]
async fn launches_of_a_new_module_that_arrive_together_fetch_it_once() {
    let (mut master, _agent, _) = cluster().await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let mut t = task(&format!("together-{i}"), &digest, &[]);
            t.resources.as_mut().unwrap().cpus_milli = 10;
            t
        })
        .collect();
    master
        .send(v1::master_message::Kind::LaunchTasks(
            v1::master_message::LaunchTasks {
                framework_id: FRAMEWORK.into(),
                tasks,
            },
        ))
        .await;
    for i in 0..20 {
        let end = master
            .statuses_until_terminal(&format!("together-{i}"))
            .await;
        assert_eq!(end.last().map(state), Some(TaskState::Finished));
    }
    assert_eq!(master.fetches(), 1);
}

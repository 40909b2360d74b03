//! Lost agents and failed-over frameworks, over the wire.

use std::time::Duration;

use corral_proto::v1;

use crate::util::{FakeAgent, RawScheduler, launch, start, start_with, task};

#[tokio::test]
async fn a_silent_agent_is_reported_unreachable_to_frameworks() {
    let m = start_with(|c| {
        c.agent_heartbeat_interval = Duration::from_millis(20);
        c.agent_timeout = Duration::from_millis(200);
    })
    .await;
    let mut agent = FakeAgent::register(m.channel.clone()).await;
    // The agent heartbeats until its task is launched, then falls silent.
    let beats = agent.tx.clone();
    let heartbeat = tokio::spawn(async move {
        loop {
            let beat = v1::AgentMessage {
                kind: Some(v1::agent_message::Kind::Heartbeat(
                    v1::agent_message::Heartbeat {},
                )),
            };
            if beats.send(beat).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut fw = RawScheduler::subscribe(m.channel.clone()).await;
    let offers = fw.offers().await;
    fw.call(launch(&offers[0].id, vec![task("t1", 500)]))
        .await
        .unwrap();
    agent.next("LaunchTasks").await;
    heartbeat.abort();

    let mut saw_update = false;
    let mut saw_failure = false;
    while !(saw_update && saw_failure) {
        match fw.next("UNREACHABLE and FAILURE").await {
            v1::event::Kind::Update(u) => {
                let u = u.status.unwrap();
                assert_eq!(u.task_id, "t1");
                assert_eq!(u.state, v1::TaskState::Unreachable as i32);
                assert_eq!(u.reason, v1::Reason::AgentUnreachable as i32);
                saw_update = true;
            }
            v1::event::Kind::Failure(f) => {
                assert_eq!(f.agent_id, agent.id);
                saw_failure = true;
            }
            // The offer left over from the launch is withdrawn with the agent.
            v1::event::Kind::Rescind(_) | v1::event::Kind::Offers(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    m.master.shutdown().await;
}

#[tokio::test]
async fn a_framework_fails_over_to_a_new_stream_and_the_old_one_is_refused() {
    let m = start().await;
    let _agent = FakeAgent::register(m.channel.clone()).await;
    let mut first = RawScheduler::subscribe(m.channel.clone()).await;
    first.offers().await;

    let mut second =
        RawScheduler::resubscribe(m.channel.clone(), Some(first.framework_id.clone())).await;
    assert_eq!(second.framework_id, first.framework_id);
    assert_ne!(second.stream_id, first.stream_id);
    // The first stream is told and ends.
    match first.next("ERROR on the replaced stream").await {
        v1::event::Kind::Error(e) => assert!(e.message.contains("failed over"), "{e:?}"),
        other => panic!("expected ERROR, got {other:?}"),
    }
    let revive = v1::call_request::Kind::Revive(v1::call_request::Revive { roles: vec![] });
    let err = first.call(revive.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    second.call(revive).await.unwrap();
    // The new stream gets the agent offered again.
    assert_eq!(second.offers().await.len(), 1);
    m.master.shutdown().await;
}

#[tokio::test]
async fn an_agent_that_reconnects_reregisters_with_its_tasks_and_unacked_updates() {
    // Heartbeat checks stay out of the way: the fake agent never heartbeats.
    let m = start_with(|c| c.agent_timeout = Duration::from_secs(3600)).await;
    let mut agent = FakeAgent::register(m.channel.clone()).await;
    let mut fw = RawScheduler::subscribe(m.channel.clone()).await;
    let offers = fw.offers().await;
    fw.call(launch(&offers[0].id, vec![task("t1", 500)]))
        .await
        .unwrap();
    let v1::master_message::Kind::LaunchTasks(l) = agent.next("LaunchTasks").await else {
        panic!("expected LaunchTasks");
    };
    let agent_id = agent.id.clone();
    // The agent's stream breaks; it comes back on a new one.
    drop(agent);

    let running = v1::TaskStatus {
        task_id: "t1".into(),
        framework_id: fw.framework_id.clone(),
        agent_id: agent_id.clone(),
        state: v1::TaskState::Running as i32,
        reason: v1::Reason::Launched as i32,
        uuid: bytes::Bytes::from(vec![3u8; 16]),
        ..Default::default()
    };
    let rereg = v1::agent_message::ReRegister {
        agent_id: agent_id.clone(),
        agent_info: Some(v1::AgentInfo {
            hostname: "fake-host".into(),
            resources: Some(crate::util::resources(2000, 1 << 30)),
            ..Default::default()
        }),
        tasks: vec![v1::RunningTask {
            framework_id: fw.framework_id.clone(),
            task: Some(l.tasks[0].clone()),
            status: Some(running.clone()),
        }],
        unacknowledged_updates: vec![running],
        cached_modules: vec![],
        last_epoch: 1,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::Reregister(rereg)),
    })
    .await
    .unwrap();
    let mut link = corral_proto::limits::agent_link_client(m.channel.clone());
    let mut down = link
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    match crate::util::within("REGISTERED", down.message())
        .await
        .unwrap()
    {
        Some(v1::MasterMessage {
            kind: Some(v1::master_message::Kind::Registered(r)),
            ..
        }) => assert_eq!(r.agent_id, agent_id),
        other => panic!("expected REGISTERED, got {other:?}"),
    }
    // The unacknowledged update reaches the framework again.
    let u = fw.update().await;
    assert_eq!(
        (u.task_id.as_str(), u.state),
        ("t1", v1::TaskState::Running as i32)
    );
    // The task's resources stay accounted: the agent is offered only what is left.
    let offers = fw.offers().await;
    assert_eq!(offers[0].resources.as_ref().unwrap().cpus_milli, 1500);
    drop(tx);
    m.master.shutdown().await;
}

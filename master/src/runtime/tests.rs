//! The runtime with a real core and a gated registry, on tokio's paused clock.
use super::*;
use crate::core::{AgentInfo, CoreConfig, FrameworkInfo, OperatorRequest, RegistryWrite};
use crate::event_batch::{decode_event, next_message};
use crate::store::testing::GatedRegistry;
use corral_types::{FrameworkState, Resources, Role, Weight};
use tonic::Status;

fn config() -> CoreConfig {
    CoreConfig {
        master_id: "m".into(),
        epoch: 1,
        address: "127.0.0.1:5050".into(),
        started_at_unix_millis: 0,
        agent_heartbeat_interval: Duration::from_secs(1),
        // Long enough that the silent test agent is not lost meanwhile.
        agent_timeout: Duration::from_secs(3600),
        agent_reregister_timeout: Duration::from_secs(3600),
        framework_heartbeat_interval: Duration::from_secs(15),
        offer_timeout: None,
        allocation_interval: Duration::from_secs(1),
        max_output_bytes: 1 << 30,
        metrics: Arc::default(),
    }
}

fn kind(e: Option<Result<v1::Event, Status>>) -> v1::event::Kind {
    e.unwrap().unwrap().kind.unwrap()
}

#[tokio::test(start_paused = true)]
async fn offers_follow_changes_within_the_batching_window_and_heartbeats_flow() {
    let (stop, stopped) = oneshot::channel();
    let registry = Arc::new(GatedRegistry::open());
    let (core, task) = spawn(MasterCore::new(config()), registry.clone(), 64, stopped);
    let start = Instant::now();

    let (atx, mut arx) = core.stream();
    let info = AgentInfo {
        resources: Resources::new().with_cpus_milli(1000).with_mem_mib(64),
        ..AgentInfo::default()
    };
    core.open(
        Event::AgentRegister {
            conn: 1,
            info,
            cached_modules: vec![],
        },
        Sink::Agent(1, atx),
    )
    .await;
    let registered = arx.recv().await.unwrap().unwrap();
    assert!(matches!(
        registered.kind,
        Some(v1::master_message::Kind::Registered(_))
    ));

    let (ftx, mut frx) = core.stream();
    let info = FrameworkInfo {
        id: None,
        name: "f".into(),
        user: String::new(),
        roles: vec![Role::default_role()],
        failover_timeout: Duration::ZERO,
        labels: Default::default(),
        principal: None,
    };
    let reply = core
        .ask(
            Event::Subscribe {
                conn: 2,
                info,
                suppressed: vec![],
            },
            Some(Sink::Framework(2, ftx)),
        )
        .await
        .unwrap();
    assert_eq!(reply, Reply::Done(Ok(())));
    assert!(matches!(
        kind(frx.recv().await),
        v1::event::Kind::Subscribed(_)
    ));
    // The registration was allocated at once (after a quiet spell); the subscription came
    // within the batching window of that cycle, so its offers wait for the window's end.
    assert!(matches!(kind(frx.recv().await), v1::event::Kind::Offers(_)));
    assert_eq!(start.elapsed(), ALLOCATION_BATCH);
    // Then a heartbeat every 15 s.
    assert!(matches!(
        kind(frx.recv().await),
        v1::event::Kind::Heartbeat(_)
    ));
    assert!(start.elapsed() >= Duration::from_secs(15));

    // The agent and the framework were recorded, in one group commit or two.
    let written: Vec<RegistryWrite> = registry.batches().into_iter().flatten().collect();
    assert!(matches!(
        written[..],
        [RegistryWrite::Agent(_), RegistryWrite::Framework(_)]
    ));

    // Stopping the core ends every stream.
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(frx.recv().await.is_none());
    assert!(arx.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_framework_that_stops_reading_is_cut_off_and_disconnected_in_the_core() {
    let (_stop, stopped) = oneshot::channel();
    let registry = Arc::new(GatedRegistry::open());
    let (core, _task) = spawn(MasterCore::new(config()), registry, 8, stopped);
    let subscribe = |conn| Event::Subscribe {
        conn,
        info: FrameworkInfo {
            id: None,
            name: "f".into(),
            user: String::new(),
            roles: vec![Role::default_role()],
            failover_timeout: Duration::from_secs(3600),
            labels: Default::default(),
            principal: None,
        },
        suppressed: vec![],
    };
    let (slow_tx, mut slow) = core.stream();
    let reply = core
        .ask(subscribe(1), Some(Sink::Framework(1, slow_tx)))
        .await;
    assert_eq!(reply.unwrap(), Reply::Done(Ok(())));
    let (live_tx, mut live) = core.stream();
    let reply = core
        .ask(subscribe(2), Some(Sink::Framework(2, live_tx)))
        .await;
    assert_eq!(reply.unwrap(), Reply::Done(Ok(())));
    assert!(matches!(
        kind(live.recv().await),
        v1::event::Kind::Subscribed(_)
    ));

    // A heartbeat every 15 s: the reading framework sees them all; the other's queue of
    // 8 fills (SUBSCRIBED and 6 heartbeats), and the last slot ends its stream.
    for _ in 0..10 {
        assert!(matches!(
            kind(live.recv().await),
            v1::event::Kind::Heartbeat(_)
        ));
    }
    assert!(matches!(
        kind(slow.recv().await),
        v1::event::Kind::Subscribed(_)
    ));
    for _ in 0..6 {
        assert!(matches!(
            kind(slow.recv().await),
            v1::event::Kind::Heartbeat(_)
        ));
    }
    let end = slow.recv().await.unwrap().unwrap_err();
    assert_eq!(end.code(), tonic::Code::ResourceExhausted);
    assert!(
        end.message().contains("7 messages were left unread"),
        "{end}"
    );
    assert!(slow.recv().await.is_none());

    // The core treats it as a disconnection (it may re-subscribe within its failover
    // timeout); the other framework is untouched.
    let reply = core
        .ask(
            Event::Operator(OperatorRequest::ListFrameworks {
                include_completed: true,
                visible: crate::auth::Visibility::All,
            }),
            None,
        )
        .await
        .unwrap();
    let Reply::Operator(Ok(crate::core::OperatorResponse::Frameworks(frameworks))) = reply else {
        panic!("{reply:?}");
    };
    let states: Vec<_> = frameworks.iter().map(|f| f.state).collect();
    assert_eq!(
        states,
        [FrameworkState::Disconnected, FrameworkState::Active]
    );
}

fn set_weight(role: &str, w: f64) -> Event {
    Event::Operator(OperatorRequest::SetWeight {
        role: Role::new(role).unwrap(),
        weight: Weight::new(w).unwrap(),
    })
}

#[tokio::test(start_paused = true)]
async fn replies_wait_until_their_write_is_durable_and_writes_group_commit() {
    let (_stop, stopped) = oneshot::channel();
    let registry = Arc::new(GatedRegistry::closed());
    let (core, _task) = spawn(MasterCore::new(config()), registry.clone(), 64, stopped);

    let first = tokio::spawn({
        let core = core.clone();
        async move { core.ask(set_weight("a", 2.0), None).await }
    });
    // A read that follows the write waits for it too: nothing not durable is shown.
    let read = tokio::spawn({
        let core = core.clone();
        async move {
            core.ask(Event::Operator(OperatorRequest::GetRoles), None)
                .await
        }
    });
    let second = tokio::spawn({
        let core = core.clone();
        async move { core.ask(set_weight("b", 3.0), None).await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!first.is_finished() && !read.is_finished() && !second.is_finished());
    assert!(registry.batches().is_empty());

    // The first batch becomes durable: its reply and the read go; the second write,
    // collected while the first was in flight, is the next batch.
    registry.permits.add_permits(1);
    assert_eq!(
        first.await.unwrap(),
        Ok(Reply::Operator(Ok(crate::core::OperatorResponse::Done)))
    );
    let roles = read.await.unwrap().unwrap();
    assert!(matches!(
        roles,
        Reply::Operator(Ok(crate::core::OperatorResponse::Roles(_)))
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!second.is_finished());
    registry.permits.add_permits(1);
    assert!(second.await.unwrap().is_ok());
    let batches = registry.batches();
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert!(
        matches!(&batches[1][..], [RegistryWrite::Weight { role, .. }] if role.as_str() == "b")
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_stops_the_core_and_its_reply_is_never_sent() {
    let (_stop, stopped) = oneshot::channel();
    let registry = Arc::new(GatedRegistry::open());
    registry.fail.store(true, Ordering::SeqCst);
    let (core, task) = spawn(MasterCore::new(config()), registry.clone(), 64, stopped);
    let err = core.ask(set_weight("a", 2.0), None).await.unwrap_err();
    assert!(matches!(err, ServiceError::Unavailable(_)), "{err:?}");
    assert!(task.await.unwrap().is_err());
}

#[tokio::test(start_paused = true)]
async fn an_operator_subscriber_that_stops_reading_is_cut_off_and_the_others_go_on() {
    let (_stop, stopped) = oneshot::channel();
    let registry = Arc::new(GatedRegistry::open());
    let (core, _task) = spawn(MasterCore::new(config()), registry, 64, stopped);
    let subscribe = || Event::Operator(OperatorRequest::Subscribe { max_tasks: 0 });
    // Room for three events and the end.
    let (slow_tx, mut slow) = queue(4);
    core.ask(subscribe(), Some(Sink::Observer(1, slow_tx)))
        .await
        .unwrap();
    let (tx, mut reader) = queue(1024);
    core.ask(subscribe(), Some(Sink::Observer(2, tx)))
        .await
        .unwrap();

    let mut agents = Vec::new();
    for conn in 10..20 {
        let (atx, arx) = core.stream();
        agents.push(arx);
        let info = AgentInfo {
            resources: Resources::new().with_cpus_milli(1000).with_mem_mib(64),
            ..AgentInfo::default()
        };
        let event = Event::AgentRegister {
            conn,
            info,
            cached_modules: vec![],
        };
        core.open(event, Sink::Agent(conn, atx)).await;
        // Handled before the next: each agent added comes in a batch of its own.
        let state = Event::Operator(OperatorRequest::GetState { max_tasks: 0 });
        core.ask(state, None).await.unwrap();
    }
    // The reader sees every agent added, in order.
    let mut added = 0;
    while added < 10 {
        let Delivery { batch, from } = reader.recv().await.unwrap().unwrap();
        let mut messages = batch.messages(from..batch.events().len());
        while let Some(message) = next_message(&mut messages) {
            let event = decode_event(message.unwrap()).unwrap();
            assert!(
                matches!(event.event, Some(v1::operator_event::Event::AgentAdded(_))),
                "{event:?}"
            );
            added += 1;
        }
    }
    // The one that never read: what fitted, then the end, saying why.
    let mut fitted = 0;
    let status = loop {
        match slow.recv().await.unwrap() {
            Ok(Delivery { batch, from }) => fitted += batch.events().len() - from,
            Err(status) => break status,
        }
    };
    assert_eq!(fitted, 3);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(slow.recv().await.is_none());
}

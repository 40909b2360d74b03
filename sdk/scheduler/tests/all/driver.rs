//! The driver against a mock master: subscription, dispatch, calls, deduplication and
//! acknowledgement, reconnection and leader following.

use std::time::Duration;

use corral_proto::v1;
use corral_proto::v1::call_request::Kind;
use corral_scheduler::testkit::{MockMaster, OfferBuilder, StatusBuilder};
use corral_scheduler::{
    AgentId, Digest, FrameworkId, ModuleSource, OfferId, OperationState, OperationUpdate, SdkError,
    TaskId, TaskInfo, TaskLimits, TaskState,
};
use tonic::Code;

use crate::util::{Seen, config, spawn, subscribed, subscribed_with};

fn task(id: &str) -> TaskInfo {
    TaskInfo {
        id: TaskId::new(id).unwrap(),
        name: id.into(),
        module: ModuleSource::Digest(Digest::of(b"hello")),
        entrypoint: "_start".into(),
        args: vec!["hi".into()],
        env: Vec::new(),
        inputs: Vec::new(),
        resources: corral_scheduler::Resources::new().with_cpus_milli(100),
        limits: TaskLimits::default(),
        labels: Default::default(),
        argv0: None,
        preopens: Vec::new(),
        stdin: Default::default(),
        checkpoint: Default::default(),
        owner: None,
    }
}

fn offer_ids(ids: &[&str]) -> Vec<OfferId> {
    ids.iter().map(|i| OfferId::new(i).unwrap()).collect()
}

/// The acks of every Acknowledge call, waiting until `n` have arrived (non-ack calls are
/// ignored).
async fn acks(master: &MockMaster, n: usize) -> Vec<v1::Ack> {
    let mut acks = Vec::new();
    while acks.len() < n {
        if let Some(Kind::Acknowledge(a)) = master.next_call().await.kind {
            acks.extend(a.acks);
        }
    }
    acks
}

#[tokio::test]
async fn subscribe_reports_the_assigned_framework_id() {
    let master = MockMaster::start().await;
    let mut r = spawn(config(&master));
    let request = master.next_subscribe().await;
    let info = request.framework_info.unwrap();
    assert_eq!(info.id, None, "a new framework subscribes without an id");
    assert_eq!(info.name, "test-framework");
    assert_eq!(info.roles, ["*"]);
    assert_eq!(info.failover_timeout_millis, 60_000);
    assert_eq!(r.events.next().await, Seen::Subscribed("fw-1".into()));
    assert_eq!(
        r.driver.framework_id(),
        Some(FrameworkId::new("fw-1").unwrap())
    );
    assert!(r.driver.is_subscribed());
    r.stop().await;
}

#[tokio::test]
async fn a_configured_framework_id_fails_over() {
    let master = MockMaster::start().await;
    let mut c = config(&master);
    c.framework_id = Some(FrameworkId::new("fw-old").unwrap());
    let mut r = spawn(c);
    let info = master.next_subscribe().await.framework_info.unwrap();
    assert_eq!(info.id.as_deref(), Some("fw-old"));
    assert_eq!(r.events.next().await, Seen::Subscribed("fw-old".into()));
    r.stop().await;
}

#[tokio::test]
async fn update_roles_subscribes_again_at_once_in_the_new_roles() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    assert!(r.driver.update_roles(Vec::new()).is_err(), "no role at all");
    r.driver
        .update_roles(vec!["*".into(), "analytics".into()])
        .unwrap();
    let info = master.next_subscribe().await.framework_info.unwrap();
    assert_eq!(info.roles, ["*", "analytics"]);
    assert_eq!(info.id.as_deref(), Some("fw-1"), "the same framework");
    assert_eq!(r.events.next().await, Seen::Subscribed("fw-1".into()));
    assert_eq!(r.driver.roles(), ["*", "analytics"]);
    assert_eq!(master.subscriptions(), 2);
    r.stop().await;
}

#[tokio::test]
async fn offers_rescinds_and_agent_losses_are_dispatched() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    let offer = OfferBuilder::new("o1")
        .agent("a1")
        .cpus_milli(2000)
        .mem_mib(1024)
        .attribute("arch", "x86_64")
        .build();
    assert!(master.send_offers([offer.clone()]));
    let Seen::Offers(got) = r.events.next().await else {
        panic!("expected offers");
    };
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, offer.id);
    assert_eq!(got[0].attribute("arch"), Some("x86_64"));
    assert_eq!(got[0].resources, offer.resources);
    assert_eq!(got[0].framework_id.as_str(), "fw-1");

    master.send_rescind("o1");
    assert_eq!(r.events.next().await, Seen::Rescinded("o1".into()));
    master.send_agent_lost("a1");
    assert_eq!(r.events.next().await, Seen::AgentLost("a1".into()));
    r.stop().await;
}

#[tokio::test]
async fn operations_the_master_did_not_apply_reach_the_scheduler() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    let update = OperationUpdate {
        operation_id: "reserve-1".into(),
        index: 1,
        state: OperationState::Error,
        agent_id: Some(AgentId::new("a1").unwrap()),
        message: "reserve of cpus:10 to eng: not in what is left of the offers".into(),
    };
    assert!(master.send_operation_update(&update));
    assert_eq!(r.events.next().await, Seen::OperationFailed(update));
    r.stop().await;
}

#[tokio::test]
async fn launch_sends_one_accept_with_every_task() {
    let master = MockMaster::start().await;
    let r = subscribed(&master).await;
    r.driver
        .launch(&offer_ids(&["o1", "o2"]), vec![task("t1"), task("t2")])
        .await
        .unwrap();
    let call = master.next_call().await;
    assert_eq!(call.framework_id, "fw-1");
    assert_eq!(Some(call.stream_id), master.stream_id());
    let Some(Kind::Accept(accept)) = call.kind else {
        panic!("expected ACCEPT, got {:?}", call.kind);
    };
    assert_eq!(accept.offer_ids, ["o1", "o2"]);
    assert_eq!(accept.operations.len(), 1);
    let Some(v1::operation::Kind::Launch(launch)) = &accept.operations[0].kind else {
        panic!("expected LAUNCH");
    };
    let tasks: Vec<TaskInfo> = launch
        .tasks
        .iter()
        .map(|t| TaskInfo::try_from(t).unwrap())
        .collect();
    assert_eq!(tasks, [task("t1"), task("t2")]);
    r.stop().await;
}

#[tokio::test]
async fn a_rate_limited_call_is_sent_again_when_the_master_says() {
    let master = MockMaster::start().await;
    let r = subscribed(&master).await;
    master.fail_next_call(tonic::Status::from(
        corral_proto::ServiceError::RateLimited {
            message: "principal alice is over its rate".into(),
            retry_after: Duration::from_millis(20),
        },
    ));
    r.driver
        .launch(&offer_ids(&["o1"]), vec![task("t1")])
        .await
        .expect("the second attempt is accepted");
    let first = master.next_call().await;
    let second = master.next_call().await;
    assert_eq!(first, second, "the same call, sent again");
    assert!(matches!(second.kind, Some(Kind::Accept(_))));
    r.stop().await;
}

#[tokio::test]
async fn a_quota_refusal_is_not_retried() {
    let master = MockMaster::start().await;
    let r = subscribed(&master).await;
    master.fail_next_call(tonic::Status::resource_exhausted("over the role's quota"));
    let refused = r
        .driver
        .launch(&offer_ids(&["o1"]), vec![task("t1")])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("quota"), "{refused}");
    master.next_call().await;
    assert_eq!(
        master.next_call_within(Duration::from_millis(100)).await,
        None
    );
    r.stop().await;
}

#[tokio::test]
async fn decline_carries_refuse_seconds() {
    let master = MockMaster::start().await;
    let r = subscribed(&master).await;
    r.driver
        .decline(&offer_ids(&["o1", "o2"]), Duration::from_millis(30_500))
        .await
        .unwrap();
    let Some(Kind::Decline(decline)) = master.next_call().await.kind else {
        panic!("expected DECLINE");
    };
    assert_eq!(decline.offer_ids, ["o1", "o2"]);
    assert_eq!(decline.filters.unwrap().refuse_seconds, Some(30.5));
    r.stop().await;
}

#[tokio::test]
async fn duplicate_updates_are_delivered_and_acknowledged_once() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    let running = StatusBuilder::new("t1", TaskState::Running)
        .agent("a1")
        .uuid([1; 16])
        .build();
    let finished = StatusBuilder::new("t1", TaskState::Finished)
        .agent("a1")
        .uuid([2; 16])
        .build();
    master.send_update(&running);
    master.send_update(&running);
    master.send_update(&finished);

    let Seen::Update(first) = r.events.next().await else {
        panic!("expected an update");
    };
    assert_eq!(first.state, TaskState::Running);
    let Seen::Update(second) = r.events.next().await else {
        panic!("expected an update");
    };
    assert_eq!(second.state, TaskState::Finished);
    r.events.assert_empty();

    // Acks go out in order, so once the second update's ack is in, a duplicate ack of the
    // first would have been seen.
    let acks = acks(&master, 2).await;
    let uuids: Vec<&[u8]> = acks.iter().map(|a| &a.uuid[..]).collect();
    assert_eq!(uuids, [&[1u8; 16][..], &[2u8; 16][..]]);
    assert!(acks.iter().all(|a| a.task_id == "t1" && a.agent_id == "a1"));
    r.stop().await;
}

#[tokio::test]
async fn updates_without_uuid_are_delivered_every_time_and_not_acknowledged() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    let answer = StatusBuilder::new("t1", TaskState::Running)
        .without_uuid()
        .build();
    master.send_update(&answer);
    master.send_update(&answer);
    assert_eq!(r.events.next().await, Seen::Update(answer.clone()));
    assert_eq!(r.events.next().await, Seen::Update(answer));
    // A later call proves no ack went out before it.
    r.driver.revive(&[]).await.unwrap();
    assert!(matches!(
        master.next_call().await.kind,
        Some(Kind::Revive(_))
    ));
    r.stop().await;
}

#[tokio::test]
async fn manual_acknowledgement_sends_nothing_until_asked() {
    let master = MockMaster::start().await;
    let mut c = config(&master);
    c.auto_acknowledge = false;
    let mut r = subscribed_with(&master, c).await;
    let status = StatusBuilder::new("t1", TaskState::Finished).build();
    master.send_update(&status);
    let Seen::Update(got) = r.events.next().await else {
        panic!("expected an update");
    };
    r.driver.suppress(&["*".into()]).await.unwrap();
    let Some(Kind::Suppress(s)) = master.next_call().await.kind else {
        panic!("an ack was sent before the suppress");
    };
    assert_eq!(s.roles, ["*"]);
    r.driver.acknowledge(&got).await.unwrap();
    let acks = acks(&master, 1).await;
    assert_eq!(&acks[0].uuid[..], status.uuid.unwrap().as_bytes());
    r.stop().await;
}

#[tokio::test]
async fn stream_drop_reconnects_with_the_same_framework_id() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    master.drop_stream();
    let info = master.next_subscribe().await.framework_info.unwrap();
    assert_eq!(info.id.as_deref(), Some("fw-1"));
    assert_eq!(r.events.next().await, Seen::Subscribed("fw-1".into()));
    assert_eq!(master.subscriptions(), 2);
    // Calls use the new stream.
    r.driver.revive(&[]).await.unwrap();
    let call = master.next_call().await;
    assert_eq!(call.stream_id, "stream-2");
    r.stop().await;
}

#[tokio::test]
async fn redelivery_after_reconnection_is_acknowledged_but_not_delivered() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    let status = StatusBuilder::new("t1", TaskState::Running).build();
    master.send_update(&status);
    assert!(matches!(r.events.next().await, Seen::Update(_)));
    acks(&master, 1).await;
    master.drop_stream();
    master.next_subscribe().await;
    assert!(matches!(r.events.next().await, Seen::Subscribed(_)));
    // The master did not get the ack (as far as the driver knows) and redelivers.
    master.send_update(&status);
    let again = acks(&master, 1).await;
    assert_eq!(&again[0].uuid[..], status.uuid.unwrap().as_bytes());
    r.events.assert_empty();
    r.stop().await;
}

#[tokio::test]
async fn heartbeat_silence_triggers_a_reconnection() {
    // 3 × 50 ms of silence is a dead stream.
    let master = MockMaster::with_heartbeat(Duration::from_millis(50)).await;
    let mut r = subscribed(&master).await;
    let info = master.next_subscribe().await.framework_info.unwrap();
    assert_eq!(info.id.as_deref(), Some("fw-1"));
    assert_eq!(r.events.next().await, Seen::Subscribed("fw-1".into()));
    r.stop().await;
}

#[tokio::test]
async fn refused_subscriptions_retry_transient_failures() {
    let master = MockMaster::start().await;
    master.fail_next_subscribe(tonic::Status::unavailable("starting up"));
    let mut r = spawn(config(&master));
    master.next_subscribe().await; // refused
    master.next_subscribe().await; // retried after backoff
    assert_eq!(r.events.next().await, Seen::Subscribed("fw-1".into()));
    r.stop().await;
}

#[tokio::test]
async fn invalid_subscriptions_end_run_with_the_rejection() {
    let master = MockMaster::start().await;
    master.fail_next_subscribe(tonic::Status::invalid_argument("roles[0]: bad role"));
    let mut r = spawn(config(&master));
    let Seen::Error(message) = r.events.next().await else {
        panic!("expected an error callback");
    };
    assert!(message.contains("bad role"), "{message}");
    let result = r.done.await.unwrap();
    assert!(
        matches!(
            result,
            Err(SdkError::Rejected {
                code: Code::InvalidArgument,
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_standby_master_redirects_to_the_leader() {
    let leader = MockMaster::start().await;
    let standby = MockMaster::start().await;
    standby.set_not_leader(Some(leader.address()));
    let mut r = spawn(config(&standby));
    standby.next_subscribe().await;
    leader.next_subscribe().await;
    assert_eq!(r.events.next().await, Seen::Subscribed("fw-1".into()));
    assert_eq!(standby.subscriptions(), 0);
    r.stop().await;
}

#[tokio::test]
async fn losing_leadership_mid_stream_moves_to_the_new_leader() {
    let old = MockMaster::start().await;
    let new = MockMaster::start().await;
    let mut r = subscribed(&old).await;
    let status: tonic::Status = corral_proto::ServiceError::NotLeader {
        leader: Some(new.address()),
    }
    .into();
    old.fail_stream(status);
    let info = new.next_subscribe().await.framework_info.unwrap();
    assert_eq!(info.id.as_deref(), Some("fw-1"), "fails over with its id");
    assert_eq!(r.events.next().await, Seen::Subscribed("fw-1".into()));
    assert_eq!(old.subscriptions(), 1);
    r.stop().await;
}

#[tokio::test]
async fn calls_on_a_stale_stream_are_rejected() {
    let master = MockMaster::start().await;
    let r = subscribed(&master).await;
    master.rotate_stream_id();
    let err = r
        .driver
        .kill(&TaskId::new("t1").unwrap(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::Rejected {
                code: Code::FailedPrecondition,
                ..
            }
        ),
        "{err:?}"
    );
    r.stop().await;
}

#[tokio::test]
async fn the_store_reads_writes_and_compares_versions() {
    let master = MockMaster::start().await;
    let r = subscribed(&master).await;
    let d = &r.driver;
    assert_eq!(d.store_get("jobs/a").await.unwrap(), None);
    let v1 = d
        .store_put("jobs/a", &b"spec-a"[..], Some(0))
        .await
        .unwrap();
    let v2 = d.store_put("jobs/b", &b"spec-b"[..], None).await.unwrap();
    d.store_put("other", &b"x"[..], None).await.unwrap();
    assert!(v2 > v1);
    let a = d.store_get("jobs/a").await.unwrap().unwrap();
    assert_eq!((&a.value[..], a.version), (&b"spec-a"[..], v1));
    let listed: Vec<_> = d.store_list("jobs/").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["jobs/a", "jobs/b"]);
    // A write that expects an older version is refused.
    let err = d
        .store_put("jobs/a", &b"late"[..], Some(0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::Rejected {
                code: Code::FailedPrecondition,
                ..
            }
        ),
        "{err:?}"
    );
    d.store_delete("jobs/a", Some(v1)).await.unwrap();
    assert_eq!(d.store_get("jobs/a").await.unwrap(), None);
    r.stop().await;
}

#[tokio::test]
async fn calls_before_subscription_fail_with_not_subscribed() {
    let master = MockMaster::start().await;
    master.set_not_leader(None);
    let r = spawn(config(&master));
    master.next_subscribe().await;
    let err = r.driver.revive(&[]).await.unwrap_err();
    assert_eq!(err, SdkError::NotSubscribed);
    r.stop().await;
}

#[tokio::test]
async fn kill_reconcile_and_teardown_are_well_formed() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    let t1 = TaskId::new("t1").unwrap();
    let a1 = AgentId::new("a1").unwrap();
    r.driver.kill(&t1, Some(&a1)).await.unwrap();
    let Some(Kind::Kill(kill)) = master.next_call().await.kind else {
        panic!("expected KILL");
    };
    assert_eq!(
        (kill.task_id.as_str(), kill.agent_id.as_deref()),
        ("t1", Some("a1"))
    );

    r.driver.reconcile(&[]).await.unwrap();
    let Some(Kind::Reconcile(implicit)) = master.next_call().await.kind else {
        panic!("expected RECONCILE");
    };
    assert!(implicit.tasks.is_empty());
    r.driver
        .reconcile(&[(t1.clone(), None), (TaskId::new("t2").unwrap(), Some(a1))])
        .await
        .unwrap();
    let Some(Kind::Reconcile(explicit)) = master.next_call().await.kind else {
        panic!("expected RECONCILE");
    };
    let tasks: Vec<_> = explicit
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.agent_id.as_deref()))
        .collect();
    assert_eq!(tasks, [("t1", None), ("t2", Some("a1"))]);

    r.driver.teardown().await.unwrap();
    assert!(matches!(
        master.next_call().await.kind,
        Some(Kind::Teardown(_))
    ));
    // Teardown ends `run` cleanly.
    assert_eq!(r.done.await.unwrap(), Ok(()));
    r.events.assert_empty();
}

#[tokio::test]
async fn an_error_event_ends_run_with_framework_removed() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    master.send_error("failover timeout passed");
    assert_eq!(
        r.events.next().await,
        Seen::Error("failover timeout passed".into())
    );
    assert_eq!(
        r.done.await.unwrap(),
        Err(SdkError::FrameworkRemoved("failover timeout passed".into()))
    );
    assert_eq!(master.subscriptions(), 1);
}

#[tokio::test]
async fn failed_acknowledgements_are_retried_on_redelivery() {
    let master = MockMaster::start().await;
    let mut r = subscribed(&master).await;
    let status = StatusBuilder::new("t1", TaskState::Running).build();
    master.fail_next_call(tonic::Status::internal("store hiccup"));
    master.send_update(&status);
    assert!(matches!(r.events.next().await, Seen::Update(_)));
    acks(&master, 1).await; // refused
    // The driver forgets the ack once the refusal reaches it; until then a redelivery on
    // the same stream is dropped. The master redelivers until acknowledged.
    let mut again = None;
    for _ in 0..50 {
        master.send_update(&status);
        if let Some(call) = master.next_call_within(Duration::from_millis(100)).await {
            again = Some(call);
            break;
        }
    }
    let Some(Kind::Acknowledge(again)) = again.and_then(|c| c.kind) else {
        panic!("the redelivery was never acknowledged");
    };
    assert_eq!(&again.acks[0].uuid[..], status.uuid.unwrap().as_bytes());
    r.events.assert_empty();
    r.stop().await;
}

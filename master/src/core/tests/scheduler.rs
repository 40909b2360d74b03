//! Scheduler calls: accept, decline, revive, acknowledge, reconcile, kill, stream checks.

use super::*;

#[test]
fn accept_launches_on_the_agent_and_returns_leftovers() {
    let (mut core, agent, fw, stream, offer) = offered();
    let fx = call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 128)]),
        ms(2),
    );
    let msgs = agent_msgs(&fx);
    assert_eq!(msgs.len(), 1, "{fx:?}");
    let v1::master_message::Kind::LaunchTasks(l) = &msgs[0] else {
        panic!("expected LaunchTasks: {msgs:?}");
    };
    assert_eq!(l.framework_id, fw.to_string());
    assert_eq!(l.tasks[0].task_id, "t1");
    assert!(fx.contains(&Effect::AllocateSoon));
    assert_eq!(fx.last(), Some(&Effect::Reply(Reply::Done(Ok(())))));
    let t = &core.tasks[&(fw.clone(), TaskId::new("t1").unwrap())];
    assert_eq!(t.status.state, TaskState::Staging);
    assert_eq!(t.agent.as_ref(), Some(&agent));
    // Leftovers are filtered for 5 s: nothing is offered meanwhile, then the rest is.
    assert!(offers(&core.handle(Event::Allocate, ms(3))).is_empty());
    let o = offers(&tick(&mut core, ms(5003)));
    assert_eq!(o[0].resources.as_ref().unwrap().cpus_milli, 3000);
}

#[test]
fn bad_accepts_answer_with_task_updates_not_errors() {
    let (mut core, _, fw, stream, offer) = offered();
    // Unknown offer: the task is DROPPED with INVALID_OFFER.
    let fx = call(
        &mut core,
        &fw,
        &stream,
        accept("nope", vec![task("t0", 100, 1)]),
        ms(2),
    );
    let u = updates(&fx);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, v1::TaskState::Dropped as i32);
    assert_eq!(u[0].reason, v1::Reason::InvalidOffer as i32);
    assert!(u[0].message.contains("unknown"), "{}", u[0].message);
    assert_eq!(fx.last(), Some(&Effect::Reply(Reply::Done(Ok(())))));

    // Invalid spec, duplicate ID, too much: ERROR with INVALID_TASK; the valid one launches.
    let mut bad = task("bad", 100, 1);
    bad.info = Err("task.resources: required field is missing".into());
    let tasks = vec![
        bad,
        task("ok", 1000, 1),
        task("ok", 1000, 1),
        task("huge", 100_000, 1),
    ];
    let fx = call(&mut core, &fw, &stream, accept(&offer, tasks), ms(3));
    let u = updates(&fx);
    let got: Vec<_> = u
        .iter()
        .map(|s| (s.task_id.as_str(), s.state, s.reason))
        .collect();
    let err = (v1::TaskState::Error as i32, v1::Reason::InvalidTask as i32);
    assert_eq!(
        got,
        vec![
            ("bad", err.0, err.1),
            ("ok", err.0, err.1),
            ("huge", err.0, err.1)
        ]
    );
    assert!(u[1].message.contains("already in use"));
    assert!(u[2].message.contains("not available"));
    let launched = agent_msgs(&fx);
    assert!(
        matches!(&launched[..], [v1::master_message::Kind::LaunchTasks(l)] if l.tasks.len() == 1)
    );
    // The offer was used up: accepting it again drops the task.
    let fx = call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("again", 100, 1)]),
        ms(4),
    );
    assert_eq!(updates(&fx)[0].state, v1::TaskState::Dropped as i32);
}

#[test]
fn declined_resources_are_not_reoffered_before_refuse_seconds() {
    let (mut core, _, fw, stream, offer) = offered();
    let decline = Call::Decline {
        offer_ids: vec![OfferId::new(&offer).unwrap()],
        refuse: Duration::from_secs(10),
    };
    let fx = call(&mut core, &fw, &stream, decline, ms(2));
    assert_eq!(
        fx,
        vec![Effect::AllocateSoon, Effect::Reply(Reply::Done(Ok(())))]
    );
    assert!(offers(&core.handle(Event::Allocate, ms(3))).is_empty());
    assert!(offers(&tick(&mut core, ms(4000))).is_empty());
    assert!(offers(&tick(&mut core, ms(9000))).is_empty());
    assert_eq!(offers(&tick(&mut core, ms(10_003))).len(), 1);
}

#[test]
fn revive_clears_decline_filters() {
    let (mut core, _, fw, stream, offer) = offered();
    let decline = Call::Decline {
        offer_ids: vec![OfferId::new(&offer).unwrap()],
        refuse: Duration::from_secs(100),
    };
    call(&mut core, &fw, &stream, decline, ms(2));
    assert!(offers(&core.handle(Event::Allocate, ms(3))).is_empty());
    call(
        &mut core,
        &fw,
        &stream,
        Call::Revive { roles: vec![] },
        ms(4),
    );
    assert_eq!(offers(&core.handle(Event::Allocate, ms(5))).len(), 1);
}

#[test]
fn status_updates_are_forwarded_and_acks_reach_the_agent() {
    let (mut core, agent, fw, stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
    let fx = agent_status(&mut core, &fw, "t1", TaskState::Running, 7, ms(3));
    let u = updates(&fx);
    assert_eq!(u[0].state, v1::TaskState::Running as i32);
    assert_eq!(u[0].uuid, Bytes::from(vec![7u8; 16]));
    let ack = Call::Acknowledge {
        acks: vec![Ack {
            agent_id: Some(agent.clone()),
            task_id: TaskId::new("t1").unwrap(),
            uuid: UpdateUuid::from_bytes([7; 16]),
        }],
    };
    let fx = call(&mut core, &fw, &stream, ack, ms(4));
    assert_eq!(
        agent_msgs(&fx),
        vec![v1::master_message::Kind::Acknowledge(
            v1::master_message::Acknowledge {
                framework_id: fw.to_string(),
                task_id: "t1".into(),
                uuid: Bytes::from(vec![7u8; 16]),
            }
        )]
    );
}

#[test]
fn terminal_updates_free_resources_for_new_offers() {
    let (mut core, _, fw, stream, offer) = offered();
    let accept = Call::Accept {
        offer_ids: vec![OfferId::new(&offer).unwrap()],
        operations: vec![Operation::Launch(vec![task("t1", 4000, 4096)])],
        refuse: Duration::ZERO,
    };
    call(&mut core, &fw, &stream, accept, ms(2));
    assert!(offers(&core.handle(Event::Allocate, ms(3))).is_empty());
    let fx = agent_status(&mut core, &fw, "t1", TaskState::Finished, 2, ms(4));
    assert!(fx.contains(&Effect::AllocateSoon));
    let o = offers(&core.handle(Event::Allocate, ms(5)));
    assert_eq!(o[0].resources.as_ref().unwrap().cpus_milli, 4000);
    core.check_invariants();
}

#[test]
fn reconcile_explicit_and_implicit() {
    let (mut core, _, fw, stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
    agent_status(&mut core, &fw, "t1", TaskState::Running, 1, ms(3));
    let fx = call(
        &mut core,
        &fw,
        &stream,
        Call::Reconcile { tasks: vec![] },
        ms(4),
    );
    let u = updates(&fx);
    assert_eq!(u.len(), 1);
    assert_eq!(
        (u[0].task_id.as_str(), u[0].state),
        ("t1", v1::TaskState::Running as i32)
    );
    assert_eq!(u[0].reason, v1::Reason::Reconciliation as i32);
    assert!(u[0].uuid.is_empty());
    let tasks = vec![
        (TaskId::new("t1").unwrap(), None),
        (TaskId::new("ghost").unwrap(), None),
    ];
    let u = updates(&call(
        &mut core,
        &fw,
        &stream,
        Call::Reconcile { tasks },
        ms(5),
    ));
    let got: Vec<_> = u.iter().map(|s| (s.task_id.as_str(), s.state)).collect();
    assert_eq!(
        got,
        vec![
            ("t1", v1::TaskState::Running as i32),
            ("ghost", v1::TaskState::Unknown as i32)
        ]
    );
}

#[test]
fn kill_of_an_unknown_task_answers_lost_and_a_known_one_goes_to_the_agent() {
    let (mut core, _, fw, stream, offer) = offered();
    let fx = call(
        &mut core,
        &fw,
        &stream,
        Call::Kill {
            task_id: TaskId::new("ghost").unwrap(),
            agent_id: None,
        },
        ms(2),
    );
    let u = updates(&fx);
    assert_eq!(
        (u[0].task_id.as_str(), u[0].state),
        ("ghost", v1::TaskState::Lost as i32)
    );
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(3),
    );
    let fx = call(
        &mut core,
        &fw,
        &stream,
        Call::Kill {
            task_id: TaskId::new("t1").unwrap(),
            agent_id: None,
        },
        ms(4),
    );
    assert!(
        matches!(&agent_msgs(&fx)[..], [v1::master_message::Kind::KillTask(k)] if k.task_id == "t1")
    );
}

#[test]
fn calls_check_framework_and_stream() {
    let (mut core, _, fw, _, _) = offered();
    let fx = call(
        &mut core,
        &fw,
        "stale",
        Call::Suppress { roles: vec![] },
        ms(2),
    );
    assert!(matches!(
        &fx[..],
        [Effect::Reply(Reply::Done(Err(
            ServiceError::FailedPrecondition(_)
        )))]
    ));
    let other = FrameworkId::new("nobody").unwrap();
    let fx = call(&mut core, &other, "x", Call::Teardown, ms(2));
    assert!(matches!(
        &fx[..],
        [Effect::Reply(Reply::Done(Err(
            ServiceError::NotFound { .. }
        )))]
    ));
}

#[test]
fn offers_are_rescinded_on_timeout_and_heartbeats_are_sent() {
    let mut core = MasterCore::new(CoreConfig {
        offer_timeout: Some(Duration::from_secs(2)),
        ..config()
    });
    register(&mut core, ms(0));
    subscribe(&mut core, FW, None, Duration::ZERO, ms(0));
    let offer = offers(&core.handle(Event::Allocate, ms(1)))[0].id.clone();
    let fx = core.handle(Event::Tick, ms(2001));
    assert!(
        events(&fx)
            .iter()
            .any(|e| matches!(e, v1::event::Kind::Rescind(r) if r.offer_id == offer))
    );
    let fx = core.handle(Event::Tick, ms(15_000));
    assert!(
        events(&fx)
            .iter()
            .any(|e| matches!(e, v1::event::Kind::Heartbeat(_)))
    );
    core.check_invariants();
}

#[test]
fn suppress_stops_offers_until_revive_and_teardown_removes_the_framework() {
    let (mut core, _, fw, stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &stream,
        Call::Suppress { roles: vec![] },
        ms(2),
    );
    let decline = Call::Decline {
        offer_ids: vec![OfferId::new(&offer).unwrap()],
        refuse: Duration::ZERO,
    };
    call(&mut core, &fw, &stream, decline, ms(3));
    assert!(offers(&core.handle(Event::Allocate, ms(4))).is_empty());
    call(
        &mut core,
        &fw,
        &stream,
        Call::Revive { roles: vec![] },
        ms(5),
    );
    let o = offers(&core.handle(Event::Allocate, ms(6)));
    assert_eq!(o.len(), 1);
    let accept_call = accept(&o[0].id, vec![task("t1", 1000, 1)]);
    call(&mut core, &fw, &stream, accept_call, ms(7));

    let fx = call(&mut core, &fw, &stream, Call::Teardown, ms(8));
    assert!(
        matches!(&agent_msgs(&fx)[..], [v1::master_message::Kind::KillTask(k)] if k.task_id == "t1")
    );
    assert!(
        events(&fx)
            .iter()
            .any(|e| matches!(e, v1::event::Kind::Error(_)))
    );
    assert!(fx.contains(&Effect::CloseFramework { conn: FW }));
    assert_eq!(fx.last(), Some(&Effect::Reply(Reply::Done(Ok(())))));
    assert_eq!(core.frameworks[&fw].state, FrameworkState::Completed);
    // Its calls are refused from now on.
    let fx = call(
        &mut core,
        &fw,
        &stream,
        Call::Revive { roles: vec![] },
        ms(9),
    );
    assert!(matches!(
        &fx[..],
        [Effect::Reply(Reply::Done(Err(
            ServiceError::FailedPrecondition(_)
        )))]
    ));
}

fn operator_kill(core: &mut MasterCore, task: &str, now: Timestamp) -> Vec<Effect> {
    let fx = core.handle(
        Event::Operator(OperatorRequest::KillTask {
            task: TaskId::new(task).unwrap(),
            framework: None,
        }),
        now,
    );
    core.check_invariants();
    fx
}

#[test]
fn operator_kill_goes_to_the_agent_and_refuses_unknown_and_finished_tasks() {
    let (mut core, agent, fw, stream, offer) = offered();
    let fx = operator_kill(&mut core, "ghost", ms(2));
    assert!(matches!(
        &fx[..],
        [Effect::Reply(Reply::Operator(Err(
            ServiceError::NotFound { .. }
        )))]
    ));

    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(3),
    );
    let fx = operator_kill(&mut core, "t1", ms(4));
    assert!(
        matches!(&agent_msgs(&fx)[..], [v1::master_message::Kind::KillTask(k)] if k.task_id == "t1" && k.framework_id == fw.as_str()),
        "{fx:?}"
    );
    assert!(fx.contains(&Effect::Reply(Reply::Operator(Ok(
        OperatorResponse::Killed {
            framework: fw.clone(),
            agent
        }
    )))));

    agent_status(&mut core, &fw, "t1", TaskState::Killed, 1, ms(5));
    let fx = operator_kill(&mut core, "t1", ms(6));
    assert!(
        matches!(
            &fx[..],
            [Effect::Reply(Reply::Operator(Err(ServiceError::FailedPrecondition(m))))] if m.contains("KILLED")
        ),
        "{fx:?}"
    );
}

//! Scheduler calls: accept, decline, revive, acknowledge, reconcile, kill, stream checks.

use super::*;

fn info_of(t: &LaunchTask) -> TaskInfo {
    t.info.clone().unwrap()
}

fn offer_id(id: &str) -> OfferId {
    OfferId::new(id).unwrap()
}

#[test]
fn accept_launches_on_the_agent_and_returns_leftovers() {
    let (mut core, agent, fw, stream, offer) = offered();
    let t1 = task("t1", 1000, 128);
    let fx = call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![t1.clone()]),
        ms(2),
    );
    assert_eq!(
        fx,
        vec![
            to_agent(AgentCommand::Launch {
                framework: fw.clone(),
                tasks: vec![info_of(&t1)],
            }),
            Effect::AllocateSoon,
            done(),
        ]
    );
    let t = core
        .tasks
        .get(&(fw.clone(), TaskId::new("t1").unwrap()))
        .unwrap();
    assert_eq!(t.status.state, TaskState::Staging);
    assert_eq!(t.agent(), Some(&agent));
    // Leftovers are filtered for 5 s: nothing is offered meanwhile, then the rest is.
    assert_eq!(core.handle(Event::Allocate, ms(3)), vec![]);
    let o = offers(&tick(&mut core, ms(5003)));
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].resources.total(), res(3000, 4096 - 128));
}

#[test]
fn bad_accepts_answer_with_task_updates_not_errors() {
    let (mut core, agent, fw, stream, offer) = offered();
    // Unknown offer: the task is DROPPED with INVALID_OFFER.
    let fx = call(
        &mut core,
        &fw,
        &stream,
        accept(&offer_id("nope"), vec![task("t0", 100, 1)]),
        ms(2),
    );
    assert_eq!(
        fx,
        vec![
            to_fw(FrameworkEvent::Update(from_master(
                &fw,
                "t0",
                None,
                (TaskState::Dropped, Reason::InvalidOffer),
                "offer nope is unknown, expired or already used",
                ms(2),
            ))),
            done(),
        ]
    );

    // Invalid spec, duplicate ID, too much: ERROR with INVALID_TASK; the valid one launches.
    let mut bad = task("bad", 100, 1);
    bad.info = Err("task.resources: required field is missing".into());
    let ok = task("ok", 1000, 1);
    let tasks = vec![bad, ok.clone(), ok.clone(), task("huge", 100_000, 1)];
    let fx = call(&mut core, &fw, &stream, accept(&offer, tasks), ms(3));
    let invalid = |id: &str, why: &str| {
        to_fw(FrameworkEvent::Update(from_master(
            &fw,
            id,
            Some(&agent),
            (TaskState::Error, Reason::InvalidTask),
            why,
            ms(3),
        )))
    };
    assert_eq!(
        fx,
        vec![
            invalid("bad", "task.resources: required field is missing"),
            invalid("ok", "task id ok is already in use"),
            invalid(
                "huge",
                "task resources cpus:100;mem:1MiB are not available in the offers (left: \
                 cpus:3;mem:4095MiB)"
            ),
            to_agent(AgentCommand::Launch {
                framework: fw.clone(),
                tasks: vec![info_of(&ok)],
            }),
            Effect::AllocateSoon,
            done(),
        ]
    );
    // The offer was used up: accepting it again drops the task.
    let fx = call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("again", 100, 1)]),
        ms(4),
    );
    let why = format!("offer {offer} is unknown, expired or already used");
    assert_eq!(
        fx,
        vec![
            to_fw(FrameworkEvent::Update(from_master(
                &fw,
                "again",
                None,
                (TaskState::Dropped, Reason::InvalidOffer),
                &why,
                ms(4),
            ))),
            done(),
        ]
    );
}

#[test]
fn a_refused_reserve_in_an_accept_reaches_the_framework_and_the_launch_still_runs() {
    let (mut core, agent, fw, stream, offer) = offered();
    let role = Role::new("eng").unwrap();
    let t1 = task("t1", 1000, 1);
    let accept = Call::Accept {
        offer_ids: vec![offer.clone()],
        operations: vec![
            Operation::Launch(vec![t1.clone()]),
            // More than the offer holds.
            Operation::Reserve {
                id: "r1".into(),
                role: role.clone(),
                resources: res(10_000, 0),
            },
            // Nothing is reserved to unreserve.
            Operation::Unreserve {
                id: "u1".into(),
                role,
                resources: res(1, 0),
            },
        ],
        refuse: Duration::ZERO,
        artifacts: Visibility::All.into(),
    };
    let fx = call(&mut core, &fw, &stream, accept, ms(2));
    assert_eq!(
        fx,
        vec![
            to_fw(FrameworkEvent::OperationFailed(OperationUpdate {
                operation_id: "r1".into(),
                index: 1,
                state: corral_types::OperationState::Error,
                agent_id: Some(agent.clone()),
                message: "reserve of cpus:10 to eng: not in what is left of the offers".into(),
            })),
            to_fw(FrameworkEvent::OperationFailed(OperationUpdate {
                operation_id: "u1".into(),
                index: 2,
                state: corral_types::OperationState::Error,
                agent_id: Some(agent),
                message: "unreserve of cpus:0.001 from eng: not in the offers' reserved part"
                    .into(),
            })),
            to_agent(AgentCommand::Launch {
                framework: fw.clone(),
                tasks: vec![info_of(&t1)],
            }),
            Effect::AllocateSoon,
            done(),
        ]
    );
}

#[test]
fn operations_of_an_invalid_accept_are_dropped() {
    let (mut core, _, fw, stream, offer) = offered();
    let accept = Call::Accept {
        offer_ids: vec![offer.clone(), offer.clone()],
        operations: vec![Operation::Reserve {
            id: "r1".into(),
            role: Role::new("eng").unwrap(),
            resources: res(1000, 0),
        }],
        refuse: Duration::ZERO,
        artifacts: Visibility::All.into(),
    };
    let fx = call(&mut core, &fw, &stream, accept, ms(2));
    let why = format!("offer {offer} is named twice");
    assert_eq!(
        fx,
        vec![
            // The offer goes back to the allocator, unfiltered.
            Effect::AllocateSoon,
            to_fw(FrameworkEvent::OperationFailed(OperationUpdate {
                operation_id: "r1".into(),
                index: 0,
                state: corral_types::OperationState::Dropped,
                agent_id: None,
                message: why,
            })),
            done(),
        ]
    );
    assert_eq!(offers(&core.handle(Event::Allocate, ms(3))).len(), 1);
}

#[test]
fn declined_resources_are_not_reoffered_before_refuse_seconds() {
    let (mut core, _, fw, stream, offer) = offered();
    let decline = Call::Decline {
        offer_ids: vec![offer],
        refuse: Duration::from_secs(10),
    };
    let fx = call(&mut core, &fw, &stream, decline, ms(2));
    assert_eq!(fx, vec![Effect::AllocateSoon, done()]);
    assert_eq!(core.handle(Event::Allocate, ms(3)), vec![]);
    assert!(offers(&tick(&mut core, ms(4000))).is_empty());
    assert!(offers(&tick(&mut core, ms(9000))).is_empty());
    assert_eq!(offers(&tick(&mut core, ms(10_003))).len(), 1);
}

#[test]
fn revive_clears_decline_filters() {
    let (mut core, _, fw, stream, offer) = offered();
    let decline = Call::Decline {
        offer_ids: vec![offer],
        refuse: Duration::from_secs(100),
    };
    call(&mut core, &fw, &stream, decline, ms(2));
    assert_eq!(core.handle(Event::Allocate, ms(3)), vec![]);
    let fx = call(
        &mut core,
        &fw,
        &stream,
        Call::Revive { roles: vec![] },
        ms(4),
    );
    assert_eq!(fx, vec![Effect::AllocateSoon, done()]);
    assert_eq!(offers(&core.handle(Event::Allocate, ms(5))).len(), 1);
}

#[test]
fn status_updates_are_forwarded_and_acks_reach_the_agent() {
    let (mut core, agent, fw, stream) = launched_t1();
    let fx = agent_status(&mut core, &fw, "t1", TaskState::Running, 7, ms(3));
    let running = agent_update(&fw, Some(&agent), "t1", TaskState::Running, 7);
    assert_eq!(fx, vec![to_fw(FrameworkEvent::Update(running))]);
    let ack = Call::Acknowledge {
        acks: vec![Ack {
            agent_id: Some(agent.clone()),
            task_id: TaskId::new("t1").unwrap(),
            uuid: UpdateUuid::from_bytes([7; 16]),
        }],
    };
    let fx = call(&mut core, &fw, &stream, ack, ms(4));
    assert_eq!(
        fx,
        vec![
            to_agent(AgentCommand::Acknowledge {
                framework: fw.clone(),
                task: TaskId::new("t1").unwrap(),
                uuid: UpdateUuid::from_bytes([7; 16]),
            }),
            done(),
        ]
    );
}

#[test]
fn an_update_the_agent_resends_is_a_redelivery() {
    let (mut core, agent, fw, _) = launched_t1();
    let running = agent_update(&fw, Some(&agent), "t1", TaskState::Running, 7);
    assert_eq!(
        agent_status(&mut core, &fw, "t1", TaskState::Running, 7, ms(3)),
        vec![to_fw(FrameworkEvent::Update(running.clone()))]
    );
    // Not acknowledged yet: the agent sends it again, and it tells nothing new.
    assert_eq!(
        agent_status(&mut core, &fw, "t1", TaskState::Running, 7, ms(4)),
        vec![to_fw(FrameworkEvent::Redelivery(running))]
    );
    // A new state is news. (Its resources go back; the accept's cycle is still pending.)
    let finished = agent_update(&fw, Some(&agent), "t1", TaskState::Finished, 8);
    assert_eq!(
        agent_status(&mut core, &fw, "t1", TaskState::Finished, 8, ms(5)),
        vec![to_fw(FrameworkEvent::Update(finished))]
    );
}

#[test]
fn terminal_updates_free_resources_for_new_offers() {
    let (mut core, agent, fw, stream, offer) = offered();
    let accept = Call::Accept {
        offer_ids: vec![offer],
        operations: vec![Operation::Launch(vec![task("t1", 4000, 4096)])],
        refuse: Duration::ZERO,
        artifacts: Visibility::All.into(),
    };
    call(&mut core, &fw, &stream, accept, ms(2));
    assert_eq!(core.handle(Event::Allocate, ms(3)), vec![]);
    let fx = agent_status(&mut core, &fw, "t1", TaskState::Finished, 2, ms(4));
    let finished = agent_update(&fw, Some(&agent), "t1", TaskState::Finished, 2);
    assert_eq!(
        fx,
        vec![
            Effect::AllocateSoon,
            to_fw(FrameworkEvent::Update(finished))
        ]
    );
    let o = offers(&core.handle(Event::Allocate, ms(5)));
    assert_eq!(o[0].resources.total(), res(4000, 4096));
    core.check_invariants();
}

#[test]
fn reconcile_explicit_and_implicit() {
    let (mut core, agent, fw, stream) = launched_t1();
    agent_status(&mut core, &fw, "t1", TaskState::Running, 1, ms(3));
    // Answers carry the master's view as of now, with no uuid to acknowledge.
    let answer = |task: &str, state: TaskState, message: &str, agent: Option<&AgentId>, now| {
        to_fw(FrameworkEvent::Update(from_master(
            &fw,
            task,
            agent,
            (state, Reason::Reconciliation),
            message,
            now,
        )))
    };
    let fx = call(
        &mut core,
        &fw,
        &stream,
        Call::Reconcile { tasks: vec![] },
        ms(4),
    );
    assert_eq!(
        fx,
        vec![
            answer("t1", TaskState::Running, "", Some(&agent), ms(4)),
            done()
        ]
    );
    let tasks = vec![
        (TaskId::new("t1").unwrap(), None),
        (TaskId::new("ghost").unwrap(), None),
    ];
    let fx = call(&mut core, &fw, &stream, Call::Reconcile { tasks }, ms(5));
    assert_eq!(
        fx,
        vec![
            answer("t1", TaskState::Running, "", Some(&agent), ms(5)),
            answer(
                "ghost",
                TaskState::Unknown,
                "the master does not know this task",
                None,
                ms(5)
            ),
            done(),
        ]
    );
}

#[test]
fn kill_of_an_unknown_task_answers_lost_and_a_known_one_goes_to_the_agent() {
    let (mut core, _, fw, stream, offer) = offered();
    let kill_call = |task: &str| Call::Kill {
        task_id: TaskId::new(task).unwrap(),
        agent_id: None,
    };
    let fx = call(&mut core, &fw, &stream, kill_call("ghost"), ms(2));
    assert_eq!(
        fx,
        vec![
            to_fw(FrameworkEvent::Update(from_master(
                &fw,
                "ghost",
                None,
                (TaskState::Lost, Reason::Reconciliation),
                "kill of a task the master does not know",
                ms(2),
            ))),
            done(),
        ]
    );
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(3),
    );
    let fx = call(&mut core, &fw, &stream, kill_call("t1"), ms(4));
    assert_eq!(
        fx,
        vec![
            to_agent(kill(&fw, "t1", Reason::TaskKilledByRequest)),
            done()
        ]
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
    assert_eq!(
        fx,
        vec![Effect::Reply(Reply::Done(Err(
            ServiceError::FailedPrecondition(format!(
                "stream id \"stale\" is not framework {fw}'s current subscription; re-subscribe"
            ))
        )))]
    );
    let other = FrameworkId::new("nobody").unwrap();
    let fx = call(&mut core, &other, "x", Call::Teardown, ms(2));
    assert_eq!(
        fx,
        vec![Effect::Reply(Reply::Done(Err(ServiceError::NotFound {
            kind: "framework",
            id: "nobody".into()
        })))]
    );
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
    let [
        Effect::ToFramework {
            conn: FW,
            event: FrameworkEvent::Rescind(rescinded),
        },
        Effect::AllocateSoon,
        // The tick's periodic cycle offers the resources again, under a new id.
        Effect::ToFramework {
            conn: FW,
            event: FrameworkEvent::Offers(again),
        },
    ] = &fx[..]
    else {
        panic!("expected rescind, allocate, offers: {fx:?}");
    };
    assert_eq!(*rescinded, offer);
    assert_ne!(again[0].id, offer);
    // At 15 s the framework is due a heartbeat; the offer made at 2 s has timed out too,
    // and the periodic cycle offers its resources again.
    let fx = tick(&mut core, ms(15_000));
    let [
        Effect::ToFramework {
            conn: FW,
            event: FrameworkEvent::Heartbeat,
        },
        Effect::ToFramework {
            conn: FW,
            event: FrameworkEvent::Rescind(timed_out),
        },
        Effect::ToFramework {
            conn: FW,
            event: FrameworkEvent::Offers(_),
        },
    ] = &fx[..]
    else {
        panic!("expected heartbeat, rescind, offers: {fx:?}");
    };
    assert_eq!(*timed_out, again[0].id);
    core.check_invariants();
}

#[test]
fn suppress_stops_offers_until_revive_and_teardown_removes_the_framework() {
    let (mut core, _, fw, stream, offer) = offered();
    let fx = call(
        &mut core,
        &fw,
        &stream,
        Call::Suppress { roles: vec![] },
        ms(2),
    );
    assert_eq!(fx, vec![done()]);
    let decline = Call::Decline {
        offer_ids: vec![offer],
        refuse: Duration::ZERO,
    };
    call(&mut core, &fw, &stream, decline, ms(3));
    assert_eq!(core.handle(Event::Allocate, ms(4)), vec![]);
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
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Framework(FrameworkRecord {
                id: fw.clone(),
                info: FrameworkInfo {
                    id: Some(fw.clone()),
                    ..info(None, Duration::from_secs(60))
                },
                registered_unix_millis: 1_000_000,
                disconnected_unix_millis: None,
                removed: true,
            })),
            to_agent(kill(&fw, "t1", Reason::FrameworkRemoved)),
            to_fw(FrameworkEvent::Error {
                message: "framework removed: torn down by the framework".into()
            }),
            Effect::CloseFramework { conn: FW },
            done(),
        ]
    );
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
    assert_eq!(
        fx,
        vec![Effect::Reply(Reply::Operator(Err(
            ServiceError::NotFound {
                kind: "task",
                id: "ghost".into()
            }
        )))]
    );

    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(3),
    );
    let fx = operator_kill(&mut core, "t1", ms(4));
    assert_eq!(
        fx,
        vec![
            to_agent(kill(&fw, "t1", Reason::TaskKilledByRequest)),
            Effect::Reply(Reply::Operator(Ok(OperatorResponse::Killed {
                framework: fw.clone(),
                agent
            }))),
        ]
    );

    agent_status(&mut core, &fw, "t1", TaskState::Killed, 1, ms(5));
    let fx = operator_kill(&mut core, "t1", ms(6));
    assert_eq!(
        fx,
        vec![Effect::Reply(Reply::Operator(Err(
            ServiceError::FailedPrecondition("task t1 is already KILLED".into())
        )))]
    );
}

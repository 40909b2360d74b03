//! Agents: registration, offers of their resources, loss, re-registration, draining.

use super::*;

fn admitted(id: &str) -> AgentRecord {
    AgentRecord {
        id: AgentId::new(id).unwrap(),
        info: agent_info(),
        state: AgentState::Admitted,
        registered_unix_millis: 1_000_000,
        drain: None,
        reservations: vec![],
    }
}

#[test]
fn agent_registration_assigns_an_id_and_asks_for_allocation() {
    let mut core = MasterCore::new(config());
    let fx = core.handle(
        Event::AgentRegister {
            conn: AGENT,
            info: agent_info(),
            cached_modules: vec![],
        },
        ms(0),
    );
    // The agent is recorded before it hears its ID.
    let id = AgentId::new("m-S1").unwrap();
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(admitted("m-S1"))),
            registered(&id),
            Effect::AllocateSoon,
        ]
    );
}

#[test]
fn a_subscribed_framework_is_offered_the_registered_agent() {
    let mut core = MasterCore::new(config());
    let agent = register(&mut core, ms(0));
    let (fw, _) = subscribe(&mut core, FW, None, Duration::from_secs(60), ms(0));
    let fx = core.handle(Event::Allocate, ms(1));
    assert_eq!(
        fx,
        vec![to_fw(FrameworkEvent::Offers(vec![Offer {
            id: OfferId::new("m-O4").unwrap(),
            framework: fw,
            agent,
            hostname: "host-1".into(),
            role: Role::default_role(),
            resources: Allocation::unreserved(res(4000, 4096)),
            attributes: vec![("arch".into(), "x86_64".into())],
            cached_modules: vec![],
        }]))]
    );
    core.check_invariants();
}

#[test]
fn silent_agent_becomes_unreachable_and_its_tasks_are_reported() {
    let (mut core, agent, fw, stream) = launched_t1();
    agent_status(&mut core, &fw, "t1", TaskState::Running, 1, ms(3));
    core.handle(Event::AgentHeartbeat { conn: AGENT }, ms(1000));
    // The accept's leftover, refused for 5 s, is offered again by the periodic allocation;
    // the agent is not late yet.
    let leftover = Offer {
        id: OfferId::new("m-O5").unwrap(),
        framework: fw.clone(),
        agent: agent.clone(),
        hostname: "host-1".into(),
        role: Role::default_role(),
        resources: Allocation::unreserved(res(3000, 4095)),
        attributes: vec![("arch".into(), "x86_64".into())],
        cached_modules: vec![],
    };
    assert_eq!(
        core.handle(Event::Tick, ms(6000)),
        vec![to_fw(FrameworkEvent::Offers(vec![leftover]))]
    );
    let fx = core.handle(Event::Tick, ms(6001));
    let why = "agent missed its heartbeats";
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(AgentRecord {
                state: AgentState::Unreachable,
                ..admitted(agent.as_str())
            })),
            Effect::CloseAgent {
                conn: AGENT,
                error: None
            },
            // (No AllocateSoon: the accept's cycle is still pending.)
            to_fw(FrameworkEvent::Rescind(OfferId::new("m-O5").unwrap())),
            to_fw(FrameworkEvent::Update(from_master(
                &fw,
                "t1",
                Some(&agent),
                (TaskState::Unreachable, Reason::AgentUnreachable),
                why,
                ms(6001),
            ))),
            to_fw(FrameworkEvent::Failure {
                agent: agent.clone(),
                message: format!("agent unreachable: {why}"),
            }),
        ]
    );
    assert_eq!(core.agents[&agent].state, AgentState::Unreachable);
    core.check_invariants();
    // Explicit reconciliation reports it UNREACHABLE.
    let fx = call(
        &mut core,
        &fw,
        &stream,
        Call::Reconcile {
            tasks: vec![(TaskId::new("t1").unwrap(), None)],
        },
        ms(6002),
    );
    assert_eq!(
        fx,
        vec![
            to_fw(FrameworkEvent::Update(from_master(
                &fw,
                "t1",
                Some(&agent),
                (TaskState::Unreachable, Reason::Reconciliation),
                why,
                ms(6002),
            ))),
            done(),
        ]
    );
}

#[test]
fn a_new_agent_at_a_disconnected_agents_address_replaces_it_and_its_tasks_are_lost_once() {
    let (mut core, old, fw, _) = launched_t1();
    agent_status(&mut core, &fw, "t1", TaskState::Running, 1, ms(3));
    let register_at = |core: &mut MasterCore, conn: ConnId, now: Timestamp| {
        let fx = core.handle(
            Event::AgentRegister {
                conn,
                info: agent_info(),
                cached_modules: vec![],
            },
            now,
        );
        core.check_invariants();
        fx
    };

    // Still connected: a second agent at the address is not taken for the first.
    let fx = register_at(&mut core, 2, ms(4));
    assert!(updates(&fx).is_empty(), "{fx:?}");
    assert_eq!(core.agents[&old].state, AgentState::Admitted);
    core.handle(Event::AgentDisconnected { conn: 2 }, ms(4));

    core.handle(Event::AgentDisconnected { conn: AGENT }, ms(5));
    let fx = register_at(&mut core, 3, ms(6));
    let new = AgentId::new("m-S6").unwrap();
    let lost = from_master(
        &fw,
        "t1",
        Some(&old),
        (TaskState::Lost, Reason::AgentRestarted),
        "the agent restarted without its checkpoint and registered as a new agent",
        ms(6),
    );
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(AgentRecord {
                state: AgentState::Gone,
                ..admitted(old.as_str())
            })),
            to_fw(FrameworkEvent::Update(lost)),
            // The second agent that registered at the address and left is gone too.
            Effect::Persist(RegistryWrite::Agent(AgentRecord {
                state: AgentState::Gone,
                registered_unix_millis: 1_000_004,
                ..admitted("m-S5")
            })),
            Effect::Persist(RegistryWrite::Agent(AgentRecord {
                registered_unix_millis: 1_000_006,
                ..admitted(new.as_str())
            })),
            Effect::ToAgent {
                conn: 3,
                command: AgentCommand::Registered {
                    agent_id: new.clone(),
                    heartbeat_interval: Duration::from_secs(1),
                },
            },
        ]
    );
    assert_eq!(core.agents[&old].state, AgentState::Gone);

    // Once: the next newcomer at the address finds nothing left to report.
    core.handle(Event::AgentDisconnected { conn: 3 }, ms(7));
    let fx = register_at(&mut core, 4, ms(8));
    assert!(updates(&fx).is_empty(), "{fx:?}");
    // The old agent cannot come back under its id.
    let fx = core.handle(
        Event::AgentReregister {
            conn: 5,
            agent_id: old.clone(),
            info: agent_info(),
            tasks: vec![],
            updates: vec![],
            cached_modules: vec![],
        },
        ms(9),
    );
    assert_eq!(
        fx,
        vec![
            Effect::ToAgent {
                conn: 5,
                command: AgentCommand::Shutdown {
                    reason: "agent was removed".into()
                },
            },
            Effect::CloseAgent {
                conn: 5,
                error: Some(ServiceError::FailedPrecondition(format!(
                    "agent {old} was removed and cannot re-register"
                ))),
            },
        ]
    );
}

#[test]
fn agent_reregistration_restores_its_tasks() {
    let (mut core, agent, fw, _) = launched_t1();
    core.handle(Event::Tick, ms(6001));
    let status = agent_update(&fw, Some(&agent), "t1", TaskState::Running, 1);
    let fx = core.handle(
        Event::AgentReregister {
            conn: 2,
            agent_id: agent.clone(),
            info: agent_info(),
            tasks: vec![ReportedTask {
                framework_id: fw.clone(),
                meta: TaskMeta {
                    resources: res(1000, 1),
                    ..Default::default()
                },
                status,
            }],
            updates: vec![],
            cached_modules: vec![],
        },
        ms(7000),
    );
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(admitted(agent.as_str()))),
            Effect::ToAgent {
                conn: 2,
                command: AgentCommand::Registered {
                    agent_id: agent.clone(),
                    heartbeat_interval: Duration::from_secs(1),
                },
            },
            // No AllocateSoon: the accept's cycle is still pending.
        ]
    );
    assert_eq!(core.agents[&agent].state, AgentState::Admitted);
    core.check_invariants();
    let held = core.allocator.agent(&agent).unwrap();
    assert_eq!(held.total.saturating_sub(&held.free), res(1000, 1));
}

#[test]
fn draining_kills_tasks_and_stops_offers() {
    let (mut core, agent, fw, _) = launched_t1();
    let fx = core.handle(
        Event::Operator(OperatorRequest::DrainAgent {
            agent: agent.clone(),
            grace: None,
            mark_gone: false,
        }),
        ms(3),
    );
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(AgentRecord {
                state: AgentState::Draining,
                drain: Some(DrainRecord {
                    deadline_unix_millis: None,
                    mark_gone: false
                }),
                ..admitted(agent.as_str())
            })),
            // The agent hears it is draining, then its task is killed.
            to_agent(AgentCommand::Maintenance { draining: true }),
            to_agent(kill(&fw, "t1", Reason::AgentDraining)),
            Effect::Reply(Reply::Operator(Ok(OperatorResponse::Done))),
        ]
    );
    assert_eq!(core.agents[&agent].state, AgentState::Draining);
    agent_status(&mut core, &fw, "t1", TaskState::Killed, 3, ms(4));
    assert_eq!(core.agents[&agent].state, AgentState::Drained);
    assert!(offers(&tick(&mut core, ms(10_000))).is_empty());
    core.handle(
        Event::Operator(OperatorRequest::ReactivateAgent {
            agent: agent.clone(),
        }),
        ms(10_001),
    );
    core.handle(Event::AgentHeartbeat { conn: AGENT }, ms(10_001));
    assert_eq!(offers(&core.handle(Event::Allocate, ms(10_002))).len(), 1);
}

#[test]
fn reregistering_agent_tasks_of_removed_frameworks_are_killed_and_unknown_frameworks_recovered() {
    let mut core = MasterCore::new(config());
    let agent = AgentId::new("m-S9").unwrap();
    let known = FrameworkId::new("gone-fw").unwrap();
    let unknown = FrameworkId::new("old-fw").unwrap();
    // A framework that was torn down, as the master remembers it.
    let (fw, stream) = subscribe(&mut core, FW, Some(&known), Duration::ZERO, ms(0));
    call(&mut core, &fw, &stream, Call::Teardown, ms(1));
    let running = |fw: &FrameworkId, id: &str| ReportedTask {
        framework_id: fw.clone(),
        meta: TaskMeta {
            resources: res(1000, 1),
            ..Default::default()
        },
        status: agent_update(fw, Some(&agent), id, TaskState::Running, 0),
    };
    let fx = core.handle(
        Event::AgentReregister {
            conn: AGENT,
            agent_id: agent.clone(),
            info: agent_info(),
            tasks: vec![running(&known, "a"), running(&unknown, "b")],
            updates: vec![],
            cached_modules: vec![],
        },
        ms(2),
    );
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(AgentRecord {
                registered_unix_millis: 1_000_002,
                ..admitted("m-S9")
            })),
            registered(&agent),
            to_agent(kill(&known, "a", Reason::FrameworkRemoved)),
            // No AllocateSoon: the teardown's cycle is still pending.
        ]
    );
    // The unknown framework's task is accounted to a recovered, disconnected framework.
    assert_eq!(
        core.frameworks[&unknown].state,
        FrameworkState::Disconnected
    );
    let held = core.allocator.agent(&agent).unwrap();
    assert_eq!(held.total.saturating_sub(&held.free), res(1000, 1));
    core.check_invariants();
    // When it re-subscribes it keeps its task.
    let (again, _) = subscribe(&mut core, FW + 1, Some(&unknown), Duration::ZERO, ms(3));
    assert_eq!(again, unknown);
    assert!(core.tasks.contains(&(unknown, TaskId::new("b").unwrap())));
    core.check_invariants();
}

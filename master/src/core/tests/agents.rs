//! Agents: registration, offers of their resources, loss, re-registration, draining.

use super::*;

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
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(AgentRecord {
                id: AgentId::new("m-S1").unwrap(),
                info: agent_info(),
                state: corral_types::AgentState::Admitted,
                registered_unix_millis: 1_000_000,
                drain: None,
                reservations: vec![],
            })),
            Effect::ToAgent {
                conn: AGENT,
                msg: v1::MasterMessage {
                    epoch: 1,
                    kind: Some(v1::master_message::Kind::Registered(
                        v1::master_message::Registered {
                            agent_id: "m-S1".into(),
                            heartbeat_interval_millis: 1000,
                            master_id: "m".into(),
                        }
                    )),
                },
            },
            Effect::AllocateSoon,
        ]
    );
}

#[test]
fn a_subscribed_framework_is_offered_the_registered_agent() {
    let (core, agent, fw, _, _) = offered();
    let offer = core.offers.values().next().unwrap();
    assert_eq!(offer.agent, agent);
    assert_eq!(offer.framework, fw);
    assert_eq!(offer.resources.total(), res(4000, 4096));
    core.check_invariants();
}

#[test]
fn offers_carry_hostname_attributes_and_resources() {
    let mut core = MasterCore::new(config());
    register(&mut core, ms(0));
    subscribe(&mut core, FW, None, Duration::ZERO, ms(0));
    let o = &offers(&core.handle(Event::Allocate, ms(1)))[0];
    assert_eq!(o.hostname, "host-1");
    assert_eq!(o.attributes[0].key, "arch");
    assert_eq!(o.resources.as_ref().unwrap().cpus_milli, 4000);
    assert_eq!(o.role, "*");
}

#[test]
fn silent_agent_becomes_unreachable_and_its_tasks_are_reported() {
    let (mut core, agent, fw, stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
    agent_status(&mut core, &fw, "t1", TaskState::Running, 1, ms(3));
    core.handle(Event::AgentHeartbeat { conn: AGENT }, ms(1000));
    assert!(updates(&core.handle(Event::Tick, ms(6000))).is_empty());
    let fx = core.handle(Event::Tick, ms(6001));
    let u = updates(&fx);
    assert_eq!(u.len(), 1, "{fx:?}");
    assert_eq!(u[0].task_id, "t1");
    assert_eq!(u[0].state, v1::TaskState::Unreachable as i32);
    assert_eq!(u[0].reason, v1::Reason::AgentUnreachable as i32);
    assert!(u[0].uuid.is_empty());
    assert!(
        events(&fx)
            .iter()
            .any(|e| matches!(e, v1::event::Kind::Failure(f) if f.agent_id == agent.as_str()))
    );
    assert!(fx.contains(&Effect::CloseAgent {
        conn: AGENT,
        error: None
    }));
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
    assert_eq!(updates(&fx)[0].state, v1::TaskState::Unreachable as i32);
}

#[test]
fn a_new_agent_at_a_disconnected_agents_address_replaces_it_and_its_tasks_are_lost_once() {
    let (mut core, old, fw, stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
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
    let lost = updates(&fx);
    assert_eq!(lost.len(), 1, "{fx:?}");
    assert_eq!(lost[0].task_id, "t1");
    assert_eq!(lost[0].agent_id, old.as_str());
    assert_eq!(lost[0].state, v1::TaskState::Lost as i32);
    assert_eq!(lost[0].reason, v1::Reason::AgentRestarted as i32);
    assert_eq!(core.agents[&old].state, AgentState::Gone);
    let new_agents: Vec<_> = core
        .agents
        .values()
        .filter(|a| a.state == AgentState::Admitted)
        .map(|a| a.id.clone())
        .collect();
    assert_eq!(new_agents.len(), 1);
    assert_ne!(new_agents[0], old);

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
    assert!(
        agent_msgs(&fx)
            .iter()
            .any(|m| matches!(m, v1::master_message::Kind::Shutdown(_))),
        "{fx:?}"
    );
}

#[test]
fn agent_reregistration_restores_its_tasks() {
    let (mut core, agent, fw, stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
    core.handle(Event::Tick, ms(6001));
    let status = TaskStatus {
        state: TaskState::Running,
        ..core.tasks[&(fw.clone(), TaskId::new("t1").unwrap())]
            .status
            .clone()
    };
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
    assert!(matches!(
        agent_msgs(&fx)[..],
        [v1::master_message::Kind::Registered(_)]
    ));
    assert_eq!(core.agents[&agent].state, AgentState::Admitted);
    core.check_invariants();
    let held = core.allocator.agent(&agent).unwrap();
    assert_eq!(held.total.saturating_sub(&held.free), res(1000, 1));
}

#[test]
fn draining_kills_tasks_and_stops_offers() {
    let (mut core, agent, fw, stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
    let fx = core.handle(
        Event::Operator(OperatorRequest::DrainAgent {
            agent: agent.clone(),
            grace: None,
            mark_gone: false,
        }),
        ms(3),
    );
    assert!(matches!(
        &agent_msgs(&fx)[..],
        [v1::master_message::Kind::KillTask(_)]
    ));
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
        status: TaskStatus {
            task_id: TaskId::new(id).unwrap(),
            framework_id: fw.clone(),
            agent_id: Some(agent.clone()),
            state: TaskState::Running,
            reason: Reason::Launched,
            message: String::new(),
            usage: None,
            timestamp_millis: 0,
            uuid: None,
            source: StatusSource::Agent,
            trap_kind: None,
            healthy: None,
        },
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
    let msgs = agent_msgs(&fx);
    assert!(matches!(&msgs[0], v1::master_message::Kind::Registered(r) if r.agent_id == "m-S9"));
    assert!(
        matches!(&msgs[1..], [v1::master_message::Kind::KillTask(k)] if k.task_id == "a"),
        "{msgs:?}"
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
    assert!(
        core.tasks
            .contains_key(&(unknown, TaskId::new("b").unwrap()))
    );
    core.check_invariants();
}

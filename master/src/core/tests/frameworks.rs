//! Frameworks: failover and teardown; operator requests.

use super::*;

/// The framework record of the test framework `fw`.
fn record(fw: &FrameworkId, disconnected: Option<u64>, removed: bool) -> FrameworkRecord {
    FrameworkRecord {
        id: fw.clone(),
        info: FrameworkInfo {
            id: Some(fw.clone()),
            ..info(None, Duration::from_secs(60))
        },
        registered_unix_millis: 1_000_000,
        disconnected_unix_millis: disconnected,
        removed,
    }
}

fn operator_done() -> Effect {
    Effect::Reply(Reply::Operator(Ok(OperatorResponse::Done)))
}

#[test]
fn framework_failover_within_timeout_keeps_tasks_and_rejects_the_old_stream() {
    let (mut core, agent, fw, old_stream) = launched_t1();
    let fx = core.handle(Event::FrameworkDisconnected { conn: FW }, ms(10));
    assert_eq!(
        fx,
        vec![
            Effect::CloseFramework { conn: FW },
            Effect::Persist(RegistryWrite::Framework(record(
                &fw,
                Some(1_000_010),
                false
            ))),
        ]
    );
    // An update while it is away goes nowhere now and is redelivered when it comes back.
    let fx = agent_status(&mut core, &fw, "t1", TaskState::Running, 4, ms(20));
    assert_eq!(fx, vec![]);
    assert!(commands(&tick(&mut core, ms(59_000))).is_empty());
    let (same, new_stream, fx) = subscribe_fx(
        &mut core,
        FW + 1,
        Some(&fw),
        Duration::from_secs(60),
        ms(59_000),
    );
    assert_eq!(same, fw);
    assert_ne!(new_stream, old_stream);
    let running = agent_update(&fw, Some(&agent), "t1", TaskState::Running, 4);
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Framework(record(&fw, None, false))),
            Effect::ToFramework {
                conn: FW + 1,
                event: FrameworkEvent::Subscribed {
                    framework: fw.clone(),
                    stream_id: new_stream.clone(),
                    heartbeat_interval: Duration::from_secs(15),
                },
            },
            // Sent again, as an update that may be left out while the stream is behind.
            Effect::ToFramework {
                conn: FW + 1,
                event: FrameworkEvent::Redelivery(running),
            },
            // No AllocateSoon: the accept's cycle is still pending.
            done(),
        ]
    );
    assert!(
        core.tasks
            .contains(&(fw.clone(), TaskId::new("t1").unwrap()))
    );
    let fx = call(
        &mut core,
        &fw,
        &old_stream,
        Call::Revive { roles: vec![] },
        ms(59_001),
    );
    assert_eq!(
        fx,
        vec![Effect::Reply(Reply::Done(Err(
            ServiceError::FailedPrecondition(format!(
                "stream id {old_stream:?} is not framework {fw}'s current subscription; \
                 re-subscribe"
            ))
        )))]
    );
    // Past the old deadline nothing is torn down.
    let fx = tick(&mut core, ms(80_000));
    assert!(commands(&fx).is_empty(), "{fx:?}");
}

#[test]
fn a_second_subscription_replaces_the_first() {
    let (mut core, _, fw, _, offer) = offered();
    let fx = core.handle(
        Event::Subscribe {
            conn: FW + 1,
            info: info(Some(&fw), Duration::from_secs(60)),
            suppressed: vec![],
        },
        ms(5),
    );
    assert_eq!(
        fx,
        vec![
            // The old subscription's offer goes back (unannounced) ...
            Effect::AllocateSoon,
            // ... and the old stream ends with an error.
            to_fw(FrameworkEvent::Error {
                message: "framework failed over to a new subscription".into()
            }),
            Effect::CloseFramework { conn: FW },
            Effect::ToFramework {
                conn: FW + 1,
                event: FrameworkEvent::Subscribed {
                    framework: fw.clone(),
                    stream_id: "m-stream5".into(),
                    heartbeat_interval: Duration::from_secs(15),
                },
            },
            done(),
        ]
    );
    assert!(!core.offers.contains_key(&offer));
    core.check_invariants();
}

#[test]
fn framework_past_failover_timeout_is_torn_down() {
    let (mut core, _, fw, _) = launched_t1();
    core.handle(Event::FrameworkDisconnected { conn: FW }, ms(10));
    let fx = tick(&mut core, ms(60_010));
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Framework(record(&fw, Some(1_000_010), true))),
            to_agent(kill(&fw, "t1", Reason::FrameworkRemoved)),
        ]
    );
    assert_eq!(core.frameworks[&fw].state, FrameworkState::Completed);
    core.check_invariants();
    let fx = core.handle(
        Event::Subscribe {
            conn: FW + 1,
            info: info(Some(&fw), Duration::ZERO),
            suppressed: vec![],
        },
        ms(60_011),
    );
    assert_eq!(
        fx,
        vec![
            Effect::CloseFramework { conn: FW + 1 },
            Effect::Reply(Reply::Done(Err(ServiceError::FailedPrecondition(format!(
                "framework {fw} was removed and cannot re-subscribe"
            ))))),
        ]
    );
    // The agent's KILLED update is acknowledged on the removed framework's behalf.
    let fx = agent_status(&mut core, &fw, "t1", TaskState::Killed, 9, ms(60_012));
    assert_eq!(
        fx,
        vec![to_agent(AgentCommand::Acknowledge {
            framework: fw.clone(),
            task: TaskId::new("t1").unwrap(),
            uuid: UpdateUuid::from_bytes([9; 16]),
        })]
    );
    core.check_invariants();
}

#[test]
fn operator_weights_quotas_and_listings() {
    let (mut core, agent, fw, _, _) = offered();
    let role = Role::new("eng").unwrap();
    let weight = corral_types::Weight::new(2.0).unwrap();
    let fx = core.handle(
        Event::Operator(OperatorRequest::SetWeight {
            role: role.clone(),
            weight,
        }),
        ms(2),
    );
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Weight {
                role: role.clone(),
                weight
            }),
            Effect::AllocateSoon,
            operator_done(),
        ]
    );
    let quota = corral_types::Quota {
        guarantee: res(1000, 0),
        limit: corral_types::QuotaLimits::unlimited(),
    };
    let fx = core.handle(
        Event::Operator(OperatorRequest::SetQuota {
            role: role.clone(),
            quota: quota.clone(),
            force: false,
        }),
        ms(3),
    );
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Quota {
                role: role.clone(),
                quota: Some(quota.clone())
            }),
            operator_done(),
        ]
    );
    let fx = core.handle(Event::Operator(OperatorRequest::GetRoles), ms(4));
    let [Effect::Reply(Reply::Operator(Ok(OperatorResponse::Roles(roles))))] = &fx[..] else {
        panic!("{fx:?}");
    };
    let eng = roles.iter().find(|r| r.role == role).unwrap();
    assert_eq!((eng.weight, eng.quota.as_ref()), (weight, Some(&quota)));
    let fx = core.handle(
        Event::Operator(OperatorRequest::RemoveQuota {
            role: Role::new("none").unwrap(),
        }),
        ms(5),
    );
    assert_eq!(
        fx,
        vec![Effect::Reply(Reply::Operator(Err(
            ServiceError::NotFound {
                kind: "role",
                id: "none".into()
            }
        )))]
    );
    let fx = core.handle(
        Event::Operator(OperatorRequest::GetState { max_tasks: 0 }),
        ms(6),
    );
    let [Effect::Reply(Reply::Operator(Ok(OperatorResponse::State(s))))] = &fx[..] else {
        panic!("{fx:?}");
    };
    assert_eq!(
        s.master,
        MasterSummary {
            id: "m".into(),
            address: "127.0.0.1:5050".into(),
            epoch: 1,
            started_unix_millis: 1_000_000,
        }
    );
    let agents: Vec<_> = s
        .agents
        .iter()
        .map(|a| (&a.id, a.state, &a.total))
        .collect();
    assert_eq!(agents, [(&agent, AgentState::Admitted, &res(4000, 4096))]);
    // The framework's outstanding offer is what it holds.
    let frameworks: Vec<_> = s
        .frameworks
        .iter()
        .map(|f| (&f.id, f.state, &f.offered, f.active_tasks))
        .collect();
    assert_eq!(
        frameworks,
        [(&fw, FrameworkState::Active, &res(4000, 4096), 0)]
    );
    assert!(s.tasks.is_empty() && !s.tasks_truncated);
}

#[test]
fn operator_reservations_are_recorded_and_offered_to_their_role_only() {
    let mut core = MasterCore::new(config());
    let agent = register(&mut core, ms(0));
    let eng = Role::new("eng").unwrap();
    let reserve = |agent: &AgentId, role: &Role, cpus_milli| OperatorRequest::Reserve {
        agent: agent.clone(),
        role: role.clone(),
        resources: res(cpus_milli, 0),
    };

    let fx = core.handle(Event::Operator(reserve(&agent, &eng, 500)), ms(1));
    core.check_invariants();
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(AgentRecord {
                id: agent.clone(),
                info: agent_info(),
                state: AgentState::Admitted,
                registered_unix_millis: 1_000_000,
                drain: None,
                reservations: vec![(eng.clone(), res(500, 0))],
            })),
            operator_done(),
        ]
    );

    // Not to the default role, not beyond what is free, not on an unknown agent.
    for req in [
        reserve(&agent, &Role::default_role(), 100),
        reserve(&agent, &eng, 1_000_000),
        reserve(&AgentId::new("ghost").unwrap(), &eng, 100),
    ] {
        let fx = core.handle(Event::Operator(req.clone()), ms(2));
        assert!(
            matches!(
                &fx[..],
                [Effect::Reply(Reply::Operator(Err(
                    ServiceError::InvalidArgument(_)
                        | ServiceError::FailedPrecondition(_)
                        | ServiceError::NotFound { .. }
                )))]
            ),
            "{req:?}: {fx:?}"
        );
    }

    // A framework in `eng` is offered the reservation, marked as reserved.
    let mut eng_info = info(None, Duration::from_secs(60));
    eng_info.roles = vec![eng.clone()];
    core.handle(
        Event::Subscribe {
            conn: FW,
            info: eng_info,
            suppressed: vec![],
        },
        ms(3),
    );
    let o = offers(&core.handle(Event::Allocate, ms(4)));
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].role, eng);
    assert_eq!(o[0].resources.reserved, res(500, 0));
    assert_eq!(o[0].resources.unreserved, res(3500, 4096));
}

#[test]
fn static_reservations_of_an_agent_are_offered_to_their_role() {
    let mut core = MasterCore::new(config());
    let eng = Role::new("eng").unwrap();
    let mut info = agent_info();
    info.static_reservations = vec![(eng.clone(), res(500, 0))];
    core.handle(
        Event::AgentRegister {
            conn: AGENT,
            info,
            cached_modules: vec![],
        },
        ms(0),
    );
    core.check_invariants();
    let mut eng_info = super::info(None, Duration::from_secs(60));
    eng_info.roles = vec![eng.clone()];
    core.handle(
        Event::Subscribe {
            conn: FW,
            info: eng_info,
            suppressed: vec![],
        },
        ms(1),
    );
    let o = offers(&core.handle(Event::Allocate, ms(2)));
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].resources.reserved, res(500, 0));
    // A static reservation cannot be given back through the API.
    let agent = core.agents.keys().next().cloned().unwrap();
    let fx = core.handle(
        Event::Operator(OperatorRequest::Unreserve {
            agent,
            role: eng,
            resources: res(500, 0),
        }),
        ms(3),
    );
    assert!(
        matches!(
            &fx[..],
            [Effect::Reply(Reply::Operator(Err(
                ServiceError::FailedPrecondition(_)
            )))]
        ),
        "{fx:?}"
    );
}

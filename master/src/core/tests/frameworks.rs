//! Frameworks: failover and teardown; operator requests.

use super::*;

#[test]
fn framework_failover_within_timeout_keeps_tasks_and_rejects_the_old_stream() {
    let (mut core, _, fw, old_stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &old_stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
    core.handle(Event::FrameworkDisconnected { conn: FW }, ms(10));
    // An update while it is away is redelivered when it comes back.
    agent_status(&mut core, &fw, "t1", TaskState::Running, 4, ms(20));
    assert!(agent_msgs(&tick(&mut core, ms(59_000))).is_empty());
    let (same, new_stream, fx) = subscribe_fx(
        &mut core,
        FW + 1,
        Some(&fw),
        Duration::from_secs(60),
        ms(59_000),
    );
    assert_eq!(same, fw);
    let u = updates(&fx);
    assert_eq!(u.len(), 1, "{fx:?}");
    assert_eq!(
        (u[0].state, u[0].uuid.to_vec()),
        (v1::TaskState::Running as i32, vec![4u8; 16])
    );
    assert_ne!(new_stream, old_stream);
    assert!(
        core.tasks
            .contains_key(&(fw.clone(), TaskId::new("t1").unwrap()))
    );
    let fx = call(
        &mut core,
        &fw,
        &old_stream,
        Call::Revive { roles: vec![] },
        ms(59_001),
    );
    assert!(
        matches!(
            &fx[..],
            [Effect::Reply(Reply::Done(Err(
                ServiceError::FailedPrecondition(_)
            )))]
        ),
        "{fx:?}"
    );
    // Past the old deadline nothing is torn down.
    let fx = tick(&mut core, ms(80_000));
    assert!(agent_msgs(&fx).is_empty());
}

#[test]
fn a_second_subscription_replaces_the_first() {
    let (mut core, _, fw, _, _) = offered();
    let fx = core.handle(
        Event::Subscribe {
            conn: FW + 1,
            info: info(Some(&fw), Duration::from_secs(60)),
            suppressed: vec![],
        },
        ms(5),
    );
    assert!(fx.contains(&Effect::CloseFramework { conn: FW }));
    assert!(fx.iter().any(
        |e| matches!(e, Effect::ToFramework { conn, event } if *conn == FW
        && matches!(event.kind, Some(v1::event::Kind::Error(_))))
    ));
    core.check_invariants();
}

#[test]
fn framework_past_failover_timeout_is_torn_down() {
    let (mut core, _, fw, stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
    core.handle(Event::FrameworkDisconnected { conn: FW }, ms(10));
    let fx = tick(&mut core, ms(60_010));
    assert!(
        matches!(&agent_msgs(&fx)[..], [v1::master_message::Kind::KillTask(k)] if k.task_id == "t1"),
        "{fx:?}"
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
    assert!(matches!(
        fx.last(),
        Some(Effect::Reply(Reply::Done(Err(
            ServiceError::FailedPrecondition(_)
        ))))
    ));
    // The agent's KILLED update is acknowledged on the removed framework's behalf.
    let fx = agent_status(&mut core, &fw, "t1", TaskState::Killed, 9, ms(60_012));
    assert!(
        matches!(&agent_msgs(&fx)[..], [v1::master_message::Kind::Acknowledge(a)] if a.task_id == "t1")
    );
    core.check_invariants();
}

#[test]
fn operator_weights_quotas_and_listings() {
    let (mut core, _, _, _, _) = offered();
    let role = Role::new("eng").unwrap();
    let r = core.handle(
        Event::Operator(OperatorRequest::SetWeight {
            role: role.clone(),
            weight: corral_types::Weight::new(2.0).unwrap(),
        }),
        ms(2),
    );
    assert!(r.contains(&Effect::Reply(Reply::Operator(Ok(OperatorResponse::Done)))));
    let quota = corral_types::Quota {
        guarantee: res(1000, 0),
        limit: corral_types::QuotaLimits::unlimited(),
    };
    core.handle(
        Event::Operator(OperatorRequest::SetQuota {
            role: role.clone(),
            quota,
            force: false,
        }),
        ms(3),
    );
    let fx = core.handle(Event::Operator(OperatorRequest::GetRoles), ms(4));
    let Some(Effect::Reply(Reply::Operator(Ok(OperatorResponse::Roles(roles))))) = fx.last() else {
        panic!("{fx:?}");
    };
    let eng = roles.roles.iter().find(|r| r.name == "eng").unwrap();
    assert_eq!(eng.weight, 2.0);
    assert_eq!(
        eng.quota
            .as_ref()
            .unwrap()
            .guarantee
            .as_ref()
            .unwrap()
            .cpus_milli,
        1000
    );
    let fx = core.handle(
        Event::Operator(OperatorRequest::RemoveQuota {
            role: Role::new("none").unwrap(),
        }),
        ms(5),
    );
    assert!(matches!(
        fx.last(),
        Some(Effect::Reply(Reply::Operator(Err(
            ServiceError::NotFound { .. }
        ))))
    ));
    let fx = core.handle(
        Event::Operator(OperatorRequest::GetState { max_tasks: 0 }),
        ms(6),
    );
    let Some(Effect::Reply(Reply::Operator(Ok(OperatorResponse::State(s))))) = fx.last() else {
        panic!("{fx:?}");
    };
    assert_eq!(s.agents.len(), 1);
    assert_eq!(s.frameworks.len(), 1);
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
    assert!(fx.contains(&Effect::Reply(Reply::Operator(Ok(OperatorResponse::Done)))));
    let recorded = fx.iter().find_map(|e| match e {
        Effect::Persist(RegistryWrite::Agent(r)) => Some(r.reservations.clone()),
        _ => None,
    });
    assert_eq!(recorded, Some(vec![(eng.clone(), res(500, 0))]), "{fx:?}");

    // Not to the default role, not beyond what is free, not on an unknown agent.
    let refused = |fx: &[Effect]| {
        matches!(
            fx,
            [Effect::Reply(Reply::Operator(Err(
                ServiceError::InvalidArgument(_)
                    | ServiceError::FailedPrecondition(_)
                    | ServiceError::NotFound { .. }
            )))]
        )
    };
    for req in [
        reserve(&agent, &Role::default_role(), 100),
        reserve(&agent, &eng, 1_000_000),
        reserve(&AgentId::new("ghost").unwrap(), &eng, 100),
    ] {
        let fx = core.handle(Event::Operator(req.clone()), ms(2));
        assert!(refused(&fx), "{req:?}: {fx:?}");
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
    let fx = core.handle(Event::Allocate, ms(4));
    let o = offers(&fx);
    assert_eq!(o.len(), 1, "{fx:?}");
    assert_eq!(o[0].role, "eng");
    let reserved = Resources::try_from(o[0].reserved.as_ref().unwrap()).unwrap();
    assert_eq!(reserved, res(500, 0));
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
    eng_info.roles = vec![eng];
    core.handle(
        Event::Subscribe {
            conn: FW,
            info: eng_info,
            suppressed: vec![],
        },
        ms(1),
    );
    let fx = core.handle(Event::Allocate, ms(2));
    let o = offers(&fx);
    assert_eq!(o.len(), 1, "{fx:?}");
    let reserved = Resources::try_from(o[0].reserved.as_ref().unwrap()).unwrap();
    assert_eq!(reserved, res(500, 0));
    // A static reservation cannot be given back through the API.
    let agent = core.agents.keys().next().cloned().unwrap();
    let fx = core.handle(
        Event::Operator(OperatorRequest::Unreserve {
            agent,
            role: Role::new("eng").unwrap(),
            resources: res(500, 0),
        }),
        ms(3),
    );
    assert!(
        matches!(&fx[..], [Effect::Reply(Reply::Operator(Err(_)))]),
        "{fx:?}"
    );
}

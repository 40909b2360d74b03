//! Recovery from the registry: what comes back at once, what must come back in time.

use corral_types::{FrameworkState, Quota, Weight};

use crate::core::registry::OUTPUT_IN_FLIGHT;

use super::*;

/// The core's clock starts at unix time 1_000_000 ms (see `config`).
const START_UNIX: u64 = 1_000_000;

fn eng() -> Role {
    Role::new("eng").unwrap()
}

fn agent_record(id: &str, state: AgentState) -> AgentRecord {
    AgentRecord {
        id: AgentId::new(id).unwrap(),
        info: agent_info(),
        state,
        registered_unix_millis: START_UNIX - 50_000,
        drain: None,
        reservations: vec![],
    }
}

fn framework_record(id: &str, disconnected: Option<u64>, removed: bool) -> FrameworkRecord {
    let id = FrameworkId::new(id).unwrap();
    FrameworkRecord {
        info: info(Some(&id), Duration::from_secs(10)),
        id,
        registered_unix_millis: START_UNIX - 60_000,
        disconnected_unix_millis: disconnected,
        removed,
    }
}

fn persisted(fx: &[Effect]) -> Vec<RegistryWrite> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Persist(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

fn reregister(core: &mut MasterCore, id: &AgentId, now: Timestamp) -> Vec<Effect> {
    let fx = core.handle(
        Event::AgentReregister {
            conn: AGENT,
            agent_id: id.clone(),
            info: agent_info(),
            tasks: vec![],
            updates: vec![],
            cached_modules: vec![],
        },
        now,
    );
    core.check_invariants();
    fx
}

/// A master just recovered from a registry holding two admitted agents, `old-S1` and
/// `old-S2`, and a connected framework `old-F1`; returns it with their IDs.
fn two_agents_and_a_framework_recovered() -> (MasterCore, AgentId, AgentId, FrameworkId) {
    let mut core = MasterCore::new(config());
    core.recover(
        Recovered {
            agents: vec![
                agent_record("old-S1", AgentState::Admitted),
                agent_record("old-S2", AgentState::Admitted),
            ],
            frameworks: vec![framework_record("old-F1", None, false)],
            ..Recovered::default()
        },
        ms(0),
    );
    (
        core,
        AgentId::new("old-S1").unwrap(),
        AgentId::new("old-S2").unwrap(),
        FrameworkId::new("old-F1").unwrap(),
    )
}

#[test]
fn recovered_agents_that_do_not_reregister_in_time_become_unreachable() {
    let (mut core, s1, s2, f1) = two_agents_and_a_framework_recovered();
    subscribe(&mut core, FW, Some(&f1), Duration::from_secs(10), ms(100));

    // Well past the heartbeat timeout, within the re-registration timeout: still expected.
    let fx = core.handle(Event::Tick, ms(20_000));
    assert!(persisted(&fx).is_empty(), "{fx:?}");
    assert_eq!(core.agents[&s1].state, AgentState::Admitted);
    // S1 comes back; it was recorded admitted, so nothing is written.
    let fx = reregister(&mut core, &s1, ms(25_000));
    assert!(persisted(&fx).is_empty(), "{fx:?}");
    assert!(core.allocator.agent(&s1).is_some());

    // S2 misses the 30 s window: recorded UNREACHABLE, then the framework hears of it.
    core.handle(Event::AgentHeartbeat { conn: AGENT }, ms(30_000));
    let fx = core.handle(Event::Tick, ms(30_000));
    assert_eq!(
        fx[..2],
        [
            Effect::Persist(RegistryWrite::Agent(agent_record(
                "old-S2",
                AgentState::Unreachable
            ))),
            to_fw(FrameworkEvent::Failure {
                agent: s2.clone(),
                message: "agent unreachable: agent did not re-register after a master failover"
                    .into(),
            }),
        ]
    );
    // Then the periodic allocation offers the agent that came back.
    assert!(
        matches!(&fx[2..], [Effect::ToFramework { event: FrameworkEvent::Offers(o), .. }] if o[0].agent == s1),
        "{fx:?}"
    );
    assert_eq!(core.agents[&s2].state, AgentState::Unreachable);
    assert_eq!(core.agents[&s1].state, AgentState::Admitted);
    core.check_invariants();
}

#[test]
fn reconciliation_waits_for_recovered_agents_instead_of_answering_unknown() {
    let (mut core, s1, s2, f1) = two_agents_and_a_framework_recovered();
    let (fw, stream) = subscribe(&mut core, FW, Some(&f1), Duration::from_secs(10), ms(100));
    let reconcile = |core: &mut MasterCore, task: &str, agent: Option<&AgentId>, now| {
        let tasks = vec![(TaskId::new(task).unwrap(), agent.cloned())];
        let answers = updates(&call(core, &fw, &stream, Call::Reconcile { tasks }, now));
        answers
            .iter()
            .map(|s| (s.task_id.clone(), s.state))
            .collect::<Vec<_>>()
    };
    let answer = |task: &str, state: TaskState| vec![(TaskId::new(task).unwrap(), state)];

    // Either agent may still report the task: no answer yet, rather than a wrong UNKNOWN.
    assert_eq!(reconcile(&mut core, "t1", Some(&s1), ms(1_000)), vec![]);
    assert_eq!(reconcile(&mut core, "t1", None, ms(1_000)), vec![]);

    // S1 re-registers without the task: about S1 the master now knows; S2 is still awaited.
    reregister(&mut core, &s1, ms(2_000));
    assert_eq!(
        reconcile(&mut core, "t1", Some(&s1), ms(2_100)),
        answer("t1", TaskState::Unknown)
    );
    assert_eq!(reconcile(&mut core, "t1", None, ms(2_100)), vec![]);

    // S2 misses its window and is UNREACHABLE; then every question has an answer.
    core.handle(Event::AgentHeartbeat { conn: AGENT }, ms(30_000));
    tick(&mut core, ms(30_000));
    assert_eq!(core.agents[&s2].state, AgentState::Unreachable);
    assert_eq!(
        reconcile(&mut core, "t1", Some(&s2), ms(30_100)),
        answer("t1", TaskState::Unreachable)
    );
    assert_eq!(
        reconcile(&mut core, "t1", None, ms(30_100)),
        answer("t1", TaskState::Unknown)
    );
    core.check_invariants();
}

#[test]
fn recovered_frameworks_must_resubscribe_within_their_failover_timeout() {
    let mut core = MasterCore::new(config());
    core.recover(
        Recovered {
            frameworks: vec![
                // Connected when the master stopped: 10 s from now.
                framework_record("old-F1", None, false),
                // Disconnected 4 s before the restart: 6 s left.
                framework_record("old-F2", Some(START_UNIX - 4_000), false),
                framework_record("old-F3", Some(START_UNIX - 99_000), true),
            ],
            ..Recovered::default()
        },
        ms(0),
    );
    let f1 = FrameworkId::new("old-F1").unwrap();
    let f2 = FrameworkId::new("old-F2").unwrap();
    let f3 = FrameworkId::new("old-F3").unwrap();
    assert_eq!(core.frameworks[&f1].state, FrameworkState::Disconnected);

    // F1 re-subscribes in time: it is recorded connected again before SUBSCRIBED.
    let (_, _, fx) = subscribe_fx(&mut core, FW, Some(&f1), Duration::from_secs(10), ms(3_000));
    let mut f1_record = framework_record("old-F1", None, false);
    f1_record.disconnected_unix_millis = None;
    assert_eq!(persisted(&fx), vec![RegistryWrite::Framework(f1_record)]);

    // F2's time runs out at 6 s: torn down and recorded removed.
    let fx = core.handle(Event::Tick, ms(5_999));
    assert!(persisted(&fx).is_empty());
    let fx = core.handle(Event::Tick, ms(6_000));
    assert_eq!(
        persisted(&fx),
        vec![RegistryWrite::Framework(framework_record(
            "old-F2",
            Some(START_UNIX - 4_000),
            true
        ))]
    );
    assert_eq!(core.frameworks[&f2].state, FrameworkState::Completed);
    assert_eq!(core.frameworks[&f1].state, FrameworkState::Active);

    // A framework removed before the restart stays removed.
    let fx = core.handle(
        Event::Subscribe {
            conn: FW + 1,
            info: info(Some(&f3), Duration::from_secs(10)),
            suppressed: vec![],
        },
        ms(7_000),
    );
    assert_eq!(
        fx,
        vec![
            Effect::CloseFramework { conn: FW + 1 },
            Effect::Reply(Reply::Done(Err(ServiceError::FailedPrecondition(
                "framework old-F3 was removed and cannot re-subscribe".into()
            )))),
        ]
    );
    core.check_invariants();
}

#[test]
fn weights_quotas_reservations_and_drain_are_back_before_agents_return() {
    let quota = Quota {
        guarantee: res(1000, 0),
        limit: corral_types::QuotaLimits::unlimited(),
    };
    let mut draining = agent_record("old-S1", AgentState::Draining);
    draining.drain = Some(DrainRecord {
        deadline_unix_millis: Some(START_UNIX + 60_000),
        mark_gone: false,
    });
    draining.reservations = vec![(eng(), res(500, 128))];
    let mut core = MasterCore::new(config());
    core.recover(
        Recovered {
            agents: vec![draining.clone()],
            weights: vec![(eng(), Weight::new(3.0).unwrap())],
            quotas: vec![(eng(), quota.clone())],
            ..Recovered::default()
        },
        ms(0),
    );
    let fx = core.handle(Event::Operator(OperatorRequest::GetRoles), ms(1));
    let [Effect::Reply(Reply::Operator(Ok(OperatorResponse::Roles(roles))))] = &fx[..] else {
        panic!("expected roles, got {fx:?}");
    };
    let role = roles.iter().find(|r| r.role == eng()).unwrap();
    assert_eq!(role.weight, Weight::new(3.0).unwrap());
    assert_eq!(role.quota, Some(quota));

    // The agent re-registers draining, with its reservation, and nothing changed on record.
    let id = AgentId::new("old-S1").unwrap();
    let fx = reregister(&mut core, &id, ms(2));
    assert!(persisted(&fx).is_empty(), "{fx:?}");
    assert_eq!(core.agents[&id].state, AgentState::Draining);
    let summary = core.allocator.agent(&id).unwrap();
    assert!(summary.draining);
    assert_eq!(summary.reservations, vec![(eng(), res(500, 128))]);
    // Reactivating it is recorded.
    let fx = core.handle(
        Event::Operator(OperatorRequest::ReactivateAgent { agent: id.clone() }),
        ms(3),
    );
    let mut admitted = draining;
    admitted.state = AgentState::Admitted;
    admitted.drain = None;
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(admitted)),
            // Connected: it hears the drain is over.
            Effect::ToAgent {
                conn: 1,
                command: AgentCommand::Maintenance { draining: false },
            },
            Effect::Reply(Reply::Operator(Ok(OperatorResponse::Done))),
        ]
    );
}

#[test]
fn launches_status_updates_and_acks_write_nothing() {
    let (mut core, _agent, fw, stream, offer) = offered();
    let mut fx = call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
    fx.extend(agent_status(
        &mut core,
        &fw,
        "t1",
        TaskState::Running,
        1,
        ms(3),
    ));
    fx.extend(call(
        &mut core,
        &fw,
        &stream,
        Call::Acknowledge {
            acks: vec![Ack {
                agent_id: None,
                task_id: TaskId::new("t1").unwrap(),
                uuid: UpdateUuid::from_bytes([1; 16]),
            }],
        },
        ms(4),
    ));
    assert!(persisted(&fx).is_empty(), "{fx:?}");
}

#[test]
fn uploaded_modules_are_recorded_once_with_each_principal_who_stored_them() {
    let mut core = MasterCore::new(config());
    let digest = corral_types::Digest::of(b"module");
    let record = |owner: Option<&str>| OperatorRequest::RecordArtifact {
        digest,
        size: 6,
        kind: ArtifactKind::Module,
        owner: owner.map(Arc::from),
    };
    let stored = |owners: &[&str]| {
        vec![RegistryWrite::Artifact(ArtifactRecord {
            digest,
            size: 6,
            stored_unix_millis: START_UNIX + 5,
            kind: ArtifactKind::Module,
            owners: owners.iter().map(|o| o.to_string()).collect(),
        })]
    };
    let fx = core.handle(Event::Operator(record(Some("alice"))), ms(5));
    assert_eq!(persisted(&fx), stored(&["alice"]));
    // The same principal again, or an upload without one, writes nothing.
    for again in [Some("alice"), None] {
        let fx = core.handle(Event::Operator(record(again)), ms(6));
        assert_eq!(
            fx,
            vec![Effect::Reply(Reply::Operator(Ok(OperatorResponse::Done)))]
        );
    }
    // Another principal who stores the same bytes owns them too.
    let fx = core.handle(Event::Operator(record(Some("bob"))), ms(7));
    assert_eq!(persisted(&fx), stored(&["alice", "bob"]));
}

#[test]
fn a_tasks_outputs_are_recorded_before_its_framework_hears_of_them_and_come_back() {
    let (mut core, agent, fw, _) = launched_t1();
    let output = corral_types::TaskOutput {
        path: "report.csv".into(),
        size: 3,
        digest: corral_types::Digest::of(b"a,b"),
    };
    // Uploaded (and indexed) before the status that lists it.
    core.handle(
        Event::Operator(OperatorRequest::RecordArtifact {
            digest: output.digest,
            size: 3,
            kind: ArtifactKind::Output,
            owner: None,
        }),
        ms(2),
    );
    let mut status = agent_update(&fw, Some(&agent), "t1", TaskState::Finished, 1);
    status.outputs = vec![output.clone()];
    let event = || Event::AgentStatus {
        conn: AGENT,
        status: status.clone(),
    };
    let fx = core.handle(event(), ms(3));
    let record = OutputsRecord {
        framework_id: fw.clone(),
        task_id: TaskId::new("t1").unwrap(),
        agent_id: Some(agent.clone()),
        state: TaskState::Finished,
        reason: Reason::Exited,
        finished_unix_millis: 5,
        outputs: vec![output],
        not_kept: None,
        owner: None,
    };
    let persist = fx
        .iter()
        .position(|e| matches!(e, Effect::Persist(RegistryWrite::TaskOutputs(r)) if *r == record));
    let update = fx.iter().position(|e| {
        matches!(e, Effect::ToFramework { event: FrameworkEvent::Update(u), .. } if u.outputs == record.outputs)
    });
    assert!(persist.is_some() && persist < update, "{fx:?}");
    // A redelivery writes nothing more.
    assert!(persisted(&core.handle(event(), ms(4))).is_empty());

    // A master started on the registry lists them.
    let mut again = MasterCore::new(config());
    again.recover(
        Recovered {
            task_outputs: vec![record.clone()],
            ..Recovered::default()
        },
        ms(0),
    );
    let fx = again.handle(
        Event::Operator(OperatorRequest::TaskOutputs {
            task: TaskId::new("t1").unwrap(),
            framework: None,
        }),
        ms(1),
    );
    assert_eq!(
        fx,
        vec![Effect::Reply(Reply::Operator(Ok(
            OperatorResponse::TaskOutputs(Box::new(record))
        )))]
    );
}

/// Asks the core to admit an output; answers its reply and what it wrote.
fn admit_output(
    core: &mut MasterCore,
    digest: Digest,
    size: u64,
    at: Timestamp,
) -> (Result<OperatorResponse, ServiceError>, Vec<RegistryWrite>) {
    let fx = core.handle(
        Event::Operator(OperatorRequest::AdmitOutput { digest, size }),
        at,
    );
    let reply = fx.iter().find_map(|e| match e {
        Effect::Reply(Reply::Operator(r)) => Some(r.clone()),
        _ => None,
    });
    (reply.expect("a reply"), persisted(&fx))
}

fn indexed(digest: Digest, size: u64, kind: ArtifactKind) -> ArtifactRecord {
    ArtifactRecord {
        digest,
        size,
        stored_unix_millis: 1,
        kind,
        owners: Default::default(),
    }
}

fn outputs_of(task: &str, finished_unix_millis: u64, digest: Digest, size: u64) -> OutputsRecord {
    OutputsRecord {
        framework_id: FrameworkId::new("f").unwrap(),
        task_id: TaskId::new(task).unwrap(),
        agent_id: None,
        state: TaskState::Finished,
        reason: Reason::Exited,
        finished_unix_millis,
        outputs: vec![corral_types::TaskOutput {
            path: "out".into(),
            size,
            digest,
        }],
        not_kept: None,
        owner: None,
    }
}

#[test]
fn the_oldest_tasks_outputs_make_room_for_new_ones() {
    let mut core = MasterCore::new(CoreConfig {
        max_output_bytes: 100,
        ..config()
    });
    let (old, shared, module, new) = (
        Digest::of(b"old"),
        Digest::of(b"shared"),
        Digest::of(b"module"),
        Digest::of(b"new"),
    );
    core.recover(
        Recovered {
            artifacts: vec![
                indexed(old, 40, ArtifactKind::Output),
                indexed(shared, 20, ArtifactKind::Output),
                indexed(module, 30, ArtifactKind::Output),
            ],
            task_outputs: vec![
                outputs_of("first", 1, old, 40),
                outputs_of("second", 2, shared, 20),
                outputs_of("third", 3, shared, 20),
                outputs_of("fourth", 4, module, 30),
            ],
            ..Recovered::default()
        },
        ms(0),
    );
    let key = |task: &str| (FrameworkId::new("f").unwrap(), TaskId::new(task).unwrap());

    // Larger than the whole store: refused, and nothing is dropped for it.
    let (refused, written) = admit_output(&mut core, new, 101, ms(1));
    assert!(
        matches!(&refused, Err(ServiceError::InvalidArgument(m)) if m.contains("whole output store")),
        "{refused:?}"
    );
    assert_eq!(written, vec![]);

    // 90 of 100 bytes held: the first task's outputs go to admit 50 more.
    let (admitted, written) = admit_output(&mut core, new, 50, ms(1));
    assert_eq!(admitted, Ok(OperatorResponse::OutputAdmitted(false)));
    assert_eq!(
        written,
        vec![
            RegistryWrite::DropTaskOutputs(key("first")),
            RegistryWrite::DropArtifact(old),
        ]
    );

    // Bytes uploaded as a module too are kept when no task lists them any more.
    let fx = core.handle(
        Event::Operator(OperatorRequest::RecordArtifact {
            digest: module,
            size: 30,
            kind: ArtifactKind::Module,
            owner: None,
        }),
        ms(2),
    );
    assert_eq!(
        persisted(&fx),
        vec![RegistryWrite::Artifact(indexed(
            module,
            30,
            ArtifactKind::Module
        ))]
    );
    // An agent is storing the shared bytes again for a task whose status is on its way.
    let (held, _) = admit_output(&mut core, shared, 20, ms(3));
    assert_eq!(held, Ok(OperatorResponse::OutputAdmitted(true)));

    // 20 bytes in outputs, none of them can go: every record is dropped, nothing frees.
    let (refused, written) = admit_output(&mut core, new, 81, ms(4));
    assert!(
        matches!(&refused, Err(ServiceError::ResourceExhausted(m)) if m.contains("20 of its 100")),
        "{refused:?}"
    );
    assert_eq!(
        written,
        vec![
            RegistryWrite::DropTaskOutputs(key("second")),
            RegistryWrite::DropTaskOutputs(key("third")),
            RegistryWrite::DropTaskOutputs(key("fourth")),
        ]
    );
    // Once its agent would have reported it, an output no task lists makes room too.
    let later = ms(4).saturating_add(OUTPUT_IN_FLIGHT);
    let (admitted, written) = admit_output(&mut core, new, 81, later);
    assert_eq!(admitted, Ok(OperatorResponse::OutputAdmitted(false)));
    assert_eq!(written, vec![RegistryWrite::DropArtifact(shared)]);
}

#[test]
fn outputs_dropped_before_their_status_came_are_said_not_kept() {
    let (mut core, agent, fw, _) = launched_t1();
    let output = |path: &str, bytes: &[u8]| corral_types::TaskOutput {
        path: path.into(),
        size: bytes.len() as u64,
        digest: Digest::of(bytes),
    };
    let kept = output("kept.txt", b"kept");
    core.handle(
        Event::Operator(OperatorRequest::RecordArtifact {
            digest: kept.digest,
            size: 4,
            kind: ArtifactKind::Output,
            owner: None,
        }),
        ms(2),
    );
    // dropped.txt was indexed once, and dropped to make room before this status came.
    let mut status = agent_update(&fw, Some(&agent), "t1", TaskState::Finished, 1);
    status.outputs = vec![output("dropped.txt", b"dropped"), kept.clone()];
    status.outputs_not_kept = Some("big.bin (too large)".into());
    let fx = core.handle(
        Event::AgentStatus {
            conn: AGENT,
            status,
        },
        ms(3),
    );
    let not_kept = "big.bin (too large), dropped.txt (dropped to make room in the cluster's \
                    output store)";
    let recorded = persisted(&fx).into_iter().find_map(|w| match w {
        RegistryWrite::TaskOutputs(r) => Some(r),
        _ => None,
    });
    let recorded = recorded.unwrap_or_else(|| panic!("{fx:?}"));
    assert_eq!(recorded.outputs, vec![kept.clone()]);
    assert_eq!(recorded.not_kept.as_deref(), Some(not_kept));
    let told = updates(&fx);
    assert_eq!(told[0].outputs, vec![kept]);
    assert_eq!(told[0].outputs_not_kept.as_deref(), Some(not_kept));
}

#[test]
fn outputs_are_admitted_within_the_cap_counting_what_the_index_holds() {
    let mut core = MasterCore::new(CoreConfig {
        max_output_bytes: 100,
        ..config()
    });
    let (a, b) = (
        corral_types::Digest::of(b"a"),
        corral_types::Digest::of(b"b"),
    );
    let admit = |core: &mut MasterCore, digest, size| admit_output(core, digest, size, ms(1)).0;
    assert_eq!(
        admit(&mut core, a, 60),
        Ok(OperatorResponse::OutputAdmitted(false))
    );
    core.handle(
        Event::Operator(OperatorRequest::RecordArtifact {
            digest: a,
            size: 60,
            kind: ArtifactKind::Output,
            owner: None,
        }),
        ms(2),
    );
    // Already held: admitted whatever the cap.
    assert_eq!(
        admit(&mut core, a, 60),
        Ok(OperatorResponse::OutputAdmitted(true))
    );
    let refused = admit(&mut core, b, 41).unwrap_err();
    assert!(
        matches!(refused, ServiceError::ResourceExhausted(_)),
        "{refused}"
    );
    assert_eq!(
        admit(&mut core, b, 40),
        Ok(OperatorResponse::OutputAdmitted(false))
    );

    // Modules do not count; recorded outputs do, after a restart too.
    let mut again = MasterCore::new(CoreConfig {
        max_output_bytes: 100,
        ..config()
    });
    let record = indexed;
    again.recover(
        Recovered {
            artifacts: vec![
                record(a, 60, ArtifactKind::Output),
                record(corral_types::Digest::of(b"m"), 1000, ArtifactKind::Module),
            ],
            ..Recovered::default()
        },
        ms(0),
    );
    assert!(admit(&mut again, b, 41).is_err());
    assert_eq!(
        admit(&mut again, b, 40),
        Ok(OperatorResponse::OutputAdmitted(false))
    );
}

#[test]
fn a_reservation_made_on_an_offer_is_recorded_before_the_accept_is_answered() {
    let (mut core, agent, fw, stream, offer) = offered();
    let fx = call(
        &mut core,
        &fw,
        &stream,
        Call::Accept {
            offer_ids: vec![offer],
            operations: vec![Operation::Reserve {
                id: String::new(),
                role: Role::default_role(),
                resources: res(1000, 256),
            }],
            refuse: Duration::ZERO,
            artifacts: Visibility::All.into(),
        },
        ms(2),
    );
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Agent(AgentRecord {
                id: agent,
                info: agent_info(),
                state: AgentState::Admitted,
                registered_unix_millis: START_UNIX,
                drain: None,
                reservations: vec![(Role::default_role(), res(1000, 256))],
            })),
            // The rest of the offer goes back.
            Effect::AllocateSoon,
            done(),
        ]
    );
}

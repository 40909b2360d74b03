//! Tasks run for a principal: whose they are, and whose artifacts they may use.

use super::*;

#[test]
fn a_task_runs_only_artifacts_its_principal_may_see() {
    let (mut core, _agent, fw, stream, offer) = offered();
    store_module_of(&mut core, "alice");
    let accept = |offer: &OfferId, id: &str, who: &str| Call::Accept {
        offer_ids: vec![offer.clone()],
        operations: vec![Operation::Launch(vec![task(id, 1000, 1)])],
        refuse: Duration::ZERO,
        artifacts: Visibility::Only(vec![who.into()]).into(),
    };
    let fx = call(&mut core, &fw, &stream, accept(&offer, "t1", "bob"), ms(2));
    let refused = assert_refused(&fx, "its owners have not shared it");
    assert_eq!(refused.state, TaskState::Error);
    assert!(commands(&fx).is_empty(), "{fx:?}");

    let offer = next_offer(&mut core, 3);
    let fx = call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, "t2", "alice"),
        ms(4),
    );
    assert_launched(&fx, "t2");
}

/// Records the tasks' module (`task`'s) as stored by `owner`.
fn store_module_of(core: &mut MasterCore, owner: &str) {
    core.handle(
        Event::Operator(OperatorRequest::RecordArtifact {
            digest: corral_types::Digest::of(b"m"),
            size: 1,
            kind: ArtifactKind::Module,
            owner: Some(owner.into()),
        }),
        ms(1),
    );
}

/// A task that runs for `owner`, as the built-in jobs launch a tenant's.
fn task_for(id: &str, owner: &str) -> LaunchTask {
    let mut t = task(id, 1000, 1);
    if let Ok(info) = &mut t.info {
        info.owner = Some(owner.into());
    }
    t
}

/// The operator's answer to `request`.
fn ask_operator(core: &mut MasterCore, request: OperatorRequest) -> OperatorResponse {
    let fx = core.handle(Event::Operator(request), ms(50));
    match &fx[..] {
        [Effect::Reply(Reply::Operator(Ok(response)))] => response.clone(),
        _ => panic!("{fx:?}"),
    }
}

#[test]
fn a_task_run_for_a_principal_is_that_principals_and_uses_only_its_artifacts() {
    // The framework has no principal: it is the master's own.
    let (mut core, _agent, fw, stream, offer) = offered();
    store_module_of(&mut core, "alice");
    let only = |p: &str| Visibility::Only(vec![p.into()]);
    let run_for = |offer: &OfferId, id: &str, owner: &str| Call::Accept {
        offer_ids: vec![offer.clone()],
        operations: vec![Operation::Launch(vec![task_for(id, owner)])],
        refuse: Duration::ZERO,
        artifacts: ArtifactRights {
            caller: Visibility::All,
            owners: [("alice".into(), only("alice")), ("bob".into(), only("bob"))].into(),
        },
    };
    let fx = call(&mut core, &fw, &stream, run_for(&offer, "t1", "bob"), ms(2));
    assert_refused(
        &fx,
        "not shared it with principal bob, whom the task runs for",
    );

    let offer = next_offer(&mut core, 3);
    let fx = call(
        &mut core,
        &fw,
        &stream,
        run_for(&offer, "t2", "alice"),
        ms(4),
    );
    assert_launched(&fx, "t2");
    // Alice lists it and owns it; bob does not see it.
    let list = |visible: Visibility| OperatorRequest::ListTasks {
        task: Some(TaskId::new("t2").unwrap()),
        framework: None,
        agent: None,
        states: vec![],
        labels: vec![],
        page_size: 10,
        page_token: String::new(),
        visible,
    };
    let OperatorResponse::Tasks(page) = ask_operator(&mut core, list(only("alice"))) else {
        panic!()
    };
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.tasks[0].now.owner.as_deref(), Some("alice"));
    let OperatorResponse::Tasks(page) = ask_operator(&mut core, list(only("bob"))) else {
        panic!()
    };
    assert!(page.tasks.is_empty(), "{page:?}");
    let owner_for = |visible: Visibility| OperatorRequest::TaskOwner {
        task: TaskId::new("t2").unwrap(),
        framework: None,
        visible,
    };
    let owner = ask_operator(&mut core, owner_for(only("alice")));
    assert!(
        matches!(&owner, OperatorResponse::TaskOwner { principal: Some(p), .. } if p == "alice"),
        "{owner:?}"
    );
    // To bob it is not there at all.
    let fx = core.handle(Event::Operator(owner_for(only("bob"))), ms(50));
    assert!(
        matches!(
            &fx[..],
            [Effect::Reply(Reply::Operator(Err(
                ServiceError::NotFound { .. }
            )))]
        ),
        "{fx:?}"
    );
}

#[test]
fn a_tenants_framework_runs_tasks_for_another_principal_only_with_rights_for_it() {
    let mut core = MasterCore::new(config());
    register(&mut core, ms(0));
    store_module_of(&mut core, "alice");
    let mut carol = info(None, Duration::from_secs(60));
    carol.principal = Some("carol".into());
    let (fw, stream, _) = subscribe_with(&mut core, FW, carol, ms(0));
    // The service leaves out the principals carol may not run tasks for.
    let mut launch = |id: &str, artifacts: ArtifactRights, now: u64| {
        let offer = next_offer(&mut core, now);
        core.handle(
            Event::Call {
                framework_id: fw.clone(),
                stream_id: stream.clone(),
                principal: Some("carol".into()),
                call: Call::Accept {
                    offer_ids: vec![offer],
                    operations: vec![Operation::Launch(vec![task_for(id, "alice")])],
                    refuse: Duration::ZERO,
                    artifacts,
                },
            },
            ms(now + 1),
        )
    };
    let fx = launch("t1", Visibility::All.into(), 1);
    assert_refused(
        &fx,
        "principal carol may not run tasks for it (run_tasks_for)",
    );
    assert!(commands(&fx).is_empty(), "{fx:?}");

    let granted = ArtifactRights {
        caller: Visibility::Only(vec!["carol".into()]),
        owners: [("alice".into(), Visibility::Only(vec!["alice".into()]))].into(),
    };
    let fx = launch("t2", granted, 3);
    assert_launched(&fx, "t2");
}

/// The offer the next allocation, at `now` ms, makes.
fn next_offer(core: &mut MasterCore, now: u64) -> OfferId {
    offers(&core.handle(Event::Allocate, ms(now)))[0].id.clone()
}

/// `fx` refuses one task as invalid, saying `why`; returns its update.
fn assert_refused(fx: &[Effect], why: &str) -> TaskStatus {
    let refused = updates(fx);
    assert_eq!(refused.len(), 1, "{fx:?}");
    assert_eq!(refused[0].reason, Reason::InvalidTask);
    assert!(refused[0].message.contains(why), "{}", refused[0].message);
    refused[0].clone()
}

/// `fx` launches task `id` on the agent, and nothing else.
fn assert_launched(fx: &[Effect], id: &str) {
    assert!(
        matches!(&commands(fx)[..], [AgentCommand::Launch { tasks, .. }] if tasks[0].id.as_str() == id),
        "{fx:?}"
    );
}

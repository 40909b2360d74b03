//! Scheduler calls: ACCEPT, DECLINE, REVIVE, SUPPRESS, KILL, ACKNOWLEDGE, RECONCILE, TEARDOWN.

use std::collections::BTreeSet;
use std::time::Duration;

use corral_proto::{ModuleSource, OperationUpdate, ServiceError, TaskInfo};
use corral_types::{
    AgentId, Allocation, Digest, FrameworkId, FrameworkState, OfferId, OperationState, Reason,
    Resources, Role, TaskId, TaskState, Timestamp,
};

use super::{
    Ack, Agent, AgentCommand, ArtifactRights, Call, FrameworkEvent, LaunchTask, MasterCore,
    Operation, Task, TaskKey, refused,
};
use crate::auth::Visibility;

/// What is left of the accepted offers in one role.
#[derive(Debug)]
struct Pool {
    role: Role,
    left: Allocation,
}

impl MasterCore {
    /// Refuses a framework that is unknown, or a stream that is not its current
    /// subscription (a framework that failed over cannot act behind its successor).
    pub(super) fn current_subscription(
        &self,
        framework: &FrameworkId,
        stream_id: &str,
        principal: Option<&str>,
    ) -> Result<(), ServiceError> {
        let f = self
            .frameworks
            .get(framework)
            .ok_or_else(|| ServiceError::NotFound {
                kind: "framework",
                id: framework.to_string(),
            })?;
        if f.state != FrameworkState::Active || f.stream_id != stream_id {
            return Err(ServiceError::FailedPrecondition(format!(
                "stream id {stream_id:?} is not framework {framework}'s current subscription; re-subscribe"
            )));
        }
        if f.info.principal.as_deref() != principal {
            return Err(ServiceError::PermissionDenied(format!(
                "framework {framework} belongs to another principal"
            )));
        }
        Ok(())
    }

    pub(super) fn call(
        &mut self,
        framework: &FrameworkId,
        call: Call,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        match call {
            Call::Accept {
                offer_ids,
                operations,
                refuse,
                artifacts,
            } => self.accept(framework, offer_ids, operations, refuse, &artifacts, now),
            Call::Decline { offer_ids, refuse } => {
                self.decline(framework, &offer_ids, refuse, now);
                Ok(())
            }
            Call::Revive { roles } => {
                self.allocator.revive(framework, &roles).map_err(refused)?;
                self.note_suppressed(framework, &roles, false);
                self.allocate_soon();
                Ok(())
            }
            Call::Suppress { roles } => {
                self.allocator
                    .suppress(framework, &roles)
                    .map_err(refused)?;
                self.note_suppressed(framework, &roles, true);
                Ok(())
            }
            Call::Kill { task_id, agent_id } => {
                self.kill(framework, task_id, agent_id, now);
                Ok(())
            }
            Call::Acknowledge { acks } => {
                self.acknowledge(framework, acks, now);
                Ok(())
            }
            Call::Reconcile { tasks } => {
                self.reconcile(framework, tasks, now);
                Ok(())
            }
            Call::Teardown => {
                self.remove_framework(framework, "torn down by the framework");
                Ok(())
            }
        }
    }

    fn accept(
        &mut self,
        framework: &FrameworkId,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        refuse: Duration,
        artifacts: &ArtifactRights,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let agent = match self.accepted_agent(framework, &offer_ids) {
            Ok(agent) => agent,
            Err(why) => {
                self.drop_accept(framework, &offer_ids, &operations, &why, now);
                return Ok(());
            }
        };
        let mut pools: Vec<Pool> = Vec::new();
        for id in &offer_ids {
            if let Some(o) = self.offers.remove(id) {
                match pools.iter_mut().find(|p| p.role == o.role) {
                    Some(p) => p.left = p.left.saturating_add(&o.resources),
                    None => pools.push(Pool {
                        role: o.role,
                        left: o.resources,
                    }),
                }
            }
        }
        let mut launched: Vec<TaskInfo> = Vec::new();
        let mut in_call: BTreeSet<TaskId> = BTreeSet::new();
        let mut reservations_changed = false;
        for (index, op) in operations.into_iter().enumerate() {
            let (id, refusal) = match op {
                Operation::Launch(tasks) => {
                    for mut t in tasks {
                        if let Ok(info) = &t.info
                            && let Err(why) = self.may_run(framework, info, artifacts)
                        {
                            t.info = Err(why);
                        }
                        if let Some(info) =
                            self.admit(framework, &agent, t, &mut pools, &mut in_call, now)
                        {
                            launched.push(info);
                        }
                    }
                    continue;
                }
                Operation::Reserve {
                    id,
                    role,
                    resources,
                } => (
                    id,
                    self.reserve_in_accept(framework, &agent, &mut pools, &role, &resources),
                ),
                Operation::Unreserve {
                    id,
                    role,
                    resources,
                } => (
                    id,
                    self.unreserve_in_accept(framework, &agent, &mut pools, &role, &resources),
                ),
            };
            match refusal {
                Ok(()) => reservations_changed = true,
                Err(message) => self.operation_failed(
                    framework,
                    OperationUpdate {
                        operation_id: id,
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                        state: OperationState::Error,
                        agent_id: Some(agent.clone()),
                        message,
                    },
                ),
            }
        }
        if reservations_changed {
            self.note_reservations(&agent);
        }
        if !launched.is_empty()
            && let Some(conn) = self.agents.get(&agent).and_then(|a| a.conn)
        {
            self.send_agent(
                conn,
                AgentCommand::Launch {
                    framework: framework.clone(),
                    tasks: launched,
                },
            );
        }
        // Leftovers go back, refused to this framework for `refuse`.
        for p in pools {
            if p.left.is_empty() {
                continue;
            }
            let recovered = self.allocator.recover(&agent, framework, &p.role, &p.left);
            self.allocator_agrees("recovering what an accept left", recovered);
            let declined =
                self.allocator
                    .decline(&agent, framework, &p.role, &p.left.total(), refuse, now);
            self.allocator_agrees("filtering what an accept left", declined);
            self.allocate_soon();
        }
        Ok(())
    }

    /// The one agent of the offers an ACCEPT names, or why the ACCEPT is not valid: every
    /// offer must be outstanding, this framework's, named once, and on one agent.
    fn accepted_agent(
        &self,
        framework: &FrameworkId,
        offer_ids: &[OfferId],
    ) -> Result<AgentId, String> {
        let mut agent: Option<AgentId> = None;
        let mut unique = BTreeSet::new();
        let mut invalid: Option<String> = None;
        for id in offer_ids {
            match self.offers.get(id) {
                _ if !unique.insert(id.clone()) => {
                    invalid = Some(format!("offer {id} is named twice"));
                }
                Some(o) if &o.framework == framework => match &agent {
                    Some(a) if *a != o.agent => {
                        invalid = Some("offers span more than one agent".into());
                    }
                    _ => agent = Some(o.agent.clone()),
                },
                _ => invalid = Some(format!("offer {id} is unknown, expired or already used")),
            }
        }
        match (invalid, agent) {
            (None, Some(agent)) => Ok(agent),
            (why, _) => Err(why.unwrap_or_else(|| "no offers named".into())),
        }
    }

    /// An ACCEPT that is not valid: nothing is applied, the valid offers go back to the
    /// allocator, every task is DROPPED and every other operation reported DROPPED.
    fn drop_accept(
        &mut self,
        framework: &FrameworkId,
        offer_ids: &[OfferId],
        operations: &[Operation],
        why: &str,
        now: Timestamp,
    ) {
        for id in offer_ids {
            if self
                .offers
                .get(id)
                .is_some_and(|o| &o.framework == framework)
            {
                self.rescind_offer(id, false);
            }
        }
        for (index, op) in operations.iter().enumerate() {
            match op {
                Operation::Launch(tasks) => {
                    for task in tasks {
                        let status = self.master_status(
                            framework,
                            &task.id,
                            None,
                            (TaskState::Dropped, Reason::InvalidOffer),
                            why,
                            now,
                        );
                        self.send_update(status);
                    }
                }
                Operation::Reserve { id, .. } | Operation::Unreserve { id, .. } => self
                    .operation_failed(
                        framework,
                        OperationUpdate {
                            operation_id: id.clone(),
                            index: u32::try_from(index).unwrap_or(u32::MAX),
                            state: OperationState::Dropped,
                            agent_id: None,
                            message: why.to_owned(),
                        },
                    ),
            }
        }
    }

    /// Reserves part of the accepted offers' unreserved resources to `role`.
    fn reserve_in_accept(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        pools: &mut [Pool],
        role: &Role,
        resources: &Resources,
    ) -> Result<(), String> {
        let pool = pools
            .iter_mut()
            .find(|p| &p.role == role && p.left.unreserved.contains(resources))
            .ok_or_else(|| {
                format!("reserve of {resources} to {role}: not in what is left of the offers")
            })?;
        self.allocator
            .reserve_allocated(agent, framework, role, resources)
            .map_err(|e| format!("reserve of {resources} to {role} refused: {e}"))?;
        pool.left.unreserved = pool.left.unreserved.saturating_sub(resources);
        pool.left.reserved = pool.left.reserved.saturating_add(resources);
        Ok(())
    }

    /// Returns part of the accepted offers' reserved resources to the unreserved pool.
    fn unreserve_in_accept(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        pools: &mut [Pool],
        role: &Role,
        resources: &Resources,
    ) -> Result<(), String> {
        let pool = pools
            .iter_mut()
            .find(|p| &p.role == role && p.left.reserved.contains(resources))
            .ok_or_else(|| {
                format!("unreserve of {resources} from {role}: not in the offers' reserved part")
            })?;
        self.allocator
            .unreserve_allocated(agent, framework, role, resources)
            .map_err(|e| format!("unreserve of {resources} from {role} refused: {e}"))?;
        pool.left.reserved = pool.left.reserved.saturating_sub(resources);
        pool.left.unreserved = pool.left.unreserved.saturating_add(resources);
        Ok(())
    }

    /// Tells the framework an operation was not applied (if it is connected).
    fn operation_failed(&mut self, framework: &FrameworkId, failure: OperationUpdate) {
        tracing::info!(framework_id = %framework, index = failure.index, reason = %failure.message, "offer operation not applied");
        if let Some(conn) = self.frameworks.get(framework).and_then(|f| f.conn) {
            self.send_framework(conn, FrameworkEvent::OperationFailed(failure));
        }
    }

    /// Whether `framework` may launch `info`: a task it runs for another principal (only the
    /// master's own frameworks, and principals `artifacts` has rights for, may), or one
    /// naming an artifact the task's principal may not use, fails.
    fn may_run(
        &self,
        framework: &FrameworkId,
        info: &TaskInfo,
        artifacts: &ArtifactRights,
    ) -> Result<(), String> {
        let own = self.principal_of(framework);
        let owner = info.owner.as_deref().filter(|o| Some(*o) != own);
        if let (Some(owner), Some(own)) = (owner, own)
            && !artifacts.owners.contains_key(owner)
        {
            return Err(format!(
                "owner {owner:?}: principal {own} may not run tasks for it (run_tasks_for)"
            ));
        }
        match self.unusable_artifact(info, &artifacts.of(owner)) {
            Some(digest) => Err(format!(
                "artifact {digest} is not in the artifact store, or its owners have not shared \
                 it with {}",
                owner.map_or("this framework's principal".to_owned(), |o| format!(
                    "principal {o}, whom the task runs for"
                ))
            )),
            None => Ok(()),
        }
    }

    /// The first artifact in the store (the module, an input) `info` names that principals
    /// seeing `visible` principals' artifacts may not use, if any. With authentication a
    /// digest is not a capability: a tenant runs what it (or whoever shares with it) stored.
    fn unusable_artifact(&self, info: &TaskInfo, visible: &Visibility) -> Option<Digest> {
        if *visible == Visibility::All {
            return None;
        }
        let module = match &info.module {
            ModuleSource::Digest(digest) => Some(digest),
            ModuleSource::Url { .. } | ModuleSource::File(_) => None,
        };
        let inputs = info
            .inputs
            .iter()
            .filter_map(|input| input.source.artifact());
        module
            .into_iter()
            .chain(inputs)
            .find(|digest| {
                !self
                    .artifacts
                    .get(digest)
                    .is_some_and(|a| a.visible_to(visible))
            })
            .copied()
    }

    /// Validates one task of a LAUNCH against the pools; on success records it STAGING and
    /// returns what to send to the agent, otherwise the framework gets an ERROR update.
    fn admit(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        t: LaunchTask,
        pools: &mut [Pool],
        in_call: &mut BTreeSet<TaskId>,
        now: Timestamp,
    ) -> Option<TaskInfo> {
        let key: TaskKey = (framework.clone(), t.id.clone());
        let problem = match &t.info {
            Err(why) => Some(why.clone()),
            Ok(_) if self.tasks.contains(&key) || !in_call.insert(t.id.clone()) => {
                Some(format!("task id {} is already in use", t.id))
            }
            Ok(info) => match pools
                .iter()
                .position(|p| take(&p.left, &info.resources).is_some())
            {
                None => Some(format!(
                    "task resources {} are not available in the offers (left: {})",
                    info.resources,
                    pools
                        .iter()
                        .map(|p| p.left.total().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Some(_) => None,
            },
        };
        let mut info = match (problem, t.info) {
            (None, Ok(info)) => info,
            (problem, _) => {
                let why = problem.unwrap_or_default();
                let status = self.master_status(
                    framework,
                    &t.id,
                    Some(agent.clone()),
                    (TaskState::Error, Reason::InvalidTask),
                    why,
                    now,
                );
                self.send_update(status);
                return None;
            }
        };
        let pool = pools
            .iter_mut()
            .find(|p| take(&p.left, &info.resources).is_some())?;
        let alloc = take(&pool.left, &info.resources)?;
        pool.left = Allocation {
            unreserved: pool.left.unreserved.saturating_sub(&alloc.unreserved),
            reserved: pool.left.reserved.saturating_sub(&alloc.reserved),
        };
        let mut status = self.master_status(
            framework,
            &t.id,
            Some(agent.clone()),
            (TaskState::Staging, Reason::Launched),
            "",
            now,
        );
        status.source = corral_types::StatusSource::Master;
        let mut task = Task::new(
            Some(agent.clone()),
            pool.role.clone(),
            (&info).into(),
            alloc,
            status,
            now,
        );
        task.holds = true;
        // The next attempt of a task resumes from the checkpoint the last one left, unless
        // the framework hands one itself.
        if info.checkpoint.is_empty()
            && let Some(checkpoint) = self.checkpoints.get(&key)
        {
            info.checkpoint = checkpoint.clone();
        }
        self.tasks.insert(key, task);
        self.config.metrics.launches.inc();
        Some(info)
    }

    fn decline(
        &mut self,
        framework: &FrameworkId,
        offer_ids: &[OfferId],
        refuse: Duration,
        now: Timestamp,
    ) {
        for id in offer_ids {
            let Some(o) = self.offers.get(id) else {
                continue;
            };
            if &o.framework != framework {
                continue;
            }
            let (agent, role, total) = (o.agent.clone(), o.role.clone(), o.resources.total());
            self.config.metrics.offer("declined", 1);
            self.rescind_offer(id, false);
            let declined = self
                .allocator
                .decline(&agent, framework, &role, &total, refuse, now);
            self.allocator_agrees("filtering a declined offer", declined);
        }
    }

    pub(super) fn kill(
        &mut self,
        framework: &FrameworkId,
        task_id: TaskId,
        agent_hint: Option<AgentId>,
        now: Timestamp,
    ) {
        let key = (framework.clone(), task_id.clone());
        let Some(task) = self.tasks.get(&key) else {
            let status = self.master_status(
                framework,
                &task_id,
                agent_hint,
                (TaskState::Lost, Reason::Reconciliation),
                "kill of a task the master does not know",
                now,
            );
            self.send_update(status);
            return;
        };
        if task.status.state.is_terminal() {
            let mut status = task.status.clone();
            status.uuid = None;
            self.send_update(status);
            return;
        }
        if let Some(conn) = self.agent_conn_of(task) {
            self.send_kill(conn, framework, &task_id, Reason::TaskKilledByRequest);
        }
    }

    fn acknowledge(&mut self, framework: &FrameworkId, acks: Vec<Ack>, now: Timestamp) {
        for ack in acks {
            let key = (framework.clone(), ack.task_id.clone());
            if let Some(t) = self.tasks.get_mut(&key)
                && t.unacked.as_ref().is_some_and(|u| u.uuid == Some(ack.uuid))
            {
                t.unacked = None;
                // From the update's arrival (when the task was last updated).
                self.config
                    .metrics
                    .update_ack_seconds
                    .observe(now.saturating_duration_since(t.updated).as_secs_f64());
            }
            let (agent, done) = match self.tasks.get(&key) {
                Some(t) => (
                    t.agent().cloned().or(ack.agent_id.clone()),
                    t.status.state.is_terminal() && t.status.uuid == Some(ack.uuid),
                ),
                None => (ack.agent_id.clone(), false),
            };
            if let Some(agent) = agent {
                self.ack_to_agent(&agent, framework, &ack.task_id, ack.uuid);
            }
            if done {
                self.complete_task(&key);
            }
        }
    }

    fn reconcile(
        &mut self,
        framework: &FrameworkId,
        tasks: Vec<(TaskId, Option<AgentId>)>,
        now: Timestamp,
    ) {
        let mut answers = Vec::new();
        if tasks.is_empty() {
            answers = self
                .tasks
                .of_framework(framework)
                .iter()
                .filter_map(|key| self.tasks.get(key))
                .map(|t| t.status.clone())
                .collect();
        }
        // Whether an agent (any agent, for `None`) was recovered after a master failover and
        // has not re-registered yet, so may still report tasks this master has not heard of.
        // Worked out once: a reconciliation may name many tasks.
        let awaited = |a: &Agent| a.reregister_by.is_some();
        let any_awaited = self.agents.values().any(awaited);
        let may_still_report = |agent: Option<&AgentId>| match agent {
            Some(id) => self.agents.get(id).is_some_and(awaited),
            None => any_awaited,
        };
        for (task_id, agent) in tasks {
            let key = (framework.clone(), task_id.clone());
            let known = self.tasks.get(&key).map(|t| t.status.clone()).or_else(|| {
                self.tasks
                    .completed()
                    .rev()
                    .find(|(k, _)| **k == key)
                    .map(|(_, t)| t.status.clone())
            });
            let status = match known {
                Some(s) => s,
                // As Mesos: while the agent that may hold the task (any agent, if none is
                // named) is recovered but not re-registered, the master cannot know; it
                // answers once the agent re-registers with its tasks or becomes UNREACHABLE,
                // and the framework asks again. UNKNOWN now could make it relaunch a live task.
                None if may_still_report(agent.as_ref()) => continue,
                None => {
                    let unreachable = agent
                        .as_ref()
                        .and_then(|a| self.agents.get(a))
                        .is_some_and(|a| a.state == corral_types::AgentState::Unreachable);
                    let (state, message) = if unreachable {
                        (TaskState::Unreachable, "its agent is unreachable")
                    } else {
                        (TaskState::Unknown, "the master does not know this task")
                    };
                    self.master_status(
                        framework,
                        &task_id,
                        agent,
                        (state, Reason::Reconciliation),
                        message,
                        now,
                    )
                }
            };
            answers.push(status);
        }
        for mut status in answers {
            status.uuid = None;
            status.reason = Reason::Reconciliation;
            status.source = corral_types::StatusSource::Master;
            status.timestamp_millis = self.unix_millis(now);
            self.send_update(status);
        }
    }
}

/// Takes `want` out of `pool`, reserved resources first; `None` if it does not fit.
fn take(pool: &Allocation, want: &Resources) -> Option<Allocation> {
    let reserved = pool.reserved.min(want);
    let unreserved = want.checked_sub(&reserved).ok()?;
    pool.unreserved.contains(&unreserved).then_some(Allocation {
        unreserved,
        reserved,
    })
}

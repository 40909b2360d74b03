//! Agents: registration, re-registration, heartbeats, status updates, disconnection and loss.

use std::collections::{BTreeMap, BTreeSet};

use corral_allocator::{AgentSpec, UsedResources};
use corral_proto::{ServiceError, TaskStatus, UpdateUuid};
use corral_types::{
    AgentId, AgentState, Allocation, Digest, FrameworkId, FrameworkState, Reason, Role, TaskId,
    TaskState, Timestamp,
};

use super::{
    Agent, AgentCommand, AgentInfo, ConnId, Effect, Framework, FrameworkEvent, FrameworkInfo,
    MasterCore, ReportedTask, Task, TaskKey, refused,
};

impl MasterCore {
    pub(super) fn agent_register(
        &mut self,
        conn: ConnId,
        info: AgentInfo,
        cached: Vec<Digest>,
        now: Timestamp,
    ) {
        self.replace_agents_at(&info.address, now);
        let id: AgentId = self.new_id("S");
        let spec = AgentSpec {
            static_reservations: info.static_reservations.clone(),
            ..AgentSpec::new(info.resources.clone())
        };
        if let Err(e) = self.allocator.add_agent(id.clone(), spec, &[]) {
            self.effects.push(Effect::CloseAgent {
                conn,
                error: Some(refused(e)),
            });
            return;
        }
        tracing::info!(agent_id = %id, hostname = %info.hostname, "agent registered");
        self.agents.insert(
            id.clone(),
            Agent {
                id: id.clone(),
                info,
                conn: Some(conn),
                state: AgentState::Admitted,
                registered_unix_millis: self.unix_millis(now),
                last_seen: now,
                cached: cached.into_iter().collect(),
                drain: None,
                reservations: Vec::new(),
                reregister_by: None,
            },
        );
        self.agent_conns.insert(conn, id.clone());
        // The agent keeps the ID it is given: the master must not forget it.
        self.persist_agent(&id, None);
        self.send_registered(conn, &id);
        self.allocate_soon();
    }

    /// A new agent registering at the address of a disconnected one is that agent back
    /// without its checkpoint (`--recover=cleanup`, a wiped work directory): the old agent is
    /// gone and its live tasks are reported LOST, once. Mesos removes the old agent the same
    /// way. An agent that never comes back goes UNREACHABLE after the agent timeout instead.
    fn replace_agents_at(&mut self, address: &str, now: Timestamp) {
        let mut replaced: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| {
                !address.is_empty()
                    && a.info.address == address
                    && a.conn.is_none()
                    && a.state != AgentState::Gone
            })
            .map(|a| a.id.clone())
            .collect();
        replaced.sort();
        for id in replaced {
            tracing::warn!(agent_id = %id, %address, "a new agent registered at this agent's address; the old one is gone");
            for offer in self.offers_where(|o| o.agent == id) {
                self.rescind_offer(&offer, true);
            }
            self.remove_from_allocator(&id);
            let before = self.agent_record_of(&id);
            if let Some(a) = self.agents.get_mut(&id) {
                a.state = AgentState::Gone;
                a.drain = None;
            }
            // Recorded, so a restarted master refuses the old id too.
            self.persist_agent(&id, before);
            for key in self.live_tasks_on(&id) {
                self.lose_after_restart(
                    &key,
                    &id,
                    "the agent restarted without its checkpoint and registered as a new agent",
                    now,
                );
            }
        }
    }

    /// Reports a task of a restarted agent LOST (reason AGENT_RESTARTED) and completes it.
    /// Its resources are not given back: the agent was re-added, or removed, without them.
    fn lose_after_restart(&mut self, key: &TaskKey, agent: &AgentId, why: &str, now: Timestamp) {
        if let Some(t) = self.tasks.get_mut(key) {
            t.holds = false;
        }
        let status = self.master_status(
            &key.0,
            &key.1,
            Some(agent.clone()),
            (TaskState::Lost, Reason::AgentRestarted),
            why,
            now,
        );
        if let Some(t) = self.tasks.get_mut(key) {
            t.set_status(status.clone(), now);
        }
        self.send_update(status);
        self.complete_task(key);
    }

    fn send_registered(&mut self, conn: ConnId, id: &AgentId) {
        self.send_agent(
            conn,
            AgentCommand::Registered {
                agent_id: id.clone(),
                heartbeat_interval: self.config.agent_heartbeat_interval,
            },
        );
        // REGISTERED means not draining unless this follows.
        if self.agents.get(id).is_some_and(|a| a.drain.is_some()) {
            self.send_agent(conn, AgentCommand::Maintenance { draining: true });
        }
    }

    /// Tells a connected agent whether it is draining now.
    pub(super) fn send_maintenance(&mut self, id: &AgentId) {
        if let Some(a) = self.agents.get(id)
            && let Some(conn) = a.conn
        {
            let draining = a.drain.is_some();
            self.send_agent(conn, AgentCommand::Maintenance { draining });
        }
    }

    // The fields of `Event::AgentReregister`, passed on as they are.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn agent_reregister(
        &mut self,
        conn: ConnId,
        id: AgentId,
        info: AgentInfo,
        reported: Vec<ReportedTask>,
        updates: Vec<TaskStatus>,
        cached: Vec<Digest>,
        now: Timestamp,
    ) {
        let before = self.agent_record_of(&id);
        if let Some(a) = self.agents.get(&id) {
            if a.state == AgentState::Gone {
                self.send_agent(
                    conn,
                    AgentCommand::Shutdown {
                        reason: "agent was removed".into(),
                    },
                );
                self.effects.push(Effect::CloseAgent {
                    conn,
                    error: Some(ServiceError::FailedPrecondition(format!(
                        "agent {id} was removed and cannot re-register"
                    ))),
                });
                return;
            }
            if let Some(old) = a.conn
                && old != conn
            {
                self.agent_conns.remove(&old);
                self.effects.push(Effect::CloseAgent {
                    conn: old,
                    error: None,
                });
            }
        }
        // Start from a clean slate in the allocator: offers on the agent are withdrawn and
        // the agent is added back with what its tasks use.
        for offer in self.offers_where(|o| o.agent == id) {
            self.rescind_offer(&offer, true);
        }
        self.remove_from_allocator(&id);
        let mut seen: BTreeSet<TaskKey> = BTreeSet::new();
        for r in reported {
            let key = (r.framework_id.clone(), r.status.task_id.clone());
            seen.insert(key.clone());
            let role = self.role_for(&r.framework_id, &key, now);
            if !self.tasks.contains(&key) {
                let alloc = Allocation::unreserved(r.meta.resources.clone());
                let task = Task::new(None, role, r.meta, alloc, r.status.clone(), now);
                self.tasks.insert(key.clone(), task);
            }
            self.tasks.place(&key, &id);
            if let Some(task) = self.tasks.get_mut(&key) {
                task.set_status(r.status, now);
                task.holds = !task.status.state.is_terminal();
            }
        }
        for u in &updates {
            seen.insert((u.framework_id.clone(), u.task_id.clone()));
        }
        // Tasks the master placed on this agent that the agent does not know are gone.
        let missing: Vec<TaskKey> = self
            .tasks
            .on_agent(&id)
            .into_iter()
            .filter(|k| {
                !seen.contains(k)
                    && self
                        .tasks
                        .get(k)
                        .is_some_and(|t| !t.status.state.is_terminal())
            })
            .collect();
        for key in &missing {
            self.lose_after_restart(key, &id, "the agent re-registered without this task", now);
        }
        // Tasks of frameworks that were removed meanwhile are killed, not accounted.
        let orphans: Vec<TaskKey> = self
            .live_tasks_on(&id)
            .into_iter()
            .filter(|k| {
                self.frameworks
                    .get(&k.0)
                    .is_some_and(|f| f.state == FrameworkState::Completed)
            })
            .collect();
        for key in &orphans {
            if let Some(t) = self.tasks.get_mut(key) {
                t.holds = false;
            }
        }
        let used = self.used_on(&id);
        let spec = AgentSpec {
            dynamic_reservations: self
                .agents
                .get(&id)
                .map(|a| a.reservations.clone())
                .unwrap_or_default(),
            static_reservations: info.static_reservations.clone(),
            ..AgentSpec::new(info.resources.clone())
        };
        if let Err(e) = self.allocator.add_agent(id.clone(), spec.clone(), &used) {
            tracing::warn!(agent_id = %id, error = %e, "re-registered agent's tasks do not fit; not accounting them");
            for key in self.tasks.on_agent(&id) {
                if let Some(t) = self.tasks.get_mut(&key) {
                    t.holds = false;
                }
            }
            let plain = AgentSpec {
                static_reservations: info.static_reservations.clone(),
                ..AgentSpec::new(info.resources.clone())
            };
            let added = self.allocator.add_agent(id.clone(), spec, &[]).or_else(|e| {
                tracing::warn!(agent_id = %id, error = %e, "recorded reservations do not fit the re-registered agent; dropping them");
                self.allocator.add_agent(id.clone(), plain, &[])
            });
            if let Err(e) = added {
                self.effects.push(Effect::CloseAgent {
                    conn,
                    error: Some(refused(e)),
                });
                return;
            }
        }
        let (state, draining) = match self.agents.get(&id) {
            Some(a) if a.drain.is_some() => (AgentState::Draining, true),
            _ => (AgentState::Admitted, false),
        };
        if draining {
            let drained = self.allocator.set_agent_draining(&id, true);
            self.allocator_agrees("marking a re-registered agent draining", drained);
        }
        let registered_unix_millis = self
            .agents
            .get(&id)
            .map_or_else(|| self.unix_millis(now), |a| a.registered_unix_millis);
        let drain = self.agents.get(&id).and_then(|a| a.drain);
        let reservations = self.reservations_on(&id).unwrap_or_default();
        tracing::info!(agent_id = %id, "agent re-registered");
        self.agents.insert(
            id.clone(),
            Agent {
                id: id.clone(),
                info,
                conn: Some(conn),
                state,
                registered_unix_millis,
                last_seen: now,
                cached: cached.into_iter().collect(),
                drain,
                reservations,
                reregister_by: None,
            },
        );
        self.agent_conns.insert(conn, id.clone());
        // Written only when something recorded changed (an unreachable agent is back, new
        // resources): after a failover, thousands of agents re-register without a write.
        self.persist_agent(&id, before);
        self.send_registered(conn, &id);
        for (fw, task) in orphans {
            self.send_kill(conn, &fw, &task, Reason::FrameworkRemoved);
        }
        for u in updates {
            self.status_update(&id, u, now);
        }
        self.allocate_soon();
    }

    /// The role a re-registered task is accounted to: its known role, or its framework's
    /// first. An unknown framework is recovered as a disconnected placeholder in role `*`
    /// until it re-subscribes (as Mesos does after a master failover).
    fn role_for(&mut self, framework: &FrameworkId, key: &TaskKey, now: Timestamp) -> Role {
        if let Some(t) = self.tasks.get(key) {
            return t.role.clone();
        }
        if let Some(f) = self.frameworks.get(framework)
            && let Some(r) = f.info.roles.first()
        {
            return r.clone();
        }
        let role = Role::default_role();
        self.placeholders.insert(framework.clone());
        match self
            .allocator
            .add_framework(framework.clone(), std::slice::from_ref(&role), &[])
        {
            Ok(()) => {
                let inactive = self.allocator.set_framework_active(framework, false);
                self.allocator_agrees("pausing a placeholder framework", inactive);
            }
            // Only a framework the allocator already has: then it keeps its own state.
            Err(error) => {
                tracing::warn!(framework_id = %framework, %error, "placeholder framework not added");
            }
        }
        self.frameworks.insert(
            framework.clone(),
            Framework {
                id: framework.clone(),
                info: FrameworkInfo {
                    id: Some(framework.clone()),
                    name: String::new(),
                    user: String::new(),
                    roles: vec![role.clone()],
                    failover_timeout: std::time::Duration::ZERO,
                    labels: BTreeMap::new(),
                    principal: None,
                },
                conn: None,
                stream_id: String::new(),
                state: FrameworkState::Disconnected,
                registered_unix_millis: self.unix_millis(now),
                disconnected_unix_millis: None,
                failover_deadline: None,
                next_heartbeat: now,
                suppressed: BTreeSet::new(),
            },
        );
        role
    }

    /// What the tasks on an agent hold, by framework and role, for `add_agent`.
    fn used_on(&self, agent: &AgentId) -> Vec<UsedResources> {
        let mut sums: BTreeMap<(FrameworkId, Role), Allocation> = BTreeMap::new();
        for key in self.tasks.on_agent(agent) {
            if let Some(t) = self.tasks.get(&key).filter(|t| t.holds) {
                let e = sums.entry((key.0.clone(), t.role.clone())).or_default();
                *e = e.saturating_add(&t.alloc);
            }
        }
        sums.into_iter()
            .map(|((framework, role), resources)| UsedResources {
                framework,
                role,
                resources,
            })
            .collect()
    }

    /// The agent on `conn`, noting that it was heard from.
    pub(super) fn agent_by_conn(&mut self, conn: ConnId, now: Timestamp) -> Option<AgentId> {
        let id = self.agent_conns.get(&conn)?;
        let a = self.agents.get_mut(id).filter(|a| a.conn == Some(conn))?;
        a.last_seen = now;
        Some(a.id.clone())
    }

    /// A task's status changed on its agent (or the agent resent an unacknowledged update).
    pub(super) fn status_update(
        &mut self,
        agent: &AgentId,
        mut status: TaskStatus,
        now: Timestamp,
    ) {
        let key = (status.framework_id.clone(), status.task_id.clone());
        // A checkpoint is kept for the task's next attempt, never forwarded; one that
        // finished needs none.
        let checkpoint = std::mem::take(&mut status.checkpoint);
        if status.state == TaskState::Finished {
            self.checkpoints.remove(&key);
        } else if !checkpoint.is_empty() {
            self.checkpoints.put(key.clone(), checkpoint);
        }
        // Durable before the framework hears of the outputs.
        self.record_outputs(&mut status, now);
        // An update that tells nothing new of the task (the agent resending what it has not
        // had acknowledged) is a redelivery: sent only when the framework's stream has room.
        let mut again = false;
        let was_terminal = match self.tasks.get_mut(&key) {
            Some(t) => {
                let was = t.status.state.is_terminal();
                again = was
                    || status.state == t.status.state
                    || t.unacked.as_ref().is_some_and(|u| u.uuid == status.uuid);
                // A terminal state is final: a retransmission of an older update must not
                // move the task back, nor a conflicting terminal update change how it ended
                // (both still reach the framework, which acknowledges them to the agent).
                if !was || status.state == t.status.state {
                    t.set_status(status.clone(), now);
                }
                if status.uuid.is_some() {
                    t.unacked = Some(status.clone());
                }
                was
            }
            None => {
                if !self.tasks.is_completed(&key) {
                    let mut task = Task::new(
                        Some(agent.clone()),
                        Role::default_role(),
                        Default::default(),
                        Allocation::default(),
                        status.clone(),
                        now,
                    );
                    task.unacked = status.uuid.map(|_| status.clone());
                    self.tasks.insert(key.clone(), task);
                }
                true
            }
        };
        if !was_terminal && status.state.is_terminal() {
            self.release_task(&key);
            self.maybe_finish_drain(agent, now);
        }
        let active = self
            .frameworks
            .get(&status.framework_id)
            .is_some_and(|f| f.state != FrameworkState::Completed);
        if active && again {
            self.redeliver(status);
        } else if active {
            self.send_update(status);
        } else if let Some(uuid) = status.uuid {
            // Nobody will acknowledge it: acknowledge on the removed framework's behalf so the
            // agent can forget the update.
            self.ack_to_agent(agent, &status.framework_id, &status.task_id, uuid);
            if status.state.is_terminal() {
                self.complete_task(&key);
            }
        }
    }

    pub(super) fn ack_to_agent(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        task: &TaskId,
        uuid: UpdateUuid,
    ) {
        let Some(conn) = self.agents.get(agent).and_then(|a| a.conn) else {
            return;
        };
        self.send_agent(
            conn,
            AgentCommand::Acknowledge {
                framework: framework.clone(),
                task: task.clone(),
                uuid,
            },
        );
    }

    /// The agent's stream ended: no offers on it until it re-registers; it becomes
    /// UNREACHABLE if it does not come back within the agent timeout.
    pub(super) fn agent_disconnected(&mut self, conn: ConnId, _now: Timestamp) {
        // The runtime forgets the stream's sender whatever the core knew of it.
        self.effects.push(Effect::CloseAgent { conn, error: None });
        let Some(id) = self.agent_conns.remove(&conn) else {
            return;
        };
        let Some(a) = self.agents.get_mut(&id).filter(|a| a.conn == Some(conn)) else {
            return;
        };
        a.conn = None;
        let id = a.id.clone();
        tracing::info!(agent_id = %id, "agent disconnected");
        let inactive = self.allocator.set_agent_active(&id, false);
        self.allocator_agrees("pausing a disconnected agent", inactive);
        for offer in self.offers_where(|o| o.agent == id) {
            self.rescind_offer(&offer, true);
        }
    }

    /// Agents not heard from within the timeout, and recovered agents that did not
    /// re-register in time, become UNREACHABLE.
    pub(super) fn check_agents(&mut self, now: Timestamp) {
        let timeout = self.config.agent_timeout;
        let mut lost: Vec<(AgentId, &'static str)> = self
            .agents
            .values()
            .filter(|a| {
                matches!(
                    a.state,
                    AgentState::Admitted | AgentState::Draining | AgentState::Drained
                )
            })
            .filter_map(|a| match a.reregister_by {
                Some(by) => (by <= now).then_some((
                    a.id.clone(),
                    "agent did not re-register after a master failover",
                )),
                None => (a.last_seen.saturating_add(timeout) < now)
                    .then_some((a.id.clone(), "agent missed its heartbeats")),
            })
            .collect();
        lost.sort();
        for (id, why) in lost {
            if self
                .agents
                .get(&id)
                .is_some_and(|a| a.reregister_by.is_none())
            {
                self.config.metrics.heartbeats_missed.inc();
            }
            self.mark_unreachable(&id, why, now);
        }
        let drains: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| matches!(a.drain, Some((Some(at), _)) if at <= now))
            .map(|a| a.id.clone())
            .collect();
        for id in drains {
            self.kill_agent_tasks(&id);
            if let Some(a) = self.agents.get_mut(&id)
                && let Some((deadline, _)) = a.drain.as_mut()
            {
                *deadline = None;
            }
        }
    }

    pub(super) fn mark_unreachable(&mut self, id: &AgentId, why: &str, now: Timestamp) {
        let before = self.agent_record_of(id);
        let Some(a) = self.agents.get_mut(id) else {
            return;
        };
        tracing::warn!(agent_id = %id, reason = why, "agent unreachable");
        a.state = AgentState::Unreachable;
        a.reregister_by = None;
        let conn = a.conn.take();
        // Recorded before frameworks hear of it, so a restarted master agrees.
        self.persist_agent(id, before);
        if let Some(conn) = conn {
            self.agent_conns.remove(&conn);
            self.effects.push(Effect::CloseAgent { conn, error: None });
        }
        for offer in self.offers_where(|o| &o.agent == id) {
            self.rescind_offer(&offer, true);
        }
        self.remove_from_allocator(id);
        let keys = self.live_tasks_on(id);
        for key in keys {
            let status = self.master_status(
                &key.0,
                &key.1,
                Some(id.clone()),
                (TaskState::Unreachable, Reason::AgentUnreachable),
                why,
                now,
            );
            if let Some(t) = self.tasks.get_mut(&key) {
                t.holds = false;
                t.set_status(status.clone(), now);
            }
            self.send_update(status);
        }
        let mut conns: Vec<ConnId> = self.frameworks.values().filter_map(|f| f.conn).collect();
        conns.sort_unstable();
        for conn in conns {
            self.send_framework(
                conn,
                FrameworkEvent::Failure {
                    agent: id.clone(),
                    message: format!("agent unreachable: {why}"),
                },
            );
        }
    }

    /// Sends KillTask for every live task on a draining agent.
    pub(super) fn kill_agent_tasks(&mut self, id: &AgentId) {
        let Some(conn) = self.agents.get(id).and_then(|a| a.conn) else {
            return;
        };
        let keys = self.live_tasks_on(id);
        for (fw, task) in keys {
            self.send_kill(conn, &fw, &task, Reason::AgentDraining);
        }
    }

    /// The non-terminal tasks placed on an agent, in key order.
    pub(super) fn live_tasks_on(&self, id: &AgentId) -> Vec<TaskKey> {
        self.tasks
            .on_agent(id)
            .into_iter()
            .filter(|k| {
                self.tasks
                    .get(k)
                    .is_some_and(|t| !t.status.state.is_terminal())
            })
            .collect()
    }

    /// A draining agent with no live tasks is drained (and removed, if asked).
    pub(super) fn maybe_finish_drain(&mut self, id: &AgentId, _now: Timestamp) {
        if self.agents.get(id).is_none_or(|a| a.drain.is_none()) {
            return;
        }
        let before = self.agent_record_of(id);
        let live = self.tasks.count_live_on(id) > 0;
        let Some(a) = self.agents.get_mut(id) else {
            return;
        };
        let Some((_, mark_gone)) = a.drain else {
            return;
        };
        if live || a.state != AgentState::Draining {
            return;
        }
        if !mark_gone {
            a.state = AgentState::Drained;
            self.persist_agent(id, before);
            return;
        }
        a.state = AgentState::Gone;
        a.drain = None;
        let conn = a.conn.take();
        // Recorded before the agent is told to shut down: a gone agent never comes back.
        self.persist_agent(id, before);
        if let Some(conn) = conn {
            self.agent_conns.remove(&conn);
            self.send_agent(
                conn,
                AgentCommand::Shutdown {
                    reason: "agent drained and marked gone".into(),
                },
            );
            self.effects.push(Effect::CloseAgent { conn, error: None });
        }
        self.remove_from_allocator(id);
    }
}

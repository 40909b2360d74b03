//! Operator requests: listings built from the core's records and the allocator, and policy
//! changes (weights, quotas, drain).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use corral_proto::ServiceError;

use crate::auth::Visibility;
use corral_types::{
    AgentId, AgentState, FrameworkId, FrameworkState, Resources, TaskId, Timestamp,
};

use super::{
    Agent, AgentSummary, ArtifactKind, Framework, FrameworkSummary, MasterCore, MasterSummary,
    ModuleSummary, OperatorRequest, OperatorResponse, RoleSummary, StateSnapshot, Task, TaskKey,
    TaskPage, TaskSummary, TaskUpdate, refused,
};

/// Tasks per page when a request names no page size, and the most `GetState` returns.
const DEFAULT_PAGE: usize = 1000;

impl MasterCore {
    pub(super) fn operator(
        &mut self,
        req: OperatorRequest,
        now: Timestamp,
    ) -> Result<OperatorResponse, ServiceError> {
        use OperatorRequest as R;
        Ok(match req {
            R::GetState { max_tasks } => {
                OperatorResponse::State(Box::new(self.snapshot(max_tasks)))
            }
            R::Master => OperatorResponse::Master(self.master_summary()),
            R::Subscribe { max_tasks } => {
                self.watch();
                OperatorResponse::State(Box::new(self.snapshot(max_tasks)))
            }
            R::Gauges => OperatorResponse::Gauges(Box::new(self.gauges())),
            R::ListAgents => OperatorResponse::Agents(self.agent_summaries()),
            R::ListModules { visible } => {
                OperatorResponse::Modules(self.module_summaries(&visible))
            }
            R::ListFrameworks {
                include_completed,
                visible,
            } => {
                OperatorResponse::Frameworks(self.framework_summaries(include_completed, &visible))
            }
            R::ListTasks {
                task,
                framework,
                agent,
                states,
                labels,
                page_size,
                page_token,
                visible,
            } => {
                let size = if page_size == 0 {
                    DEFAULT_PAGE
                } else {
                    page_size
                };
                // A page token is the last key of the previous page, `framework/task`.
                let after = match page_token.split_once('/') {
                    _ if page_token.is_empty() => None,
                    Some(key) => Some(key),
                    None => {
                        return Err(ServiceError::InvalidArgument(format!(
                            "page_token {page_token:?} is not one this master gave"
                        )));
                    }
                };
                // Filtered and paged on the records; summaries only for the page.
                let mut matching: Vec<(&TaskKey, &Task)> = self
                    .tasks
                    .iter_all()
                    .filter(|((f, id), t)| {
                        task.as_ref().is_none_or(|want| want == id)
                            && framework.as_ref().is_none_or(|want| want == f)
                            && (agent.is_none() || agent.as_ref() == t.agent())
                            && (states.is_empty() || states.contains(&t.status.state))
                            && labels.iter().all(|(k, v)| t.meta.labels.get(k) == Some(v))
                            && (visible == Visibility::All
                                || visible.sees(self.task_principal(f, t)))
                    })
                    .collect();
                // Stable order for paging: framework, then task ID.
                matching.sort_by(|a, b| a.0.cmp(b.0));
                let start = after.map_or(0, |after| {
                    matching.partition_point(|((f, id), _)| (f.as_str(), id.as_str()) <= after)
                });
                let rest = &matching[start.min(matching.len())..];
                let next_page_token = match rest.get(size.saturating_sub(1)) {
                    Some(((f, id), _)) if rest.len() > size => format!("{f}/{id}"),
                    _ => String::new(),
                };
                OperatorResponse::Tasks(TaskPage {
                    tasks: rest
                        .iter()
                        .take(size)
                        .map(|(key, t)| self.task_summary(key, t))
                        .collect(),
                    next_page_token,
                })
            }
            R::GetRoles => OperatorResponse::Roles(self.role_summaries()),
            R::SetWeight { role, weight } => {
                self.set_weight(&role, weight);
                OperatorResponse::Done
            }
            R::SetQuota { role, quota, force } => {
                self.set_quota(&role, quota, force)?;
                OperatorResponse::Done
            }
            R::RemoveQuota { role } => {
                self.remove_quota(&role)?;
                OperatorResponse::Done
            }
            R::Reserve {
                agent,
                role,
                resources,
            } => {
                self.agent_mut(&agent)?;
                if role.is_default() {
                    return Err(ServiceError::InvalidArgument(
                        "resources cannot be reserved to the default role *".into(),
                    ));
                }
                self.allocator
                    .reserve(&agent, &role, &resources)
                    .map_err(refused)?;
                self.note_reservations(&agent);
                self.allocate_soon();
                OperatorResponse::Done
            }
            R::Unreserve {
                agent,
                role,
                resources,
            } => {
                self.agent_mut(&agent)?;
                self.allocator
                    .unreserve(&agent, &role, &resources)
                    .map_err(refused)?;
                self.note_reservations(&agent);
                self.allocate_soon();
                OperatorResponse::Done
            }
            R::RecordArtifact {
                digest,
                size,
                kind,
                owner,
            } => {
                self.record_artifact(digest, size, kind, owner.as_deref(), now);
                OperatorResponse::Done
            }
            R::AdmitOutput { digest, size } => {
                OperatorResponse::OutputAdmitted(self.admit_output(&digest, size, now)?)
            }
            R::TaskOutputs { task, framework } => {
                let mut found = self.task_outputs.find(&task, framework.as_ref());
                let first = found.next().ok_or_else(|| ServiceError::NotFound {
                    kind: "outputs of task",
                    id: task.to_string(),
                })?;
                if found.next().is_some() {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "task id {task} is used by several frameworks; name the framework"
                    )));
                }
                OperatorResponse::TaskOutputs(Box::new(first.clone()))
            }
            R::ArtifactIndexed { digest, visible } => OperatorResponse::ArtifactIndexed(
                self.artifacts
                    .get(&digest)
                    .is_some_and(|a| a.visible_to(&visible)),
            ),
            R::DrainAgent {
                agent,
                grace,
                mark_gone,
            } => {
                self.drain(&agent, grace, mark_gone, now)?;
                OperatorResponse::Done
            }
            R::ReactivateAgent { agent } => {
                let before = self.agent_record_of(&agent);
                let a = self.agent_mut(&agent)?;
                if !matches!(a.state, AgentState::Draining | AgentState::Drained) {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "agent {agent} is not draining"
                    )));
                }
                a.state = AgentState::Admitted;
                a.drain = None;
                // A recovered agent that has not re-registered is not in the allocator yet.
                if self.allocator.agent(&agent).is_some() {
                    self.allocator
                        .set_agent_draining(&agent, false)
                        .map_err(refused)?;
                }
                self.persist_agent(&agent, before);
                self.send_maintenance(&agent);
                self.allocate_soon();
                OperatorResponse::Done
            }
            R::TaskOwner {
                task,
                framework,
                visible,
            } => {
                let seen = |(fw, _): &TaskKey, t: &Task| visible.sees(self.task_principal(fw, t));
                let (framework, principal) =
                    match self.find_task_where(&task, framework.as_ref(), seen) {
                        Ok(((framework, _), t)) => {
                            let principal = self.task_principal(framework, t).map(str::to_owned);
                            (framework.clone(), principal)
                        }
                        // Outputs outlive their task's record.
                        Err(not_found @ ServiceError::NotFound { .. }) => self
                            .task_outputs
                            .find(&task, framework.as_ref())
                            .map(|outputs| {
                                let principal = match &outputs.owner {
                                    Some(owner) => Some(owner.clone()),
                                    None => {
                                        self.principal_of(&outputs.framework_id).map(str::to_owned)
                                    }
                                };
                                (outputs.framework_id.clone(), principal)
                            })
                            .find(|(_, principal)| visible.sees(principal.as_deref()))
                            .ok_or(not_found)?,
                        Err(e) => return Err(e),
                    };
                OperatorResponse::TaskOwner {
                    framework,
                    principal,
                }
            }
            R::LocateTask { task, framework } => {
                let (_, t) = self.find_task(&task, framework.as_ref())?;
                let agent = t.agent().and_then(|a| self.agents.get(a));
                match agent {
                    Some(a) if !a.info.address.is_empty() => OperatorResponse::TaskLocation {
                        address: a.info.address.clone(),
                        terminal: t.status.state.is_terminal(),
                    },
                    _ => {
                        return Err(ServiceError::Unavailable(format!(
                            "the agent of task {task} is unknown or serves no address"
                        )));
                    }
                }
            }
            R::KillTask { task, framework } => {
                let ((framework, _), t) = self.find_task(&task, framework.as_ref())?;
                let framework = framework.clone();
                if t.status.state.is_terminal() {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "task {task} is already {}",
                        t.status.state
                    )));
                }
                let agent = t.agent().cloned().ok_or_else(|| {
                    ServiceError::Unavailable(format!("task {task} has no agent yet"))
                })?;
                if self.agents.get(&agent).and_then(|a| a.conn).is_none() {
                    return Err(ServiceError::Unavailable(format!(
                        "the agent of task {task} ({agent}) is not connected; the kill cannot be delivered"
                    )));
                }
                self.kill(&framework, task, Some(agent.clone()), now);
                OperatorResponse::Killed { framework, agent }
            }
        })
    }

    /// A task by ID, live or recently completed; `framework` disambiguates an ID that
    /// several frameworks use.
    fn find_task(
        &self,
        task: &TaskId,
        framework: Option<&FrameworkId>,
    ) -> Result<(&TaskKey, &Task), ServiceError> {
        self.find_task_where(task, framework, |_, _| true)
    }

    /// [`Self::find_task`] among the tasks `keep` keeps.
    fn find_task_where(
        &self,
        task: &TaskId,
        framework: Option<&FrameworkId>,
        keep: impl Fn(&TaskKey, &Task) -> bool,
    ) -> Result<(&TaskKey, &Task), ServiceError> {
        // A live task of a named framework is one lookup (`corral logs -f` asks often).
        if let Some(fw) = framework
            && let Some(live) = self.tasks.get_key_value(&(fw.clone(), task.clone()))
            && keep(live.0, live.1)
        {
            return Ok(live);
        }
        // Live tasks first, then the newest completed record.
        let mut found = self
            .tasks
            .iter()
            .chain(self.tasks.completed().rev())
            .filter(|((fw, id), _)| id == task && framework.is_none_or(|f| f == fw))
            .filter(|(key, t)| keep(key, t));
        let first = found.next().ok_or_else(|| ServiceError::NotFound {
            kind: "task",
            id: task.to_string(),
        })?;
        if found.any(|((fw, _), _)| *fw != first.0.0) {
            return Err(ServiceError::FailedPrecondition(format!(
                "task id {task} is used by several frameworks; name the framework"
            )));
        }
        Ok(first)
    }

    fn agent_mut(&mut self, id: &AgentId) -> Result<&mut Agent, ServiceError> {
        self.agents
            .get_mut(id)
            .ok_or_else(|| ServiceError::NotFound {
                kind: "agent",
                id: id.to_string(),
            })
    }

    fn drain(
        &mut self,
        id: &AgentId,
        grace: Option<Duration>,
        mark_gone: bool,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let before = self.agent_record_of(id);
        let a = self.agent_mut(id)?;
        if !matches!(a.state, AgentState::Admitted | AgentState::Draining) {
            return Err(ServiceError::FailedPrecondition(format!(
                "agent {id} cannot be drained in its current state"
            )));
        }
        a.state = AgentState::Draining;
        let deadline = grace.map(|g| now.saturating_add(g));
        a.drain = Some((deadline, mark_gone));
        // A recovered agent that has not re-registered is not in the allocator yet; it
        // re-registers draining.
        if self.allocator.agent(id).is_some() {
            self.allocator
                .set_agent_draining(id, true)
                .map_err(refused)?;
        }
        self.persist_agent(id, before);
        self.send_maintenance(id);
        for offer in self.offers_where(|o| &o.agent == id) {
            self.rescind_offer(&offer, true);
        }
        if grace.is_none() {
            self.kill_agent_tasks(id);
        }
        self.maybe_finish_drain(id, now);
        Ok(())
    }

    /// The state as `GetState` answers: at most `max_tasks` tasks (the default for 0),
    /// newest first.
    fn snapshot(&self, max_tasks: usize) -> StateSnapshot {
        let max = if max_tasks == 0 {
            DEFAULT_PAGE
        } else {
            max_tasks
        };
        // The newest `max`, summarised; the rest only sorted.
        let mut newest: Vec<(&TaskKey, &Task)> = self.tasks.iter_all().collect();
        newest.sort_by_key(|(_, t)| std::cmp::Reverse(t.updated));
        let tasks_truncated = newest.len() > max;
        let tasks = newest
            .into_iter()
            .take(max)
            .map(|(key, t)| self.task_summary(key, t))
            .collect();
        StateSnapshot {
            master: self.master_summary(),
            agents: self.agent_summaries(),
            frameworks: self.framework_summaries(true, &Visibility::All),
            tasks,
            tasks_truncated,
            roles: self.role_summaries(),
        }
    }

    fn module_summaries(&self, visible: &Visibility) -> Vec<ModuleSummary> {
        let mut active: HashMap<&str, usize> = HashMap::new();
        for (_, t) in self.tasks.iter() {
            if !t.status.state.is_terminal() {
                *active.entry(t.meta.module.as_str()).or_default() += 1;
            }
        }
        self.artifacts
            .values()
            .filter(|a| a.kind == ArtifactKind::Module && a.visible_to(visible))
            .map(|a| ModuleSummary {
                digest: a.digest,
                size: a.size,
                stored_unix_millis: a.stored_unix_millis,
                active_tasks: active
                    .get(a.digest.to_string().as_str())
                    .copied()
                    .unwrap_or(0),
                cached_on_agents: self
                    .agents
                    .values()
                    .filter(|agent| agent.cached.contains(&a.digest))
                    .count(),
            })
            .collect()
    }

    fn master_summary(&self) -> MasterSummary {
        MasterSummary {
            id: self.config.master_id.clone(),
            address: self.config.address.clone(),
            epoch: self.config.epoch,
            started_unix_millis: self.config.started_at_unix_millis,
        }
    }

    fn agent_summaries(&self) -> Vec<AgentSummary> {
        let mut agents: Vec<&Agent> = self.agents.values().collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        agents.into_iter().map(|a| self.agent_summary(a)).collect()
    }

    pub(super) fn agent_summary(&self, a: &Agent) -> AgentSummary {
        let alloc = self.allocator.agent(&a.id);
        let used = alloc
            .as_ref()
            .map(|s| s.total.saturating_sub(&s.free))
            .unwrap_or_default();
        let reserved = alloc
            .as_ref()
            .map(|s| {
                s.reservations
                    .iter()
                    .fold(Resources::new(), |acc, (_, r)| acc.saturating_add(r))
            })
            .unwrap_or_default();
        AgentSummary {
            id: a.id.clone(),
            hostname: a.info.hostname.clone(),
            address: a.info.address.clone(),
            state: a.state,
            total: a.info.resources.clone(),
            used,
            reserved,
            attributes: a.info.attributes.clone(),
            version: a.info.version.clone(),
            registered_unix_millis: a.registered_unix_millis,
            last_heartbeat_unix_millis: self.unix_millis(a.last_seen),
            active_tasks: self.tasks.count_live_on(&a.id),
            labels: a.info.labels.clone(),
            drain_deadline_unix_millis: match (a.state, a.drain) {
                (AgentState::Draining, Some((Some(deadline), _))) => {
                    Some(self.unix_millis(deadline))
                }
                _ => None,
            },
        }
    }

    /// The principal a framework belongs to.
    pub(super) fn principal_of(&self, framework: &FrameworkId) -> Option<&str> {
        self.frameworks.get(framework)?.info.principal.as_deref()
    }

    /// The principal a task belongs to, for ACLs: the one a master's own framework runs it
    /// for (a tenant's job), or else its framework's.
    pub(super) fn task_principal<'a>(
        &'a self,
        framework: &FrameworkId,
        task: &'a Task,
    ) -> Option<&'a str> {
        task.meta
            .owner
            .as_deref()
            .or_else(|| self.principal_of(framework))
    }

    fn framework_summaries(
        &self,
        include_completed: bool,
        visible: &Visibility,
    ) -> Vec<FrameworkSummary> {
        let mut fws: Vec<&Framework> = self
            .frameworks
            .values()
            .filter(|f| include_completed || f.state != FrameworkState::Completed)
            .filter(|f| visible.sees(f.info.principal.as_deref()))
            .collect();
        fws.sort_by(|a, b| a.id.cmp(&b.id));
        // One pass over the tasks and offers for every framework.
        let mut usage: HashMap<&FrameworkId, FrameworkUsage> = HashMap::new();
        for ((fw, _), t) in self.tasks.iter() {
            usage.entry(fw).or_default().add_task(t);
        }
        for o in self.offers.values() {
            usage.entry(&o.framework).or_default().add_offer(o);
        }
        fws.into_iter()
            .map(|f| {
                let usage = usage.remove(&f.id).unwrap_or_default();
                self.framework_summary_with(f, usage)
            })
            .collect()
    }

    pub(super) fn framework_summary(&self, f: &Framework) -> FrameworkSummary {
        let mut usage = FrameworkUsage::default();
        for (_, t) in self.tasks.iter().filter(|((fw, _), _)| fw == &f.id) {
            usage.add_task(t);
        }
        for o in self.offers.values().filter(|o| o.framework == f.id) {
            usage.add_offer(o);
        }
        self.framework_summary_with(f, usage)
    }

    fn framework_summary_with(&self, f: &Framework, usage: FrameworkUsage) -> FrameworkSummary {
        let FrameworkUsage {
            allocated,
            offered,
            active_tasks,
        } = usage;
        FrameworkSummary {
            id: f.id.clone(),
            name: f.info.name.clone(),
            user: f.info.user.clone(),
            state: f.state,
            roles: f.info.roles.clone(),
            suppressed_roles: f.suppressed.iter().cloned().collect(),
            allocated,
            offered,
            active_tasks,
            registered_unix_millis: f.registered_unix_millis,
            failover_timeout: f.info.failover_timeout,
            labels: f.info.labels.clone(),
            principal: f.info.principal.clone(),
        }
    }

    pub(super) fn task_summary(&self, key: &TaskKey, t: &Task) -> TaskSummary {
        TaskSummary {
            name: t.meta.name.clone(),
            module: t.meta.module.clone(),
            resources: t.meta.resources.clone(),
            labels: t.meta.labels.clone(),
            now: self.task_update(key, t),
        }
    }

    pub(super) fn task_update(&self, (fw, id): &TaskKey, t: &Task) -> TaskUpdate {
        TaskUpdate {
            id: id.clone(),
            framework: fw.clone(),
            owner: self.task_principal(fw, t).map(str::to_owned),
            agent: t.agent().cloned(),
            state: t.status.state,
            reason: t.status.reason,
            message: t.status.message.clone(),
            usage: t.status.usage,
            updated_unix_millis: self.unix_millis(t.updated),
            progress: t.status.progress.clone(),
            result_json: t.status.result_json.clone(),
            outputs: t.status.outputs.clone(),
        }
    }

    fn role_summaries(&self) -> Vec<RoleSummary> {
        self.allocator
            .roles()
            .into_iter()
            .map(|r| RoleSummary {
                role: r.role,
                weight: r.weight,
                quota: r.quota,
                allocated: r.allocated,
                reserved: r.reserved,
                consumed: r.consumed,
                dominant_share: r.dominant_share,
                frameworks: r.frameworks,
            })
            .collect()
    }
}

impl MasterCore {
    /// The metrics' gauges: agents, live tasks and frameworks by state (tasks that ended and
    /// were acknowledged count as "COMPLETED"), outstanding offers, the epoch.
    fn gauges(&self) -> crate::metrics::Gauges {
        fn tally(states: impl Iterator<Item = &'static str>) -> Vec<(&'static str, i64)> {
            let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
            for state in states {
                *counts.entry(state).or_default() += 1;
            }
            counts.into_iter().collect()
        }
        let mut tasks = tally(self.tasks.iter().map(|(_, t)| t.status.state.name()));
        tasks.push((
            "COMPLETED",
            i64::try_from(self.tasks.completed().count()).unwrap_or(i64::MAX),
        ));
        crate::metrics::Gauges {
            agents_by_state: tally(self.agents.values().map(|a| a.state.name())),
            tasks_by_state: tasks,
            frameworks_by_state: tally(self.frameworks.values().map(|f| f.state.name())),
            offers_outstanding: i64::try_from(self.offers.len()).unwrap_or(i64::MAX),
            epoch: i64::try_from(self.config.epoch).unwrap_or(i64::MAX),
        }
    }
}

/// What a framework holds: resources its tasks hold, resources in its offers, live tasks.
#[derive(Debug, Default)]
struct FrameworkUsage {
    allocated: Resources,
    offered: Resources,
    active_tasks: usize,
}

impl FrameworkUsage {
    fn add_task(&mut self, t: &Task) {
        if t.holds {
            self.allocated = self.allocated.saturating_add(&t.alloc.total());
        }
        if !t.status.state.is_terminal() {
            self.active_tasks += 1;
        }
    }

    fn add_offer(&mut self, o: &super::OfferRecord) {
        self.offered = self.offered.saturating_add(&o.resources.total());
    }
}

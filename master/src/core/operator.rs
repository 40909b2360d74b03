//! Operator requests: listings built from the core's records and the allocator, and policy
//! changes (weights, quotas, drain).

use std::time::Duration;

use corral_proto::ProtoEnum;
use corral_proto::{ServiceError, v1};
use corral_types::{
    AgentId, AgentState, Digest, FrameworkId, FrameworkState, Quota, Resources, Role, TaskId,
    TaskState, Timestamp, Weight,
};

use super::{Agent, Framework, MasterCore, Task, TaskKey, refused};

/// Tasks per page when a request names no page size, and the most `GetState` returns.
const DEFAULT_PAGE: usize = 1000;

/// An operator request, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OperatorRequest {
    GetState {
        max_tasks: usize,
    },
    ListAgents,
    ListFrameworks {
        include_completed: bool,
    },
    ListTasks {
        task: Option<TaskId>,
        framework: Option<FrameworkId>,
        agent: Option<AgentId>,
        states: Vec<TaskState>,
        page_size: usize,
        page_token: String,
    },
    GetRoles,
    SetWeight {
        role: Role,
        weight: Weight,
    },
    SetQuota {
        role: Role,
        quota: Quota,
        force: bool,
    },
    RemoveQuota {
        role: Role,
    },
    /// Dynamically reserves free resources of an agent to a role.
    Reserve {
        agent: AgentId,
        role: Role,
        resources: Resources,
    },
    /// Returns unused dynamically reserved resources of an agent.
    Unreserve {
        agent: AgentId,
        role: Role,
        resources: Resources,
    },
    DrainAgent {
        agent: AgentId,
        grace: Option<Duration>,
        mark_gone: bool,
    },
    ReactivateAgent {
        agent: AgentId,
    },
    /// A module was stored in the artifact store: record it in the index.
    RecordArtifact {
        digest: Digest,
        size: u64,
    },
    /// Whether the index records a module (a fetch of a module this master lacks then looks
    /// for it on the other masters).
    ArtifactIndexed {
        digest: Digest,
    },
    /// Where a task's sandbox is served (for ListFiles / ReadFile).
    LocateTask {
        task: TaskId,
        framework: Option<FrameworkId>,
    },
    /// Kills a live task as its framework could.
    KillTask {
        task: TaskId,
        framework: Option<FrameworkId>,
    },
}

/// The answer to an [`OperatorRequest`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OperatorResponse {
    State(v1::GetStateResponse),
    Agents(v1::ListAgentsResponse),
    Frameworks(v1::ListFrameworksResponse),
    Tasks(v1::ListTasksResponse),
    Roles(v1::GetRolesResponse),
    Done,
    ArtifactIndexed(bool),
    TaskLocation {
        address: String,
        terminal: bool,
    },
    Killed {
        framework: FrameworkId,
        agent: AgentId,
    },
}

impl MasterCore {
    pub(super) fn operator(
        &mut self,
        req: OperatorRequest,
        now: Timestamp,
    ) -> Result<OperatorResponse, ServiceError> {
        use OperatorRequest as R;
        Ok(match req {
            R::GetState { max_tasks } => {
                let max = if max_tasks == 0 {
                    DEFAULT_PAGE
                } else {
                    max_tasks
                };
                let mut tasks = self.task_summaries();
                tasks.sort_by_key(|t| std::cmp::Reverse(t.updated_at_millis));
                let truncated = tasks.len() > max;
                tasks.truncate(max);
                OperatorResponse::State(v1::GetStateResponse {
                    master: Some(v1::MasterInfo {
                        id: self.config.master_id.clone(),
                        address: self.config.address.clone(),
                        leader_address: self.config.address.clone(),
                        epoch: self.config.epoch,
                        version: env!("CARGO_PKG_VERSION").into(),
                        started_at_millis: self.config.started_at_unix_millis,
                    }),
                    agents: self.agent_summaries(),
                    frameworks: self.framework_summaries(true),
                    tasks,
                    tasks_truncated: truncated,
                    roles: self.role_summaries(),
                })
            }
            R::ListAgents => OperatorResponse::Agents(v1::ListAgentsResponse {
                agents: self.agent_summaries(),
            }),
            R::ListFrameworks { include_completed } => {
                OperatorResponse::Frameworks(v1::ListFrameworksResponse {
                    frameworks: self.framework_summaries(include_completed),
                })
            }
            R::ListTasks {
                task,
                framework,
                agent,
                states,
                page_size,
                page_token,
            } => {
                let size = if page_size == 0 {
                    DEFAULT_PAGE
                } else {
                    page_size
                };
                let mut tasks: Vec<v1::TaskSummary> = self
                    .task_summaries()
                    .into_iter()
                    .filter(|t| task.as_ref().is_none_or(|id| id.as_str() == t.id))
                    .filter(|t| {
                        framework
                            .as_ref()
                            .is_none_or(|f| f.as_str() == t.framework_id)
                    })
                    .filter(|t| agent.as_ref().is_none_or(|a| a.as_str() == t.agent_id))
                    .filter(|t| states.is_empty() || states.iter().any(|s| s.to_i32() == t.state))
                    .collect();
                // Stable order for paging: framework, then task ID.
                tasks.sort_by(|a, b| (&a.framework_id, &a.id).cmp(&(&b.framework_id, &b.id)));
                let start = if page_token.is_empty() {
                    0
                } else {
                    tasks.partition_point(|t| format!("{}/{}", t.framework_id, t.id) <= page_token)
                };
                let rest = tasks.split_off(start.min(tasks.len()));
                let next = if rest.len() > size {
                    let last = &rest[size - 1];
                    format!("{}/{}", last.framework_id, last.id)
                } else {
                    String::new()
                };
                OperatorResponse::Tasks(v1::ListTasksResponse {
                    tasks: rest.into_iter().take(size).collect(),
                    next_page_token: next,
                })
            }
            R::GetRoles => OperatorResponse::Roles(v1::GetRolesResponse {
                roles: self.role_summaries(),
            }),
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
            R::RecordArtifact { digest, size } => {
                self.record_artifact(digest, size, now);
                OperatorResponse::Done
            }
            R::ArtifactIndexed { digest } => {
                OperatorResponse::ArtifactIndexed(self.artifacts.contains_key(&digest))
            }
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
                self.allocate_soon();
                OperatorResponse::Done
            }
            R::LocateTask { task, framework } => {
                let (_, t) = self.find_task(&task, framework.as_ref())?;
                let agent = t.agent.as_ref().and_then(|a| self.agents.get(a));
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
                let agent = t.agent.clone().ok_or_else(|| {
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
        // A live task of a named framework is one lookup (`corral logs -f` asks often).
        if let Some(fw) = framework
            && let Some(live) = self.tasks.get_key_value(&(fw.clone(), task.clone()))
        {
            return Ok(live);
        }
        // Live tasks first, then the newest completed record.
        let mut found = self
            .tasks
            .iter()
            .chain(self.completed.iter().rev().map(|(k, t)| (k, t)))
            .filter(|((fw, id), _)| id == task && framework.is_none_or(|f| f == fw));
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
        for offer in self.offers_where(|o| &o.agent == id) {
            self.rescind_offer(&offer, true);
        }
        if grace.is_none() {
            self.kill_agent_tasks(id);
        }
        self.maybe_finish_drain(id, now);
        Ok(())
    }

    fn live_tasks_where(&self, f: impl Fn(&TaskKey, &Task) -> bool) -> u32 {
        let n = self
            .tasks
            .iter()
            .filter(|(k, t)| !t.status.state.is_terminal() && f(k, t))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn agent_summaries(&self) -> Vec<v1::AgentSummary> {
        let mut agents: Vec<&Agent> = self.agents.values().collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        agents
            .into_iter()
            .map(|a| {
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
                v1::AgentSummary {
                    id: a.id.to_string(),
                    hostname: a.info.hostname.clone(),
                    address: a.info.address.clone(),
                    state: a.state.to_i32(),
                    total: Some((&a.info.resources).into()),
                    used: Some((&used).into()),
                    reserved: Some((&reserved).into()),
                    attributes: super::proto::attributes(&a.info.attributes),
                    version: a.info.version.clone(),
                    registered_at_millis: a.registered_unix_millis,
                    last_heartbeat_millis: self.unix_millis(a.last_seen),
                    active_tasks: u32::try_from(self.live_tasks_on(&a.id).len())
                        .unwrap_or(u32::MAX),
                    labels: a.info.labels.clone(),
                }
            })
            .collect()
    }

    fn framework_summaries(&self, include_completed: bool) -> Vec<v1::FrameworkSummary> {
        let mut fws: Vec<&Framework> = self
            .frameworks
            .values()
            .filter(|f| include_completed || f.state != FrameworkState::Completed)
            .collect();
        fws.sort_by(|a, b| a.id.cmp(&b.id));
        fws.into_iter()
            .map(|f| {
                let allocated = self
                    .tasks
                    .iter()
                    .filter(|((fw, _), t)| fw == &f.id && t.holds)
                    .fold(Resources::new(), |acc, (_, t)| {
                        acc.saturating_add(&t.alloc.total())
                    });
                let offered = self
                    .offers
                    .values()
                    .filter(|o| o.framework == f.id)
                    .fold(Resources::new(), |acc, o| {
                        acc.saturating_add(&o.resources.total())
                    });
                v1::FrameworkSummary {
                    id: f.id.to_string(),
                    name: f.info.name.clone(),
                    user: f.info.user.clone(),
                    state: f.state.to_i32(),
                    roles: f.info.roles.iter().map(ToString::to_string).collect(),
                    suppressed_roles: f.suppressed.iter().map(ToString::to_string).collect(),
                    allocated: Some((&allocated).into()),
                    offered: Some((&offered).into()),
                    active_tasks: self.live_tasks_where(|(fw, _), _| fw == &f.id),
                    registered_at_millis: f.registered_unix_millis,
                    failover_timeout_millis: u64::try_from(f.info.failover_timeout.as_millis())
                        .unwrap_or(u64::MAX),
                    labels: f.info.labels.clone(),
                }
            })
            .collect()
    }

    fn task_summaries(&self) -> Vec<v1::TaskSummary> {
        self.tasks
            .iter()
            .chain(self.completed.iter().map(|(k, t)| (k, t)))
            .map(|((fw, id), t)| v1::TaskSummary {
                id: id.to_string(),
                name: t.meta.name.clone(),
                framework_id: fw.to_string(),
                agent_id: t
                    .agent
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                state: t.status.state.to_i32(),
                reason: t.status.reason.to_i32(),
                message: t.status.message.clone(),
                resources: Some((&t.meta.resources).into()),
                usage: t.status.usage.map(Into::into),
                module: t.meta.module.clone(),
                sandbox_path: String::new(),
                updated_at_millis: self.unix_millis(t.updated),
                labels: t.meta.labels.clone(),
            })
            .collect()
    }

    fn role_summaries(&self) -> Vec<v1::RoleSummary> {
        self.allocator
            .roles()
            .into_iter()
            .map(|r| v1::RoleSummary {
                name: r.role.to_string(),
                weight: r.weight.get(),
                quota: r.quota.as_ref().map(Into::into),
                allocated: Some((&r.allocated).into()),
                reserved: Some((&r.reserved).into()),
                consumed: Some((&r.consumed).into()),
                dominant_share: r.dominant_share,
                frameworks: u32::try_from(r.frameworks).unwrap_or(u32::MAX),
            })
            .collect()
    }
}

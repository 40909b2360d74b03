//! The master's edge: the core's domain values as `corral.v1` messages and back.
//!
//! - agent and framework descriptions, both ways: the services read requests with them and
//!   the registry stores records with them, so both read and write the same fields;
//! - [`AgentCommand`]s and [`FrameworkEvent`]s as stream messages (the runtime sends them);
//! - the operator views as Operator responses (the service answers with them).
//!
//! The core builds none of these messages; this module is the one place that does.

use std::time::Duration;

use bytes::Bytes;
use corral_proto::convert::{
    bounded_labels, each, parse_optional_id, parse_role, parse_roles, require,
};
use corral_proto::{ProtoEnum, ProtoError, v1};

use crate::core::{
    AgentCommand, AgentInfo, AgentSummary, Change, CoreConfig, FrameworkEvent, FrameworkInfo,
    FrameworkSummary, ModuleSummary, Offer, RoleSummary, StateSnapshot, TaskPage, TaskSummary,
    TaskUpdate,
};

/// Whole milliseconds of a duration, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TryFrom<&v1::AgentInfo> for AgentInfo {
    type Error = ProtoError;

    fn try_from(info: &v1::AgentInfo) -> Result<Self, ProtoError> {
        let attributes = info.attributes.iter();
        bounded_labels("attributes", attributes.map(|a| (&*a.key, &*a.value)))?;
        bounded_labels("labels", info.labels.iter().map(|(k, v)| (&**k, &**v)))?;
        Ok(AgentInfo {
            hostname: info.hostname.clone(),
            address: info.address.clone(),
            resources: require("resources", info.resources.as_ref())?,
            attributes: info
                .attributes
                .iter()
                .map(|a| (a.key.clone(), a.value.clone()))
                .collect(),
            engine_hash: info.engine_hash.clone(),
            version: info.version.clone(),
            labels: info.labels.clone(),
            static_reservations: each("static_reservations", &info.static_reservations, |r| {
                let role = parse_role("role", &r.role)?;
                if role.is_default() {
                    return Err(ProtoError::invalid(
                        "role",
                        "resources cannot be reserved to the default role *",
                    ));
                }
                Ok((role, require("resources", r.resources.as_ref())?))
            })?,
        })
    }
}

impl From<&AgentInfo> for v1::AgentInfo {
    fn from(info: &AgentInfo) -> Self {
        v1::AgentInfo {
            hostname: info.hostname.clone(),
            address: info.address.clone(),
            resources: Some((&info.resources).into()),
            attributes: attributes(&info.attributes),
            engine_hash: info.engine_hash.clone(),
            version: info.version.clone(),
            labels: info.labels.clone(),
            static_reservations: info
                .static_reservations
                .iter()
                .map(|(role, resources)| v1::StaticReservation {
                    role: role.to_string(),
                    resources: Some(resources.into()),
                })
                .collect(),
            // Not kept by the master.
            ..v1::AgentInfo::default()
        }
    }
}

/// Agent attributes as messages.
fn attributes(attrs: &[(String, String)]) -> Vec<v1::Attribute> {
    attrs
        .iter()
        .map(|(key, value)| v1::Attribute {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

impl TryFrom<&v1::FrameworkInfo> for FrameworkInfo {
    type Error = ProtoError;

    fn try_from(info: &v1::FrameworkInfo) -> Result<Self, ProtoError> {
        let roles = parse_roles("roles", &info.roles)?;
        if roles.is_empty() {
            return Err(ProtoError::missing("roles"));
        }
        bounded_labels("labels", info.labels.iter().map(|(k, v)| (&**k, &**v)))?;
        Ok(FrameworkInfo {
            id: parse_optional_id("id", info.id.as_deref())?,
            name: info.name.clone(),
            user: info.user.clone(),
            roles,
            failover_timeout: Duration::from_millis(info.failover_timeout_millis),
            labels: info.labels.clone(),
            principal: info.principal.clone(),
        })
    }
}

impl From<&FrameworkInfo> for v1::FrameworkInfo {
    fn from(info: &FrameworkInfo) -> Self {
        v1::FrameworkInfo {
            id: info.id.as_ref().map(ToString::to_string),
            name: info.name.clone(),
            user: info.user.clone(),
            roles: info.roles.iter().map(ToString::to_string).collect(),
            failover_timeout_millis: millis(info.failover_timeout),
            labels: info.labels.clone(),
            principal: info.principal.clone(),
        }
    }
}

/// A command as the message down the agent's stream, stamped with the leader's epoch.
pub(crate) fn master_message(config: &CoreConfig, command: AgentCommand) -> v1::MasterMessage {
    use v1::master_message::{Acknowledge, KillTask, Kind, LaunchTasks, Registered, Shutdown};
    let kind = match command {
        AgentCommand::Registered {
            agent_id,
            heartbeat_interval,
        } => Kind::Registered(Registered {
            agent_id: agent_id.to_string(),
            heartbeat_interval_millis: millis(heartbeat_interval),
            master_id: config.master_id.clone(),
        }),
        AgentCommand::Launch { framework, tasks } => Kind::LaunchTasks(LaunchTasks {
            framework_id: framework.to_string(),
            tasks: tasks.iter().map(v1::TaskInfo::from).collect(),
        }),
        AgentCommand::Kill {
            framework,
            task,
            reason,
        } => Kind::KillTask(KillTask {
            framework_id: framework.to_string(),
            task_id: task.to_string(),
            reason: reason.to_i32(),
        }),
        AgentCommand::Acknowledge {
            framework,
            task,
            uuid,
        } => Kind::Acknowledge(Acknowledge {
            framework_id: framework.to_string(),
            task_id: task.to_string(),
            uuid: Bytes::copy_from_slice(uuid.as_bytes()),
        }),
        AgentCommand::Shutdown { reason } => Kind::Shutdown(Shutdown { reason }),
        AgentCommand::Maintenance { draining } => {
            Kind::Maintenance(v1::master_message::Maintenance { draining })
        }
    };
    v1::MasterMessage {
        epoch: config.epoch,
        kind: Some(kind),
    }
}

/// An event as the message down the framework's stream.
pub(crate) fn scheduler_event(config: &CoreConfig, event: FrameworkEvent) -> v1::Event {
    use v1::event::{Error, Failure, Heartbeat, Kind, Offers, Rescind, Subscribed, Update};
    let kind = match event {
        FrameworkEvent::Subscribed {
            framework,
            stream_id,
            heartbeat_interval,
        } => Kind::Subscribed(Subscribed {
            framework_id: framework.to_string(),
            stream_id,
            heartbeat_interval_millis: millis(heartbeat_interval),
            master_id: config.master_id.clone(),
            leader_address: config.address.clone(),
            epoch: config.epoch,
        }),
        FrameworkEvent::Offers(offers) => Kind::Offers(Offers {
            offers: offers.iter().map(offer).collect(),
        }),
        FrameworkEvent::Rescind(id) => Kind::Rescind(Rescind {
            offer_id: id.to_string(),
        }),
        FrameworkEvent::Update(status) | FrameworkEvent::Redelivery(status) => {
            Kind::Update(Box::new(Update {
                status: Some((&status).into()),
            }))
        }
        FrameworkEvent::Failure { agent, message } => Kind::Failure(Failure {
            agent_id: agent.to_string(),
            message,
        }),
        FrameworkEvent::Error { message } => Kind::Error(Error { message }),
        FrameworkEvent::Heartbeat => Kind::Heartbeat(Heartbeat {}),
        FrameworkEvent::OperationFailed(update) => Kind::OperationUpdate((&update).into()),
    };
    v1::Event { kind: Some(kind) }
}

fn offer(o: &Offer) -> v1::Offer {
    let (resources, reserved) = corral_proto::convert::offer_resources(&o.resources);
    v1::Offer {
        id: o.id.to_string(),
        framework_id: o.framework.to_string(),
        agent_id: o.agent.to_string(),
        hostname: o.hostname.clone(),
        role: o.role.to_string(),
        resources: Some(resources),
        reserved: Some(reserved),
        attributes: attributes(&o.attributes),
        cached_modules: o.cached_modules.iter().map(ToString::to_string).collect(),
    }
}

/// A count for a `uint32` field, saturating.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<&AgentSummary> for v1::AgentSummary {
    fn from(a: &AgentSummary) -> Self {
        v1::AgentSummary {
            id: a.id.to_string(),
            hostname: a.hostname.clone(),
            address: a.address.clone(),
            state: a.state.to_i32(),
            total: Some((&a.total).into()),
            used: Some((&a.used).into()),
            reserved: Some((&a.reserved).into()),
            attributes: attributes(&a.attributes),
            version: a.version.clone(),
            registered_at_millis: a.registered_unix_millis,
            last_heartbeat_millis: a.last_heartbeat_unix_millis,
            active_tasks: count(a.active_tasks),
            labels: a.labels.clone(),
            drain_deadline_millis: a.drain_deadline_unix_millis,
        }
    }
}

impl From<&FrameworkSummary> for v1::FrameworkSummary {
    fn from(f: &FrameworkSummary) -> Self {
        v1::FrameworkSummary {
            id: f.id.to_string(),
            name: f.name.clone(),
            user: f.user.clone(),
            state: f.state.to_i32(),
            roles: f.roles.iter().map(ToString::to_string).collect(),
            suppressed_roles: f.suppressed_roles.iter().map(ToString::to_string).collect(),
            allocated: Some((&f.allocated).into()),
            offered: Some((&f.offered).into()),
            active_tasks: count(f.active_tasks),
            registered_at_millis: f.registered_unix_millis,
            failover_timeout_millis: millis(f.failover_timeout),
            labels: f.labels.clone(),
            principal: f.principal.clone().unwrap_or_default(),
        }
    }
}

impl From<&TaskSummary> for v1::TaskSummary {
    fn from(t: &TaskSummary) -> Self {
        t.clone().into()
    }
}

/// Moves what it can: the event stream converts every change it sends.
impl From<TaskSummary> for v1::TaskSummary {
    fn from(t: TaskSummary) -> Self {
        let now = v1::TaskUpdate::from(t.now);
        v1::TaskSummary {
            id: now.id,
            name: t.name,
            framework_id: now.framework_id,
            agent_id: now.agent_id,
            state: now.state,
            reason: now.reason,
            message: now.message,
            resources: Some((&t.resources).into()),
            usage: now.usage,
            module: t.module,
            sandbox_path: String::new(),
            updated_at_millis: now.updated_at_millis,
            labels: t.labels,
            progress: now.progress,
            result_json: now.result_json,
            outputs: now.outputs,
            owner: now.owner,
        }
    }
}

impl From<TaskUpdate> for v1::TaskUpdate {
    fn from(t: TaskUpdate) -> Self {
        let mut message = v1::TaskUpdate::default();
        write_task_update(&mut message, t);
        message
    }
}

/// Writes `t` over `into`, reusing the room of its strings: the event stream writes thousands
/// of updates a second through one message.
fn write_task_update(into: &mut v1::TaskUpdate, t: TaskUpdate) {
    fn set(field: &mut String, value: &str) {
        field.clear();
        field.push_str(value);
    }
    set(&mut into.id, t.id.as_str());
    set(&mut into.framework_id, t.framework.as_str());
    set(
        &mut into.agent_id,
        t.agent.as_ref().map_or("", |a| a.as_str()),
    );
    into.state = t.state.to_i32();
    into.reason = t.reason.to_i32();
    into.message = t.message;
    into.usage = t.usage.map(Into::into);
    into.updated_at_millis = t.updated_unix_millis;
    into.progress = t.progress.map(|p| v1::Progress {
        fraction: p.fraction(),
        message: p.message,
    });
    into.result_json = t.result_json.unwrap_or_default();
    into.outputs = t.outputs.iter().map(Into::into).collect();
    into.owner = t.owner.unwrap_or_default();
}

impl From<&RoleSummary> for v1::RoleSummary {
    fn from(r: &RoleSummary) -> Self {
        v1::RoleSummary {
            name: r.role.to_string(),
            weight: r.weight.get(),
            quota: r.quota.as_ref().map(Into::into),
            allocated: Some((&r.allocated).into()),
            reserved: Some((&r.reserved).into()),
            consumed: Some((&r.consumed).into()),
            dominant_share: r.dominant_share,
            frameworks: count(r.frameworks),
        }
    }
}

/// Summaries as their messages.
impl From<&ModuleSummary> for v1::ModuleInfo {
    fn from(m: &ModuleSummary) -> Self {
        v1::ModuleInfo {
            digest: m.digest.to_string(),
            size: m.size,
            stored_at_millis: m.stored_unix_millis,
            active_tasks: u32::try_from(m.active_tasks).unwrap_or(u32::MAX),
            cached_on_agents: u32::try_from(m.cached_on_agents).unwrap_or(u32::MAX),
        }
    }
}

/// Writes `c` over `event`: a task's update into the update `event` holds, reusing its room
/// (see [`write_task_update`]); anything else as a new message.
pub(crate) fn write_change(event: &mut v1::OperatorEvent, c: Change) {
    use v1::operator_event::Event as E;
    match (c, &mut event.event) {
        (Change::TaskUpdated(t), Some(E::TaskUpdated(into))) => write_task_update(into, t),
        (c, _) => *event = c.into(),
    }
}

impl From<Change> for v1::OperatorEvent {
    fn from(c: Change) -> Self {
        use v1::operator_event::Event as E;
        let event = match c {
            Change::TaskAdded(t) => E::TaskAdded(t.into()),
            Change::TaskUpdated(t) => E::TaskUpdated(t.into()),
            Change::AgentAdded(a) => E::AgentAdded((&a).into()),
            Change::AgentUpdated(a) => E::AgentUpdated((&a).into()),
            Change::AgentRemoved(id) => E::AgentRemoved(id.to_string()),
            Change::FrameworkAdded(f) => E::FrameworkAdded((&f).into()),
            Change::FrameworkUpdated(f) => E::FrameworkUpdated((&f).into()),
            Change::FrameworkRemoved(id) => E::FrameworkRemoved(id.to_string()),
        };
        v1::OperatorEvent { event: Some(event) }
    }
}

pub(crate) fn each_into<'a, D: 'a, P: From<&'a D>>(items: &'a [D]) -> Vec<P> {
    items.iter().map(P::from).collect()
}

impl From<&StateSnapshot> for v1::GetStateResponse {
    fn from(s: &StateSnapshot) -> Self {
        v1::GetStateResponse {
            master: Some(v1::MasterInfo {
                id: s.master.id.clone(),
                address: s.master.address.clone(),
                leader_address: s.master.address.clone(),
                epoch: s.master.epoch,
                version: env!("CARGO_PKG_VERSION").into(),
                started_at_millis: s.master.started_unix_millis,
            }),
            agents: each_into(&s.agents),
            frameworks: each_into(&s.frameworks),
            tasks: each_into(&s.tasks),
            tasks_truncated: s.tasks_truncated,
            roles: each_into(&s.roles),
        }
    }
}

impl From<&TaskPage> for v1::ListTasksResponse {
    fn from(page: &TaskPage) -> Self {
        v1::ListTasksResponse {
            tasks: each_into(&page.tasks),
            next_page_token: page.next_page_token.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_types::{FrameworkId, Resources, Role};

    #[test]
    fn a_task_update_written_over_another_leaves_nothing_of_it() {
        use corral_types::{AgentId, Progress, Reason, TaskId, TaskState};
        let full = TaskUpdate {
            id: TaskId::new("t1").unwrap(),
            framework: FrameworkId::new("f1").unwrap(),
            owner: Some("alice".into()),
            agent: Some(AgentId::new("a1").unwrap()),
            state: TaskState::Running,
            reason: Reason::Trap,
            message: "busy".into(),
            usage: None,
            updated_unix_millis: 7,
            progress: Some(Progress::new(0.5, "half")),
            result_json: Some("{}".into()),
            outputs: vec![],
        };
        let bare = TaskUpdate {
            id: TaskId::new("t2").unwrap(),
            framework: FrameworkId::new("f2").unwrap(),
            owner: None,
            agent: None,
            state: TaskState::Staging,
            reason: Reason::Launched,
            message: String::new(),
            usage: None,
            updated_unix_millis: 8,
            progress: None,
            result_json: None,
            outputs: vec![],
        };
        for (first, second) in [(&full, &bare), (&bare, &full)] {
            let mut event = v1::OperatorEvent::from(Change::TaskUpdated(first.clone()));
            write_change(&mut event, Change::TaskUpdated(second.clone()));
            assert_eq!(event, Change::TaskUpdated(second.clone()).into());
        }
    }

    #[test]
    fn agent_and_framework_infos_round_trip() {
        let agent = AgentInfo {
            hostname: "h".into(),
            address: "10.0.0.1:5051".into(),
            resources: Resources::new().with_cpus_milli(1500).with_mem_mib(64),
            attributes: vec![("arch".into(), "aarch64".into())],
            engine_hash: "e".into(),
            version: "0.1.0".into(),
            labels: [("zone".to_owned(), "a".to_owned())].into(),
            static_reservations: vec![(
                Role::new("eng").unwrap(),
                Resources::new().with_cpus_milli(500),
            )],
        };
        let wire = v1::AgentInfo::from(&agent);
        assert_eq!(AgentInfo::try_from(&wire), Ok(agent));

        // Nothing can be reserved to the default role.
        let mut to_default = wire;
        to_default.static_reservations[0].role = "*".into();
        let err = AgentInfo::try_from(&to_default).unwrap_err();
        assert!(
            err.to_string().contains("static_reservations[0].role"),
            "{err}"
        );
        let framework = FrameworkInfo {
            id: Some(FrameworkId::new("f-1").unwrap()),
            name: "batch".into(),
            user: "me".into(),
            roles: vec![Role::new("eng/batch").unwrap(), Role::default_role()],
            failover_timeout: Duration::from_secs(90),
            labels: Default::default(),
            principal: Some("alice".into()),
        };
        let back = FrameworkInfo::try_from(&v1::FrameworkInfo::from(&framework));
        assert_eq!(back, Ok(framework));
    }
}

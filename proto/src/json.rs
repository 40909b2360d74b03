//! The JSON forms of the operator's messages, one for every reader: the CLI's `-o json` and
//! the master's HTTP API (`/api/v1/`) write the same documents. Enums are written as their
//! names (`RUNNING`), sizes in bytes, CPUs in thousandths.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{ProtoEnum, ProtoError, v1};

pub fn resources(r: Option<&v1::Resources>) -> Value {
    match r {
        Some(r) => json!({
            "cpus_milli": r.cpus_milli,
            "mem_bytes": r.mem_bytes,
            "disk_bytes": r.disk_bytes,
            "scalars_milli": r.scalars_milli,
        }),
        None => Value::Null,
    }
}

/// What of `total` is not `used` (no kind below zero); `None` without a total.
fn free(total: Option<&v1::Resources>, used: Option<&v1::Resources>) -> Option<v1::Resources> {
    let total = total?;
    let zero = v1::Resources::default();
    let used = used.unwrap_or(&zero);
    Some(v1::Resources {
        cpus_milli: total.cpus_milli.saturating_sub(used.cpus_milli),
        mem_bytes: total.mem_bytes.saturating_sub(used.mem_bytes),
        disk_bytes: total.disk_bytes.saturating_sub(used.disk_bytes),
        scalars_milli: total
            .scalars_milli
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(*used.scalars_milli.get(k).unwrap_or(&0)),
                )
            })
            .collect(),
    })
}

/// Quota limits: a bound per kind, `null` where unlimited.
pub fn limits(l: Option<&v1::ResourceLimits>) -> Value {
    match l {
        Some(l) => json!({
            "cpus_milli": l.cpus_milli,
            "mem_bytes": l.mem_bytes,
            "disk_bytes": l.disk_bytes,
            "scalars_milli": l.scalars_milli,
        }),
        None => Value::Null,
    }
}

pub fn quota(q: Option<&v1::Quota>) -> Value {
    match q {
        Some(q) => json!({
            "guarantee": resources(q.guarantee.as_ref()),
            "limit": limits(q.limit.as_ref()),
        }),
        None => Value::Null,
    }
}

pub fn usage(u: Option<&v1::Usage>) -> Value {
    match u {
        Some(u) => json!({
            "fuel_consumed": u.fuel_consumed,
            "cpu_time_nanos": u.cpu_time_nanos,
            "peak_memory_bytes": u.peak_memory_bytes,
            "wall_time_nanos": u.wall_time_nanos,
            "exit_code": u.exit_code,
        }),
        None => Value::Null,
    }
}

/// A proto enum field as operators read it (`RUNNING`), `-` when unset, or its number if
/// this build does not know it.
fn enum_field<T: std::fmt::Display>(
    value: i32,
    parse: fn(&'static str, i32) -> Result<Option<T>, ProtoError>,
) -> String {
    match parse("", value) {
        Ok(Some(v)) => v.to_string(),
        Ok(None) => "-".into(),
        Err(_) => value.to_string(),
    }
}

pub fn task_state(value: i32) -> String {
    enum_field(value, corral_types::TaskState::from_proto_opt)
}

pub fn reason(value: i32) -> String {
    enum_field(value, corral_types::Reason::from_proto_opt)
}

pub fn agent_state(value: i32) -> String {
    enum_field(value, corral_types::AgentState::from_proto_opt)
}

pub fn framework_state(value: i32) -> String {
    enum_field(value, corral_types::FrameworkState::from_proto_opt)
}

pub fn agent(a: &v1::AgentSummary) -> Value {
    json!({
        "id": a.id,
        "hostname": a.hostname,
        "address": a.address,
        "state": agent_state(a.state),
        "total": resources(a.total.as_ref()),
        "used": resources(a.used.as_ref()),
        "free": resources(free(a.total.as_ref(), a.used.as_ref()).as_ref()),
        "attributes": a.attributes.iter().map(|attr| (attr.key.clone(), attr.value.clone())).collect::<BTreeMap<_, _>>(),
        "version": a.version,
        "active_tasks": a.active_tasks,
        "registered_at_millis": a.registered_at_millis,
        "last_heartbeat_millis": a.last_heartbeat_millis,
        "drain_deadline_millis": a.drain_deadline_millis,
    })
}

pub fn framework(f: &v1::FrameworkSummary) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "user": f.user,
        "state": framework_state(f.state),
        "roles": f.roles,
        "allocated": resources(f.allocated.as_ref()),
        "offered": resources(f.offered.as_ref()),
        "active_tasks": f.active_tasks,
        "registered_at_millis": f.registered_at_millis,
        "labels": f.labels,
        "principal": f.principal,
    })
}

pub fn task(t: &v1::TaskSummary) -> Value {
    let mut doc = json!({
        "name": t.name,
        "resources": resources(t.resources.as_ref()),
        "module": t.module,
        "sandbox_path": t.sandbox_path,
        "labels": t.labels,
    });
    let now = task_update(&v1::TaskUpdate::of(t));
    if let (Some(doc), Value::Object(now)) = (doc.as_object_mut(), now) {
        doc.extend(now);
    }
    doc
}

/// What can change in a task (TASK_UPDATED): the fields of [`task`] a watcher overwrites.
pub fn task_update(t: &v1::TaskUpdate) -> Value {
    json!({
        "id": t.id,
        "framework_id": t.framework_id,
        "owner": (!t.owner.is_empty()).then_some(&t.owner),
        "agent_id": t.agent_id,
        "state": task_state(t.state),
        "reason": reason(t.reason),
        "message": t.message,
        "usage": usage(t.usage.as_ref()),
        "updated_at_millis": t.updated_at_millis,
        "progress": t.progress.as_ref().map(|p| json!({
            "fraction": p.fraction,
            "message": p.message,
        })),
        "result": (!t.result_json.is_empty()).then(|| {
            // A result the agent checked is JSON; shown as text if not.
            serde_json::from_str::<Value>(&t.result_json)
                .unwrap_or_else(|_| Value::String(t.result_json.clone()))
        }),
        "outputs": t.outputs.iter().map(|o| json!({
            "path": o.path,
            "size": o.size,
            "digest": o.digest,
        })).collect::<Vec<_>>(),
    })
}

pub fn role(r: &v1::RoleSummary) -> Value {
    json!({
        "name": r.name,
        "weight": r.weight,
        "quota": quota(r.quota.as_ref()),
        "allocated": resources(r.allocated.as_ref()),
        "reserved": resources(r.reserved.as_ref()),
        "consumed": resources(r.consumed.as_ref()),
        "dominant_share": r.dominant_share,
        "frameworks": r.frameworks,
    })
}

/// The whole state, as `GetState` answers it.
pub fn state(s: &v1::GetStateResponse) -> Value {
    json!({
        "master": s.master.as_ref().map(|m| json!({
            "id": m.id,
            "address": m.address,
            "epoch": m.epoch,
            "started_at_millis": m.started_at_millis,
        })),
        "agents": s.agents.iter().map(agent).collect::<Vec<_>>(),
        "frameworks": s.frameworks.iter().map(framework).collect::<Vec<_>>(),
        "tasks": s.tasks.iter().map(task).collect::<Vec<_>>(),
        "tasks_truncated": s.tasks_truncated,
        "roles": s.roles.iter().map(role).collect::<Vec<_>>(),
    })
}

/// An operator event: its type (`TASK_UPDATED`, as Mesos names them) and its document,
/// `{"type": ..., <what it carries>}`. `None` for an event this build does not know.
pub fn operator_event(e: &v1::OperatorEvent) -> Option<(&'static str, Value)> {
    use v1::operator_event::Event as E;
    let (kind, field, value) = match e.event.as_ref()? {
        E::Subscribed(s) => {
            let doc = json!({
                "type": "SUBSCRIBED",
                "state": s.state.as_ref().map(state),
                "heartbeat_interval_seconds": s.heartbeat_interval_seconds,
            });
            return Some(("SUBSCRIBED", doc));
        }
        E::Heartbeat(_) => return Some(("HEARTBEAT", json!({ "type": "HEARTBEAT" }))),
        E::TaskAdded(t) => ("TASK_ADDED", "task", task(t)),
        E::TaskUpdated(t) => ("TASK_UPDATED", "task", task_update(t)),
        E::AgentAdded(a) => ("AGENT_ADDED", "agent", agent(a)),
        E::AgentUpdated(a) => ("AGENT_UPDATED", "agent", agent(a)),
        E::AgentRemoved(id) => ("AGENT_REMOVED", "agent_id", json!(id)),
        E::FrameworkAdded(f) => ("FRAMEWORK_ADDED", "framework", framework(f)),
        E::FrameworkUpdated(f) => ("FRAMEWORK_UPDATED", "framework", framework(f)),
        E::FrameworkRemoved(id) => ("FRAMEWORK_REMOVED", "framework_id", json!(id)),
    };
    Some((kind, json!({ "type": kind, field: value })))
}

/// A job's state as operators read it (`running`), or its number if this build does not
/// know it.
pub fn job_state(value: i32) -> String {
    v1::JobState::try_from(value).map_or_else(
        |_| value.to_string(),
        |s| {
            s.as_str_name()
                .trim_start_matches("JOB_STATE_")
                .to_ascii_lowercase()
        },
    )
}

/// A built-in job, as `corral job list -o json` and `/api/v1/jobs` write it.
pub fn job(j: &v1::Job) -> Value {
    json!({
        "name": j.name,
        "kind": j.kind,
        "state": job_state(j.state),
        "message": j.message,
        "instances": j.instances,
        "succeeded": j.succeeded,
        "failed": j.failed,
        "running": j.running,
        "started": j.started,
        "waiting": j.waiting,
        "retrying": j.retrying,
        "attempts": j.attempts,
        "depends_on": j.depends_on,
        "submitted_unix_millis": j.submitted_unix_millis,
        "ended_unix_millis": j.ended_unix_millis,
        "cron_job": j.cron_job,
        "schedule": j.schedule,
        "next_run_unix_millis": j.next_run_unix_millis,
        "version": j.version,
        "rollout": j.rollout,
        "outdated": j.outdated,
        "owner": (!j.owner.is_empty()).then_some(&j.owner),
        "recent_failures": j.recent_failures.iter().map(|f| json!({
            "instance": f.instance,
            "attempt": f.attempt,
            "state": f.state,
            "message": f.message,
        })).collect::<Vec<_>>(),
    })
}

/// A module in the master's artifact store.
pub fn module(m: &v1::ModuleInfo) -> Value {
    json!({
        "digest": m.digest,
        "size": m.size,
        "stored_at_millis": m.stored_at_millis,
        "active_tasks": m.active_tasks,
        "cached_on_agents": m.cached_on_agents,
    })
}

//! The Scheduler service: Subscribe opens a framework's event stream; Call forwards calls.

use corral_proto::convert::{
    each, parse_id, parse_ids, parse_optional_id, parse_roles, refuse_duration, require,
};
use corral_proto::{ProtoError, ServiceError, TaskInfo, UpdateUuid, v1};
use corral_types::{FrameworkId, TaskId};
use tonic::{Request, Response, Status};

use std::sync::Arc;

use super::{CoreStream, caller, done, framework_disconnected};
use crate::auth::rate::{self, Subject};
use crate::auth::{Action, Auth, Caller, Object, Visibility};
use crate::core::{
    Ack, ArtifactRights, Call, ConnId, Event, FrameworkInfo, KvOp, LaunchTask, Operation, Reply,
};
use crate::leadership::Gate;
use crate::runtime::Sink;

#[derive(Debug, Clone)]
pub(crate) struct SchedulerService {
    pub(crate) gate: Gate,
    pub(crate) auth: Arc<Auth>,
}

impl SchedulerService {
    /// A framework registers as its caller's principal, in roles ACLs let it register in.
    /// The built-in jobs framework's ID is kept for principals trusted to run it (clients
    /// send it their tokens), so no tenant can hold it first.
    fn admit(&self, caller: &Caller, info: &mut FrameworkInfo) -> Result<(), ServiceError> {
        if let Some(claimed) = &info.principal
            && Some(claimed.as_str()) != caller.principal()
        {
            let reason = format!("framework_info.principal is {claimed:?}, not the caller's");
            self.auth
                .audit_denied(caller, "register_framework", claimed, &reason);
            return Err(ServiceError::PermissionDenied(reason));
        }
        if info
            .id
            .as_ref()
            .is_some_and(|id| id.as_str() == corral_proto::jobs::FRAMEWORK_ID)
            && !self
                .auth
                .allows(caller, Action::RunTasksFor, Object::Everyone)
        {
            let reason = format!(
                "framework ID {} is the built-in jobs framework's: its principal needs \
                 run_tasks_for on any",
                corral_proto::jobs::FRAMEWORK_ID
            );
            self.auth.audit_denied(
                caller,
                "register_framework",
                corral_proto::jobs::FRAMEWORK_ID,
                &reason,
            );
            return Err(ServiceError::PermissionDenied(reason));
        }
        for role in &info.roles {
            self.auth
                .authorize(caller, Action::RegisterFramework, Object::Role(role))?;
        }
        info.principal = caller.principal().map(str::to_owned);
        Ok(())
    }

    /// The audit line of a framework's call: `action` allowed, or any call refused as
    /// another principal's.
    fn audit(
        &self,
        caller: &Caller,
        action: Option<&str>,
        framework: &str,
        result: &Result<(), Status>,
    ) {
        let object = format!("framework {framework}");
        match (action, result) {
            (Some(action), Ok(())) => self.auth.audit_allowed(caller, action, &object),
            (action, Err(s)) if s.code() == tonic::Code::PermissionDenied => {
                let action = action.unwrap_or("call");
                self.auth.audit_denied(caller, action, &object, s.message());
            }
            _ => {}
        }
    }
}

/// The audit action of a call that changes the cluster (launches, reservations, kills,
/// teardown); `None` for those that only steer offers or acknowledge.
fn audited_call(req: &v1::CallRequest) -> Option<&'static str> {
    use v1::call_request::Kind;
    match req.kind.as_ref()? {
        Kind::Accept(_) => Some("accept"),
        Kind::Kill(_) => Some("kill"),
        Kind::Teardown(_) => Some("teardown"),
        Kind::Decline(_)
        | Kind::Revive(_)
        | Kind::Suppress(_)
        | Kind::Acknowledge(_)
        | Kind::Reconcile(_) => None,
    }
}

/// How many tasks an ACCEPT launches (what its principal's launch rate is spent on).
fn launch_count(req: &v1::CallRequest) -> usize {
    let Some(v1::call_request::Kind::Accept(accept)) = &req.kind else {
        return 0;
    };
    accept
        .operations
        .iter()
        .map(|op| match &op.kind {
            Some(v1::operation::Kind::Launch(l)) => l.tasks.len(),
            _ => 0,
        })
        .sum()
}

#[tonic::async_trait]
impl v1::scheduler_server::Scheduler for SchedulerService {
    type SubscribeStream = CoreStream<v1::Event>;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        // A standby redirects before anything else.
        let core = self.gate.core()?;
        let caller = caller(&request)?;
        let conn = core.conn_id();
        let mut event = subscribe_event(conn, request.get_ref())?;
        if let Event::Subscribe { info, .. } = &mut event {
            self.admit(&caller, info)?;
        }
        let (tx, rx) = core.stream();
        let reply = core.ask(event, Some(Sink::Framework(conn, tx))).await?;
        let subscribed = done(reply);
        // Re-subscribing another principal's framework (its roles were allowed above).
        if let Err(s) = &subscribed
            && s.code() == tonic::Code::PermissionDenied
        {
            let framework = request.get_ref().framework_info.as_ref();
            let object = format!(
                "framework {}",
                framework.and_then(|i| i.id.as_deref()).unwrap_or("-")
            );
            self.auth
                .audit_denied(&caller, "register_framework", &object, s.message());
        }
        subscribed?;
        Ok(Response::new(CoreStream::new(
            rx,
            core,
            framework_disconnected(conn),
        )))
    }

    async fn call(
        &self,
        request: Request<v1::CallRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        let core = self.gate.core()?;
        let caller = caller(&request)?;
        let subject = request.extensions().get::<Subject>().cloned();
        let req = request.into_inner();
        let launches = launch_count(&req);
        if launches > 0 {
            self.auth
                .throttle(subject.as_ref(), rate::Kind::Launches, launches)?;
        }
        let audited = audited_call(&req);
        let framework = req.framework_id.clone();
        let mut event = call_event(req, caller.principal().map(Arc::from))?;
        if launches > 0
            && let Event::Call {
                call:
                    Call::Accept {
                        artifacts,
                        operations,
                        ..
                    },
                ..
            } = &mut event
        {
            *artifacts = artifact_rights(&self.auth, &caller, operations);
        }
        let result = done(core.ask(event, None).await?);
        self.audit(&caller, audited, &framework, &result);
        result.map(|()| Response::new(v1::CallResponse {}))
    }

    async fn store(
        &self,
        request: Request<v1::StoreRequest>,
    ) -> Result<Response<v1::StoreResponse>, Status> {
        let core = self.gate.core()?;
        let caller = caller(&request)?;
        let req = request.into_inner();
        let framework = req.framework_id.clone();
        let event = store_event(req, caller.principal().map(Arc::from))?;
        match core.ask(event, None).await? {
            Reply::Kv(Err(e @ ServiceError::PermissionDenied(_))) => {
                self.audit(&caller, Some("store"), &framework, &Err(e.clone().into()));
                Err(e.into())
            }
            Reply::Kv(Ok(entries)) => Ok(Response::new(v1::StoreResponse {
                entries: entries
                    .into_iter()
                    .map(|e| v1::StoreEntry {
                        key: e.key,
                        value: e.value,
                        version: e.version,
                    })
                    .collect(),
            })),
            Reply::Kv(Err(e)) => Err(e.into()),
            _ => Err(ServiceError::Internal("unexpected reply from the core".into()).into()),
        }
    }
}

/// A Subscribe request as the core's event.
pub(crate) fn subscribe_event(
    conn: ConnId,
    req: &v1::SubscribeRequest,
) -> Result<Event, ProtoError> {
    let info =
        framework_info(req.framework_info.as_ref()).map_err(|e| e.within("framework_info"))?;
    let suppressed = parse_roles("suppressed_roles", &req.suppressed_roles)?;
    Ok(Event::Subscribe {
        conn,
        info,
        suppressed,
    })
}

/// Whose artifacts the tasks `operations` launch may use: the caller's, and those of the
/// principals it may run tasks for (a principal needs `run_tasks_for` on another; the
/// core refuses tasks for principals left out).
fn artifact_rights(auth: &Auth, caller: &Caller, operations: &[Operation]) -> ArtifactRights {
    let mut rights = ArtifactRights::from(auth.visibility(caller, Action::ViewModules));
    let owners = operations
        .iter()
        .filter_map(|op| match op {
            Operation::Launch(tasks) => Some(tasks),
            _ => None,
        })
        .flatten()
        .filter_map(|t| t.info.as_ref().ok()?.owner.as_deref());
    for owner in owners {
        let may = match caller {
            Caller::Principal(own) => {
                **own == *owner
                    || auth.allows(caller, Action::RunTasksFor, Object::Owner(Some(owner)))
            }
            Caller::Anyone | Caller::Master => true,
        };
        if may && !rights.owners.contains_key(owner) {
            let visible = auth.visibility(&Caller::Principal(owner.into()), Action::ViewModules);
            rights.owners.insert(owner.to_owned(), visible);
        }
    }
    rights
}

/// A Call request of `principal` as the core's event.
pub(crate) fn call_event(
    req: v1::CallRequest,
    principal: Option<Arc<str>>,
) -> Result<Event, ProtoError> {
    let framework_id = subscription(&req.framework_id, &req.stream_id)?;
    let call = call(req.kind.as_ref())?;
    Ok(Event::Call {
        framework_id,
        stream_id: req.stream_id,
        principal,
        call,
    })
}

/// A Store request of `principal` as the core's event.
pub(crate) fn store_event(
    req: v1::StoreRequest,
    principal: Option<Arc<str>>,
) -> Result<Event, ProtoError> {
    use v1::store_request::Op;
    let framework_id = subscription(&req.framework_id, &req.stream_id)?;
    let op = match req.op.ok_or_else(|| ProtoError::missing("op"))? {
        Op::Get(g) => KvOp::Get { key: g.key },
        Op::Put(p) => KvOp::Put {
            key: p.key,
            value: p.value,
            expected: p.expected_version,
        },
        Op::Delete(d) => KvOp::Delete {
            key: d.key,
            expected: d.expected_version,
        },
        Op::List(l) => KvOp::List { prefix: l.prefix },
    };
    Ok(Event::Kv {
        framework_id,
        stream_id: req.stream_id,
        principal,
        op,
    })
}

/// The framework a call or store request names; its stream must be named too.
fn subscription(framework_id: &str, stream_id: &str) -> Result<FrameworkId, ProtoError> {
    if stream_id.is_empty() {
        return Err(ProtoError::missing("stream_id"));
    }
    parse_id("framework_id", framework_id)
}

fn framework_info(info: Option<&v1::FrameworkInfo>) -> Result<FrameworkInfo, ProtoError> {
    FrameworkInfo::try_from(info.ok_or_else(|| ProtoError::missing(""))?)
}

fn call(kind: Option<&v1::call_request::Kind>) -> Result<Call, ProtoError> {
    use v1::call_request::Kind;
    let kind = kind.ok_or_else(|| ProtoError::missing("kind"))?;
    Ok(match kind {
        Kind::Accept(a) => {
            let offer_ids = parse_ids("accept.offer_ids", &a.offer_ids)?;
            if offer_ids.is_empty() {
                return Err(ProtoError::missing("accept.offer_ids"));
            }
            let operations = each("accept.operations", &a.operations, operation)?;
            Call::Accept {
                offer_ids,
                operations,
                refuse: refuse_duration(a.filters.as_ref()).map_err(|e| e.within("accept"))?,
                // Narrowed by the service to the caller's (see `Scheduler::call`).
                artifacts: Visibility::All.into(),
            }
        }
        Kind::Decline(d) => Call::Decline {
            offer_ids: parse_ids("decline.offer_ids", &d.offer_ids)?,
            refuse: refuse_duration(d.filters.as_ref()).map_err(|e| e.within("decline"))?,
        },
        Kind::Revive(r) => Call::Revive {
            roles: parse_roles("revive.roles", &r.roles)?,
        },
        Kind::Suppress(s) => Call::Suppress {
            roles: parse_roles("suppress.roles", &s.roles)?,
        },
        Kind::Kill(k) => Call::Kill {
            task_id: parse_id("kill.task_id", &k.task_id)?,
            agent_id: parse_optional_id("kill.agent_id", k.agent_id.as_deref())?,
        },
        Kind::Acknowledge(a) => Call::Acknowledge {
            acks: each("acknowledge.acks", &a.acks, |ack| {
                let uuid = UpdateUuid::from_proto("uuid", &ack.uuid)?
                    .ok_or_else(|| ProtoError::missing("uuid"))?;
                Ok(Ack {
                    agent_id: parse_optional_id("agent_id", Some(&ack.agent_id))?,
                    task_id: parse_id("task_id", &ack.task_id)?,
                    uuid,
                })
            })?,
        },
        Kind::Reconcile(r) => Call::Reconcile {
            tasks: each("reconcile.tasks", &r.tasks, |t| {
                Ok((
                    parse_id("task_id", &t.task_id)?,
                    parse_optional_id("agent_id", t.agent_id.as_deref())?,
                ))
            })?,
        },
        Kind::Teardown(_) => Call::Teardown,
    })
}

fn operation(op: &v1::Operation) -> Result<Operation, ProtoError> {
    use v1::operation::Kind;
    Ok(
        match op
            .kind
            .as_ref()
            .ok_or_else(|| ProtoError::missing("kind"))?
        {
            Kind::Launch(l) => Operation::Launch(each("launch.tasks", &l.tasks, |t| {
                // An unaddressable task fails the call; an invalid description only fails
                // the task (it gets an ERROR update).
                let id: TaskId = parse_id("task_id", &t.task_id)?;
                let info = TaskInfo::try_from(t).map_err(|e| e.to_string());
                Ok(LaunchTask { id, info })
            })?),
            Kind::Reserve(r) => Operation::Reserve {
                id: op.id.clone(),
                role: corral_proto::convert::parse_role("reserve.role", &r.role)?,
                resources: require("reserve.resources", r.resources.as_ref())?,
            },
            Kind::Unreserve(r) => Operation::Unreserve {
                id: op.id.clone(),
                role: corral_proto::convert::parse_role("unreserve.role", &r.role)?,
                resources: require("unreserve.resources", r.resources.as_ref())?,
            },
        },
    )
}

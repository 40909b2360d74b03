//! The AgentLink service: each agent's bidirectional stream, artifact fetches (modules,
//! inputs) and the upload of tasks' outputs.

use corral_proto::convert::{each, parse_id, require};
use corral_proto::{ProtoError, ServiceError, TaskStatus, limits, v1};
use corral_types::Digest;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{ArtifactStream, CoreStream, agent_disconnected, digest, serve_artifact};
use crate::artifacts::{ArtifactStore, StoreModuleError};
use crate::core::{
    AgentInfo, ArtifactKind, ConnId, Event, OperatorRequest, OperatorResponse, Reply, ReportedTask,
    TaskMeta,
};
use crate::leadership::Gate;
use crate::peers::Peers;
use crate::runtime::Sink;

#[derive(Debug, Clone)]
pub(crate) struct AgentLinkService {
    pub(crate) gate: Gate,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) peers: Peers,
}

#[tonic::async_trait]
impl v1::agent_link_server::AgentLink for AgentLinkService {
    type ConnectStream = CoreStream<v1::MasterMessage>;
    type FetchModuleStream = ArtifactStream;

    async fn connect(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let core = self.gate.core()?;
        let mut inbound = request.into_inner();
        // The agent speaks first, with REGISTER or REREGISTER.
        let first = match inbound.next().await {
            Some(msg) => msg?,
            None => return Err(ProtoError::missing("register").into()),
        };
        let conn = core.conn_id();
        let event = first_event(conn, first)?;
        let (tx, rx) = core.stream();
        core.open(event, Sink::Agent(conn, tx)).await;
        let reader = core.clone();
        tokio::spawn(async move {
            let core = reader;
            loop {
                // Stop reading when the core stops, so shutdown does not wait on agents.
                let msg = tokio::select! {
                    msg = inbound.next() => msg,
                    () = core.closed() => break,
                };
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    Some(Err(status)) => {
                        tracing::debug!(conn, %status, "agent stream failed");
                        break;
                    }
                    None => break,
                };
                match agent_event(conn, msg) {
                    // Waits while the core is behind: the agent's stream is read no faster.
                    Ok(Some(event)) => core.tell(event).await,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(conn, error = %e, "malformed agent message ignored"),
                }
            }
            core.tell(agent_disconnected(conn)).await;
        });
        Ok(Response::new(CoreStream::new(
            rx,
            core,
            agent_disconnected(conn),
        )))
    }

    async fn fetch_module(
        &self,
        request: Request<v1::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        let core = self.gate.core()?;
        let req = request.into_inner();
        let digest = digest("digest", &req.digest)?;
        serve_artifact(&core, &self.artifacts, &self.peers, digest, req.offset)
            .await
            .map(Response::new)
    }

    async fn upload_output(
        &self,
        request: Request<Streaming<v1::OutputChunk>>,
    ) -> Result<Response<v1::UploadOutputResponse>, Status> {
        let core = self.gate.core()?;
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| ProtoError::missing("digest"))?;
        let digest = digest("digest", &first.digest)?;
        let size = first.total_size;
        if size > limits::MAX_ARTIFACT_BYTES {
            return Err(ProtoError::TooLarge {
                field: "total_size".into(),
                size,
                limit: limits::MAX_ARTIFACT_BYTES,
            }
            .into());
        }
        let admitted = match core
            .ask(
                Event::Operator(OperatorRequest::AdmitOutput { digest, size }),
                None,
            )
            .await?
        {
            Reply::Operator(Ok(OperatorResponse::OutputAdmitted(indexed))) => indexed,
            Reply::Operator(Err(e)) => return Err(e.into()),
            _ => {
                return Err(ServiceError::Internal("unexpected reply from the core".into()).into());
            }
        };
        if admitted && self.artifacts.contains(&digest).await {
            return Ok(Response::new(v1::UploadOutputResponse {
                digest: digest.to_string(),
                already_present: true,
            }));
        }
        let data = |c: v1::OutputChunk| v1::ModuleChunk {
            data: c.data,
            total_size: c.total_size,
        };
        let stream = tokio_stream::once(Ok(data(first))).chain(chunks.map(|c| c.map(data)));
        let stored = self
            .artifacts
            .store_copy(stream, &digest)
            .await
            .map_err(|e| match e {
                // The agent announced other bytes than it sent.
                StoreModuleError::DigestMismatch { .. } => Status::invalid_argument(e.to_string()),
                e => Status::from(e),
            })?;
        if stored.size != size {
            // The room granted was for the size announced: nothing else is kept.
            if !stored.already_present {
                self.artifacts.remove(&digest).await;
            }
            return Err(Status::invalid_argument(format!(
                "announced {size} bytes, sent {}",
                stored.size
            )));
        }
        // As for an uploaded module: on another master's disk too before it is indexed.
        self.peers.replicate(&digest).await?;
        core.ask(
            Event::Operator(OperatorRequest::RecordArtifact {
                digest,
                size,
                kind: ArtifactKind::Output,
                // The principal of the task that left it is added with the task's status.
                owner: None,
            }),
            None,
        )
        .await?;
        Ok(Response::new(v1::UploadOutputResponse {
            digest: digest.to_string(),
            already_present: stored.already_present,
        }))
    }
}

/// The first message on a link, REGISTER or REREGISTER, as a core event.
pub(crate) fn first_event(conn: ConnId, msg: v1::AgentMessage) -> Result<Event, Status> {
    Ok(match msg.kind {
        Some(v1::agent_message::Kind::Register(r)) => Event::AgentRegister {
            conn,
            info: agent_info(r.agent_info.as_ref()).map_err(|e| e.within("register.agent_info"))?,
            cached_modules: digests(&r.cached_modules).map_err(|e| e.within("register"))?,
        },
        Some(v1::agent_message::Kind::Reregister(r)) => {
            reregister(conn, &r).map_err(|e| e.within("reregister"))?
        }
        _ => {
            return Err(Status::failed_precondition(
                "the first message on an agent link must be register or reregister",
            ));
        }
    })
}

/// A message after registration, as a core event.
pub(crate) fn agent_event(
    conn: ConnId,
    msg: v1::AgentMessage,
) -> Result<Option<Event>, ProtoError> {
    use v1::agent_message::Kind;
    Ok(match msg.kind {
        Some(Kind::Heartbeat(_)) => Some(Event::AgentHeartbeat { conn }),
        Some(Kind::StatusUpdate(u)) => {
            let status: TaskStatus = require("status_update.status", u.status.as_ref())?;
            Some(Event::AgentStatus { conn, status })
        }
        Some(Kind::ModuleCached(m)) => Some(Event::AgentModule {
            conn,
            digest: digest("module_cached.digest", &m.digest)?,
            cached: true,
        }),
        Some(Kind::ModuleEvicted(m)) => Some(Event::AgentModule {
            conn,
            digest: digest("module_evicted.digest", &m.digest)?,
            cached: false,
        }),
        Some(Kind::Register(_) | Kind::Reregister(_)) => {
            return Err(ProtoError::invalid(
                "kind",
                "already registered on this stream",
            ));
        }
        None => None,
    })
}

fn reregister(conn: ConnId, r: &v1::agent_message::ReRegister) -> Result<Event, ProtoError> {
    let tasks = each("tasks", &r.tasks, reported_task)?;
    let updates = each(
        "unacknowledged_updates",
        &r.unacknowledged_updates,
        TaskStatus::try_from,
    )?;
    Ok(Event::AgentReregister {
        conn,
        agent_id: parse_id("agent_id", &r.agent_id)?,
        info: agent_info(r.agent_info.as_ref()).map_err(|e| e.within("agent_info"))?,
        tasks,
        updates,
        cached_modules: digests(&r.cached_modules)?,
    })
}

/// A running task as reported; its description is read leniently (the agent may elide
/// input contents), only what the master keeps is required.
fn reported_task(t: &v1::RunningTask) -> Result<ReportedTask, ProtoError> {
    let status: TaskStatus = require("status", t.status.as_ref())?;
    let task = t.task.as_ref();
    let resources = match task.and_then(|t| t.resources.as_ref()) {
        Some(r) => r
            .try_into()
            .map_err(|e: ProtoError| e.within("task.resources"))?,
        None => Default::default(),
    };
    let module = task
        .and_then(|t| t.module.as_ref())
        .and_then(|m| corral_proto::ModuleSource::try_from(m).ok())
        .map(|m| m.to_string())
        .unwrap_or_default();
    Ok(ReportedTask {
        framework_id: parse_id("framework_id", &t.framework_id)?,
        meta: TaskMeta {
            name: task.map(|t| t.name.clone()).unwrap_or_default(),
            module,
            resources,
            labels: task.map(|t| t.labels.clone()).unwrap_or_default(),
            owner: match task.map_or("", |t| t.owner.as_str()) {
                "" => None,
                owner => Some(
                    corral_proto::auth::check_principal(owner)
                        .map(|()| owner.to_owned())
                        .map_err(|e| ProtoError::invalid("task.owner", e))?,
                ),
            },
        },
        status,
    })
}

fn agent_info(info: Option<&v1::AgentInfo>) -> Result<AgentInfo, ProtoError> {
    AgentInfo::try_from(info.ok_or_else(|| ProtoError::missing(""))?)
}

fn digests(list: &[String]) -> Result<Vec<Digest>, ProtoError> {
    each("cached_modules", list, |d| digest("", d))
}

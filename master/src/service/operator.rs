//! The Operator service: listings and policy through the core, module uploads and artifact
//! downloads through the artifact store, and task files proxied to the agent that ran the
//! task.

use std::time::Duration;

use corral_proto::ProtoEnum;
use corral_proto::auth::Conn;
use corral_proto::convert::{parse_optional_id, parse_role, parse_weight, require};
use corral_proto::jobs::JobsAccess as _;
use corral_proto::tls::Dialer;
use corral_proto::{ProtoError, ServiceError, limits, v1};
use corral_types::{FrameworkId, TaskId, TaskState};
use tonic::{Request, Response, Status, Streaming};

use std::sync::Arc;

use super::{ArtifactStream, OperatorEvents, Sight, caller, serve_artifact};
use crate::artifacts::ArtifactStore;
use crate::auth::{Action, Auth, Caller, JobsRights, Object, Visibility, trusted_jobs_address};
use crate::core::{ArtifactKind, Event, OperatorRequest, OperatorResponse, Reply};
use crate::leadership::Gate;
use crate::peers::Peers;
use crate::wire;

#[derive(Debug, Clone)]
pub(crate) struct OperatorService {
    pub(crate) gate: Gate,
    pub(crate) auth: Arc<Auth>,
    /// How this master reaches agents' file APIs.
    pub(crate) dialer: Dialer,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) peers: Peers,
}

impl OperatorService {
    async fn ask(&self, req: OperatorRequest) -> Result<OperatorResponse, Status> {
        match self.gate.core()?.ask(Event::Operator(req), None).await? {
            Reply::Operator(r) => r.map_err(Status::from),
            Reply::Done(_) | Reply::Kv(_) => {
                Err(ServiceError::Internal("unexpected reply from the core".into()).into())
            }
        }
    }

    /// Decides `action` on a task for `caller`, by whose the task is. Answers the task's
    /// framework, so what follows acts on the task that was decided on; `framework` as given
    /// when the master does not authenticate (no lookup then).
    async fn authorize_task(
        &self,
        caller: &Caller,
        action: Action,
        task: &TaskId,
        framework: Option<FrameworkId>,
    ) -> Result<Option<FrameworkId>, Status> {
        if matches!(caller, Caller::Anyone | Caller::Master) {
            return Ok(framework);
        }
        // A task the caller may not list is not found, as an unknown one; the refusal of a
        // change is still audited.
        let visible = self.auth.visibility(caller, Action::ViewTasks);
        let owner = self
            .ask(OperatorRequest::TaskOwner {
                task: task.clone(),
                framework,
                visible,
            })
            .await;
        let OperatorResponse::TaskOwner {
            framework,
            principal,
        } = owner.inspect_err(|status| {
            if action.mutates() && status.code() == tonic::Code::NotFound {
                let object = format!("task {task}");
                self.auth
                    .audit_denied(caller, action.name(), &object, "no such task it may see");
            }
        })?
        else {
            return Err(unexpected());
        };
        self.auth
            .authorize(caller, action, Object::Owner(principal.as_deref()))?;
        Ok(Some(framework))
    }

    /// [`Self::authorize_task`] for a request naming a task and maybe its framework, which
    /// is then named for certain.
    async fn authorize_sandbox(
        &self,
        caller: &Caller,
        task_id: &str,
        framework_id: &mut Option<String>,
    ) -> Result<(), Status> {
        let task: TaskId = corral_proto::convert::parse_id("task_id", task_id)?;
        let framework = parse_optional_id("framework_id", framework_id.as_deref())?;
        if let Some(framework) = self
            .authorize_task(caller, Action::ViewSandboxes, &task, framework)
            .await?
        {
            *framework_id = Some(framework.to_string());
        }
        Ok(())
    }

    /// The operator client of the agent serving a task's sandbox, and whether the task is
    /// terminal.
    async fn agent_for(
        &self,
        task_id: &str,
        framework_id: Option<&str>,
    ) -> Result<(v1::operator_client::OperatorClient<Conn>, bool), Status> {
        let task = corral_proto::convert::parse_id("task_id", task_id)?;
        let framework = parse_optional_id("framework_id", framework_id)?;
        let OperatorResponse::TaskLocation { address, terminal } = self
            .ask(OperatorRequest::LocateTask { task, framework })
            .await?
        else {
            return Err(ServiceError::Internal("unexpected reply from the core".into()).into());
        };
        let conn = self
            .dialer
            .connect(&address)
            .await
            .map_err(|e| ServiceError::Unavailable(format!("agent at {address}: {e}")))?;
        Ok((limits::operator_client(conn), terminal))
    }
}

fn unexpected() -> Status {
    ServiceError::Internal("unexpected reply from the core".into()).into()
}

/// `Operator.Subscribe`'s stream, decoded for tonic to encode again: the master serves the
/// method from the encoded events instead ([`SubscribeRoute`](super::SubscribeRoute)), and
/// this serves the generated service alone the same events.
type SubscribeStream = super::events::Decoded;

impl OperatorService {
    /// Opens an `Operator.Subscribe` stream.
    pub(crate) async fn events(
        &self,
        request: Request<v1::SubscribeEventsRequest>,
    ) -> Result<OperatorEvents, Status> {
        let sight = Sight::of(&self.auth, &caller(&request)?);
        let max_tasks = request.into_inner().max_tasks as usize;
        Ok(OperatorEvents::subscribe(&self.gate.core()?, max_tasks, sight).await?)
    }
}

#[tonic::async_trait]
impl v1::operator_server::Operator for OperatorService {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeEventsRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        Ok(Response::new(self.events(request).await?.decoded()))
    }

    async fn get_state(
        &self,
        request: Request<v1::GetStateRequest>,
    ) -> Result<Response<v1::GetStateResponse>, Status> {
        let max_tasks = request.into_inner().max_tasks as usize;
        match self.ask(OperatorRequest::GetState { max_tasks }).await? {
            OperatorResponse::State(s) => Ok(Response::new(v1::GetStateResponse::from(&*s))),
            _ => Err(unexpected()),
        }
    }

    async fn decide_jobs(
        &self,
        request: Request<v1::DecideJobsRequest>,
    ) -> Result<Response<v1::DecideJobsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        for (field, names) in [
            ("view", &r.view),
            ("manage", &r.manage),
            ("roles", &r.roles),
        ] {
            if names.len() > limits::MAX_JOB_DECISIONS {
                return Err(Status::invalid_argument(format!(
                    "{field}: {} names, at most {}",
                    names.len(),
                    limits::MAX_JOB_DECISIONS
                )));
            }
        }
        let rights = JobsRights::of(&self.auth, &caller);
        fn owner(name: &str) -> Option<&str> {
            (!name.is_empty()).then_some(name)
        }
        let why_not = |decided: Result<(), Status>| decided.err().map(|s| s.message().to_owned());
        Ok(Response::new(v1::DecideJobsResponse {
            principal: caller.principal().unwrap_or_default().to_owned(),
            view: r.view.iter().map(|o| rights.sees(owner(o))).collect(),
            manage: (r.manage.iter())
                .map(|o| why_not(rights.may_manage(owner(o), "")).unwrap_or_default())
                .collect(),
            roles: (r.roles.iter())
                .map(|role| why_not(rights.may_run_in(role, "")).unwrap_or_default())
                .collect(),
        }))
    }

    async fn list_modules(
        &self,
        request: Request<v1::ListModulesRequest>,
    ) -> Result<Response<v1::ListModulesResponse>, Status> {
        let visible = self
            .auth
            .visibility(&caller(&request)?, Action::ViewModules);
        match self.ask(OperatorRequest::ListModules { visible }).await? {
            OperatorResponse::Modules(modules) => Ok(Response::new(v1::ListModulesResponse {
                modules: wire::each_into(&modules),
            })),
            _ => Err(unexpected()),
        }
    }

    async fn list_agents(
        &self,
        _request: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        match self.ask(OperatorRequest::ListAgents).await? {
            OperatorResponse::Agents(agents) => Ok(Response::new(v1::ListAgentsResponse {
                agents: wire::each_into(&agents),
            })),
            _ => Err(unexpected()),
        }
    }

    async fn list_frameworks(
        &self,
        request: Request<v1::ListFrameworksRequest>,
    ) -> Result<Response<v1::ListFrameworksResponse>, Status> {
        let visible = self
            .auth
            .visibility(&caller(&request)?, Action::ViewFrameworks);
        let include_completed = request.into_inner().include_completed;
        // Every framework, for the jobs framework's address; then what the caller may see.
        let OperatorResponse::Frameworks(frameworks) = self
            .ask(OperatorRequest::ListFrameworks {
                include_completed,
                visible: Visibility::All,
            })
            .await?
        else {
            return Err(unexpected());
        };
        let mut frameworks: Vec<v1::FrameworkSummary> = wire::each_into(&frameworks);
        let jobs_address = trusted_jobs_address(&self.auth, &frameworks).unwrap_or_default();
        frameworks.retain(|f| visible.sees((!f.principal.is_empty()).then_some(&*f.principal)));
        Ok(Response::new(v1::ListFrameworksResponse {
            frameworks,
            jobs_address,
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<v1::ListTasksRequest>,
    ) -> Result<Response<v1::ListTasksResponse>, Status> {
        let visible = self.auth.visibility(&caller(&request)?, Action::ViewTasks);
        let req = list_tasks_request(request.into_inner(), visible)?;
        match self.ask(req).await? {
            OperatorResponse::Tasks(page) => Ok(Response::new(v1::ListTasksResponse::from(&page))),
            _ => Err(unexpected()),
        }
    }

    async fn get_roles(
        &self,
        _request: Request<v1::GetRolesRequest>,
    ) -> Result<Response<v1::GetRolesResponse>, Status> {
        match self.ask(OperatorRequest::GetRoles).await? {
            OperatorResponse::Roles(roles) => Ok(Response::new(v1::GetRolesResponse {
                roles: wire::each_into(&roles),
            })),
            _ => Err(unexpected()),
        }
    }

    async fn set_weight(
        &self,
        request: Request<v1::SetWeightRequest>,
    ) -> Result<Response<v1::SetWeightResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let role = parse_role("role", &r.role)?;
        self.auth
            .authorize(&caller, Action::SetWeights, Object::Role(&role))?;
        let req = OperatorRequest::SetWeight {
            role,
            weight: parse_weight("weight", r.weight)?,
        };
        self.ask(req).await?;
        Ok(Response::new(v1::SetWeightResponse {}))
    }

    async fn set_quota(
        &self,
        request: Request<v1::SetQuotaRequest>,
    ) -> Result<Response<v1::SetQuotaResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let role = parse_role("role", &r.role)?;
        self.auth
            .authorize(&caller, Action::SetQuotas, Object::Role(&role))?;
        let req = OperatorRequest::SetQuota {
            role,
            quota: require("quota", r.quota.as_ref())?,
            force: r.force,
        };
        self.ask(req).await?;
        Ok(Response::new(v1::SetQuotaResponse {}))
    }

    async fn remove_quota(
        &self,
        request: Request<v1::RemoveQuotaRequest>,
    ) -> Result<Response<v1::RemoveQuotaResponse>, Status> {
        let caller = caller(&request)?;
        let role = parse_role("role", &request.into_inner().role)?;
        self.auth
            .authorize(&caller, Action::SetQuotas, Object::Role(&role))?;
        self.ask(OperatorRequest::RemoveQuota { role }).await?;
        Ok(Response::new(v1::RemoveQuotaResponse {}))
    }

    async fn reserve_resources(
        &self,
        request: Request<v1::ReserveResourcesRequest>,
    ) -> Result<Response<v1::ReserveResourcesResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let role = parse_role("role", &r.role)?;
        self.auth
            .authorize(&caller, Action::ReserveResources, Object::Role(&role))?;
        let req = OperatorRequest::Reserve {
            agent: corral_proto::convert::parse_id("agent_id", &r.agent_id)?,
            role,
            resources: require("resources", r.resources.as_ref())?,
        };
        self.ask(req).await?;
        Ok(Response::new(v1::ReserveResourcesResponse {}))
    }

    async fn unreserve_resources(
        &self,
        request: Request<v1::UnreserveResourcesRequest>,
    ) -> Result<Response<v1::UnreserveResourcesResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let role = parse_role("role", &r.role)?;
        self.auth
            .authorize(&caller, Action::ReserveResources, Object::Role(&role))?;
        let req = OperatorRequest::Unreserve {
            agent: corral_proto::convert::parse_id("agent_id", &r.agent_id)?,
            role,
            resources: require("resources", r.resources.as_ref())?,
        };
        self.ask(req).await?;
        Ok(Response::new(v1::UnreserveResourcesResponse {}))
    }

    async fn drain_agent(
        &self,
        request: Request<v1::DrainAgentRequest>,
    ) -> Result<Response<v1::DrainAgentResponse>, Status> {
        let r = request.into_inner();
        let req = OperatorRequest::DrainAgent {
            agent: corral_proto::convert::parse_id("agent_id", &r.agent_id)?,
            grace: r.max_grace_period_millis.map(Duration::from_millis),
            mark_gone: r.mark_gone,
        };
        self.ask(req).await?;
        Ok(Response::new(v1::DrainAgentResponse {}))
    }

    async fn reactivate_agent(
        &self,
        request: Request<v1::ReactivateAgentRequest>,
    ) -> Result<Response<v1::ReactivateAgentResponse>, Status> {
        let agent = corral_proto::convert::parse_id("agent_id", &request.into_inner().agent_id)?;
        self.ask(OperatorRequest::ReactivateAgent { agent }).await?;
        Ok(Response::new(v1::ReactivateAgentResponse {}))
    }

    async fn kill_task(
        &self,
        request: Request<v1::KillTaskRequest>,
    ) -> Result<Response<v1::KillTaskResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let task: TaskId = corral_proto::convert::parse_id("task_id", &r.task_id)?;
        let framework = parse_optional_id("framework_id", r.framework_id.as_deref())?;
        let framework = self
            .authorize_task(&caller, Action::KillTasks, &task, framework)
            .await?;
        let req = OperatorRequest::KillTask { task, framework };
        match self.ask(req).await? {
            OperatorResponse::Killed { framework, agent } => {
                Ok(Response::new(v1::KillTaskResponse {
                    framework_id: framework.to_string(),
                    agent_id: agent.to_string(),
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn upload_module(
        &self,
        request: Request<Streaming<v1::ModuleChunk>>,
    ) -> Result<Response<v1::UploadModuleResponse>, Status> {
        // Standbys refuse before reading the upload.
        self.gate.core()?;
        let owner = caller(&request)?.principal().map(Arc::from);
        let mut r = self.artifacts.upload(request.into_inner()).await?;
        let digest = super::digest("digest", &r.digest)?;
        // Acknowledged only once another master holds a copy (when another runs), so the
        // module survives this master's death, and then once the index records it: whenever
        // two masters run, an indexed module is on both their disks.
        r.replicas = self.peers.replicate(&digest).await?;
        self.ask(OperatorRequest::RecordArtifact {
            digest,
            size: r.size,
            kind: ArtifactKind::Module,
            owner,
        })
        .await?;
        Ok(Response::new(r))
    }

    async fn list_files(
        &self,
        request: Request<v1::ListFilesRequest>,
    ) -> Result<Response<v1::ListFilesResponse>, Status> {
        let caller = caller(&request)?;
        let mut r = request.into_inner();
        self.authorize_sandbox(&caller, &r.task_id, &mut r.framework_id)
            .await?;
        let (mut client, _) = self
            .agent_for(&r.task_id, r.framework_id.as_deref())
            .await?;
        client.list_files(r).await
    }

    async fn read_file(
        &self,
        request: Request<v1::ReadFileRequest>,
    ) -> Result<Response<v1::ReadFileResponse>, Status> {
        let caller = caller(&request)?;
        let mut r = request.into_inner();
        self.authorize_sandbox(&caller, &r.task_id, &mut r.framework_id)
            .await?;
        let (mut client, _) = self
            .agent_for(&r.task_id, r.framework_id.as_deref())
            .await?;
        client.read_file(r).await
    }

    async fn list_task_outputs(
        &self,
        request: Request<v1::ListTaskOutputsRequest>,
    ) -> Result<Response<v1::ListTaskOutputsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let task: TaskId = corral_proto::convert::parse_id("task_id", &r.task_id)?;
        let framework = parse_optional_id("framework_id", r.framework_id.as_deref())?;
        let framework = self
            .authorize_task(&caller, Action::ViewSandboxes, &task, framework)
            .await?;
        let OperatorResponse::TaskOutputs(record) = self
            .ask(OperatorRequest::TaskOutputs { task, framework })
            .await?
        else {
            return Err(unexpected());
        };
        Ok(Response::new(v1::ListTaskOutputsResponse {
            framework_id: record.framework_id.to_string(),
            task_id: record.task_id.to_string(),
            agent_id: record
                .agent_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            state: record.state.to_i32(),
            reason: record.reason.to_i32(),
            finished_millis: record.finished_unix_millis,
            outputs: record.outputs.iter().map(Into::into).collect(),
            outputs_not_kept: record.not_kept.clone().unwrap_or_default(),
        }))
    }

    type FetchArtifactStream = ArtifactStream;

    async fn fetch_artifact(
        &self,
        request: Request<v1::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        let core = self.gate.core()?;
        let caller = caller(&request)?;
        let r = request.into_inner();
        let digest = super::digest("digest", &r.digest)?;
        let visible = self.auth.visibility(&caller, Action::ViewModules);
        if visible != Visibility::All {
            let request = OperatorRequest::ArtifactIndexed { digest, visible };
            if self.ask(request).await? != OperatorResponse::ArtifactIndexed(true) {
                // One answer whether the artifact is unknown or another tenant's: a digest
                // tells nothing about what the store holds.
                let reason = "not in the artifact store, or not shared with this principal";
                let object = digest.to_string();
                self.auth
                    .audit_denied(&caller, Action::ViewModules.name(), &object, reason);
                return Err(ServiceError::PermissionDenied(format!(
                    "artifact {digest} is {reason}"
                ))
                .into());
            }
        }
        serve_artifact(&core, &self.artifacts, &self.peers, digest, r.offset)
            .await
            .map(Response::new)
    }
}

/// A ListTasks request as the core's, showing tasks of `visible` principals.
pub(crate) fn list_tasks_request(
    r: v1::ListTasksRequest,
    visible: Visibility,
) -> Result<OperatorRequest, ProtoError> {
    corral_proto::convert::bounded_list("states", r.states.len())?;
    corral_proto::convert::bounded_labels("labels", r.labels.iter().map(|(k, v)| (&**k, &**v)))?;
    let states = r
        .states
        .iter()
        .map(|&s| TaskState::from_proto("states", s))
        .collect::<Result<_, ProtoError>>()?;
    Ok(OperatorRequest::ListTasks {
        task: parse_optional_id("task_id", r.task_id.as_deref())?,
        framework: parse_optional_id("framework_id", r.framework_id.as_deref())?,
        agent: parse_optional_id("agent_id", r.agent_id.as_deref())?,
        states,
        labels: r.labels.into_iter().collect(),
        page_size: r.page_size as usize,
        page_token: r.page_token,
        visible,
    })
}

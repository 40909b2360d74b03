//! The Jobs gRPC service (`jobs.proto`) over a running [`JobsFramework`].

use std::sync::Arc;

use corral_proto::auth::AUTHORIZATION;
use corral_proto::jobs::{JobsAccess, JobsCaller};
use corral_proto::v1;
use corral_proto::v1::jobs_server::JobsServer;
use tonic::{Request, Response, Status};

use super::decide::{MasterDecisions, Needs};
use super::framework::{JobsError, JobsFramework};
use super::record::Submission;
use crate::spec::{self, Format};

/// Largest spec file the service takes.
pub const MAX_SPEC_BYTES: usize = corral_proto::limits::MAX_JOB_SPEC_BYTES;
/// Most uploaded paths one submission names.
const MAX_UPLOADED: usize = 1_000;

/// Serves the Jobs service for `framework` behind a master's port, with Corral's message
/// limits: the master's gate hands each call its decisions ([`JobsCaller`]).
pub fn jobs_service(framework: JobsFramework) -> JobsServer<JobsService> {
    corral_proto::limits::jobs_server(JobsService {
        framework,
        decisions: None,
    })
}

/// Serves the Jobs service for `framework` on a port of its own: each call's decisions are
/// asked of the masters with the caller's token.
pub fn jobs_service_asking(
    framework: JobsFramework,
    decisions: MasterDecisions,
) -> JobsServer<JobsService> {
    corral_proto::limits::jobs_server(JobsService {
        framework,
        decisions: Some(decisions),
    })
}

/// The Jobs service's handlers.
#[derive(Debug, Clone)]
pub struct JobsService {
    framework: JobsFramework,
    /// Where decisions come from when no master's gate is in front of the service.
    decisions: Option<MasterDecisions>,
}

impl JobsService {
    /// What may the caller of `request` do: the master's gate decided (the service runs
    /// behind a master's port), or the masters are asked what `needs` names.
    async fn access<T>(
        &self,
        request: &Request<T>,
        needs: impl FnOnce(&JobsFramework) -> Needs,
    ) -> Result<Arc<dyn JobsAccess>, Status> {
        if let Some(JobsCaller(access)) = request.extensions().get::<JobsCaller>() {
            return Ok(Arc::clone(access));
        }
        let Some(decisions) = &self.decisions else {
            return Ok(Arc::new(Unchecked));
        };
        let needs = needs(&self.framework);
        let token = request.metadata().get(AUTHORIZATION);
        Ok(Arc::new(decisions.decide(token, needs).await?))
    }

    /// [`JobsService::access`] for a call on job `name`, which changes it if `manage`.
    async fn access_to<T>(
        &self,
        request: &Request<T>,
        name: &str,
        manage: bool,
    ) -> Result<Arc<dyn JobsAccess>, Status> {
        self.access(request, |framework| {
            let owners = framework.owners(Some(&[name]));
            Needs {
                manage: if manage {
                    owners.clone()
                } else {
                    Default::default()
                },
                view: owners,
                roles: Default::default(),
            }
        })
        .await
    }

    /// [`JobsService::access`] for submitting or updating `specs`.
    async fn access_for_specs<T>(
        &self,
        request: &Request<T>,
        specs: &[spec::JobSpec],
    ) -> Result<Arc<dyn JobsAccess>, Status> {
        self.access(request, |framework| {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            let manage = framework.owners(Some(&names));
            let dependencies: Vec<&str> = specs
                .iter()
                .flat_map(|s| s.depends_on())
                .map(String::as_str)
                .collect();
            let mut view = framework.owners(Some(&dependencies));
            view.extend(manage.iter().cloned());
            Needs {
                view,
                manage,
                roles: specs.iter().map(|s| s.role_name().to_owned()).collect(),
            }
        })
        .await
    }
}

impl From<JobsError> for Status {
    fn from(e: JobsError) -> Self {
        let message = e.to_string();
        match e {
            JobsError::NotReady | JobsError::Store(_) => Status::unavailable(message),
            JobsError::Invalid(_) => Status::invalid_argument(message),
            JobsError::Exists(_) => Status::already_exists(message),
            JobsError::UnknownDependency(_) | JobsError::NotApplicable(_) => {
                Status::failed_precondition(message)
            }
            JobsError::NotFound(_) => Status::not_found(message),
            JobsError::Refused(refusal) => refusal,
        }
    }
}

#[tonic::async_trait]
impl v1::jobs_server::Jobs for JobsService {
    async fn submit_jobs(
        &self,
        request: Request<v1::SubmitJobsRequest>,
    ) -> Result<Response<v1::SubmitJobsResponse>, Status> {
        let (specs, submission) = read_spec_file(request.get_ref())?;
        let access = self.access_for_specs(&request, &specs).await?;
        let jobs = self.framework.submit(specs, submission, &*access).await?;
        Ok(Response::new(v1::SubmitJobsResponse { jobs }))
    }

    async fn update_jobs(
        &self,
        request: Request<v1::SubmitJobsRequest>,
    ) -> Result<Response<v1::SubmitJobsResponse>, Status> {
        let (specs, submission) = read_spec_file(request.get_ref())?;
        let access = self.access_for_specs(&request, &specs).await?;
        let jobs = self.framework.update(specs, submission, &*access).await?;
        Ok(Response::new(v1::SubmitJobsResponse { jobs }))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let access = self
            .access(&request, |framework| Needs {
                view: framework.owners(None),
                ..Needs::default()
            })
            .await?;
        let jobs = self.framework.list(&*access)?;
        Ok(Response::new(v1::ListJobsResponse { jobs }))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let access = self
            .access_to(&request, &request.get_ref().name, false)
            .await?;
        Ok(Response::new(
            self.framework.get(&request.into_inner().name, &*access)?,
        ))
    }

    async fn kill_job(
        &self,
        request: Request<v1::KillJobRequest>,
    ) -> Result<Response<v1::KillJobResponse>, Status> {
        let access = self
            .access_to(&request, &request.get_ref().name, true)
            .await?;
        let job = self
            .framework
            .kill(&request.into_inner().name, &*access)
            .await?;
        Ok(Response::new(v1::KillJobResponse { job: Some(job) }))
    }

    async fn scale_job(
        &self,
        request: Request<v1::ScaleJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let access = self
            .access_to(&request, &request.get_ref().name, true)
            .await?;
        let r = request.into_inner();
        Ok(Response::new(
            self.framework.scale(&r.name, r.instances, &*access).await?,
        ))
    }

    async fn run_job_now(
        &self,
        request: Request<v1::JobNameRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let access = self
            .access_to(&request, &request.get_ref().name, true)
            .await?;
        let job = self
            .framework
            .run_now(&request.into_inner().name, &*access)
            .await?;
        Ok(Response::new(job))
    }

    async fn suspend_job(
        &self,
        request: Request<v1::JobNameRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let access = self
            .access_to(&request, &request.get_ref().name, true)
            .await?;
        let job = self
            .framework
            .set_suspended(&request.into_inner().name, true, &*access)
            .await?;
        Ok(Response::new(job))
    }

    async fn resume_job(
        &self,
        request: Request<v1::JobNameRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let access = self
            .access_to(&request, &request.get_ref().name, true)
            .await?;
        let job = self
            .framework
            .set_suspended(&request.into_inner().name, false, &*access)
            .await?;
        Ok(Response::new(job))
    }
}

/// Every caller may do everything, and submits jobs that belong to nobody.
#[derive(Debug)]
struct Unchecked;

impl JobsAccess for Unchecked {
    fn principal(&self) -> Option<&str> {
        None
    }

    fn sees(&self, _owner: Option<&str>) -> bool {
        true
    }

    fn may_manage(&self, _owner: Option<&str>, _job: &str) -> Result<(), Status> {
        Ok(())
    }

    fn may_run_in(&self, _role: &str, _job: &str) -> Result<(), Status> {
        Ok(())
    }
}

/// The specs of a submitted spec file, checked against the service's limits, and the file as
/// submitted.
fn read_spec_file(r: &v1::SubmitJobsRequest) -> Result<(Vec<spec::JobSpec>, Submission), Status> {
    if r.source.len() > MAX_SPEC_BYTES {
        return Err(Status::invalid_argument(format!(
            "source: {} bytes, at most {MAX_SPEC_BYTES}",
            r.source.len()
        )));
    }
    if r.uploaded.len() > MAX_UPLOADED {
        return Err(Status::invalid_argument(format!(
            "uploaded: {} paths, at most {MAX_UPLOADED}",
            r.uploaded.len()
        )));
    }
    let format = Format::from_name(&r.format)
        .map_err(|e| Status::invalid_argument(format!("format: {e}")))?;
    let file = if r.file.is_empty() {
        "spec".to_owned()
    } else {
        r.file.clone()
    };
    let specs = spec::parse(&r.source, format, &file)
        .map_err(|errors| Status::invalid_argument(errors.to_string()))?;
    let submission = Submission {
        source: r.source.clone(),
        format: r.format.clone(),
        file,
        uploaded: r.uploaded.clone(),
        // The caller's, set by the framework.
        owner: None,
    };
    Ok((specs, submission))
}

//! The Jobs gRPC service (`jobs.proto`) over a running [`JobsFramework`].

use std::sync::Arc;

use corral_proto::jobs::{JobsAccess, JobsCaller};
use corral_proto::v1;
use corral_proto::v1::jobs_server::JobsServer;
use tonic::{Request, Response, Status};

use super::framework::{JobsError, JobsFramework};
use super::record::Submission;
use crate::spec::{self, Format};

/// Largest spec file the service takes.
pub const MAX_SPEC_BYTES: usize = corral_proto::limits::MAX_JOB_SPEC_BYTES;
/// Most uploaded paths one submission names.
const MAX_UPLOADED: usize = 1_000;

/// Serves the Jobs service for `framework`, with Corral's message limits.
pub fn jobs_service(framework: JobsFramework) -> JobsServer<JobsService> {
    corral_proto::limits::jobs_server(JobsService { framework })
}

/// The Jobs service's handlers.
#[derive(Debug, Clone)]
pub struct JobsService {
    framework: JobsFramework,
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
        let access = access(&request);
        let (specs, submission) = read_spec_file(request.into_inner())?;
        let jobs = self.framework.submit(specs, submission, &*access).await?;
        Ok(Response::new(v1::SubmitJobsResponse { jobs }))
    }

    async fn update_jobs(
        &self,
        request: Request<v1::SubmitJobsRequest>,
    ) -> Result<Response<v1::SubmitJobsResponse>, Status> {
        let access = access(&request);
        let (specs, submission) = read_spec_file(request.into_inner())?;
        let jobs = self.framework.update(specs, submission, &*access).await?;
        Ok(Response::new(v1::SubmitJobsResponse { jobs }))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let jobs = self.framework.list(&*access(&request))?;
        Ok(Response::new(v1::ListJobsResponse { jobs }))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let access = access(&request);
        Ok(Response::new(
            self.framework.get(&request.into_inner().name, &*access)?,
        ))
    }

    async fn kill_job(
        &self,
        request: Request<v1::KillJobRequest>,
    ) -> Result<Response<v1::KillJobResponse>, Status> {
        let access = access(&request);
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
        let access = access(&request);
        let r = request.into_inner();
        Ok(Response::new(
            self.framework.scale(&r.name, r.instances, &*access).await?,
        ))
    }

    async fn run_job_now(
        &self,
        request: Request<v1::JobNameRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let access = access(&request);
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
        let access = access(&request);
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
        let access = access(&request);
        let job = self
            .framework
            .set_suspended(&request.into_inner().name, false, &*access)
            .await?;
        Ok(Response::new(job))
    }
}

/// What the master decided about the caller; without the master's word (a jobs framework
/// serving on a port of its own), every caller may do everything.
fn access<T>(request: &Request<T>) -> Arc<dyn JobsAccess> {
    match request.extensions().get::<JobsCaller>() {
        Some(JobsCaller(access)) => Arc::clone(access),
        None => Arc::new(Unchecked),
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
fn read_spec_file(r: v1::SubmitJobsRequest) -> Result<(Vec<spec::JobSpec>, Submission), Status> {
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
        r.file
    };
    let specs = spec::parse(&r.source, format, &file)
        .map_err(|errors| Status::invalid_argument(errors.to_string()))?;
    let submission = Submission {
        source: r.source,
        format: r.format,
        file,
        uploaded: r.uploaded,
        // The caller's, set by the framework.
        owner: None,
    };
    Ok((specs, submission))
}

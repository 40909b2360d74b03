//! The Jobs gRPC service (`jobs.proto`) over a running [`JobsFramework`].

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
        }
    }
}

#[tonic::async_trait]
impl v1::jobs_server::Jobs for JobsService {
    async fn submit_jobs(
        &self,
        request: Request<v1::SubmitJobsRequest>,
    ) -> Result<Response<v1::SubmitJobsResponse>, Status> {
        let (specs, submission) = read_spec_file(request.into_inner())?;
        let jobs = self.framework.submit(specs, submission).await?;
        Ok(Response::new(v1::SubmitJobsResponse { jobs }))
    }

    async fn update_jobs(
        &self,
        request: Request<v1::SubmitJobsRequest>,
    ) -> Result<Response<v1::SubmitJobsResponse>, Status> {
        let (specs, submission) = read_spec_file(request.into_inner())?;
        let jobs = self.framework.update(specs, submission).await?;
        Ok(Response::new(v1::SubmitJobsResponse { jobs }))
    }

    async fn list_jobs(
        &self,
        _request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let jobs = self.framework.list()?;
        Ok(Response::new(v1::ListJobsResponse { jobs }))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        Ok(Response::new(
            self.framework.get(&request.into_inner().name)?,
        ))
    }

    async fn kill_job(
        &self,
        request: Request<v1::KillJobRequest>,
    ) -> Result<Response<v1::KillJobResponse>, Status> {
        let job = self.framework.kill(&request.into_inner().name).await?;
        Ok(Response::new(v1::KillJobResponse { job: Some(job) }))
    }

    async fn scale_job(
        &self,
        request: Request<v1::ScaleJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.framework.scale(&r.name, r.instances).await?,
        ))
    }

    async fn run_job_now(
        &self,
        request: Request<v1::JobNameRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let job = self.framework.run_now(&request.into_inner().name).await?;
        Ok(Response::new(job))
    }

    async fn suspend_job(
        &self,
        request: Request<v1::JobNameRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let job = self
            .framework
            .set_suspended(&request.into_inner().name, true)
            .await?;
        Ok(Response::new(job))
    }

    async fn resume_job(
        &self,
        request: Request<v1::JobNameRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let job = self
            .framework
            .set_suspended(&request.into_inner().name, false)
            .await?;
        Ok(Response::new(job))
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
    };
    Ok((specs, submission))
}

//! ListFiles / ReadFile are proxied to the agent that ran the task.

use std::net::SocketAddr;

use bytes::Bytes;
use corral_proto::{limits, v1};
use tonic::{Request, Response, Status, Streaming};

use crate::util::{FakeAgent, RawScheduler, launch, start, task};

/// An agent's file API: one file, "stdout", with "hello".
#[derive(Debug)]
struct AgentFiles;

#[tonic::async_trait]
impl v1::operator_server::Operator for AgentFiles {
    async fn list_files(
        &self,
        request: Request<v1::ListFilesRequest>,
    ) -> Result<Response<v1::ListFilesResponse>, Status> {
        assert_eq!(request.into_inner().task_id, "t1");
        Ok(Response::new(v1::ListFilesResponse {
            files: vec![v1::FileInfo {
                path: "stdout".into(),
                size: 5,
                ..Default::default()
            }],
        }))
    }

    async fn read_file(
        &self,
        request: Request<v1::ReadFileRequest>,
    ) -> Result<Response<v1::ReadFileResponse>, Status> {
        let r = request.into_inner();
        assert_eq!((r.task_id.as_str(), r.path.as_str()), ("t1", "stdout"));
        Ok(Response::new(v1::ReadFileResponse {
            data: Bytes::from_static(b"hello"),
            offset: 0,
            size: 5,
            complete: false,
        }))
    }

    async fn get_state(
        &self,
        _: Request<v1::GetStateRequest>,
    ) -> Result<Response<v1::GetStateResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn list_agents(
        &self,
        _: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn list_frameworks(
        &self,
        _: Request<v1::ListFrameworksRequest>,
    ) -> Result<Response<v1::ListFrameworksResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn list_tasks(
        &self,
        _: Request<v1::ListTasksRequest>,
    ) -> Result<Response<v1::ListTasksResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn get_roles(
        &self,
        _: Request<v1::GetRolesRequest>,
    ) -> Result<Response<v1::GetRolesResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn set_weight(
        &self,
        _: Request<v1::SetWeightRequest>,
    ) -> Result<Response<v1::SetWeightResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn set_quota(
        &self,
        _: Request<v1::SetQuotaRequest>,
    ) -> Result<Response<v1::SetQuotaResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn remove_quota(
        &self,
        _: Request<v1::RemoveQuotaRequest>,
    ) -> Result<Response<v1::RemoveQuotaResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn drain_agent(
        &self,
        _: Request<v1::DrainAgentRequest>,
    ) -> Result<Response<v1::DrainAgentResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn reactivate_agent(
        &self,
        _: Request<v1::ReactivateAgentRequest>,
    ) -> Result<Response<v1::ReactivateAgentResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn kill_task(
        &self,
        _: Request<v1::KillTaskRequest>,
    ) -> Result<Response<v1::KillTaskResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn reserve_resources(
        &self,
        _: Request<v1::ReserveResourcesRequest>,
    ) -> Result<Response<v1::ReserveResourcesResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn unreserve_resources(
        &self,
        _: Request<v1::UnreserveResourcesRequest>,
    ) -> Result<Response<v1::UnreserveResourcesResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }
    async fn upload_module(
        &self,
        _: Request<Streaming<v1::ModuleChunk>>,
    ) -> Result<Response<v1::UploadModuleResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }

    async fn list_task_outputs(
        &self,
        _: Request<v1::ListTaskOutputsRequest>,
    ) -> Result<Response<v1::ListTaskOutputsResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }

    type FetchArtifactStream = tokio_stream::Empty<Result<v1::ModuleChunk, Status>>;

    async fn fetch_artifact(
        &self,
        _: Request<v1::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        Err(Status::unimplemented("agent"))
    }

    async fn list_modules(
        &self,
        _: Request<v1::ListModulesRequest>,
    ) -> Result<Response<v1::ListModulesResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }

    async fn decide_jobs(
        &self,
        _: Request<v1::DecideJobsRequest>,
    ) -> Result<Response<v1::DecideJobsResponse>, Status> {
        Err(Status::unimplemented("agent"))
    }

    type SubscribeStream = tokio_stream::Empty<Result<v1::OperatorEvent, Status>>;

    async fn subscribe(
        &self,
        _: Request<v1::SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented("agent"))
    }
}

async fn serve_agent_files() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        limits::server_builder()
            .add_service(limits::operator_server(AgentFiles))
            .serve_with_incoming(limits::incoming(listener)),
    );
    addr
}

#[tokio::test]
async fn task_files_are_read_through_the_master_from_the_tasks_agent() {
    let m = start().await;
    let agent_addr = serve_agent_files().await;
    let mut agent = FakeAgent::register_at(m.channel.clone(), &agent_addr.to_string()).await;
    let mut fw = RawScheduler::subscribe(m.channel.clone()).await;
    let offers = fw.offers().await;
    fw.call(launch(&offers[0].id, vec![task("t1", 500)]))
        .await
        .unwrap();
    agent.next("LaunchTasks").await;

    let mut op = limits::operator_client(m.channel.clone());
    let files = op
        .list_files(v1::ListFilesRequest {
            task_id: "t1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(files.files[0].path, "stdout");
    let read = op
        .read_file(v1::ReadFileRequest {
            task_id: "t1".into(),
            path: "stdout".into(),
            length: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&read.data[..], b"hello");

    let err = op
        .read_file(v1::ReadFileRequest {
            task_id: "ghost".into(),
            path: "stdout".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    m.master.shutdown().await;
}

//! The MasterPeer service: module bytes between masters. Served by every master, leader or
//! standby, from and into its own artifact store only (see [`peers`](crate::peers)).

use corral_proto::v1;
use tonic::{Request, Response, Status, Streaming};

use super::digest;
use crate::artifacts::ArtifactStore;

/// Served by every master, unlike the other services: the leader reads from and writes to
/// standbys through it.
#[derive(Debug, Clone)]
pub(crate) struct MasterPeerService {
    pub(crate) artifacts: ArtifactStore,
}

#[tonic::async_trait]
impl v1::master_peer_server::MasterPeer for MasterPeerService {
    type FetchModuleStream =
        tokio_stream::wrappers::ReceiverStream<Result<v1::ModuleChunk, Status>>;

    async fn fetch_module(
        &self,
        request: Request<v1::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        let req = request.into_inner();
        let digest = digest("digest", &req.digest)?;
        let rx = self.artifacts.fetch(&digest, req.offset).await?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn replicate_module(
        &self,
        request: Request<Streaming<v1::ModuleChunk>>,
    ) -> Result<Response<v1::UploadModuleResponse>, Status> {
        let stored = self.artifacts.upload(request.into_inner()).await?;
        Ok(Response::new(stored))
    }
}

//! Keeping a finished run's outputs: the files of its outputs folder ([`crate::collect`])
//! are uploaded into the master's artifact store (`AgentLink.UploadOutput`) before the
//! terminal status that lists them is sent, so a listed output is always downloadable.
//!
//! The master may be away when a task ends (a failover, a restart): uploads are retried for
//! [`UPLOAD_PATIENCE`]; what is still not kept then, or what the master refuses (its output
//! store is full), is named in the terminal status's message. The files stay in the sandbox
//! meanwhile, readable through the files API until the run is retired.

use std::path::Path;
use std::time::Duration;

use corral_proto::auth::Conn;
use corral_proto::limits::{self, MODULE_CHUNK_BYTES};
use corral_proto::v1;
use corral_types::{Digest, TaskOutput};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::tasks::Node;
use crate::collect::{self, OutputFile};

/// How long uploads are retried while the master cannot be reached.
pub(crate) const UPLOAD_PATIENCE: Duration = Duration::from_secs(60);

/// What became of a run's outputs.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// The outputs in the artifact store, sorted by path.
    pub(crate) outputs: Vec<TaskOutput>,
    /// What the status's message adds: what was kept, and what not and why.
    pub(crate) summary: Option<String>,
    /// What was not kept, and why.
    pub(crate) not_kept: Option<String>,
}

/// Collects the outputs folder under the sandbox root `root` and uploads its files.
pub(crate) async fn keep(node: &Node, root: &Path) -> Kept {
    let root = root.to_owned();
    let collected = tokio::task::spawn_blocking(move || collect::collect(&root))
        .await
        .unwrap_or_default();
    if collected.files.is_empty() && collected.not_kept.is_empty() {
        return Kept::default();
    }
    let mut kept = Kept::default();
    let mut refused: Vec<String> = collected.not_kept.iter().map(ToString::to_string).collect();
    for file in &collected.files {
        match upload_patiently(node, file).await {
            Ok(digest) => kept.outputs.push(TaskOutput {
                path: file.path.clone(),
                size: file.size,
                digest,
            }),
            Err(Refusal::StoreFull(why)) => {
                refused.push(format!("{} and every file after it ({why})", file.path));
                break;
            }
            Err(Refusal::File(why)) => refused.push(format!("{} ({why})", file.path)),
        }
    }
    let bytes: u64 = kept.outputs.iter().map(|o| o.size).sum();
    let n = kept.outputs.len();
    let files = if n == 1 { "file" } else { "files" };
    let mut summary = format!("outputs: kept {n} {files} ({bytes} bytes)");
    if !refused.is_empty() {
        let list = corral_proto::not_kept_list(&refused);
        summary.push_str(&format!("; not kept: {list}"));
        kept.not_kept = Some(list);
    }
    kept.summary = Some(summary);
    kept
}

/// Why a file was not kept.
enum Refusal {
    /// This file: it changed while being read, or the master could not be reached in time.
    File(String),
    /// The cluster's output store has no room: no later file will fit either.
    StoreFull(String),
}

/// Uploads one file, retrying while the master cannot be reached.
async fn upload_patiently(node: &Node, file: &OutputFile) -> Result<Digest, Refusal> {
    let digest = digest_of(&file.host_path)
        .await
        .map_err(|e| Refusal::File(format!("unreadable: {e}")))?;
    let deadline = tokio::time::Instant::now() + UPLOAD_PATIENCE;
    let mut backoff = Duration::from_millis(100);
    loop {
        let failure = match node.master_channel() {
            None => "no master connected".to_owned(),
            Some(channel) => match upload(channel, file, digest).await {
                Ok(()) => return Ok(digest),
                Err(status) => match status.code() {
                    tonic::Code::ResourceExhausted => {
                        return Err(Refusal::StoreFull(status.message().to_owned()));
                    }
                    tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Aborted => status.message().to_owned(),
                    _ => return Err(Refusal::File(status.message().to_owned())),
                },
            },
        };
        if tokio::time::Instant::now() + backoff > deadline {
            return Err(Refusal::File(format!(
                "the master could not take it within {UPLOAD_PATIENCE:?}: {failure}"
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The sha256 of a file, read in chunks.
async fn digest_of(path: &Path) -> std::io::Result<Digest> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MODULE_CHUNK_BYTES];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(Digest::from_bytes(hasher.finalize().into()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Streams one file to the master, announcing its digest and size first.
async fn upload(channel: Conn, file: &OutputFile, digest: Digest) -> Result<(), tonic::Status> {
    let mut reader = tokio::fs::File::open(&file.host_path)
        .await
        .map_err(|e| tonic::Status::failed_precondition(format!("unreadable: {e}")))?;
    let (tx, rx) = mpsc::channel(2);
    let size = file.size;
    let send = async move {
        let mut first = true;
        loop {
            let mut buf = vec![0u8; MODULE_CHUNK_BYTES];
            let mut filled = 0;
            while filled < buf.len() {
                match reader.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    // The master sees a short stream, whose digest it refuses.
                    Err(_) => return,
                }
            }
            if filled == 0 && !first {
                return;
            }
            buf.truncate(filled);
            let chunk = v1::OutputChunk {
                digest: if first {
                    digest.to_string()
                } else {
                    String::new()
                },
                total_size: if first { size } else { 0 },
                data: buf.into(),
            };
            first = false;
            if tx.send(chunk).await.is_err() || filled < MODULE_CHUNK_BYTES {
                return;
            }
        }
    };
    tokio::spawn(send);
    limits::agent_link_client(channel)
        .upload_output(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map(|_| ())
}

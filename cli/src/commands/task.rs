//! `corral task outputs`: the files a task left in its outputs folder, as the master keeps
//! them (Operator.ListTaskOutputs), and downloading them (Operator.FetchArtifact), each
//! checked against its digest before it is put in place.

use std::path::{Component, Path};

use anyhow::Context as _;
use corral_proto::v1;
use corral_types::{Digest, TaskOutput};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::cli::{OutputFormat, TaskOutputsArgs};
use crate::client::{self, OperatorClient};
use crate::commands::Exit;
use crate::output;
use crate::parse::show_bytes;

pub(super) async fn outputs(args: TaskOutputsArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let listed = list(&mut client, &args.task, args.framework.as_deref()).await?;
    let outputs = parse_outputs(&listed)?;
    if let Some(dir) = &args.into {
        let bytes = download_all(&mut client, &outputs, dir).await?;
        eprintln!(
            "wrote {} {} ({}) into {}",
            outputs.len(),
            if outputs.len() == 1 { "file" } else { "files" },
            show_bytes(bytes),
            dir.display()
        );
        return Ok(0);
    }
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => output::print_doc(
            args.output,
            &json!({
                "task_id": listed.task_id,
                "framework_id": listed.framework_id,
                "agent_id": listed.agent_id,
                "state": output::task_state(listed.state),
                "reason": output::reason(listed.reason),
                "finished_millis": listed.finished_millis,
                "outputs": outputs.iter().map(|o| json!({
                    "path": o.path,
                    "size": o.size,
                    "digest": o.digest.to_string(),
                })).collect::<Vec<_>>(),
                "not_kept": (!listed.outputs_not_kept.is_empty()).then_some(&listed.outputs_not_kept),
            }),
        )?,
        OutputFormat::Table | OutputFormat::Wide => {
            let mut table = output::table(&["PATH", "SIZE", "DIGEST"]);
            for o in &outputs {
                table.add_row(vec![
                    o.path.clone(),
                    show_bytes(o.size),
                    o.digest.to_string(),
                ]);
            }
            output::print_listing(&table, "no outputs");
            if !listed.outputs_not_kept.is_empty() {
                eprintln!("not kept: {}", listed.outputs_not_kept);
            }
        }
    }
    Ok(0)
}

/// The task's outputs as the master lists them.
async fn list(
    client: &mut OperatorClient,
    task: &str,
    framework: Option<&str>,
) -> anyhow::Result<v1::ListTaskOutputsResponse> {
    client
        .list_task_outputs(v1::ListTaskOutputsRequest {
            task_id: task.to_owned(),
            framework_id: framework.map(str::to_owned),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| match s.code() {
            // The master's NOT_FOUND cannot say which: each reads the same to a caller.
            tonic::Code::NotFound => Exit::invalid(format!(
                "task {task} has no outputs listed: it left none in its outputs folder, it is \
                 not known, or its outputs were dropped to make room in the cluster's output store"
            ))
            .into(),
            _ => client::refused(&format!("listing the outputs of task {task}"), &s),
        })
}

/// The listing's outputs, each checked (a relative path that stays inside, a digest).
fn parse_outputs(listed: &v1::ListTaskOutputsResponse) -> anyhow::Result<Vec<TaskOutput>> {
    listed
        .outputs
        .iter()
        .map(|o| {
            TaskOutput::try_from(o)
                .with_context(|| format!("the master listed an invalid output {:?}", o.path))
        })
        .collect()
}

/// Downloads every output into `dir` (made if missing); returns the bytes written.
pub(crate) async fn download_all(
    client: &mut OperatorClient,
    outputs: &[TaskOutput],
    dir: &Path,
) -> anyhow::Result<u64> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Exit::invalid(format!("cannot create {}: {e}", dir.display())))?;
    let mut total = 0;
    for o in outputs {
        download(client, o, dir).await?;
        total += o.size;
    }
    Ok(total)
}

/// Downloads one output to `dir/<path>` through a temporary file, renamed into place only
/// once its digest matches.
async fn download(
    client: &mut OperatorClient,
    output: &TaskOutput,
    dir: &Path,
) -> anyhow::Result<()> {
    let relative = Path::new(&output.path);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        anyhow::bail!("output path {:?} leaves the directory", output.path);
    }
    let target = dir.join(relative);
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let temp = target.with_file_name(format!(
        ".{}.part",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = fetch_into(client, &output.digest, &temp).await;
    let digest = match result {
        Ok(digest) => digest,
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
    };
    if digest != output.digest {
        let _ = tokio::fs::remove_file(&temp).await;
        anyhow::bail!(
            "{}: the master sent {digest}, not {}",
            output.path,
            output.digest
        );
    }
    tokio::fs::rename(&temp, &target)
        .await
        .with_context(|| format!("writing {}", target.display()))
}

/// Streams artifact `digest` into `path`; returns the digest of what arrived.
async fn fetch_into(
    client: &mut OperatorClient,
    digest: &Digest,
    path: &Path,
) -> anyhow::Result<Digest> {
    let mut stream = client
        .fetch_artifact(v1::FetchModuleRequest {
            digest: digest.to_string(),
            offset: 0,
        })
        .await
        .map_err(|s| client::refused(&format!("fetching {digest}"), &s))?
        .into_inner();
    let mut file = tokio::fs::File::create(path)
        .await
        .with_context(|| format!("creating {}", path.display()))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| client::refused(&format!("fetching {digest}"), &s))?
    {
        hasher.update(&chunk.data);
        file.write_all(&chunk.data)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.sync_all().await?;
    Ok(Digest::from_bytes(hasher.finalize().into()))
}

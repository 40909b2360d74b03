//! A task's sandbox files over HTTP: what `Operator.ListFiles` and `Operator.ReadFile` answer
//! (proxied to the agent that ran the task), as JSON, as the file's bytes, or followed as
//! server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use corral_proto::limits::MAX_READ_FILE_BYTES;
use corral_proto::v1::{self, operator_server::Operator};
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::Request;

use super::{ApiError, ApiResult, id, params, query_of};
use crate::auth::Caller;
use crate::http::HttpState;

/// Bytes a read returns when it names no length.
const DEFAULT_READ: u64 = 64 << 10;

/// How often a followed file is read again while nothing new came (files have no events).
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// The query of a file endpoint.
struct FileQuery {
    caller: Caller,
    task: String,
    path: Option<String>,
    offset: u64,
    length: Option<u64>,
    framework: Option<String>,
}

fn file_query(
    caller: Caller,
    endpoint: &str,
    task: String,
    q: Vec<(String, String)>,
) -> Result<FileQuery, ApiError> {
    id::<corral_types::TaskId>("task", &task)?;
    let mut query = FileQuery {
        caller,
        task,
        path: None,
        offset: 0,
        length: None,
        framework: None,
    };
    let number = |name: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("{name} {v:?}: a number of bytes")))
    };
    for (name, value) in params(q, query_of(endpoint))? {
        match name.as_str() {
            "path" => query.path = Some(value),
            "offset" => query.offset = number("offset", &value)?,
            "length" => query.length = Some(number("length", &value)?),
            "framework" => {
                id::<corral_types::FrameworkId>("framework", &value)?;
                query.framework = Some(value);
            }
            _ => {}
        }
    }
    Ok(query)
}

/// A request to the Operator service on behalf of `caller`, who passed the gate here.
fn as_caller<T>(caller: &Caller, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(caller.clone());
    request
}

fn required(path: Option<String>) -> Result<String, ApiError> {
    path.filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("path is required (stdout, stderr, outputs/...)"))
}

pub(super) async fn list(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(task): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let q = file_query(caller, "/api/v1/tasks/{id}/files", task, q)?;
    let listing = state
        .operator
        .list_files(as_caller(
            &q.caller,
            v1::ListFilesRequest {
                task_id: q.task,
                path: q.path.unwrap_or_default(),
                framework_id: q.framework,
            },
        ))
        .await?
        .into_inner();
    Ok(axum::Json(json!({
        "files": listing.files.iter().map(|f| json!({
            "path": f.path,
            "size": f.size,
            "is_dir": f.is_dir,
            "modified_millis": f.modified_millis,
            "symlink_target": f.symlink_target,
        })).collect::<Vec<_>>(),
    })))
}

async fn read_file(
    state: &HttpState,
    q: &FileQuery,
    path: &str,
    offset: u64,
    length: u64,
) -> Result<v1::ReadFileResponse, ApiError> {
    Ok(state
        .operator
        .read_file(as_caller(
            &q.caller,
            v1::ReadFileRequest {
                task_id: q.task.clone(),
                path: path.to_owned(),
                offset,
                length,
                framework_id: q.framework.clone(),
            },
        ))
        .await?
        .into_inner())
}

pub(super) async fn read(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(task): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let q = file_query(caller, "/api/v1/tasks/{id}/files/read", task, q)?;
    let path = required(q.path.clone())?;
    let length = q.length.unwrap_or(DEFAULT_READ).min(MAX_READ_FILE_BYTES);
    let read = read_file(&state, &q, &path, q.offset, length).await?;
    // Text for people and the UI; the bytes themselves are at .../download.
    Ok(axum::Json(json!({
        "path": path,
        "data": String::from_utf8_lossy(&read.data),
        "offset": read.offset,
        "next_offset": read.offset + read.data.len() as u64,
        "size": read.size,
        "complete": read.complete,
    })))
}

pub(super) async fn download(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(task): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let q = file_query(caller, "/api/v1/tasks/{id}/files/download", task, q)?;
    let path = required(q.path.clone())?;
    // Read whole: a sandbox file is bounded by the task's disk limit.
    let mut bytes = Vec::new();
    loop {
        let read = read_file(&state, &q, &path, bytes.len() as u64, MAX_READ_FILE_BYTES).await?;
        let done = read.data.is_empty() || bytes.len() as u64 + read.data.len() as u64 >= read.size;
        bytes.extend_from_slice(&read.data);
        if done {
            break;
        }
    }
    let name = path.rsplit('/').next().unwrap_or("file").replace('"', "");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Follows a file: its text from `offset` as `data` events (`{"offset", "data"}`), read again
/// every [`FOLLOW_INTERVAL`] while nothing new came, then `complete` once the task has ended
/// and the file is read to its end. A read that fails ends the stream with an `error` event.
pub(super) async fn follow(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(task): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q = file_query(caller, "/api/v1/tasks/{id}/files/follow", task, q)?;
    let path = required(q.path.clone())?;
    // The first read answers now: an unknown task or file is a 4xx, not an empty stream.
    let first = read_file(&state, &q, &path, q.offset, MAX_READ_FILE_BYTES).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let mut read = first;
        // Until the client goes away (noticed between reads, data or not).
        while !tx.is_closed() {
            let got = read.data.len() as u64;
            if got > 0 {
                let doc =
                    json!({ "offset": read.offset, "data": String::from_utf8_lossy(&read.data) });
                if tx
                    .send(Event::default().event("data").data(doc.to_string()))
                    .await
                    .is_err()
                {
                    return; // The client went away.
                }
            }
            let offset = read.offset + got;
            if read.complete && offset >= read.size {
                let _ = tx.send(Event::default().event("complete").data("{}")).await;
                return;
            }
            if got == 0 {
                tokio::time::sleep(FOLLOW_INTERVAL).await;
            }
            read = match read_file(&state, &q, &path, offset, MAX_READ_FILE_BYTES).await {
                Ok(read) => read,
                Err(e) => {
                    let doc = json!({ "message": e.message });
                    let _ = tx
                        .send(Event::default().event("error").data(doc.to_string()))
                        .await;
                    return;
                }
            };
        }
    });
    Ok(Sse::new(
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok),
    ))
}

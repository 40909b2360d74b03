//! Connections to the master: the leader, found from the list of masters, called with the
//! user's token.

use std::sync::OnceLock;

use anyhow::Context;
use corral_proto::auth::{Conn, Token};
use corral_proto::{limits, v1};
use corral_types::Digest;

use crate::commands::Exit;

/// An Operator client.
pub(crate) type OperatorClient = v1::operator_client::OperatorClient<Conn>;
/// A Jobs client.
pub(crate) type JobsClient = v1::jobs_client::JobsClient<Conn>;

/// The token this process presents, chosen once at start (see `commands::token`).
static TOKEN: OnceLock<Token> = OnceLock::new();

/// Sets the token every connection of this process presents; the first call wins.
pub(crate) fn set_token(token: Token) {
    let _ = TOKEN.set(token);
}

/// The token this process presents (none until [`set_token`]).
pub(crate) fn token() -> Token {
    TOKEN.get().cloned().unwrap_or_default()
}

fn uri(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// Connects to the leading master: the masters in `masters` are tried in order, and a
/// standby's answer naming the leader (`corral-leader`) is followed. Failing all exits with
/// [`Exit::UNREACHABLE`]: the user named the wrong address or nothing runs there.
pub(crate) async fn operator(masters: &[String]) -> anyhow::Result<OperatorClient> {
    leader(masters).await.map(limits::operator_client)
}

/// The master's operator event stream from now on (its SUBSCRIBED state kept small: the
/// callers list what they need themselves).
pub(crate) async fn events(
    client: &mut OperatorClient,
) -> anyhow::Result<tonic::Streaming<v1::OperatorEvent>> {
    Ok(client
        .subscribe(v1::SubscribeEventsRequest { max_tasks: 1 })
        .await?
        .into_inner())
}

/// A client of the built-in jobs framework's Jobs service: on the leading master (as
/// [`operator`]), or where the framework says it serves when it runs as a process of its
/// own (`corral frameworks run`).
pub(crate) async fn jobs(masters: &[String]) -> anyhow::Result<JobsClient> {
    use corral_proto::jobs::{JOBS_ADDRESS_LABEL, JobsAt, jobs_at};
    let channel = leader(masters).await?;
    let frameworks = limits::operator_client(channel.clone())
        .list_frameworks(v1::ListFrameworksRequest::default())
        .await
        .map_err(|s| refused("looking up the jobs framework", &s))?
        .into_inner()
        .frameworks;
    let JobsAt::Address(address) = jobs_at(&frameworks) else {
        return Ok(limits::jobs_client(channel));
    };
    // A framework names that address itself: it is not sent the user's token.
    let channel = match limits::endpoint(uri(&address)) {
        Ok(endpoint) => endpoint.connect().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
    .map_err(|e| {
        Exit::unreachable(format!(
            "the jobs framework serves at {address} (its {JOBS_ADDRESS_LABEL} label), which              does not answer: {e}; is `corral frameworks run` running?"
        ))
    })?;
    Ok(limits::jobs_client(Token::none().on(channel)))
}

/// A channel to the leading master.
async fn leader(masters: &[String]) -> anyhow::Result<Conn> {
    let mut last = None;
    for addr in masters {
        let mut candidate = addr.clone();
        // A standby names the leader; follow a few hints, not a loop.
        for _ in 0..3 {
            match leader_at(&candidate).await {
                Ok(Leading::Yes(channel)) => return Ok(channel),
                Ok(Leading::No { leader }) => candidate = leader,
                Ok(Leading::RefusedToken(message)) => {
                    return Err(Exit::invalid(format!("{candidate}: {message}")).into());
                }
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
    }
    Err(Exit::unreachable(format!(
        "cannot reach a master at {} ({}); start one with `corral master` or `corral dev`, or set --master / CORRAL_MASTER",
        masters.join(","),
        last.unwrap_or_default()
    ))
    .into())
}

enum Leading {
    Yes(Conn),
    No {
        leader: String,
    },
    /// The master leads, and does not accept this process's token.
    RefusedToken(String),
}

/// Whether the master at `addr` leads, asked with a small call (standbys refuse every call
/// with the leader's address).
async fn leader_at(addr: &str) -> Result<Leading, String> {
    let endpoint = limits::endpoint(uri(addr)).map_err(|e| format!("{addr}: {e}"))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let channel = token().on(channel);
    let mut client = limits::operator_client(channel.clone());
    match client.get_roles(v1::GetRolesRequest {}).await {
        Ok(_) => Ok(Leading::Yes(channel)),
        // It leads (a standby redirects before deciding), and this principal may not list
        // roles: other calls may still be allowed.
        Err(status) if status.code() == tonic::Code::PermissionDenied => Ok(Leading::Yes(channel)),
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            Ok(Leading::RefusedToken(status.message().to_owned()))
        }
        Err(status) => match corral_proto::status::leader_hint(&status) {
            Some(leader) if leader != addr => Ok(Leading::No {
                leader: leader.to_owned(),
            }),
            _ => Err(format!("{addr}: {}", status.message())),
        },
    }
}

/// A call the master refused, as an error that says what was being done and quotes the
/// master. Exit 2 when the request itself is at fault (invalid, unknown, refused by policy):
/// retrying it unchanged cannot work. Exit 1 otherwise (the master failed or went away).
pub(crate) fn refused(doing: &str, status: &tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let message = format!("{doing}: {}", status.message());
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::Unauthenticated
        | Code::PermissionDenied => Exit::invalid(message).into(),
        // The one service a master may leave out: the jobs framework's.
        Code::Unimplemented => Exit::invalid(format!(
            "{doing}: the master does not serve this; a master started with \
             --no-builtin-frameworks serves no jobs until `corral frameworks run` runs"
        ))
        .into(),
        _ => anyhow::anyhow!(message),
    }
}

/// Uploads a module, with a progress bar when it is big; returns its digest.
pub(crate) async fn upload(
    client: &mut OperatorClient,
    bytes: Vec<u8>,
    show_progress: bool,
) -> anyhow::Result<Digest> {
    let total = bytes.len() as u64;
    let bar = (show_progress && total > limits::MODULE_CHUNK_BYTES as u64).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let chunks = limits::module_chunks(&bytes);
    let progress = bar.clone();
    let stream = tokio_stream::iter(chunks.into_iter().inspect(move |c| {
        if let Some(bar) = &progress {
            bar.inc(c.data.len() as u64);
        }
    }));
    let response = client.upload_module(stream).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let response = response
        .map_err(|s| Exit::invalid(format!("the master refused the module: {}", s.message())))?
        .into_inner();
    response.digest.parse().with_context(|| {
        format!(
            "the master answered an invalid digest {:?}",
            response.digest
        )
    })
}

//! Connections to the master: the leader, found from the list of masters, called with the
//! user's token.

use std::sync::OnceLock;

use anyhow::Context;
use corral_proto::auth::Conn;
use corral_proto::status::{describe, with_causes};
use corral_proto::tls::Dialer;
use corral_proto::{limits, v1};
use corral_types::Digest;

use crate::commands::Exit;

/// An Operator client.
pub(crate) type OperatorClient = v1::operator_client::OperatorClient<Conn>;
/// A Jobs client.
pub(crate) type JobsClient = v1::jobs_client::JobsClient<Conn>;

/// How this process reaches masters (TLS and token), chosen once at start (see
/// `commands::dispatch`).
static DIALER: OnceLock<Dialer> = OnceLock::new();

/// Sets how every connection of this process is made; the first call wins.
pub(crate) fn set_dialer(dialer: Dialer) {
    let _ = DIALER.set(dialer);
}

/// How this process reaches masters (plaintext without a token until [`set_dialer`]).
pub(crate) fn dialer() -> Dialer {
    DIALER.get().cloned().unwrap_or_default()
}

/// Connects to the leading master: the masters in `masters` are tried in order, and a
/// standby's answer naming the leader (`corral-leader`) is followed. Failing all exits with
/// [`Exit::UNREACHABLE`]: the user named the wrong address or nothing runs there.
pub(crate) async fn operator(masters: &[String]) -> anyhow::Result<OperatorClient> {
    operator_as(&dialer(), masters).await
}

/// [`operator`], reaching the masters with `dialer`.
pub(crate) async fn operator_as(
    dialer: &Dialer,
    masters: &[String],
) -> anyhow::Result<OperatorClient> {
    leader(dialer, masters).await.map(limits::operator_client)
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
    let channel = leader(&dialer(), masters).await?;
    let listing = limits::operator_client(channel.clone())
        .list_frameworks(v1::ListFrameworksRequest::default())
        .await
        .map_err(|s| refused("looking up the jobs framework", &s))?
        .into_inner();
    let JobsAt::Address(address) = jobs_at(&listing) else {
        return Ok(limits::jobs_client(channel));
    };
    // The master names it only if its principal is trusted to act for others: it gets the
    // user's token, and asks the masters what the user may do.
    let conn = dialer().connect(&address).await.map_err(|e| {
        Exit::unreachable(format!(
            "the jobs framework serves at {address} (its {JOBS_ADDRESS_LABEL} label), which \
                 does not answer: {e}; is `corral frameworks run` running?"
        ))
    })?;
    Ok(limits::jobs_client(conn))
}

/// A channel to the leading master.
async fn leader(dialer: &Dialer, masters: &[String]) -> anyhow::Result<Conn> {
    let mut last = None;
    for addr in masters {
        let mut candidate = addr.clone();
        // A standby names the leader; follow a few hints, not a loop.
        for _ in 0..3 {
            match leader_at(dialer, &candidate).await {
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
async fn leader_at(dialer: &Dialer, addr: &str) -> Result<Leading, String> {
    let channel = dialer
        .connect(addr)
        .await
        .map_err(|e| connect_failed(dialer, addr, &e))?;
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
            // A plaintext client's HTTP/2 preface is not a TLS handshake: the connection
            // opens, and the first call fails with no more than the connection's end (which
            // of these depends on who notices first).
            _ if !dialer.uses_tls() && ended_connection(&status) => Err(format!(
                "{addr}: {}; if the master serves TLS, give its CA with --ca-cert or CORRAL_CA_CERT",
                describe(&status)
            )),
            _ => Err(format!("{addr}: {}", status.message())),
        },
    }
}

/// Whether a call failed because the connection ended under it (rather than by the
/// master's answer).
fn ended_connection(status: &tonic::Status) -> bool {
    let message = describe(status);
    [
        "transport error",
        "h2 protocol error",
        "operation was canceled",
        "connection reset",
        "connection closed",
        "unexpected end of file",
        "broken pipe",
    ]
    .iter()
    .any(|end| message.contains(end))
}

/// A connection failure, with a hint when TLS was spoken to a plaintext master.
fn connect_failed(dialer: &Dialer, addr: &str, e: &corral_proto::tls::TlsError) -> String {
    // A TLS mismatch (a plaintext master, an unknown CA) says why only deep in the chain.
    let text = with_causes(e.to_string(), std::error::Error::source(e));
    if dialer.uses_tls() && text.contains("InvalidContentType") {
        format!(
            "{addr}: {text}; the master does not serve TLS: leave out --ca-cert and CORRAL_CA_CERT"
        )
    } else {
        format!("{addr}: {text}")
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

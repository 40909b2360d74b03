//! One module per command; [`dispatch`] picks it.

mod agent;
pub(crate) use agent::compile_worker;
mod bench;
mod builtin;
mod dev;
mod follow;
mod frameworks;
mod job;
mod kill;
mod listings;
mod login;
mod logs;
mod master;
mod new;
mod ps;
mod quota;
mod reserve;
mod roles;
pub(crate) mod run;
mod shipped;
mod task;
pub(crate) mod tls;
mod wasm_file;

use std::fmt;

use crate::cli::{
    AgentCmd, AgentCommand, Cli, Command, FrameworksCmd, FrameworksCommand, JobCommand, LogArgs,
    LogFormat, NewCommand, ServeTls, TaskCommand, TlsCommand, TokenCommand,
};

/// An error with the process exit code it maps to: 2 for invalid input (a missing file, an
/// invalid module, a refused request: as clap's usage errors), [`Exit::UNREACHABLE`] when no
/// master answers, 1 for other failures.
#[derive(Debug)]
pub(crate) struct Exit {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Exit {
    /// The exit code when the cluster cannot be reached: sysexits' `EX_UNAVAILABLE`, so a
    /// script can tell "try again later" from "fix the command".
    pub(crate) const UNREACHABLE: u8 = 69;

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        Self {
            code: Self::UNREACHABLE,
            message: message.into(),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Runs the command; returns the process exit code.
pub(crate) async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let token_file = cli.token_file.as_deref();
    let tls = cli
        .ca_cert
        .as_deref()
        .map(corral_proto::tls::Tls::trusting)
        .transpose()
        .map_err(|e| Exit::invalid(format!("--ca-cert: {e}")))?;
    let token = match &cli.command {
        Command::Login(_) | Command::Logout | Command::Token(_) | Command::Tls(_) => {
            corral_proto::auth::Token::none()
        }
        _ => login::resolve(token_file)?,
    };
    crate::client::set_dialer(corral_proto::tls::Dialer::new(tls, token));
    match cli.command {
        Command::Login(args) => login::login(args, token_file).await,
        Command::Logout => login::logout(),
        Command::Token(TokenCommand::New(args)) => login::token_new(&args),
        Command::Tls(TlsCommand::Init(args)) => tls::init(&args),
        Command::Master(args) => master::run(args).await,
        Command::Agent(AgentCmd { command: None, run }) => agent::run(run).await,
        Command::Agent(AgentCmd {
            command: Some(AgentCommand::Drain(args)),
            ..
        }) => agent::drain(args).await,
        Command::Agent(AgentCmd {
            command: Some(AgentCommand::Reactivate(args)),
            ..
        }) => agent::reactivate(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Ps(args) => ps::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Kill(args) => kill::run(args).await,
        Command::Task(TaskCommand::Outputs(args)) => task::outputs(args).await,
        Command::New(NewCommand::Task(args)) => new::task(&args),
        Command::Job(JobCommand::Validate(args)) => job::validate(&args),
        Command::Job(JobCommand::Submit(args)) => job::submit(args).await,
        Command::Job(JobCommand::Update(args)) => job::update(args).await,
        Command::Job(JobCommand::Ls(args)) => job::list(args).await,
        Command::Job(JobCommand::Status(args)) => job::status(args).await,
        Command::Job(JobCommand::Kill(args)) => job::kill(args).await,
        Command::Job(JobCommand::Scale(args)) => job::scale(args).await,
        Command::Job(JobCommand::Logs(args)) => job::logs(args).await,
        Command::Job(JobCommand::History(args)) => job::history(args).await,
        Command::Job(JobCommand::RunNow(args)) => job::cron_call(args, job::CronCall::RunNow).await,
        Command::Job(JobCommand::Suspend(args)) => {
            job::cron_call(args, job::CronCall::Suspend).await
        }
        Command::Job(JobCommand::Resume(args)) => job::cron_call(args, job::CronCall::Resume).await,
        Command::Agents(args) => listings::agents(args).await,
        Command::Frameworks(FrameworksCmd {
            command: None,
            list,
        }) => listings::frameworks(list).await,
        Command::Frameworks(FrameworksCmd {
            command: Some(FrameworksCommand::Run(args)),
            ..
        }) => frameworks::run(args).await,
        Command::Reserve(args) => reserve::reserve(args).await,
        Command::Unreserve(args) => reserve::unreserve(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Roles(args) => roles::roles(args).await,
        Command::Modules(args) => listings::modules(args).await,
        Command::Weight(args) => roles::weight(args).await,
        Command::CompileWorker(args) => Ok(compile_worker(&args)),
        Command::Quota(args) => quota::run(args).await,
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "corral", &mut std::io::stdout());
            Ok(0)
        }
    }
}

/// Logs to stderr through tracing: what `--log-level` (else `RUST_LOG`, else `info`) lets
/// through, as text or JSON lines.
pub(crate) fn init_logging(args: &LogArgs) -> anyhow::Result<()> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_logging_to(args, std::io::stderr, ansi)
}

/// [`init_logging`] to another writer; colours only with `ansi` (a terminal).
pub(crate) fn init_logging_to<W>(args: &LogArgs, writer: W, ansi: bool) -> anyhow::Result<()>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = match &args.log_level {
        Some(level) => tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| Exit::invalid(format!("--log-level {level:?}: {e}")))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    // A subscriber set already (a test running several commands) is kept.
    let _ = match args.log_format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
    Ok(())
}

/// Waits for Ctrl-C (or SIGTERM on Unix).
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The TLS a server (`corral master`, `corral agent`) serves with: its certificate, and the
/// CA from --ca-cert. Plaintext on an address other hosts reach is refused unless
/// `--insecure`, and warned about with it.
pub(crate) fn serve_tls(
    args: &ServeTls,
    listen: std::net::SocketAddr,
) -> anyhow::Result<Option<corral_proto::tls::Tls>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        if !listen.ip().is_loopback() {
            if !args.insecure {
                return Err(Exit::invalid(format!(
                    "refusing to serve plaintext on {listen}, which other hosts reach: give \
                     --tls-cert, --tls-key and --ca-cert (`corral tls init` makes them), or \
                     --insecure"
                ))
                .into());
            }
            tracing::warn!(%listen, "serving plaintext (--insecure): tokens and tasks' data cross the network in the clear");
        }
        return Ok(None);
    };
    let tls = crate::client::dialer()
        .tls()
        .cloned()
        .ok_or_else(|| Exit::invalid("--tls-cert needs --ca-cert"))?
        .with_identity(cert, key)
        .map_err(|e| Exit::invalid(e.to_string()))?;
    Ok(Some(tls))
}

//! `corral frameworks run`: the built-in jobs framework as a process of its own, for operators
//! who keep frameworks apart from the masters. It persists in the masters' framework store
//! exactly as inside a master, serves the Jobs service on its own port, and says so in its
//! framework's [`JOBS_ADDRESS_LABEL`] label, where `corral job ...` looks. Like a master it
//! serves TLS when given a certificate, and plaintext only on loopback unless `--insecure`.
//! Each call is decided by the masters, asked with the caller's own token
//! (`Operator.DecideJobs`): the masters' credentials and ACLs hold on this port as on theirs.
//! Its jobs' tasks run for their owners, so its principal needs `run_tasks_for` on them.

use anyhow::Context;
use corral_frameworks::jobs::{
    JOBS_ADDRESS_LABEL, JobsFramework, MasterDecisions, jobs_service_asking,
};
use corral_proto::limits;

use crate::cli::FrameworksRunArgs;

pub(super) async fn run(args: FrameworksRunArgs) -> anyhow::Result<u8> {
    super::init_logging(&args.log)?;
    let tls = super::serve_tls(&args.tls, args.listen)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    let advertise = args
        .advertise
        .unwrap_or_else(|| super::builtin::dialable(local).to_string());
    let jobs = JobsFramework::new();
    jobs.serve_at(advertise.clone());
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut builder = limits::server_builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls.server_config(false)?)
            .context("configuring TLS")?;
    }
    let server = builder
        .add_service(jobs_service_asking(
            jobs.clone(),
            MasterDecisions::new(
                args.master.master.clone(),
                crate::client::dialer().tls().cloned(),
            ),
        ))
        .serve_with_incoming_shutdown(limits::incoming(listener), async {
            let _ = server_stopped.await;
        });
    let mut server = tokio::spawn(server);
    let frameworks = super::builtin::run_alone(jobs, args.master.master.clone());
    tracing::info!(
        address = %local,
        %advertise,
        masters = ?args.master.master,
        label = JOBS_ADDRESS_LABEL,
        "jobs framework running; Ctrl-C stops it"
    );
    let failed = tokio::select! {
        () = super::shutdown_signal() => None,
        served = &mut server => Some(served),
    };
    tracing::info!("shutting down");
    frameworks.shutdown().await;
    if let Some(served) = failed {
        served
            .context("the Jobs service failed")?
            .context("the Jobs service failed")?;
        return Ok(1);
    }
    let _ = server_stop.send(());
    let _ = server.await;
    Ok(0)
}

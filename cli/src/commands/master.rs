//! `corral master`.

use corral_master::{AuthConfig, EtcdAccess, EtcdUser, MasterConfig, StoreConfig};
use corral_proto::tls::Tls;

use super::Exit;

use crate::cli::MasterArgs;

pub(super) async fn run(args: MasterArgs) -> anyhow::Result<u8> {
    super::init_logging(&args.log)?;
    let mut config = MasterConfig::new(args.listen, &args.work_dir);
    config.etcd = EtcdAccess {
        tls: etcd_tls(&args)?,
        user: etcd_user(&args)?,
    };
    config.store = args.store;
    config.advertise_address = args.advertise;
    config.agent_reregister_timeout = args.agent_reregister_timeout;
    config.leader_lease = args.leader_lease;
    // Bounded by the argument's parser, so it fits.
    config.offer_timeout = args.offer_timeout;
    config.stream_queue = usize::try_from(args.stream_queue).unwrap_or(usize::MAX);
    config.max_output_bytes = args.output_store_cap;
    config.auth = AuthConfig {
        credentials: args.credentials,
        acls: args.acls,
        audit_log: args.audit_log,
        rate_limits: args.rate_limits,
    };
    config.token = crate::client::dialer().token().clone();
    config.tls = super::serve_tls(&args.tls, args.listen)?;
    if let Some(timeout) = args.agent_timeout {
        config.agent_timeout = timeout;
    }
    let (master, builtin) =
        super::builtin::start_master(config, !args.no_builtin_frameworks).await?;
    tracing::info!(address = %master.local_addr(), work_dir = %args.work_dir.display(), "master running; Ctrl-C stops it");
    tokio::select! {
        () = super::shutdown_signal() => {}
        () = reload_on_hangup(&master) => {}
    }
    tracing::info!("shutting down");
    builtin.shutdown().await;
    master.shutdown().await;
    Ok(0)
}

/// TLS to etcd, from `--etcd-ca-cert` (and `--etcd-cert`, `--etcd-key`).
fn etcd_tls(args: &MasterArgs) -> anyhow::Result<Option<Tls>> {
    let Some(ca) = &args.etcd_ca_cert else {
        return Ok(None);
    };
    if !matches!(args.store, StoreConfig::Etcd { .. }) {
        return Err(Exit::invalid("--etcd-ca-cert needs --store etcd://...").into());
    }
    let tls = Tls::trusting(ca).map_err(|e| Exit::invalid(e.to_string()))?;
    let tls = match (&args.etcd_cert, &args.etcd_key) {
        (Some(cert), Some(key)) => tls
            .with_identity(cert, key)
            .map_err(|e| Exit::invalid(e.to_string()))?,
        _ => tls,
    };
    Ok(Some(tls))
}

/// The etcd user of `--etcd-user`, with the password its file holds.
fn etcd_user(args: &MasterArgs) -> anyhow::Result<Option<EtcdUser>> {
    let (Some(name), Some(file)) = (&args.etcd_user, &args.etcd_password_file) else {
        return Ok(None);
    };
    if !matches!(args.store, StoreConfig::Etcd { .. }) {
        return Err(Exit::invalid("--etcd-user needs --store etcd://...").into());
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| Exit::invalid(format!("--etcd-password-file {}: {e}", file.display())))?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        return Err(Exit::invalid(format!(
            "--etcd-password-file {}: the first line is empty",
            file.display()
        ))
        .into());
    }
    Ok(Some(EtcdUser {
        name: name.clone(),
        password,
    }))
}

/// Reads the credentials, ACLs and rate limits again on every SIGHUP; never returns (unless SIGHUP cannot
/// be watched, which is logged).
async fn reload_on_hangup(master: &corral_master::Master) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGHUP: credentials are not reloaded");
            return std::future::pending().await;
        }
    };
    while hangups.recv().await.is_some() {
        match master.reload_auth() {
            Ok(tokens) => tracing::info!(tokens, "credentials, ACLs and rate limits reloaded"),
            Err(error) => {
                tracing::error!(%error, "credentials, ACLs and rate limits not reloaded; the previous ones stay")
            }
        }
    }
    std::future::pending().await
}

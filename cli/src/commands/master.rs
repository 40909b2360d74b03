//! `corral master`.

use corral_master::MasterConfig;

use crate::cli::MasterArgs;

pub(super) async fn run(args: MasterArgs) -> anyhow::Result<u8> {
    super::init_logging(&args.log)?;
    let mut config = MasterConfig::new(args.listen, &args.work_dir);
    config.store = args.store;
    config.advertise_address = args.advertise;
    config.agent_reregister_timeout = args.agent_reregister_timeout;
    config.leader_lease = args.leader_lease;
    // Bounded by the argument's parser, so it fits.
    config.offer_timeout = args.offer_timeout;
    config.stream_queue = usize::try_from(args.stream_queue).unwrap_or(usize::MAX);
    config.max_output_bytes = args.output_store_cap;
    if let Some(timeout) = args.agent_timeout {
        config.agent_timeout = timeout;
    }
    let (master, builtin) =
        super::builtin::start_master(config, !args.no_builtin_frameworks).await?;
    tracing::info!(address = %master.local_addr(), work_dir = %args.work_dir.display(), "master running; Ctrl-C stops it");
    super::shutdown_signal().await;
    tracing::info!("shutting down");
    builtin.shutdown().await;
    master.shutdown().await;
    Ok(0)
}

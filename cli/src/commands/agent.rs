//! `corral agent`.

use anyhow::Context;
use corral_agent::node::{Agent, AgentConfig, Recover, ResourceOverrides};

use crate::cli::{AgentArgs, RecoverMode};

pub(super) async fn run(args: AgentArgs) -> anyhow::Result<u8> {
    super::init_logging();
    let mut config = AgentConfig::new(args.master.clone(), &args.work_dir);
    config.listen = args.listen;
    config.attributes = args.attributes;
    let overrides = |r: &crate::parse::ResourceSpec| ResourceOverrides {
        cpus_milli: r.cpus_milli,
        mem_bytes: r.mem_bytes,
        disk_bytes: r.disk_bytes,
    };
    config.resources = args.resources.as_ref().map(overrides);
    config.static_reservations = args
        .reservations
        .iter()
        .map(|(role, r)| (role.clone(), overrides(r)))
        .collect();
    config.max_completed_tasks = args.max_completed_tasks.get();
    config.recover = match args.recover {
        RecoverMode::Strict => Recover::Strict,
        RecoverMode::Cleanup => Recover::Cleanup,
    };
    let agent = Agent::start(config).await.context("starting the agent")?;
    tracing::info!(address = %agent.local_addr(), masters = ?args.master, "agent running; registering with the master");
    tokio::select! {
        id = agent.registered() => tracing::info!(agent_id = %id, "registered"),
        () = super::shutdown_signal() => {
            agent.shutdown().await;
            return Ok(0);
        }
    }
    super::shutdown_signal().await;
    tracing::info!("shutting down");
    agent.shutdown().await;
    Ok(0)
}

//! `corral agent`: run an agent; `corral agent drain` and `reactivate` one (Operator.DrainAgent,
//! ReactivateAgent), as `kubectl drain` and `uncordon`.

use std::time::Duration;

use anyhow::Context;
use corral_agent::node::{Agent, AgentConfig, Recover, ResourceOverrides};
use corral_agent::{CompileBudget, CompileWorker};
use corral_proto::{ProtoEnum, v1};
use corral_types::AgentState;

use crate::cli::{AgentArgs, AgentIdArgs, CompileWorkerArgs, DrainArgs, RecoverMode};
use crate::client;

pub(super) async fn run(args: AgentArgs) -> anyhow::Result<u8> {
    super::init_logging(&args.log)?;
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
    config.token = client::dialer().token().clone();
    config.tls = super::serve_tls(&args.tls, args.listen)?;
    config.master_cert_names = args.master_cert_names.clone();
    config.compile_worker = Some(compile_worker_of(CompileBudget {
        time: args.compile_timeout,
        memory_bytes: args.compile_memory,
    })?);
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

/// This program as an agent's compile worker, held to `budget`.
pub(super) fn compile_worker_of(budget: CompileBudget) -> anyhow::Result<CompileWorker> {
    Ok(CompileWorker {
        program: std::env::current_exe().context("finding this program for compile workers")?,
        args: vec!["compile-worker".into()],
        budget,
    })
}

/// `corral compile-worker`: what an agent starts to compile a module.
pub(crate) fn compile_worker(args: &CompileWorkerArgs) -> u8 {
    let code = corral_agent::compile_worker::serve(
        &args.compatibility,
        args.max_wasm_stack,
        args.memory_bytes,
    );
    u8::try_from(code).unwrap_or(1)
}

pub(super) async fn drain(args: DrainArgs) -> anyhow::Result<u8> {
    let mut operator = client::operator(&args.master.master).await?;
    let grace = args
        .deadline
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    operator
        .drain_agent(v1::DrainAgentRequest {
            agent_id: args.agent.clone(),
            max_grace_period_millis: grace,
            mark_gone: args.mark_gone,
        })
        .await
        .map_err(|s| client::refused(&format!("draining agent {}", args.agent), &s))?;
    let when = match args.deadline {
        Some(d) => format!("may run for {}", humanize(d)),
        None => "are being killed".to_owned(),
    };
    println!(
        "agent {}: draining; it gets no new tasks, and its running tasks {when}",
        args.agent
    );
    if !args.wait {
        return Ok(0);
    }
    // Drained once its tasks have ended (the deadline kills the last ones).
    let patience = args.deadline.unwrap_or_default() + Duration::from_secs(60);
    let until = tokio::time::Instant::now() + patience;
    loop {
        let state = agent_state(&mut operator, &args.agent).await?;
        if matches!(state, AgentState::Drained | AgentState::Gone) {
            println!("agent {}: {state}", args.agent);
            return Ok(0);
        }
        if tokio::time::Instant::now() > until {
            anyhow::bail!(
                "agent {} is still {state} after {}",
                args.agent,
                humanize(patience)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(super) async fn reactivate(args: AgentIdArgs) -> anyhow::Result<u8> {
    let mut operator = client::operator(&args.master.master).await?;
    operator
        .reactivate_agent(v1::ReactivateAgentRequest {
            agent_id: args.agent.clone(),
        })
        .await
        .map_err(|s| client::refused(&format!("reactivating agent {}", args.agent), &s))?;
    println!(
        "agent {}: reactivated; its resources are offered again",
        args.agent
    );
    Ok(0)
}

/// The agent's state as the master has it.
async fn agent_state(
    operator: &mut client::OperatorClient,
    agent: &str,
) -> anyhow::Result<AgentState> {
    let agents = operator
        .list_agents(v1::ListAgentsRequest {})
        .await
        .map_err(|s| client::refused("listing agents", &s))?
        .into_inner()
        .agents;
    let found = agents
        .iter()
        .find(|a| a.id == agent)
        .ok_or_else(|| anyhow::anyhow!("agent {agent} is no longer listed"))?;
    Ok(AgentState::from_proto("state", found.state)?)
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

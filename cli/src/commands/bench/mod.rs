//! `corral bench`: a load generator that is itself a framework on the public Scheduler API.
//!
//! It runs N tiny tasks against a running cluster (`--master`) or an ephemeral one it starts
//! as child processes (one `corral master` and `--agents` `corral agent`s, so each one's
//! memory can be read), either closed-loop (`--concurrency C`: C tasks in flight, a new one
//! submitted as one ends) or open-loop (`--rate R`: tasks submitted at R per second whatever
//! the cluster does, so queueing shows in the latency). `--simulated-agents K` registers K
//! lightweight agents from this process instead (`corral_master::simulated`: heartbeating,
//! finishing every task at once, no Wasm) to load the master alone; like the framework side,
//! they follow the leader across a failover.
//!
//! ```text
//!   generator ──► queue ──► held offers ──ACCEPT(LAUNCH…)──► master ──► agents
//!      ▲                                                                  │
//!      └────── status updates (RUNNING, FINISHED): latencies ◄────────────┘
//! ```
//!
//! Latency is measured from submission (when a task enters the queue) to the framework
//! receiving its RUNNING and its FINISHED update.

mod cluster;
mod load;
mod report;
mod watchers;

use std::time::Duration;

use anyhow::Context;
use corral_master::simulated::SimulatedAgents;

use crate::cli::{BenchArgs, OutputFormat};
use crate::client;
use crate::commands::Exit;

/// How many tasks run before measuring: they compile the module and warm the caches.
const WARMUP_TASKS: usize = 50;
/// How long the simulated agents get to register, all together.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) async fn run(args: BenchArgs) -> anyhow::Result<u8> {
    validate(&args)?;
    let module = match &args.module {
        Some(path) => std::fs::read(path)
            .map_err(|e| Exit::invalid(format!("cannot read module {path}: {e}")))?,
        None => corral_wasm_tasks::embedded::HELLO.to_vec(),
    };

    let cluster = match &args.master {
        Some(masters) => cluster::Target::existing(masters.clone()),
        None => {
            let real_agents = if args.simulated_agents.is_some() {
                0
            } else {
                args.agents
            };
            cluster::Target::ephemeral(real_agents, args.secure)
                .await
                .context("starting the ephemeral cluster")?
        }
    };
    let masters = cluster.masters().to_vec();
    let dialer = cluster.dialer().clone();
    let mut operator = client::operator_as(&dialer, &masters).await?;
    let digest = client::upload(&mut operator, module, false).await?;

    let simulated = match args.simulated_agents {
        Some(count) => {
            let before = cluster.master_memory();
            // They follow the leader, as the framework does through the SDK.
            let mut agents = SimulatedAgents::spawn(&masters, count);
            tokio::time::timeout(REGISTER_TIMEOUT, agents.all_registered())
                .await
                .context("the simulated agents did not register in time")?
                .context("registering the simulated agents")?;
            cluster.wait_for_agents(count).await?;
            let after = cluster.master_memory();
            let idle_cpu = cluster.master_cpu_over(Duration::from_secs(3)).await;
            Some((
                agents,
                report::SimulatedFigures::new(count, before, after, idle_cpu),
            ))
        }
        None => {
            cluster.wait_for_agents(args.agents.max(1)).await?;
            None
        }
    };

    let shape = load::TaskShape {
        digest,
        cpus_milli: args.cpus,
        mem_bytes: args.mem,
        disk_bytes: args.disk,
        args: args.task_args.clone(),
    };
    let pace = match args.rate {
        Some(rate) => load::Pace::Rate(rate),
        None => load::Pace::Concurrency(args.concurrency),
    };
    let warmup = load::run(
        &dialer,
        &masters,
        &shape,
        load::Pace::Concurrency(10),
        WARMUP_TASKS,
        args.timeout,
    )
    .await
    .context("warm-up")?;
    if warmup.failed > 0 {
        return Err(anyhow::anyhow!(
            "warm-up tasks failed: {}",
            warmup.first_failure.unwrap_or_default()
        ));
    }
    let watchers = watchers::Watchers::start(&dialer, &masters, args.subscribers).await?;
    let events_before = watchers.events();
    let cpu_before = cluster.cpu_by_role();
    let watchers_before = watchers.cpu_time().await;
    let outcome = load::run(&dialer, &masters, &shape, pace, args.tasks, args.timeout).await?;
    let cpu_after = cluster.cpu_by_role();
    let watchers_after = watchers.cpu_time().await;
    let subscriber_events = (args.subscribers > 0).then(|| watchers.events() - events_before);
    drop(watchers);
    let [master_cores, agent_cores, process_cores] =
        [0, 1, 2].map(|role| cluster::cores(cpu_before[role], cpu_after[role], outcome.elapsed));
    let subscriber_cores = cluster::cores(watchers_before, watchers_after, outcome.elapsed);
    // This process runs the subscribers too: the framework's share is the rest.
    let framework_cores = process_cores.map(|p| (p - subscriber_cores.unwrap_or(0.0)).max(0.0));

    let report = report::Report {
        outcome,
        pace,
        master_memory: cluster.master_memory(),
        agent_memory: cluster.agent_memory(),
        master_cores,
        agent_cores,
        framework_cores,
        simulated: simulated.as_ref().map(|(_, figures)| figures.clone()),
        subscribers: args.subscribers,
        subscriber_events,
        subscriber_cores,
    };
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => {
            crate::output::print_doc(args.output, &report.json())?
        }
        OutputFormat::Table | OutputFormat::Wide => print!("{}", report.text()),
    }
    if let Some((agents, _)) = simulated {
        agents.stop();
    }
    cluster.stop().await;
    Ok(if report.outcome.failed > 0 { 1 } else { 0 })
}

fn validate(args: &BenchArgs) -> anyhow::Result<()> {
    let invalid = |m: &str| Err(Exit::invalid(m.to_owned()).into());
    if args.tasks == 0 {
        return invalid("--tasks must be at least 1");
    }
    if args.rate.is_none() && args.concurrency == 0 {
        return invalid("--concurrency must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0)
    {
        return invalid("--rate must be a number of tasks per second in (0, 1000000]");
    }
    if args.simulated_agents == Some(0) {
        return invalid("--simulated-agents must be at least 1");
    }
    if args.master.is_none() && args.simulated_agents.is_none() && args.agents == 0 {
        return invalid("--agents must be at least 1");
    }
    Ok(())
}

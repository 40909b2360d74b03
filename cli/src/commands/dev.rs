//! `corral dev`: a master and N agents in one process, the example tasks run through the
//! scheduler API (as `corral run` does), then up until Ctrl-C.
//!
//! The example modules are compiled into the binary from `corral-wasm-tasks` (building the
//! CLI builds the guest programs for wasm32-wasip1), so a copied or installed binary runs
//! them from any directory; they are also written under the state directory, for `corral run`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use corral_agent::CompileBudget;
use corral_agent::node::{Agent, AgentConfig};
use corral_master::MasterConfig;
use corral_proto::{InputFile, InputSource};
use corral_scheduler::matching::{ResourceRequest, TaskRequest};
use corral_scheduler::{ModuleSource, TaskId, TaskInfo, TaskLimits};

use crate::cli::DevArgs;
use crate::client;
use crate::commands::follow::FileFollower;
use crate::commands::job;
use crate::commands::run::{outcome, run_task, usage_line};

/// The text `wordcount` counts.
const WORDCOUNT_INPUT: &str = "the quick brown fox jumps over the lazy dog\n\
the dog sleeps and the fox runs\n\
a cluster manager pools the resources of many agents and offers them to frameworks\n";

/// How long an agent gets to register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn run(args: DevArgs) -> anyhow::Result<u8> {
    let root = Path::new(".corral/dev");
    let log = root.join("dev.log");
    if args.verbose {
        super::init_logging(&args.log)?;
    } else {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        super::init_logging_to(&args.log, std::sync::Mutex::new(file), false)?;
    }
    if !args.listen.ip().is_loopback() {
        // A development cluster: plaintext, no authentication, files of this host.
        return Err(super::Exit::invalid(format!(
            "`corral dev` serves this host only: --listen {} is reachable from others; run \
             `corral master` and `corral agent` with TLS for that",
            args.listen
        ))
        .into());
    }
    let (master, builtin) =
        super::builtin::start_master(MasterConfig::new(args.listen, root.join("master")), true)
            .await?;
    let master_addr = master.local_addr().to_string();
    println!("master    {master_addr}");
    let mut agents = Vec::new();
    for i in 0..args.agents {
        let mut config =
            AgentConfig::new(vec![master_addr.clone()], root.join(format!("agent-{i}")));
        config.listen = ([127, 0, 0, 1], 0).into();
        config.compile_worker = Some(super::agent::compile_worker_of(CompileBudget::default())?);
        let agent = Agent::start(config)
            .await
            .with_context(|| format!("starting agent {i}"))?;
        let id = tokio::time::timeout(REGISTER_TIMEOUT, agent.registered())
            .await
            .with_context(|| format!("agent {i} did not register within {REGISTER_TIMEOUT:?}"))?;
        println!("agent-{i}   {}  {id}", agent.local_addr());
        agents.push(agent);
    }
    println!("state     {}", root.display());
    if !args.verbose {
        println!("logs      {} (-v: on the terminal)", log.display());
    }
    let hello = write_examples(&root.join("examples"))?;
    let pipeline = corral_wasm_tasks::mapreduce::write_to(&root.join("examples/mapreduce"))
        .context("writing the map/reduce example")?;
    if !args.no_examples {
        if let Err(e) = examples(&master_addr).await {
            eprintln!("examples failed: {e:#}");
        }
        if let Err(e) = map_reduce(&master_addr, &pipeline).await {
            eprintln!("the map/reduce example failed: {e:#}");
        }
    }
    println!();
    println!("cluster is up; try (Ctrl-C stops it):");
    println!("  corral run {} world", hello.display());
    println!("  corral job submit {} --wait", pipeline.display());
    println!("  corral ps --all");
    println!("  corral agents");
    println!("  corral logs <task>");
    super::shutdown_signal().await;
    println!("shutting down");
    builtin.shutdown().await;
    for agent in agents {
        agent.shutdown().await;
    }
    master.shutdown().await;
    Ok(0)
}

/// The example modules `corral dev` runs, with their names.
const EXAMPLES: [(&str, &[u8]); 4] = [
    ("hello", corral_wasm_tasks::embedded::HELLO),
    ("wordcount", corral_wasm_tasks::embedded::WORDCOUNT),
    ("primes", corral_wasm_tasks::embedded::PRIMES),
    ("mandelbrot", corral_wasm_tasks::embedded::MANDELBROT),
];

/// Writes the example modules into `dir` (for `corral run`); returns the path of `hello`.
fn write_examples(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in EXAMPLES {
        let path = dir.join(format!("{name}.wasm"));
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir.join("hello.wasm"))
}

/// Runs hello, wordcount, primes and mandelbrot one after the other.
async fn examples(master: &str) -> anyhow::Result<()> {
    let masters = vec![master.to_owned()];
    let mut client = client::operator(&masters).await?;
    let wordcount_input = InputFile {
        path: "input.txt".into(),
        source: InputSource::Contents(WORDCOUNT_INPUT.as_bytes().to_vec().into()),
    };
    let runs: [(Vec<&str>, Vec<InputFile>); 4] = [
        (vec!["dev"], Vec::new()),
        (vec!["input.txt", "result.txt"], vec![wordcount_input]),
        (vec!["1000000"], Vec::new()),
        (vec!["256", "192", "mandelbrot.pgm"], Vec::new()),
    ];
    for (n, ((name, bytes), (args, inputs))) in EXAMPLES.into_iter().zip(runs).enumerate() {
        let digest = client::upload(&mut client, bytes.to_vec(), false).await?;
        let request = ResourceRequest {
            cpus_milli: 500,
            mem_bytes: 64 << 20,
            disk_bytes: 64 << 20,
            ..ResourceRequest::default()
        };
        let task = TaskInfo {
            id: TaskId::new(format!("dev-{name}-{n}-{}", std::process::id()))?,
            name: name.into(),
            module: ModuleSource::Digest(digest),
            entrypoint: corral_proto::DEFAULT_ENTRYPOINT.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
            inputs,
            resources: request.to_resources(),
            limits: TaskLimits {
                timeout: Some(Duration::from_secs(60)),
                ..TaskLimits::default()
            },
            labels: Default::default(),
            argv0: None,
            preopens: Vec::new(),
            stdin: Default::default(),
            checkpoint: Default::default(),
            owner: None,
        };
        println!();
        println!("── {name} {} ({})", args.join(" "), task.id);
        let (status, _) =
            run_task(&masters, &mut client, task, TaskRequest::new(request), true).await?;
        if let Some(usage) = &status.usage {
            println!("{}", usage_line(usage));
        }
        let (code, message) = outcome(&status, 64 << 20, 64 << 20);
        match message {
            Some(m) => println!("{name}: {m}"),
            None => println!("{name}: exited {code}"),
        }
    }
    Ok(())
}

/// Runs the map/reduce example through the jobs framework: the maps, then the reduce, whose
/// output (the corpus's most frequent words) is printed.
async fn map_reduce(master: &str, spec: &Path) -> anyhow::Result<()> {
    let masters = vec![master.to_owned()];
    println!();
    println!(
        "── map/reduce: word count over {} files ({})",
        corral_wasm_tasks::mapreduce::CORPUS.len(),
        spec.display()
    );
    let submitted = job::submit_file(&masters, spec, None).await?;
    let names: Vec<String> = submitted.into_iter().map(|j| j.name).collect();
    let ended = job::wait(&mut client::jobs(&masters).await?, &names).await?;
    for j in &ended {
        println!(
            "{}: {}/{} instances succeeded",
            j.name, j.succeeded, j.instances
        );
    }
    if !job::all_succeeded(&ended) {
        anyhow::bail!("a job did not succeed (corral job status <name>)");
    }
    let mut operator = client::operator(&masters).await?;
    let mut stdout = FileFollower::new(
        "reduce.0",
        Some(corral_frameworks::jobs::FRAMEWORK_ID.to_owned()),
        "stdout",
    );
    stdout
        .read_new(&mut operator, &mut std::io::stdout())
        .await
        .map_err(|s| anyhow::anyhow!("reading the reduce's output: {}", s.message()))?;
    Ok(())
}

//! A minimal Corral framework: launches N tasks of one module, prints their status updates
//! and exits when all have ended (with status 1 if any did not finish cleanly).
//!
//! ```text
//! corral dev &
//! cargo run -p corral-scheduler --example hello_framework -- \
//!     --master 127.0.0.1:5050 --tasks 10 --module path/to/hello.wasm
//! ```
//!
//! `--module` is a `sha256:<hex>` digest already in the master's artifact store, or a file
//! path, uploaded first with `Operator.UploadModule`. Other flags: `--cpus-milli` (100),
//! `--mem-mib` (32), `--role` (`*`), `--` followed by the tasks' arguments.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use corral_proto::{limits, v1};
use corral_scheduler::matching::{self, ResourceRequest, Strategy, TaskRequest};
use corral_scheduler::{
    Digest, Driver, FrameworkConfig, FrameworkId, ModuleSource, Offer, Scheduler, TaskId, TaskInfo,
    TaskLimits, TaskStatus,
};

struct Args {
    master: String,
    tasks: usize,
    module: String,
    cpus_milli: u64,
    mem_mib: u64,
    role: String,
    task_args: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        master: "127.0.0.1:5050".into(),
        tasks: 3,
        module: String::new(),
        cpus_milli: 100,
        mem_mib: 32,
        role: "*".into(),
        task_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--" {
            args.task_args = it.by_ref().collect();
            break;
        }
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--master" => args.master = value()?,
            "--tasks" => args.tasks = value()?.parse().context("--tasks")?,
            "--module" => args.module = value()?,
            "--cpus-milli" => args.cpus_milli = value()?.parse().context("--cpus-milli")?,
            "--mem-mib" => args.mem_mib = value()?.parse().context("--mem-mib")?,
            "--role" => args.role = value()?,
            other => bail!(
                "unknown flag {other}; usage: hello_framework --module <sha256:..|path> \
                 [--master host:port] [--tasks N] [--cpus-milli M] [--mem-mib M] [--role R] \
                 [-- task args]"
            ),
        }
    }
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    if args.module.is_empty() {
        bail!("--module <sha256:...|path> is required");
    }
    Ok(args)
}

/// The module's digest: parsed, or obtained by uploading the file to the master.
async fn module_digest(master: &str, module: &str) -> anyhow::Result<Digest> {
    if let Ok(digest) = module.parse::<Digest>() {
        return Ok(digest);
    }
    let bytes = tokio::fs::read(module)
        .await
        .with_context(|| format!("reading {module}"))?;
    let total = bytes.len() as u64;
    let chunks: Vec<v1::ModuleChunk> = bytes
        .chunks(limits::MODULE_CHUNK_BYTES)
        .enumerate()
        .map(|(i, c)| v1::ModuleChunk {
            data: bytes::Bytes::copy_from_slice(c),
            total_size: if i == 0 { total } else { 0 },
        })
        .collect();
    let channel = limits::endpoint(format!("http://{master}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {master}"))?;
    let response = limits::operator_client(channel)
        .upload_module(tokio_stream::iter(chunks))
        .await
        .context("uploading the module")?
        .into_inner();
    println!(
        "uploaded {module} as {} ({} bytes{})",
        response.digest,
        response.size,
        if response.already_present {
            ", already present"
        } else {
            ""
        }
    );
    Ok(response.digest.parse()?)
}

struct Hello {
    module: Digest,
    resources: ResourceRequest,
    args: Vec<String>,
    total: usize,
    launched: usize,
    ended: HashSet<TaskId>,
    failures: Arc<AtomicUsize>,
}

impl Hello {
    fn task(&self, n: usize) -> Option<TaskInfo> {
        Some(TaskInfo {
            id: TaskId::new(format!("hello-{n}")).ok()?,
            name: "hello".into(),
            module: ModuleSource::Digest(self.module),
            entrypoint: "_start".into(),
            args: self.args.clone(),
            env: Vec::new(),
            inputs: Vec::new(),
            resources: self.resources.to_resources(),
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
        })
    }
}

#[async_trait::async_trait]
impl Scheduler for Hello {
    async fn subscribed(&mut self, _driver: &Driver, framework_id: &FrameworkId) {
        println!("subscribed as {framework_id}");
    }

    async fn offers(&mut self, driver: &Driver, offers: Vec<Offer>) {
        let pending = self.total - self.launched;
        let requests = vec![TaskRequest::new(self.resources.clone()); pending];
        // Prefer agents that have the module compiled already, then pack tightly.
        let mut offers = offers;
        offers.sort_by_key(|o| !o.has_cached(&self.module));
        let placement = matching::place(&requests, &offers, Strategy::BinPack);
        let mut used = HashSet::new();
        for (offer_id, indices) in placement {
            let tasks: Vec<TaskInfo> = indices
                .iter()
                .filter_map(|_| {
                    self.launched += 1;
                    self.task(self.launched)
                })
                .collect();
            println!("launching {} task(s) on offer {offer_id}", tasks.len());
            if let Err(e) = driver.launch(std::slice::from_ref(&offer_id), tasks).await {
                eprintln!("launch failed: {e}");
            }
            used.insert(offer_id);
        }
        let unused: Vec<_> = offers
            .into_iter()
            .map(|o| o.id)
            .filter(|id| !used.contains(id))
            .collect();
        if !unused.is_empty() {
            let _ = driver.decline(&unused, Duration::from_secs(30)).await;
        }
        if self.launched == self.total {
            let _ = driver.suppress(&[]).await;
        }
    }

    async fn status_update(&mut self, driver: &Driver, status: TaskStatus) {
        println!(
            "{}: {:?} ({:?}) {}",
            status.task_id, status.state, status.reason, status.message
        );
        if !status.state.is_terminal() || !self.ended.insert(status.task_id.clone()) {
            return;
        }
        if status.state != corral_scheduler::TaskState::Finished {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if self.ended.len() == self.total {
            println!("all {} task(s) ended", self.total);
            if let Err(e) = driver.teardown().await {
                eprintln!("teardown failed: {e}");
                driver.stop();
            }
        }
    }

    async fn error(&mut self, _driver: &Driver, message: String) {
        eprintln!("error: {message}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let module = module_digest(&args.master, &args.module).await?;
    let failures = Arc::new(AtomicUsize::new(0));
    let scheduler = Hello {
        module,
        resources: ResourceRequest::new(args.cpus_milli, args.mem_mib),
        args: args.task_args,
        total: args.tasks,
        launched: 0,
        ended: HashSet::new(),
        failures: Arc::clone(&failures),
    };
    let config = FrameworkConfig {
        roles: vec![args.role],
        failover_timeout: Duration::ZERO,
        ..FrameworkConfig::new("hello", [args.master])
    };
    println!(
        "subscribing to {:?} (retrying with backoff until a master answers)",
        config.masters
    );
    corral_scheduler::run(config, scheduler).await?;
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} task(s) did not finish");
    }
    Ok(())
}

//! Listings with a cluster full of tasks: 5,000 simulated agents
//! (`corral_master::simulated`, holding every task RUNNING) and 10,000 running tasks on one
//! master. Times, over sequential requests, what operators ask most:
//!
//! - gRPC: GetState (the default 1,000 tasks), ListTasks (a page of 100; all RUNNING tasks of
//!   a framework, 1,000 per page), ListAgents (all 5,000);
//! - HTTP: `/api/v1/summary`, `/api/v1/tasks?page_size=100`, `/api/v1/agents`;
//! - the web UI: in headless Chromium, from navigation to the tasks page's first row
//!   painted (first meaningful paint), when `chromedriver` is installed.
//!
//! ```text
//! cargo bench -p corral-master --bench listing             # 5,000 agents, 10,000 tasks
//! cargo bench -p corral-master --bench listing -- --test   # quick: 200 agents, 400 tasks
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use corral_fixtures::browser::Browser;
use corral_master::simulated::SimulatedAgents;
use corral_master::{Master, MasterConfig};
use corral_proto::{limits, v1};
use corral_scheduler::{
    Digest, Driver, FrameworkConfig, ModuleSource, Offer, Scheduler, TaskId, TaskInfo, TaskLimits,
    TaskState, TaskStatus,
};
use tokio::sync::Notify;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let (agents, tasks, requests) = if quick {
        (200, 400, 20)
    } else {
        (5_000, 10_000, 200)
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(agents, tasks, requests))
}

async fn run(agents: usize, tasks: usize, requests: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = MasterConfig::new("127.0.0.1:0".parse()?, dir.path());
    // Thousands of agents register at once.
    config.agent_reregister_timeout = Duration::from_secs(60);
    let master = Master::start(config).await?;
    let addr = master.local_addr().to_string();
    let masters = [addr.clone()];

    let mut simulated = SimulatedAgents::spawn_holding(&masters, agents);
    simulated.all_registered().await?;
    let digest = upload(&addr).await?;
    let started = Instant::now();
    let running = launch(&masters, digest, tasks).await?;
    eprintln!(
        "{agents} agents, {tasks} tasks RUNNING after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let channel = limits::endpoint(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut operator = limits::operator_client(channel);
    let framework = running.framework.clone();
    println!("listing at {agents} agents and {tasks} running tasks ({requests} requests each):");
    report(
        "grpc GetState (1,000 tasks)",
        time(requests, || {
            let mut op = operator.clone();
            async move {
                op.get_state(v1::GetStateRequest { max_tasks: 0 }).await?;
                Ok(())
            }
        })
        .await?,
    );
    report(
        "grpc ListTasks page of 100",
        time(requests, || {
            let mut op = operator.clone();
            async move {
                op.list_tasks(v1::ListTasksRequest {
                    page_size: 100,
                    ..Default::default()
                })
                .await?;
                Ok(())
            }
        })
        .await?,
    );
    report(
        "grpc ListTasks RUNNING of a framework, 1,000/page",
        time(requests, || {
            let mut op = operator.clone();
            let framework = framework.clone();
            async move {
                op.list_tasks(v1::ListTasksRequest {
                    framework_id: Some(framework),
                    states: vec![v1::TaskState::Running as i32],
                    page_size: 1000,
                    ..Default::default()
                })
                .await?;
                Ok(())
            }
        })
        .await?,
    );
    report(
        &format!("grpc ListAgents (all {agents})"),
        time(requests, || {
            let mut op = operator.clone();
            async move {
                op.list_agents(v1::ListAgentsRequest {}).await?;
                Ok(())
            }
        })
        .await?,
    );
    let http = reqwest::Client::new();
    for path in [
        "/api/v1/summary",
        "/api/v1/tasks?page_size=100",
        "/api/v1/agents",
    ] {
        let url = format!("http://{addr}{path}");
        report(
            &format!("http GET {path}"),
            time(requests, || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let response = http.get(url).send().await?.error_for_status()?;
                    response.bytes().await?;
                    Ok(())
                }
            })
            .await?,
        );
    }
    first_paint(&addr).await?;
    // Keeps the count of tasks launched alive until here.
    operator
        .get_state(v1::GetStateRequest { max_tasks: 1 })
        .await?;
    drop(running);
    simulated.stop();
    master.shutdown().await;
    Ok(())
}

/// The web UI's tasks page: from navigation to its first task row, five times.
async fn first_paint(addr: &str) -> anyhow::Result<()> {
    let shots = std::env::temp_dir().join("corral-listing-bench");
    let Some(browser) = Browser::start("the UI's first paint", &shots).await? else {
        return Ok(());
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        browser.goto("about:blank").await?;
        browser.goto(&format!("http://{addr}/#/tasks")).await?;
        // performance.now() counts from the navigation's start.
        let at = browser
            .run_async(
                "const done = arguments[0];
                 const check = () => document.querySelector('#task-rows tr[data-task-id]')
                   ? done(performance.now()) : requestAnimationFrame(check);
                 check();",
            )
            .await?;
        let ms = at.as_f64().context("performance.now() is a number")?;
        times.push(Duration::from_secs_f64(ms / 1000.0));
    }
    report("ui tasks page, navigation to first row", times);
    Ok(())
}

/// Runs `call` `n` times, one after another; the time of each.
async fn time<F, Fut>(n: usize, mut call: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // One unmeasured call first: connections and caches.
    call().await?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        call().await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1000.0
    };
    println!(
        "  {what:<52} p50 {:7.2} ms   p99 {:7.2} ms   max {:7.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// A minimal module for tasks to name (simulated agents run nothing).
async fn upload(addr: &str) -> anyhow::Result<Digest> {
    let channel = limits::endpoint(format!("http://{addr}"))?
        .connect()
        .await?;
    let module = b"\0asm\x01\0\0\0".to_vec();
    let response = limits::operator_client(channel)
        .upload_module(tokio_stream::iter(limits::module_chunks(&module)))
        .await?
        .into_inner();
    Ok(response.digest.parse()?)
}

/// The framework holding the tasks; they run while it is kept.
struct Running {
    framework: String,
    _driver: Driver,
}

/// Launches `n` tasks, two on each offer, and waits until all are RUNNING.
async fn launch(masters: &[String], digest: Digest, n: usize) -> anyhow::Result<Running> {
    let all_running = Arc::new(Notify::new());
    let filler = Filler {
        digest,
        left: n,
        next: 0,
        running: Arc::new(AtomicUsize::new(0)),
        target: n,
        all_running: all_running.clone(),
    };
    let (driver, _handle) = corral_scheduler::spawn(
        FrameworkConfig::new("listing-bench", masters.iter().cloned()),
        filler,
    );
    tokio::time::timeout(Duration::from_secs(300), all_running.notified())
        .await
        .context("tasks RUNNING within 5 minutes")?;
    let framework = driver
        .framework_id()
        .context("the framework subscribed")?
        .to_string();
    Ok(Running {
        framework,
        _driver: driver,
    })
}

struct Filler {
    digest: Digest,
    left: usize,
    next: usize,
    running: Arc<AtomicUsize>,
    target: usize,
    all_running: Arc<Notify>,
}

#[async_trait::async_trait]
impl Scheduler for Filler {
    async fn offers(&mut self, driver: &Driver, offers: Vec<Offer>) {
        for offer in offers {
            let k = self.left.min(2);
            if k == 0 {
                let _ = driver.decline(&[offer.id], Duration::from_secs(3600)).await;
                continue;
            }
            let tasks: Vec<TaskInfo> = (0..k).map(|_| self.task()).collect();
            self.left -= k;
            let _ = driver.launch(&[offer.id], tasks).await;
        }
    }

    async fn status_update(&mut self, _driver: &Driver, status: TaskStatus) {
        if status.state == TaskState::Running
            && self.running.fetch_add(1, Ordering::Relaxed) + 1 == self.target
        {
            self.all_running.notify_one();
        }
    }
}

impl Filler {
    fn task(&mut self) -> TaskInfo {
        self.next += 1;
        let resources = corral_scheduler::matching::ResourceRequest {
            cpus_milli: 100,
            mem_bytes: 16 << 20,
            disk_bytes: 16 << 20,
            ..Default::default()
        }
        .to_resources();
        #[expect(clippy::unwrap_used, reason = "the id is valid by construction")]
        TaskInfo {
            name: "listing".into(),
            id: TaskId::new(format!("t{}", self.next)).unwrap(),
            module: ModuleSource::Digest(self.digest),
            entrypoint: corral_proto::DEFAULT_ENTRYPOINT.into(),
            args: Vec::new(),
            env: Default::default(),
            inputs: Vec::new(),
            resources,
            limits: TaskLimits::default(),
            labels: Default::default(),
            argv0: None,
            preopens: Vec::new(),
            stdin: Default::default(),
            checkpoint: Default::default(),
            owner: None,
        }
    }
}

//! Child processes (killed on drop) and the clusters the tests run them in; ports and
//! readiness come from `corral_fixtures`.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use corral_fixtures::free_port;

pub(crate) const CORRAL: &str = env!("CARGO_BIN_EXE_corral");

/// A child process, killed (SIGKILL) and reaped on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Proc {
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn spawn(args: &[&str]) -> Proc {
    spawn_logging_to(args, Stdio::inherit())
}

/// [`spawn`] with the process's log (stderr) going to `log`.
pub(crate) fn spawn_logging_to(args: &[&str], log: impl Into<Stdio>) -> Proc {
    Proc(
        Command::new(CORRAL)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A `corral master` process logging to `<dir>/master.log`.
fn spawn_master(args: &[String], dir: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("master.log"))
        .unwrap();
    spawn_logging_to(&args.iter().map(String::as_str).collect::<Vec<_>>(), log)
}

/// Agent flags that log every run it starts (`run started`, with its task ID) as JSON, for
/// [`runs_in`]; its other logs stay at warn.
pub(crate) const LOG_RUNS: [&str; 4] = [
    "--log-level",
    "warn,corral_agent::node::runner=debug",
    "--log-format",
    "json",
];

/// How many times an agent started a run of each task (by task ID), from its log written
/// with [`LOG_RUNS`].
pub(crate) fn runs_in(log: &Path) -> std::collections::HashMap<String, usize> {
    let log = std::fs::read_to_string(log).unwrap();
    let mut runs = std::collections::HashMap::new();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if entry["fields"]["message"] == "run started"
            && let Some(task) = entry["fields"]["task_id"].as_str()
        {
            *runs.entry(task.to_owned()).or_insert(0) += 1;
        }
    }
    runs
}

/// Asserts that a job of `instances` instances ran each exactly once on the agent (`runs`,
/// from [`runs_in`]), whatever its attempts say: a launch stored as a master died but never
/// taken is answered UNKNOWN and launched again, an attempt that did not run. Any other
/// failed attempt fails the assertion.
pub(crate) fn assert_each_ran_once(
    runs: &std::collections::HashMap<String, usize>,
    instances: usize,
    job: &serde_json::Value,
) {
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "instances run more than once: {twice:?}; {job}"
    );
    assert_eq!(runs.len(), instances, "an instance never ran: {job}");
    let other_failures = job["recent_failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["state"] != "UNKNOWN")
        .count();
    assert_eq!(
        other_failures, 0,
        "only launches never taken ran again: {job}"
    );
    assert!(job["attempts"].as_u64() >= Some(instances as u64), "{job}");
}

/// A master and one agent, each a `corral` process.
pub(crate) struct Cluster {
    pub(crate) master_addr: String,
    pub(crate) master: Proc,
    pub(crate) agent: Proc,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) master_args: Vec<String>,
    /// On a fixed port, so a restarted agent keeps its address.
    pub(crate) agent_args: Vec<String>,
}

impl Cluster {
    pub(crate) async fn start(master_extra: &[&str]) -> Cluster {
        Self::start_with(master_extra, &[]).await
    }

    /// [`Cluster::start`], the agent logging every run it starts to `<dir>/agent.log`, for
    /// [`Cluster::runs`].
    pub(crate) async fn start_counting_runs(master_extra: &[&str]) -> Cluster {
        Self::start_with(master_extra, &LOG_RUNS).await
    }

    /// How many times the agent started a run of each task (see
    /// [`Cluster::start_counting_runs`]).
    pub(crate) fn runs(&self) -> std::collections::HashMap<String, usize> {
        runs_in(&self.dir.path().join("agent.log"))
    }

    pub(crate) async fn start_with(master_extra: &[&str], agent_extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let master_addr = format!("127.0.0.1:{}", free_port());
        let mut master_args: Vec<String> = vec![
            "master".into(),
            "--listen".into(),
            master_addr.clone(),
            "--work-dir".into(),
            dir.path().join("master").display().to_string(),
        ];
        master_args.extend(master_extra.iter().map(|s| (*s).to_owned()));
        let master = spawn_master(&master_args, dir.path());
        let agent_args: Vec<String> = vec![
            "agent".into(),
            "--master".into(),
            master_addr.clone(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--work-dir".into(),
            dir.path().join("agent").display().to_string(),
            "--resources".into(),
            "cpus=2,mem=1GiB,disk=1GiB".into(),
        ];
        let mut agent_args = agent_args;
        agent_args.extend(agent_extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
        let agent = if agent_extra.is_empty() {
            spawn(&args)
        } else {
            let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
            spawn_logging_to(&args, log)
        };
        let cluster = Cluster {
            master_addr,
            master,
            agent,
            dir,
            master_args,
            agent_args,
        };
        cluster.wait_for_admitted_agents(1).await;
        cluster
    }

    /// Starts the master again with the same address and directory.
    pub(crate) fn restart_master(&mut self) {
        self.master.kill();
        self.master = spawn_master(&self.master_args, self.dir.path());
    }

    /// What the master has logged so far (every run of it, appended).
    pub(crate) fn master_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("master.log")).unwrap_or_default()
    }

    /// Starts the agent again with the same address and work directory (killing it first
    /// if it still runs).
    pub(crate) fn restart_agent(&mut self) {
        self.restart_agent_with(&[]);
    }

    /// [`Cluster::restart_agent`] with more flags.
    pub(crate) fn restart_agent_with(&mut self, extra: &[&str]) {
        self.agent.kill();
        let mut args: Vec<&str> = self.agent_args.iter().map(String::as_str).collect();
        args.extend(extra);
        self.agent = spawn(&args);
    }

    /// Waits until `n` agents are ADMITTED (bounded: 90 s; an agent is admitted in about a
    /// second, but in CI two tests share two cores with the HA tests' etcd and masters).
    pub(crate) async fn wait_for_admitted_agents(&self, n: usize) {
        let masters = std::slice::from_ref(&self.master_addr);
        let dialer = corral_proto::tls::Dialer::default();
        corral_fixtures::wait_for_admitted_agents(&dialer, masters, n, Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("{e}\nthe master's log:\n{}", self.master_log()));
    }

    /// Starts `corral <args>` against this cluster in the background, output piped.
    pub(crate) fn spawn_corral(&self, args: &[&str]) -> tokio::process::Child {
        self.corral_command(args, Stdio::null()).spawn().unwrap()
    }

    /// Runs `corral <args>` against this cluster with `stdin` piped in (bounded: 60 s).
    pub(crate) async fn corral_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut child = self.corral_command(args, Stdio::piped()).spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin).await.unwrap();
        drop(pipe);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("corral {args:?} did not finish within 60 s"))
            .unwrap()
    }

    fn corral_command(&self, args: &[&str], stdin: Stdio) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(CORRAL);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("CORRAL_MASTER", &self.master_addr)
            .env("RUST_LOG", "warn")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `hello` to completion with `corral run` (asserts exit 0).
    pub(crate) async fn run_hello(&self) {
        let out = self
            .corral(&["run", corral_wasm_tasks::HELLO, "--", "cluster"])
            .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }

    /// Starts a task that sleeps a minute (holding its memory) and waits until it is
    /// RUNNING; returns the `corral run` child (killed on drop) and the task's ID.
    pub(crate) async fn start_sleeping_task(&self) -> (tokio::process::Child, String) {
        let run = self.spawn_corral(&[
            "run",
            corral_wasm_tasks::LIMITS,
            "--timeout",
            "60s",
            "--",
            "sleep",
            "60000",
        ]);
        let id = self.wait_for_running_task().await;
        (run, id)
    }

    /// Polls `corral ps` until a task is RUNNING (bounded: 30 s); returns its ID.
    pub(crate) async fn wait_for_running_task(&self) -> String {
        for _ in 0..300 {
            let ps = self.corral(&["ps", "--output", "json"]).await;
            if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&ps.stdout)
                && let Some(id) = doc["tasks"].as_array().and_then(|tasks| {
                    tasks
                        .iter()
                        .find(|t| t["state"] == "RUNNING")
                        .and_then(|t| t["id"].as_str())
                })
            {
                return id.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no task was RUNNING within 30 s");
    }

    /// Runs `corral <args>` against this cluster (bounded: 60 s).
    pub(crate) async fn corral(&self, args: &[&str]) -> Output {
        corral(args, Some(&self.master_addr), self.dir.path()).await
    }
}

/// Runs `corral <args>` (bounded: 60 s).
pub(crate) async fn corral(args: &[&str], master: Option<&str>, cwd: &Path) -> Output {
    let mut cmd = tokio::process::Command::new(CORRAL);
    cmd.args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match master {
        Some(m) => cmd.env("CORRAL_MASTER", m),
        None => cmd.env_remove("CORRAL_MASTER"),
    };
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("corral {args:?} did not finish within 60 s"))
        .unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `sha256:<hex>` digest jobs name a module file by.
pub(crate) fn module_digest(path: &str) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

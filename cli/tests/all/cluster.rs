//! Child processes (killed on drop), free ports and readiness polling.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use corral_proto::{limits, v1};

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

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(CORRAL)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// A master and one agent, each a `corral` process.
pub(crate) struct Cluster {
    pub(crate) master_addr: String,
    pub(crate) master: Proc,
    pub(crate) agent: Proc,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) master_args: Vec<String>,
}

impl Cluster {
    pub(crate) async fn start(master_extra: &[&str]) -> Cluster {
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
        let master = spawn(&master_args.iter().map(String::as_str).collect::<Vec<_>>());
        let agent_dir = dir.path().join("agent").display().to_string();
        let agent = spawn(&[
            "agent",
            "--master",
            &master_addr,
            "--listen",
            "127.0.0.1:0",
            "--work-dir",
            &agent_dir,
            "--resources",
            "cpus=2,mem=1GiB,disk=1GiB",
        ]);
        let cluster = Cluster {
            master_addr,
            master,
            agent,
            dir,
            master_args,
        };
        cluster.wait_for_admitted_agents(1).await;
        cluster
    }

    /// Starts the master again with the same address and directory.
    pub(crate) fn restart_master(&mut self) {
        self.master.kill();
        self.master = spawn(
            &self
                .master_args
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
    }

    /// Polls ListAgents until `n` agents are ADMITTED (bounded: 30 s).
    pub(crate) async fn wait_for_admitted_agents(&self, n: usize) {
        for _ in 0..300 {
            if let Ok(endpoint) = limits::endpoint(format!("http://{}", self.master_addr))
                && let Ok(channel) = endpoint.connect().await
                && let Ok(response) = limits::operator_client(channel)
                    .list_agents(v1::ListAgentsRequest {})
                    .await
            {
                let admitted = response
                    .into_inner()
                    .agents
                    .iter()
                    .filter(|a| a.state == v1::AgentState::Admitted as i32)
                    .count();
                if admitted >= n {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{n} agent(s) not admitted by {} within 30 s",
            self.master_addr
        );
    }

    /// Starts `corral <args>` against this cluster in the background, stdout and stderr piped
    /// (killed on drop).
    pub(crate) fn spawn_corral(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new(CORRAL)
            .args(args)
            .env("CORRAL_MASTER", &self.master_addr)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Polls `corral ps` until a task is RUNNING (bounded: 30 s).
    pub(crate) async fn wait_for_running_task(&self) {
        for _ in 0..300 {
            let ps = self.corral(&["ps", "--output", "json"]).await;
            if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&ps.stdout)
                && doc["tasks"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["state"] == "RUNNING"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no task ran on {} within 30 s", self.master_addr);
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

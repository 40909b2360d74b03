//! The cluster under load: a running one named by `--master`, or an ephemeral one of child
//! processes in a temporary directory, whose memory and CPU this process can read from
//! `/proc`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use corral_proto::auth::Token;
use corral_proto::tls::{Dialer, Tls};
use tokio::process::{Child, Command};

/// How long the ephemeral master and agents get to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Resident memory of a process (or the sum over several).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Memory {
    /// Now.
    pub(super) rss_bytes: u64,
    /// The high-water mark.
    pub(super) peak_bytes: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, other: Memory) -> Memory {
        Memory {
            rss_bytes: self.rss_bytes + other.rss_bytes,
            peak_bytes: self.peak_bytes + other.peak_bytes,
        }
    }
}

impl std::iter::Sum for Memory {
    fn sum<I: Iterator<Item = Memory>>(iter: I) -> Memory {
        iter.fold(Memory::default(), |a, b| a + b)
    }
}

#[derive(Debug)]
struct Ephemeral {
    master: Child,
    agents: Vec<Child>,
    dir: tempfile::TempDir,
}

#[derive(Debug)]
pub(super) struct Target {
    masters: Vec<String>,
    /// How the bench reaches the masters.
    dialer: Dialer,
    ephemeral: Option<Ephemeral>,
}

impl Target {
    pub(super) fn existing(masters: Vec<String>) -> Self {
        Self {
            masters,
            dialer: crate::client::dialer(),
            ephemeral: None,
        }
    }

    /// Starts `corral master` and `agents` × `corral agent` from this executable; `secure`,
    /// with TLS (mutual between them) and a credentials file, the bench presenting a token.
    pub(super) async fn ephemeral(agents: usize, secure: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("corral-bench-").tempdir()?;
        let exe = std::env::current_exe().context("locating the corral executable")?;
        let addr = format!("127.0.0.1:{}", corral_fixtures::free_port());
        let (security, dialer) = if secure {
            secure_setup(dir.path())?
        } else {
            (Security::default(), Dialer::default())
        };
        let master_args = [
            "master",
            "--listen",
            &addr,
            "--work-dir",
            &path_arg(&dir.path().join("master")),
        ];
        let master = spawn(&exe, &[&master_args[..], &security.master_args()].concat())?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let resources = format!("cpus={cores},mem=16GiB,disk=64GiB");
        let mut children = Vec::new();
        for i in 0..agents {
            let agent_args = [
                "agent",
                "--master",
                &addr,
                "--listen",
                "127.0.0.1:0",
                "--work-dir",
                &path_arg(&dir.path().join(format!("agent-{i}"))),
                "--resources",
                &resources,
            ];
            children.push(spawn(
                &exe,
                &[&agent_args[..], &security.agent_args()].concat(),
            )?);
        }
        let target = Self {
            masters: vec![addr],
            dialer,
            ephemeral: Some(Ephemeral {
                master,
                agents: children,
                dir,
            }),
        };
        target.wait_for_master().await?;
        Ok(target)
    }

    /// Waits until the master answers.
    async fn wait_for_master(&self) -> anyhow::Result<()> {
        Ok(corral_fixtures::wait_for_master(&self.dialer, &self.masters, STARTUP_TIMEOUT).await?)
    }

    pub(super) fn masters(&self) -> &[String] {
        &self.masters
    }

    pub(super) fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Waits until at least `n` agents are admitted.
    pub(super) async fn wait_for_agents(&self, n: usize) -> anyhow::Result<()> {
        Ok(corral_fixtures::wait_for_admitted_agents(
            &self.dialer,
            &self.masters,
            n,
            STARTUP_TIMEOUT,
        )
        .await?)
    }

    pub(super) fn master_memory(&self) -> Option<Memory> {
        memory(self.ephemeral.as_ref()?.master.id()?)
    }

    /// All agents' memory together.
    pub(super) fn agent_memory(&self) -> Option<Memory> {
        let e = self.ephemeral.as_ref()?;
        if e.agents.is_empty() {
            return None;
        }
        e.agents
            .iter()
            .map(|a| a.id().and_then(memory))
            .sum::<Option<Memory>>()
    }

    /// The master's CPU time so far.
    pub(super) fn master_cpu(&self) -> Option<Duration> {
        cpu_time(self.ephemeral.as_ref()?.master.id()?)
    }

    /// CPU time so far of the master, the agents together, and this process (the framework).
    pub(super) fn cpu_by_role(&self) -> [Option<Duration>; 3] {
        let agents = self
            .ephemeral
            .as_ref()
            .filter(|e| !e.agents.is_empty())
            .and_then(|e| {
                e.agents
                    .iter()
                    .map(|a| a.id().and_then(cpu_time))
                    .sum::<Option<Duration>>()
            });
        let this = cpu_clock(rustix::time::ClockId::ProcessCPUTime);
        [self.master_cpu(), agents, Some(this)]
    }

    /// Cores the master used since it had used `before`, over `elapsed`.
    pub(super) fn cores_since(&self, before: Option<Duration>, elapsed: Duration) -> Option<f64> {
        cores(before, self.master_cpu(), elapsed)
    }

    /// Cores the master uses over the next `window`, doing whatever it does.
    pub(super) async fn master_cpu_over(&self, window: Duration) -> Option<f64> {
        let before = self.master_cpu();
        let start = Instant::now();
        tokio::time::sleep(window).await;
        self.cores_since(before, start.elapsed())
    }

    pub(super) async fn stop(self) {
        if let Some(mut e) = self.ephemeral {
            for agent in &mut e.agents {
                let _ = agent.kill().await;
            }
            let _ = e.master.kill().await;
            drop(e.dir);
        }
    }
}

fn spawn(exe: &Path, args: &[&str]) -> anyhow::Result<Child> {
    Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting corral {}", args.join(" ")))
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// A local address nothing listens on now (the master binds it right after).
/// VmRSS and VmHWM of a process.
fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some(Memory {
        rss_bytes: field("VmRSS:")?,
        peak_bytes: field("VmHWM:")?,
    })
}

/// Cores used between two readings of a CPU-time counter `elapsed` apart.
pub(super) fn cores(
    before: Option<Duration>,
    after: Option<Duration>,
    elapsed: Duration,
) -> Option<f64> {
    let used = after?.checked_sub(before?)?;
    (!elapsed.is_zero()).then(|| used.as_secs_f64() / elapsed.as_secs_f64())
}

/// CPU time so far of this process or of the calling thread, to the nanosecond.
pub(super) fn cpu_clock(clock: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(clock);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// User plus system CPU time of a process (all its threads).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields are counted after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second();
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// The flags that make the ephemeral cluster secure (none: plaintext, no authentication).
#[derive(Debug, Default)]
struct Security {
    master: Vec<String>,
    agent: Vec<String>,
}

impl Security {
    fn master_args(&self) -> Vec<&str> {
        self.master.iter().map(String::as_str).collect()
    }

    fn agent_args(&self) -> Vec<&str> {
        self.agent.iter().map(String::as_str).collect()
    }
}

/// TLS material, a credentials file with a token for the bench and one for the agents, and
/// the dialer the bench reaches the master with.
fn secure_setup(dir: &Path) -> anyhow::Result<(Security, Dialer)> {
    use corral_master::auth::{new_token, token_sha256};
    let tls = dir.join("tls");
    crate::commands::tls::write_material(&tls, &[])?;
    let (bench, agent) = (new_token(), new_token());
    let credentials = dir.join("credentials.toml");
    let mut entries = String::new();
    for (name, token) in [("bench", &bench), ("agent", &agent)] {
        entries.push_str(&format!(
            "[[principal]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n",
            token_sha256(token)
        ));
    }
    std::fs::write(&credentials, entries)?;
    let agent_token = dir.join("agent.token");
    std::fs::write(&agent_token, &agent)?;
    let pem = |f: &str| path_arg(&tls.join(f));
    let security = Security {
        master: vec![
            "--credentials".into(),
            path_arg(&credentials),
            "--ca-cert".into(),
            pem("ca.pem"),
            "--tls-cert".into(),
            pem("master.pem"),
            "--tls-key".into(),
            pem("master-key.pem"),
        ],
        agent: vec![
            "--token-file".into(),
            path_arg(&agent_token),
            "--ca-cert".into(),
            pem("ca.pem"),
            "--tls-cert".into(),
            pem("agent.pem"),
            "--tls-key".into(),
            pem("agent-key.pem"),
        ],
    };
    let dialer = Dialer::new(
        Some(Tls::trusting(&tls.join("ca.pem"))?),
        Token::new(&bench)?,
    );
    Ok((security, dialer))
}

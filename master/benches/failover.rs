//! Failover of the master, with real processes: two masters on a real etcd (this binary run
//! again with `--child-master`, one process each), the leader killed with SIGKILL.
//!
//! 1. Takeover: leader killed → the standby answers as leader. Over 20 kills (the killed
//!    master is restarted as the new standby between kills).
//! 2. Re-registration: 5,000 simulated agents (`corral_master::simulated`, those of
//!    `corral bench --simulated-agents`) connected to the pair, the leader killed; from the
//!    new leader's election (its first answer as leader) to every agent re-registered with
//!    it. The agents follow the leader with `corral agent`'s own policy
//!    (`corral_proto::follow`).
//!
//! ```text
//! cargo bench -p corral-master --bench failover             # 20 kills, 5,000 agents
//! cargo bench -p corral-master --bench failover -- --test   # quick: 3 kills, 200 agents
//! ```
//!
//! Without `etcd` on PATH it says loudly that it skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use corral_master::simulated::SimulatedAgents;
use corral_master::{Master, MasterConfig};
use corral_proto::status::leader_hint;
use corral_proto::{limits, v1};
use tokio::sync::mpsc;
use tokio::time::Instant;

use corral_fixtures::{Etcd, free_port};

/// The leader's lease (`corral master --leader-lease`): a standby takes over about this long
/// after the leader dies.
const LEASE: Duration = Duration::from_secs(2);
/// How often the standby is asked whether it leads yet.
const POLL: Duration = Duration::from_millis(10);
/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(120);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child-master") {
        return child_master(&args[1..]);
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` and `-- --test` ask for the
    // quick run.
    let quick = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let (kills, agents) = if quick { (3, 200) } else { (20, 5_000) };
    let Some(etcd) = Etcd::start("failover bench") else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let (elections_tx, mut elections) = mpsc::unbounded_channel();
        let mut pair = Pair::start(&etcd, dir.path(), elections_tx)?;
        takeover(&mut pair, kills).await?;
        // Only elections after part 2's kill matter.
        while elections.try_recv().is_ok() {}
        reregistration(&mut pair, agents, &mut elections).await
    })
}

/// One master, serving until killed.
fn child_master(args: &[String]) -> anyhow::Result<()> {
    let [listen, store, work_dir] = args else {
        bail!("usage: --child-master LISTEN STORE WORK_DIR");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = MasterConfig::new(listen.parse()?, work_dir);
        config.store = store.parse().map_err(|e: String| anyhow!(e))?;
        config.leader_lease = LEASE;
        config.agent_reregister_timeout = Duration::from_secs(60);
        let master = Master::start(config).await?;
        // The election instant, on the wall clock the parent shares, for part 2.
        master.leading().await;
        println!("leading {}", unix_micros(SystemTime::now()));
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// Two master processes on one etcd store; killed on drop.
struct Pair {
    addrs: [String; 2],
    children: [Option<Child>; 2],
    store: String,
    dir: PathBuf,
    /// (master index, when it was elected), as each master reports it.
    elections: mpsc::UnboundedSender<(usize, SystemTime)>,
}

impl Pair {
    fn start(
        etcd: &Etcd,
        dir: &Path,
        elections: mpsc::UnboundedSender<(usize, SystemTime)>,
    ) -> anyhow::Result<Pair> {
        let mut pair = Pair {
            elections,
            addrs: [0, 1].map(|_| format!("127.0.0.1:{}", free_port())),
            children: [None, None],
            store: format!("etcd://{}/corral-bench", etcd.client_addr()),
            dir: dir.to_owned(),
        };
        pair.spawn(0)?;
        pair.spawn(1)?;
        Ok(pair)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let work_dir = self.dir.join(format!("master-{i}"));
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--child-master")
            .args([&self.addrs[i], &self.store])
            .arg(work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a master")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let elections = self.elections.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(micros) = line.strip_prefix("leading ").and_then(|m| m.parse().ok()) {
                    let _ = elections.send((i, UNIX_EPOCH + Duration::from_micros(micros)));
                }
            }
        });
        self.children[i] = Some(child);
        Ok(())
    }

    /// SIGKILL.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls (every [`POLL`]) until a master other than `not` answers as the leader; returns
    /// its index and epoch.
    async fn leader(&self, not: Option<usize>) -> anyhow::Result<(usize, u64)> {
        tokio::time::timeout(WAIT, async {
            loop {
                for (i, addr) in self.addrs.iter().enumerate() {
                    if Some(i) != not
                        && let Ok(Ok(master)) = tokio::time::timeout(POLL * 20, info(addr)).await
                        && master.leader_address == *addr
                    {
                        return (i, master.epoch);
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
        .context("no leader")
    }

    /// Polls until master `i` runs as a standby that redirects to the leader `leader`.
    async fn standby(&self, i: usize, leader: usize) -> anyhow::Result<()> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Err(status) = info(&self.addrs[i]).await
                    && leader_hint(&status) == Some(self.addrs[leader].as_str())
                {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
        .context("no standby")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.kill(0);
        self.kill(1);
    }
}

async fn info(addr: &str) -> Result<v1::MasterInfo, tonic::Status> {
    let channel = limits::endpoint(format!("http://{addr}"))
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    limits::operator_client(channel)
        .get_state(v1::GetStateRequest::default())
        .await?
        .into_inner()
        .master
        .ok_or_else(|| tonic::Status::internal("no master info"))
}

/// Part 1: leader killed → the standby serving, `kills` times.
async fn takeover(pair: &mut Pair, kills: usize) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(kills);
    for _ in 0..kills {
        let (leader, _) = pair.leader(None).await?;
        pair.standby(1 - leader, leader).await?;
        pair.kill(leader);
        let killed = Instant::now();
        pair.leader(Some(leader)).await?;
        times.push(killed.elapsed());
        pair.spawn(leader)?;
    }
    times.sort();
    println!(
        "takeover (leader killed -> standby serving), lease {LEASE:?}, {kills} kills: \
         p50 {} ms, max {} ms, min {} ms",
        millis(percentile(&times, 50)),
        millis(percentile(&times, 100)),
        millis(percentile(&times, 0)),
    );
    Ok(())
}

/// Part 2: `count` agents connected, the leader killed; from the new leader's election to
/// every agent re-registered with it.
async fn reregistration(
    pair: &mut Pair,
    count: usize,
    elections: &mut mpsc::UnboundedReceiver<(usize, SystemTime)>,
) -> anyhow::Result<()> {
    let (leader, _) = pair.leader(None).await?;
    pair.standby(1 - leader, leader).await?;
    let started = Instant::now();
    let mut agents = SimulatedAgents::spawn(&pair.addrs, count);
    tokio::time::timeout(WAIT, agents.all_registered())
        .await
        .context("agents did not register in time")??;
    println!(
        "{count} simulated agents registered in {} ms",
        millis(started.elapsed())
    );

    while elections.try_recv().is_ok() {}
    pair.kill(leader);
    let killed = SystemTime::now();
    let (new, _) = pair.leader(Some(leader)).await?;
    let serving = SystemTime::now();
    let elected = loop {
        let (i, at) = tokio::time::timeout(WAIT, elections.recv())
            .await
            .context("no election reported")?
            .context("no election reported")?;
        if i == new {
            break at;
        }
    };
    let new_addr = pair.addrs[new].clone();
    let mut after = Vec::with_capacity(count);
    let mut reregistered = vec![false; count];
    while after.len() < count {
        let r = tokio::time::timeout(WAIT, agents.registration())
            .await
            .context("agents stopped registering")?
            .context("every agent ended")?;
        if r.master == new_addr && !std::mem::replace(&mut reregistered[r.index], true) {
            after.push(r.at.duration_since(elected).unwrap_or_default());
        }
    }
    agents.stop();
    after.sort();
    println!(
        "{count} agents, lease {LEASE:?}: leader killed -> elected {} ms, -> answering \
         GetState {} ms; election -> all re-registered {} ms (p50 {} ms, p99 {} ms)",
        millis(elected.duration_since(killed).unwrap_or_default()),
        millis(serving.duration_since(killed).unwrap_or_default()),
        millis(percentile(&after, 100)),
        millis(percentile(&after, 50)),
        millis(percentile(&after, 99)),
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let i = (sorted.len().saturating_sub(1) * p).div_ceil(100);
    sorted.get(i).copied().unwrap_or_default()
}

fn unix_micros(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

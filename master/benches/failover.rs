//! Failover of the master, with real processes: two masters on a real etcd (this binary run
//! again with `--child-master`, one process each), the leader killed with SIGKILL.
//!
//! 1. Takeover: leader killed → the standby answers as leader. Over 20 kills (the killed
//!    master is restarted as the new standby between kills).
//! 2. Re-registration: 5,000 simulated agents connected to the pair, the leader killed; from
//!    the new leader's election (its first answer as leader) to every agent re-registered with
//!    it. The agents follow the leader as `corral agent` does (`agent/src/node/link.rs`):
//!    masters in order with the leader hint first, a redirect to a newly named leader
//!    followed at once (at most 3 times until registered), exponential backoff with full
//!    jitter (100 ms, doubling, at most 10 s) after a round in which every master failed.
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
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use corral_master::{Master, MasterConfig};
use corral_proto::status::leader_hint;
use corral_proto::{limits, v1};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

#[path = "../tests/all/etcd_server.rs"]
#[allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "the tests' etcd helper: a broken setup fails loudly"
)]
mod etcd_server;

use etcd_server::Etcd;

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
            addrs: [0, 1].map(|_| format!("127.0.0.1:{}", etcd_server::free_port())),
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
    let masters = Arc::new(pair.addrs.to_vec());
    let (tx, mut registrations) = mpsc::unbounded_channel();
    let mut agents = tokio::task::JoinSet::new();
    for index in 0..count {
        agents.spawn(follow(index, masters.clone(), tx.clone()));
    }
    drop(tx);
    let started = Instant::now();
    let mut registered = vec![false; count];
    let mut left = count;
    while left > 0 {
        let r = next(&mut registrations).await?;
        if r.master == pair.addrs[leader] && !std::mem::replace(&mut registered[r.index], true) {
            left -= 1;
        }
    }
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
        let r = next(&mut registrations).await?;
        if r.master == new_addr && !std::mem::replace(&mut reregistered[r.index], true) {
            after.push(r.at.duration_since(elected).unwrap_or_default());
        }
    }
    agents.abort_all();
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

async fn next(
    registrations: &mut mpsc::UnboundedReceiver<Registered>,
) -> anyhow::Result<Registered> {
    tokio::time::timeout(WAIT, registrations.recv())
        .await
        .context("agents stopped registering")?
        .context("every agent ended")
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

/// A simulated agent's (re-)registration.
#[derive(Debug)]
struct Registered {
    index: usize,
    master: String,
    at: SystemTime,
}

/// How a session with one master ended.
enum Ended {
    Redirect(String),
    Lost,
}

/// A simulated agent: registers, heartbeats, and follows the leader like `corral agent`.
async fn follow(
    index: usize,
    masters: Arc<Vec<String>>,
    events: mpsc::UnboundedSender<Registered>,
) {
    let mut id: Option<String> = None;
    let mut last_epoch = 0;
    let mut hint: Option<String> = None;
    let mut ceiling = BACKOFF_BASE;
    // Redirects followed at once since the last registration (the agent allows 3, each to a
    // leader other than the last one named).
    let mut follows = 0;
    let mut last_hint: Option<String> = None;
    loop {
        let candidates: Vec<String> = hint
            .take()
            .into_iter()
            .chain(masters.iter().cloned())
            .collect();
        for address in candidates {
            let epoch_before = last_epoch;
            let ended = session(
                index,
                &address,
                &mut id,
                &mut last_epoch,
                &mut ceiling,
                &events,
            )
            .await;
            // Registered with a master of a new epoch: the follows start over.
            if last_epoch != epoch_before {
                follows = 0;
                last_hint = None;
            }
            if let Ended::Redirect(leader) = ended {
                hint = Some(leader);
                break;
            }
        }
        if let Some(leader) = &hint
            && last_hint.as_ref() != Some(leader)
        {
            last_hint = Some(leader.clone());
            follows += 1;
            if follows <= IMMEDIATE_FOLLOWS {
                continue;
            }
        }
        // Full jitter between half the base and the ceiling, which doubles up to the max.
        let low = BACKOFF_BASE.as_millis() as u64 / 2;
        let high = (ceiling.as_millis() as u64).max(low + 1);
        ceiling = (ceiling * 2).min(BACKOFF_MAX);
        tokio::time::sleep(Duration::from_millis(rand::random_range(low..high))).await;
    }
}

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const IMMEDIATE_FOLLOWS: u32 = 3;

async fn session(
    index: usize,
    address: &str,
    id: &mut Option<String>,
    last_epoch: &mut u64,
    ceiling: &mut Duration,
    events: &mpsc::UnboundedSender<Registered>,
) -> Ended {
    let ended = |status: &tonic::Status| match leader_hint(status) {
        Some(leader) => Ended::Redirect(leader.to_owned()),
        None => Ended::Lost,
    };
    let Ok(endpoint) = limits::endpoint(format!("http://{address}")) else {
        return Ended::Lost;
    };
    let Ok(channel) = endpoint.connect().await else {
        return Ended::Lost;
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let hello = match id {
        None => v1::agent_message::Kind::Register(v1::agent_message::Register {
            agent_info: Some(agent_info(index)),
            cached_modules: Vec::new(),
        }),
        Some(id) => v1::agent_message::Kind::Reregister(v1::agent_message::ReRegister {
            agent_id: id.clone(),
            agent_info: Some(agent_info(index)),
            tasks: Vec::new(),
            unacknowledged_updates: Vec::new(),
            cached_modules: Vec::new(),
            last_epoch: *last_epoch,
        }),
    };
    let _ = tx.send(v1::AgentMessage { kind: Some(hello) });
    let mut inbound = match limits::agent_link_client(channel)
        .connect(UnboundedReceiverStream::new(rx))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return ended(&status),
    };
    let mut registered = false;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(message)) => {
                    *last_epoch = (*last_epoch).max(message.epoch);
                    if let Some(v1::master_message::Kind::Registered(r)) = message.kind {
                        *id = Some(r.agent_id);
                        *ceiling = BACKOFF_BASE;
                        registered = true;
                        heartbeat = tokio::time::interval(Duration::from_millis(
                            r.heartbeat_interval_millis.max(1),
                        ));
                        let _ = events.send(Registered {
                            index,
                            master: address.to_owned(),
                            at: SystemTime::now(),
                        });
                    }
                }
                Ok(None) => return Ended::Lost,
                Err(status) => return ended(&status),
            },
            _ = heartbeat.tick(), if registered => {
                let kind = v1::agent_message::Kind::Heartbeat(v1::agent_message::Heartbeat {});
                let _ = tx.send(v1::AgentMessage { kind: Some(kind) });
            }
        }
    }
}

fn agent_info(index: usize) -> v1::AgentInfo {
    v1::AgentInfo {
        hostname: format!("simulated-{index}"),
        resources: Some(v1::Resources {
            cpus_milli: 4000,
            mem_bytes: 16 << 30,
            disk_bytes: 64 << 30,
            ..Default::default()
        }),
        engine_hash: "simulated".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

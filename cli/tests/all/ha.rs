//! High availability with real processes: two `corral master` processes on one real etcd
//! (Debian's `etcd-server`), one `corral agent` and one framework given both masters. The
//! leader is killed (SIGKILL) or stopped past its lease (SIGSTOP); the standby must take over
//! with a higher epoch, and nothing acknowledged may be lost. Without `etcd` on PATH these
//! tests say loudly that they skipped.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use corral_master::simulated::{Registration, SimulatedAgents};
use corral_proto::auth::{Conn, Token};
use corral_proto::status::leader_hint;
use corral_proto::{limits, v1};
use corral_types::TaskState;
use tonic::transport::Endpoint;

use corral_fixtures::{free_port, set_weight, weight};

use crate::cluster::{LOG_RUNS, Proc, runs_in, spawn, spawn_logging_to};
use crate::framework::{RawFramework, state, task};
use corral_fixtures::Etcd;

/// Bound on every wait for a leader, an agent or an update.
const WAIT: Duration = Duration::from_secs(30);

/// Two masters on one etcd store and an agent given both.
pub(crate) struct HaCluster {
    /// Indexed like `addrs`.
    pub(crate) masters: Vec<Proc>,
    pub(crate) addrs: Vec<String>,
    agent: Proc,
    /// Kept for the cluster's lifetime; members may be killed by a test.
    etcd: Vec<Etcd>,
    _dir: tempfile::TempDir,
}

impl HaCluster {
    /// Starts two masters with `--leader-lease lease` on `etcd` (all its members listed in
    /// the store URL) and an agent; returns once one master leads and admitted the agent.
    pub(crate) async fn start(etcd: Vec<Etcd>, lease: &str) -> HaCluster {
        let dir = tempfile::tempdir().unwrap();
        let (masters, addrs) = start_masters(&etcd, lease, dir.path());
        let agent_dir = dir.path().join("agent").display().to_string();
        let agent_log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let agent = spawn_logging_to(
            &[
                "agent",
                "--master",
                &addrs.join(","),
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
                "--work-dir",
                &agent_dir,
                "--resources",
                "cpus=4,mem=2GiB,disk=2GiB",
                // Every run started, for `runs`.
                LOG_RUNS[0],
                LOG_RUNS[1],
                LOG_RUNS[2],
                LOG_RUNS[3],
            ],
            agent_log,
        );
        let cluster = HaCluster {
            masters,
            addrs,
            agent,
            etcd,
            _dir: dir,
        };
        let (leader, _) = cluster.leader_other_than(None).await;
        cluster.connected_agent(leader).await;
        cluster
    }

    /// How many times the agent started a run of each task (by task ID), from its log.
    pub(crate) fn runs(&self) -> HashMap<String, usize> {
        runs_in(&self._dir.path().join("agent.log"))
    }

    /// Polls until a master other than `not` answers GetState as the leader; returns its
    /// index and epoch (bounded: 30 s).
    pub(crate) async fn leader_other_than(&self, not: Option<usize>) -> (usize, u64) {
        leader_among(&self.addrs, not).await
    }

    /// Polls until master `i` lists exactly one agent, ADMITTED, and its heartbeats reach
    /// that master (its last heartbeat advances: a master that recovered the agent from the
    /// registry lists it as ADMITTED before it re-registers); returns its ID (bounded).
    async fn connected_agent(&self, i: usize) -> String {
        let mut first: Option<(String, u64)> = None;
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(agent) = only_agent(&self.addrs[i]).await
                    && agent.state == v1::AgentState::Admitted as i32
                {
                    match &first {
                        Some((id, heartbeat)) if agent.last_heartbeat_millis > *heartbeat => {
                            assert_eq!(*id, agent.id, "another agent");
                            return agent.id;
                        }
                        Some(_) => {}
                        None => first = Some((agent.id, agent.last_heartbeat_millis)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the agent did not heartbeat to {} within {WAIT:?}",
                self.addrs[i]
            )
        })
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to master `i`. After `-STOP`, returns once every
    /// thread of the master is stopped: the kernel stops the other threads only when the one
    /// that took the signal runs, so on a busy machine the master may otherwise still serve
    /// a request sent right after `kill` returned.
    async fn signal(&self, i: usize, signal: &str) {
        let pid = self.masters[i].0.id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
        if signal == "-STOP" {
            poll("every thread of the master stopped", || async move {
                all_threads_stopped(pid).then_some(())
            })
            .await;
        }
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc/<pid>/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // `tid (comm) state ...`; the name may hold spaces and parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T")
        })
    })
}

/// Polls until a master of `addrs` other than `not` answers GetState as the leader; returns
/// its index and epoch (bounded: 30 s). A stopped master does not hold up the poll.
async fn leader_among(addrs: &[String], not: Option<usize>) -> (usize, u64) {
    poll("a leading master", || async move {
        for (i, addr) in addrs.iter().enumerate() {
            if Some(i) == not {
                continue;
            }
            if let Ok(Ok(master)) =
                tokio::time::timeout(Duration::from_secs(1), master_info(addr)).await
                && master.leader_address == *addr
            {
                return Some((i, master.epoch));
            }
        }
        None
    })
    .await
}

/// Starts two `corral master`s with `--leader-lease lease` on `etcd` (all its members listed
/// in the store URL), working in `dir`; returns them and their addresses.
fn start_masters(etcd: &[Etcd], lease: &str, dir: &std::path::Path) -> (Vec<Proc>, Vec<String>) {
    let endpoints: Vec<String> = etcd.iter().map(Etcd::client_addr).collect();
    let store = format!("etcd://{}/corral-ha", endpoints.join(","));
    let addrs: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let masters = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let work_dir = dir.join(format!("master-{i}")).display().to_string();
            spawn(&[
                "master",
                "--listen",
                addr,
                "--work-dir",
                &work_dir,
                "--store",
                &store,
                "--leader-lease",
                lease,
                "--agent-reregister-timeout",
                "60s",
            ])
        })
        .collect();
    (masters, addrs)
}

/// The one agent master `addr` lists, if it answers and lists exactly one.
async fn only_agent(addr: &str) -> Option<v1::AgentSummary> {
    let channel = connect(addr).await.ok()?;
    let agents = limits::operator_client(channel)
        .list_agents(v1::ListAgentsRequest {})
        .await
        .ok()?
        .into_inner()
        .agents;
    match <[v1::AgentSummary; 1]>::try_from(agents) {
        Ok([agent]) => Some(agent),
        Err(_) => None,
    }
}

/// Polls `probe` every 50 ms until it answers (bounded: [`WAIT`]).
async fn poll<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

/// A channel without keepalive or timeouts: a call to a stopped master waits for it.
pub(crate) async fn connect(addr: &str) -> Result<Conn, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await?;
    Ok(Token::none().on(channel))
}

async fn master_info(addr: &str) -> Result<v1::MasterInfo, tonic::Status> {
    let channel = connect(addr)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let state = limits::operator_client(channel)
        .get_state(v1::GetStateRequest::default())
        .await?
        .into_inner();
    Ok(state.master.unwrap())
}

/// Reads updates, acknowledging each that expects it, until `done` holds for what was seen
/// (bounded: the framework's own wait per update).
/// Reads (and acknowledges) updates until `done` (bounded: 2 × [`WAIT`], since heartbeats keep
/// each single read alive).
async fn updates_until(fw: &mut RawFramework, mut done: impl FnMut(&RawFramework) -> bool) {
    let deadline = tokio::time::Instant::now() + 2 * WAIT;
    while !done(fw) {
        let status = tokio::time::timeout_at(deadline, fw.next_update())
            .await
            .unwrap_or_else(|_| {
                panic!("not done within {:?}; updates: {:?}", 2 * WAIT, fw.updates)
            });
        if !status.uuid.is_empty() {
            fw.acknowledge(&status).await;
        }
    }
}

/// The states the framework saw for `task`, in order.
fn states_of(fw: &RawFramework, task: &str) -> Vec<TaskState> {
    fw.updates
        .iter()
        .filter(|s| s.task_id == task)
        .map(state)
        .collect()
}

fn saw(fw: &RawFramework, task: &str, wanted: TaskState) -> bool {
    states_of(fw, task).contains(&wanted)
}

/// Per task, nothing follows a terminal state but repeats of it: no acknowledged outcome
/// is contradicted (a finished task never comes back as running or lost).
fn assert_no_update_contradicts_a_terminal_one(fw: &RawFramework) {
    let mut by_task: HashMap<&str, Vec<TaskState>> = HashMap::new();
    for status in &fw.updates {
        by_task
            .entry(status.task_id.as_str())
            .or_default()
            .push(state(status));
    }
    for (task, states) in by_task {
        if let Some(first) = states.iter().position(|s| s.is_terminal()) {
            assert!(
                states[first..].iter().all(|s| *s == states[first]),
                "{task}: {states:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_kill_9_while_launching_standby_leads_and_no_acknowledged_update_is_lost() {
    let Some(etcd) = Etcd::start(
        "leader_kill_9_while_launching_standby_leads_and_no_acknowledged_update_is_lost",
    ) else {
        return;
    };
    let mut cluster = HaCluster::start(vec![etcd], "2s").await;
    let (old, old_epoch) = cluster.leader_other_than(None).await;
    let agent_id = cluster.connected_agent(old).await;
    let mut fw = RawFramework::subscribe_to_leader(&cluster.addrs).await;
    assert_eq!(
        (fw.master.as_str(), fw.epoch),
        (cluster.addrs[old].as_str(), old_epoch)
    );
    let module = fw.upload(corral_wasm_tasks::LIMITS).await;

    // Three tasks run long enough to outlive the failover; their RUNNING is acknowledged.
    let before = ["before-0", "before-1", "before-2"];
    for id in before {
        fw.launch(task(id, &module, &["sleep", "4000"])).await;
    }
    updates_until(&mut fw, |fw| {
        before.iter().all(|t| saw(fw, t, TaskState::Running))
    })
    .await;
    // One more launch is in flight when the leader dies.
    fw.launch(task("during", &module, &["sleep", "500"])).await;
    cluster.masters[old].kill();
    // Updates already on the wire are recorded; they are acknowledged when redelivered.
    while fw.try_next_update().await.is_ok() {}

    fw.resubscribe(&cluster.addrs).await;
    let (new, new_epoch) = cluster.leader_other_than(Some(old)).await;
    assert!(
        new_epoch > old_epoch,
        "new epoch {new_epoch} > old {old_epoch}"
    );
    assert_eq!(
        (fw.master.as_str(), fw.epoch),
        (cluster.addrs[new].as_str(), new_epoch),
        "the framework follows the new leader"
    );
    assert_eq!(
        cluster.connected_agent(new).await,
        agent_id,
        "re-registered, same id"
    );
    let from_new_leader = fw.updates.len();

    // The framework keeps working: new tasks launch and finish under the new leader.
    assert_eq!(fw.upload(corral_wasm_tasks::LIMITS).await, module);
    let after = ["after-0", "after-1", "after-2"];
    for id in after {
        fw.launch(task(id, &module, &["sleep", "100"])).await;
    }
    fw.reconcile(&["during"]).await;
    updates_until(&mut fw, |fw| {
        before
            .iter()
            .chain(&after)
            .all(|t| saw(fw, t, TaskState::Finished))
            && states_of(fw, "during")
                .iter()
                .any(|s| s.is_terminal() || *s == TaskState::Unknown)
    })
    .await;

    // Tasks whose RUNNING was acknowledged before the failover finished, and their
    // FINISHED reached the framework through the new leader: nothing acknowledged was lost.
    let through_new: Vec<(&str, TaskState)> = fw.updates[from_new_leader..]
        .iter()
        .map(|s| (s.task_id.as_str(), state(s)))
        .collect();
    for id in before.iter().chain(&after) {
        assert!(
            through_new.contains(&(*id, TaskState::Finished)),
            "{id}: {:?}",
            states_of(&fw, id)
        );
    }
    // Tasks launched after the failover ran under the new epoch only: all their updates
    // came through the new leader's stream.
    for id in after {
        assert!(
            fw.updates[..from_new_leader]
                .iter()
                .all(|s| s.task_id != id),
            "{id} was reported before the failover"
        );
        assert!(through_new.contains(&(id, TaskState::Running)), "{id}");
    }
    // The launch in flight either ran to the end or is known to have not run; it is
    // never left silently.
    let during = states_of(&fw, "during");
    assert!(
        during.contains(&TaskState::Finished)
            || during
                .iter()
                .any(|s| matches!(s, TaskState::Unknown | TaskState::Dropped | TaskState::Lost)),
        "during: {during:?}"
    );
    assert_no_update_contradicts_a_terminal_one(&fw);
    cluster.agent.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_sigstop_past_its_lease_then_sigcont_is_a_standby_and_its_write_is_refused() {
    let Some(etcd) = Etcd::start(
        "leader_sigstop_past_its_lease_then_sigcont_is_a_standby_and_its_write_is_refused",
    ) else {
        return;
    };
    let mut cluster = HaCluster::start(vec![etcd], "2s").await;
    let (old, old_epoch) = cluster.leader_other_than(None).await;
    let old_addr = cluster.addrs[old].clone();
    let agent_id = cluster.connected_agent(old).await;
    let to_old = connect(&old_addr).await.unwrap();
    set_weight(to_old.clone(), "before", 2.0).await.unwrap();

    // Frozen past its lease (2 s): it cannot renew, and a write sent now waits in its
    // socket until it runs again.
    cluster.signal(old, "-STOP").await;
    let write = tokio::spawn(set_weight(to_old.clone(), "while-stopped", 5.0));
    let (new, new_epoch) = cluster.leader_other_than(Some(old)).await;
    assert!(
        new_epoch > old_epoch,
        "new epoch {new_epoch} > old {old_epoch}"
    );
    let new_addr = cluster.addrs[new].clone();
    assert_eq!(
        cluster.connected_agent(new).await,
        agent_id,
        "the agent follows"
    );
    cluster.signal(old, "-CONT").await;

    let refused = tokio::time::timeout(WAIT, write)
        .await
        .expect("the continued master did not answer the pending write")
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    // Once running again it is a standby: it redirects to the new leader and writes nothing.
    let (old_addr, new_addr) = (old_addr.as_str(), new_addr.as_str());
    let redirect = poll("a redirection to the new leader", || async move {
        match master_info(old_addr).await {
            Err(s) if leader_hint(&s) == Some(new_addr) => Some(s),
            _ => None,
        }
    })
    .await;
    assert_eq!(redirect.code(), tonic::Code::Unavailable, "{redirect:?}");
    let refused = set_weight(to_old, "after-cont", 3.0).await.unwrap_err();
    assert_eq!(leader_hint(&refused), Some(new_addr), "{refused:?}");

    // The registry the new leader sees has what the old one acknowledged, nothing else.
    assert_eq!(
        weight(connect(new_addr).await.unwrap(), "before")
            .await
            .unwrap(),
        Some(2.0)
    );
    assert_eq!(
        weight(connect(new_addr).await.unwrap(), "while-stopped")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        weight(connect(new_addr).await.unwrap(), "after-cont")
            .await
            .unwrap(),
        None
    );
    let leader = master_info(new_addr).await.unwrap();
    assert_eq!(
        leader.epoch, new_epoch,
        "no leadership change after SIGCONT"
    );

    // What the registry holds, read back by a master elected after the refused writes: the
    // continued master leads again once the new leader dies, and recovers it from etcd.
    cluster.masters[new].kill();
    let (again, again_epoch) = cluster.leader_other_than(Some(new)).await;
    assert_eq!(again, old);
    assert!(again_epoch > new_epoch, "{again_epoch} > {new_epoch}");
    assert_eq!(
        weight(connect(old_addr).await.unwrap(), "before")
            .await
            .unwrap(),
        Some(2.0)
    );
    assert_eq!(
        weight(connect(old_addr).await.unwrap(), "while-stopped")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        weight(connect(old_addr).await.unwrap(), "after-cont")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn masters_keep_working_when_one_of_three_etcd_members_dies() {
    let Some(etcd) = Etcd::start_cluster(
        "masters_keep_working_when_one_of_three_etcd_members_dies",
        3,
    ) else {
        return;
    };
    // Nothing here waits for a lease to end; a longer one keeps a renewal delayed by a busy
    // machine (tests run in parallel) from deposing the leader mid-test.
    let mut cluster = HaCluster::start(etcd, "6s").await;
    let mut fw = RawFramework::subscribe_to_leader(&cluster.addrs).await;
    let module = fw.upload(corral_wasm_tasks::LIMITS).await;

    // The member listed first in every master's store URL dies; two of three keep quorum.
    cluster.etcd[0].kill();
    // Registry writes go through, on whichever master leads.
    let c = &cluster;
    let leader = poll("a registry write through the leader", || async move {
        let (leader, _) = c.leader_other_than(None).await;
        let channel = connect(&c.addrs[leader]).await.ok()?;
        set_weight(channel, "eng", 2.0).await.ok().map(|()| leader)
    })
    .await;
    let to_leader = connect(&cluster.addrs[leader]).await.unwrap();
    assert_eq!(weight(to_leader, "eng").await.unwrap(), Some(2.0));
    // The other master still follows the election: it redirects to the leader.
    let (standby, leader_addr) = (&c.addrs[1 - leader], c.addrs[leader].as_str());
    let redirect = poll("a redirection to the leader", || async move {
        master_info(standby)
            .await
            .err()
            .filter(|s| leader_hint(s) == Some(leader_addr))
    })
    .await;
    assert_eq!(redirect.code(), tonic::Code::Unavailable, "{redirect:?}");
    // The CLI given only the standby follows its hint to the leader.
    let out =
        crate::cluster::corral(&["weight", "eng"], Some(standby), &std::env::temp_dir()).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        crate::cluster::text(&out.stderr)
    );
    assert!(
        crate::cluster::text(&out.stdout)
            .lines()
            .any(|l| l.contains("eng") && l.split_whitespace().any(|w| w == "2")),
        "stdout: {}",
        crate::cluster::text(&out.stdout)
    );
    // Tasks still launch and finish.
    if fw.master != cluster.addrs[leader] {
        fw.resubscribe(&cluster.addrs).await;
    }
    // Uploading again to whichever master leads now gives the same digest.
    assert_eq!(fw.upload(corral_wasm_tasks::LIMITS).await, module);
    cluster.connected_agent(leader).await;
    fw.launch(task("after-member-loss", &module, &["sleep", "100"]))
        .await;
    updates_until(&mut fw, |fw| {
        saw(fw, "after-member-loss", TaskState::Finished)
    })
    .await;
    cluster.agent.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn module_uploaded_before_the_leader_is_killed_runs_by_digest_on_an_agent_that_never_had_it()
{
    let Some(etcd) = Etcd::start(
        "module_uploaded_before_the_leader_is_killed_runs_by_digest_on_an_agent_that_never_had_it",
    ) else {
        return;
    };
    let mut cluster = HaCluster::start(vec![etcd], "2s").await;
    let (old, old_epoch) = cluster.leader_other_than(None).await;
    // The upload is acknowledged once both masters hold it; until the standby has
    // registered, an upload counts one copy, so upload until it counts two.
    let module = std::fs::read(corral_wasm_tasks::HELLO).unwrap();
    let leader_addr = cluster.addrs[old].as_str();
    let module = &module;
    let digest = poll("an upload held by both masters", || async move {
        let channel = connect(leader_addr).await.ok()?;
        let uploaded = limits::operator_client(channel)
            .upload_module(tokio_stream::iter(limits::module_chunks(module)))
            .await
            .ok()?
            .into_inner();
        (uploaded.replicas == 2).then_some(uploaded.digest)
    })
    .await;

    // The leader dies without a chance to hand anything over.
    cluster.masters[old].kill();
    let (new, new_epoch) = cluster.leader_other_than(Some(old)).await;
    assert!(
        new_epoch > old_epoch,
        "new epoch {new_epoch} > old {old_epoch}"
    );
    cluster.connected_agent(new).await;

    // The agent never ran this module: it fetches it from the new leader.
    let masters = cluster.addrs.join(",");
    let out = crate::cluster::corral(
        &["run", &digest, "--", "after", "failover"],
        Some(&masters),
        &std::env::temp_dir(),
    )
    .await;
    let (stdout, stderr) = (
        crate::cluster::text(&out.stdout),
        crate::cluster::text(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stdout.contains("hello from corral after failover"),
        "stdout: {stdout}"
    );
    cluster.agent.kill();
}

/// The next (re-)registration of a simulated agent (bounded: [`WAIT`]).
async fn next_registration(agents: &mut SimulatedAgents) -> Registration {
    tokio::time::timeout(WAIT, agents.registration())
        .await
        .expect("no registration in time")
        .expect("the agent ended")
}

/// The simulated agents of `corral bench --simulated-agents` and the failover bench follow
/// the leader as `corral agent` does: on the new leader they re-register with their id.
#[tokio::test(flavor = "multi_thread")]
async fn simulated_agent_reregisters_with_its_id_on_the_new_leader() {
    let Some(etcd) = Etcd::start("simulated_agent_reregisters_with_its_id_on_the_new_leader")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut masters, addrs) = start_masters(std::slice::from_ref(&etcd), "2s", dir.path());
    let mut agents = SimulatedAgents::spawn(&addrs, 1);
    let first = next_registration(&mut agents).await;
    let old = addrs.iter().position(|a| *a == first.master).unwrap();
    assert_eq!(only_agent(&first.master).await.unwrap().id, first.agent_id);

    masters[old].kill();
    let again = loop {
        let r = next_registration(&mut agents).await;
        if r.master != first.master {
            break r;
        }
    };
    let (new, new_epoch) = leader_among(&addrs, Some(old)).await;
    assert_eq!(again.master, addrs[new], "registered with the new leader");
    assert_eq!(again.epoch, new_epoch);
    assert!(again.epoch > first.epoch, "{again:?} after {first:?}");
    assert_eq!(again.agent_id, first.agent_id, "re-registered, same id");
    let listed = only_agent(&addrs[new]).await.unwrap();
    assert_eq!(
        (listed.id.as_str(), listed.state),
        (first.agent_id.as_str(), v1::AgentState::Admitted as i32)
    );
    agents.stop();
    for m in &mut masters {
        m.kill();
    }
}

/// The IDs of the frameworks called `corral-bench` that master `addr` lists as active.
async fn active_bench_frameworks(addr: &str) -> Option<Vec<(String, u32)>> {
    let channel = connect(addr).await.ok()?;
    let frameworks = limits::operator_client(channel)
        .list_frameworks(v1::ListFrameworksRequest::default())
        .await
        .ok()?
        .into_inner()
        .frameworks;
    Some(
        frameworks
            .into_iter()
            .filter(|f| f.name == "corral-bench" && f.state == v1::FrameworkState::Active as i32)
            .map(|f| (f.id, f.active_tasks))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_rides_through_a_leader_kill_9_and_accounts_for_every_task() {
    let Some(etcd) = Etcd::start("bench_rides_through_a_leader_kill_9_and_accounts_for_every_task")
    else {
        return;
    };
    let mut cluster = HaCluster::start(vec![etcd], "2s").await;
    let (old, _) = cluster.leader_other_than(None).await;
    // 1,000 tasks of 100 ms at 100 a second: about ten in flight when the leader dies.
    let dir = tempfile::tempdir().unwrap();
    let bench = tokio::process::Command::new(crate::cluster::CORRAL)
        .args([
            "bench",
            "--master",
            &cluster.addrs.join(","),
            "--tasks",
            "1000",
            "--rate",
            "100",
            "--module",
            corral_wasm_tasks::LIMITS,
            "--timeout",
            "100s",
            "--output",
            "json",
            "--",
            "sleep",
            "100",
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The warm-up runs as one framework, the measured run as the next: wait for the second
    // to have tasks in flight.
    let leader = cluster.addrs[old].as_str();
    let seen = std::sync::Mutex::new(Vec::<String>::new());
    let seen = &seen;
    poll("the measured run with tasks in flight", || async move {
        let frameworks = active_bench_frameworks(leader).await?;
        let mut seen = seen.lock().unwrap();
        for (id, _) in &frameworks {
            if !seen.contains(id) {
                seen.push(id.clone());
            }
        }
        let measured = seen.get(1)?;
        frameworks
            .iter()
            .any(|(id, active)| id == measured && *active > 0)
            .then_some(())
    })
    .await;
    cluster.masters[old].kill();
    let (new, _) = cluster.leader_other_than(Some(old)).await;
    cluster.connected_agent(new).await;

    let out = tokio::time::timeout(Duration::from_secs(150), bench.wait_with_output())
        .await
        .expect("the bench ends")
        .unwrap();
    let (stdout, stderr) = (
        crate::cluster::text(&out.stdout),
        crate::cluster::text(&out.stderr),
    );
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {stdout}, stderr {stderr}"));
    assert_eq!(report["tasks"], 1000, "{report}");
    // Every task was accounted for before the timeout: finished, or failed for a reason the
    // master gave (a launch lost with the old leader is UNKNOWN).
    let failed = report["failed"].as_u64().unwrap();
    assert!(
        failed <= 100,
        "at most the tasks in flight around the kill: {report}"
    );
    let why = report["first_failure"].as_str().unwrap_or_default();
    assert!(!why.contains("had not ended"), "{report}");
    assert_eq!(
        out.status.code(),
        Some(if failed > 0 { 1 } else { 0 }),
        "stderr: {stderr}"
    );
    cluster.agent.kill();
}

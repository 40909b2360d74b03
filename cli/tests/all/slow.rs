//! A framework that stops reading its event stream is cut off; the cluster carries on.

use std::collections::BTreeSet;

use corral_types::TaskState;

use crate::cluster::{Cluster, text};
use crate::framework::{RawFramework, state, task};

/// The master's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// What the master's memory may grow by while the slow framework is stuck and the other runs
/// 10,000 tasks. The slow stream holds at most `STREAM_QUEUE` events; the rest is what the
/// master keeps of 10,000 tasks anyway (the last 1,000 completed ones).
const RSS_GROWTH_BOUND: u64 = 64 << 20;

/// Room for the busy framework's bursts (50 tasks in flight: at most 150 updates queued),
/// and far fewer events than the stuck one's tasks make.
const STREAM_QUEUE: &str = "512";

/// Tiny tasks, all in its first offer (the test agent has 2 cpus and 1 GiB; `hello` peaks at
/// 1.07 MiB): three updates each, 2,400 in all, well past what its stream may queue plus what
/// the 64 KiB HTTP/2 window lets through (about 500 updates).
const SLOW_TASKS: usize = 800;

/// Runs 10,000 tasks with `corral bench` against `cluster`; its report, all of them done.
async fn bench(cluster: &Cluster) -> serde_json::Value {
    let bench = cluster.spawn_corral(&[
        "bench",
        "--master",
        &cluster.master_addr,
        "--tasks",
        "10000",
        "--concurrency",
        "50",
        "--output",
        "json",
    ]);
    let bench = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        bench.wait_with_output(),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "bench did not finish in 120 s; master log:\n{}",
            cluster.master_log()
        )
    })
    .unwrap();
    assert!(bench.status.success(), "{}", text(&bench.stderr));
    let report: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    assert_eq!(report["tasks"], 10_000, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn a_framework_that_never_reads_is_cut_off_while_another_runs_10000_tasks() {
    // A stuck framework holds its offers at most a second.
    let cluster = Cluster::start(&["--stream-queue", STREAM_QUEUE, "--offer-timeout", "1s"]).await;
    let master_pid = cluster.master.0.id();
    // The speed of the other framework with nobody stuck, for comparison.
    let alone = bench(&cluster).await;
    let before = rss(master_pid);

    // The slow framework launches its tasks, then never reads its stream again.
    let mut slow = RawFramework::subscribe_with_small_windows(&cluster.master_addr).await;
    let hello = slow.upload(corral_wasm_tasks::HELLO).await;

    let tasks: Vec<_> = (0..SLOW_TASKS)
        .map(|i| {
            let mut t = task(&format!("slow-{i}"), &hello, &[]);
            let r = t.resources.as_mut().unwrap();
            (r.cpus_milli, r.mem_bytes, r.disk_bytes) = (1, 1_200_000, 1 << 20);
            t
        })
        .collect();
    slow.launch_all(tasks).await;
    // Meanwhile another framework runs 10,000 tasks.
    let report = bench(&cluster).await;

    // The slow one was cut off, with the reason logged, once its queue was full.
    for _ in 0..600 {
        if cluster.master_log().contains("framework stream cut off") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        cluster.master_log().contains("framework stream cut off"),
        "{}",
        cluster.master_log()
    );
    let after = rss(master_pid);
    assert!(
        after <= before + RSS_GROWTH_BOUND,
        "the master grew from {before} to {after} bytes"
    );
    eprintln!(
        "master RSS {} MiB -> {} MiB; the other framework ran {} tasks/s ({} alone)",
        before >> 20,
        after >> 20,
        report["tasks_per_s"],
        alone["tasks_per_s"]
    );
    // When it reads again it finds its stream ended, re-subscribes, and is sent the
    // updates it never acknowledged: every task of its ends, nothing is lost.
    let mut ended = None;
    for _ in 0..2000 {
        if let Err(status) = slow.try_next_update().await {
            ended = Some(status);
            break;
        }
    }
    let ended = ended.expect("the slow framework's stream did not end");
    assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended:?}");
    slow.resubscribe(std::slice::from_ref(&cluster.master_addr))
        .await;
    let mut finished = BTreeSet::new();
    while finished.len() < SLOW_TASKS {
        let update = slow.next_update().await;
        if state(&update) == TaskState::Finished {
            finished.insert(update.task_id.clone());
        }
        slow.acknowledge(&update).await;
    }
}

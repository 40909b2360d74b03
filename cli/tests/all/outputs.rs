//! Task outputs on a real cluster: kept when the task ends, listed and downloaded
//! byte-identical (also after a master restart), handed to a later task by digest; the
//! oldest dropped to make room once the cluster's output store is full, and a file larger
//! than the whole store refused with the reason stated.

use std::path::{Path, PathBuf};

use crate::cluster::{Cluster, text};

/// The task ID `corral run` names in its `outputs:` line.
fn task_id_of(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("outputs: ") && l.contains("corral task outputs "))
        .unwrap_or_else(|| panic!("no outputs line in {stderr}"));
    line.rsplit(' ').next().unwrap().to_owned()
}

fn assert_parts(dir: &Path, n: u8, size: usize) {
    for i in 0..n {
        let part = std::fs::read(dir.join(format!("data/part-{i}.bin"))).unwrap();
        assert_eq!(part, vec![i; size], "part {i} in {}", dir.display());
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("summary.txt")).unwrap(),
        format!("{n} parts of {size} bytes\n")
    );
}

/// Downloads task `id`'s outputs into `<cluster dir>/<into>`, which it returns.
async fn download(cluster: &Cluster, id: &str, into: &str) -> PathBuf {
    let dir = cluster.dir.path().join(into);
    let download = cluster
        .corral(&["task", "outputs", id, "--into", dir.to_str().unwrap()])
        .await;
    assert_eq!(
        download.status.code(),
        Some(0),
        "{}",
        text(&download.stderr)
    );
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn outputs_survive_a_master_restart_and_feed_a_later_task() {
    let mut cluster = Cluster::start(&[]).await;
    let first = cluster.dir.path().join("first");
    let run = cluster
        .corral(&[
            "run",
            "--outputs-into",
            first.to_str().unwrap(),
            corral_wasm_tasks::SDK_DEMO,
            "outputs",
            "3",
            "300000",
        ])
        .await;
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("outputs: 4 files ("), "{stderr}");
    assert_parts(&first, 3, 300_000);
    let id = task_id_of(&stderr);

    let listing = cluster
        .corral(&["task", "outputs", &id, "--output", "json"])
        .await;
    assert_eq!(listing.status.code(), Some(0), "{}", text(&listing.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(doc["state"], "FINISHED", "{doc}");
    let outputs = doc["outputs"].as_array().unwrap();
    let paths: Vec<_> = outputs
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "data/part-0.bin",
            "data/part-1.bin",
            "data/part-2.bin",
            "summary.txt"
        ]
    );
    assert_eq!(outputs[1]["size"], 300_000);
    let part_1 = outputs[1]["digest"].as_str().unwrap().to_owned();
    assert_eq!(
        part_1,
        corral_types::Digest::of(&vec![1u8; 300_000]).to_string()
    );
    // The task listing carries them too.
    let ps = cluster.corral(&["ps", "--all", "--output", "json"]).await;
    let ps: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let listed = ps["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["outputs"][1]["digest"], part_1.as_str(), "{listed}");
    let table = text(&cluster.corral(&["task", "outputs", &id]).await.stdout);
    assert!(table.contains("PATH") && table.contains(&part_1), "{table}");

    // The listing and the bytes are the master's: a restart keeps both.
    cluster.restart_master();
    cluster.wait_for_admitted_agents(1).await;
    let second = download(&cluster, &id, "second").await;
    assert_parts(&second, 3, 300_000);

    // A later task takes one of them as an input, by digest.
    let summary = outputs[3]["digest"].as_str().unwrap();
    let third = cluster.dir.path().join("third");
    let input = format!("{summary}=in/summary.txt");
    let reverse = cluster
        .corral(&[
            "run",
            "--input",
            &input,
            "--outputs-into",
            third.to_str().unwrap(),
            corral_wasm_tasks::SDK_DEMO,
            "reverse",
            "/in/summary.txt",
            "reversed.txt",
        ])
        .await;
    assert_eq!(reverse.status.code(), Some(0), "{}", text(&reverse.stderr));
    assert_eq!(text(&reverse.stdout), "reversed 24 bytes\n");
    assert_eq!(
        std::fs::read_to_string(third.join("reversed.txt")).unwrap(),
        "\nsetyb 000003 fo strap 3"
    );

    // Unknown tasks and digests are clear errors.
    let unknown = cluster.corral(&["task", "outputs", "no-such-task"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no-such-task"),
        "{}",
        text(&unknown.stderr)
    );
    let bad = cluster
        .corral(&["run", "--input", "sha256:zz=x", corral_wasm_tasks::HELLO])
        .await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_output_store_drops_the_oldest_outputs_for_new_ones() {
    let cluster = Cluster::start(&["--output-store-cap", "10KiB"]).await;
    let run = async |size: &str| {
        cluster
            .corral(&["run", corral_wasm_tasks::SDK_DEMO, "outputs", "2", size])
            .await
    };
    // 6,021 bytes, then 6,023 more: the second task's do not fit beside the first's.
    let first = run("3000").await;
    let stderr = text(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("outputs: 3 files ("), "{stderr}");
    let first = task_id_of(&stderr);
    let second = run("3001").await;
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("outputs: 3 files ("), "{stderr}");
    assert!(!stderr.contains("not kept"), "{stderr}");
    let second = task_id_of(&stderr);

    // The first task's outputs made room: no longer listed.
    let gone = cluster.corral(&["task", "outputs", &first]).await;
    assert_eq!(gone.status.code(), Some(2), "{}", text(&gone.stdout));
    assert!(
        text(&gone.stderr).contains(&format!("task {first} has no outputs listed")),
        "{}",
        text(&gone.stderr)
    );
    assert_parts(&download(&cluster, &second, "second").await, 2, 3001);

    // A file larger than the whole store is not kept, and the task says why; the smaller
    // file after it is.
    let big = run("11000").await;
    let stderr = text(&big.stderr);
    assert_eq!(big.status.code(), Some(0), "{stderr}");
    let why = "larger than the cluster's whole output store: 11000 bytes, its cap is 10240";
    assert!(
        stderr.contains(&format!(
            "corral: outputs not kept: data/part-0.bin ({why}), data/part-1.bin ({why})"
        )),
        "{stderr}"
    );
    let id = task_id_of(&stderr);
    let listing = cluster
        .corral(&["task", "outputs", &id, "-o", "json"])
        .await;
    let listing: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let paths: Vec<_> = listing["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["summary.txt"], "{listing}");
    // Nothing had to go for it: the second task's outputs are still listed.
    let kept = cluster.corral(&["task", "outputs", &second]).await;
    assert_eq!(kept.status.code(), Some(0), "{}", text(&kept.stderr));
}

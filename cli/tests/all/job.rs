//! `corral job validate`: a good spec is summarised, a bad one gets every problem with its
//! file, line and column and exit code 2.

use crate::cluster::{corral, text};

#[tokio::test]
async fn validate_summarises_good_specs_and_locates_every_problem_of_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hello.toml"),
        "version = 1\nname = \"hello-batch\"\nkind = \"batch\"\nmodule = \"hello.wasm\"\n\
         instances = 200\n[resources]\ncpus = 0.1\nmem = \"32MiB\"\n",
    )
    .unwrap();
    let ok = corral(&["job", "validate", "hello.toml"], None, dir.path()).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(
        text(&ok.stdout),
        "hello.toml: valid, 1 job\n  hello-batch: batch, 200 instances, 3 retries\n"
    );

    std::fs::write(
        dir.path().join("bad.yaml"),
        "version: 1\nname: nightly\nkind: cron\nmodule: report.wasm\nschedule: \"0 25 * * *\"\n\
         timezone: Europe/Pariss\nresources:\n  cpus: 1\n  mem: lots\n",
    )
    .unwrap();
    let bad = corral(&["job", "validate", "bad.yaml"], None, dir.path()).await;
    assert_eq!(bad.status.code(), Some(2));
    let stderr = text(&bad.stderr);
    for expected in [
        "bad.yaml:5:11: schedule: \"0 25 * * *\" is not a valid cron expression",
        "bad.yaml:6:11: timezone: \"Europe/Pariss\" is not a known time zone",
        "bad.yaml:9:8: resources.mem: invalid size \"lots\"",
    ] {
        assert!(stderr.contains(expected), "{expected}\nin:\n{stderr}");
    }
    let unknown = corral(
        &["job", "validate", "bad.yaml", "--format", "ini"],
        None,
        dir.path(),
    )
    .await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("unknown spec format \"ini\""));
}

//! Jobs on a secured cluster: a tenant's jobs and their tasks are its own, inside the master
//! and on a jobs framework run as a process of its own.

use std::process::Output;

use corral_fixtures::free_port;

use crate::cluster::{Proc, spawn_logging_to, text};
use crate::secure::{Secured, corral_in, eventually};

/// `corral <args> --master <master> --token-file <principal's>` in the cluster's directory.
async fn corral_as(s: &Secured, principal: &str, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend([
        "--master",
        &s.master_addr,
        "--token-file",
        &s.files[principal],
    ]);
    corral_in(s.dir.path(), &all, None).await
}

/// Asserts that a command failed and said `why`.
fn refused_with(out: &Output, why: &str) {
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
}

/// The names of the jobs `GET /api/v1/jobs` shows `principal`, sorted.
async fn http_job_names(s: &Secured, principal: &str) -> Vec<String> {
    let token = std::fs::read_to_string(&s.files[principal]).unwrap();
    let response = reqwest::Client::new()
        .get(format!("http://{}/api/v1/jobs", s.master_addr))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let doc: serde_json::Value = response.json().await.unwrap();
    let mut names: Vec<String> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// A one-instance batch job of the hello fixture.
fn hello_job(name: &str, module: &str, extra: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\nkind = \"batch\"\nmodule = \"{module}\"\n\
         args = [\"tenant\"]\ninstances = 1\nretries = 0\n{extra}\
         [resources]\ncpus = 0.1\nmem = \"32MiB\"\n"
    )
}

#[tokio::test]
async fn a_tenants_jobs_and_their_tasks_are_its_own() {
    let s = Secured::start().await;
    let d = s.dir.path();
    std::fs::copy(corral_wasm_tasks::HELLO, d.join("hello.wasm")).unwrap();
    let write = |file: &str, body: String| std::fs::write(d.join(file), body).unwrap();

    // Alice's job runs its task for her: she lists both, and reads the task's output.
    write("greet.toml", hello_job("greet", "hello.wasm", ""));
    let out = corral_as(
        &s,
        "alice",
        &["job", "submit", "greet.toml", "--wait", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["jobs"][0]["owner"], "alice", "{doc}");
    let out = corral_as(&s, "alice", &["ps", "-a", "-o", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = doc["tasks"].as_array().unwrap();
    assert!(
        tasks
            .iter()
            .any(|t| t["id"] == "greet.0" && t["owner"] == "alice"),
        "{doc}"
    );
    let out = corral_as(&s, "alice", &["logs", "greet.0"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("tenant"),
        "{}",
        text(&out.stdout)
    );

    // Bob's job naming alice's module by digest fails: she has not shared it with him (and
    // he has not uploaded the same bytes, which would make him an owner too).
    let digest = corral_types::Digest::of(&std::fs::read(d.join("hello.wasm")).unwrap());
    write("borrow.toml", hello_job("borrow", &digest.to_string(), ""));
    let out = corral_as(
        &s,
        "bob",
        &["job", "submit", "borrow.toml", "--wait", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("not shared it with principal bob"),
        "{}",
        text(&out.stdout)
    );
    // Bob sees neither of alice's, cannot touch them, and cannot take the job's name.
    let out = corral_as(&s, "bob", &["job", "ls", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("greet"),
        "{}",
        text(&out.stdout)
    );
    let out = corral_as(&s, "bob", &["ps", "-a", "-o", "json"]).await;
    assert!(
        !text(&out.stdout).contains("greet"),
        "{}",
        text(&out.stdout)
    );
    refused_with(
        &corral_as(&s, "bob", &["job", "kill", "greet"]).await,
        "no job is named \"greet\"",
    );
    let out = corral_as(&s, "bob", &["logs", "greet.0"]).await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    refused_with(
        &corral_as(&s, "bob", &["job", "submit", "greet.toml"]).await,
        "belongs to another principal",
    );

    // Nor may he run a job in a role the ACLs do not give him.
    write(
        "elsewhere.toml",
        hello_job("elsewhere", "hello.wasm", "role = \"eng\"\n"),
    );
    refused_with(
        &corral_as(&s, "bob", &["job", "submit", "elsewhere.toml"]).await,
        "may not register_framework on role eng",
    );

    // Ops may view alice's jobs (an ACL grants it) but not change them.
    let out = corral_as(&s, "ops", &["job", "ls", "-o", "json"]).await;
    assert!(text(&out.stdout).contains("greet"), "{}", text(&out.stdout));
    assert!(
        !text(&out.stdout).contains("borrow"),
        "{}",
        text(&out.stdout)
    );
    let out = corral_as(&s, "ops", &["job", "ls", "-o", "wide"]).await;
    let greet = text(&out.stdout);
    let greet = greet
        .lines()
        .find(|l| l.contains("greet"))
        .unwrap_or_default();
    assert!(
        greet.contains("alice"),
        "the OWNER column: {}",
        text(&out.stdout)
    );
    refused_with(
        &corral_as(&s, "ops", &["job", "kill", "greet"]).await,
        "may not manage_jobs on principal alice",
    );

    // The HTTP API applies the same rules, to the caller it serves.
    assert_eq!(http_job_names(&s, "alice").await, ["greet"]);
    assert_eq!(http_job_names(&s, "bob").await, ["borrow"]);
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/jobs/greet/kill", s.master_addr))
        .bearer_auth(std::fs::read_to_string(&s.files["bob"]).unwrap().trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);

    let audit = std::fs::read_to_string(d.join("audit.log")).unwrap();
    let has = |principal: &str, outcome: &str| {
        audit.lines().any(|l| {
            let line: serde_json::Value = serde_json::from_str(l).unwrap();
            line["principal"] == principal
                && line["action"] == "manage_jobs"
                && line["outcome"] == outcome
        })
    };
    assert!(has("alice", "allowed"), "{audit}");
    assert!(has("ops", "denied"), "{audit}");
}

#[tokio::test]
async fn a_jobs_framework_of_its_own_keeps_the_masters_rules() {
    let s = Secured::start_with(&["--no-builtin-frameworks"]).await;
    let d = s.dir.path();
    let port = free_port();
    let _jobs: Proc = spawn_logging_to(
        &[
            "frameworks",
            "run",
            "--master",
            &s.master_addr,
            "--token-file",
            &s.files["jobs"],
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        std::fs::File::create(d.join("jobs.log")).unwrap(),
    );
    eventually("the jobs framework answers alice", async || {
        let out = corral_as(&s, "alice", &["job", "ls"]).await;
        eprintln!(
            "DBG {}",
            std::fs::read_to_string(d.join("jobs.log")).unwrap()
        );
        out.status.success()
    })
    .await;

    // Its port refuses a caller without a token, as the master's does.
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = corral_proto::limits::jobs_client(channel)
        .list_jobs(corral_proto::v1::ListJobsRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    // Alice's job runs its task for her, though another principal's framework launches it.
    std::fs::copy(corral_wasm_tasks::HELLO, d.join("hello.wasm")).unwrap();
    std::fs::write(d.join("greet.toml"), hello_job("greet", "hello.wasm", "")).unwrap();
    let out = corral_as(
        &s,
        "alice",
        &["job", "submit", "greet.toml", "--wait", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = corral_as(&s, "alice", &["ps", "-a", "-o", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "greet.0" && t["owner"] == "alice" && t["state"] == "FINISHED"),
        "{doc}"
    );

    // Bob neither sees nor kills it, there or through the master's HTTP API.
    let out = corral_as(&s, "bob", &["job", "ls", "-o", "json"]).await;
    assert!(
        !text(&out.stdout).contains("greet"),
        "{}",
        text(&out.stdout)
    );
    refused_with(
        &corral_as(&s, "bob", &["job", "kill", "greet"]).await,
        "no job is named \"greet\"",
    );
    assert_eq!(http_job_names(&s, "alice").await, ["greet"]);
    assert!(http_job_names(&s, "bob").await.is_empty());
}

#[tokio::test]
async fn a_tenants_jobs_launch_at_its_launch_rate_and_others_go_on() {
    // Alice may launch two tasks, then one every 1,000 s: her job's third waits.
    let rates_dir = tempfile::tempdir().unwrap();
    let rates = rates_dir.path().join("rates.toml");
    std::fs::write(
        &rates,
        "[[principal]]\nname = \"alice\"\nlaunches = { per_second = 0.001, burst = 2 }\n",
    )
    .unwrap();
    let s = Secured::start_with(&["--rate-limits", rates.to_str().unwrap()]).await;
    let d = s.dir.path();
    std::fs::copy(corral_wasm_tasks::HELLO, d.join("hello.wasm")).unwrap();
    let job =
        |name: &str| hello_job(name, "hello.wasm", "").replace("instances = 1", "instances = 3");
    std::fs::write(d.join("paced.toml"), job("paced")).unwrap();
    std::fs::write(d.join("free.toml"), job("free")).unwrap();

    let out = corral_as(&s, "alice", &["job", "submit", "paced.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut status = serde_json::Value::Null;
    eventually("two of alice's instances run", async || {
        let out = corral_as(&s, "alice", &["job", "status", "paced", "-o", "json"]).await;
        status = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["succeeded"] == 2
    })
    .await;
    assert_eq!(status["waiting"], 1, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("held back by the launch rate of principal alice")),
        "{status}"
    );

    // Bob's launches are his own: his job runs whole meanwhile.
    let out = corral_as(
        &s,
        "bob",
        &["job", "submit", "free.toml", "--wait", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = corral_as(&s, "alice", &["job", "status", "paced", "-o", "json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&status["succeeded"], &status["waiting"]),
        (&2.into(), &1.into()),
        "{status}"
    );
}

//! The master's HTTP JSON API (`/api/v1/`) on its gRPC port: every endpoint its OpenAPI
//! document names answers, filters and pages work, and bad requests get JSON errors with the
//! right status.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use serde_json::json;

use crate::cluster::{Cluster, module_digest, text};

/// A service of one instance sleeping 10 minutes, named `name`, running module `digest`.
fn service_spec(name: &str, digest: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\nkind = \"service\"\nmodule = \"{digest}\"\n\
         args = [\"sleep\", \"600000\"]\ninstances = 1\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n"
    )
}

/// `POST /api/v1/jobs` with a TOML spec; asserts 201 and returns the jobs.
async fn submit(cluster: &Cluster, spec: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/jobs", cluster.master_addr))
        .header("content-type", "application/toml")
        .body(spec.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let doc: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    doc
}

/// `method url`: the status and the JSON body.
async fn call(method: Method, url: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    let doc = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body:?}"));
    (status, doc)
}

/// `GET` of a path of the master's API; asserts 200.
async fn get(cluster: &Cluster, path: &str) -> Value {
    let url = format!("http://{}{path}", cluster.master_addr);
    let (status, doc) = call(Method::GET, &url).await;
    assert_eq!(status, StatusCode::OK, "{path}: {doc}");
    doc
}

/// Asserts `method path` fails with `status` and a JSON error saying so.
async fn refused(cluster: &Cluster, method: Method, path: &str, status: StatusCode) -> String {
    let url = format!("http://{}{path}", cluster.master_addr);
    let (got, doc) = call(method, &url).await;
    assert_eq!(got, status, "{path}: {doc}");
    assert_eq!(doc["error"]["status"], status.as_u16(), "{path}: {doc}");
    doc["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_documented_endpoint_answers_and_bad_requests_get_json_errors() {
    let cluster = Cluster::start(&[]).await;
    cluster.run_hello().await;
    let (_sleeping, running) = cluster.start_sleeping_task().await;
    let agent = get(&cluster, "/api/v1/agents").await["agents"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // An agent's free resources are its total less what its tasks use.
    let one = get(&cluster, &format!("/api/v1/agents/{agent}")).await;
    let cpus = |kind: &str| one[kind]["cpus_milli"].as_u64().unwrap();
    assert_eq!(cpus("free"), cpus("total") - cpus("used"), "{one}");
    assert!(cpus("used") > 0, "the sleeping task holds cpus: {one}");

    let summary = get(&cluster, "/api/v1/summary").await;
    assert_eq!(summary["agents"]["ADMITTED"], 1, "{summary}");
    assert_eq!(summary["tasks"]["RUNNING"], 1, "{summary}");
    assert!(summary["master"]["epoch"].as_u64() >= Some(1), "{summary}");

    let tasks = get(&cluster, "/api/v1/tasks?state=running").await;
    let ids: Vec<&str> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [running.as_str()]);
    let task = get(&cluster, &format!("/api/v1/tasks/{running}")).await;
    assert_eq!(task["state"], "RUNNING");
    assert_eq!(task["agent_id"], agent.as_str());
    // Pages of one: the finished task, then the running one, then no more.
    let first = get(&cluster, "/api/v1/tasks?page_size=1").await;
    assert_eq!(first["tasks"].as_array().unwrap().len(), 1);
    let token = first["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty());
    let second = get(
        &cluster,
        &format!("/api/v1/tasks?page_size=1&page_token={token}"),
    )
    .await;
    assert_eq!(second["tasks"].as_array().unwrap().len(), 1);
    assert_ne!(second["tasks"][0]["id"], first["tasks"][0]["id"]);
    assert_eq!(second["next_page_token"], "");
    assert_eq!(
        get(&cluster, "/api/v1/tasks?job=none-such").await["tasks"],
        Value::Array(Vec::new())
    );

    // Modules: hello, run once and cached by the agent; limits, running now.
    let modules = get(&cluster, "/api/v1/modules").await;
    let module = |digest: &str| {
        modules["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["digest"] == digest)
            .cloned()
            .unwrap_or_else(|| panic!("{digest} in {modules}"))
    };
    let hello = module(&module_digest(corral_wasm_tasks::HELLO));
    assert_eq!(
        (&hello["active_tasks"], &hello["cached_on_agents"]),
        (&json!(0), &json!(1)),
        "{hello}"
    );
    assert_eq!(
        module(&module_digest(corral_wasm_tasks::LIMITS))["active_tasks"],
        1,
        "{modules}"
    );

    // Jobs to name: a service (scaled, then killed) and a cron job (run, suspended, resumed).
    let limits = module_digest(corral_wasm_tasks::LIMITS);
    submit(&cluster, &service_spec("web", &limits)).await;
    submit(
        &cluster,
        &format!(
            "version = 1\nname = \"nightly\"\nkind = \"cron\"\nmodule = \"{limits}\"\n\
             args = [\"exit\", \"0\"]\nschedule = \"0 3 * * *\"\n[resources]\ncpus = 0.1\n"
        ),
    )
    .await;

    // Every path of the document, with real IDs; kills last.
    let document = get(&cluster, "/api/v1/openapi.json").await;
    assert_eq!(document["openapi"], "3.0.3");
    // Parameters say what the handlers take: a generated client must send a scale's count.
    let scale = &document["paths"]["/api/v1/jobs/{name}/scale"]["post"]["parameters"];
    let instances = scale
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "instances")
        .unwrap();
    assert_eq!(instances["required"], true, "{instances}");
    assert_eq!(instances["schema"]["type"], "integer", "{instances}");
    let mut paths: Vec<(&String, &Value)> = document["paths"].as_object().unwrap().iter().collect();
    assert!(paths.len() >= 10, "{document}");
    paths.sort_by_key(|(path, _)| path.ends_with("/kill"));
    for (path, item) in paths {
        let cron = ["/run", "/suspend", "/resume"]
            .iter()
            .any(|c| path.ends_with(c));
        let mut concrete = path
            .replace("/agents/{id}", &format!("/agents/{agent}"))
            .replace("/tasks/{id}", &format!("/tasks/{running}"))
            .replace("{name}", if cron { "nightly" } else { "web" });
        if concrete.ends_with("/scale") {
            concrete.push_str("?instances=2");
        }
        if concrete.ends_with("/drain") {
            // The running task may go on.
            concrete.push_str("?deadline_seconds=600");
        }
        if concrete.contains("/files/") {
            concrete.push_str("?path=stdout");
        }
        for (method, operation) in item.as_object().unwrap() {
            if method == "post" && concrete == "/api/v1/jobs" {
                let body = &operation["requestBody"];
                assert_eq!(body["required"], true, "{operation}");
                assert!(body["content"]["application/toml"].is_object(), "{body}");
                continue; // Submitted above: it takes a body.
            }
            assert!(operation.get("requestBody").is_none(), "{operation}");
            let method: Method = method.to_ascii_uppercase().parse().unwrap();
            let url = format!("http://{}{concrete}", cluster.master_addr);
            let produces = operation["responses"]["200"]["content"]
                .as_object()
                .and_then(|c| c.keys().next())
                .unwrap();
            if produces == "application/json" {
                let (status, doc) = call(method.clone(), &url).await;
                assert_eq!(status, StatusCode::OK, "{method} {concrete}: {doc}");
            } else {
                // Bytes or an endless event stream: the status and type only.
                let response = reqwest::Client::new()
                    .request(method.clone(), &url)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{method} {concrete}");
                assert_eq!(response.headers()["content-type"], produces.as_str());
            }
        }
    }
    let web = get(&cluster, "/api/v1/jobs/web").await;
    assert_eq!(
        (&web["state"], &web["instances"]),
        (&json!("killed"), &json!(2)),
        "{web}"
    );

    // The drain above was undone by the reactivate after it (paths are in order).
    assert_eq!(
        get(&cluster, &format!("/api/v1/agents/{agent}")).await["state"],
        "ADMITTED"
    );

    // Sandbox files: a listing, a read that says where to go on from, a download.
    let files = get(&cluster, &format!("/api/v1/tasks/{running}/files")).await;
    let paths: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    // The task's file-system root; stdout and stderr are listed once written.
    assert!(paths.contains(&"root"), "{files}");
    let read = get(
        &cluster,
        &format!("/api/v1/tasks/{running}/files/read?path=stdout&offset=0&length=10"),
    )
    .await;
    assert_eq!(read["complete"], false, "{read}");
    let read_len = read["data"].as_str().unwrap().len() as u64;
    assert_eq!(read["next_offset"].as_u64(), Some(read_len), "{read}");
    let files_of = |query: &str| format!("/api/v1/tasks/{running}/files/{query}");
    let not_found = StatusCode::NOT_FOUND;
    refused(
        &cluster,
        Method::GET,
        &files_of("read"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    refused(
        &cluster,
        Method::GET,
        &files_of("read?path=stdout&offset=x"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    refused(
        &cluster,
        Method::GET,
        &files_of("download?path=no/such/file"),
        not_found,
    )
    .await;
    refused(
        &cluster,
        Method::GET,
        "/api/v1/tasks/no-such-task/files",
        not_found,
    )
    .await;

    let bad = StatusCode::BAD_REQUEST;
    let message = refused(&cluster, Method::GET, "/api/v1/tasks?state=bogus", bad).await;
    assert!(message.contains("bogus"), "{message}");
    refused(&cluster, Method::GET, "/api/v1/tasks?page_size=abc", bad).await;
    refused(&cluster, Method::GET, "/api/v1/tasks?page_size=0", bad).await;
    refused(&cluster, Method::GET, "/api/v1/tasks?label=nokey", bad).await;
    let message = refused(&cluster, Method::GET, "/api/v1/agents?x=1", bad).await;
    assert!(message.contains("\"x\""), "{message}");
    refused(
        &cluster,
        Method::GET,
        "/api/v1/frameworks?include_completed=maybe",
        bad,
    )
    .await;
    let drain = format!("/api/v1/agents/{agent}/drain?deadline_seconds=soon");
    refused(&cluster, Method::POST, &drain, bad).await;
    // A parameter sent in a body, where the endpoint reads the query, is refused and nothing
    // is done: not a drain without the deadline the caller asked for.
    let before = get(&cluster, &format!("/api/v1/agents/{agent}")).await["state"].clone();
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/agents/{agent}/drain",
            cluster.master_addr
        ))
        .header("content-type", "application/json")
        .body(r#"{"deadline_seconds": 600}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), bad);
    let doc: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("query: deadline_seconds"), "{doc}");
    let after = get(&cluster, &format!("/api/v1/agents/{agent}")).await["state"].clone();
    assert_eq!(after, before);
    // Several states are any of them; a parameter that takes one value is refused twice.
    get(&cluster, "/api/v1/tasks?state=RUNNING&state=FINISHED").await;
    let twice = format!("/api/v1/tasks?agent={agent}&agent=other");
    let message = refused(&cluster, Method::GET, &twice, bad).await;
    assert!(
        message.contains("\"agent\" is given more than once"),
        "{message}"
    );
    refused(&cluster, Method::GET, "/api/v1/tasks?label==value", bad).await;
    let missing = StatusCode::NOT_FOUND;
    refused(&cluster, Method::GET, "/api/v1/agents/nope", missing).await;
    refused(&cluster, Method::GET, "/api/v1/tasks/nope", missing).await;
    refused(&cluster, Method::POST, "/api/v1/agents/nope/drain", missing).await;
    refused(&cluster, Method::GET, "/api/v1/nothing/here", missing).await;
    // Off the API too, a JSON 404 that says where things are, not an empty gRPC reply.
    let message = refused(&cluster, Method::GET, "/nothing", missing).await;
    assert!(message.contains("/api/v1/"), "{message}");
    refused(&cluster, Method::GET, "/api/v1", missing).await;
    // What axum refuses before any handler (a path that is not UTF-8, a body past the limit)
    // is JSON too.
    let message = refused(&cluster, Method::GET, "/api/v1/agents/%ff", bad).await;
    assert!(message.contains("UTF-8"), "{message}");
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/jobs", cluster.master_addr))
        .header("content-type", "application/toml")
        .body(vec![b'#'; 3 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let doc: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(doc["error"]["status"], 413, "{doc}");
    let message = refused(
        &cluster,
        Method::DELETE,
        "/api/v1/agents",
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    assert!(message.contains("GET"), "{message}");
    // gRPC still answers on the same port.
    let out = cluster.corral(&["agents", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_redirects_api_requests_to_the_leader_and_says_it_does_not_lead() {
    let Some(etcd) = corral_fixtures::Etcd::start(
        "a_standby_redirects_api_requests_to_the_leader_and_says_it_does_not_lead",
    ) else {
        return;
    };
    let cluster = crate::ha::HaCluster::start(vec![etcd], "2s").await;
    let (leader, _) = cluster.leader_other_than(None).await;
    let standby = &cluster.addrs[1 - leader];
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_follow
        .get(format!("http://{standby}/api/v1/tasks?state=RUNNING"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        response.headers()["location"],
        format!(
            "http://{}/api/v1/tasks?state=RUNNING",
            cluster.addrs[leader]
        )
        .as_str()
    );
    // A client that follows redirects gets the leader's answer.
    let (status, summary) = call(Method::GET, &format!("http://{standby}/api/v1/summary")).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["agents"]["ADMITTED"], 1, "{summary}");
    let metrics = reqwest::get(format!("http://{standby}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("corral_master_leading 0"), "{metrics}");
}

#[tokio::test]
async fn jobs_are_submitted_listed_and_refused_over_http() {
    let cluster = Cluster::start(&[]).await;
    // The module must be in the artifact store: `corral run` put it there.
    cluster.run_hello().await;
    let hello = module_digest(corral_wasm_tasks::HELLO);
    let doc = submit(
        &cluster,
        &service_spec("greeter", &hello).replace("[\"sleep\", \"600000\"]", "[\"api\"]"),
    )
    .await;
    assert_eq!(doc["jobs"][0]["name"], "greeter", "{doc}");
    let listed = get(&cluster, "/api/v1/jobs").await;
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["name"] == "greeter"),
        "{listed}"
    );

    // Bad specs and names get the Jobs service's reasons, as JSON errors.
    let url = format!("http://{}/api/v1/jobs", cluster.master_addr);
    let post = |body: &'static str, content_type: &'static str| {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let doc: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
            (status, doc)
        }
    };
    let (status, doc) = post("", "application/toml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    let (status, doc) = post(
        "version = 1\nname = \"x\"\nkind = \"batch\"\n",
        "application/toml",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("module"),
        "{doc}"
    );
    let (status, doc) = post("{\"version\": 1", "application/json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    let not_found = StatusCode::NOT_FOUND;
    refused(&cluster, Method::GET, "/api/v1/jobs/none-such", not_found).await;
    refused(
        &cluster,
        Method::POST,
        "/api/v1/jobs/none-such/kill",
        not_found,
    )
    .await;
    let bad = StatusCode::BAD_REQUEST;
    refused(&cluster, Method::POST, "/api/v1/jobs/greeter/scale", bad).await;
    refused(
        &cluster,
        Method::POST,
        "/api/v1/jobs/greeter/scale?instances=-1",
        bad,
    )
    .await;
    refused(&cluster, Method::POST, "/api/v1/jobs?format=xml", bad).await;
}

#[tokio::test]
async fn a_followed_file_streams_as_the_task_writes_and_completes_when_it_ends() {
    let cluster = Cluster::start(&[]).await;
    let _run = cluster.spawn_corral(&["run", corral_wasm_tasks::LIMITS, "tick", "10", "100"]);
    let task = cluster.wait_for_running_task().await;
    let url = format!(
        "http://{}/api/v1/tasks/{task}/files/follow?path=stdout",
        cluster.master_addr
    );
    let mut response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (mut text, mut events, mut complete) = (String::new(), Vec::new(), false);
    while !complete {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), response.chunk())
            .await
            .expect("an event within 30 s")
            .unwrap()
            .expect("the stream goes on until complete");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim_start().to_owned())
            };
            match field("event:").as_deref() {
                Some("data") => {
                    let doc: Value = serde_json::from_str(&field("data:").unwrap()).unwrap();
                    events.push(doc);
                }
                Some("complete") => complete = true,
                other => panic!("unexpected event {other:?}: {block}"),
            }
        }
    }
    // Several pieces, in order, contiguous, together the whole output.
    assert!(
        events.len() > 1,
        "the file was followed as it grew: {events:?}"
    );
    let mut offset = 0;
    let mut output = String::new();
    for e in &events {
        assert_eq!(e["offset"].as_u64(), Some(offset), "{events:?}");
        let data = e["data"].as_str().unwrap();
        offset += data.len() as u64;
        output.push_str(data);
    }
    let want: String = (0..10).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(output, want);

    // An unknown task or a missing path is refused before any stream.
    let bad = format!("/api/v1/tasks/{task}/files/follow");
    refused(&cluster, Method::GET, &bad, StatusCode::BAD_REQUEST).await;
    let unknown = "/api/v1/tasks/no-such-task/files/follow?path=stdout";
    refused(&cluster, Method::GET, unknown, StatusCode::NOT_FOUND).await;
}

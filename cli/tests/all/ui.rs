//! The web UI in a real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by `.ci/run`; missing, the test skips loudly). Screenshots of
//! each step are kept under the tests' target tmpdir (`ui-screenshots/`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use corral_fixtures::free_port;
use serde_json::{Value, json};

use crate::cluster::{Cluster, Proc, module_digest};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One WebDriver session of a headless Chromium.
struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: Proc,
    shots: PathBuf,
}

impl Browser {
    async fn start(test: &str) -> Option<Self> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            eprintln!("\n*** SKIPPED {test}: {CHROMEDRIVER} is not installed ***\n");
            return None;
        }
        let port = free_port();
        let driver = Proc(
            std::process::Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,900"],
            },
        }}});
        let mut session = None;
        for _ in 0..100 {
            if let Ok(r) = http
                .post(format!("{base}/session"))
                .header("content-type", "application/json")
                .body(capabilities.to_string())
                .send()
                .await
            {
                let doc: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
                let id = doc["value"]["sessionId"].as_str();
                session = Some(id.unwrap_or_else(|| panic!("no session: {doc}")).to_owned());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Self {
            session: format!("{base}/session/{}", session.expect("chromedriver answers")),
            http,
            _driver: driver,
            shots,
        })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let text = request.send().await.unwrap().text().await.unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        doc["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The element `css` selects, if there is one now.
    async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    async fn text(&self, css: &str) -> Option<String> {
        let element = self.find(css).await?;
        let text = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await;
        text.as_str().map(str::to_owned)
    }

    /// Waits until the text of `css` satisfies `ok` (bounded: 30 s); returns it.
    async fn wait_for(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut last = None;
        for _ in 0..300 {
            last = self.text(css).await;
            if last.as_deref().is_some_and(&ok) {
                return last.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.screenshot("timed-out").await;
        panic!("{css}: still {last:?} after 30 s");
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await.unwrap_or_else(|| panic!("no {css}"));
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await.unwrap_or_else(|| panic!("no {css}"));
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        if let Some(png) = png.as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png)
                .unwrap();
            let path = self.shots.join(format!("{name}.png"));
            std::fs::write(&path, bytes).unwrap();
            eprintln!("screenshot: {}", path.display());
        }
    }
}

#[tokio::test]
async fn the_ui_shows_the_cluster_live_follows_output_drains_an_agent_and_submits_a_job() {
    let Some(browser) = Browser::start("ui").await else {
        return;
    };
    let cluster = Cluster::start(&[]).await;
    let _ticking = cluster.spawn_corral(&[
        "run",
        corral_wasm_tasks::LIMITS,
        "--timeout",
        "120s",
        "--",
        "tick",
        "600",
        "200",
    ]);
    let task = cluster.wait_for_running_task().await;
    let origin = format!("http://{}", cluster.master_addr);

    // Overview: the event stream is open and the running task is counted.
    browser.goto(&format!("{origin}/")).await;
    browser.wait_for("#connection", |t| t == "live").await;
    browser
        .wait_for("#overview-tasks [data-state=\"RUNNING\"]", |t| {
            t.contains('1')
        })
        .await;
    browser.screenshot("overview").await;

    // The task's page: its output grows while it is open.
    browser.goto(&format!("{origin}/#/tasks/{task}")).await;
    browser.wait_for("#task-state", |t| t == "RUNNING").await;
    let early = browser.wait_for("#stdout", |t| t.contains("tick 2")).await;
    let ticks = |text: &str| text.lines().filter(|l| l.starts_with("tick ")).count();
    let later = browser
        .wait_for("#stdout", |t| ticks(t) >= ticks(&early) + 5)
        .await;
    assert!(
        later.starts_with(&early),
        "output is appended, not replaced"
    );
    browser.screenshot("task-output").await;

    // Agents: drain from the UI, with a deadline so the task goes on; the row changes state.
    let agent = cluster.corral(&["agents", "-o", "json"]).await;
    let agents: Value = serde_json::from_slice(&agent.stdout).unwrap();
    let agent = agents["agents"][0]["id"].as_str().unwrap().to_owned();
    let row = format!("tr[data-agent-id=\"{agent}\"]");
    browser.goto(&format!("{origin}/#/agents")).await;
    browser
        .wait_for(&format!("{row} .state"), |t| t == "ADMITTED")
        .await;
    browser
        .type_into(&format!("{row} .drain-deadline"), "600")
        .await;
    browser.click(&format!("{row} button.drain")).await;
    browser
        .wait_for(&format!("{row} .state"), |t| t == "DRAINING")
        .await;
    browser.screenshot("agent-draining").await;
    browser.click(&format!("{row} button.reactivate")).await;
    browser
        .wait_for(&format!("{row} .state"), |t| t == "ADMITTED")
        .await;
    // And the master agrees.
    let after = cluster.corral(&["agents", "-o", "json"]).await;
    let after: Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(after["agents"][0]["state"], "ADMITTED");

    // Modules: the one running, listed with its task.
    let limits = module_digest(corral_wasm_tasks::LIMITS);
    browser.goto(&format!("{origin}/#/modules")).await;
    browser
        .wait_for("#module-rows", |t| t.contains(&limits))
        .await;

    // Jobs: a spec submitted from the page runs, and shows in the table.
    browser.goto(&format!("{origin}/#/jobs")).await;
    browser
        .type_into(
            "#job-spec",
            &format!(
                "version = 1\nname = \"from-ui\"\nkind = \"service\"\nmodule = \"{limits}\"\n\
                 args = [\"sleep\", \"600000\"]\ninstances = 2\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n"
            ),
        )
        .await;
    browser.click("#job-submit").await;
    browser
        .wait_for("tr[data-job=\"from-ui\"] .state", |t| t == "running")
        .await;
    browser.screenshot("job-submitted").await;
    let job = cluster
        .corral(&["job", "status", "from-ui", "-o", "json"])
        .await;
    assert!(
        job.status.success(),
        "{}",
        crate::cluster::text(&job.stderr)
    );
}

//! A cluster with authentication and ACLs, as an operator sets it up: tokens made with
//! `corral token new`, a master started with `--credentials` and `--acls`, an agent and
//! users presenting their tokens, `corral login`, and a revocation picked up on SIGHUP.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use corral_fixtures::free_port;

use crate::cluster::{CORRAL, Proc, spawn, spawn_logging_to, text};

const ACLS: &str = r#"
[[acl]]
actions = ["register_framework"]
principals = ["alice", "carol", "bob"]
objects = ["*"]

[[acl]]
actions = ["upload_modules"]
principals = ["alice", "carol", "ops", "bob"]

[[acl]]
actions = ["register_agent"]
principals = ["agent"]

[[acl]]
actions = ["view_agents", "view_tasks"]
principals = ["ops"]
objects = "any"

[[acl]]
actions = ["view_jobs"]
principals = ["ops"]
objects = ["alice"]

[[acl]]
actions = ["register_framework", "run_tasks_for"]
principals = ["jobs"]
objects = "any"
"#;

/// `corral <args>` in `dir`, with `XDG_CONFIG_HOME` there and no token but what `args` name.
pub(crate) async fn corral_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(CORRAL);
    command
        .args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env_remove("CORRAL_TOKEN")
        .env_remove("CORRAL_TOKEN_FILE")
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("corral {args:?} did not finish within 60 s"))
        .unwrap()
}

/// A token for `principal` made with `corral token new`: its credentials-file entry, and the
/// file holding the token.
async fn new_token(dir: &Path, principal: &str) -> (String, PathBuf) {
    let file = dir.join(format!("{principal}.token"));
    let out = corral_in(
        dir,
        &["token", "new", principal, "--out", file.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let entry = text(&out.stdout);
    let token = std::fs::read_to_string(&file).unwrap();
    assert!(!entry.contains(token.trim()), "the entry holds no secret");
    assert_owner_only(&file);
    (entry, file)
}

/// A file only its owner may read or write.
pub(crate) fn assert_owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{} is its owner's only",
        path.display()
    );
}

/// Polls until `check` holds (bounded: 30 s).
pub(crate) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 30 s");
}

/// A master with credentials (alice, bob, ops, jobs, agent), ACLs and an audit log, and an agent it
/// admitted; processes killed on drop.
pub(crate) struct Secured {
    pub(crate) dir: tempfile::TempDir,
    master: Proc,
    _agent: Proc,
    pub(crate) master_addr: String,
    entries: String,
    credentials: PathBuf,
    /// Each principal's token file.
    pub(crate) files: std::collections::HashMap<&'static str, String>,
}

impl Secured {
    pub(crate) async fn start() -> Secured {
        Self::start_with(&[]).await
    }

    /// [`Secured::start`], the master given `master_args` too.
    pub(crate) async fn start_with(master_args: &[&str]) -> Secured {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut entries = String::new();
        let mut files = std::collections::HashMap::new();
        for principal in ["alice", "bob", "ops", "jobs", "agent"] {
            let (entry, file) = new_token(d, principal).await;
            entries.push_str(&entry);
            files.insert(principal, file.to_str().unwrap().to_owned());
        }
        let credentials = d.join("credentials.toml");
        std::fs::write(&credentials, &entries).unwrap();
        std::fs::write(d.join("acls.toml"), ACLS).unwrap();
        let master_addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(d.join("master.log")).unwrap();
        let work_dir = d.join("master");
        let acls = d.join("acls.toml");
        let audit = d.join("audit.log");
        let mut args = vec![
            "master",
            "--listen",
            &master_addr,
            "--work-dir",
            work_dir.to_str().unwrap(),
            "--credentials",
            credentials.to_str().unwrap(),
            "--acls",
            acls.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ];
        args.extend(master_args);
        let master = spawn_logging_to(&args, log);
        let agent: Proc = spawn(&[
            "agent",
            "--master",
            &master_addr,
            "--token-file",
            &files["agent"],
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--work-dir",
            d.join("agent").to_str().unwrap(),
            "--resources",
            "cpus=2,mem=1GiB,disk=1GiB",
        ]);
        let m = ["--master", &master_addr];
        eventually("the agent is admitted", async || {
            let out = corral_in(
                d,
                &[
                    "agents",
                    m[0],
                    m[1],
                    "-o",
                    "json",
                    "--token-file",
                    &files["ops"],
                ],
                None,
            )
            .await;
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|doc| doc["agents"].as_array().is_some_and(|a| a.len() == 1))
        })
        .await;
        Secured {
            master,
            _agent: agent,
            master_addr,
            entries,
            credentials,
            files,
            dir,
        }
    }
}

#[tokio::test]
async fn a_secured_cluster_serves_its_principals_and_reloads_credentials_on_sighup() {
    let s = Secured::start().await;
    let (d, files, master_addr) = (s.dir.path(), &s.files, &s.master_addr);
    let m = ["--master", master_addr.as_str()];

    // Alice runs a task with her token; nobody runs one without.
    let run = [
        "run",
        m[0],
        m[1],
        "--token-file",
        &files["alice"],
        corral_wasm_tasks::HELLO,
        "--",
        "alice",
    ];
    let out = corral_in(d, &run, None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("alice"), "{}", text(&out.stdout));
    let out = corral_in(d, &["run", m[0], m[1], corral_wasm_tasks::HELLO], None).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a refused token is the user's to fix"
    );
    assert!(
        text(&out.stderr).contains("bearer token"),
        "{}",
        text(&out.stderr)
    );
    // Ops may not launch: the ACLs give it no role.
    let out = corral_in(
        d,
        &[
            "run",
            m[0],
            m[1],
            "--token-file",
            &files["ops"],
            corral_wasm_tasks::HELLO,
        ],
        None,
    )
    .await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("may not"),
        "{}",
        text(&out.stderr)
    );

    // `corral login` keeps alice's token (refusing one typed nowhere), and later commands use it.
    let alice_token = std::fs::read(&files["alice"]).unwrap();
    let out = corral_in(d, &["login", m[0], m[1]], Some(b"not-a-token")).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = corral_in(d, &["login", m[0], m[1]], Some(&alice_token)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let kept = d.join("config").join("corral").join("token");
    assert_owner_only(&kept);
    let ps = corral_in(d, &["ps", m[0], m[1], "-a", "-o", "json"], None).await;
    assert_eq!(ps.status.code(), Some(0), "{}", text(&ps.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(doc["tasks"].as_array().map(Vec::len), Some(1), "{doc}");

    // Alice's token is revoked and carol's added: SIGHUP, and it holds from then on.
    let (carol, carol_file) = new_token(d, "carol").await;
    let kept_entries: String = s
        .entries
        .split("[[principal]]")
        .filter(|e| !e.contains("\"alice\"") && !e.trim().is_empty())
        .map(|e| format!("[[principal]]{e}"))
        .collect();
    std::fs::write(&s.credentials, format!("{kept_entries}{carol}")).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.master.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually("alice's token is refused", async || {
        let ps = corral_in(d, &["ps", m[0], m[1]], None).await;
        ps.status.code() == Some(2) && text(&ps.stderr).contains("unknown token")
    })
    .await;
    let carol_ps = [
        "ps",
        m[0],
        m[1],
        "--token-file",
        carol_file.to_str().unwrap(),
    ];
    let out = corral_in(d, &carol_ps, None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("alice"),
        "carol sees none of alice's tasks"
    );
    let out = corral_in(d, &["logout"], None).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!kept.exists());

    // The audit log has the run, the refusals and the revoked token's attempt.
    let audit = std::fs::read_to_string(d.join("audit.log")).unwrap();
    for needle in [
        r#""principal":"alice","action":"register_framework""#,
        r#""principal":"ops","action":"register_framework""#,
        r#""action":"upload_modules""#,
        r#""reason":"unknown token""#,
    ] {
        let found = audit.lines().any(|l| {
            let line: serde_json::Value = serde_json::from_str(l).unwrap();
            let want: serde_json::Value = serde_json::from_str(&format!("{{{}}}", needle)).unwrap();
            want.as_object().unwrap().iter().all(|(k, v)| &line[k] == v)
        });
        assert!(found, "no audit line with {needle}:\n{audit}");
    }
    for file in files.values() {
        let secret = std::fs::read_to_string(file).unwrap();
        assert!(!audit.contains(secret.trim()));
        assert!(
            !std::fs::read_to_string(d.join("master.log"))
                .unwrap()
                .contains(secret.trim())
        );
    }
}

#[tokio::test]
async fn the_ui_signs_in_with_a_token_and_shows_a_principal_only_what_it_may_see() {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let Some(browser) = corral_fixtures::browser::Browser::start("ui-secure", &shots)
        .await
        .unwrap()
    else {
        return;
    };
    let s = Secured::start().await;
    let d = s.dir.path();
    let run = [
        "run",
        "--master",
        &s.master_addr,
        "--token-file",
        &s.files["alice"],
        corral_wasm_tasks::HELLO,
    ];
    let out = corral_in(d, &run, None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let origin = format!("http://{}", s.master_addr);
    let token = |who: &str| {
        std::fs::read_to_string(&s.files[who])
            .unwrap()
            .trim()
            .to_owned()
    };

    // Without a token the page asks for one, saying why.
    browser.goto(&format!("{origin}/")).await.unwrap();
    browser
        .wait_for("#login-why", |t| t.contains("bearer token"))
        .await
        .unwrap();
    browser.screenshot("sign-in").await.unwrap();
    // A wrong token is refused in place.
    browser
        .type_into("#login-token", "not-the-token")
        .await
        .unwrap();
    browser.click("#login-form button").await.unwrap();
    browser
        .wait_for("#login-why", |t| t.contains("unknown token"))
        .await
        .unwrap();

    // Ops may see everyone's tasks: signed in, the event stream (cookie-borne) is live.
    browser
        .type_into("#login-token", &token("ops"))
        .await
        .unwrap();
    browser.click("#login-form button").await.unwrap();
    browser
        .wait_for("#principal", |t| t == "Signed in as ops")
        .await
        .unwrap();
    browser
        .wait_for("#connection", |t| t == "live")
        .await
        .unwrap();
    browser.screenshot("signed-in-ops").await.unwrap();

    // Signed out, the page asks again; alice sees her own task in the tasks view.
    browser.click("#sign-out").await.unwrap();
    browser
        .wait_for("#login-why", |t| t.contains("bearer token"))
        .await
        .unwrap();
    browser
        .type_into("#login-token", &token("alice"))
        .await
        .unwrap();
    browser.click("#login-form button").await.unwrap();
    browser
        .wait_for("#principal", |t| t == "Signed in as alice")
        .await
        .unwrap();
    browser.goto(&format!("{origin}/#/tasks")).await.unwrap();
    browser
        .wait_for("#task-rows", |t| t.contains("FINISHED"))
        .await
        .unwrap();
    browser.screenshot("signed-in-alice").await.unwrap();
    // The cookie is the browser's alone: no script on the page can read the token.
    let cookies = browser
        .run_async("arguments[0](document.cookie)")
        .await
        .unwrap();
    assert_eq!(cookies, "", "the token cookie is HttpOnly");
}

/// Waits for the (plaintext) master at `addr` to lead, and sees a registry write of its go
/// through etcd and back.
async fn leads_writing_through_etcd(addr: &str) {
    use corral_fixtures::{set_weight, wait_for_master, weight};

    let dialer = corral_proto::tls::Dialer::default();
    wait_for_master(&dialer, &[addr.to_owned()], Duration::from_secs(30))
        .await
        .expect("the master leads through etcd");
    let conn = dialer.connect(addr).await.unwrap();
    set_weight(conn.clone(), "eng", 2.0).await.unwrap();
    assert_eq!(weight(conn, "eng").await.unwrap(), Some(2.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn masters_reach_etcd_over_tls_presenting_a_client_certificate() {
    use corral_fixtures::{Etcd, EtcdTls};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = corral_in(d, &["tls", "init", "certs"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pem = |f: &str| d.join(f).to_str().unwrap().to_owned();
    // etcd serves TLS only and wants a certificate of the cluster's CA from every client.
    let Some(etcd) = Etcd::start_tls(
        "masters_reach_etcd_over_tls_presenting_a_client_certificate",
        &EtcdTls {
            cert: d.join("certs/master.pem"),
            key: d.join("certs/master-key.pem"),
            client_ca: d.join("certs/ca.pem"),
        },
    ) else {
        return;
    };
    let store = format!("etcd://{}/corral", etcd.client_addr());
    let master = |work: &str, addr: &str, tls: &[String]| {
        let mut args: Vec<String> = [
            "master",
            "--listen",
            addr,
            "--work-dir",
            &pem(work),
            "--store",
            &store,
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend_from_slice(tls);
        let log = std::fs::File::create(d.join(format!("{work}.log"))).unwrap();
        spawn_logging_to(&args.iter().map(String::as_str).collect::<Vec<_>>(), log)
    };

    // With etcd's CA and a client certificate the master leads, and its registry writes
    // go through etcd.
    let addr = format!("127.0.0.1:{}", free_port());
    let with_cert = [
        "--etcd-ca-cert",
        &pem("certs/ca.pem"),
        "--etcd-cert",
        &pem("certs/master.pem"),
        "--etcd-key",
        &pem("certs/master-key.pem"),
    ]
    .map(str::to_owned);
    let _leader = master("leader", &addr, &with_cert);
    leads_writing_through_etcd(&addr).await;

    // Without a client certificate etcd refuses the handshake: the master says why.
    let refused = format!("127.0.0.1:{}", free_port());
    let _refused = master("refused", &refused, &with_cert[..2]);
    let log = d.join("refused.log");
    eventually("the refused master to say why", async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("cannot lead") && text.to_lowercase().contains("certificate")
    })
    .await;

    // Flags that cannot work are refused at once.
    let out = corral_in(d, &["master", "--etcd-ca-cert", &pem("certs/ca.pem")], None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--store etcd://"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn masters_authenticate_to_etcd_as_a_user_and_never_show_its_password() {
    use corral_fixtures::Etcd;

    let Some(etcd) = Etcd::start("masters_authenticate_to_etcd_as_a_user") else {
        return;
    };
    const PASSWORD: &str = "etcd-s3cret-pw";
    etcd.enable_auth(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("right"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(d.join("wrong"), "not-the-password\n").unwrap();
    let store = format!("etcd://{}/corral", etcd.client_addr());
    let master = |work: &str, addr: &str, password_file: &str| {
        let (work_dir, file) = (d.join(work), d.join(password_file));
        let args = [
            "master",
            "--listen",
            addr,
            "--work-dir",
            work_dir.to_str().unwrap(),
            "--store",
            &store,
            "--etcd-user",
            "root",
            "--etcd-password-file",
            file.to_str().unwrap(),
            "--log-level",
            "debug",
        ];
        let log = std::fs::File::create(d.join(format!("{work}.log"))).unwrap();
        spawn_logging_to(&args, log)
    };

    // With the password the master leads, and its registry writes go through etcd.
    let addr = format!("127.0.0.1:{}", free_port());
    let _leader = master("leader", &addr, "right");
    leads_writing_through_etcd(&addr).await;

    // With a wrong one etcd refuses it, and the master says why.
    let refused = format!("127.0.0.1:{}", free_port());
    let _refused = master("refused", &refused, "wrong");
    let log = d.join("refused.log");
    eventually("the refused master to say why", async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("cannot lead") && text.contains("authentication failed")
    })
    .await;
    for log in ["leader.log", "refused.log"] {
        let text = std::fs::read_to_string(d.join(log)).unwrap();
        assert!(!text.contains(PASSWORD), "{log} shows the password");
    }

    // Flags that cannot work are refused at once.
    let right = d.join("right");
    let right = right.to_str().unwrap();
    let without_etcd = [
        "master",
        "--etcd-user",
        "root",
        "--etcd-password-file",
        right,
    ];
    let out = corral_in(d, &without_etcd, None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--store etcd://"),
        "{}",
        text(&out.stderr)
    );
    let out = corral_in(d, &["master", "--etcd-user", "root"], None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--etcd-password-file"),
        "{}",
        text(&out.stderr)
    );
}

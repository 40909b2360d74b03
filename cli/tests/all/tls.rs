//! A cluster speaking TLS as an operator sets it up with `corral tls init`: clients trusting
//! its CA, agents presenting their certificates, an agent serving its files to masters only,
//! and clients and agents without the right certificates refused.

use std::path::Path;

use corral_fixtures::free_port;

use crate::cluster::{Proc, spawn, spawn_logging_to, text};
use crate::secure::{assert_owner_only, corral_in, eventually};

#[tokio::test]
async fn a_tls_cluster_serves_clients_that_trust_its_ca_and_agents_with_its_certificates() {
    use corral_proto::auth::Token;
    use corral_proto::tls::{Dialer, Tls};
    use corral_proto::{limits, v1};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, hosts) in [
        ("certs", &["--host", "cluster.test"][..]),
        ("other", &[][..]),
    ] {
        let out = corral_in(d, &[&["tls", "init", name][..], hosts].concat(), None).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    assert_owner_only(&d.join("certs/ca-key.pem"));
    assert_owner_only(&d.join("certs/master-key.pem"));
    let again = corral_in(d, &["tls", "init", "certs"], None).await;
    assert_eq!(
        again.status.code(),
        Some(2),
        "existing material is not replaced"
    );
    let pem = |f: &str| d.join(f).to_str().unwrap().to_owned();
    let (master_addr, agent_addr, _cluster) = tls_cluster(d, &[]).await;
    let ca = [
        "--master",
        master_addr.as_str(),
        "--ca-cert",
        &pem("certs/ca.pem"),
    ];

    // A task runs, and its output comes back through the master from the agent (both TLS).
    let out = corral_in(
        d,
        &[
            &["run"][..],
            &ca[..],
            &[corral_wasm_tasks::HELLO, "--", "tls"],
        ]
        .concat(),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("tls"), "{}", text(&out.stdout));
    let ps = corral_in(
        d,
        &[&["ps", "-a", "-o", "json"][..], &ca[..]].concat(),
        None,
    )
    .await;
    let doc: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let task = doc["tasks"][0]["id"].as_str().unwrap().to_owned();
    let logs = corral_in(d, &[&["logs", &task][..], &ca[..]].concat(), None).await;
    assert_eq!(logs.status.code(), Some(0), "{}", text(&logs.stderr));
    assert!(text(&logs.stdout).contains("tls"));

    // The agent serves its files to masters only: another agent's certificate, signed by
    // the same CA, is refused.
    let read_on_agent = async |role: &str| {
        let tls = Tls::trusting(&d.join("certs/ca.pem"))
            .unwrap()
            .with_identity(
                &d.join(format!("certs/{role}.pem")),
                &d.join(format!("certs/{role}-key.pem")),
            )
            .unwrap();
        let conn = Dialer::new(Some(tls), Token::none())
            .connect(&agent_addr)
            .await
            .unwrap();
        limits::operator_client(conn)
            .read_file(v1::ReadFileRequest {
                task_id: task.clone(),
                path: "stdout".into(),
                length: 64,
                ..Default::default()
            })
            .await
    };
    let as_master = read_on_agent("master").await.unwrap().into_inner();
    assert!(String::from_utf8_lossy(&as_master.data).contains("tls"));
    let as_agent = read_on_agent("agent").await.unwrap_err();
    assert_eq!(
        as_agent.code(),
        tonic::Code::PermissionDenied,
        "{as_agent:?}"
    );
    assert!(
        as_agent.message().contains("masters only"),
        "{}",
        as_agent.message()
    );

    // Clients that do not speak the master's TLS are told what to do.
    let plain = corral_in(d, &["agents", "--master", &master_addr], None).await;
    assert_eq!(plain.status.code(), Some(69), "{}", text(&plain.stderr));
    assert!(
        text(&plain.stderr).contains("--ca-cert"),
        "{}",
        text(&plain.stderr)
    );
    let foreign = corral_in(
        d,
        &[
            "agents",
            "--master",
            &master_addr,
            "--ca-cert",
            &pem("other/ca.pem"),
        ],
        None,
    )
    .await;
    assert_eq!(foreign.status.code(), Some(69), "{}", text(&foreign.stderr));
    assert!(
        text(&foreign.stderr).to_lowercase().contains("certificate"),
        "{}",
        text(&foreign.stderr)
    );

    // An agent without a certificate, or with one another CA signed, cannot register.
    let link = async |tls: Tls| -> Result<(), String> {
        let conn = Dialer::new(Some(tls), Token::none())
            .connect(&master_addr)
            .await
            .map_err(|e| e.to_string())?;
        let (_tx, rx) = tokio::sync::mpsc::channel::<v1::AgentMessage>(1);
        limits::agent_link_client(conn)
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map(drop)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    let trusting = Tls::trusting(&d.join("certs/ca.pem")).unwrap();
    let refused = link(trusting.clone()).await.unwrap_err();
    assert!(
        refused.contains("Unauthenticated") && refused.contains("certificate"),
        "{refused}"
    );
    let impostor = trusting
        .with_identity(&d.join("other/agent.pem"), &d.join("other/agent-key.pem"))
        .unwrap();
    assert!(
        link(impostor).await.is_err(),
        "a certificate of another CA is refused in the handshake"
    );

    // Plaintext is not served where other hosts reach it, unless asked for.
    let wide = format!("0.0.0.0:{}", free_port());
    for args in [
        vec!["master", "--listen", &wide, "--work-dir", &pem("wide")],
        vec!["frameworks", "run", "--listen", &wide],
    ] {
        let out = corral_in(d, &args, None).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("--insecure"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// A master and an agent serving TLS with the material `corral tls init` wrote in `d/certs`,
/// the agent also given `agent_args`, once the master has admitted the agent: their
/// addresses, and their processes.
async fn tls_cluster(d: &Path, agent_args: &[&str]) -> (String, String, [Proc; 2]) {
    let pem = |f: &str| d.join(f).to_str().unwrap().to_owned();
    let master_addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(d.join("master.log")).unwrap();
    let master = spawn_logging_to(
        &[
            "master",
            "--listen",
            &master_addr,
            "--work-dir",
            &pem("master"),
            "--ca-cert",
            &pem("certs/ca.pem"),
            "--tls-cert",
            &pem("certs/master.pem"),
            "--tls-key",
            &pem("certs/master-key.pem"),
        ],
        log,
    );
    let agent_addr = format!("127.0.0.1:{}", free_port());
    let agent = spawn(
        &[
            &[
                "agent",
                "--master",
                &master_addr,
                "--listen",
                &agent_addr,
                "--work-dir",
                &pem("agent"),
                "--resources",
                "cpus=2,mem=1GiB,disk=1GiB",
                "--ca-cert",
                &pem("certs/ca.pem"),
                "--tls-cert",
                &pem("certs/agent.pem"),
                "--tls-key",
                &pem("certs/agent-key.pem"),
            ][..],
            agent_args,
        ]
        .concat(),
    );
    let agents = [
        "agents",
        "-o",
        "json",
        "--master",
        &master_addr,
        "--ca-cert",
        &pem("certs/ca.pem"),
    ];
    eventually("the agent is admitted over mutual TLS", async || {
        let out = corral_in(d, &agents, None).await;
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|doc| doc["agents"].as_array().is_some_and(|a| a.len() == 1))
    })
    .await;
    (master_addr, agent_addr, [master, agent])
}

#[tokio::test]
async fn an_agent_told_other_master_names_refuses_the_master_and_run_says_what_it_cannot_show() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = corral_in(d, &["tls", "init", "certs"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (master_addr, _, _cluster) = tls_cluster(d, &["--master-cert-name", "ops-master"]).await;
    let ca = d.join("certs/ca.pem");
    let ca = [
        "--master",
        master_addr.as_str(),
        "--ca-cert",
        ca.to_str().unwrap(),
    ];

    // The task runs; its output, which the agent keeps from the master, is not lost silently.
    let run = &[
        &["run"][..],
        &ca[..],
        &[corral_wasm_tasks::HELLO, "--", "kept"],
    ]
    .concat();
    let out = corral_in(d, run, None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("kept"), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: cannot show the task's stdout")
            && err.contains("CN corral master, not \"ops-master\""),
        "{err}"
    );
}

//! Real etcd servers (Debian's `etcd-server`) on free local ports with temporary data dirs,
//! killed on drop. Shared by the master's and the CLI's test binaries (the CLI includes this
//! file by path), so both start etcd the same way and skip the same loud way without it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One etcd member; killed (SIGKILL) on drop.
pub(crate) struct Etcd {
    child: Child,
    pub(crate) client_port: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts a one-member etcd, or returns `None` (saying so loudly) when it is not installed.
    pub(crate) fn start(test: &str) -> Option<Etcd> {
        Etcd::start_cluster(test, 1).map(|mut members| members.remove(0))
    }

    /// Starts an etcd cluster of `size` members, all ready to serve clients, or returns `None`
    /// (saying so loudly) when etcd is not installed.
    pub(crate) fn start_cluster(test: &str, size: usize) -> Option<Vec<Etcd>> {
        if Command::new("etcd").arg("--version").output().is_err() {
            eprintln!(
                "\n*** SKIPPED {test}: `etcd` is not on PATH (apt-get install -y etcd-server) ***\n"
            );
            return None;
        }
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        // All members start before any is waited on: a member is ready only with a quorum.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let members: Vec<Etcd> = ports
            .iter()
            .enumerate()
            .map(|(i, &(client_port, peer_port))| {
                let dir = tempfile::tempdir().unwrap();
                let client = format!("http://127.0.0.1:{client_port}");
                let peer = format!("http://127.0.0.1:{peer_port}");
                let mut child = Command::new("etcd")
                    .args(["--name", &format!("m{i}"), "--data-dir"])
                    .arg(dir.path())
                    .args(["--listen-client-urls", &client])
                    .args(["--advertise-client-urls", &client])
                    .args(["--listen-peer-urls", &peer])
                    .args(["--initial-advertise-peer-urls", &peer])
                    .args(["--initial-cluster", &initial_cluster])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                // Ready when etcd says so; keep draining its log so it never blocks on the pipe.
                let stderr = child.stderr.take().unwrap();
                let ready_tx = ready_tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        if line.contains("ready to serve client requests") {
                            let _ = ready_tx.send(i);
                        }
                    }
                });
                Etcd {
                    child,
                    client_port,
                    _dir: dir,
                }
            })
            .collect();
        let mut ready = vec![false; size];
        while ready.iter().any(|r| !r) {
            let i = ready_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("etcd did not become ready");
            ready[i] = true;
        }
        Some(members)
    }

    /// `127.0.0.1:port`, where clients reach this member.
    pub(crate) fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd (SIGKILL): nobody can renew a lease through this member any more.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

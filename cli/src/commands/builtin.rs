//! The built-in frameworks inside `corral master` and `corral dev`: the jobs framework runs
//! while the master leads (connected to it like any framework), and its Jobs service is
//! served on the master's port behind the same leader check as the master's own services.
//! `corral frameworks run` runs them in a process of their own instead.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use corral_frameworks::jobs::{JobsFramework, jobs_service};
use corral_master::{Master, MasterConfig};
use corral_proto::tls::Dialer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

/// Pause before running the framework again after it ended on its own (refused, or the
/// connection to its master failed for good).
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// The built-in frameworks, running (in a master, or alone).
#[derive(Debug)]
pub(crate) struct BuiltIn {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts a master that serves the built-in frameworks' services and runs them while it
/// leads; with `builtin` false, a master without them (they run elsewhere).
pub(crate) async fn start_master(
    config: MasterConfig,
    builtin: bool,
) -> anyhow::Result<(Master, BuiltIn)> {
    let listen = config.listen;
    if !builtin {
        let master = Master::start(config)
            .await
            .with_context(|| format!("starting the master on {listen}"))?;
        let (stop, _) = watch::channel(false);
        let task = tokio::spawn(async {});
        return Ok((master, BuiltIn { stop, task }));
    }
    let tls = config.tls.clone();
    let jobs = JobsFramework::new();
    let service = jobs_service(jobs.clone());
    let master = Master::start_with(config, |routes, leader_only| {
        routes.add_service(InterceptedService::new(service, leader_only))
    })
    .await
    .with_context(|| format!("starting the master on {listen}"))?;
    jobs.pace_launches(master.owners_launches());
    let address = dialable(master.local_addr()).to_string();
    let dialer = Dialer::new(tls, master.master_token());
    let mut leadership = master.leadership();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                leads = leadership.leading() => if !leads { return },
                () = until_stopped(&mut stopped) => return,
            }
            let run = jobs.run(vec![address.clone()], dialer.clone());
            tokio::pin!(run);
            tokio::select! {
                result = &mut run => {
                    if let Err(error) = result {
                        tracing::error!(%error, "the jobs framework stopped; starting it again");
                    }
                    tokio::time::sleep(RESTART_DELAY).await;
                }
                () = leadership.not_leading() => {
                    jobs.stop();
                    let _ = run.await;
                }
                () = until_stopped(&mut stopped) => {
                    jobs.stop();
                    let _ = run.await;
                    return;
                }
            }
        }
    });
    Ok((master, BuiltIn { stop, task }))
}

/// Runs the jobs framework alone against `masters` (it follows their leader), again after
/// a pause whenever it ends on its own, until shut down.
pub(crate) fn run_alone(jobs: JobsFramework, masters: Vec<String>) -> BuiltIn {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let run = jobs.run(masters.clone(), crate::client::dialer());
            tokio::pin!(run);
            tokio::select! {
                result = &mut run => {
                    if let Err(error) = result {
                        tracing::error!(%error, "the jobs framework stopped; starting it again");
                    }
                }
                () = until_stopped(&mut stopped) => {
                    jobs.stop();
                    let _ = run.await;
                    return;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RESTART_DELAY) => {}
                () = until_stopped(&mut stopped) => return,
            }
        }
    });
    BuiltIn { stop, task }
}

impl BuiltIn {
    /// Stops the frameworks (their tasks keep running; the next start picks them up).
    pub(crate) async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// An address this process can connect to for `bound` (a wildcard becomes loopback).
pub(crate) fn dialable(bound: SocketAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        let loopback = match bound.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(loopback, bound.port())
    } else {
        bound
    }
}

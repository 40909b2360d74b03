//! Operator event subscribers during a run (`--subscribers N`): each reads the master's event
//! stream (Operator.Subscribe) to its end, decoding and counting events, as a UI or
//! `corral ps --watch` would, so the run measures what watching costs the master.
//!
//! They run on a thread of their own, over a connection of their own, so the CPU time they
//! spend (reading and decoding every event) is counted apart from the load generator's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use corral_proto::tls::Dialer;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::cluster::cpu_clock;
use crate::client;

/// Running subscribers; they stop when this is dropped.
pub(super) struct Watchers {
    events: Arc<AtomicU64>,
    /// Asks the subscribers' thread for the CPU time it has used (`None`: no subscribers).
    cpu: Option<mpsc::UnboundedSender<oneshot::Sender<Duration>>>,
}

impl Watchers {
    /// Subscribes `n` times on the leading master; returns once every subscriber has its
    /// SUBSCRIBED.
    pub(super) async fn start(
        dialer: &Dialer,
        masters: &[String],
        n: usize,
    ) -> anyhow::Result<Self> {
        let events = Arc::new(AtomicU64::new(0));
        if n == 0 {
            return Ok(Self { events, cpu: None });
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let (cpu_tx, cpu_rx) = mpsc::unbounded_channel();
        let (dialer, masters, counted) = (dialer.clone(), masters.to_vec(), events.clone());
        std::thread::Builder::new()
            .name("bench-subscribers".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        runtime.block_on(serve(dialer, masters, n, counted, ready_tx, cpu_rx))
                    }
                    Err(e) => drop(ready_tx.send(Err(e.into()))),
                }
            })
            .context("starting the subscribers' thread")?;
        ready_rx
            .await
            .context("the subscribers' thread stopped")?
            .context("subscribing to the event stream")?;
        Ok(Self {
            events,
            cpu: Some(cpu_tx),
        })
    }

    /// Events received so far, by all subscribers together.
    pub(super) fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The CPU time the subscribers' thread has used so far.
    pub(super) async fn cpu_time(&self) -> Option<Duration> {
        let (tx, rx) = oneshot::channel();
        self.cpu.as_ref()?.send(tx).ok()?;
        rx.await.ok()
    }
}

/// The subscribers' thread: subscribes `n` times, then reads every stream while answering
/// requests for its CPU time, until the bench drops its end of `cpu` (which ends the thread
/// and, with its runtime, the streams).
async fn serve(
    dialer: Dialer,
    masters: Vec<String>,
    n: usize,
    counted: Arc<AtomicU64>,
    ready: oneshot::Sender<anyhow::Result<()>>,
    mut cpu: mpsc::UnboundedReceiver<oneshot::Sender<Duration>>,
) {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let subscribed = async {
            let mut operator = client::operator_as(&dialer, &masters).await?;
            let mut stream = client::events(&mut operator).await?;
            stream.message().await?;
            anyhow::Ok(stream)
        };
        match subscribed.await {
            Ok(stream) => streams.push(stream),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    }
    let mut readers = JoinSet::new();
    for mut stream in streams {
        let counted = counted.clone();
        readers.spawn(async move {
            while let Ok(Some(_)) = stream.message().await {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let _ = ready.send(Ok(()));
    while let Some(reply) = cpu.recv().await {
        let _ = reply.send(cpu_clock(rustix::time::ClockId::ThreadCPUTime));
    }
}

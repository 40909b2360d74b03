//! Operator event subscribers during a run (`--subscribers N`): each reads the master's event
//! stream (Operator.Subscribe) to its end, counting events, as a UI or `corral ps --watch`
//! would, so the run measures what watching costs the master.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use corral_proto::v1;
use tokio::task::JoinSet;

use crate::client::OperatorClient;

/// Running subscribers; they stop when this is dropped.
pub(super) struct Watchers {
    events: Arc<AtomicU64>,
    _tasks: JoinSet<()>,
}

impl Watchers {
    /// Subscribes `n` times; returns once every subscriber has its SUBSCRIBED.
    pub(super) async fn start(client: &OperatorClient, n: usize) -> anyhow::Result<Self> {
        let events = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..n {
            let mut stream = client
                .clone()
                .subscribe(v1::SubscribeEventsRequest { max_tasks: 1 })
                .await?
                .into_inner();
            stream.message().await?;
            let events = events.clone();
            tasks.spawn(async move {
                while let Ok(Some(_)) = stream.message().await {
                    events.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        Ok(Self {
            events,
            _tasks: tasks,
        })
    }

    /// Events received so far, by all subscribers together.
    pub(super) fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

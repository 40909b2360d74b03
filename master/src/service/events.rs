//! The operators' event stream, one for gRPC (`Operator.Subscribe`) and HTTP
//! (`/api/v1/events`): SUBSCRIBED with the state, then the changes the runtime queues for this
//! subscriber after that state, and HEARTBEAT whenever the stream was quiet for the heartbeat
//! interval. A subscriber sees what its ACLs let it list ([`Sight`]): a tenant, its own
//! frameworks and tasks; an operator granted every principal's, all of it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use corral_proto::{ServiceError, limits, v1};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_stream::Stream;
use tonic::Status;

use crate::auth::{Action, Auth, Caller, Object, Visibility};
use crate::core::{Event, OperatorRequest, OperatorResponse, Reply};
use crate::queue::QueueReceiver;
use crate::runtime::{CoreHandle, Sink};

/// What one subscriber may see of the cluster: the listings its ACLs allow.
#[derive(Debug, Clone)]
pub(crate) struct Sight {
    /// Whose tasks.
    tasks: Visibility,
    /// Whose frameworks.
    frameworks: Visibility,
    agents: bool,
    roles: bool,
    /// Every framework's principal (`""`: none), visible or not, to place its removal.
    principals: HashMap<String, String>,
}

impl Sight {
    /// What `caller` may see.
    pub(crate) fn of(auth: &Auth, caller: &Caller) -> Self {
        Self {
            tasks: auth.visibility(caller, Action::ViewTasks),
            frameworks: auth.visibility(caller, Action::ViewFrameworks),
            agents: auth.allows(caller, Action::ViewAgents, Object::Nothing),
            roles: auth.allows(caller, Action::ViewRoles, Object::Nothing),
            principals: HashMap::new(),
        }
    }

    /// Everything: no event is looked at.
    #[cfg(test)]
    fn everything() -> Self {
        Self {
            tasks: Visibility::All,
            frameworks: Visibility::All,
            agents: true,
            roles: true,
            principals: HashMap::new(),
        }
    }

    fn sees_all(&self) -> bool {
        self.tasks == Visibility::All
            && self.frameworks == Visibility::All
            && self.agents
            && self.roles
    }

    fn sees(visible: &Visibility, principal: &str) -> bool {
        visible.sees((!principal.is_empty()).then_some(principal))
    }

    /// Whether it sees a task of `owner` (`TaskSummary.owner`).
    fn sees_task(&self, owner: &str) -> bool {
        Self::sees(&self.tasks, owner)
    }

    /// Keeps of the subscription's state what this subscriber may see.
    fn narrow(&mut self, state: &mut v1::GetStateResponse) {
        if self.sees_all() {
            return;
        }
        for f in &state.frameworks {
            self.principals.insert(f.id.clone(), f.principal.clone());
        }
        state.tasks.retain(|t| self.sees_task(&t.owner));
        let frameworks = &self.frameworks;
        state
            .frameworks
            .retain(|f| Self::sees(frameworks, &f.principal));
        if !self.agents {
            state.agents.clear();
        }
        if !self.roles {
            state.roles.clear();
        }
    }

    /// Whether this subscriber may see `event`.
    fn admits(&mut self, event: &v1::OperatorEvent) -> bool {
        use v1::operator_event::Event as E;
        if self.sees_all() {
            return true;
        }
        match &event.event {
            Some(E::TaskAdded(t)) => self.sees_task(&t.owner),
            Some(E::TaskUpdated(u)) => self.sees_task(&u.owner),
            Some(E::AgentAdded(_) | E::AgentUpdated(_) | E::AgentRemoved(_)) => self.agents,
            Some(E::FrameworkAdded(f) | E::FrameworkUpdated(f)) => {
                self.principals.insert(f.id.clone(), f.principal.clone());
                Self::sees(&self.frameworks, &f.principal)
            }
            Some(E::FrameworkRemoved(id)) => {
                let principal = self.principals.get(id).map_or("", String::as_str);
                Self::sees(&self.frameworks, principal)
            }
            Some(E::Subscribed(_) | E::Heartbeat(_)) | None => true,
        }
    }
}

/// One subscriber's events.
#[derive(Debug)]
pub(crate) struct OperatorEvents {
    first: Option<v1::OperatorEvent>,
    rx: QueueReceiver<Arc<v1::OperatorEvent>>,
    heartbeat: Interval,
    sight: Sight,
}

impl OperatorEvents {
    /// Subscribes: the state (at most `max_tasks` tasks, or the default) and every change after
    /// it.
    pub(crate) async fn subscribe(
        core: &CoreHandle,
        max_tasks: usize,
        mut sight: Sight,
    ) -> Result<Self, ServiceError> {
        let (tx, rx) = core.observer_stream();
        let sink = Sink::Observer(core.conn_id(), tx);
        let reply = core
            .ask(
                Event::Operator(OperatorRequest::Subscribe { max_tasks }),
                Some(sink),
            )
            .await?;
        let Reply::Operator(Ok(OperatorResponse::State(state))) = reply else {
            return Err(match reply {
                Reply::Operator(Err(e)) => e,
                _ => ServiceError::Internal("unexpected reply from the core".into()),
            });
        };
        let every = limits::OPERATOR_HEARTBEAT;
        let mut state = v1::GetStateResponse::from(&*state);
        sight.narrow(&mut state);
        let subscribed = v1::operator_event::Subscribed {
            state: Some(state),
            heartbeat_interval_seconds: u32::try_from(every.as_secs()).unwrap_or(u32::MAX),
        };
        Ok(Self::new(subscribed, rx, every, sight))
    }

    fn new(
        subscribed: v1::operator_event::Subscribed,
        rx: QueueReceiver<Arc<v1::OperatorEvent>>,
        every: Duration,
        sight: Sight,
    ) -> Self {
        let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            first: Some(v1::OperatorEvent {
                event: Some(v1::operator_event::Event::Subscribed(subscribed)),
            }),
            rx,
            heartbeat,
            sight,
        }
    }
}

impl Stream for OperatorEvents {
    type Item = Result<Arc<v1::OperatorEvent>, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Arc::new(first))));
        }
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(event))) if !self.sight.admits(&event) => {}
                Poll::Ready(Some(item)) => {
                    self.heartbeat.reset();
                    return Poll::Ready(Some(item));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        self.heartbeat.poll_tick(cx).map(|_| {
            Some(Ok(Arc::new(v1::OperatorEvent {
                event: Some(v1::operator_event::Event::Heartbeat(
                    v1::operator_event::Heartbeat {},
                )),
            })))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::queue;
    use tokio_stream::StreamExt;

    fn kind(e: &v1::OperatorEvent) -> &'static str {
        use v1::operator_event::Event as E;
        match e.event.as_ref().unwrap() {
            E::Subscribed(_) => "subscribed",
            E::Heartbeat(_) => "heartbeat",
            E::AgentRemoved(_) => "agent_removed",
            _ => "other",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn subscribed_comes_first_and_heartbeats_fill_quiet_spells_only() {
        let (tx, rx) = queue(16);
        let every = Duration::from_secs(15);
        let mut events = OperatorEvents::new(Default::default(), rx, every, Sight::everything());
        assert_eq!(kind(&events.next().await.unwrap().unwrap()), "subscribed");

        // Quiet: a heartbeat once the interval has passed, not before.
        let started = Instant::now();
        assert_eq!(kind(&events.next().await.unwrap().unwrap()), "heartbeat");
        assert_eq!(started.elapsed(), every);

        // A change 10 s in resets the clock: the next heartbeat is 15 s after it.
        tokio::time::advance(Duration::from_secs(10)).await;
        let change = v1::OperatorEvent {
            event: Some(v1::operator_event::Event::AgentRemoved("a1".into())),
        };
        tx.send(Arc::new(change));
        assert_eq!(
            kind(&events.next().await.unwrap().unwrap()),
            "agent_removed"
        );
        let changed = Instant::now();
        assert_eq!(kind(&events.next().await.unwrap().unwrap()), "heartbeat");
        assert_eq!(changed.elapsed(), every);

        // The runtime ending the stream ends it.
        drop(tx);
        assert!(events.next().await.is_none());
    }
}

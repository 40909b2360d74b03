//! The operators' event stream, one for gRPC (`Operator.Subscribe`) and HTTP
//! (`/api/v1/events`): SUBSCRIBED with the state, then the changes the runtime queues for this
//! subscriber after that state, and HEARTBEAT whenever the stream was quiet for the heartbeat
//! interval. A subscriber sees what its ACLs let it list ([`Sight`]): a tenant, its own
//! frameworks and tasks; an operator granted every principal's, all of it.
//!
//! The stream gives the events as encoded gRPC messages (see `event_batch`): gRPC writes them
//! as they are, HTTP decodes them ([`OperatorEvents::decoded`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use corral_proto::{ServiceError, limits, v1};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_stream::Stream;
use tonic::Status;

use crate::auth::{Action, Auth, Caller, Object, Visibility};
use crate::core::{Event, OperatorRequest, OperatorResponse, Reply};
use crate::event_batch::{Audience, decode_event, encode_message, next_message};
use crate::queue::QueueReceiver;
use crate::runtime::{CoreHandle, Delivery, Sink};

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

    /// Whether this subscriber may see an event for `audience`.
    fn admits(&mut self, audience: &Audience) -> bool {
        match audience {
            Audience::Task { owner } => self.sees_task(owner),
            Audience::Agents => self.agents,
            Audience::Framework { id, principal } => {
                self.principals.insert(id.clone(), principal.clone());
                Self::sees(&self.frameworks, principal)
            }
            Audience::FrameworkRemoved { id } => {
                let principal = self.principals.get(id).map_or("", String::as_str);
                Self::sees(&self.frameworks, principal)
            }
            Audience::Everyone => true,
        }
    }

    /// The messages of `delivery` this subscriber may see, if any: all of them without a
    /// copy, or a copy of those it may.
    fn visible(&mut self, delivery: &Delivery) -> Option<Bytes> {
        let batch = &delivery.batch;
        let all = delivery.from..batch.events().len();
        if all.is_empty() {
            return None;
        }
        if self.sees_all() {
            return Some(batch.messages(all));
        }
        let admitted: Vec<usize> = all
            .clone()
            .filter(|&i| self.admits(&batch.events()[i].audience))
            .collect();
        if admitted.len() == all.len() {
            return Some(batch.messages(all));
        }
        let mut seen = Vec::new();
        for i in admitted {
            seen.extend_from_slice(&batch.messages(i..i + 1));
        }
        (!seen.is_empty()).then(|| seen.into())
    }
}

/// One subscriber's events, as encoded gRPC messages, one or more in each item.
#[derive(Debug)]
pub(crate) struct OperatorEvents {
    first: Option<Bytes>,
    rx: QueueReceiver<Delivery>,
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
        let events = Self::new(subscribed, rx, every, sight);
        let state_bytes = events.first.as_ref().map_or(0, Bytes::len);
        if state_bytes > limits::MAX_MESSAGE_BYTES {
            return Err(ServiceError::ResourceExhausted(format!(
                "the state is {state_bytes} bytes, past the largest message ({} bytes): \
                 subscribe with a smaller max_tasks",
                limits::MAX_MESSAGE_BYTES
            )));
        }
        Ok(events)
    }

    fn new(
        subscribed: v1::operator_event::Subscribed,
        rx: QueueReceiver<Delivery>,
        every: Duration,
        sight: Sight,
    ) -> Self {
        let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            first: Some(encoded(v1::operator_event::Event::Subscribed(subscribed))),
            rx,
            heartbeat,
            sight,
        }
    }

    /// The events one by one, decoded.
    pub(crate) fn decoded(self) -> Decoded {
        Decoded {
            events: self,
            messages: Bytes::new(),
        }
    }
}

/// A subscriber's events decoded, for those who need them as messages.
#[derive(Debug)]
pub(crate) struct Decoded {
    events: OperatorEvents,
    /// Messages received and not decoded yet.
    messages: Bytes,
}

impl Stream for Decoded {
    type Item = Result<v1::OperatorEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(message) = next_message(&mut self.messages) {
                return Poll::Ready(Some(message.and_then(decode_event)));
            }
            match ready!(Pin::new(&mut self.events).poll_next(cx)) {
                Some(Ok(messages)) => self.messages = messages,
                Some(Err(status)) => return Poll::Ready(Some(Err(status))),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// `event` as one encoded message.
fn encoded(event: v1::operator_event::Event) -> Bytes {
    let mut message = Vec::new();
    encode_message(&v1::OperatorEvent { event: Some(event) }, &mut message);
    message.into()
}

impl Stream for OperatorEvents {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(delivery))) => {
                    if let Some(messages) = self.sight.visible(&delivery) {
                        self.heartbeat.reset();
                        return Poll::Ready(Some(Ok(messages)));
                    }
                }
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        self.heartbeat.poll_tick(cx).map(|_| {
            Some(Ok(encoded(v1::operator_event::Event::Heartbeat(
                v1::operator_event::Heartbeat {},
            ))))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event_batch::EventBatchBuilder;
    use crate::queue::{QueueSender, queue};
    use tokio_stream::StreamExt;
    use v1::operator_event::Event as E;

    fn kind(e: &v1::OperatorEvent) -> &'static str {
        match e.event.as_ref().unwrap() {
            E::Subscribed(_) => "subscribed",
            E::Heartbeat(_) => "heartbeat",
            E::AgentRemoved(_) => "agent_removed",
            _ => "other",
        }
    }

    /// Queues `events` as one batch, all after the subscription.
    fn deliver(tx: &QueueSender<Delivery>, events: Vec<E>) {
        let mut batch = EventBatchBuilder::default();
        for event in events {
            batch.push(1, v1::OperatorEvent { event: Some(event) });
        }
        let batch = Arc::new(batch.finish());
        let count = batch.events().len();
        tx.send_counted(Delivery { batch, from: 0 }, count);
    }

    #[tokio::test(start_paused = true)]
    async fn subscribed_comes_first_and_heartbeats_fill_quiet_spells_only() {
        let (tx, rx) = queue(16);
        let every = Duration::from_secs(15);
        let mut events =
            OperatorEvents::new(Default::default(), rx, every, Sight::everything()).decoded();
        assert_eq!(kind(&events.next().await.unwrap().unwrap()), "subscribed");

        // Quiet: a heartbeat once the interval has passed, not before.
        let started = Instant::now();
        assert_eq!(kind(&events.next().await.unwrap().unwrap()), "heartbeat");
        assert_eq!(started.elapsed(), every);

        // A change 10 s in resets the clock: the next heartbeat is 15 s after it.
        tokio::time::advance(Duration::from_secs(10)).await;
        deliver(&tx, vec![E::AgentRemoved("a1".into())]);
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

    #[tokio::test]
    async fn a_tenant_gets_only_its_own_events_out_of_a_shared_batch() {
        let (tx, rx) = queue(64);
        let tenant = Sight {
            tasks: Visibility::Only(vec!["alice".into()]),
            frameworks: Visibility::Only(vec!["alice".into()]),
            agents: false,
            roles: false,
            principals: HashMap::new(),
        };
        let every = Duration::from_secs(15);
        let mut events = OperatorEvents::new(Default::default(), rx, every, tenant).decoded();
        assert_eq!(kind(&events.next().await.unwrap().unwrap()), "subscribed");

        let task = |id: &str, owner: &str| {
            E::TaskUpdated(v1::TaskUpdate {
                id: id.into(),
                owner: owner.into(),
                ..Default::default()
            })
        };
        let framework = |id: &str, principal: &str| {
            E::FrameworkAdded(v1::FrameworkSummary {
                id: id.into(),
                principal: principal.into(),
                ..Default::default()
            })
        };
        deliver(
            &tx,
            vec![
                task("t1", "alice"),
                task("t2", "bob"),
                E::AgentRemoved("a1".into()),
                framework("f1", "alice"),
                framework("f2", "bob"),
                task("t3", ""),
                task("t4", "alice"),
                E::FrameworkRemoved("f2".into()),
                E::FrameworkRemoved("f1".into()),
            ],
        );
        drop(tx);
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            seen.push(match event.unwrap().event.unwrap() {
                E::TaskUpdated(t) => format!("task {} of {}", t.id, t.owner),
                E::FrameworkAdded(f) => format!("framework {} of {}", f.id, f.principal),
                E::FrameworkRemoved(id) => format!("framework {id} removed"),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(
            seen,
            [
                "task t1 of alice",
                "framework f1 of alice",
                "task t4 of alice",
                "framework f1 removed",
            ]
        );
    }
}

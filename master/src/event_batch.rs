//! Operator events as subscribers receive them: encoded once by the runtime, as gRPC messages
//! back to back (each after its 5-byte prefix), however many subscribers there are.
//! `Operator.Subscribe` writes a batch's bytes to the connection as they are: one write for
//! hundreds of events, none of them encoded or copied again. The events a subscriber may not
//! see are left out by their [`Audience`], taken from each event as it is encoded.

use std::ops::Range;

use bytes::{Buf, Bytes};
use corral_proto::v1;
use corral_proto::v1::operator_event::Event as E;
use prost::Message;
use tonic::Status;

/// gRPC's prefix of each message: a compression flag, then the length (big-endian u32).
const PREFIX: usize = 5;

/// Who may see an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Those who see tasks of this principal (`""`: of none).
    Task { owner: String },
    /// Those who see agents.
    Agents,
    /// Those who see frameworks of this principal: a framework added or updated.
    Framework { id: String, principal: String },
    /// A framework removed: those who saw it.
    FrameworkRemoved { id: String },
    /// Every subscriber.
    Everyone,
}

impl Audience {
    /// Who may see `event`, taking the strings it needs out of it (it has been encoded).
    fn take_from(event: &mut v1::OperatorEvent) -> Self {
        let take = std::mem::take::<String>;
        match &mut event.event {
            Some(E::TaskAdded(t)) => Self::Task {
                owner: take(&mut t.owner),
            },
            Some(E::TaskUpdated(u)) => Self::Task {
                owner: take(&mut u.owner),
            },
            Some(E::AgentAdded(_) | E::AgentUpdated(_) | E::AgentRemoved(_)) => Self::Agents,
            Some(E::FrameworkAdded(f) | E::FrameworkUpdated(f)) => Self::Framework {
                id: take(&mut f.id),
                principal: take(&mut f.principal),
            },
            Some(E::FrameworkRemoved(id)) => Self::FrameworkRemoved { id: take(id) },
            Some(E::Subscribed(_) | E::Heartbeat(_)) | None => Self::Everyone,
        }
    }
}

/// One event of a batch.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// The number of the core's changes it came from.
    pub(crate) seq: u64,
    /// Where its message ends in the batch's bytes; it starts where the one before ends.
    end: usize,
    pub(crate) audience: Audience,
}

/// Events encoded back to back.
#[derive(Debug, Default)]
pub(crate) struct EventBatch {
    bytes: Bytes,
    events: Vec<Encoded>,
}

impl EventBatch {
    pub(crate) fn events(&self) -> &[Encoded] {
        &self.events
    }

    /// The first event after the core's changes numbered `seq`: where a subscriber that
    /// started after them begins.
    pub(crate) fn first_after(&self, seq: u64) -> usize {
        self.events.partition_point(|e| e.seq <= seq)
    }

    /// The messages of the events in `range`, without copying them.
    pub(crate) fn messages(&self, range: Range<usize>) -> Bytes {
        let start = range.start.checked_sub(1).map_or(0, |i| self.events[i].end);
        let end = range.end.checked_sub(1).map_or(0, |i| self.events[i].end);
        self.bytes.slice(start..end.max(start))
    }
}

/// Encodes events into an [`EventBatch`].
#[derive(Debug, Default)]
pub(crate) struct EventBatchBuilder {
    bytes: Vec<u8>,
    events: Vec<Encoded>,
    /// The message each event is written into before it is encoded, kept for its room.
    scratch: v1::OperatorEvent,
}

impl EventBatchBuilder {
    /// Encodes `event`, which came from the core's changes numbered `seq`.
    #[cfg(test)]
    pub(crate) fn push(&mut self, seq: u64, event: v1::OperatorEvent) {
        self.push_with(seq, |scratch| *scratch = event);
    }

    /// Encodes the event `write` writes (over the last one), which came from the core's
    /// changes numbered `seq`.
    pub(crate) fn push_with(&mut self, seq: u64, write: impl FnOnce(&mut v1::OperatorEvent)) {
        write(&mut self.scratch);
        encode_message(&self.scratch, &mut self.bytes);
        self.events.push(Encoded {
            seq,
            end: self.bytes.len(),
            audience: Audience::take_from(&mut self.scratch),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// The events encoded so far; the builder starts again empty.
    pub(crate) fn finish(&mut self) -> EventBatch {
        EventBatch {
            bytes: std::mem::take(&mut self.bytes).into(),
            events: std::mem::take(&mut self.events),
        }
    }
}

/// `message` as one gRPC message: its prefix, then its bytes.
pub(crate) fn encode_message(message: &impl Message, into: &mut Vec<u8>) {
    let len = message.encoded_len();
    into.reserve(PREFIX + len);
    into.push(0);
    // A message past 4 GiB cannot be built: every list in one is bounded far below that.
    into.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    // Cannot fail: a Vec grows to fit.
    let _ = message.encode(into);
}

/// Takes the first gRPC message off `bytes`: its prefix and bytes as [`encode_message`] wrote
/// them. `None` when `bytes` is empty.
pub(crate) fn next_message(bytes: &mut Bytes) -> Option<Result<Bytes, Status>> {
    if bytes.is_empty() {
        return None;
    }
    let incomplete = || Status::internal("a gRPC message was cut short");
    if bytes.len() < PREFIX {
        return Some(Err(incomplete()));
    }
    if bytes[0] != 0 {
        return Some(Err(Status::unimplemented(
            "compressed messages are not accepted",
        )));
    }
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    if bytes.len() - PREFIX < len {
        return Some(Err(incomplete()));
    }
    bytes.advance(PREFIX);
    Some(Ok(bytes.split_to(len)))
}

/// Decodes one event's message (without its prefix: what [`next_message`] gave).
pub(crate) fn decode_event(message: Bytes) -> Result<v1::OperatorEvent, Status> {
    v1::OperatorEvent::decode(message)
        .map_err(|e| Status::internal(format!("an operator event does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_events(
        mut messages: Bytes,
    ) -> impl Iterator<Item = Result<v1::OperatorEvent, Status>> {
        std::iter::from_fn(move || next_message(&mut messages)).map(|m| m.and_then(decode_event))
    }

    fn task_updated(id: &str, owner: &str) -> v1::OperatorEvent {
        v1::OperatorEvent {
            event: Some(E::TaskUpdated(v1::TaskUpdate {
                id: id.into(),
                owner: owner.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_batch_gives_back_each_event_with_its_audience_and_any_run_of_them() {
        let mut builder = EventBatchBuilder::default();
        builder.push(1, task_updated("t1", "alice"));
        builder.push(
            1,
            v1::OperatorEvent {
                event: Some(E::AgentRemoved("a1".into())),
            },
        );
        builder.push(3, task_updated("t2", ""));
        assert_eq!(builder.len(), 3);
        let batch = builder.finish();
        assert_eq!(builder.len(), 0, "the builder starts again");

        let audiences: Vec<_> = batch.events().iter().map(|e| e.audience.clone()).collect();
        assert_eq!(
            audiences,
            [
                Audience::Task {
                    owner: "alice".into()
                },
                Audience::Agents,
                Audience::Task { owner: "".into() },
            ]
        );
        assert_eq!(batch.first_after(0), 0);
        assert_eq!(batch.first_after(1), 2);
        assert_eq!(batch.first_after(3), 3);

        let ids = |range| {
            decode_events(batch.messages(range))
                .map(|e| match e.unwrap().event.unwrap() {
                    E::TaskUpdated(u) => u.id,
                    E::AgentRemoved(id) => id,
                    other => panic!("unexpected {other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(0..3), ["t1", "a1", "t2"]);
        assert_eq!(ids(1..3), ["a1", "t2"]);
        assert_eq!(ids(0..1), ["t1"]);
        assert!(ids(2..2).is_empty());
        // The owner was taken for the audience after encoding: subscribers still get it.
        let first = decode_events(batch.messages(0..1)).next().unwrap().unwrap();
        assert_eq!(first, task_updated("t1", "alice"));
    }

    #[test]
    fn messages_cut_short_or_compressed_are_errors_not_panics() {
        let mut whole = Vec::new();
        encode_message(&task_updated("t1", "alice"), &mut whole);
        for cut in 1..whole.len() {
            let mut bytes = Bytes::copy_from_slice(&whole[..cut]);
            let status = next_message(&mut bytes).unwrap().unwrap_err();
            assert_eq!(status.code(), tonic::Code::Internal, "cut at {cut}");
        }
        let mut compressed = whole.clone();
        compressed[0] = 1;
        let status = next_message(&mut Bytes::from(compressed))
            .unwrap()
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        let mut two = Bytes::from([whole.clone(), whole].concat());
        assert!(next_message(&mut two).unwrap().is_ok());
        assert!(next_message(&mut two).unwrap().is_ok());
        assert!(next_message(&mut two).is_none());
    }
}

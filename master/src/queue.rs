//! The master's two kinds of bounded queue, between the services and the core's runtime:
//!
//! - [`queue`]: from the runtime to one agent's or framework's stream. Full means the peer
//!   stopped reading, and it is cut off.
//! - [`requests`]: from the services to the runtime. Full means the core is behind, and
//!   senders wait for room (back-pressure to their clients).
//!
//! Bounded, but not with a semaphore: every status update, offer and command of the cluster
//! goes through them, and tokio's bounded channel takes a lock on every receive (measured:
//! 3 % of the master's CPU at full load). An unbounded channel carries the items and the two
//! ends keep a count of what is queued: a send is one atomic add, a receive one subtract.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::{Notify, mpsc};
use tonic::Status;

/// What a stream carries: messages, and at the end perhaps the status that ends it.
type Item<T> = Result<T, Status>;

/// An item in the channel, and how many it counts for against the capacity.
type Counted<T> = (usize, Item<T>);

/// A new queue that holds at most `capacity` items (at least 2: one message and the end).
pub(crate) fn queue<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        QueueSender {
            tx,
            queued: queued.clone(),
            capacity: capacity.max(2),
        },
        QueueReceiver { rx, queued },
    )
}

/// The runtime's end.
#[derive(Debug)]
pub(crate) struct QueueSender<T> {
    tx: mpsc::UnboundedSender<Counted<T>>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

/// Whether a message was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    Queued,
    /// The queue was full but for one slot: the stream was ended with a status saying so
    /// (the peer reads it after what was queued), and this many messages were left unread.
    CutOff {
        unread: usize,
    },
    /// The stream's receiver is gone (its peer went away); nothing to do.
    Closed,
}

impl<T> QueueSender<T> {
    /// Queues `message`, or ends the stream when the queue is full.
    pub(crate) fn send(&self, message: T) -> Sent {
        self.send_counted(message, 1)
    }

    /// Queues `message` as `count` messages (a batch of that many), or ends the stream when
    /// the queue has no room for them.
    pub(crate) fn send_counted(&self, message: T, count: usize) -> Sent {
        let unread = self.queued.load(Ordering::Acquire);
        if unread + count >= self.capacity {
            self.end(Status::resource_exhausted(format!(
                "stream closed: {unread} messages were left unread; reconnect and read faster"
            )));
            return Sent::CutOff { unread };
        }
        self.queued.fetch_add(count, Ordering::AcqRel);
        match self.tx.send((count, Ok(message))) {
            Ok(()) => Sent::Queued,
            Err(_) => Sent::Closed,
        }
    }

    /// Queues `message` only while the queue is less than half full: for what may be left
    /// out and sent again later. Returns whether it was queued.
    pub(crate) fn send_if_room(&self, message: T) -> bool {
        if self.queued.load(Ordering::Acquire) >= self.capacity / 2 {
            return false;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send((1, Ok(message))).is_ok()
    }

    /// Ends the stream with `status` (after what is queued), room or not.
    pub(crate) fn end(&self, status: Status) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.tx.send((1, Err(status)));
    }
}

/// The stream's end.
#[derive(Debug)]
pub(crate) struct QueueReceiver<T> {
    rx: mpsc::UnboundedReceiver<Counted<T>>,
    queued: Arc<AtomicUsize>,
}

impl<T> QueueReceiver<T> {
    /// The next item, as a `Stream` polls it.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Item<T>>> {
        self.rx.poll_recv(cx).map(|polled| {
            polled.map(|(count, item)| {
                self.queued.fetch_sub(count, Ordering::AcqRel);
                item
            })
        })
    }

    /// The next item.
    #[cfg(test)]
    pub(crate) async fn recv(&mut self) -> Option<Item<T>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

/// A queue of requests to the runtime holding at most `capacity` of them; senders wait.
pub(crate) fn requests<T>(capacity: usize) -> (RequestSender<T>, RequestReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Room {
        queued: AtomicUsize::new(0),
        freed: Notify::new(),
        capacity: capacity.max(1),
    });
    (
        RequestSender {
            tx,
            room: room.clone(),
        },
        RequestReceiver { rx, room },
    )
}

/// The count of queued requests and the waiters for room.
#[derive(Debug)]
struct Room {
    queued: AtomicUsize,
    freed: Notify,
    capacity: usize,
}

impl Room {
    /// Takes a place if there is one.
    fn try_take(&self) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }
}

/// A service's end. Cheap to clone.
#[derive(Debug)]
pub(crate) struct RequestSender<T> {
    tx: mpsc::UnboundedSender<T>,
    room: Arc<Room>,
}

impl<T> Clone for RequestSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            room: self.room.clone(),
        }
    }
}

impl<T> RequestSender<T> {
    /// Queues `request`, waiting while the queue is full; `Err` gives it back when the
    /// runtime is gone.
    pub(crate) async fn send(&self, request: T) -> Result<(), T> {
        loop {
            if self.room.try_take() {
                return self.send_taken(request);
            }
            // Full: wait for a place. Registered before looking again, so a place freed in
            // between wakes it (registering takes a lock: only done when full).
            let freed = self.room.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.room.try_take() {
                return self.send_taken(request);
            }
            if self.tx.is_closed() {
                return Err(request);
            }
            freed.await;
        }
    }

    /// Queues `request` if there is room; `Err` gives it back when there is not (or the
    /// runtime is gone).
    pub(crate) fn try_send(&self, request: T) -> Result<(), T> {
        if self.room.try_take() {
            self.send_taken(request)
        } else {
            Err(request)
        }
    }

    fn send_taken(&self, request: T) -> Result<(), T> {
        self.tx.send(request).map_err(|e| {
            self.room.queued.fetch_sub(1, Ordering::AcqRel);
            e.0
        })
    }

    /// Resolves when the runtime has stopped.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// The runtime's end.
#[derive(Debug)]
pub(crate) struct RequestReceiver<T> {
    rx: mpsc::UnboundedReceiver<T>,
    room: Arc<Room>,
}

impl<T> RequestReceiver<T> {
    /// The next request; `None` once every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        let request = self.rx.recv().await?;
        let before = self.room.queued.fetch_sub(1, Ordering::AcqRel);
        if before >= self.room.capacity {
            // Someone may be waiting for this place.
            self.room.freed.notify_waiters();
        }
        Some(request)
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_ends_the_stream_in_its_last_slot_and_reading_makes_room() {
        let (tx, mut rx) = queue::<u32>(4);
        assert_eq!(tx.send(1), Sent::Queued);
        assert_eq!(tx.send(2), Sent::Queued);
        // One read makes room for one more.
        assert_eq!(rx.recv().await.unwrap().unwrap(), 1);
        assert_eq!(tx.send(3), Sent::Queued);
        assert_eq!(tx.send(4), Sent::Queued);
        assert_eq!(tx.send(5), Sent::CutOff { unread: 3 });
        let mut rest = Vec::new();
        for _ in 0..4 {
            rest.push(rx.recv().await.unwrap().map_err(|s| s.code()));
        }
        // Three messages and the status that ends the stream: four items, the capacity.
        assert_eq!(
            rest,
            [Ok(2), Ok(3), Ok(4), Err(tonic::Code::ResourceExhausted)]
        );
        drop(rx);
        assert_eq!(tx.send(6), Sent::Closed);
    }

    #[tokio::test]
    async fn what_may_be_left_out_is_queued_only_below_half_and_never_cuts_off() {
        let (tx, mut rx) = queue::<u32>(4);
        assert!(tx.send_if_room(1));
        assert!(tx.send_if_room(2));
        assert!(!tx.send_if_room(3), "half full");
        assert_eq!(rx.recv().await.unwrap().unwrap(), 1);
        assert!(tx.send_if_room(4));
        // The stream is still open: a plain send is queued.
        assert_eq!(tx.send(5), Sent::Queued);
    }

    #[tokio::test]
    async fn a_batch_counts_as_its_messages_until_it_is_read() {
        let (tx, mut rx) = queue::<&str>(8);
        assert_eq!(tx.send_counted("five", 5), Sent::Queued);
        // Five of eight taken: three more would leave no slot for the end.
        assert_eq!(tx.send_counted("three", 3), Sent::CutOff { unread: 5 });
        let (tx, mut rx2) = queue::<&str>(8);
        assert_eq!(tx.send_counted("five", 5), Sent::Queued);
        assert_eq!(rx2.recv().await.unwrap().unwrap(), "five");
        // Reading the batch freed all five.
        assert_eq!(tx.send_counted("seven", 7), Sent::Queued);
        assert_eq!(rx.recv().await.unwrap().unwrap(), "five");
        assert_eq!(
            rx.recv().await.unwrap().map_err(|s| s.code()),
            Err(tonic::Code::ResourceExhausted)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn request_senders_wait_for_room_and_none_is_lost() {
        let (tx, mut rx) = requests::<u32>(2);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        assert_eq!(tx.try_send(3), Err(3));
        // Two senders wait; each place freed lets one in.
        let waiting: Vec<_> = [3, 4]
            .into_iter()
            .map(|n| {
                let tx = tx.clone();
                tokio::spawn(async move { tx.send(n).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(waiting.iter().all(|w| !w.is_finished()));
        let mut got = Vec::new();
        while got.len() < 4 {
            got.push(rx.recv().await.unwrap());
            tokio::task::yield_now().await;
        }
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3, 4]);
        assert!(rx.is_empty());
        drop(rx);
        assert_eq!(tx.send(5).await, Err(5));
    }
}

//! CPU accounting and CPU share enforcement at the guest's yield points.
//!
//! A guest runs inside wasmtime's async machinery and yields every N units of fuel (a few tens
//! of microseconds of work). [`Metered`] wraps the guest's future: around every `poll` it reads
//! the thread's CPU clock — one poll runs on one thread — so it knows exactly how much CPU the
//! guest used, and it enforces the task's share with a token bucket, like CFS bandwidth control:
//!
//! ```text
//!   tokens += wall_elapsed * share   (capped at share * WINDOW)
//!   tokens -= cpu_used_by_this_poll
//!   tokens < 0  =>  sleep for -tokens / share before polling the guest again
//! ```
//!
//! The share is a hard cap, not a weight: unused share is neither lent to other tasks nor banked
//! for later beyond one [`WINDOW`], so a task that idled cannot then burst above its share for
//! more than that window. A single Wasm task is single-threaded, so a share of one core or more
//! is not throttled at all.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// How far a task may run ahead of its share before it is throttled.
pub const WINDOW: Duration = Duration::from_millis(50);

/// CPU time consumed by the calling thread so far.
pub(crate) fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time used by a running task, readable from other threads while it runs.
#[derive(Debug, Default)]
pub(crate) struct CpuCounter(AtomicU64);

impl CpuCounter {
    pub(crate) fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    fn add(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// A token bucket of CPU nanoseconds refilled at `share` cores per wall-clock second.
#[derive(Debug)]
struct Quota {
    share_milli: u64,
    capacity_ns: i128,
    tokens_ns: i128,
    refilled_at: Instant,
}

impl Quota {
    fn new(share_milli: u64, now: Instant) -> Self {
        let capacity_ns = WINDOW.as_nanos() as i128 * share_milli as i128 / 1000;
        Self {
            share_milli,
            capacity_ns,
            tokens_ns: capacity_ns,
            refilled_at: now,
        }
    }

    /// Charges `used` CPU time; returns how long to pause if the task is over its share.
    fn charge(&mut self, used: Duration, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_nanos() as i128;
        self.refilled_at = now;
        self.tokens_ns = (self.tokens_ns + elapsed * self.share_milli as i128 / 1000)
            .min(self.capacity_ns)
            - used.as_nanos() as i128;
        (self.tokens_ns < 0).then(|| {
            let deficit = -self.tokens_ns * 1000 / self.share_milli as i128;
            Duration::from_nanos(deficit as u64)
        })
    }
}

/// Longest a guest runs on its thread before the scheduler gets the thread back.
///
/// A guest yields every ~100 µs of fuel so kills, timeouts and throttling land promptly. Handing
/// each of those yields back to the multi-threaded runtime would wake an idle worker that then
/// steals the guest to another core, which costs more than the slice itself (a wake-up of an
/// idle thread is 20-30 µs of CPU on a virtual machine); so [`Metered`] resumes a guest that
/// woke itself at once, up to this much CPU per poll, as an OS scheduler's time slice. A kill
/// ([`Kill`]) or the task's timeout ([`Metered::with_deadline`]) ends the slice at the next
/// yield.
pub(crate) const SLICE: Duration = Duration::from_millis(5);

/// A request to stop a task: wakes the task, and ends the guest's current [`SLICE`] at its next
/// yield point so the kill lands within one yield interval.
#[derive(Debug, Default)]
pub(crate) struct Kill {
    requested: AtomicBool,
    notify: Notify,
}

impl Kill {
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub(crate) fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Completes once a kill was requested (also if that happened before the call).
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }
}

/// The guest's future, metered: counts CPU time and holds it to its share.
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    quota: Option<Quota>,
    pause: Option<Pin<Box<Sleep>>>,
    cpu: Arc<CpuCounter>,
    kill: Arc<Kill>,
    /// The task's timeout: reaching it ends the slice, so the timeout lands at the next yield.
    deadline: Option<Instant>,
}

impl<F> Metered<F> {
    /// `share_milli` is the task's `cpus` in thousandths of a core.
    pub(crate) fn new(inner: F, share_milli: u64, cpu: Arc<CpuCounter>, kill: Arc<Kill>) -> Self {
        let quota = (share_milli < 1000).then(|| Quota::new(share_milli.max(1), Instant::now()));
        Self {
            inner: Box::pin(inner),
            quota,
            pause: None,
            cpu,
            kill,
            deadline: None,
        }
    }

    /// Ends the guest's slice at its first yield at or after `deadline`.
    pub(crate) fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if let Some(pause) = this.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        let wake = Arc::new(SliceWaker::new(cx.waker().clone()));
        let waker = Waker::from(wake.clone());
        let mut inner_cx = Context::from_waker(&waker);
        let slice_start = thread_cpu_time();
        let mut before = slice_start;
        loop {
            let result = this.inner.as_mut().poll(&mut inner_cx);
            let after = thread_cpu_time();
            let used = after.saturating_sub(before);
            before = after;
            this.cpu.add(used);
            if result.is_ready() {
                return result;
            }
            if let Some(quota) = this.quota.as_mut() {
                let now = Instant::now();
                if let Some(pause) = quota.charge(used, now) {
                    let mut sleep = Box::pin(tokio::time::sleep_until(now + pause));
                    // Register for the wake-up; a guest that asked to be polled again will
                    // land on the pause above.
                    let _ = sleep.as_mut().poll(cx);
                    this.pause = Some(sleep);
                    wake.finish();
                    return Poll::Pending;
                }
            }
            if after.saturating_sub(slice_start) >= SLICE
                || this.kill.requested()
                || this.deadline.is_some_and(|at| Instant::now() >= at)
                || !wake.take_wake()
            {
                wake.finish();
                return Poll::Pending;
            }
        }
    }
}

/// The waker a guest sees during one [`Metered::poll`]: a wake that arrives while the guest is
/// being polled is kept for the loop there; any other wake goes straight to the task.
struct SliceWaker {
    state: AtomicU8,
    task: Waker,
}

const POLLING: u8 = 0;
const WOKEN_WHILE_POLLING: u8 = 1;
const DONE: u8 = 2;

impl SliceWaker {
    fn new(task: Waker) -> Self {
        Self {
            state: AtomicU8::new(POLLING),
            task,
        }
    }

    /// Whether the guest asked to be polled again; the loop keeps polling it.
    fn take_wake(&self) -> bool {
        self.state
            .compare_exchange(
                WOKEN_WHILE_POLLING,
                POLLING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The poll ends: a wake kept for the loop is passed on, and later ones go to the task.
    fn finish(&self) {
        if self.state.swap(DONE, Ordering::AcqRel) == WOKEN_WHILE_POLLING {
            self.task.wake_by_ref();
        }
    }
}

impl Wake for SliceWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let kept = self
            .state
            .compare_exchange(
                POLLING,
                WOKEN_WHILE_POLLING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if !kept && self.state.load(Ordering::Acquire) == DONE {
            self.task.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guest that yields and asks to be polled again every time, counting its polls.
    struct Spinner(Arc<AtomicU64>);

    impl Future for Spinner {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Polls `metered` once; returns how often it polled the guest.
    async fn guest_polls_in_one_slice(kill: Arc<Kill>, deadline: Option<Instant>) -> u64 {
        let polls = Arc::new(AtomicU64::new(0));
        let metered = Metered::new(Spinner(polls.clone()), 1000, Arc::default(), kill);
        let mut metered = std::pin::pin!(metered.with_deadline(deadline));
        std::future::poll_fn(|cx| {
            assert!(metered.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        polls.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_kill_or_the_timeout_ends_the_slice_at_the_next_yield() {
        let running = guest_polls_in_one_slice(Arc::default(), None).await;
        assert!(
            running > 1,
            "a guest that woke itself is resumed within its slice"
        );
        let killed = Arc::new(Kill::default());
        killed.request();
        assert_eq!(guest_polls_in_one_slice(killed, None).await, 1);
        let expired = Some(Instant::now());
        assert_eq!(guest_polls_in_one_slice(Arc::default(), expired).await, 1);
    }

    #[test]
    fn quota_pauses_for_the_deficit_at_the_share_rate() {
        let start = Instant::now();
        // Half a core: a full bucket holds 25 ms of CPU.
        let mut quota = Quota::new(500, start);
        assert_eq!(quota.charge(Duration::from_millis(20), start), None);
        // 10 ms more CPU with no wall time passing: 5 ms over, which takes 10 ms to earn back.
        assert_eq!(
            quota.charge(Duration::from_millis(10), start),
            Some(Duration::from_millis(10))
        );
        // After those 10 ms the bucket is back at zero and 1 ms of CPU costs 2 ms of pause.
        let later = start + Duration::from_millis(10);
        assert_eq!(
            quota.charge(Duration::from_millis(1), later),
            Some(Duration::from_millis(2))
        );
    }

    #[test]
    fn unused_share_is_not_banked_beyond_one_window() {
        let start = Instant::now();
        let mut quota = Quota::new(500, start);
        // An hour idle still leaves only one window's worth (25 ms at half a core).
        let later = start + Duration::from_secs(3600);
        assert_eq!(quota.charge(Duration::from_millis(25), later), None);
        assert!(quota.charge(Duration::from_millis(1), later).is_some());
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        while thread_cpu_time() - before < Duration::from_millis(2) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(thread_cpu_time() > before);
    }
}

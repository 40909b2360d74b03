//! Following the leader: which master a client tries next and how long it waits first. One
//! policy for `corral agent`, the framework SDK (and so every framework and the CLI's) and
//! the simulated agents that load a master, so the failover the benchmarks measure is the one
//! agents and frameworks go through.
//!
//! ```text
//!   ┌─► round: the leader hint first, then the masters in order ──all failed──► Wait(backoff) ─┐
//!   │     │ a master names the leader (Redirect)                                              │
//!   │     ▼                                                                                   │
//!   │   a newly named leader: a new round at once (a few times until registered)              │
//!   │   the same leader named again: Wait(backoff)                                            │
//!   └─────────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Pure: the caller connects, runs the session and sleeps; the caller supplies randomness.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;

/// How a session with one master ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A master that is not the leader named the leader (`corral-leader`).
    Redirect(String),
    /// Could not connect, the stream broke, or a master knew no leader.
    Lost,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Open a session with the master at this address.
    Connect(String),
    /// Sleep this long, then ask again.
    Wait(Duration),
}

/// How long to wait between rounds that found no master to talk to: exponential backoff
/// from `initial` to `max`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The ceiling of the first wait; waits are drawn between half of it and the ceiling.
    pub initial: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Default for BackoffConfig {
    /// From 100 ms up to 10 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

/// The leader-following state of one client.
#[derive(Debug, Clone)]
pub struct Follower {
    masters: Vec<String>,
    /// What is left of the current round.
    round: VecDeque<String>,
    /// The leader named during the current round.
    hint: Option<String>,
    backoff: Backoff,
}

impl Follower {
    /// Starts with a round over `masters`, in order, waiting between rounds as `backoff` says.
    pub fn new(masters: Vec<String>, backoff: BackoffConfig) -> Self {
        Self {
            round: masters.iter().cloned().collect(),
            masters,
            hint: None,
            backoff: Backoff::new(backoff),
        }
    }

    /// The next master to try, or how long to wait before the next round. With no masters
    /// it only ever waits.
    pub fn next(&mut self, rng: &mut impl Rng) -> Step {
        if let Some(address) = self.round.pop_front() {
            return Step::Connect(address);
        }
        let hint = self.hint.take();
        let now = hint
            .as_deref()
            .is_some_and(|leader| self.backoff.follow_now(leader));
        // A leader named again, or named back and forth, did not take the agent: its master
        // is gone and the standbys name it until the election ends (they learn of no death,
        // only of the next leader). The failover lasts until the agent registers: the new
        // leader, between its election and serving, answers with no leader at all.
        if hint.is_some() && !now {
            self.backoff.failover = true;
        }
        let others = self.masters.iter().filter(|m| Some(*m) != hint.as_ref());
        self.round = hint.iter().chain(others).cloned().collect();
        if now && let Some(address) = self.round.pop_front() {
            return Step::Connect(address);
        }
        Step::Wait(self.backoff.next(rng))
    }

    /// Records how the session opened by the last [`Step::Connect`] ended. A redirect ends the
    /// round: the next one starts with the named leader.
    pub fn ended(&mut self, ended: Ended) {
        if let Ended::Redirect(leader) = ended {
            self.hint = Some(leader);
            self.round.clear();
        }
    }

    /// The client registered (or subscribed): the backoff and the immediate follows start
    /// over. The round goes on where it was: the master that served may be the one that is
    /// gone (or frozen: connecting to a stopped process hangs), so the next is tried first.
    pub fn registered(&mut self) {
        self.backoff.reset();
    }
}

/// Exponential backoff with full jitter between half of the initial ceiling and the current
/// ceiling, and a few immediate retries when a standby names a new leader.
///
/// During a failover the waits stay short for a while: an agent learns of the new leader only
/// by asking, so a wait begun just before the election delays its re-registration by up to
/// the ceiling. In the ~2 s of a failover the ceiling would otherwise reach 6.4 s, and with
/// 200 agents the last re-registered 4.7–6.8 s after the election.
#[derive(Debug, Clone)]
struct Backoff {
    config: BackoffConfig,
    ceiling: Duration,
    /// Redirects followed at once since the last registration.
    follows: u32,
    /// The leader the last redirect named.
    last_hint: Option<String>,
    /// A failover is under way (since the last registration).
    failover: bool,
    /// Failover waits left that are held to `FAILOVER_CEILING`.
    failover_waits: u32,
}

impl Backoff {
    /// Beyond this many immediate follows the backoff applies, so two masters naming each
    /// other cannot make the agent spin.
    const IMMEDIATE_FOLLOWS: u32 = 3;
    /// The longest wait while a failover goes on: the delay after an election it may add.
    const FAILOVER_CEILING: Duration = Duration::from_secs(1);
    /// About 20 s of short waits, past the default 10 s lease and its election; beyond, no
    /// election is coming soon (etcd is down, say) and the backoff grows as usual, so
    /// thousands of agents do not keep polling the masters twice a second.
    const FAILOVER_WAITS: u32 = 40;

    fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            ceiling: config.initial,
            follows: 0,
            last_hint: None,
            failover: false,
            failover_waits: Self::FAILOVER_WAITS,
        }
    }

    fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    /// Whether to follow a redirect to `leader` without waiting: a standby that names a new
    /// leader means one was just elected, and the backoff may have grown while none led. A
    /// hint repeated (a standby still naming a dead leader until its lease ends) waits.
    fn follow_now(&mut self, leader: &str) -> bool {
        if self.last_hint.as_deref() == Some(leader) {
            return false;
        }
        self.last_hint = Some(leader.to_owned());
        self.follows += 1;
        self.follows <= Self::IMMEDIATE_FOLLOWS
    }

    fn next(&mut self, rng: &mut impl Rng) -> Duration {
        let mut ceiling = self.ceiling;
        if self.failover && self.failover_waits > 0 {
            self.failover_waits -= 1;
            ceiling = ceiling.min(Self::FAILOVER_CEILING);
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let low = millis(self.config.initial) / 2;
        let high = millis(ceiling).max(low + 1);
        self.ceiling = self.ceiling.saturating_mul(2).min(self.config.max);
        Duration::from_millis(rng.random_range(low..high))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn masters() -> Vec<String> {
        vec!["a:1".into(), "b:1".into()]
    }

    fn connect(a: &str) -> Step {
        Step::Connect(a.into())
    }

    fn follower(masters: Vec<String>) -> Follower {
        Follower::new(masters, BackoffConfig::default())
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut rng = StdRng::seed_from_u64(7);
        let config = BackoffConfig::default();
        let mut backoff = Backoff::new(config);
        let delays: Vec<_> = (0..12).map(|_| backoff.next(&mut rng)).collect();
        assert!(delays.iter().all(|d| *d >= config.initial / 2));
        assert!(delays.iter().all(|d| *d <= config.max));
        assert_eq!(backoff.ceiling, config.max);
        backoff.reset();
        assert!(backoff.next(&mut rng) <= config.initial);
        let delays: Vec<_> = (0..100).map(|_| backoff.next(&mut rng)).collect();
        assert!(delays[50..].iter().any(|d| d != &delays[50]), "no jitter");
    }

    #[test]
    fn the_backoff_is_configurable_and_huge_values_saturate() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut backoff = Backoff::new(BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::MAX,
        });
        for _ in 0..100 {
            assert!(backoff.next(&mut rng) >= Duration::from_millis(500));
        }
    }

    #[test]
    fn new_leaders_are_followed_at_once_a_few_times_until_registered() {
        let mut backoff = Backoff::new(BackoffConfig::default());
        // A repeated hint (a dead leader still named) waits for the backoff.
        assert!(backoff.follow_now("a:1"));
        assert!(!backoff.follow_now("a:1"));
        // Masters naming each other: three immediate follows, then the backoff.
        let pingpong: Vec<bool> = ["b:1", "a:1", "b:1", "a:1"]
            .iter()
            .map(|l| backoff.follow_now(l))
            .collect();
        assert_eq!(pingpong, [true, true, false, false]);
        backoff.reset();
        assert!(backoff.follow_now("a:1"));
    }

    #[test]
    fn a_round_tries_every_master_in_order_then_waits() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut f = follower(masters());
        assert_eq!(f.next(&mut rng), connect("a:1"));
        f.ended(Ended::Lost);
        assert_eq!(f.next(&mut rng), connect("b:1"));
        f.ended(Ended::Lost);
        assert!(matches!(f.next(&mut rng), Step::Wait(_)));
        assert_eq!(f.next(&mut rng), connect("a:1"));
    }

    #[test]
    fn a_named_leader_is_tried_first_at_once_and_a_repeated_one_after_a_wait() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut f = follower(masters());
        assert_eq!(f.next(&mut rng), connect("a:1"));
        f.ended(Ended::Redirect("c:1".into()));
        // The round ends at the redirect; the leader comes first, then the masters.
        assert_eq!(f.next(&mut rng), connect("c:1"));
        f.ended(Ended::Lost);
        assert_eq!(f.next(&mut rng), connect("a:1"));
        f.ended(Ended::Redirect("c:1".into()));
        assert!(matches!(f.next(&mut rng), Step::Wait(_)));
        assert_eq!(f.next(&mut rng), connect("c:1"));
    }

    #[test]
    fn a_named_leader_among_the_masters_is_tried_once_a_round() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut f = follower(masters());
        assert_eq!(f.next(&mut rng), connect("a:1"));
        f.ended(Ended::Redirect("b:1".into()));
        assert_eq!(f.next(&mut rng), connect("b:1"));
        f.ended(Ended::Lost);
        assert_eq!(f.next(&mut rng), connect("a:1"));
        f.ended(Ended::Lost);
        assert!(matches!(f.next(&mut rng), Step::Wait(_)));
    }

    /// The failover bench's case: the leader `a` is dead, the standby `b` names it until `b`
    /// is elected. Every round ends in a wait, short for a while, then growing as usual.
    #[test]
    fn a_standby_naming_a_dead_leader_keeps_waits_short_for_a_while() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut f = follower(masters());
        let mut waits = Vec::new();
        while waits.len() < 60 {
            match f.next(&mut rng) {
                Step::Connect(m) if m == "a:1" => f.ended(Ended::Lost),
                // Now and then `b` is between its election and serving: no leader named.
                Step::Connect(_) if waits.len() % 5 == 4 => f.ended(Ended::Lost),
                Step::Connect(_) => f.ended(Ended::Redirect("a:1".into())),
                Step::Wait(d) => waits.push(d),
            }
        }
        let limit = Backoff::FAILOVER_WAITS as usize;
        assert!(
            waits[..limit]
                .iter()
                .all(|d| *d < Backoff::FAILOVER_CEILING),
            "{waits:?}"
        );
        assert!(
            waits[limit..]
                .iter()
                .any(|d| *d > Backoff::FAILOVER_CEILING)
        );
        // Registering starts over: the next failover has its short waits again.
        f.registered();
        assert!(!f.backoff.failover);
        assert_eq!(f.backoff.failover_waits, Backoff::FAILOVER_WAITS);
    }

    #[test]
    fn no_masters_means_waiting_not_spinning() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut f = follower(Vec::new());
        assert!(matches!(f.next(&mut rng), Step::Wait(_)));
        assert!(matches!(f.next(&mut rng), Step::Wait(_)));
    }
}

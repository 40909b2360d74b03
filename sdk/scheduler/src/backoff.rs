//! Reconnection delays: exponential backoff with jitter. Pure: the caller supplies the
//! randomness and does the sleeping.

use std::time::Duration;

use rand::Rng;

/// How long to wait between reconnection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The delay before the first retry (before jitter).
    pub initial: Duration,
    /// The largest delay (before jitter).
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

/// Exponential backoff with "equal jitter": attempt `n` waits a uniformly random time in
/// `[d/2, d]` where `d = min(max, initial * 2^n)`. The jitter spreads the reconnections of
/// many frameworks after a master failover; the lower bound keeps the backoff meaningful.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// The delay before the next attempt; each call doubles the base delay up to `max`.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(30));
        let base = self
            .config
            .initial
            .saturating_mul(factor)
            .min(self.config.max);
        self.attempt = self.attempt.saturating_add(1);
        // Whole milliseconds: the timer's resolution.
        let half = u64::try_from((base / 2).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(half.saturating_add(rng.random_range(0..=half)))
    }

    /// Back to the initial delay (after a successful subscription).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn delays_double_up_to_the_max_with_bounded_jitter() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        });
        let bases = [100, 200, 400, 800, 1000, 1000, 1000];
        for base in bases {
            let d = b.next_delay(&mut rng);
            let base = Duration::from_millis(base);
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} not in [{:?}, {base:?}]",
                base / 2
            );
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_varies_and_huge_attempt_counts_saturate() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(BackoffConfig::default());
        let delays: Vec<_> = (0..200).map(|_| b.next_delay(&mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(30)));
        let tail = &delays[100..];
        assert!(tail.iter().any(|d| d != &tail[0]), "no jitter");
    }

    /// The driver sleeps these delays with tokio's clock; with paused time the schedule is
    /// observable exactly, without waiting.
    #[tokio::test(start_paused = true)]
    async fn schedule_runs_on_tokio_time() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
        });
        let start = tokio::time::Instant::now();
        let mut total = Duration::ZERO;
        for _ in 0..5 {
            let d = b.next_delay(&mut rng);
            total += d;
            tokio::time::sleep(d).await;
        }
        assert_eq!(start.elapsed(), total);
        // 1 + 2 + 4 + 8 + 8 at most, half of that at least.
        assert!(total <= Duration::from_secs(23) && total >= Duration::from_millis(11_500));
    }
}

//! The master's notion of time: [`Timestamp`], milliseconds on a clock the caller controls.

use std::fmt;
use std::time::Duration;

/// A point in time: milliseconds since an epoch the master chooses (for example its start).
///
/// Nothing pure reads a clock: the allocator and the master core take a `Timestamp`, so tests
/// drive time explicitly and a replayed event log behaves identically.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The far future; a filter that expires here never expires.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// Milliseconds since the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, clamped at [`Timestamp::MAX`] (a refusal of `u32::MAX` seconds must not wrap).
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_saturate() {
        let t = Timestamp::from_millis(5);
        assert_eq!(t.saturating_add(Duration::from_secs(1)).as_millis(), 1005);
        assert_eq!(t.saturating_add(Duration::MAX), Timestamp::MAX);
        let later = Timestamp::from_millis(1005);
        assert_eq!(later.saturating_duration_since(t), Duration::from_secs(1));
        assert_eq!(t.saturating_duration_since(later), Duration::ZERO);
    }
}

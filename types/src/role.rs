//! Roles, weights and quotas: the operator's vocabulary for sharing.

use std::fmt;
use std::sync::Arc;

use crate::resources::{ResourceKind, Resources};

/// A role name failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// The empty string.
    #[error("role name is empty")]
    Empty,
    /// `/eng`: roles are relative paths.
    #[error("role {0:?} starts with '/'")]
    LeadingSlash(String),
    /// `eng//batch` or `eng/`.
    #[error("role {0:?} has an empty path segment")]
    EmptySegment(String),
    /// `eng/..`: a path segment is `.` or `..`.
    #[error("role {0:?} has a '.' or '..' path segment")]
    DotSegment(String),
    /// A character outside `[A-Za-z0-9_-]` (besides the `/` separator).
    #[error("role {role:?} has invalid character {ch:?}; allowed are [A-Za-z0-9_-] and '/'")]
    InvalidChar {
        /// The rejected name.
        role: String,
        /// The first offending character.
        ch: char,
    },
}

/// A hierarchical role name: `eng/batch` is a subrole of `eng`. `*` is the default role.
///
/// Validated on construction, cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role(Arc<str>);

impl Role {
    /// The name of the default role.
    pub const DEFAULT_NAME: &'static str = "*";

    /// Validates a role name: `*`, or `/`-separated segments, each non-empty, not `.` or `..`,
    /// of characters `[A-Za-z0-9_-]`, with no leading `/`.
    pub fn new(name: impl AsRef<str>) -> Result<Self, RoleError> {
        let name = name.as_ref();
        if name == Self::DEFAULT_NAME {
            return Ok(Self::default_role());
        }
        if name.is_empty() {
            return Err(RoleError::Empty);
        }
        if name.starts_with('/') {
            return Err(RoleError::LeadingSlash(name.to_owned()));
        }
        for segment in name.split('/') {
            if segment.is_empty() {
                return Err(RoleError::EmptySegment(name.to_owned()));
            }
            if segment == "." || segment == ".." {
                return Err(RoleError::DotSegment(name.to_owned()));
            }
            if let Some(ch) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            {
                return Err(RoleError::InvalidChar {
                    role: name.to_owned(),
                    ch,
                });
            }
        }
        Ok(Self(name.into()))
    }

    /// `*`.
    pub fn default_role() -> Self {
        Self(Self::DEFAULT_NAME.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent role (`eng` for `eng/batch`), or `None` for a top-level role.
    pub fn parent(&self) -> Option<Role> {
        self.0.rsplit_once('/').map(|(p, _)| Role(p.into()))
    }

    /// True for `*`.
    pub fn is_default(&self) -> bool {
        &*self.0 == Self::DEFAULT_NAME
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::str::FromStr for Role {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<Self, RoleError> {
        Self::new(s)
    }
}

/// A weight was outside [`Weight::MIN`]..=[`Weight::MAX`] (or not a number).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("weight {0:?} is out of range ({range})", range = Weight::RANGE)]
pub struct WeightError(pub f64);

/// A role's weight in weighted DRF: a role with weight 3 converges to three times the dominant
/// share of a sibling with weight 1. Within [`Weight::MIN`]..=[`Weight::MAX`] by construction.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Weight(f64);

impl Weight {
    /// The default weight, 1.
    pub const ONE: Weight = Weight(1.0);
    /// The smallest weight. Bounding weights keeps `share / weight` finite and the ratio of
    /// any two weights (at most 10^9) far inside f64 precision, so DRF order stays exact.
    pub const MIN: f64 = 0.001;
    /// The largest weight.
    pub const MAX: f64 = 1_000_000.0;
    /// [`Weight::MIN`] and [`Weight::MAX`] in words, for error messages.
    pub const RANGE: &'static str = "from 0.001 to 1000000";

    /// Validates a weight: from [`Weight::MIN`] to [`Weight::MAX`] (rejects NaN, infinities,
    /// zero, negatives and absurd magnitudes).
    pub fn new(w: f64) -> Result<Self, WeightError> {
        if (Self::MIN..=Self::MAX).contains(&w) {
            Ok(Self(w))
        } else {
            Err(WeightError(w))
        }
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self::ONE
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Upper bounds per resource kind. A kind that is not set is unlimited; a kind set to zero
/// allows none. (This is why limits are not a [`Resources`], where absent means zero.)
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct QuotaLimits {
    /// The bounded kinds and their bounds.
    bounded: Resources,
    /// Kinds explicitly bounded at zero (absent from `bounded`, which drops zeros).
    zero: Resources,
}

impl QuotaLimits {
    /// No bound on anything.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Bounds exactly the kinds that are non-zero in `r`; other kinds stay unlimited.
    pub fn at_most(r: Resources) -> Self {
        Self {
            bounded: r,
            zero: Resources::new(),
        }
    }

    /// Adds a zero bound on the kinds that are non-zero in `kinds` ("none of this").
    #[must_use]
    pub fn with_none_of(mut self, kinds: &Resources) -> Self {
        self.bounded = self.bounded.without_kinds_of(kinds);
        self.zero = self.zero.max(kinds);
        self
    }

    /// True when no kind is bounded.
    pub fn is_unlimited(&self) -> bool {
        self.bounded.is_empty() && self.zero.is_empty()
    }

    /// The bound for one kind, `None` when unlimited.
    pub fn bound(&self, kind: ResourceKind<'_>) -> Option<u64> {
        if self.zero.get(kind) > 0 {
            Some(0)
        } else {
            Some(self.bounded.get(kind)).filter(|v| *v > 0)
        }
    }

    /// The non-zero bounds, as resources.
    pub fn bounds(&self) -> &Resources {
        &self.bounded
    }

    /// The kinds bounded at zero, each marked with a non-zero amount (see
    /// [`QuotaLimits::with_none_of`]).
    pub fn none_of(&self) -> &Resources {
        &self.zero
    }

    /// True when `r` is within every bound.
    pub fn allows(&self, r: &Resources) -> bool {
        r.kinds()
            .all(|(k, v)| self.bound(k).is_none_or(|bound| v <= bound))
    }

    /// `r` shrunk so that `consumed + r` stays within every bound.
    pub fn cap(&self, consumed: &Resources, r: &Resources) -> Resources {
        if self.is_unlimited() {
            return r.clone();
        }
        let mut out = r.clone();
        for (kind, v) in r.kinds() {
            if let Some(bound) = self.bound(kind) {
                let room = bound.saturating_sub(consumed.get(kind));
                if v > room {
                    out.set(kind, room);
                }
            }
        }
        out
    }
}

impl fmt::Debug for QuotaLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unlimited() {
            return f.write_str("unlimited");
        }
        write!(f, "{}", self.bounded)?;
        if !self.zero.is_empty() {
            write!(f, " (none of {})", self.zero)?;
        }
        Ok(())
    }
}

/// A role's quota.
///
/// - `guarantee`: resources the role is offered first while it has demand, and which are held
///   back from other roles (as headroom) until the role consumes them;
/// - `limit`: resources the role and its subroles together never exceed.
///
/// Consumption counts allocations plus unallocated reservations, as in Mesos.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Guaranteed resources (absent kinds: no guarantee).
    pub guarantee: Resources,
    /// Upper bounds (absent kinds: unlimited).
    pub limit: QuotaLimits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for ok in ["*", "eng", "eng/batch", "a-b_c/D9"] {
            assert_eq!(Role::new(ok).unwrap().as_str(), ok);
        }
        assert_eq!(Role::new(""), Err(RoleError::Empty));
        assert_eq!(
            Role::new("/eng"),
            Err(RoleError::LeadingSlash("/eng".into()))
        );
        assert_eq!(
            Role::new("eng/"),
            Err(RoleError::EmptySegment("eng/".into()))
        );
        assert_eq!(
            Role::new("a//b"),
            Err(RoleError::EmptySegment("a//b".into()))
        );
        assert_eq!(
            Role::new("a/../b"),
            Err(RoleError::DotSegment("a/../b".into()))
        );
        assert_eq!(Role::new("."), Err(RoleError::DotSegment(".".into())));
        assert_eq!(
            Role::new("eng/*"),
            Err(RoleError::InvalidChar {
                role: "eng/*".into(),
                ch: '*'
            })
        );
        assert!(Role::new("a b").is_err());
    }

    #[test]
    fn role_parents() {
        let r = Role::new("a/b/c").unwrap();
        assert_eq!(r.parent().unwrap().as_str(), "a/b");
        assert_eq!(r.parent().unwrap().parent().unwrap().as_str(), "a");
        assert_eq!(Role::new("a").unwrap().parent(), None);
        assert!(Role::default_role().is_default());
    }

    #[test]
    fn weights_must_be_finite_and_positive() {
        assert_eq!(Weight::new(2.5).unwrap().get(), 2.5);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, -0.0] {
            assert!(Weight::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_cap_and_allow() {
        let limit = QuotaLimits::at_most(Resources::new().with_cpus_milli(4000))
            .with_none_of(&Resources::new().with_disk_bytes(1));
        let consumed = Resources::new().with_cpus_milli(3000);
        let want = Resources::new()
            .with_cpus_milli(2000)
            .with_mem_bytes(10)
            .with_disk_bytes(5);
        assert_eq!(
            limit.cap(&consumed, &want),
            Resources::new().with_cpus_milli(1000).with_mem_bytes(10)
        );
        assert!(
            limit.allows(
                &Resources::new()
                    .with_cpus_milli(4000)
                    .with_mem_bytes(1 << 40)
            )
        );
        assert!(!limit.allows(&Resources::new().with_disk_bytes(1)));
        assert!(QuotaLimits::unlimited().allows(&Resources::new().with_cpus_milli(u64::MAX)));
    }
}

//! Typed identifiers and the allocator's notion of time.
//!
//! The allocator defines its own `AgentId` and `FrameworkId` rather than being generic over key
//! types: the master converts its proto IDs once at the edge (STYLE.md, "typed IDs at the
//! edge"), and concrete types keep every signature and error message readable. They validate
//! like Mesos IDs so that a framework ID can also name a client in a sorter, where `/` would
//! mean hierarchy.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An ID failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty, `.`, `..`, or containing `/`, `\` or a control character.
    #[error(
        "invalid {kind} id {id:?}: must be non-empty, not '.' or '..', without '/', '\\' or control characters"
    )]
    Invalid {
        /// "agent" or "framework".
        kind: &'static str,
        /// The rejected text.
        id: String,
    },
}

fn validate(kind: &'static str, id: &str) -> Result<(), IdError> {
    let bad = id.is_empty()
        || id == "."
        || id == ".."
        || id.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        Err(IdError::Invalid {
            kind,
            id: id.to_owned(),
        })
    } else {
        Ok(())
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an ID.
            pub fn new(id: impl AsRef<str>) -> Result<Self, IdError> {
                let id = id.as_ref();
                validate($kind, id)?;
                Ok(Self(id.into()))
            }

            /// The ID text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// An agent. Cheap to clone (shared string), so offers can carry it.
    AgentId,
    "agent"
);
id_type!(
    /// A framework. Cheap to clone (shared string), so offers can carry it.
    FrameworkId,
    "framework"
);

/// A point in time: milliseconds since an epoch the master chooses (for example its start).
///
/// The allocator never reads a clock; calls that need time take a `Timestamp`, so tests drive
/// time explicitly and a replayed event log allocates identically.
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
    fn ids_validate_like_mesos() {
        assert!(AgentId::new("agent-1").is_ok());
        assert!(FrameworkId::new("c0ffee-0001").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
            assert!(FrameworkId::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            "x/y".parse::<AgentId>(),
            Err(IdError::Invalid {
                kind: "agent",
                id: "x/y".into()
            })
        );
    }

    #[test]
    fn timestamps_saturate() {
        let t = Timestamp::from_millis(5);
        assert_eq!(t.saturating_add(Duration::from_secs(1)).as_millis(), 1005);
        assert_eq!(t.saturating_add(Duration::MAX), Timestamp::MAX);
    }
}

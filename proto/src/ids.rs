//! Typed IDs.
//!
//! [`AgentId`] and [`FrameworkId`] are the allocator's own types, re-exported so the system has
//! one type per concept; [`TaskId`] and [`OfferId`] are defined here with the same rules. Every
//! ID that crosses the wire is checked by [`ProtoId::parse`], which adds the length bound the
//! allocator does not enforce (IDs name sandbox directories, and file names are limited to 255
//! bytes).

use std::fmt;
use std::sync::Arc;

pub use corral_allocator::{AgentId, FrameworkId};

/// Longest ID, in bytes.
pub const MAX_ID_BYTES: usize = 255;

/// What is wrong with an ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdProblem {
    /// The empty string.
    Empty,
    /// More than [`MAX_ID_BYTES`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// `.` or `..`.
    Dots,
    /// Contains this forbidden character (`/`, `\` or a control character).
    ForbiddenChar(char),
    /// Refused by corral-allocator's own check (cannot happen while its rules are a subset of
    /// ours; kept so a divergence is an error rather than a panic).
    RejectedByAllocator,
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("must not be empty"),
            Self::TooLong { len } => {
                write!(f, "is {len} bytes, over the {MAX_ID_BYTES}-byte limit")
            }
            Self::Dots => f.write_str("must not be '.' or '..'"),
            Self::ForbiddenChar(c) => write!(f, "must not contain {c:?}"),
            Self::RejectedByAllocator => f.write_str("is refused by the allocator"),
        }
    }
}

/// An ID failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {id:?}: {problem}")]
pub struct IdError {
    /// `"agent"`, `"framework"`, `"task"` or `"offer"`.
    pub kind: &'static str,
    /// The rejected text, cut to a readable length.
    pub id: String,
    /// What is wrong with it.
    pub problem: IdProblem,
}

/// Checks the rules every ID follows: 1 to [`MAX_ID_BYTES`] bytes, not `.` or `..`, no `/`,
/// `\` or control character. These are corral-allocator's rules plus the length bound.
pub fn validate_id(kind: &'static str, id: &str) -> Result<(), IdError> {
    let problem = if id.is_empty() {
        Some(IdProblem::Empty)
    } else if id.len() > MAX_ID_BYTES {
        Some(IdProblem::TooLong { len: id.len() })
    } else if id == "." || id == ".." {
        Some(IdProblem::Dots)
    } else {
        id.chars()
            .find(|&c| c == '/' || c == '\\' || c.is_control())
            .map(IdProblem::ForbiddenChar)
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(IdError {
            kind,
            id: shorten(id),
            problem,
        }),
    }
}

/// The first 64 characters of `s`, so an absurd ID does not flood an error message.
fn shorten(s: &str) -> String {
    const KEEP: usize = 64;
    match s.char_indices().nth(KEEP) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

fn rejected_by_allocator(kind: &'static str, id: &str) -> IdError {
    IdError {
        kind,
        id: shorten(id),
        problem: IdProblem::RejectedByAllocator,
    }
}

/// An ID type that can be parsed from a proto string field.
pub trait ProtoId: Sized {
    /// What it identifies, for messages: `"agent"`, `"framework"`, `"task"`, `"offer"`.
    const KIND: &'static str;

    /// Validates with [`validate_id`] and wraps.
    fn parse(id: &str) -> Result<Self, IdError>;

    /// The ID text, for the wire.
    fn as_str(&self) -> &str;
}

impl ProtoId for AgentId {
    const KIND: &'static str = "agent";

    fn parse(id: &str) -> Result<Self, IdError> {
        validate_id(Self::KIND, id)?;
        AgentId::new(id).map_err(|_| rejected_by_allocator(Self::KIND, id))
    }

    fn as_str(&self) -> &str {
        AgentId::as_str(self)
    }
}

impl ProtoId for FrameworkId {
    const KIND: &'static str = "framework";

    fn parse(id: &str) -> Result<Self, IdError> {
        validate_id(Self::KIND, id)?;
        FrameworkId::new(id).map_err(|_| rejected_by_allocator(Self::KIND, id))
    }

    fn as_str(&self) -> &str {
        FrameworkId::as_str(self)
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
                validate_id($kind, id)?;
                Ok(Self(id.into()))
            }

            /// The ID text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ProtoId for $name {
            const KIND: &'static str = $kind;

            fn parse(id: &str) -> Result<Self, IdError> {
                Self::new(id)
            }

            fn as_str(&self) -> &str {
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
    /// A task, named by its framework; unique within that framework. Cheap to clone.
    TaskId,
    "task"
);
id_type!(
    /// An offer, named by the master. Cheap to clone.
    OfferId,
    "offer"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_one_set_of_rules() {
        assert!(TaskId::new("job-1.attempt_2").is_ok());
        assert!(OfferId::new("o".repeat(MAX_ID_BYTES)).is_ok());
        let cases = [
            ("", IdProblem::Empty),
            (".", IdProblem::Dots),
            ("..", IdProblem::Dots),
            ("a/b", IdProblem::ForbiddenChar('/')),
            ("a\\b", IdProblem::ForbiddenChar('\\')),
            ("a\nb", IdProblem::ForbiddenChar('\n')),
        ];
        for (bad, problem) in cases {
            assert_eq!(TaskId::new(bad).unwrap_err().problem, problem, "{bad:?}");
            assert_eq!(AgentId::parse(bad).unwrap_err().problem, problem, "{bad:?}");
            assert_eq!(FrameworkId::parse(bad).unwrap_err().problem, problem);
        }
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            FrameworkId::parse(&long).unwrap_err().problem,
            IdProblem::TooLong { len: 256 }
        );
    }

    #[test]
    fn errors_are_readable_and_short() {
        let err = TaskId::new("a/b").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid task id "a/b": must not contain '/'"#
        );
        let err = OfferId::new("y".repeat(1000)).unwrap_err();
        assert!(err.to_string().len() < 150, "{err}");
    }

    #[test]
    fn reexported_ids_are_the_allocators() {
        let a: corral_allocator::AgentId = AgentId::parse("agent-7").unwrap();
        assert_eq!(ProtoId::as_str(&a), "agent-7");
    }
}

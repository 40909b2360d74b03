//! Typed IDs: [`AgentId`], [`FrameworkId`], [`TaskId`], [`OfferId`], one rule set for all.
//!
//! IDs validate like Mesos IDs, plus a length bound: 1 to [`MAX_ID_BYTES`] bytes, not `.` or
//! `..`, no `/`, `\` or control character. IDs name sandbox directories (file names are limited
//! to 255 bytes) and a framework ID names a client in the allocator's sorters, where `/` would
//! mean hierarchy. Each is a shared string, cheap to clone.

use std::fmt;
use std::sync::Arc;

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
/// `\` or control character.
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

/// An ID type: what it identifies, and its text.
///
/// Generic code (parsing an ID field of a message, minting IDs) names IDs through it.
pub trait Id: Sized + Clone + Eq + Ord + std::hash::Hash + fmt::Display + fmt::Debug {
    /// What it identifies, for messages: `"agent"`, `"framework"`, `"task"`, `"offer"`.
    const KIND: &'static str;

    /// Validates with [`validate_id`] and wraps.
    fn parse(id: &str) -> Result<Self, IdError>;

    /// The ID text.
    fn as_str(&self) -> &str;
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

        impl Id for $name {
            const KIND: &'static str = $kind;

            fn parse(id: &str) -> Result<Self, IdError> {
                Self::new(id)
            }

            fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
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
    /// An agent, named by the master that admitted it.
    AgentId,
    "agent"
);
id_type!(
    /// A framework, named by the master when it first subscribes.
    FrameworkId,
    "framework"
);
id_type!(
    /// A task, named by its framework; unique within that framework.
    TaskId,
    "task"
);
id_type!(
    /// An offer, named by the master.
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
            assert_eq!(FrameworkId::new(bad).unwrap_err().problem, problem);
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
}

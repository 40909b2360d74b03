//! Validation errors of incoming messages.

use std::borrow::Cow;
use std::fmt;

use corral_types::{DigestError, IdError, RoleError};

/// Where in a message a problem is: `accept.operations[0].launch.tasks[3].resources`.
///
/// Built inside out on the error path only ([`ProtoError::within`]), so valid messages pay
/// nothing for it.
pub type FieldPath = Cow<'static, str>;

/// A message failed validation at the service boundary. Every variant names the field.
///
/// Maps to `INVALID_ARGUMENT`, or `RESOURCE_EXHAUSTED` for [`ProtoError::TooLarge`]
/// (see [`crate::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A required field is unset (or empty, for strings and lists that must have content).
    #[error("{field}: required field is missing")]
    MissingField {
        /// The field.
        field: FieldPath,
    },
    /// An ID field is not a valid ID.
    #[error("{field}: {error}")]
    InvalidId {
        /// The field.
        field: FieldPath,
        /// What is wrong.
        error: IdError,
    },
    /// A module digest is malformed.
    #[error("{field}: {error}")]
    InvalidDigest {
        /// The field.
        field: FieldPath,
        /// What is wrong.
        error: DigestError,
    },
    /// A custom scalar resource name is invalid.
    #[error(
        "{field}: invalid resource name {name:?} (expected [A-Za-z0-9_-]+, not cpus, mem or disk)"
    )]
    InvalidResourceName {
        /// The field.
        field: FieldPath,
        /// The rejected name.
        name: String,
    },
    /// A role name is invalid.
    #[error("{field}: {error}")]
    InvalidRole {
        /// The field.
        field: FieldPath,
        /// What is wrong.
        error: RoleError,
    },
    /// An enum field holds a number this version does not know.
    #[error("{field}: unknown enum value {value}")]
    UnknownEnumValue {
        /// The field.
        field: FieldPath,
        /// The number received.
        value: i32,
    },
    /// A number is outside what the field allows.
    #[error("{field}: {value} is out of range ({expected})")]
    OutOfRange {
        /// The field.
        field: FieldPath,
        /// The value received, as text.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// Bytes or a count over a protocol limit.
    #[error("{field}: {size} is over the limit of {limit}")]
    TooLarge {
        /// The field.
        field: FieldPath,
        /// The size received.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Anything else malformed (a path leaving the sandbox, a NUL in an argument, ...).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: FieldPath,
        /// What is wrong.
        reason: String,
    },
}

impl ProtoError {
    /// A required field is missing.
    pub fn missing(field: impl Into<FieldPath>) -> Self {
        Self::MissingField {
            field: field.into(),
        }
    }

    /// Something is wrong with a field.
    pub fn invalid(field: impl Into<FieldPath>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A number is out of range.
    pub fn out_of_range(
        field: impl Into<FieldPath>,
        value: impl fmt::Display,
        expected: &'static str,
    ) -> Self {
        Self::OutOfRange {
            field: field.into(),
            value: value.to_string(),
            expected,
        }
    }

    /// The field the error is about.
    pub fn field(&self) -> &str {
        match self {
            Self::MissingField { field }
            | Self::InvalidId { field, .. }
            | Self::InvalidDigest { field, .. }
            | Self::InvalidResourceName { field, .. }
            | Self::InvalidRole { field, .. }
            | Self::UnknownEnumValue { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::TooLarge { field, .. }
            | Self::Invalid { field, .. } => field,
        }
    }

    /// Prefixes the field path with the enclosing field: `resources` within `tasks[2]` becomes
    /// `tasks[2].resources`; an empty path becomes just the parent.
    #[must_use]
    pub fn within(mut self, parent: impl fmt::Display) -> Self {
        let field = match &mut self {
            Self::MissingField { field }
            | Self::InvalidId { field, .. }
            | Self::InvalidDigest { field, .. }
            | Self::InvalidResourceName { field, .. }
            | Self::InvalidRole { field, .. }
            | Self::UnknownEnumValue { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::TooLarge { field, .. }
            | Self::Invalid { field, .. } => field,
        };
        *field = if field.is_empty() {
            Cow::Owned(parent.to_string())
        } else {
            Cow::Owned(format!("{parent}.{field}"))
        };
        self
    }
}

/// Context for the `i`th element of a repeated field: `.map_err(at_index("tasks", i))`.
pub(crate) fn at_index(name: &'static str, i: usize) -> impl FnOnce(ProtoError) -> ProtoError {
    move |e| e.within(format_args!("{name}[{i}]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_nest_outwards() {
        let e = ProtoError::missing("resources")
            .within("tasks[2]")
            .within("launch");
        assert_eq!(e.field(), "launch.tasks[2].resources");
        assert_eq!(
            e.to_string(),
            "launch.tasks[2].resources: required field is missing"
        );
        let e = at_index("tasks", 7)(ProtoError::invalid("env[0].name", "contains '='"));
        assert_eq!(e.to_string(), "tasks[7].env[0].name: contains '='");
    }
}

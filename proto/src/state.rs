//! Wire conversions of corral-types' enums (task states, reasons, trap kinds, agent and
//! framework states).
//!
//! Each converts into its proto enum infallibly ([`ProtoEnum::to_proto`], or `From`), and
//! from an `i32` field with [`ProtoEnum::from_proto`] (unset is an error) or
//! [`ProtoEnum::from_proto_opt`] (unset is `None`). The conversions are `match`es in both
//! directions, so a value added on one side without the other does not compile.

use corral_types::{
    AgentState, FrameworkState, OperationState, Reason, StatusSource, TaskState, TrapKind,
};

use crate::error::ProtoError;
use crate::v1;

/// A domain enum with a proto counterpart.
pub trait ProtoEnum: Sized + Copy {
    /// The generated proto enum.
    type Proto;

    /// Reads a proto enum field; unset (`0`) is `None`.
    fn from_proto_opt(field: &'static str, value: i32) -> Result<Option<Self>, ProtoError>;

    /// The proto enum.
    fn to_proto(self) -> Self::Proto;

    /// The field value prost uses (`i32`).
    fn to_i32(self) -> i32;

    /// Reads a proto enum field; unset (`0`) is [`ProtoError::MissingField`].
    fn from_proto(field: &'static str, value: i32) -> Result<Self, ProtoError> {
        Self::from_proto_opt(field, value)?.ok_or_else(|| ProtoError::missing(field))
    }
}

macro_rules! proto_enum {
    ($name:ident => $proto:ident { $( $variant:ident, )+ }) => {
        impl ProtoEnum for $name {
            type Proto = v1::$proto;

            fn from_proto_opt(
                field: &'static str,
                value: i32,
            ) -> Result<Option<Self>, ProtoError> {
                match v1::$proto::try_from(value) {
                    Ok(v1::$proto::Unspecified) => Ok(None),
                    $( Ok(v1::$proto::$variant) => Ok(Some($name::$variant)), )+
                    Err(_) => Err(ProtoError::UnknownEnumValue {
                        field: field.into(),
                        value,
                    }),
                }
            }

            fn to_proto(self) -> v1::$proto {
                match self {
                    $( $name::$variant => v1::$proto::$variant, )+
                }
            }

            fn to_i32(self) -> i32 {
                self.to_proto() as i32
            }
        }

        impl From<$name> for v1::$proto {
            fn from(value: $name) -> Self {
                value.to_proto()
            }
        }
    };
}

proto_enum!(TaskState => TaskState {
    Staging, Starting, Running, Killing, Finished, Failed, Killed, Error, Lost, Dropped,
    Unreachable, Gone, Unknown,
});

proto_enum!(Reason => Reason {
    Launched, Exited, TaskKilledByRequest, OutOfFuel, MemoryLimit, Timeout, DiskLimit,
    OutputLimit, Trap, InvalidModule, ModuleTooLarge, FetchFailed, MissingEntrypoint,
    LinkError, InputUnavailable, SandboxError, NoCapacity, AgentError, InvalidOffer,
    InvalidTask, AgentRestarted, AgentUnreachable, AgentRemoved, AgentDraining,
    FrameworkRemoved, Reconciliation,
});

proto_enum!(TrapKind => TrapKind {
    StackOverflow, Unreachable, OutOfBounds, Arithmetic, BadCall, Other, HostError,
});

proto_enum!(StatusSource => StatusSource { Agent, Master, });

proto_enum!(AgentState => AgentState {
    Admitted, Unreachable, Gone, Draining, Drained,
});

proto_enum!(FrameworkState => FrameworkState { Active, Disconnected, Completed, });

proto_enum!(OperationState => OperationState { Dropped, Error, });

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant round-trips, and its name is the wire name without the prefix.
    fn covers<E: ProtoEnum + std::fmt::Display + PartialEq + std::fmt::Debug>(
        all: &[E],
        prefix: &str,
        name: impl Fn(E::Proto) -> &'static str,
    ) {
        for &v in all {
            assert_eq!(E::from_proto("f", v.to_i32()), Ok(v));
            let wire = name(v.to_proto());
            assert_eq!(wire.strip_prefix(prefix), Some(v.to_string().as_str()));
        }
    }

    #[test]
    fn every_variant_round_trips_under_its_wire_name() {
        covers(TaskState::ALL, "TASK_STATE_", |p| p.as_str_name());
        covers(Reason::ALL, "REASON_", |p| p.as_str_name());
        covers(TrapKind::ALL, "TRAP_KIND_", |p| p.as_str_name());
        covers(StatusSource::ALL, "STATUS_SOURCE_", |p| p.as_str_name());
        covers(AgentState::ALL, "AGENT_STATE_", |p| p.as_str_name());
        covers(FrameworkState::ALL, "FRAMEWORK_STATE_", |p| p.as_str_name());
        covers(OperationState::ALL, "OPERATION_STATE_", |p| p.as_str_name());
        // The domain enums cover the proto enums exactly (UNSPECIFIED aside).
        assert!(v1::TaskState::try_from(TaskState::ALL.len() as i32 + 1).is_err());
    }

    #[test]
    fn unset_and_unknown_values_are_errors() {
        assert_eq!(
            TaskState::from_proto("status.state", 0),
            Err(ProtoError::missing("status.state"))
        );
        assert_eq!(StatusSource::from_proto_opt("source", 0), Ok(None));
        assert_eq!(
            Reason::from_proto("reason", 999),
            Err(ProtoError::UnknownEnumValue {
                field: "reason".into(),
                value: 999
            })
        );
    }
}

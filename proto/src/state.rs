//! Domain versions of the proto enums: no `UNSPECIFIED` variant, so the core can never hold
//! a state or reason that was not set.
//!
//! Each enum converts into its proto enum (and `i32`, the field type prost uses) infallibly,
//! and from an `i32` field with [`TaskState::from_proto`] (unset is an error) or
//! [`TrapKind::from_proto_opt`] (unset is `None`). The conversions are `match`es in both
//! directions, so a value added to a proto enum without a domain variant does not compile.

use crate::error::ProtoError;
use crate::v1;

macro_rules! domain_enum {
    (
        $(#[$meta:meta])*
        $name:ident => $proto:ident as $prefix:literal {
            $( $(#[$vmeta:meta])* $variant:ident, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in proto order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Reads a proto enum field; unset (`0`) is [`ProtoError::MissingField`].
            pub fn from_proto(field: &'static str, value: i32) -> Result<Self, ProtoError> {
                Self::from_proto_opt(field, value)?.ok_or_else(|| ProtoError::missing(field))
            }

            /// Reads a proto enum field; unset (`0`) is `None`.
            pub fn from_proto_opt(
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

            /// The proto enum.
            pub fn to_proto(self) -> v1::$proto {
                match self {
                    $( $name::$variant => v1::$proto::$variant, )+
                }
            }
        }

        /// The proto name without its prefix (`TASK_STATE_RUNNING` -> `RUNNING`), as
        /// operators read it.
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let full = self.to_proto().as_str_name();
                f.write_str(full.strip_prefix($prefix).unwrap_or(full))
            }
        }

        impl From<$name> for v1::$proto {
            fn from(value: $name) -> Self {
                value.to_proto()
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> Self {
                value.to_proto() as i32
            }
        }
    };
}

domain_enum! {
    /// The lifecycle of a task, as in Mesos. See `TaskState` in `common.proto`.
    TaskState => TaskState as "TASK_STATE_" {
        /// Sent to the agent, not yet confirmed.
        Staging,
        /// Fetching, compiling or instantiating.
        Starting,
        /// Executing.
        Running,
        /// Stopping after a kill request.
        Killing,
        /// Exited with code 0.
        Finished,
        /// Exited non-zero, trapped, hit a limit or could not start.
        Failed,
        /// Killed on request.
        Killed,
        /// Invalid; never launched.
        Error,
        /// Lost with its agent.
        Lost,
        /// Not launched.
        Dropped,
        /// Its agent is not heard from; may come back.
        Unreachable,
        /// Its agent was removed for good.
        Gone,
        /// Unknown to the master (reconciliation).
        Unknown,
    }
}

impl TaskState {
    /// True for states a task never leaves: FINISHED, FAILED, KILLED, ERROR, LOST, DROPPED,
    /// GONE (Mesos's `isTerminalState`). UNREACHABLE tasks may come back and UNKNOWN only
    /// answers reconciliation, so neither is terminal.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Finished
                | Self::Failed
                | Self::Killed
                | Self::Error
                | Self::Lost
                | Self::Dropped
                | Self::Gone
        )
    }
}

domain_enum! {
    /// Why a task is in its state. See `Reason` in `common.proto` for each value.
    Reason => Reason as "REASON_" {
        /// Normal progress of a launch.
        Launched,
        /// The guest exited on its own.
        Exited,
        /// A kill was requested.
        TaskKilledByRequest,
        /// The fuel budget ran out.
        OutOfFuel,
        /// A memory or table growth was refused.
        MemoryLimit,
        /// The wall-clock timeout passed.
        Timeout,
        /// The sandbox's disk bound was reached.
        DiskLimit,
        /// stdout and stderr passed their bound.
        OutputLimit,
        /// The guest trapped.
        Trap,
        /// The module is not valid for the agent.
        InvalidModule,
        /// The module is larger than the agent admits.
        ModuleTooLarge,
        /// The module could not be fetched.
        FetchFailed,
        /// The entrypoint is not exported.
        MissingEntrypoint,
        /// The module imports something the agent does not provide.
        LinkError,
        /// An input file's source is unavailable.
        InputUnavailable,
        /// The sandbox could not be prepared.
        SandboxError,
        /// No free instance slot.
        NoCapacity,
        /// Another agent-side failure.
        AgentError,
        /// The offer was not valid.
        InvalidOffer,
        /// The task description was not valid.
        InvalidTask,
        /// The agent restarted and did not recover the task.
        AgentRestarted,
        /// The agent missed its heartbeats.
        AgentUnreachable,
        /// The agent was removed.
        AgentRemoved,
        /// The agent is draining.
        AgentDraining,
        /// The framework was removed.
        FrameworkRemoved,
        /// An answer to reconciliation.
        Reconciliation,
    }
}

domain_enum! {
    /// How a guest trapped (with [`Reason::Trap`]).
    TrapKind => TrapKind as "TRAP_KIND_" {
        /// Call stack exhausted.
        StackOverflow,
        /// An `unreachable` instruction (Rust panics, `abort()`).
        Unreachable,
        /// Out-of-bounds memory or table access, or a misaligned atomic.
        OutOfBounds,
        /// Division by zero, integer overflow, bad float-to-int conversion.
        Arithmetic,
        /// Indirect call to a null or mistyped function.
        BadCall,
        /// Any other trap.
        Other,
    }
}

domain_enum! {
    /// Who produced a status update.
    StatusSource => StatusSource as "STATUS_SOURCE_" {
        /// The agent running the task.
        Agent,
        /// The master.
        Master,
    }
}

domain_enum! {
    /// The state of an agent as the master records it.
    AgentState => AgentState as "AGENT_STATE_" {
        /// Registered and offered.
        Admitted,
        /// Missed its heartbeats.
        Unreachable,
        /// Removed for good.
        Gone,
        /// Being drained.
        Draining,
        /// Drained.
        Drained,
    }
}

domain_enum! {
    /// The state of a framework.
    FrameworkState => FrameworkState as "FRAMEWORK_STATE_" {
        /// Subscribed with a live stream.
        Active,
        /// Its stream broke; within its failover timeout.
        Disconnected,
        /// Torn down or timed out.
        Completed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_i32() {
        for &s in TaskState::ALL {
            assert_eq!(TaskState::from_proto("state", i32::from(s)), Ok(s));
        }
        for &r in Reason::ALL {
            assert_eq!(Reason::from_proto("reason", i32::from(r)), Ok(r));
        }
        for &k in TrapKind::ALL {
            assert_eq!(TrapKind::from_proto_opt("trap_kind", k.into()), Ok(Some(k)));
        }
        // The domain enums cover the proto enums exactly (UNSPECIFIED aside).
        assert_eq!(TaskState::ALL.len(), 13);
        assert!(v1::TaskState::try_from(TaskState::ALL.len() as i32 + 1).is_err());
        assert!(v1::Reason::from_str_name("REASON_RECONCILIATION").is_some());
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

    #[test]
    fn terminal_states_match_mesos() {
        let terminal: Vec<_> = TaskState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.to_proto().as_str_name())
            .collect();
        assert_eq!(
            terminal,
            [
                "TASK_STATE_FINISHED",
                "TASK_STATE_FAILED",
                "TASK_STATE_KILLED",
                "TASK_STATE_ERROR",
                "TASK_STATE_LOST",
                "TASK_STATE_DROPPED",
                "TASK_STATE_GONE"
            ]
        );
    }
}

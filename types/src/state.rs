//! The states and reasons of tasks, agents and frameworks, as in Mesos.
//!
//! None has an "unspecified" value, so nothing can hold a state or reason that was not set.
//! Each prints as operators read it (`RUNNING`, `OUT_OF_FUEL`): the wire name without its
//! prefix. corral-proto converts them to and from the wire with exhaustive `match`es, so a
//! value added on one side only does not compile.

macro_rules! domain_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name operators read (`RUNNING`).
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The variant named `text` (as [`Self::name`] prints it), if any.
            pub fn from_name(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.name() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

domain_enum! {
    /// The lifecycle of a task, as in Mesos. See `TaskState` in `common.proto`.
    TaskState {
        /// Sent to the agent, not yet confirmed.
        Staging = "STAGING",
        /// Fetching, compiling or instantiating.
        Starting = "STARTING",
        /// Executing.
        Running = "RUNNING",
        /// Stopping after a kill request.
        Killing = "KILLING",
        /// Exited with code 0.
        Finished = "FINISHED",
        /// Exited non-zero, trapped, hit a limit or could not start.
        Failed = "FAILED",
        /// Killed on request.
        Killed = "KILLED",
        /// Invalid; never launched.
        Error = "ERROR",
        /// Lost with its agent.
        Lost = "LOST",
        /// Not launched.
        Dropped = "DROPPED",
        /// Its agent is not heard from; may come back.
        Unreachable = "UNREACHABLE",
        /// Its agent was removed for good.
        Gone = "GONE",
        /// Unknown to the master (reconciliation).
        Unknown = "UNKNOWN",
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
    Reason {
        /// Normal progress of a launch.
        Launched = "LAUNCHED",
        /// The guest exited on its own.
        Exited = "EXITED",
        /// A kill was requested.
        TaskKilledByRequest = "TASK_KILLED_BY_REQUEST",
        /// The fuel budget ran out.
        OutOfFuel = "OUT_OF_FUEL",
        /// A memory or table growth was refused.
        MemoryLimit = "MEMORY_LIMIT",
        /// The wall-clock timeout passed.
        Timeout = "TIMEOUT",
        /// The sandbox's disk bound was reached.
        DiskLimit = "DISK_LIMIT",
        /// stdout and stderr passed their bound.
        OutputLimit = "OUTPUT_LIMIT",
        /// The guest trapped.
        Trap = "TRAP",
        /// The module is not valid for the agent.
        InvalidModule = "INVALID_MODULE",
        /// The module is larger than the agent admits.
        ModuleTooLarge = "MODULE_TOO_LARGE",
        /// The module could not be fetched.
        FetchFailed = "FETCH_FAILED",
        /// The entrypoint is not exported.
        MissingEntrypoint = "MISSING_ENTRYPOINT",
        /// The module imports something the agent does not provide.
        LinkError = "LINK_ERROR",
        /// An input file's source is unavailable.
        InputUnavailable = "INPUT_UNAVAILABLE",
        /// The sandbox could not be prepared.
        SandboxError = "SANDBOX_ERROR",
        /// No free instance slot.
        NoCapacity = "NO_CAPACITY",
        /// Another agent-side failure.
        AgentError = "AGENT_ERROR",
        /// The offer was not valid.
        InvalidOffer = "INVALID_OFFER",
        /// The task description was not valid.
        InvalidTask = "INVALID_TASK",
        /// The agent restarted and did not recover the task.
        AgentRestarted = "AGENT_RESTARTED",
        /// The agent missed its heartbeats.
        AgentUnreachable = "AGENT_UNREACHABLE",
        /// The agent was removed.
        AgentRemoved = "AGENT_REMOVED",
        /// The agent is draining.
        AgentDraining = "AGENT_DRAINING",
        /// The framework was removed.
        FrameworkRemoved = "FRAMEWORK_REMOVED",
        /// An answer to reconciliation.
        Reconciliation = "RECONCILIATION",
    }
}

domain_enum! {
    /// How a guest trapped (with [`Reason::Trap`]).
    TrapKind {
        /// The guest's call stack passed the engine's `max_wasm_stack`.
        StackOverflow = "STACK_OVERFLOW",
        /// An `unreachable` instruction: Rust panics and `abort()` end here.
        Unreachable = "UNREACHABLE",
        /// Out-of-bounds memory or table access, or a misaligned atomic.
        OutOfBounds = "OUT_OF_BOUNDS",
        /// Integer division by zero or overflow, or a bad float-to-int conversion.
        Arithmetic = "ARITHMETIC",
        /// An indirect call to a null or mistyped function.
        BadCall = "BAD_CALL",
        /// Any other trap.
        Other = "OTHER",
        /// Not a trap of the guest's code: a host (WASI) call failed in a way the guest cannot
        /// continue from, such as `proc_exit` with a status of 126 or more. `wasmtime run`
        /// reports these as errors (exit code 1) rather than traps.
        HostError = "HOST_ERROR",
    }
}

domain_enum! {
    /// Who produced a status update.
    StatusSource {
        /// The agent running the task.
        Agent = "AGENT",
        /// The master.
        Master = "MASTER",
    }
}

domain_enum! {
    /// The state of an agent as the master records it.
    AgentState {
        /// Registered and offered.
        Admitted = "ADMITTED",
        /// Missed its heartbeats.
        Unreachable = "UNREACHABLE",
        /// Removed for good.
        Gone = "GONE",
        /// Being drained.
        Draining = "DRAINING",
        /// Drained.
        Drained = "DRAINED",
    }
}

domain_enum! {
    /// The state of a framework.
    FrameworkState {
        /// Subscribed with a live stream.
        Active = "ACTIVE",
        /// Its stream broke; within its failover timeout.
        Disconnected = "DISCONNECTED",
        /// Torn down or timed out.
        Completed = "COMPLETED",
    }
}

domain_enum! {
    /// What became of an offer operation other than LAUNCH (RESERVE, UNRESERVE) that the
    /// master did not apply. Launched tasks report through their own status updates.
    OperationState {
        /// Not applied because the ACCEPT's offers were not valid; nothing was tried.
        Dropped = "DROPPED",
        /// Refused: it asked for more than the offers held, or the allocator refused it.
        Error = "ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_match_mesos() {
        let terminal: Vec<_> = TaskState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.name())
            .collect();
        assert_eq!(
            terminal,
            [
                "FINISHED", "FAILED", "KILLED", "ERROR", "LOST", "DROPPED", "GONE"
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for &r in Reason::ALL {
            assert_eq!(Reason::from_name(r.name()), Some(r));
        }
        assert_eq!(TaskState::Running.to_string(), "RUNNING");
        assert_eq!(TaskState::from_name("running"), None);
    }
}

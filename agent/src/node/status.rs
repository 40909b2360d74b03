//! How a task's outcome reads on the wire: the one mapping from [`TaskOutcome`] to a task
//! state, reason and message, and the construction of status updates.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use corral_proto::{ProtoEnum, v1};
use corral_types::{
    AgentId, FrameworkId, IdError, Progress, Reason, StatusSource, TaskId, TaskOutput, TaskState,
    TrapKind,
};

use crate::cache::ModuleError;
use crate::task::{StartError, TaskOutcome};

/// What a status update says about a task, before ids, uuid and time are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusParts {
    pub(crate) state: TaskState,
    pub(crate) reason: Reason,
    pub(crate) message: String,
    /// Set with [`Reason::Trap`] only.
    pub(crate) trap_kind: Option<TrapKind>,
    /// How far the task says it is (RUNNING updates of SDK tasks).
    pub(crate) progress: Option<Progress>,
    /// The task's structured result (terminal updates of SDK tasks that set one).
    pub(crate) result_json: Option<String>,
    /// The task's latest checkpoint, when it changed (SDK tasks; for the master only).
    pub(crate) checkpoint: Option<Bytes>,
    /// The files of its outputs folder kept in the artifact store (terminal updates).
    pub(crate) outputs: Vec<TaskOutput>,
    /// What of its outputs folder was not kept, and why.
    pub(crate) outputs_not_kept: Option<String>,
}

impl StatusParts {
    pub(crate) fn new(state: TaskState, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            state,
            reason,
            message: message.into(),
            trap_kind: None,
            progress: None,
            result_json: None,
            checkpoint: None,
            outputs: Vec::new(),
            outputs_not_kept: None,
        }
    }
}

/// The terminal status of a task that ended with `outcome`.
///
/// Launch failures caused by the task description itself are `ERROR` (it was never valid);
/// everything else a task or its module did is `FAILED` with the reason naming the cause.
pub(crate) fn status_of(outcome: &TaskOutcome) -> StatusParts {
    use StatusParts as P;
    use TaskState::{Error, Failed, Finished, Killed};
    match outcome {
        TaskOutcome::Exited { code: 0 } => P::new(Finished, Reason::Exited, "exited with code 0"),
        TaskOutcome::Exited { code } => {
            P::new(Failed, Reason::Exited, format!("exited with code {code}"))
        }
        TaskOutcome::OutOfFuel => P::new(Failed, Reason::OutOfFuel, "fuel budget exhausted"),
        TaskOutcome::MemoryLimit => P::new(Failed, Reason::MemoryLimit, "memory limit reached"),
        TaskOutcome::Timeout => P::new(Failed, Reason::Timeout, "timeout passed"),
        TaskOutcome::DiskLimit => P::new(Failed, Reason::DiskLimit, "disk limit reached"),
        TaskOutcome::OutputLimit => P::new(Failed, Reason::OutputLimit, "output limit reached"),
        TaskOutcome::Trapped { kind, message } => P {
            trap_kind: Some(*kind),
            ..P::new(Failed, Reason::Trap, message.clone())
        },
        TaskOutcome::Killed => P::new(Killed, Reason::TaskKilledByRequest, "killed"),
        TaskOutcome::FailedToStart(error) => {
            let message = error.to_string();
            match error {
                StartError::Module(ModuleError::Invalid { .. }) => {
                    P::new(Failed, Reason::InvalidModule, message)
                }
                StartError::Module(ModuleError::TooLarge { .. }) => {
                    P::new(Failed, Reason::ModuleTooLarge, message)
                }
                StartError::Module(ModuleError::NotFound { .. }) => {
                    P::new(Failed, Reason::FetchFailed, message)
                }
                StartError::Module(ModuleError::Io { .. }) => {
                    P::new(Failed, Reason::AgentError, message)
                }
                StartError::MissingEntrypoint { .. } => {
                    P::new(Failed, Reason::MissingEntrypoint, message)
                }
                StartError::Link { .. } => P::new(Failed, Reason::LinkError, message),
                StartError::InputUnavailable { .. } => {
                    P::new(Failed, Reason::InputUnavailable, message)
                }
                StartError::InvalidInputPath { .. } | StartError::InvalidSpec { .. } => {
                    P::new(Error, Reason::InvalidTask, message)
                }
                StartError::Sandbox { .. } => P::new(Failed, Reason::SandboxError, message),
                StartError::NoCapacity => P::new(Failed, Reason::NoCapacity, message),
            }
        }
    }
}

/// Ids of the task an update is about: a task id is unique within its framework.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TaskKey {
    pub(crate) framework_id: FrameworkId,
    pub(crate) task_id: TaskId,
}

impl TaskKey {
    /// The key of ids read from a message or the checkpoint.
    pub(crate) fn parse(framework_id: &str, task_id: &str) -> Result<Self, IdError> {
        Ok(Self {
            framework_id: FrameworkId::new(framework_id)?,
            task_id: TaskId::new(task_id)?,
        })
    }
}

/// A status update from this agent (`agent_id` is `None` before the first registration)
/// with a fresh uuid (`ack = true`) or none.
pub(crate) fn update(
    key: &TaskKey,
    agent_id: Option<&AgentId>,
    parts: StatusParts,
    usage: Option<v1::Usage>,
    ack: bool,
) -> v1::TaskStatus {
    let uuid = if ack {
        Bytes::copy_from_slice(&rand::random::<[u8; 16]>())
    } else {
        Bytes::new()
    };
    v1::TaskStatus {
        task_id: key.task_id.to_string(),
        framework_id: key.framework_id.to_string(),
        agent_id: agent_id.map(ToString::to_string).unwrap_or_default(),
        state: parts.state.to_i32(),
        reason: parts.reason.to_i32(),
        message: parts.message,
        usage,
        timestamp_millis: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        uuid,
        source: StatusSource::Agent.to_i32(),
        trap_kind: parts.trap_kind.map_or(0, ProtoEnum::to_i32),
        healthy: None,
        progress: parts.progress.map(|p| v1::Progress {
            fraction: p.fraction(),
            message: p.message,
        }),
        result_json: parts.result_json.unwrap_or_default(),
        checkpoint: parts.checkpoint.unwrap_or_default(),
        outputs: parts.outputs.iter().map(Into::into).collect(),
        outputs_not_kept: parts.outputs_not_kept.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_types::Digest;

    fn check(outcome: TaskOutcome, state: TaskState, reason: Reason) -> StatusParts {
        let parts = status_of(&outcome);
        assert_eq!((parts.state, parts.reason), (state, reason), "{outcome:?}");
        assert!(!parts.message.is_empty());
        parts
    }

    fn failed_to_start(error: impl Into<StartError>) -> TaskOutcome {
        TaskOutcome::FailedToStart(error.into())
    }

    #[test]
    fn exit_zero_is_finished() {
        check(
            TaskOutcome::Exited { code: 0 },
            TaskState::Finished,
            Reason::Exited,
        );
    }

    #[test]
    fn exit_non_zero_is_failed_with_the_code() {
        let parts = check(
            TaskOutcome::Exited { code: 3 },
            TaskState::Failed,
            Reason::Exited,
        );
        assert!(parts.message.contains('3'));
    }

    #[test]
    fn limits_are_failed_with_their_reason() {
        for (outcome, reason) in [
            (TaskOutcome::OutOfFuel, Reason::OutOfFuel),
            (TaskOutcome::MemoryLimit, Reason::MemoryLimit),
            (TaskOutcome::Timeout, Reason::Timeout),
            (TaskOutcome::DiskLimit, Reason::DiskLimit),
            (TaskOutcome::OutputLimit, Reason::OutputLimit),
        ] {
            let parts = check(outcome, TaskState::Failed, reason);
            assert_eq!(parts.trap_kind, None);
        }
    }

    #[test]
    fn traps_carry_kind_and_message() {
        let parts = check(
            TaskOutcome::Trapped {
                kind: TrapKind::Unreachable,
                message: "wasm trap: unreachable".into(),
            },
            TaskState::Failed,
            Reason::Trap,
        );
        assert_eq!(parts.trap_kind, Some(TrapKind::Unreachable));
        assert_eq!(parts.message, "wasm trap: unreachable");
    }

    #[test]
    fn killed_is_killed_by_request() {
        check(
            TaskOutcome::Killed,
            TaskState::Killed,
            Reason::TaskKilledByRequest,
        );
    }

    #[test]
    fn module_failures_name_the_module_problem() {
        let digest = Digest::of(b"x");
        let cases = [
            (
                ModuleError::Invalid {
                    digest,
                    reason: "bad magic".into(),
                },
                Reason::InvalidModule,
            ),
            (
                ModuleError::TooLarge { size: 2, limit: 1 },
                Reason::ModuleTooLarge,
            ),
            (ModuleError::NotFound { digest }, Reason::FetchFailed),
            (
                ModuleError::Io {
                    reason: "disk".into(),
                },
                Reason::AgentError,
            ),
        ];
        for (error, reason) in cases {
            check(failed_to_start(error), TaskState::Failed, reason);
        }
    }

    #[test]
    fn start_failures_map_one_to_one() {
        let cases = [
            (
                StartError::MissingEntrypoint { name: "run".into() },
                TaskState::Failed,
                Reason::MissingEntrypoint,
            ),
            (
                StartError::Link {
                    message: "unknown import".into(),
                },
                TaskState::Failed,
                Reason::LinkError,
            ),
            (
                StartError::InputUnavailable {
                    path: "in".into(),
                    reason: "gone".into(),
                },
                TaskState::Failed,
                Reason::InputUnavailable,
            ),
            (
                StartError::InvalidInputPath { path: "..".into() },
                TaskState::Error,
                Reason::InvalidTask,
            ),
            (
                StartError::InvalidSpec {
                    reason: "zero cpus".into(),
                },
                TaskState::Error,
                Reason::InvalidTask,
            ),
            (
                StartError::Sandbox {
                    reason: "read-only".into(),
                },
                TaskState::Failed,
                Reason::SandboxError,
            ),
            (
                StartError::NoCapacity,
                TaskState::Failed,
                Reason::NoCapacity,
            ),
        ];
        for (error, state, reason) in cases {
            check(failed_to_start(error), state, reason);
        }
    }

    #[test]
    fn updates_get_fresh_uuids_only_when_acknowledged() {
        let key = TaskKey::parse("fw", "t").unwrap();
        let agent = AgentId::new("a1").unwrap();
        let parts = || StatusParts::new(TaskState::Running, Reason::Launched, "running");
        let a = update(&key, Some(&agent), parts(), None, true);
        let b = update(&key, Some(&agent), parts(), None, true);
        assert_eq!(a.uuid.len(), 16);
        assert_ne!(a.uuid, b.uuid);
        assert_eq!((a.framework_id.as_str(), a.task_id.as_str()), ("fw", "t"));
        assert_eq!(a.agent_id, "a1");
        assert!(
            update(&key, Some(&agent), parts(), None, false)
                .uuid
                .is_empty()
        );
        assert!(corral_proto::TaskStatus::try_from(&a).is_ok());
        assert!(TaskKey::parse("fw", "a/b").is_err());
        assert!(TaskKey::parse("", "t").is_err());
    }
}

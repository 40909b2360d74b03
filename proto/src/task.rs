//! Domain versions of the task messages ([`TaskInfo`], [`TaskStatus`]) and the conversions
//! of corral-types' `Usage` and `TaskLimits`.
//!
//! `TryFrom<&v1::X>` validates everything a receiver relies on (IDs, digest, resources,
//! paths, limits); `From<&X> for v1::X` cannot fail, and a valid message survives the round
//! trip unchanged (apart from an empty entrypoint becoming `_start`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use corral_types::{
    AgentId, Digest, FrameworkId, Preopen, Progress, Reason, Resources, StatusSource, TaskId,
    TaskLimits, TaskOutput, TaskState, TrapKind, Usage,
};

use crate::convert::{bounded_labels, each, millis, nanos, parse_id, parse_optional_id, require};
use crate::error::ProtoError;
use crate::limits;
use crate::state::ProtoEnum;
use crate::v1;

/// The entrypoint of WASI commands, used when a task names none.
pub const DEFAULT_ENTRYPOINT: &str = "_start";

impl From<v1::Usage> for Usage {
    fn from(u: v1::Usage) -> Self {
        Usage {
            fuel_consumed: u.fuel_consumed,
            cpu_time: Duration::from_nanos(u.cpu_time_nanos),
            peak_memory_bytes: u.peak_memory_bytes,
            wall_time: Duration::from_nanos(u.wall_time_nanos),
            exit_code: u.exit_code,
        }
    }
}

impl From<Usage> for v1::Usage {
    fn from(u: Usage) -> Self {
        v1::Usage {
            fuel_consumed: u.fuel_consumed,
            cpu_time_nanos: nanos(u.cpu_time),
            peak_memory_bytes: u.peak_memory_bytes,
            wall_time_nanos: nanos(u.wall_time),
            exit_code: u.exit_code,
        }
    }
}

/// Identifies one status update for acknowledgement: 16 random bytes chosen by its producer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpdateUuid([u8; 16]);

impl UpdateUuid {
    /// Wraps 16 bytes (the producer draws them from a random source).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Reads a `uuid` field: empty is `None` (no acknowledgement expected), 16 bytes is a
    /// uuid, anything else is an error.
    pub fn from_proto(field: &'static str, bytes: &[u8]) -> Result<Option<Self>, ProtoError> {
        match bytes.len() {
            0 => Ok(None),
            _ => <[u8; 16]>::try_from(bytes)
                .map(|b| Some(Self(b)))
                .map_err(|_| ProtoError::out_of_range(field, bytes.len(), "0 or 16 bytes")),
        }
    }
}

impl fmt::Display for UpdateUuid {
    /// The usual 8-4-4-4-12 hex form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for UpdateUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One change of a task's state (see `TaskStatus` in `common.proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// The task.
    pub task_id: TaskId,
    /// Its framework.
    pub framework_id: FrameworkId,
    /// Its agent; `None` when it was never placed.
    pub agent_id: Option<AgentId>,
    /// The new state.
    pub state: TaskState,
    /// Why.
    pub reason: Reason,
    /// A human-readable explanation.
    pub message: String,
    /// What it used (terminal states of tasks that started).
    pub usage: Option<Usage>,
    /// When the change happened, in milliseconds since the Unix epoch.
    pub timestamp_millis: u64,
    /// `None` when no acknowledgement is expected.
    pub uuid: Option<UpdateUuid>,
    /// Who produced it; unset on the wire means the agent.
    pub source: StatusSource,
    /// How the guest trapped, for [`Reason::Trap`].
    pub trap_kind: Option<TrapKind>,
    /// Health check result, once health checks exist.
    pub healthy: Option<bool>,
    /// How far the task says it is.
    pub progress: Option<Progress>,
    /// Its structured result (JSON text), on terminal updates.
    pub result_json: Option<String>,
    /// Its latest checkpoint (agent to master only); empty when none came with this update.
    pub checkpoint: Bytes,
    /// The files it left in its outputs folder, kept in the artifact store (terminal
    /// updates), sorted by path.
    pub outputs: Vec<TaskOutput>,
    /// What of its outputs folder was not kept, and why.
    pub outputs_not_kept: Option<String>,
}

impl TryFrom<&v1::TaskStatus> for TaskStatus {
    type Error = ProtoError;

    fn try_from(s: &v1::TaskStatus) -> Result<Self, ProtoError> {
        Ok(TaskStatus {
            task_id: parse_id("task_id", &s.task_id)?,
            framework_id: parse_id("framework_id", &s.framework_id)?,
            agent_id: parse_optional_id("agent_id", Some(&s.agent_id))?,
            state: TaskState::from_proto("state", s.state)?,
            reason: Reason::from_proto("reason", s.reason)?,
            message: s.message.clone(),
            usage: s.usage.map(Usage::from),
            timestamp_millis: s.timestamp_millis,
            uuid: UpdateUuid::from_proto("uuid", &s.uuid)?,
            source: StatusSource::from_proto_opt("source", s.source)?
                .unwrap_or(StatusSource::Agent),
            trap_kind: TrapKind::from_proto_opt("trap_kind", s.trap_kind)?,
            healthy: s.healthy,
            progress: s
                .progress
                .as_ref()
                .map(|p| Progress::new(p.fraction, &p.message)),
            result_json: match s.result_json.as_str() {
                "" => None,
                json if json.len() > limits::MAX_RESULT_BYTES => {
                    return Err(ProtoError::invalid(
                        "result_json",
                        format!("{} bytes, at most {}", json.len(), limits::MAX_RESULT_BYTES),
                    ));
                }
                json => Some(json.to_owned()),
            },
            checkpoint: checkpoint("checkpoint", &s.checkpoint)?,
            outputs: task_outputs("outputs", &s.outputs)?,
            outputs_not_kept: (!s.outputs_not_kept.is_empty())
                .then(|| truncated(&s.outputs_not_kept, limits::MAX_NOTE_BYTES)),
        })
    }
}

impl From<&TaskStatus> for v1::TaskStatus {
    fn from(s: &TaskStatus) -> Self {
        v1::TaskStatus {
            task_id: s.task_id.to_string(),
            framework_id: s.framework_id.to_string(),
            agent_id: s
                .agent_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            state: s.state.to_i32(),
            reason: s.reason.to_i32(),
            message: s.message.clone(),
            usage: s.usage.map(Into::into),
            timestamp_millis: s.timestamp_millis,
            uuid: s
                .uuid
                .map_or_else(Bytes::new, |u| Bytes::copy_from_slice(u.as_bytes())),
            source: s.source.to_i32(),
            trap_kind: s.trap_kind.map_or(0, ProtoEnum::to_i32),
            healthy: s.healthy,
            progress: s.progress.as_ref().map(|p| v1::Progress {
                fraction: p.fraction(),
                message: p.message.clone(),
            }),
            result_json: s.result_json.clone().unwrap_or_default(),
            checkpoint: s.checkpoint.clone(),
            outputs: s.outputs.iter().map(Into::into).collect(),
            outputs_not_kept: s.outputs_not_kept.clone().unwrap_or_default(),
        }
    }
}

/// Where a task's module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// In the master's artifact store.
    Digest(Digest),
    /// At an http(s) URL, optionally pinned to a digest.
    Url {
        /// The `http://` or `https://` URL.
        url: String,
        /// The content it must have, if pinned.
        digest: Option<Digest>,
    },
    /// An absolute path on the agent's host.
    File(PathBuf),
}

impl fmt::Display for ModuleSource {
    /// `sha256:...`, the URL, or `file:///path`: what listings show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Digest(d) => fmt::Display::fmt(d, f),
            Self::Url { url, .. } => f.write_str(url),
            Self::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// A file or directory placed in the sandbox before start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Path relative to the sandbox root; validated to stay inside it.
    pub path: String,
    /// Its contents.
    pub source: InputSource,
}

/// Where an input's contents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// Bytes carried with the task.
    Contents(Bytes),
    /// An absolute path on the agent's host.
    HostPath(PathBuf),
    /// An uncompressed tar archive, extracted into the directory `path`.
    TarArchive(Bytes),
    /// An artifact in the master's artifact store (an earlier task's output, a module).
    Artifact(Digest),
    /// An artifact in the master's artifact store holding an uncompressed tar archive,
    /// extracted into the directory `path`.
    TarArtifact(Digest),
}

impl InputSource {
    /// The artifact of the master's store it is fetched from, if any.
    #[must_use]
    pub fn artifact(&self) -> Option<&Digest> {
        match self {
            Self::Artifact(digest) | Self::TarArtifact(digest) => Some(digest),
            Self::Contents(_) | Self::HostPath(_) | Self::TarArchive(_) => None,
        }
    }
}

/// Everything needed to run one task (see `TaskInfo` in `common.proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// Chosen by the framework.
    pub id: TaskId,
    /// For listings.
    pub name: String,
    /// The module.
    pub module: ModuleSource,
    /// The exported function to call; never empty.
    pub entrypoint: String,
    /// Arguments after `argv[0]`; no NUL bytes.
    pub args: Vec<String>,
    /// The whole environment, in order; names non-empty without `=`, no NUL bytes.
    pub env: Vec<EnvVar>,
    /// Files placed in the sandbox.
    pub inputs: Vec<InputFile>,
    /// What the task may use; at least some CPU.
    pub resources: Resources,
    /// When it is stopped.
    pub limits: TaskLimits,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// The guest's `argv[0]`; `None` means the task ID. No NUL bytes.
    pub argv0: Option<String>,
    /// The directories the guest sees, in order; empty means the sandbox root as `/`.
    pub preopens: Vec<Preopen>,
    /// The guest's whole standard input; at most [`limits::MAX_STDIN_BYTES`].
    pub stdin: Bytes,
    /// The previous attempt's checkpoint; empty when there is none.
    pub checkpoint: Bytes,
    /// The principal the task runs for, when it is not its framework's (see `owner` in
    /// common.proto).
    pub owner: Option<String>,
}

impl TryFrom<&v1::TaskInfo> for TaskInfo {
    type Error = ProtoError;

    fn try_from(t: &v1::TaskInfo) -> Result<Self, ProtoError> {
        let id = parse_id("task_id", &t.task_id)?;
        let resources: Resources = require("resources", t.resources.as_ref())?;
        if resources.cpus_milli() == 0 {
            return Err(ProtoError::out_of_range(
                "resources.cpus_milli",
                0,
                "> 0: a task needs some CPU",
            ));
        }
        Ok(TaskInfo {
            id,
            name: t.name.clone(),
            module: require("module", t.module.as_ref())?,
            entrypoint: if t.entrypoint.is_empty() {
                DEFAULT_ENTRYPOINT.to_owned()
            } else {
                t.entrypoint.clone()
            },
            // An element's own error has no field name: the path is just `args[i]`.
            args: each("args", &t.args, |a| no_nul("", a).map(|()| a.clone()))?,
            env: each("env", &t.env, env_var)?,
            inputs: each("inputs", &t.inputs, InputFile::try_from)?,
            resources,
            limits: t
                .limits
                .as_ref()
                .map_or(Ok(TaskLimits::default()), TaskLimits::try_from)
                .map_err(|e| e.within("limits"))?,
            labels: {
                bounded_labels("labels", t.labels.iter().map(|(k, v)| (&**k, &**v)))?;
                t.labels.clone()
            },
            argv0: match t.argv0.as_str() {
                "" => None,
                argv0 => Some(no_nul("argv0", argv0).map(|()| argv0.to_owned())?),
            },
            preopens: {
                if t.preopens.len() > limits::MAX_PREOPENS {
                    return Err(ProtoError::invalid(
                        "preopens",
                        format!(
                            "{} given, at most {}",
                            t.preopens.len(),
                            limits::MAX_PREOPENS
                        ),
                    ));
                }
                each("preopens", &t.preopens, Preopen::try_from)?
            },
            stdin: if t.stdin.len() > limits::MAX_STDIN_BYTES {
                return Err(ProtoError::invalid(
                    "stdin",
                    format!(
                        "{} bytes, at most {}: ship larger data as an input",
                        t.stdin.len(),
                        limits::MAX_STDIN_BYTES
                    ),
                ));
            } else {
                t.stdin.clone()
            },
            checkpoint: checkpoint("checkpoint", &t.checkpoint)?,
            owner: match t.owner.as_str() {
                "" => None,
                owner => Some(
                    crate::auth::check_principal(owner)
                        .map(|()| owner.to_owned())
                        .map_err(|e| ProtoError::invalid("owner", e))?,
                ),
            },
        })
    }
}

impl From<&TaskInfo> for v1::TaskInfo {
    fn from(t: &TaskInfo) -> Self {
        v1::TaskInfo {
            task_id: t.id.to_string(),
            name: t.name.clone(),
            module: Some(v1::ModuleRef::from(&t.module)),
            entrypoint: t.entrypoint.clone(),
            args: t.args.clone(),
            env: t.env.iter().map(v1::EnvVar::from).collect(),
            inputs: t.inputs.iter().map(v1::InputFile::from).collect(),
            resources: Some(v1::Resources::from(&t.resources)),
            limits: Some(v1::TaskLimits::from(&t.limits)),
            labels: t.labels.clone(),
            argv0: t.argv0.clone().unwrap_or_default(),
            preopens: t
                .preopens
                .iter()
                .map(|p| v1::Preopen {
                    guest_path: p.guest_path.clone(),
                    sandbox_path: p.sandbox_path.clone(),
                })
                .collect(),
            stdin: t.stdin.clone(),
            checkpoint: t.checkpoint.clone(),
            owner: t.owner.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<&v1::Preopen> for Preopen {
    type Error = ProtoError;

    fn try_from(p: &v1::Preopen) -> Result<Self, ProtoError> {
        if p.guest_path.is_empty() {
            return Err(ProtoError::missing("guest_path"));
        }
        if p.guest_path.len() > limits::MAX_PREOPEN_NAME_BYTES {
            return Err(ProtoError::invalid(
                "guest_path",
                format!(
                    "{} bytes long, at most {}",
                    p.guest_path.len(),
                    limits::MAX_PREOPEN_NAME_BYTES
                ),
            ));
        }
        no_nul("guest_path", &p.guest_path)?;
        Ok(Preopen {
            guest_path: p.guest_path.clone(),
            sandbox_path: sandbox_path("sandbox_path", &p.sandbox_path)?,
        })
    }
}

/// A task's outputs as a status carries them: at most [`limits::MAX_TASK_OUTPUTS`], each
/// with a relative path of at most [`limits::MAX_OUTPUT_PATH_BYTES`] and a digest.
fn task_outputs(
    field: &'static str,
    list: &[v1::TaskOutput],
) -> Result<Vec<TaskOutput>, ProtoError> {
    if list.len() > limits::MAX_TASK_OUTPUTS {
        return Err(ProtoError::invalid(
            field,
            format!("{} files, at most {}", list.len(), limits::MAX_TASK_OUTPUTS),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, o)| TaskOutput::try_from(o).map_err(|e| e.within(format_args!("{field}[{i}]"))))
        .collect()
}

impl TryFrom<&v1::TaskOutput> for TaskOutput {
    type Error = ProtoError;

    fn try_from(o: &v1::TaskOutput) -> Result<Self, ProtoError> {
        if o.path.len() > limits::MAX_OUTPUT_PATH_BYTES {
            return Err(ProtoError::invalid(
                "path",
                format!(
                    "{} bytes, at most {}",
                    o.path.len(),
                    limits::MAX_OUTPUT_PATH_BYTES
                ),
            ));
        }
        let plain = Path::new(&o.path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if o.path.is_empty() || !plain || o.path.contains('\0') {
            return Err(ProtoError::invalid(
                "path",
                format!(
                    "{:?} must be a relative path under the outputs folder",
                    o.path
                ),
            ));
        }
        Ok(TaskOutput {
            path: o.path.clone(),
            size: o.size,
            digest: parse_digest("digest", &o.digest)?,
        })
    }
}

impl From<&TaskOutput> for v1::TaskOutput {
    fn from(o: &TaskOutput) -> Self {
        v1::TaskOutput {
            path: o.path.clone(),
            size: o.size,
            digest: o.digest.to_string(),
        }
    }
}

/// The first few of `items` (files not kept, each with its reason), joined for
/// [`TaskStatus::outputs_not_kept`], and how many more there are: the files API shows them
/// all.
pub fn not_kept_list<S: AsRef<str>>(items: &[S]) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<&str> = items.iter().take(SHOWN).map(AsRef::as_ref).collect();
    let mut list = shown.join(", ");
    if items.len() > SHOWN {
        list.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    list
}

/// `text` cut to at most `limit` bytes (at a character boundary), marked with `…` when cut:
/// a note from a peer is shown, never refused.
fn truncated(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A checkpoint within [`limits::MAX_CHECKPOINT_BYTES`].
fn checkpoint(field: &'static str, bytes: &Bytes) -> Result<Bytes, ProtoError> {
    if bytes.len() > limits::MAX_CHECKPOINT_BYTES {
        return Err(ProtoError::invalid(
            field,
            format!(
                "{} bytes, at most {}",
                bytes.len(),
                limits::MAX_CHECKPOINT_BYTES
            ),
        ));
    }
    Ok(bytes.clone())
}

fn no_nul(field: &'static str, s: &str) -> Result<(), ProtoError> {
    if s.contains('\0') {
        Err(ProtoError::invalid(field, "contains a NUL byte"))
    } else {
        Ok(())
    }
}

fn env_var(v: &v1::EnvVar) -> Result<EnvVar, ProtoError> {
    if v.name.is_empty() {
        return Err(ProtoError::missing("name"));
    }
    if v.name.contains('=') {
        return Err(ProtoError::invalid("name", "contains '='"));
    }
    no_nul("name", &v.name)?;
    no_nul("value", &v.value)?;
    Ok(EnvVar {
        name: v.name.clone(),
        value: v.value.clone(),
        secret: v.secret,
    })
}

/// An environment variable of a task's guest.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    /// Its value is shown nowhere but inside the task (see `EnvVar` in `common.proto`).
    pub secret: bool,
}

impl EnvVar {
    /// A variable whose value may be shown.
    pub fn plain(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            secret: false,
        }
    }

    /// A variable whose value is a secret.
    pub fn secret(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            secret: true,
            ..Self::plain(name, value)
        }
    }
}

/// What debug output shows of a secret's value.
const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_env(f, &self.name, &self.value, self.secret)
    }
}

impl std::fmt::Debug for v1::EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_env(f, &self.name, &self.value, self.secret)
    }
}

fn debug_env(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    value: &str,
    secret: bool,
) -> std::fmt::Result {
    let value = if secret { REDACTED } else { value };
    f.debug_struct("EnvVar")
        .field("name", &name)
        .field("value", &value)
        .field("secret", &secret)
        .finish()
}

impl From<&EnvVar> for v1::EnvVar {
    fn from(v: &EnvVar) -> Self {
        v1::EnvVar {
            name: v.name.clone(),
            value: v.value.clone(),
            secret: v.secret,
        }
    }
}

fn parse_digest(field: &'static str, s: &str) -> Result<Digest, ProtoError> {
    s.parse().map_err(|error| ProtoError::InvalidDigest {
        field: field.into(),
        error,
    })
}

fn absolute_path(field: &'static str, p: &str) -> Result<PathBuf, ProtoError> {
    no_nul(field, p)?;
    if Path::new(p).is_absolute() {
        Ok(PathBuf::from(p))
    } else {
        Err(ProtoError::invalid(
            field,
            format!("{p:?} is not an absolute path"),
        ))
    }
}

/// A path relative to the sandbox root that cannot leave it: not empty, not absolute, only
/// normal components (and `.`), no NUL.
fn sandbox_path(field: &'static str, p: &str) -> Result<String, ProtoError> {
    if p.is_empty() {
        return Err(ProtoError::missing(field));
    }
    no_nul(field, p)?;
    let inside = Path::new(p)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside {
        Ok(p.to_owned())
    } else {
        Err(ProtoError::invalid(
            field,
            format!("{p:?} must be relative and stay inside the sandbox"),
        ))
    }
}

impl TryFrom<&v1::ModuleRef> for ModuleSource {
    type Error = ProtoError;

    fn try_from(m: &v1::ModuleRef) -> Result<Self, ProtoError> {
        use v1::module_ref::Source;
        match &m.source {
            None => Err(ProtoError::missing("source")),
            Some(Source::Digest(d)) => parse_digest("digest", d).map(ModuleSource::Digest),
            Some(Source::Url(u)) => {
                if !(u.url.starts_with("http://") || u.url.starts_with("https://")) {
                    return Err(ProtoError::invalid(
                        "url.url",
                        format!("{:?} is not an http(s) URL", u.url),
                    ));
                }
                let digest = match u.digest.as_str() {
                    "" => None,
                    d => Some(parse_digest("url.digest", d)?),
                };
                Ok(ModuleSource::Url {
                    url: u.url.clone(),
                    digest,
                })
            }
            Some(Source::FilePath(p)) => absolute_path("file_path", p).map(ModuleSource::File),
        }
    }
}

impl From<&ModuleSource> for v1::ModuleRef {
    fn from(m: &ModuleSource) -> Self {
        use v1::module_ref::Source;
        let source = match m {
            ModuleSource::Digest(d) => Source::Digest(d.to_string()),
            ModuleSource::Url { url, digest } => Source::Url(v1::UrlModule {
                url: url.clone(),
                digest: digest.map(|d| d.to_string()).unwrap_or_default(),
            }),
            ModuleSource::File(p) => Source::FilePath(p.to_string_lossy().into_owned()),
        };
        v1::ModuleRef {
            source: Some(source),
        }
    }
}

impl TryFrom<&v1::InputFile> for InputFile {
    type Error = ProtoError;

    fn try_from(f: &v1::InputFile) -> Result<Self, ProtoError> {
        use v1::input_file::Source;
        let path = sandbox_path("path", &f.path)?;
        let source = match &f.source {
            None => return Err(ProtoError::missing("source")),
            Some(Source::Contents(b)) => InputSource::Contents(b.clone()),
            Some(Source::HostPath(p)) => InputSource::HostPath(absolute_path("host_path", p)?),
            Some(Source::TarArchive(b)) => InputSource::TarArchive(b.clone()),
            Some(Source::Artifact(d)) => InputSource::Artifact(parse_digest("artifact", d)?),
            Some(Source::TarArtifact(d)) => {
                InputSource::TarArtifact(parse_digest("tar_artifact", d)?)
            }
        };
        Ok(InputFile { path, source })
    }
}

impl From<&InputFile> for v1::InputFile {
    fn from(f: &InputFile) -> Self {
        use v1::input_file::Source;
        let source = match &f.source {
            InputSource::Contents(b) => Source::Contents(b.clone()),
            InputSource::HostPath(p) => Source::HostPath(p.to_string_lossy().into_owned()),
            InputSource::TarArchive(b) => Source::TarArchive(b.clone()),
            InputSource::Artifact(d) => Source::Artifact(d.to_string()),
            InputSource::TarArtifact(d) => Source::TarArtifact(d.to_string()),
        };
        v1::InputFile {
            path: f.path.clone(),
            source: Some(source),
        }
    }
}

impl TryFrom<&v1::TaskLimits> for TaskLimits {
    type Error = ProtoError;

    fn try_from(l: &v1::TaskLimits) -> Result<Self, ProtoError> {
        if l.max_fuel == Some(0) {
            return Err(ProtoError::out_of_range("max_fuel", 0, "> 0 when set"));
        }
        if l.timeout_millis == Some(0) {
            return Err(ProtoError::out_of_range(
                "timeout_millis",
                0,
                "> 0 when set",
            ));
        }
        Ok(TaskLimits {
            max_fuel: l.max_fuel,
            timeout: l.timeout_millis.map(Duration::from_millis),
            max_output_bytes: l.max_output_bytes,
        })
    }
}

impl From<&TaskLimits> for v1::TaskLimits {
    fn from(l: &TaskLimits) -> Self {
        v1::TaskLimits {
            max_fuel: l.max_fuel,
            timeout_millis: l.timeout.map(millis),
            max_output_bytes: l.max_output_bytes,
        }
    }
}

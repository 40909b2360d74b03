//! `corral-task`: what a task built for Corral can tell the platform while it runs.
//!
//! ```no_run
//! fn main() -> Result<(), corral_task::Error> {
//!     let items = 1_000;
//!     for i in 0..items {
//!         // ... work on item i ...
//!         corral_task::progress(i as f32 / items as f32, &format!("item {i}"))?;
//!     }
//!     corral_task::set_result(r#"{"items": 1000, "ok": true}"#)?;
//!     Ok(())
//! }
//! ```
//!
//! - [`arg`], [`env`], [`env_or`], [`input`]: the task's arguments and environment parsed
//!   into the types it wants, and its input files, with errors that name what is wrong.
//! - [`write_output`], [`create_output`]: files in the task's outputs folder (`/outputs`),
//!   which the platform keeps in its artifact store when the task ends, lists on the task
//!   (`corral task outputs`) and can hand to a later task as an input.
//! - [`progress`]: how far the task is, carried in its RUNNING status updates and shown by
//!   `corral ps` and the API.
//! - [`set_result`]: a small JSON value handed back in the task's terminal status update, to
//!   the framework that launched it.
//! - [`checkpoint`] and [`previous_checkpoint`]: a small blob the platform keeps while the
//!   task runs and hands to the next attempt of the same task (the same task ID launched
//!   again after a failure, a kill or the loss of its agent), so a long task resumes instead
//!   of starting over. A task that finishes successfully leaves none behind.
//!
//! The SDK speaks only WASI: the calls write small files into a control directory the agent
//! gives a task built with it (its name in `CORRAL_CONTROL`; the module carries a
//! `corral-task` custom section that tells the agent to). Under any other WASI runtime,
//! `wasmtime run` say, `CORRAL_CONTROL` is unset and every call does nothing and succeeds,
//! so a task is never locked in. Set `CORRAL_CONTROL` to a preopened directory there to see
//! the files the calls write: `progress` (`<fraction>\n<message>`), `result.json` and
//! `checkpoint`; [`previous_checkpoint`] reads `previous-checkpoint` there.
//!
//! Limits are checked here, where the caller can act on them: a message of more than
//! [`MAX_PROGRESS_MESSAGE_BYTES`], a result of more than [`MAX_RESULT_BYTES`] or a checkpoint
//! of more than [`MAX_CHECKPOINT_BYTES`] is an [`Error`] naming the limit. Progress reported within [`PROGRESS_INTERVAL`] of the last
//! written is dropped, except 100 %: the agent reads it twice a second at most, and a tight
//! loop should not spend its time writing files.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest progress message, in bytes.
pub const MAX_PROGRESS_MESSAGE_BYTES: usize = 256;
/// Largest result, in bytes of JSON text.
pub const MAX_RESULT_BYTES: usize = 64 << 10;
/// Largest checkpoint, in bytes.
pub const MAX_CHECKPOINT_BYTES: usize = 1 << 20;
/// Progress is written at most this often.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// The environment variable that names the control directory.
pub const CONTROL_ENV: &str = "CORRAL_CONTROL";
/// The environment variable that names the outputs folder.
pub const OUTPUTS_ENV: &str = "CORRAL_OUTPUTS";
/// The outputs folder where `CORRAL_OUTPUTS` is unset (under `wasmtime run --dir .`, say):
/// `outputs` in the current directory.
pub const DEFAULT_OUTPUTS_DIR: &str = "outputs";

/// The custom section that marks a module as built with this SDK, so the agent gives it a
/// control directory. Referenced by every call so the linker keeps it.
#[used]
#[allow(
    unsafe_code,
    reason = "a custom section is placed with an unsafe attribute"
)]
#[unsafe(link_section = "corral-task")]
static MARKER: [u8; 1] = [PROTOCOL_VERSION];

/// The version of the files' format, the marker's content.
const PROTOCOL_VERSION: u8 = 1;

/// A call that could not be carried out.
#[derive(Debug)]
pub enum Error {
    /// A value is over one of the SDK's limits.
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The fraction is not a number from 0.0 to 1.0.
    InvalidFraction(f32),
    /// Writing into the control directory failed.
    Io(io::Error),
    /// An argument or environment variable is missing or does not parse.
    Parameter {
        /// `argument 2`, `environment variable N`.
        what: String,
        /// Why it is not usable.
        reason: String,
    },
    /// An output path is not a relative path that stays in the outputs folder.
    InvalidOutputPath(String),
    /// An input or output file could not be read or written.
    File {
        /// The file's path.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { what, size, limit } => {
                write!(f, "{what} is {size} bytes, over the limit of {limit} bytes")
            }
            Self::InvalidFraction(fraction) => {
                write!(f, "progress fraction {fraction} is not between 0.0 and 1.0")
            }
            Self::Io(e) => write!(f, "cannot write to the control directory: {e}"),
            Self::Parameter { what, reason } => write!(f, "{what}: {reason}"),
            Self::InvalidOutputPath(path) => write!(
                f,
                "output path {path:?} must be relative and stay in the outputs folder"
            ),
            Self::File { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Argument `index` (1 is the first after the program's name), parsed as a `T`.
///
/// # Errors
///
/// The argument is missing, or does not parse as a `T`.
pub fn arg<T>(index: usize) -> Result<T, Error>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let what = || format!("argument {index}");
    let value = std::env::args()
        .nth(index)
        .ok_or_else(|| Error::Parameter {
            what: what(),
            reason: "missing".into(),
        })?;
    parse(what(), &value)
}

/// Environment variable `name`, parsed as a `T`.
///
/// # Errors
///
/// The variable is unset (or not UTF-8), or does not parse as a `T`.
pub fn env<T>(name: &str) -> Result<T, Error>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let what = || format!("environment variable {name}");
    let value = std::env::var(name).map_err(|e| Error::Parameter {
        what: what(),
        reason: e.to_string(),
    })?;
    parse(what(), &value)
}

/// Environment variable `name` parsed as a `T`, or `default` when it is unset.
///
/// # Errors
///
/// The variable is set but does not parse as a `T`.
pub fn env_or<T>(name: &str, default: T) -> Result<T, Error>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match std::env::var_os(name) {
        None => Ok(default),
        Some(_) => env(name),
    }
}

fn parse<T>(what: String, value: &str) -> Result<T, Error>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    value.parse().map_err(|e: T::Err| Error::Parameter {
        what,
        reason: format!("{value:?}: {e}"),
    })
}

/// The contents of input file `path` (as the task was given it: a path in its sandbox).
///
/// # Errors
///
/// The file cannot be read; the error names it.
pub fn input(path: impl AsRef<Path>) -> Result<Vec<u8>, Error> {
    let path = path.as_ref();
    fs::read(path).map_err(|source| Error::File {
        path: path.to_owned(),
        source,
    })
}

/// The outputs folder: `CORRAL_OUTPUTS` (`/outputs` under Corral), else
/// [`DEFAULT_OUTPUTS_DIR`].
#[must_use]
pub fn outputs_dir() -> PathBuf {
    std::env::var_os(OUTPUTS_ENV).map_or_else(|| PathBuf::from(DEFAULT_OUTPUTS_DIR), PathBuf::from)
}

/// Writes `bytes` as output `path` (relative to the outputs folder; directories are made as
/// needed), replacing an earlier one.
///
/// # Errors
///
/// An invalid path, or a failed write (the task's disk limit counts outputs too).
pub fn write_output(path: &str, bytes: &[u8]) -> Result<(), Error> {
    use io::Write as _;
    let mut file = create_output(path)?;
    let target = outputs_dir().join(path);
    file.write_all(bytes).map_err(|source| Error::File {
        path: target,
        source,
    })
}

/// Creates (or truncates) output `path` for writing, making its directories.
///
/// # Errors
///
/// An invalid path, or a failed create.
pub fn create_output(path: &str) -> Result<fs::File, Error> {
    let relative = Path::new(path);
    let stays_inside = !path.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !stays_inside {
        return Err(Error::InvalidOutputPath(path.to_owned()));
    }
    let target = outputs_dir().join(relative);
    let file_error = |source| Error::File {
        path: target.clone(),
        source,
    };
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(file_error)?;
    }
    fs::File::create(&target).map_err(file_error)
}

/// Says how far the task is: `fraction` from 0.0 to 1.0 and a short `message`.
///
/// # Errors
///
/// A fraction outside 0.0..=1.0, a message over [`MAX_PROGRESS_MESSAGE_BYTES`], or a failed
/// write.
pub fn progress(fraction: f32, message: &str) -> Result<(), Error> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::InvalidFraction(fraction));
    }
    check_size(
        "the progress message",
        message.len(),
        MAX_PROGRESS_MESSAGE_BYTES,
    )?;
    let Some(dir) = control_dir() else {
        return Ok(());
    };
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    if fraction < 1.0 && last.is_some_and(|at| now.duration_since(at) < PROGRESS_INTERVAL) {
        return Ok(());
    }
    *last = Some(now);
    write_atomically(
        &dir,
        "progress",
        format!("{fraction}\n{message}").as_bytes(),
    )
}

/// Hands `json`, a JSON value of at most [`MAX_RESULT_BYTES`], back with the task's terminal
/// status. A later call replaces an earlier one. The agent checks that it is JSON.
///
/// # Errors
///
/// A result over [`MAX_RESULT_BYTES`], or a failed write.
pub fn set_result(json: &str) -> Result<(), Error> {
    check_size("the result", json.len(), MAX_RESULT_BYTES)?;
    match control_dir() {
        Some(dir) => write_atomically(&dir, "result.json", json.as_bytes()),
        None => Ok(()),
    }
}

/// Keeps `bytes` as the task's checkpoint, replacing the last one. The platform reads it
/// twice a second at most while the task runs, and once more when it ends.
///
/// Each call writes a file (about 0.2 ms), so that the latest checkpoint is on disk however
/// the task is stopped: call it after a unit of work, not in a tight loop.
///
/// # Errors
///
/// A checkpoint over [`MAX_CHECKPOINT_BYTES`], or a failed write.
pub fn checkpoint(bytes: &[u8]) -> Result<(), Error> {
    check_size("the checkpoint", bytes.len(), MAX_CHECKPOINT_BYTES)?;
    match control_dir() {
        Some(dir) => write_atomically(&dir, "checkpoint", bytes),
        None => Ok(()),
    }
}

/// The checkpoint the previous attempt of this task left, if there was one.
#[must_use]
pub fn previous_checkpoint() -> Option<Vec<u8>> {
    fs::read(control_dir()?.join("previous-checkpoint")).ok()
}

/// Whether the task runs under Corral (or anywhere `CORRAL_CONTROL` names a directory).
#[must_use]
pub fn under_corral() -> bool {
    control_dir().is_some()
}

fn control_dir() -> Option<PathBuf> {
    // Keeps the marker in the module whatever the linker drops.
    std::hint::black_box(&MARKER);
    std::env::var_os(CONTROL_ENV).map(PathBuf::from)
}

fn check_size(what: &'static str, size: usize, limit: usize) -> Result<(), Error> {
    if size > limit {
        return Err(Error::TooLarge { what, size, limit });
    }
    Ok(())
}

/// Writes `name` in `dir` through a temporary file and a rename, so a reader never sees half.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let temp = dir.join(format!(".{name}.tmp"));
    fs::write(&temp, bytes)?;
    fs::rename(&temp, dir.join(name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_errors_that_name_them() {
        let long = "x".repeat(MAX_PROGRESS_MESSAGE_BYTES + 1);
        let error = progress(0.5, &long).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the progress message is 257 bytes, over the limit of 256 bytes"
        );
        assert!(matches!(progress(1.5, "x"), Err(Error::InvalidFraction(_))));
        assert!(matches!(
            progress(f32::NAN, "x"),
            Err(Error::InvalidFraction(_))
        ));
        let error = checkpoint(&vec![0; MAX_CHECKPOINT_BYTES + 1]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("over the limit of 1048576 bytes"),
            "{error}"
        );
        assert!(matches!(
            create_output("../escape"),
            Err(Error::InvalidOutputPath(_))
        ));
        assert!(matches!(
            create_output("/abs"),
            Err(Error::InvalidOutputPath(_))
        ));
        let error = env::<u32>("CORRAL_TASK_SDK_SURELY_UNSET").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("environment variable CORRAL_TASK_SDK_SURELY_UNSET")
        );
        assert_eq!(env_or("CORRAL_TASK_SDK_SURELY_UNSET", 7u32).unwrap(), 7);
        let error = arg::<u32>(10_000).unwrap_err();
        assert_eq!(error.to_string(), "argument 10000: missing");
        let big = "1".repeat(MAX_RESULT_BYTES + 1);
        assert!(
            set_result(&big)
                .unwrap_err()
                .to_string()
                .contains("over the limit of 65536 bytes")
        );
    }
}

//! A task run's files: the guest's only view of the host's file system, and its logs.
//!
//! ```text
//! <work_dir>/sandboxes/<framework>/
//!     <task>.<run>/         the root: preopened as the guest's `/`, or holding the
//!                           directories a task's preopens name; inputs are placed here first
//!     <task>.<run>.stdout   the guest's stdout, once too large to keep in memory
//!     <task>.<run>.stderr   the guest's stderr, likewise
//! ```
//!
//! Readers (the files API, `corral logs`) see these as `stdout`, `stderr` and `root/...`.
//!
//! A run costs the file system as little as it can, because at thousands of tasks per second
//! the agent's metadata operations dominate a small task's launch:
//! - the logs sit beside the guest's root rather than inside it, so a task can neither read
//!   nor rewrite its own logs, and they need no directory of their own;
//! - the root is created only for a module that can reach files (it imports a WASI function
//!   that takes a path or enumerates preopens) or that is given inputs; any other module
//!   cannot tell a root was never made;
//! - small logs never touch the disk (see [`crate::output`]), so a `hello` costs no file
//!   system operation at all, and a sleeping task holds no descriptor, which is what lets one
//!   agent keep ten thousand of them.
//!
//! Everything a run holds (root and logs) counts toward the task's `disk`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use corral_intake::paths;
use corral_types::Preopen;

use crate::task::{InputContents, InputFile, StartError};

/// Where a run's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPaths {
    /// `<framework dir>/<task>.<run>`: the root itself, and the stem of the logs' names.
    base: PathBuf,
}

impl SandboxPaths {
    /// The layout for one run; `None` if an id cannot be a single path component.
    pub(crate) fn new(sandboxes: &Path, framework: &str, task: &str, run: &str) -> Option<Self> {
        [framework, task, run]
            .iter()
            .all(|id| paths::is_plain_component(id))
            .then(|| Self {
                base: sandboxes.join(framework).join(format!("{task}.{run}")),
            })
    }

    /// The run's files as recorded by [`SandboxPaths::base`].
    pub fn from_base(base: PathBuf) -> Self {
        Self { base }
    }

    /// What identifies the run's files on disk (the root's path; the logs share its stem).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The directory preopened as the guest's `/`; it exists only if the run needed one.
    pub fn root(&self) -> PathBuf {
        self.base.clone()
    }

    /// The task SDK's control directory in the root (see [`crate::sdk`]); it exists only
    /// for a module built with the SDK.
    pub fn control(&self) -> PathBuf {
        self.root().join(crate::sdk::CONTROL_DIR)
    }

    /// The guest's stdout.
    pub fn stdout(&self) -> PathBuf {
        self.log("stdout")
    }

    /// The guest's stderr.
    pub fn stderr(&self) -> PathBuf {
        self.log("stderr")
    }

    fn log(&self, stream: &str) -> PathBuf {
        let mut name = self.base.file_name().unwrap_or_default().to_os_string();
        name.push(".");
        name.push(stream);
        self.base.with_file_name(name)
    }

    /// Prepares the run: creates the root when `with_root` or there are inputs, and places
    /// the inputs; returns the bytes they occupy and whether a root now exists.
    pub(crate) fn create(
        &self,
        inputs: &[InputFile],
        with_root: bool,
    ) -> Result<(u64, bool), StartError> {
        let sandbox_error = |e: io::Error| StartError::Sandbox {
            reason: format!("{}: {e}", self.base.display()),
        };
        if !with_root && inputs.is_empty() {
            return Ok((0, false));
        }
        self.create_parent().map_err(sandbox_error)?;
        let root = self.root();
        fs::create_dir(&root).map_err(sandbox_error)?;
        let mut placed = 0;
        for input in inputs {
            let relative = input_path(&input.path)?;
            let target = root.join(relative);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(sandbox_error)?;
            }
            let unavailable = |e: io::Error| StartError::InputUnavailable {
                path: input.path.clone(),
                reason: e.to_string(),
            };
            placed += match &input.contents {
                InputContents::Bytes(bytes) => {
                    fs::write(&target, bytes).map_err(sandbox_error)?;
                    bytes.len() as u64
                }
                InputContents::HostFile(source) => {
                    if !source.is_file() {
                        return Err(unavailable(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{} is not a file", source.display()),
                        )));
                    }
                    fs::copy(source, &target).map_err(unavailable)?
                }
                InputContents::Directory => {
                    fs::create_dir_all(&target).map_err(sandbox_error)?;
                    0
                }
            };
        }
        Ok((placed, true))
    }

    /// The host directories behind `preopens`, in order, created under the root (which
    /// [`SandboxPaths::create`] made) where no input put them.
    pub(crate) fn create_preopens(&self, preopens: &[Preopen]) -> Result<Vec<PathBuf>, StartError> {
        let root = self.root();
        preopens
            .iter()
            .map(|preopen| {
                let invalid = |reason: String| StartError::InvalidSpec {
                    reason: format!(
                        "preopen {:?} at {:?}: {reason}",
                        preopen.guest_path, preopen.sandbox_path
                    ),
                };
                let relative = paths::directory(&preopen.sandbox_path).ok_or_else(|| {
                    invalid("must be relative and stay inside the sandbox".into())
                })?;
                let dir = root.join(relative);
                fs::create_dir_all(&dir).map_err(|e| invalid(e.to_string()))?;
                Ok(dir)
            })
            .collect()
    }

    /// Creates the directory the run's files go in (the framework's), if missing. Only a run
    /// that puts something on disk calls it.
    pub(crate) fn create_parent(&self) -> io::Result<()> {
        match self.base.parent() {
            Some(dir) => fs::create_dir_all(dir),
            None => Ok(()),
        }
    }

    /// Bytes the run holds on disk, holes excluded.
    pub(crate) fn disk_usage(&self) -> u64 {
        dir_usage(&self.root()) + file_usage(&self.stdout()) + file_usage(&self.stderr())
    }

    /// Deletes everything the run left on disk.
    pub fn remove(&self) -> io::Result<()> {
        for log in [self.stdout(), self.stderr()] {
            match fs::remove_file(log) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match fs::remove_dir_all(self.root()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Removes everything under `sandboxes/<framework>/` that is not a file of one of `runs`:
/// runs the agent no longer knows of (a crash between creating a run and recording it, or
/// runs from before completed runs were retired). Returns how many entries went.
pub(crate) fn remove_unknown_runs(sandboxes: &Path, runs: &[SandboxPaths]) -> usize {
    let known: std::collections::HashSet<PathBuf> = runs
        .iter()
        .flat_map(|run| [run.root(), run.stdout(), run.stderr()])
        .collect();
    let Ok(frameworks) = fs::read_dir(sandboxes) else {
        return 0;
    };
    let mut removed = 0;
    for framework in frameworks.flatten() {
        let Ok(entries) = fs::read_dir(framework.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if known.contains(&path) {
                continue;
            }
            let gone = match entry.file_type() {
                Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            match gone {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove an unknown run's files");
                }
            }
        }
    }
    removed
}

/// An input's path, checked to stay inside the sandbox.
fn input_path(path: &str) -> Result<&Path, StartError> {
    paths::file(path).ok_or_else(|| StartError::InvalidInputPath { path: path.into() })
}

/// Bytes the files under `dir` hold, holes excluded.
fn dir_usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_usage(&entry.path()),
            Ok(meta) if meta.is_file() => allocated(&meta),
            _ => 0,
        })
        .sum()
}

/// Bytes one file holds, holes excluded; 0 if it does not exist.
fn file_usage(path: &Path) -> u64 {
    fs::symlink_metadata(path).map_or(0, |meta| if meta.is_file() { allocated(&meta) } else { 0 })
}

fn allocated(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.size().min(meta.blocks() * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_single_plain_components() {
        let base = Path::new("/w");
        assert!(SandboxPaths::new(base, "fw-1", "task.7", "run_1").is_some());
        for bad in ["", ".", "..", "a/b", "a\0b", "../x", "é"] {
            assert!(SandboxPaths::new(base, bad, "t", "r").is_none(), "{bad:?}");
            assert!(SandboxPaths::new(base, "f", bad, "r").is_none(), "{bad:?}");
        }
    }

    #[test]
    fn only_files_of_known_runs_survive_a_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let run = |fw: &str, task: &str, id: &str| {
            let run = SandboxPaths::new(dir.path(), fw, task, id).unwrap();
            run.create(&[], true).unwrap();
            fs::write(run.stdout(), b"out").unwrap();
            run
        };
        let kept = [run("fw", "a", "1"), run("fw", "b", "2")];
        let orphans = [run("fw", "c", "3"), run("other", "d", "4")];
        fs::write(kept[0].root().join("result"), b"42").unwrap();
        assert_eq!(remove_unknown_runs(dir.path(), &kept), 4);
        for run in &kept {
            assert!(run.root().is_dir() && run.stdout().is_file(), "{run:?}");
        }
        assert!(kept[0].root().join("result").is_file());
        for run in &orphans {
            assert!(!run.root().exists() && !run.stdout().exists(), "{run:?}");
        }
        assert_eq!(remove_unknown_runs(&dir.path().join("missing"), &kept), 0);
    }
}

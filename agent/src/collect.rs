//! A task's outputs folder, read when the task ends: the regular files under
//! `<sandbox root>/outputs` (the guest's `/outputs`, see [`corral_types::OUTPUTS_DIR`]),
//! which the agent then keeps in the master's artifact store.
//!
//! The folder is the guest's to fill, so everything about it is bounded: at most
//! [`MAX_TASK_OUTPUTS`] files are kept, each at most [`MAX_ARTIFACT_BYTES`] with a UTF-8 path
//! of at most [`MAX_OUTPUT_PATH_BYTES`]; the walk stops after [`MAX_ENTRIES`] entries and
//! [`MAX_DEPTH`] levels. Links are never followed (a link could name a file outside the
//! sandbox). What is not kept is listed, so the task's status can say so.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use corral_proto::limits::{MAX_ARTIFACT_BYTES, MAX_OUTPUT_PATH_BYTES, MAX_TASK_OUTPUTS};
use corral_types::OUTPUTS_DIR;

/// Entries looked at, files and directories together, before the walk stops.
pub const MAX_ENTRIES: usize = 100_000;
/// Directory levels under the outputs folder looked into.
pub const MAX_DEPTH: usize = 32;

/// One file of a task's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Its path under the outputs folder, `/`-separated.
    pub path: String,
    /// Where it is on the host.
    pub host_path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Something in the outputs folder that is not kept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotKept {
    /// A file larger than [`MAX_ARTIFACT_BYTES`].
    TooLarge { path: String, size: u64 },
    /// A link, a socket, a device: only regular files are kept.
    NotAFile { path: String },
    /// A name that is not UTF-8, or a path longer than [`MAX_OUTPUT_PATH_BYTES`].
    BadPath { path: String },
    /// Files past [`MAX_TASK_OUTPUTS`], or everything past [`MAX_ENTRIES`] or [`MAX_DEPTH`].
    TooMany,
    /// The folder (or a directory in it) could not be read.
    Unreadable { path: String, reason: String },
}

impl fmt::Display for NotKept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { path, size } => {
                write!(f, "{path} ({size} bytes, over {MAX_ARTIFACT_BYTES})")
            }
            Self::NotAFile { path } => write!(f, "{path} (not a regular file)"),
            Self::BadPath { path } => write!(
                f,
                "{path} (not a UTF-8 path of at most {MAX_OUTPUT_PATH_BYTES} bytes)"
            ),
            Self::TooMany => write!(
                f,
                "files past the first {MAX_TASK_OUTPUTS} (or {MAX_ENTRIES} entries, {MAX_DEPTH} levels)"
            ),
            Self::Unreadable { path, reason } => write!(f, "{path} (unreadable: {reason})"),
        }
    }
}

/// What a task's outputs folder holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// The files to keep, sorted by path.
    pub files: Vec<OutputFile>,
    /// What is not kept.
    pub not_kept: Vec<NotKept>,
}

impl Collected {
    /// Bytes of the files to keep.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Reads the outputs folder of the sandbox root `root`; empty when there is none. Blocking.
pub fn collect(root: &Path) -> Collected {
    let mut out = Collected::default();
    let top = root.join(OUTPUTS_DIR);
    match fs::symlink_metadata(&top) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            out.not_kept.push(NotKept::NotAFile {
                path: OUTPUTS_DIR.into(),
            });
            return out;
        }
        Err(_) => return out,
    }
    let mut seen = 0usize;
    let mut too_many = false;
    // Directories still to read: host path, path under the folder, depth.
    let mut pending = vec![(top, String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                out.not_kept.push(NotKept::Unreadable {
                    path: display_dir(&prefix),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        for entry in entries {
            seen += 1;
            if seen > MAX_ENTRIES {
                too_many = true;
                break;
            }
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                out.not_kept.push(NotKept::BadPath {
                    path: format!("{prefix}{}", name.to_string_lossy()),
                });
                continue;
            };
            let path = format!("{prefix}{name}");
            if path.len() > MAX_OUTPUT_PATH_BYTES {
                out.not_kept.push(NotKept::BadPath { path });
                continue;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                if depth + 1 < MAX_DEPTH {
                    pending.push((entry.path(), format!("{path}/"), depth + 1));
                } else {
                    too_many = true;
                }
            } else if !meta.is_file() {
                out.not_kept.push(NotKept::NotAFile { path });
            } else if meta.len() > MAX_ARTIFACT_BYTES {
                out.not_kept.push(NotKept::TooLarge {
                    path,
                    size: meta.len(),
                });
            } else {
                out.files.push(OutputFile {
                    path,
                    host_path: entry.path(),
                    size: meta.len(),
                });
            }
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    if out.files.len() > MAX_TASK_OUTPUTS {
        out.files.truncate(MAX_TASK_OUTPUTS);
        too_many = true;
    }
    if too_many {
        out.not_kept.push(NotKept::TooMany);
    }
    out
}

fn display_dir(prefix: &str) -> String {
    if prefix.is_empty() {
        OUTPUTS_DIR.into()
    } else {
        format!("{OUTPUTS_DIR}/{prefix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_kept_sorted_and_the_rest_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = dir.path().join(OUTPUTS_DIR);
        fs::create_dir_all(outputs.join("plots/deep")).unwrap();
        fs::write(outputs.join("report.csv"), b"a,b\n").unwrap();
        fs::write(outputs.join("plots/deep/x.bin"), [7u8; 10]).unwrap();
        fs::write(outputs.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", outputs.join("link")).unwrap();
        let collected = collect(dir.path());
        let paths: Vec<_> = collected.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["empty", "plots/deep/x.bin", "report.csv"]);
        assert_eq!(collected.bytes(), 14);
        assert_eq!(
            collected.not_kept,
            [NotKept::NotAFile {
                path: "link".into()
            }]
        );
    }

    #[test]
    fn no_folder_is_no_outputs_and_a_file_in_its_place_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(collect(dir.path()), Collected::default());
        fs::write(dir.path().join(OUTPUTS_DIR), b"not a dir").unwrap();
        assert_eq!(collect(dir.path()).not_kept.len(), 1);
    }

    #[test]
    fn files_past_the_count_limit_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = dir.path().join(OUTPUTS_DIR);
        fs::create_dir_all(&outputs).unwrap();
        for i in 0..MAX_TASK_OUTPUTS + 3 {
            fs::write(outputs.join(format!("{i:05}")), b"").unwrap();
        }
        let collected = collect(dir.path());
        assert_eq!(collected.files.len(), MAX_TASK_OUTPUTS);
        assert_eq!(collected.files[0].path, "00000");
        assert_eq!(collected.not_kept, [NotKept::TooMany]);
    }
}

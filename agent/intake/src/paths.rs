//! Paths inside a sandbox. Every path a task's spec or a reader names is relative to the
//! sandbox and is checked lexically here before it touches the file system: only plain
//! names and `.`, never `..`, a root or a prefix. (What the guest itself opens is confined by
//! WASI's preopens; links a guest makes are caught where they are followed.)

use std::ffi::OsStr;
use std::path::{Component, Path};

/// The names `path` walks through, if it stays inside the directory it is relative to:
/// only plain components and `.`. `Some(empty)` is the directory itself (`.`); an empty
/// `path` is `None`.
pub fn inside(path: &str) -> Option<Vec<&OsStr>> {
    if path.is_empty() {
        return None;
    }
    Path::new(path)
        .components()
        .map(|c| match c {
            Component::Normal(name) => Some(Some(name)),
            Component::CurDir => Some(None),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(|names| names.into_iter().flatten().collect())
}

/// A file's path inside the sandbox (an input, an archive's entry): it stays inside and
/// names something below the directory, not the directory itself.
pub fn file(path: &str) -> Option<&Path> {
    inside(path)
        .is_some_and(|names| !names.is_empty())
        .then(|| Path::new(path))
}

/// A directory inside the sandbox (a preopen's); `.` is the sandbox itself.
pub fn directory(path: &str) -> Option<&Path> {
    inside(path).is_some().then(|| Path::new(path))
}

/// Whether `id` can name exactly one directory entry: no separators, no `.` or `..`, only
/// letters, digits and `-_.:@`, at most 255 bytes.
pub fn is_plain_component(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_must_stay_inside_and_name_something() {
        for good in ["input.txt", "data/in.csv", "./a", "a/./b", "a//b", "dir/"] {
            assert!(file(good).is_some(), "{good}");
        }
        for bad in [
            "",
            ".",
            "./",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "//x",
        ] {
            assert!(file(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn directories_may_be_the_sandbox_itself() {
        assert!(directory(".").is_some());
        assert!(directory("data/out").is_some());
        for bad in ["", "..", "/", "/tmp", "a/../.."] {
            assert!(directory(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn inside_lists_the_names_walked() {
        assert_eq!(
            inside("./a//b/."),
            Some(vec![OsStr::new("a"), OsStr::new("b")])
        );
        assert_eq!(inside("."), Some(vec![]));
        assert_eq!(inside("a/../b"), None);
    }

    #[test]
    fn ids_must_be_single_plain_components() {
        for good in ["a", "task-1", "run_2.x", "u@host:1"] {
            assert!(is_plain_component(good), "{good}");
        }
        let long = "x".repeat(256);
        for bad in ["", ".", "..", "a/b", "a\\b", "a b", "\0", long.as_str()] {
            assert!(!is_plain_component(bad), "{bad}");
        }
    }
}

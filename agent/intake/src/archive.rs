//! A tar archive of a task's inputs, unpacked in memory: regular files and directories only,
//! each inside the directory the archive is unpacked into.

use std::io::Read;
use std::path::Path;

use crate::paths;

/// A file of an unpacked archive: its path (under the directory unpacked into) and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub data: Vec<u8>,
}

/// What an archive holds: its files, and its directories (under the directory unpacked
/// into). A directory's files imply it; an empty one exists only as an entry of its own, and
/// must be made, or a directory shipped with it comes back without it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub dirs: Vec<String>,
    pub files: Vec<File>,
}

/// What an archive may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Bytes all files together may hold (what is left of the task's disk).
    pub bytes: u64,
    /// Entries (files and directories) it may hold.
    pub entries: usize,
}

/// The regular files and directories of tar archive `archive`, under `dir`. Links, devices
/// and entries whose path leaves `dir` are refused; the error says which entry and why.
///
/// Every size in the archive is a claim of whoever sent it: an entry is read only as far as
/// the bytes that actually arrived, and all entries together stay within `bounds`, so a
/// header claiming exabytes costs nothing.
pub fn unpack(dir: &str, archive: &[u8], bounds: Bounds) -> Result<Unpacked, String> {
    let arrived = archive.len() as u64;
    let mut left = bounds.bytes;
    let mut unpacked = Unpacked::default();
    let mut archive = tar::Archive::new(archive);
    let entries = archive
        .entries()
        .map_err(|e| format!("bad tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("bad tar archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad tar entry path: {e}"))?
            .into_owned();
        let kind = entry.header().entry_type();
        let stays_inside = path.to_str().is_some_and(|p| paths::directory(p).is_some());
        if !stays_inside {
            return Err(format!("entry {} leaves the directory", path.display()));
        }
        if kind.is_pax_global_extensions() {
            continue;
        }
        if unpacked.dirs.len() + unpacked.files.len() == bounds.entries {
            return Err(format!(
                "more than {} entries in the archive",
                bounds.entries
            ));
        }
        let under_dir = || Path::new(dir).join(&path).to_string_lossy().into_owned();
        if kind.is_dir() {
            // `.` is `dir` itself, which is there anyway.
            if path.to_str().and_then(paths::file).is_some() {
                unpacked.dirs.push(under_dir());
            }
            continue;
        }
        if !kind.is_file() {
            return Err(format!(
                "entry {} is not a regular file or directory",
                path.display()
            ));
        }
        if path.to_str().and_then(paths::file).is_none() {
            return Err(format!("entry {} names no file", path.display()));
        }
        let size = entry.size();
        if size > arrived {
            return Err(format!(
                "entry {} claims {size} bytes, more than the {arrived}-byte archive holds",
                path.display()
            ));
        }
        if size > left {
            return Err(format!(
                "entry {} ({size} bytes) does not fit in the task's disk ({} bytes for all \
                 inputs)",
                path.display(),
                bounds.bytes
            ));
        }
        left -= size;
        // Bounded by the archive's length above; `take` holds the read to it as well.
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| format!("bad tar entry {}: {e}", path.display()))?;
        if data.len() as u64 != size {
            return Err(format!(
                "entry {} is cut short: {} of {size} bytes",
                path.display(),
                data.len()
            ));
        }
        unpacked.files.push(File {
            path: under_dir(),
            data,
        });
    }
    Ok(unpacked)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Bounds = Bounds {
        bytes: 1 << 20,
        entries: 100,
    };

    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // `set_path` refuses `..`; write the raw name to build hostile archives.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn files_and_directories_land_under_the_input_directory() {
        let bytes = archive(&[
            ("./", tar::EntryType::Directory, b""),
            ("d/", tar::EntryType::Directory, b""),
            ("d/a.txt", tar::EntryType::Regular, b"alpha"),
            ("./b.txt", tar::EntryType::Regular, b"beta"),
            ("empty/", tar::EntryType::Directory, b""),
        ]);
        let unpacked = unpack("data", &bytes, ROOMY).unwrap();
        let paths: Vec<_> = unpacked.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["data/d/a.txt", "data/./b.txt"]);
        assert_eq!(unpacked.files[0].data, b"alpha");
        assert_eq!(unpacked.dirs, ["data/d/", "data/empty/"]);
    }

    #[test]
    fn entries_that_leave_link_or_name_nothing_are_refused() {
        for (path, kind, why) in [
            ("../escape", tar::EntryType::Regular, "leaves the directory"),
            ("a/../../x", tar::EntryType::Regular, "leaves the directory"),
            (
                "/etc/passwd",
                tar::EntryType::Regular,
                "leaves the directory",
            ),
            ("../up/", tar::EntryType::Directory, "leaves the directory"),
            ("link", tar::EntryType::Symlink, "not a regular file"),
            ("hard", tar::EntryType::Link, "not a regular file"),
            ("tty", tar::EntryType::Char, "not a regular file"),
            ("disk", tar::EntryType::Block, "not a regular file"),
            ("pipe", tar::EntryType::Fifo, "not a regular file"),
            (".", tar::EntryType::Regular, "names no file"),
        ] {
            let error = unpack("data", &archive(&[(path, kind, b"")]), ROOMY).unwrap_err();
            assert!(error.contains(why), "{path}: {error}");
        }
    }

    #[test]
    fn sizes_claimed_beyond_the_archive_are_refused_before_any_allocation() {
        let lying = corral_fixtures::hostile::tar_claiming(1 << 62);
        let unbounded = Bounds {
            bytes: u64::MAX,
            entries: usize::MAX,
        };
        let error = unpack("data", &lying, unbounded).unwrap_err();
        assert!(
            error.contains("more than the 1536-byte archive holds"),
            "{error}"
        );
    }

    #[test]
    fn archives_of_too_many_entries_are_refused() {
        let names: Vec<String> = (0..=3).map(|i| format!("f{i}")).collect();
        let files: Vec<_> = names
            .iter()
            .map(|n| (n.as_str(), tar::EntryType::Regular, &b""[..]))
            .collect();
        let three = Bounds {
            bytes: 0,
            entries: 3,
        };
        assert_eq!(
            unpack("d", &archive(&files[..3]), three)
                .unwrap()
                .files
                .len(),
            3
        );
        let error = unpack("d", &archive(&files), three).unwrap_err();
        assert_eq!(error, "more than 3 entries in the archive");
        // Empty directories count as much as files: each is made on the agent's disk.
        let dirs: Vec<_> = names
            .iter()
            .map(|n| (n.as_str(), tar::EntryType::Directory, &b""[..]))
            .collect();
        let error = unpack("d", &archive(&dirs), three).unwrap_err();
        assert_eq!(error, "more than 3 entries in the archive");
    }

    #[test]
    fn inputs_beyond_the_tasks_disk_are_refused() {
        let bytes = archive(&[
            ("a.txt", tar::EntryType::Regular, &[1u8; 600]),
            ("b.txt", tar::EntryType::Regular, &[2u8; 600]),
        ]);
        let within = |bytes| Bounds { bytes, entries: 10 };
        assert_eq!(unpack("data", &bytes, within(1200)).unwrap().files.len(), 2);
        let error = unpack("data", &bytes, within(1000)).unwrap_err();
        assert!(error.contains("b.txt (600 bytes) does not fit"), "{error}");
    }
}

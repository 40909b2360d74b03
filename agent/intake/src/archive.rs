//! A tar archive of a task's inputs, unpacked in memory: regular files only, each inside the
//! directory the archive is unpacked into.

use std::io::Read;
use std::path::Path;

use crate::paths;

/// A file of an unpacked archive: its path (under the directory unpacked into) and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub data: Vec<u8>,
}

/// What an archive may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Bytes all files together may hold (what is left of the task's disk).
    pub bytes: u64,
    /// Files it may hold.
    pub files: usize,
}

/// The regular files of tar archive `archive` as files under `dir`. Directories are implied
/// by the files in them; links, devices and entries whose path leaves `dir` are refused; the
/// error says which entry and why.
///
/// Every size in the archive is a claim of whoever sent it: an entry is read only as far as
/// the bytes that actually arrived, and all entries together stay within `bounds`, so a
/// header claiming exabytes costs nothing.
pub fn unpack(dir: &str, archive: &[u8], bounds: Bounds) -> Result<Vec<File>, String> {
    let arrived = archive.len() as u64;
    let mut left = bounds.bytes;
    let mut files = Vec::new();
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
        if kind.is_dir() || kind.is_pax_global_extensions() {
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
        if files.len() == bounds.files {
            return Err(format!("more than {} files in the archive", bounds.files));
        }
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
        files.push(File {
            path: Path::new(dir).join(&path).to_string_lossy().into_owned(),
            data,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Bounds = Bounds {
        bytes: 1 << 20,
        files: 100,
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
    fn files_land_under_the_input_directory() {
        let bytes = archive(&[
            ("d/", tar::EntryType::Directory, b""),
            ("d/a.txt", tar::EntryType::Regular, b"alpha"),
            ("./b.txt", tar::EntryType::Regular, b"beta"),
        ]);
        let files = unpack("data", &bytes, ROOMY).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["data/d/a.txt", "data/./b.txt"]);
        assert_eq!(files[0].data, b"alpha");
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
            files: usize::MAX,
        };
        let error = unpack("data", &lying, unbounded).unwrap_err();
        assert!(
            error.contains("more than the 1536-byte archive holds"),
            "{error}"
        );
    }

    #[test]
    fn archives_of_too_many_files_are_refused() {
        let names: Vec<String> = (0..=3).map(|i| format!("f{i}")).collect();
        let entries: Vec<_> = names
            .iter()
            .map(|n| (n.as_str(), tar::EntryType::Regular, &b""[..]))
            .collect();
        let three = Bounds { bytes: 0, files: 3 };
        assert_eq!(
            unpack("d", &archive(&entries[..3]), three).unwrap().len(),
            3
        );
        let error = unpack("d", &archive(&entries), three).unwrap_err();
        assert_eq!(error, "more than 3 files in the archive");
    }

    #[test]
    fn inputs_beyond_the_tasks_disk_are_refused() {
        let bytes = archive(&[
            ("a.txt", tar::EntryType::Regular, &[1u8; 600]),
            ("b.txt", tar::EntryType::Regular, &[2u8; 600]),
        ]);
        let within = |bytes| Bounds { bytes, files: 10 };
        assert_eq!(unpack("data", &bytes, within(1200)).unwrap().len(), 2);
        let error = unpack("data", &bytes, within(1000)).unwrap_err();
        assert!(error.contains("b.txt (600 bytes) does not fit"), "{error}");
    }
}

//! `corral run --dir HOST::GUEST`: a host directory shipped into the task's sandbox, preopened
//! under the guest's name as `wasmtime run --dir` does, and the task's changes to it brought
//! back when it ends.
//!
//! ```text
//! ship:  walk HOST (symlinks followed) ─▶ tar input at `dirs/<i>` + manifest (path → digest)
//! sync:  ListFiles/ReadFile `root/dirs/<i>/…` ─▶ compare with the manifest and with HOST now
//!          added / changed / removed by the task ─▶ applied to HOST
//!          also changed on the host meanwhile   ─▶ left alone, reported as a conflict
//! ```
//!
//! The manifest is what makes the sync lose nothing: a file is written or deleted on the host
//! only if the host still holds what was shipped (or nothing, for a file the task added).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use corral_proto::{InputFile, InputSource, limits, v1};
use corral_types::{Digest, Preopen};

use crate::client::OperatorClient;
use crate::commands::Exit;
use crate::parse::show_bytes;

/// Where shipped directories live in the sandbox: `dirs/0`, `dirs/1`, … in `--dir` order.
const SANDBOX_DIR: &str = "dirs";

/// Why a change is not copied to a path the host now reaches through a link out of `--dir`.
const OUT_OF_ROOT: &str = "under a link out of the directory on the host";

/// One `--dir`: where it came from, the name the guest sees, and what was shipped.
#[derive(Debug)]
pub(crate) struct ShippedDir {
    host: PathBuf,
    /// `host` with every link resolved: nothing outside it is shipped or synced.
    root: PathBuf,
    guest: String,
    sandbox_path: String,
    /// Each shipped file, relative to `host`, with the digest of what was shipped.
    files: BTreeMap<PathBuf, Digest>,
    /// Each shipped directory below `host`.
    dirs: BTreeSet<PathBuf>,
    /// What the shipped files hold together: what they take of the task's disk.
    file_bytes: u64,
    /// What below `host` is not shipped, and why: links to nothing, names a guest cannot
    /// spell, sockets and devices. The sync leaves them alone.
    left_out: Vec<(PathBuf, &'static str)>,
}

/// `HOST`, `HOST::GUEST` (wasmtime's spelling) or `HOST:GUEST`: the host directory and the name
/// the guest sees, which is `HOST` as written when no guest name is given (as in wasmtime).
pub(crate) fn parse_dir(spec: &str) -> Result<(PathBuf, String), Exit> {
    let (host, guest) = match spec.split_once("::") {
        Some(pair) => pair,
        None => spec.split_once(':').unwrap_or((spec, spec)),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(Exit::invalid(format!(
            "--dir {spec:?}: give HOST_DIR, HOST_DIR::GUEST_DIR or HOST_DIR:GUEST_DIR"
        )));
    }
    Ok((PathBuf::from(host), guest.to_owned()))
}

impl ShippedDir {
    /// Reads `host` into a tar archive for the sandbox directory `dirs/<index>`, at most what
    /// the artifact store takes.
    pub(crate) fn ship(
        index: usize,
        host: PathBuf,
        guest: String,
    ) -> anyhow::Result<(Self, InputFile)> {
        if !host.is_dir() {
            return Err(Exit::invalid(format!("--dir {}: not a directory", host.display())).into());
        }
        let root = fs::canonicalize(&host)
            .map_err(|e| Exit::invalid(format!("--dir {}: {e}", host.display())))?;
        let mut shipped = Self {
            host,
            root,
            guest,
            sandbox_path: format!("{SANDBOX_DIR}/{index}"),
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            file_bytes: 0,
            left_out: Vec::new(),
        };
        let mut archive = tar::Builder::new(Vec::new());
        let mut seen = HashSet::new();
        shipped
            .archive_dir(&mut archive, PathBuf::new(), &mut seen)
            .map_err(|e| Exit::invalid(format!("reading --dir {}: {e}", shipped.host.display())))?;
        let archive = archive.into_inner().context("finishing the archive")?;
        if archive.len() as u64 > limits::MAX_ARTIFACT_BYTES {
            return Err(Exit::invalid(format!(
                "--dir {}: its archive is {}; a directory shipped with a task is at most {}",
                shipped.host.display(),
                show_bytes(archive.len() as u64),
                show_bytes(limits::MAX_ARTIFACT_BYTES)
            ))
            .into());
        }
        let input = InputFile {
            path: shipped.sandbox_path.clone(),
            source: InputSource::TarArchive(archive.into()),
        };
        Ok((shipped, input))
    }

    /// The host directory.
    pub(crate) fn host(&self) -> &Path {
        &self.host
    }

    /// What its files hold together.
    pub(crate) fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// What was left out, one line each for stderr: nothing a guest could open under
    /// `wasmtime run` either.
    pub(crate) fn not_shipped(&self) -> Vec<String> {
        self.left_out
            .iter()
            .map(|(p, why)| format!("not shipped: {} ({why})", self.host.join(p).display()))
            .collect()
    }

    /// The preopen the guest sees this directory through.
    pub(crate) fn preopen(&self) -> Preopen {
        Preopen {
            guest_path: self.guest.clone(),
            sandbox_path: self.sandbox_path.clone(),
        }
    }

    /// Appends `relative` (a directory under `host`) and everything below it. Symlinks are
    /// followed as far as `wasmtime run` lets a guest follow them: to anything inside `host`,
    /// never out of it. A directory reached twice (a link loop) is shipped once.
    fn archive_dir(
        &mut self,
        archive: &mut tar::Builder<Vec<u8>>,
        relative: PathBuf,
        seen: &mut HashSet<(u64, u64)>,
    ) -> io::Result<()> {
        let dir = self.host.join(&relative);
        let in_dir = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        let meta = fs::metadata(&dir).map_err(in_dir)?;
        if !seen.insert((meta.dev(), meta.ino())) {
            return Ok(());
        }
        let mut entries = fs::read_dir(&dir)
            .and_then(|d| d.collect::<Result<Vec<_>, _>>())
            .map_err(in_dir)?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let path = relative.join(entry.file_name());
            if entry.file_name().to_str().is_none() {
                // WASI names files in UTF-8, and the agent refuses any other name.
                self.left_out.push((path, "a name that is not UTF-8"));
                continue;
            }
            // Each failure names its file: a directory can hold thousands.
            let named =
                |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", entry.path().display()));
            let meta = match fs::metadata(entry.path()) {
                Ok(meta) => meta,
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        && entry.file_type().is_ok_and(|t| t.is_symlink()) =>
                {
                    self.left_out.push((path, "a link to nothing"));
                    continue;
                }
                Err(e) => return Err(named(e)),
            };
            if entry.file_type().is_ok_and(|t| t.is_symlink())
                && !fs::canonicalize(entry.path()).is_ok_and(|to| to.starts_with(&self.root))
            {
                self.left_out.push((
                    path,
                    "a link out of the directory, which a guest cannot follow",
                ));
                continue;
            }
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&meta);
            if meta.is_dir() {
                header.set_size(0);
                archive.append_data(&mut header, &path, io::empty())?;
                self.dirs.insert(path.clone());
                self.archive_dir(archive, path, seen)?;
            } else if meta.is_file() {
                let bytes = fs::read(entry.path()).map_err(named)?;
                header.set_size(bytes.len() as u64);
                archive.append_data(&mut header, &path, bytes.as_slice())?;
                self.file_bytes += bytes.len() as u64;
                self.files.insert(path, Digest::of(&bytes));
            } else {
                self.left_out
                    .push((path, "not a regular file or a directory"));
            }
        }
        Ok(())
    }

    /// Brings the task's changes to this directory back to the host.
    pub(crate) async fn sync_back(
        &self,
        client: &mut OperatorClient,
        task: &Task<'_>,
    ) -> anyhow::Result<SyncReport> {
        let remote = self.remote_tree(client, task).await?;
        let mut report = SyncReport::default();
        for dir in &remote.dirs {
            if !self.dirs.contains(dir) {
                if !self.within_root(dir) {
                    report.not_copied.push((dir.clone(), OUT_OF_ROOT.into()));
                    continue;
                }
                fs::create_dir_all(self.host.join(dir))
                    .with_context(|| format!("creating {}", self.host.join(dir).display()))?;
            }
        }
        for (path, entry) in &remote.entries {
            let shipped = self.files.get(path);
            let bytes = match entry {
                RemoteEntry::File(bytes) if shipped == Some(&Digest::of(bytes)) => continue,
                RemoteEntry::File(bytes) => Some(bytes),
                RemoteEntry::Symlink(_) => None,
                RemoteEntry::Unreadable(why) => {
                    report.not_copied.push((path.clone(), why.clone()));
                    continue;
                }
            };
            let target = self.host.join(path);
            match self.host_state(path, shipped) {
                HostState::AsShipped => {
                    match (bytes, entry) {
                        (Some(bytes), _) => write_file(&target, bytes)?,
                        (None, RemoteEntry::Symlink(link)) => replace_with_symlink(&target, link)?,
                        (None, _) => continue,
                    }
                    let list = if shipped.is_some() {
                        &mut report.changed
                    } else {
                        &mut report.added
                    };
                    list.push(path.clone());
                }
                HostState::Conflict(why) => report.not_copied.push((path.clone(), why)),
            }
        }
        for (path, digest) in &self.files {
            if remote.entries.contains_key(path) {
                continue;
            }
            match self.host_state(path, Some(digest)) {
                HostState::AsShipped => {
                    let target = self.host.join(path);
                    fs::remove_file(&target)
                        .with_context(|| format!("removing {}", target.display()))?;
                    report.removed.push(path.clone());
                }
                HostState::Conflict(why) => report.not_copied.push((path.clone(), why)),
            }
        }
        // Directories the task removed, deepest first, if the host left them empty.
        for dir in self.dirs.iter().rev() {
            if !remote.dirs.contains(dir)
                && self.within_root(dir)
                && fs::remove_dir(self.host.join(dir)).is_ok()
            {
                report.removed.push(dir.clone());
            }
        }
        Ok(report)
    }

    /// Whether `path` (under `host`, existing or not) lies inside the directory shipped: the
    /// nearest directory of it that exists is, with its links resolved. A link on the host,
    /// made or changed while the task ran, never takes a change of the task out of it.
    fn within_root(&self, path: &Path) -> bool {
        let mut dir = self.host.join(path);
        while dir.pop() {
            match fs::canonicalize(&dir) {
                Ok(resolved) => return resolved.starts_with(&self.root),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Whether the host still holds what was shipped at `path` (`None`: nothing was).
    fn host_state(&self, path: &Path, shipped: Option<&Digest>) -> HostState {
        if !self.within_root(path) {
            return HostState::Conflict(OUT_OF_ROOT.into());
        }
        let target = self.host.join(path);
        let now = match fs::symlink_metadata(&target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return HostState::Conflict(e.to_string()),
            Ok(meta) if meta.file_type().is_symlink() => {
                return HostState::Conflict("a symlink on the host, left as it is".into());
            }
            Ok(meta) if !meta.is_file() => {
                return HostState::Conflict("not a regular file on the host".into());
            }
            Ok(_) => match fs::read(&target) {
                Ok(bytes) => Some(Digest::of(&bytes)),
                Err(e) => return HostState::Conflict(e.to_string()),
            },
        };
        match (shipped, now) {
            (None, None) => HostState::AsShipped,
            (Some(a), Some(b)) if *a == b => HostState::AsShipped,
            (None, Some(_)) => HostState::Conflict("created on the host meanwhile".into()),
            (Some(_), None) => HostState::Conflict("removed on the host meanwhile".into()),
            (Some(_), Some(_)) => HostState::Conflict("changed on the host meanwhile".into()),
        }
    }

    /// Every file and directory under the task's copy, read through the master.
    async fn remote_tree(
        &self,
        client: &mut OperatorClient,
        task: &Task<'_>,
    ) -> anyhow::Result<RemoteTree> {
        let base = format!("root/{}", self.sandbox_path);
        let mut tree = RemoteTree::default();
        let mut pending = vec![base.clone()];
        while let Some(dir) = pending.pop() {
            let listing = client
                .list_files(v1::ListFilesRequest {
                    task_id: task.id.to_owned(),
                    path: dir.clone(),
                    framework_id: task.framework.map(str::to_owned),
                })
                .await
                .map_err(|s| anyhow::anyhow!("listing the task's {dir}: {}", s.message()))?
                .into_inner();
            for entry in listing.files {
                let Some(relative) = entry.path.strip_prefix(&base) else {
                    continue;
                };
                let relative = PathBuf::from(relative.trim_start_matches('/'));
                let remote = if entry.is_dir {
                    tree.dirs.insert(relative);
                    pending.push(entry.path);
                    continue;
                } else if let Some(link) = entry.symlink_target {
                    RemoteEntry::Symlink(link)
                } else {
                    match read_whole(client, task, &entry.path).await {
                        Ok(bytes) => RemoteEntry::File(bytes),
                        Err(status) => RemoteEntry::Unreadable(status.message().to_owned()),
                    }
                };
                tree.entries.insert(relative, remote);
            }
        }
        Ok(tree)
    }
}

/// The task whose sandbox is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Task<'a> {
    pub(crate) id: &'a str,
    pub(crate) framework: Option<&'a str>,
}

enum HostState {
    /// The host holds what was shipped: the task's version may replace it.
    AsShipped,
    /// The host changed too (or cannot be read): kept, and why.
    Conflict(String),
}

#[derive(Debug, Default)]
struct RemoteTree {
    entries: BTreeMap<PathBuf, RemoteEntry>,
    dirs: BTreeSet<PathBuf>,
}

/// What the task left at a path (other than a directory).
#[derive(Debug)]
enum RemoteEntry {
    File(Vec<u8>),
    /// A symlink the task made, and the path it holds.
    Symlink(String),
    /// A file the agent would not read, and why.
    Unreadable(String),
}

/// What a sync did to one shipped directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SyncReport {
    pub(crate) added: Vec<PathBuf>,
    pub(crate) changed: Vec<PathBuf>,
    pub(crate) removed: Vec<PathBuf>,
    /// Left as they are on the host (changed there too, or unreadable), with why.
    pub(crate) not_copied: Vec<(PathBuf, String)>,
}

impl SyncReport {
    /// One line per change, for stderr; nothing if the task changed nothing.
    pub(crate) fn lines(&self, host: &Path) -> Vec<String> {
        let show = |p: &PathBuf| host.join(p).display().to_string();
        let mut lines = Vec::new();
        lines.extend(self.added.iter().map(|p| format!("added {}", show(p))));
        lines.extend(self.changed.iter().map(|p| format!("changed {}", show(p))));
        lines.extend(self.removed.iter().map(|p| format!("removed {}", show(p))));
        lines.extend(
            self.not_copied
                .iter()
                .map(|(p, why)| format!("not copied back: {} ({why})", show(p))),
        );
        lines
    }
}

/// A sandbox file's whole contents.
async fn read_whole(
    client: &mut OperatorClient,
    task: &Task<'_>,
    path: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut bytes = Vec::new();
    loop {
        let part = client
            .read_file(v1::ReadFileRequest {
                task_id: task.id.to_owned(),
                path: path.to_owned(),
                offset: bytes.len() as u64,
                length: limits::MAX_READ_FILE_BYTES,
                framework_id: task.framework.map(str::to_owned),
            })
            .await?
            .into_inner();
        if part.data.is_empty() {
            return Ok(bytes);
        }
        bytes.extend_from_slice(&part.data);
        if bytes.len() as u64 >= part.size {
            return Ok(bytes);
        }
    }
}

/// Puts a symlink holding `link` where the shipped file was (or nothing was).
fn replace_with_symlink(target: &Path, link: &str) -> anyhow::Result<()> {
    match fs::remove_file(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("replacing {}", target.display()));
        }
        _ => {}
    }
    std::os::unix::fs::symlink(link, target)
        .with_context(|| format!("linking {} to {link}", target.display()))
}

/// Writes through a temporary file and a rename, so an interrupted sync never leaves half a
/// file where a whole one was.
fn write_file(target: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    io::Write::write_all(&mut temp, bytes)
        .with_context(|| format!("writing {}", target.display()))?;
    if let Ok(meta) = fs::metadata(target) {
        // The file keeps its permissions, as it would had the task written it in place.
        fs::set_permissions(temp.path(), meta.permissions())
            .with_context(|| format!("writing {}", target.display()))?;
    }
    temp.persist(target)
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn the_host_wins_where_it_changed_since_shipping() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("data");
        fs::create_dir_all(host.join("sub")).unwrap();
        fs::write(host.join("kept.txt"), "as shipped").unwrap();
        fs::write(host.join("edited.txt"), "as shipped").unwrap();
        fs::write(host.join("sub/deleted.txt"), "as shipped").unwrap();
        let (shipped, input) = ShippedDir::ship(0, host.clone(), "data".into()).unwrap();
        assert_eq!(input.path, "dirs/0");
        assert_eq!(shipped.files.len(), 3);
        assert!(shipped.dirs.contains(Path::new("sub")));

        fs::write(host.join("edited.txt"), "edited on the host").unwrap();
        fs::remove_file(host.join("sub/deleted.txt")).unwrap();
        fs::write(host.join("new.txt"), "new on the host").unwrap();
        let kept = shipped.files.get(Path::new("kept.txt"));
        assert!(matches!(
            shipped.host_state(Path::new("kept.txt"), kept),
            HostState::AsShipped
        ));
        assert!(matches!(
            shipped.host_state(Path::new("absent.txt"), None),
            HostState::AsShipped
        ));
        for (path, why) in [
            ("edited.txt", "changed on the host meanwhile"),
            ("sub/deleted.txt", "removed on the host meanwhile"),
            ("new.txt", "created on the host meanwhile"),
        ] {
            let path = Path::new(path);
            match shipped.host_state(path, shipped.files.get(path)) {
                HostState::Conflict(reason) => assert_eq!(reason, why, "{path:?}"),
                HostState::AsShipped => panic!("{path:?} is not as shipped"),
            }
        }

        // A directory replaced by a link out of the tree while the task ran: nothing of the
        // task's is written, removed or made through it.
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("deleted.txt"), "as shipped").unwrap();
        fs::remove_dir(host.join("sub")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, host.join("sub")).unwrap();
        for path in ["sub/deleted.txt", "sub/added.txt", "sub/new/deeper.txt"] {
            let path = Path::new(path);
            match shipped.host_state(path, shipped.files.get(path)) {
                HostState::Conflict(reason) => assert_eq!(reason, OUT_OF_ROOT, "{path:?}"),
                HostState::AsShipped => panic!("{path:?} would be synced out of the tree"),
            }
        }
        assert!(!shipped.within_root(Path::new("sub/new")));
        assert!(shipped.within_root(Path::new("other/new")));
    }

    #[test]
    fn shipping_follows_links_inside_once_and_refuses_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("data");
        fs::create_dir(&host).unwrap();
        fs::write(dir.path().join("outside.txt"), "outside").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), host.join("link.txt")).unwrap();
        fs::write(host.join("real.txt"), "inside").unwrap();
        std::os::unix::fs::symlink("real.txt", host.join("alias.txt")).unwrap();
        std::os::unix::fs::symlink(&host, host.join("loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), host.join("dangling")).unwrap();
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        fs::write(host.join(latin1), "not UTF-8").unwrap();
        let socket = std::os::unix::net::UnixListener::bind(host.join("sock")).unwrap();
        let (shipped, _) = ShippedDir::ship(1, host.clone(), "d".into()).unwrap();
        drop(socket);
        let files: Vec<_> = shipped.files.keys().collect();
        assert_eq!(files, [Path::new("alias.txt"), Path::new("real.txt")]);
        // What a guest could not open is left out and said so, not an error for the whole
        // directory.
        assert_eq!(
            shipped.not_shipped(),
            [
                format!(
                    "not shipped: {} (a name that is not UTF-8)",
                    host.join(latin1).display()
                ),
                format!(
                    "not shipped: {} (a link to nothing)",
                    host.join("dangling").display()
                ),
                format!(
                    "not shipped: {} (a link out of the directory, which a guest cannot follow)",
                    host.join("link.txt").display()
                ),
                format!(
                    "not shipped: {} (not a regular file or a directory)",
                    host.join("sock").display()
                ),
            ]
        );
        assert_eq!(shipped.preopen().sandbox_path, "dirs/1");
        let error = ShippedDir::ship(0, host.join("link.txt"), "x".into()).unwrap_err();
        assert!(error.to_string().contains("not a directory"), "{error}");
    }

    #[test]
    fn dir_specs_take_wasmtime_and_short_spellings() {
        assert_eq!(parse_dir("data").unwrap(), ("data".into(), "data".into()));
        assert_eq!(parse_dir("/a/b::/c").unwrap(), ("/a/b".into(), "/c".into()));
        assert_eq!(parse_dir("a:b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_dir(".::.").unwrap(), (".".into(), ".".into()));
        for bad in ["", "::x", "x::", ":x", "x:"] {
            assert!(parse_dir(bad).is_err(), "{bad:?}");
        }
    }
}

//! `wasi_compat <case> [args...]`: exercises one family of WASI preview 1 functions and prints
//! what it saw, deterministically (no host paths, times or random bytes in the output), so a
//! test can run it under plain wasmtime-wasi and through Corral and compare the two outputs.
//!
//! Cases that touch files work in the preopened directory named `data` (give one). Errors
//! print as `err <errno>` (the WASI errno), which is the same wherever the call ran.

#[cfg(not(target_family = "wasm"))]
compile_error!("`wasi_compat` is a wasm guest fixture; build it with --target wasm32-wasip1");

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: wasi_compat <case> [args...]
cases:
  args [args...]   argv, argv[0] included
  env              the environment, in order
  preopens         each preopened directory: fd and name
  files            create, write, read, seek, pread/pwrite, truncate, append, sync, stat
  dirs             mkdir, nested dirs, listing, rename, remove, errors
  paths            relative and absolute paths, `..` inside and outside the preopen
  symlinks         symlink, readlink, stat through links, links that leave the preopen, hard links
  readdir          fd_readdir with a small buffer, resumed by cookies
  times            fd_filestat_set_times, then the times read back
  clocks           clock_res_get, clock_time_get, monotonic order
  random           random_get
  poll             poll_oneoff on clocks, sleep
  fdstat           fd_fdstat_get and fd_filestat_get on stdio and a preopen
  stdin            reads stdin to its end
  sockets          sock_accept, sock_recv, sock_send, sock_shutdown on non-sockets
  exit <code>      proc_exit(code)
  misc             sched_yield, fd_advise, fd_allocate, fd_renumber, fd_fdstat_set_flags";

/// The WASI functions std does not expose.
mod raw {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        pub fn fd_prestat_get(fd: u32, buf: *mut u8) -> u16;
        pub fn fd_prestat_dir_name(fd: u32, path: *mut u8, len: usize) -> u16;
        pub fn fd_readdir(fd: u32, buf: *mut u8, len: usize, cookie: u64, used: *mut usize) -> u16;
        pub fn clock_res_get(id: u32, resolution: *mut u64) -> u16;
        pub fn clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
        pub fn random_get(buf: *mut u8, len: usize) -> u16;
        pub fn fd_fdstat_get(fd: u32, buf: *mut u8) -> u16;
        pub fn fd_fdstat_set_flags(fd: u32, flags: u16) -> u16;
        pub fn fd_filestat_set_times(fd: u32, atim: u64, mtim: u64, flags: u16) -> u16;
        pub fn poll_oneoff(subs: *const u8, events: *mut u8, n: usize, nevents: *mut usize) -> u16;
        pub fn sock_accept(fd: u32, flags: u16, new_fd: *mut u32) -> u16;
        pub fn sock_recv(
            fd: u32,
            iovs: *const u8,
            iovs_len: usize,
            flags: u16,
            nread: *mut usize,
            oflags: *mut u16,
        ) -> u16;
        pub fn sock_send(
            fd: u32,
            iovs: *const u8,
            iovs_len: usize,
            flags: u16,
            nwritten: *mut usize,
        ) -> u16;
        pub fn sock_shutdown(fd: u32, how: u8) -> u16;
        pub fn sched_yield() -> u16;
        pub fn fd_pread(fd: u32, iovs: *const u8, iovs_len: usize, offset: u64, n: *mut usize) -> u16;
        pub fn fd_pwrite(fd: u32, iovs: *const u8, iovs_len: usize, offset: u64, n: *mut usize)
        -> u16;
        pub fn path_symlink(
            old: *const u8,
            old_len: usize,
            fd: u32,
            new: *const u8,
            new_len: usize,
        ) -> u16;
        pub fn fd_advise(fd: u32, offset: u64, len: u64, advice: u8) -> u16;
        pub fn fd_allocate(fd: u32, offset: u64, len: u64) -> u16;
        pub fn fd_renumber(from: u32, to: u32) -> u16;
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(case) = args.get(1) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match case.as_str() {
        "args" => println!("{args:?}"),
        "env" => std::env::vars().for_each(|(k, v)| println!("{k}={v}")),
        "preopens" => preopens(),
        "files" => files(),
        "dirs" => dirs(),
        "paths" => paths(),
        "symlinks" => symlinks(),
        "readdir" => readdir(),
        "times" => times(),
        "clocks" => clocks(),
        "random" => random(),
        "poll" => poll(),
        "fdstat" => fdstat(),
        "stdin" => stdin(),
        "sockets" => sockets(),
        "misc" => misc(),
        "exit" => match args.get(2).and_then(|c| c.parse().ok()) {
            Some(code) => std::process::exit(code),
            None => {
                eprintln!("exit <code>");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("unknown case {case:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// `ok`, or `ok <value>`, or `err <errno>` for a std result.
fn show<T: std::fmt::Debug>(what: &str, result: io::Result<T>) {
    match result {
        Ok(value) => println!("{what}: ok {value:?}"),
        Err(e) => println!("{what}: err {}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn errno(what: &str, code: u16) {
    println!("{what}: errno {code}");
}

fn preopens() {
    for fd in 3u32.. {
        let mut prestat = [0u8; 8];
        let code = unsafe { raw::fd_prestat_get(fd, prestat.as_mut_ptr()) };
        if code != 0 {
            println!("fd {fd}: errno {code} (end)");
            break;
        }
        let len = u32::from_le_bytes(prestat[4..8].try_into().unwrap()) as usize;
        let mut name = vec![0u8; len];
        let code = unsafe { raw::fd_prestat_dir_name(fd, name.as_mut_ptr(), len) };
        println!(
            "fd {fd}: tag {} name {:?} errno {code}",
            prestat[0],
            String::from_utf8_lossy(&name)
        );
    }
}

fn files() {
    let path = "data/file.txt";
    show("create", File::create(path).map(|_| ()));
    let mut file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    show("write", file.write_all(b"hello, world\n"));
    show("seek start", file.seek(SeekFrom::Start(7)));
    let mut word = [0u8; 5];
    show("read", file.read_exact(&mut word).map(|()| String::from_utf8_lossy(&word).into_owned()));
    show("seek current", file.seek(SeekFrom::Current(-5)));
    show("seek end", file.seek(SeekFrom::End(-1)));
    show("seek before start", file.seek(SeekFrom::Current(-100)));
    let fd = file.as_raw_fd() as u32;
    let word = b"WORLD";
    let iov = [word.as_ptr() as usize, word.len()];
    let mut n = 0usize;
    let code = unsafe { raw::fd_pwrite(fd, iov.as_ptr().cast(), 1, 7, &mut n) };
    println!("pwrite: errno {code} wrote {n}");
    show("position after pwrite", file.stream_position());
    let mut buf = [0u8; 13];
    let iov = [buf.as_mut_ptr() as usize, buf.len()];
    let code = unsafe { raw::fd_pread(fd, iov.as_ptr().cast(), 1, 0, &mut n) };
    println!("pread: errno {code} {:?}", String::from_utf8_lossy(&buf[..n]));
    let code = unsafe { raw::fd_pread(fd, iov.as_ptr().cast(), 1, 100, &mut n) };
    println!("pread past end: errno {code} read {n}");
    show("sync_all", file.sync_all());
    show("sync_data", file.sync_data());
    show("set_len grow", file.set_len(20));
    show("len", file.metadata().map(|m| m.len()));
    show("set_len shrink", file.set_len(5));
    drop(file);
    show("contents", fs::read_to_string(path));
    let mut append = OpenOptions::new().append(true).open(path).unwrap();
    show("append", append.write_all(b" again"));
    drop(append);
    show("after append", fs::read_to_string(path));
    show("create_new existing", OpenOptions::new().write(true).create_new(true).open(path).map(|_| ()));
    show("open missing", File::open("data/missing.txt").map(|_| ()));
    show("read a directory", fs::read("data"));
    show("write read-only handle", File::open(path).and_then(|mut f| f.write(b"x")));
    let meta = fs::metadata(path).unwrap();
    println!("metadata: file {} dir {} len {}", meta.is_file(), meta.is_dir(), meta.len());
    show("truncate on open", OpenOptions::new().write(true).truncate(true).open(path).map(|_| ()));
    show("len after truncate", fs::metadata(path).map(|m| m.len()));
    show("remove", fs::remove_file(path));
    show("remove again", fs::remove_file(path));
    let seed = OpenOptions::new().append(true).open("data/seed.txt");
    show("append to an input", seed.and_then(|mut f| f.write_all(b"appended\n")));
}

fn dirs() {
    show("mkdir", fs::create_dir("data/d"));
    show("mkdir again", fs::create_dir("data/d"));
    show("mkdir nested", fs::create_dir_all("data/d/e/f"));
    for name in ["b", "a", "c"] {
        fs::write(format!("data/d/{name}.txt"), name).unwrap();
    }
    let mut names: Vec<String> = fs::read_dir("data/d")
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let kind = e.file_type().unwrap();
            format!("{}:{}", e.file_name().to_string_lossy(), if kind.is_dir() { "dir" } else { "file" })
        })
        .collect();
    names.sort();
    println!("listing: {names:?}");
    show("rename file", fs::rename("data/d/a.txt", "data/d/e/moved.txt"));
    show("read moved", fs::read_to_string("data/d/e/moved.txt"));
    show("rename over existing", fs::rename("data/d/b.txt", "data/d/c.txt"));
    show("read replaced", fs::read_to_string("data/d/c.txt"));
    show("rename dir", fs::rename("data/d/e", "data/d/g"));
    show("rename missing", fs::rename("data/d/nope", "data/d/x"));
    show("remove non-empty dir", fs::remove_dir("data/d"));
    show("remove file as dir", fs::remove_dir("data/d/c.txt"));
    show("remove dir as file", fs::remove_file("data/d/g"));
    show("remove tree", fs::remove_dir_all("data/d/g"));
    show("exists after", fs::metadata("data/d/g").map(|_| ()));
    show("kept", fs::read_to_string("data/d/c.txt"));
    show("remove an input", fs::remove_file("data/sub/inner.txt"));
    show("remove its dir", fs::remove_dir("data/sub"));
}

fn paths() {
    fs::write("data/p.txt", "p").unwrap();
    show("plain", fs::read_to_string("data/p.txt"));
    show("dot segments", fs::read_to_string("data/./sub/../p.txt"));
    show("missing parent dot-dot", fs::read_to_string("data/nosuch/../p.txt"));
    show("leave the preopen", fs::read_to_string("data/../outside.txt"));
    show("write outside", fs::write("data/../../outside.txt", "x"));
    show("absolute unknown", fs::read_to_string("/etc/passwd"));
    show("empty", fs::read_to_string(""));
    show("trailing slash on file", fs::read_to_string("data/p.txt/"));
    show("nul byte", fs::read_to_string("data/p\0.txt"));
    show("long name", fs::write(format!("data/{}", "n".repeat(300)), "x"));
}

/// `path_symlink(target, data/<name>)`.
fn symlink_path(target: &str, link: &str) -> io::Result<()> {
    let data = File::open("data")?;
    let name = link.strip_prefix("data/").unwrap_or(link);
    let code = unsafe {
        raw::path_symlink(target.as_ptr(), target.len(), data.as_raw_fd() as u32, name.as_ptr(), name.len())
    };
    match code {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(i32::from(code))),
    }
}

fn symlinks() {
    fs::write("data/target.txt", "through the link").unwrap();
    show("symlink", symlink_path("target.txt", "data/link"));
    show("symlink existing", symlink_path("target.txt", "data/link"));
    show("readlink", fs::read_link("data/link"));
    show("read through", fs::read_to_string("data/link"));
    show("stat through", fs::metadata("data/link").map(|m| (m.is_file(), m.len())));
    show("lstat", fs::symlink_metadata("data/link").map(|m| m.file_type().is_symlink()));
    show("dangling", symlink_path("nowhere", "data/dangling"));
    show("read dangling", fs::read_to_string("data/dangling"));
    show("escaping link", symlink_path("../../etc/passwd", "data/escape"));
    show("read escaping", fs::read_to_string("data/escape"));
    show("absolute link", symlink_path("/etc/passwd", "data/abs"));
    show("read absolute", fs::read_to_string("data/abs"));
    fs::create_dir("data/linked").unwrap();
    show("dir link", symlink_path("linked", "data/dirlink"));
    show("write via dir link", fs::write("data/dirlink/f.txt", "via"));
    show("read direct", fs::read_to_string("data/linked/f.txt"));
    show("hard link", fs::hard_link("data/target.txt", "data/hard.txt"));
    show("read hard", fs::read_to_string("data/hard.txt"));
    show("remove link", fs::remove_file("data/link"));
    show("target kept", fs::read_to_string("data/target.txt"));
}

fn readdir() {
    fs::create_dir("data/many").unwrap();
    for i in 0..40 {
        fs::write(format!("data/many/entry-{i:02}"), "").unwrap();
    }
    let dir = File::open("data/many").unwrap();
    let fd = dir.as_raw_fd() as u32;
    let mut names = Vec::new();
    let mut cookie = 0u64;
    let mut calls = 0;
    // 128 bytes hold at most four entries: the listing takes many calls, each resumed at the
    // cookie of the last whole entry.
    let mut buf = [0u8; 128];
    loop {
        let mut used = 0usize;
        let code = unsafe { raw::fd_readdir(fd, buf.as_mut_ptr(), buf.len(), cookie, &mut used) };
        calls += 1;
        if code != 0 {
            println!("fd_readdir: errno {code}");
            return;
        }
        let mut at = 0;
        let mut whole = 0;
        while at + 24 <= used {
            let next = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
            let len = u32::from_le_bytes(buf[at + 16..at + 20].try_into().unwrap()) as usize;
            let kind = buf[at + 20];
            if at + 24 + len > used {
                break;
            }
            names.push((String::from_utf8_lossy(&buf[at + 24..at + 24 + len]).into_owned(), kind));
            cookie = next;
            whole += 1;
            at += 24 + len;
        }
        if used < buf.len() {
            break;
        }
        if whole == 0 {
            println!("an entry does not fit in {} bytes", buf.len());
            return;
        }
    }
    names.sort();
    println!("entries: {}", names.len());
    println!("dot entries: {:?}", names.iter().filter(|(n, _)| n.starts_with('.')).collect::<Vec<_>>());
    let files: Vec<_> = names.iter().filter(|(n, _)| !n.starts_with('.')).collect();
    println!("files: {} first {:?} last {:?}", files.len(), files.first(), files.last());
    println!("took several calls: {}", calls > 2);
    let mut at_end = 0usize;
    let code = unsafe { raw::fd_readdir(fd, buf.as_mut_ptr(), buf.len(), u64::MAX, &mut at_end) };
    println!("past the end: errno {code} used {at_end}");
}

fn times() {
    let file = File::create("data/t.txt").unwrap();
    let (atim, mtim) = (1_600_000_000_000_000_000u64, 1_700_000_000_123_456_789u64);
    // ATIM | MTIM: set both to the given values.
    let code = unsafe { raw::fd_filestat_set_times(file.as_raw_fd() as u32, atim, mtim, 1 | 4) };
    errno("set times", code);
    let meta = file.metadata().unwrap();
    let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    println!("accessed {}", nanos(meta.accessed().unwrap()));
    println!("modified {}", nanos(meta.modified().unwrap()));
    // ATIM and ATIM_NOW together are invalid.
    let code = unsafe { raw::fd_filestat_set_times(file.as_raw_fd() as u32, 0, 0, 1 | 2) };
    errno("conflicting flags", code);
    show("set_modified", file.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000)));
    println!("modified {}", nanos(fs::metadata("data/t.txt").unwrap().modified().unwrap()));
    let now = SystemTime::now();
    println!("now after 2020: {}", now > UNIX_EPOCH + Duration::from_secs(1_577_836_800));
}

fn clocks() {
    for (name, id) in [("realtime", 0), ("monotonic", 1), ("process", 2), ("thread", 3)] {
        let mut res = 0u64;
        let code = unsafe { raw::clock_res_get(id, &mut res) };
        let mut time = 0u64;
        let code2 = unsafe { raw::clock_time_get(id, 1, &mut time) };
        println!("{name}: res errno {code} nonzero {} | time errno {code2} nonzero {}", res > 0, time > 0);
    }
    let mut last = Instant::now();
    let mut ordered = true;
    for _ in 0..1000 {
        let now = Instant::now();
        ordered &= now >= last;
        last = now;
    }
    println!("monotonic never goes back: {ordered}");
    // Last: wasmtime fails an unknown clock id as a host error, which ends the program.
    let mut time = 0u64;
    let code = unsafe { raw::clock_time_get(9, 1, &mut time) };
    println!("unknown clock: errno {code}");
}

fn random() {
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    let code = unsafe { raw::random_get(a.as_mut_ptr(), a.len()) };
    let code2 = unsafe { raw::random_get(b.as_mut_ptr(), b.len()) };
    println!("errno {code} {code2}; differ {}; nonzero {}", a != b, a.iter().any(|&x| x != 0));
    let code = unsafe { raw::random_get(a.as_mut_ptr(), 0) };
    println!("empty: errno {code}");
    let set: std::collections::HashSet<u32> = (0..100).collect();
    println!("hash set: {}", set.len());
}

fn poll() {
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    println!("slept at least 20ms: {}", start.elapsed() >= Duration::from_millis(20));
    // Two relative clock subscriptions, 1 ms (userdata 7) and 10 s (userdata 8): only the
    // first fires.
    let mut subs = [0u8; 96];
    for (i, (userdata, timeout)) in [(7u64, 1_000_000u64), (8, 10_000_000_000)].iter().enumerate() {
        let s = &mut subs[i * 48..];
        s[0..8].copy_from_slice(&userdata.to_le_bytes());
        s[8] = 0; // EVENTTYPE_CLOCK
        s[16..20].copy_from_slice(&1u32.to_le_bytes()); // monotonic
        s[24..32].copy_from_slice(&timeout.to_le_bytes());
        s[32..40].copy_from_slice(&0u64.to_le_bytes()); // precision
        s[40..42].copy_from_slice(&0u16.to_le_bytes()); // relative
    }
    let mut events = [0u8; 64];
    let mut n = 0usize;
    let code = unsafe { raw::poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), 2, &mut n) };
    let userdata = u64::from_le_bytes(events[0..8].try_into().unwrap());
    let error = u16::from_le_bytes(events[8..10].try_into().unwrap());
    println!("poll: errno {code} events {n} first userdata {userdata} error {error} type {}", events[10]);
    let code = unsafe { raw::poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), 0, &mut n) };
    println!("poll nothing: errno {code}");
}

fn fdstat() {
    let data = File::open("data").unwrap();
    for (name, fd) in [("stdin", 0), ("stdout", 1), ("stderr", 2), ("data", data.as_raw_fd() as u32), ("closed", 99)] {
        let mut stat = [0u8; 24];
        let code = unsafe { raw::fd_fdstat_get(fd, stat.as_mut_ptr()) };
        let flags = u16::from_le_bytes(stat[2..4].try_into().unwrap());
        println!("{name}: errno {code} filetype {} flags {flags}", stat[0]);
    }
    fs::write("data/s.txt", "12345").unwrap();
    let file = File::open("data/s.txt").unwrap();
    let meta = file.metadata().unwrap();
    println!("file stat: file {} len {}", meta.is_file(), meta.len());
}

fn stdin() {
    let mut input = Vec::new();
    show("read stdin", io::stdin().read_to_end(&mut input));
    println!("stdin: {:?}", String::from_utf8_lossy(&input));
    show("read again at the end", io::stdin().read(&mut [0u8; 8]));
}

fn sockets() {
    let mut fd = 0u32;
    errno("sock_accept stdout", unsafe { raw::sock_accept(1, 0, &mut fd) });
    errno("sock_accept closed", unsafe { raw::sock_accept(99, 0, &mut fd) });
    let (mut n, mut flags) = (0usize, 0u16);
    let buf = [0u8; 8];
    let iov = [buf.as_ptr() as usize, buf.len()];
    errno("sock_recv stdin", unsafe { raw::sock_recv(0, iov.as_ptr().cast(), 1, 0, &mut n, &mut flags) });
    errno("sock_send stdout", unsafe { raw::sock_send(1, iov.as_ptr().cast(), 1, 0, &mut n) });
    errno("sock_shutdown stdout", unsafe { raw::sock_shutdown(1, 3) });
}

fn misc() {
    errno("sched_yield", unsafe { raw::sched_yield() });
    let file = File::create("data/m.txt").unwrap();
    let fd = file.as_raw_fd() as u32;
    errno("fd_advise", unsafe { raw::fd_advise(fd, 0, 100, 0) });
    errno("fd_allocate", unsafe { raw::fd_allocate(fd, 0, 4096) });
    // FDFLAGS_APPEND on a file opened for writing.
    errno("fd_fdstat_set_flags", unsafe { raw::fd_fdstat_set_flags(fd, 1) });
    let other = File::create("data/n.txt").unwrap();
    let other_fd = other.as_raw_fd() as u32;
    errno("fd_renumber", unsafe { raw::fd_renumber(fd, other_fd) });
    errno("fd_renumber closed", unsafe { raw::fd_renumber(99, other_fd) });
    // `other`'s descriptor now is the former `file`; forget both so neither closes twice.
    std::mem::forget(file);
    std::mem::forget(other);
    // Last: wasmtime fails an unknown advice as a host error, which ends the program.
    errno("fd_advise unknown", unsafe { raw::fd_advise(1, 0, 100, 9) });
}

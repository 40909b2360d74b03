//! `limits <command> [args...]`: a fixture that misbehaves on request, so tests can check that
//! the executor contains it (memory and time limits, stdout caps, traps, the filesystem
//! sandbox, memory reuse between instances). See the README next to `programs/` for the full
//! command list. Usage errors exit with code 2.
//!
//! Only meaningful as a wasm guest: `escape` in particular would write next to the current
//! directory if run natively, so non-wasm builds are refused.

#[cfg(not(target_family = "wasm"))]
compile_error!("`limits` is a wasm guest fixture; build it with --target wasm32-wasip1");

use std::fs;
use std::hint::black_box;
use std::io::{self, Write};
use std::process::ExitCode;

const MIB: usize = 1 << 20;
const WASM_PAGE: u64 = 64 * 1024;

/// The secret that `secret-write` leaves in memory and `secret-scan` looks for, xor-encoded at
/// compile time: the plain bytes must not appear in this binary's data segment, or the scanner
/// would find its own copy. The decoded form only ever exists in `secret-write`'s memory.
const SECRET_KEY: u8 = 0x5a;
const SECRET_ENCODED: [u8; 16] = xor(*b"CORRAL-SECRET-42", SECRET_KEY);

const fn xor(mut bytes: [u8; 16], key: u8) -> [u8; 16] {
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] ^= key;
        i += 1;
    }
    bytes
}

const USAGE: &str = "usage: limits <command> [args...]
commands:
  alloc <MiB>                 allocate and touch <MiB>; traps if the allocation fails
  try-alloc <MiB>             like alloc, but prints `allocation failed` instead of trapping
  spin                        loop forever
  sleep <ms>                  sleep, then print `slept <ms>`
  tick <n> <ms>               print `tick <i>` n times, sleeping <ms> after each
  exit <code>                 exit with <code>
  flaky <indices> <times>     as a job instance: exit 1 while CORRAL_TASK_INDEX is one of the
                              comma-separated <indices> and CORRAL_TASK_ATTEMPT <= <times>
  panic                       panic (a trap in wasm)
  trap                        execute `unreachable`
  recurse                     recurse with 1 KiB frames until the shadow stack in linear memory overflows
  recurse-wasm                recurse with frames only on the wasm stack until it overflows
  flood-stdout <MiB>          write <MiB> of 64-byte lines to stdout, then `flooded`
  write-file <MiB> [path]     write <MiB> to path (default big.bin)
  escape [host-path...]       try to leave the filesystem sandbox, one line per attempt
  secret-write                fill 256 KiB of stack and 32 MiB of heap with a recognisable pattern
  secret-scan                 grow memory, scan all of it for that pattern
  env                         print environment variables and arguments
  read <path>                 print a file
  ls <path>                   list a directory, sorted";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let command = args.get(1).map_or("", String::as_str);
    let rest = args.get(2..).unwrap_or_default();
    let result = match command {
        "alloc" => alloc(rest),
        "try-alloc" => try_alloc(rest),
        "spin" => spin(),
        "sleep" => sleep(rest),
        "tick" => tick(rest),
        "exit" => exit(rest),
        "flaky" => flaky(rest),
        "panic" => panic!("guest panicked on purpose"),
        "trap" => core::arch::wasm32::unreachable(),
        "recurse" => {
            let depth = recurse(0);
            println!("recursion returned at depth {depth}");
            Ok(ExitCode::SUCCESS)
        }
        "recurse-wasm" => {
            let depth = recurse_wasm(0);
            println!("recursion returned at depth {depth}");
            Ok(ExitCode::SUCCESS)
        }
        "flood-stdout" => flood_stdout(rest),
        "write-file" => write_file(rest),
        "escape" => Ok(escape(rest)),
        "secret-write" => Ok(secret_write()),
        "secret-scan" => Ok(secret_scan()),
        "env" => Ok(env(&args)),
        "read" => read(rest),
        "ls" => Ok(ls(rest)),
        other => Err(format!("unknown command {other:?}")),
    };
    result.unwrap_or_else(|message| {
        eprintln!("limits: {message}\n{USAGE}");
        ExitCode::from(2)
    })
}

/// A usage error: reported with the usage text and exit code 2.
type Usage = String;

fn parse_arg<T>(rest: &[String], index: usize, name: &str) -> Result<T, Usage>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw = rest.get(index).ok_or_else(|| format!("missing <{name}>"))?;
    raw.parse()
        .map_err(|err| format!("invalid <{name}> {raw:?}: {err}"))
}

fn alloc(rest: &[String]) -> Result<ExitCode, Usage> {
    let mib: usize = parse_arg(rest, 0, "MiB")?;
    // An overflowing size cannot be allocated either; fail the same way, with a trap.
    let bytes = mib
        .checked_mul(MIB)
        .unwrap_or_else(|| panic!("{mib} MiB does not fit the address space"));
    let buffer = vec![1u8; bytes];
    black_box(&buffer);
    println!("allocated {mib} MiB");
    Ok(ExitCode::SUCCESS)
}

fn try_alloc(rest: &[String]) -> Result<ExitCode, Usage> {
    let mib: usize = parse_arg(rest, 0, "MiB")?;
    let mut buffer: Vec<u8> = Vec::new();
    let reserved = match mib.checked_mul(MIB) {
        Some(bytes) => buffer.try_reserve_exact(bytes).is_ok().then_some(bytes),
        None => None,
    };
    match reserved {
        Some(bytes) => {
            buffer.resize(bytes, 1);
            black_box(&buffer);
            println!("allocated {mib} MiB");
        }
        None => println!("allocation failed"),
    }
    Ok(ExitCode::SUCCESS)
}

fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = counter.wrapping_add(1);
        black_box(counter);
    }
}

fn sleep(rest: &[String]) -> Result<ExitCode, Usage> {
    let ms: u64 = parse_arg(rest, 0, "ms")?;
    std::thread::sleep(std::time::Duration::from_millis(ms));
    println!("slept {ms}");
    Ok(ExitCode::SUCCESS)
}

fn tick(rest: &[String]) -> Result<ExitCode, Usage> {
    let n: u64 = parse_arg(rest, 0, "n")?;
    let ms: u64 = parse_arg(rest, 1, "ms")?;
    for i in 0..n {
        println!("tick {i}");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    Ok(ExitCode::SUCCESS)
}

fn exit(rest: &[String]) -> Result<ExitCode, Usage> {
    let code: i32 = parse_arg(rest, 0, "code")?;
    std::process::exit(code)
}

/// Fails chosen job instances a chosen number of times: injected failures for the jobs
/// framework's retries.
fn flaky(rest: &[String]) -> Result<ExitCode, Usage> {
    let indices: String = parse_arg(rest, 0, "indices")?;
    let times: u32 = parse_arg(rest, 1, "times")?;
    let index = std::env::var("CORRAL_TASK_INDEX").unwrap_or_default();
    let attempt: u32 = std::env::var("CORRAL_TASK_ATTEMPT")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    if indices.split(',').any(|i| i == index) && attempt <= times {
        println!("instance {index} fails attempt {attempt}");
        return Ok(ExitCode::FAILURE);
    }
    println!("instance {index} succeeds on attempt {attempt}");
    Ok(ExitCode::SUCCESS)
}

/// Called through a volatile read so the recursion below cannot become a loop.
static RECURSE_WASM: fn(u32) -> u32 = recurse_wasm;

/// Recursion whose frames hold only wasm locals, no linear memory: it exhausts the engine's
/// own stack (`max_wasm_stack`) rather than the shadow stack.
fn recurse_wasm(depth: u32) -> u32 {
    // SAFETY: reading an initialised static of a `Copy` type.
    let next = unsafe { core::ptr::read_volatile(&raw const RECURSE_WASM) };
    next(depth.wrapping_add(1)) ^ depth
}

/// Recurses with a 1 KiB frame in linear memory until the stack overflows. The opaque
/// condition and the use of the result after the call keep it from becoming a loop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let mut frame = [0u8; 1024];
    frame[0] = depth.to_le_bytes()[0];
    let frame = black_box(frame);
    let below = recurse(depth + 1);
    black_box(below.wrapping_add(u64::from(frame[0])))
}

fn flood_stdout(rest: &[String]) -> Result<ExitCode, Usage> {
    let mib: usize = parse_arg(rest, 0, "MiB")?;
    let mut line = [b'x'; 64];
    line[63] = b'\n';
    let chunk: Vec<u8> = line.iter().copied().cycle().take(64 * 1024).collect();
    let mut stdout = io::stdout().lock();
    let written = (0..mib * 16).try_for_each(|_| stdout.write_all(&chunk));
    let result = written
        .and_then(|()| writeln!(stdout, "flooded"))
        .and_then(|()| stdout.flush());
    if let Err(err) = result {
        eprintln!("flood failed: {err}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn write_file(rest: &[String]) -> Result<ExitCode, Usage> {
    let mib: usize = parse_arg(rest, 0, "MiB")?;
    let path = rest.get(1).map_or("big.bin", String::as_str);
    let chunk = vec![b'w'; MIB];
    let result = fs::File::create(path).and_then(|mut file| {
        (0..mib).try_for_each(|_| file.write_all(&chunk))?;
        file.flush()
    });
    if let Err(err) = result {
        eprintln!("write failed: {err}");
        return Ok(ExitCode::from(1));
    }
    println!("wrote {mib} MiB");
    Ok(ExitCode::SUCCESS)
}

/// The file tests place next to the sandbox directory; seeing it means we got out.
const CANARY: &str = "canary.txt";

/// Tries every way out of the sandbox we know of. Each attempt prints `ESCAPED <attempt>` if
/// it reached something outside, or `DENIED <attempt>: <why>`. Never panics.
fn escape(host_paths: &[String]) -> ExitCode {
    // Leftovers from an earlier run in the same sandbox would make the attempts below fail
    // for the wrong reason.
    for stale in [
        "link-out",
        "link-up",
        "link-up2",
        "link-host",
        "hard-canary",
        "stolen-canary",
    ] {
        let _ = fs::remove_file(stale);
    }

    attempt("read /etc/passwd", || read_any("/etc/passwd"));
    attempt("read ../../../../etc/passwd", || {
        read_any("../../../../etc/passwd")
    });
    attempt("read ../canary.txt", || read_any("../canary.txt"));
    attempt("read /../canary.txt", || read_any("/../canary.txt"));
    attempt("list ..", || list_shows_canary(".."));
    attempt("list /..", || list_shows_canary("/.."));

    attempt("read link-out/passwd (link-out -> /etc)", || {
        symlink("/etc", "link-out")?;
        read_any("link-out/passwd")
    });
    attempt("read link-up/canary.txt (link-up -> ..)", || {
        symlink("..", "link-up")?;
        read_any("link-up/canary.txt")
    });
    attempt("list link-up (link-up -> ..)", || {
        list_shows_canary("link-up")
    });
    attempt("find canary under link-up2 (link-up2 -> ../..)", || {
        symlink("../..", "link-up2")?;
        let entries = list("link-up2")?;
        let found = entries
            .iter()
            .any(|entry| fs::metadata(format!("link-up2/{entry}/{CANARY}")).is_ok());
        if found {
            Ok(())
        } else {
            Err(format!(
                "listed {} entries, none holds {CANARY}",
                entries.len()
            ))
        }
    });

    // Trailing slashes and dots, which path resolvers have mishandled.
    attempt("list ../ (trailing slash)", || list_shows_canary("../"));
    attempt("list link-up/ (trailing slash)", || list_shows_canary("link-up/"));
    attempt("list link-up/. (trailing dot)", || list_shows_canary("link-up/."));
    attempt("read ../canary.txt/ (trailing slash)", || {
        read_any("../canary.txt/")
    });
    // Very long paths: many harmless steps before the escaping one, and one huge name.
    let long_way = format!("{}../{CANARY}", "./".repeat(20_000));
    attempt("read ./ x 20000 then ../canary.txt", || read_any(&long_way));
    let wander = format!("{}../{CANARY}", "link-up/../".repeat(5_000));
    attempt("read link-up/../ x 5000 then ../canary.txt", || read_any(&wander));
    let huge_name = "n".repeat(65_536);
    attempt("create a 64 KiB name", || overwrite(&huge_name));

    attempt("write ../canary.txt", || overwrite("../canary.txt"));
    attempt("write /../canary.txt", || overwrite("/../canary.txt"));
    attempt("hard-link ../canary.txt", || {
        fs::hard_link("../canary.txt", "hard-canary").map_err(|err| err.to_string())
    });
    attempt("rename ../canary.txt", || {
        fs::rename("../canary.txt", "stolen-canary").map_err(|err| err.to_string())
    });

    for path in host_paths {
        attempt(&format!("read {path}"), || read_any(path));
        attempt(&format!("write {path}"), || overwrite(path));
        attempt(&format!("read link-host (link-host -> {path})"), || {
            let _ = fs::remove_file("link-host");
            symlink(path, "link-host")?;
            read_any("link-host")
        });
    }

    println!("escape attempts done");
    ExitCode::SUCCESS
}

/// Runs one escape attempt: `Ok` means it got out.
fn attempt(name: &str, try_it: impl FnOnce() -> Result<(), String>) {
    match try_it() {
        Ok(()) => println!("ESCAPED {name}"),
        Err(why) => println!("DENIED {name}: {why}"),
    }
}

fn read_any(path: &str) -> Result<(), String> {
    fs::read(path).map(drop).map_err(|err| err.to_string())
}

fn overwrite(path: &str) -> Result<(), String> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .and_then(|mut file| file.write_all(b"overwritten by an escaped guest\n"))
        .map_err(|err| err.to_string())
}

fn list(path: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path).map_err(|err| err.to_string())? {
        let entry = entry.map_err(|err| err.to_string())?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A listing only proves an escape if it shows the canary: a runtime that resolves `..` at
/// the root to the root itself would list the sandbox, which is harmless.
fn list_shows_canary(path: &str) -> Result<(), String> {
    let entries = list(path)?;
    if entries.iter().any(|entry| entry == CANARY) {
        Ok(())
    } else {
        Err(format!("listed {} entries, no {CANARY}", entries.len()))
    }
}

fn symlink(target: &str, link: &str) -> Result<(), String> {
    // `std::fs::soft_link` is deprecated in favour of platform functions, but the WASI one
    // (`std::os::wasi::fs::symlink_path`) is still unstable.
    #[allow(deprecated)]
    fs::soft_link(target, link).map_err(|err| format!("cannot create {link} -> {target}: {err}"))
}

fn secret_write() -> ExitCode {
    let key = black_box(SECRET_KEY);
    let secret = SECRET_ENCODED.map(|byte| byte ^ key);
    let fill = |bytes: &mut [u8]| {
        for chunk in bytes.chunks_exact_mut(secret.len()) {
            chunk.copy_from_slice(&secret);
        }
    };
    // Both kinds of page a recycled slot has: low memory (here the stack, below 1 MiB), which
    // may be kept resident and reset in place, and pages grown at run time, which go back to
    // the kernel.
    let mut on_stack = [0u8; 256 * 1024];
    fill(&mut on_stack);
    let mut buffer = vec![0u8; 32 * MIB];
    fill(&mut buffer);
    black_box((&on_stack, &buffer));
    println!("secret written");
    black_box((&on_stack, &buffer));
    ExitCode::SUCCESS
}

/// Grows memory by 512 fresh pages, then reads every byte of linear memory looking for the
/// secret. The needle is never decoded: memory bytes are xor-ed with the key and compared with
/// the encoded form, so the plain secret exists nowhere in this instance unless it leaked in.
fn secret_scan() -> ExitCode {
    use core::arch::wasm32::{memory_grow, memory_size};

    if memory_grow(0, 512) == usize::MAX {
        eprintln!("secret-scan: memory.grow by 512 pages failed");
        return ExitCode::from(2);
    }
    let end = memory_size(0) as u64 * WASM_PAGE;
    let key = black_box(SECRET_KEY);
    let needle_len = SECRET_ENCODED.len() as u64;
    let byte_at = |addr: u64| {
        // SAFETY: `addr` is below `memory_size * 64 KiB`, so the load is in bounds of linear
        // memory; volatile reads may target memory outside any Rust allocation, address 0
        // included, and every byte of linear memory is initialised.
        unsafe { std::ptr::read_volatile(std::ptr::without_provenance::<u8>(addr as usize)) }
    };

    let mut addr = 0u64;
    while addr + needle_len <= end {
        let found = (0..needle_len).all(|i| byte_at(addr + i) ^ key == SECRET_ENCODED[i as usize]);
        if found {
            println!("FOUND SECRET at {addr:#x}");
            return ExitCode::from(1);
        }
        addr += 1;
    }
    println!("clean");
    ExitCode::SUCCESS
}

fn env(args: &[String]) -> ExitCode {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(key, value)| {
            (
                key.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect();
    vars.sort();
    for (key, value) in vars {
        println!("{key}={value}");
    }
    println!("args: {args:?}");
    ExitCode::SUCCESS
}

fn read(rest: &[String]) -> Result<ExitCode, Usage> {
    let path = rest.first().ok_or("missing <path>")?;
    let result = fs::read(path).and_then(|content| {
        let mut stdout = io::stdout().lock();
        stdout.write_all(&content)?;
        stdout.flush()
    });
    if let Err(err) = result {
        eprintln!("read {path}: {err}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn ls(rest: &[String]) -> ExitCode {
    let path = rest.first().map_or(".", String::as_str);
    match list(path) {
        Ok(names) => {
            for name in names {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ls {path}: {err}");
            ExitCode::from(1)
        }
    }
}

//! Builds the guest programs in `programs/` for wasm32-wasip1, and a few of them for
//! wasm32-wasip2 (WASI 0.2 components), and generates `$OUT_DIR/programs.rs` with one path
//! constant per program, the programs' bytes (`embedded::*`), `ALL`, `foreach_program!`, and
//! the components' paths (`components::*`).
//!
//! The nested cargo runs with a clean slate: every variable through which the outer (host)
//! build configures cargo or rustc is removed, so host flags, wrappers, target dirs and
//! jobserver settings cannot leak into the guest build. This is what wasmtime's
//! `crates/test-programs/artifacts/build.rs` does with `CARGO_ENCODED_RUSTFLAGS` and (under
//! miri) `RUSTC_WRAPPER`, extended to the other variables cargo sets for build scripts.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";
/// The target whose binaries are `wasi:cli/command` components.
const COMPONENT_TARGET: &str = "wasm32-wasip2";
/// The programs also built as components: enough to hold components to every limit.
const COMPONENT_PROGRAMS: &[&str] = &["hello", "limits", "primes"];

/// Variables removed from the nested cargo's environment by exact name.
const REMOVED_VARS: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_BIN_NAME",
    // Set by cargo for the host target's linker; meaningless (and wrong) for wasm.
    "RUSTC_LINKER",
    // Build-script inputs describing the host build; a nested build script would get its
    // own, but none of them should be visible to the nested cargo.
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
];

/// Variables removed from the nested cargo's environment by prefix.
const REMOVED_PREFIXES: &[&str] = &[
    "CARGO_FEATURE_",
    "CARGO_CFG_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "DEP_",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let programs_dir = manifest_dir.join("programs");
    let programs_manifest = programs_dir.join("Cargo.toml");
    let bin_dir = programs_dir.join("src").join("bin");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", programs_manifest.display());
    println!(
        "cargo:rerun-if-changed={}",
        programs_dir.join("Cargo.lock").display()
    );
    // The directory itself, so that adding a program reruns this script.
    println!(
        "cargo:rerun-if-changed={}",
        programs_dir.join("src").display()
    );
    for file in source_files(&programs_dir.join("src")) {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let names = program_names(&bin_dir);
    assert!(
        !names.is_empty(),
        "no programs found in {}",
        bin_dir.display()
    );

    let target_dir = out_dir.join("programs-target");
    ensure_target_installed(&manifest_dir, TARGET);
    build_programs(&programs_manifest, &target_dir, TARGET, &[]);
    ensure_target_installed(&manifest_dir, COMPONENT_TARGET);
    build_programs(
        &programs_manifest,
        &target_dir,
        COMPONENT_TARGET,
        COMPONENT_PROGRAMS,
    );

    let release_dir = target_dir.join(TARGET).join("release");
    let mut generated = generate(&names, &release_dir);
    generated.push_str(&generate_components(
        &target_dir.join(COMPONENT_TARGET).join("release"),
    ));
    let generated_path = out_dir.join("programs.rs");
    fs::write(&generated_path, generated)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", generated_path.display()));
}

/// Every file under `dir`, recursively, sorted.
fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries =
        fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
            .path();
        if path.is_dir() {
            files.extend(source_files(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Program names: the stems of `src/bin/*.rs`, which cargo turns into binaries of the same
/// name. Sorted, so the generated code is stable.
fn program_names(bin_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = source_files(bin_dir)
        .into_iter()
        .filter(|path| path.parent() == Some(bin_dir))
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            let stem = path.file_stem().and_then(|stem| stem.to_str());
            let stem = stem.unwrap_or_else(|| panic!("non-UTF-8 program name {}", path.display()));
            assert!(
                !stem.is_empty()
                    && !stem.starts_with(|c: char| c.is_ascii_digit())
                    && stem.chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == '_'
                        || c == '-'),
                "program name {stem:?} must be lowercase ASCII letters, digits, `_` or `-` \
                 (it becomes a constant and a macro argument)"
            );
            stem.to_owned()
        })
        .collect();
    names.sort();
    names
}

fn rustc() -> Command {
    Command::new(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
}

/// The sysroot's library folder for a guest target, which exists once the target is installed.
fn target_lib_dir(target: &str) -> PathBuf {
    let output = rustc()
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|err| panic!("cannot run rustc to find its sysroot: {err}"));
    assert!(
        output.status.success(),
        "`rustc --print sysroot` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Path::new(&sysroot).join("lib").join("rustlib").join(target)
}

/// Makes sure a guest target is installed, installing it through rustup when it is not.
///
/// `rust-toolchain.toml` lists the target, but rustup installs listed targets only when it
/// auto-installs (`RUSTUP_AUTO_INSTALL` unset or 1); where that is off, a fresh clone would
/// otherwise stop here. `rustup target add` for the toolchain this build runs with is what a
/// user would be told to type, so the build types it for them.
fn ensure_target_installed(manifest_dir: &Path, target: &str) {
    let target_lib = target_lib_dir(target);
    if target_lib.is_dir() {
        return;
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", target])
        .current_dir(manifest_dir);
    // Set by rustup's proxies to the toolchain running this build; without it rustup picks
    // the toolchain from rust-toolchain.toml, found from the working directory.
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.arg("--toolchain").arg(toolchain);
    }
    let hint = format!(
        "the {target} target is not installed (looked for {}) and the guest programs need it",
        target_lib.display()
    );
    match cmd.output() {
        Ok(output) if output.status.success() && target_lib_dir(target).is_dir() => {
            println!(
                "cargo:warning=installed the {target} target with `rustup target add {target}`"
            );
        }
        Ok(output) => panic!(
            "{hint}; `rustup target add {target}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(err) => panic!(
            "{hint}; rustup could not be run to install it ({err}): install the target for \
             this toolchain by other means (a Rust distribution's rust-std for {target})"
        ),
    }
}

/// Builds `bins` (all programs when empty) for `target`.
fn build_programs(manifest: &Path, target_dir: &Path, target: &str, bins: &[&str]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(target)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // cargo config is discovered from the working directory; use the programs' own.
        .current_dir(manifest.parent().expect("the manifest is in a directory"));
    for bin in bins {
        cmd.args(["--bin", bin]);
    }
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if REMOVED_VARS.contains(&key) || REMOVED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    // Like wasmtime: if the host build denies warnings (as CI does), so does the guest build.
    if host_denies_warnings() {
        cmd.env("RUSTFLAGS", "-Dwarnings");
    }

    // The command without its (long) environment changes, for messages.
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = cmd
        .output()
        .unwrap_or_else(|err| panic!("cannot run `{shown}` to build the guest programs: {err}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "building the guest programs failed ({}): `{shown}`\n{stderr}",
        output.status,
    );
    // A successful nested build's output is otherwise invisible; surface its warnings.
    for line in stderr.lines().filter(|line| line.starts_with("warning")) {
        println!("cargo:warning=guest programs: {line}");
    }
}

fn host_denies_warnings() -> bool {
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    flags.contains(&"-Dwarnings") || flags.windows(2).any(|pair| pair == ["-D", "warnings"])
}

fn generate(names: &[String], release_dir: &Path) -> String {
    let mut code = String::from("// Generated by corral-wasm-tasks' build.rs; do not edit.\n\n");
    for name in names {
        let wasm = release_dir.join(format!("{name}.wasm"));
        assert!(
            wasm.is_file(),
            "the guest build succeeded but {} is missing",
            wasm.display()
        );
        let wasm = wasm
            .to_str()
            .unwrap_or_else(|| panic!("non-UTF-8 output path {}", wasm.display()));
        let _ = writeln!(
            code,
            "/// Absolute path of the `{name}` guest program (`programs/src/bin/{name}.rs`).\n\
             pub const {}: &str = {wasm:?};",
            const_name(name)
        );
    }

    code.push_str(
        "\n/// The programs' bytes, compiled into whatever uses them: a binary that ships an \
         example\n/// carries it and needs no file of the machine that built it.\n\
         pub mod embedded {\n",
    );
    for name in names {
        let wasm = release_dir.join(format!("{name}.wasm"));
        let _ = writeln!(
            code,
            "    /// The `{name}` guest program's bytes.\n    \
             pub const {}: &[u8] = include_bytes!({:?});",
            const_name(name),
            wasm.to_str().unwrap_or_default()
        );
    }
    code.push_str("}\n");

    code.push_str("\n/// Every guest program as `(name, path)`, sorted by name.\n");
    code.push_str("pub const ALL: &[(&str, &str)] = &[\n");
    for name in names {
        let _ = writeln!(code, "    ({name:?}, {}),", const_name(name));
    }
    code.push_str("];\n\n");

    code.push_str(
        "/// Invokes `$mac!(name)` once per guest program, with the program name as an\n\
         /// identifier (`-` becomes `_`). See the crate docs for the `assert_test_exists` use.\n\
         #[macro_export]\n\
         macro_rules! foreach_program {\n    ($mac:ident) => {\n",
    );
    for name in names {
        let _ = writeln!(code, "        $mac!({});", name.replace('-', "_"));
    }
    code.push_str("    };\n}\n");
    code
}

fn generate_components(release_dir: &Path) -> String {
    let mut code = String::from(
        "\n/// Some of the programs built for wasm32-wasip2: `wasi:cli/command` components.\n\
         pub mod components {\n",
    );
    for name in COMPONENT_PROGRAMS {
        let wasm = release_dir.join(format!("{name}.wasm"));
        assert!(
            wasm.is_file(),
            "the component build succeeded but {} is missing",
            wasm.display()
        );
        let _ = writeln!(
            code,
            "    /// Absolute path of the `{name}` program built as a component.\n    \
             pub const {}: &str = {:?};",
            const_name(name),
            wasm.to_str().unwrap_or_default()
        );
    }
    code.push_str("}\n");
    code
}

fn const_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

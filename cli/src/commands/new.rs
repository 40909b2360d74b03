//! `corral new task NAME`: scaffolds a task crate that builds and tests out of the box —
//! `Cargo.toml` (the task SDK, the test harness), `.cargo/config.toml` (`cargo wasm` builds
//! the module for wasm32-wasip1), `src/main.rs` using the SDK and `tests/task.rs` running
//! the module under Corral's executor with the harness.
//!
//! The SDK crates are not on crates.io yet, so the crate depends on them by path: the
//! `sdk/` directory of the Corral sources this binary was built from, or `--sdk`. Its
//! `Cargo.lock` starts as Corral's own, so it builds with the versions Corral is tested with.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::NewTaskArgs;
use crate::commands::Exit;

const CARGO_TOML: &str = include_str!("../../templates/task/Cargo.toml.in");
const CONFIG_TOML: &str = include_str!("../../templates/task/config.toml.in");
const MAIN_RS: &str = include_str!("../../templates/task/main.rs.in");
const TASK_RS: &str = include_str!("../../templates/task/task.rs.in");
const GITIGNORE: &str = include_str!("../../templates/task/gitignore.in");
/// Corral's own lock file: the new crate resolves to the versions Corral is tested with.
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");

/// The `sdk/` directory of the sources this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

pub(super) fn task(args: &NewTaskArgs) -> anyhow::Result<u8> {
    check_name(&args.name)?;
    let sdk = sdk_dir(args.sdk.as_deref())?;
    let dir = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Exit::invalid(format!(
            "{} exists and is not empty; choose another --path",
            dir.display()
        ))
        .into());
    }
    let dependency = |crate_dir: &str| {
        let path = sdk.join(crate_dir).display().to_string();
        format!(
            "{{ path = \"{}\" }}",
            path.replace('\\', "\\\\").replace('"', "\\\"")
        )
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", &args.name)
            .replace("{{corral_task}}", &dependency("task"))
            .replace("{{corral_task_harness}}", &dependency("harness"))
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        (".cargo/config.toml", fill(CONFIG_TOML)),
        ("src/main.rs", fill(MAIN_RS)),
        ("tests/task.rs", fill(TASK_RS)),
        (".gitignore", GITIGNORE.to_owned()),
        ("Cargo.lock", CARGO_LOCK.to_owned()),
    ];
    for (path, contents) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    let name = &args.name;
    println!("created task crate {name} in {}", dir.display());
    println!("  cd {}", dir.display());
    println!("  cargo test     # builds the module, runs it under Corral's executor");
    println!("  cargo wasm     # target/wasm32-wasip1/release/{name}.wasm");
    println!("  corral run target/wasm32-wasip1/release/{name}.wasm [NAME]");
    Ok(0)
}

/// A name cargo takes for a package (and so for the module's file name).
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Exit::invalid(format!(
            "{name:?} cannot name a task crate: use a letter, then letters, digits, `-` or `_` \
             (at most 64)"
        ))
        .into())
    }
}

/// Where the SDK crates are: `--sdk`, else the sources this binary was built from.
fn sdk_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = given.unwrap_or(Path::new(BUILT_FROM_SDK));
    let found = dir.join("task/Cargo.toml").is_file() && dir.join("harness/Cargo.toml").is_file();
    if !found {
        return Err(Exit::invalid(format!(
            "no task SDK in {}: the SDK crates are not published yet, so pass --sdk \
             <a Corral checkout>/sdk",
            dir.display()
        ))
        .into());
    }
    std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))
}

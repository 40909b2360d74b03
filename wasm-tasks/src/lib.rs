//! Guest WebAssembly programs for Corral's tests, and where to find them.
//!
//! Corral runs tasks as wasm32-wasip1 modules under wasmtime. The executor's tests need real
//! guests that behave well (`hello`, `wordcount`, `primes`, `mandelbrot`) and one that
//! misbehaves on request (`limits`: exhaust memory, spin, trap, overflow the stack, flood
//! stdout, fill the disk, try to leave the sandbox, look for another task's memory). Each is
//! a plain std-only Rust binary in `programs/src/bin/`; `README.md` documents their arguments
//! and outputs.
//!
//! ```text
//! programs/src/bin/*.rs ──build.rs: cargo build --release --target wasm32-wasip1──▶
//!   $OUT_DIR/programs-target/wasm32-wasip1/release/<name>.wasm
//!     └─▶ $OUT_DIR/programs.rs: HELLO, LIMITS, …, ALL, foreach_program!  (included below)
//! ```
//!
//! `programs/` is a separate cargo workspace so host settings never reach the guests; the
//! build script runs a nested cargo with the host build's flags and wrappers removed, and
//! fails with `rustup target add wasm32-wasip1` in its message if the target is missing.
//! This is the pattern of wasmtime's `test-programs` crate.
//!
//! For each program `name` this crate exports `pub const NAME: &str`, the absolute path of
//! its `.wasm` file (upper-cased, `-` becomes `_`), for tests that hand a file to a command,
//! and `embedded::NAME: &[u8]`, its bytes compiled in, for what ships: `corral dev` and
//! `corral bench` run the examples from the binary, so a copied or installed `corral` works
//! anywhere. [`ALL`] lists `(name, path)` pairs, and [`bytes`] reads a module. [`foreach_program!`] calls a macro once per program, which lets
//! a test suite make "a program without a test" a compile error, as wasmtime does:
//!
//! ```text
//! use corral_wasm_tasks::foreach_program;
//!
//! // One test (or test module) per program, named after it ...
//! #[test]
//! fn hello() { /* run corral_wasm_tasks::HELLO and check its stdout */ }
//! // ... wordcount, primes, mandelbrot, limits ...
//!
//! // ... and a compile error naming the program if one is missing.
//! macro_rules! assert_test_exists {
//!     ($name:ident) => {
//!         #[expect(unused_imports, reason = "only checks that the test exists")]
//!         use self::$name as _;
//!     };
//! }
//! foreach_program!(assert_test_exists);
//! ```

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// The cases of `wasi_compat`, each an argument list: every WASI preview 1 family, a usage
/// error and exit codes. Tests run each under Corral and under plain wasmtime-wasi.
pub const WASI_COMPAT_CASES: &[&[&str]] = &[
    &["args", "one", "--two", "three four", ""],
    &["env"],
    &["preopens"],
    &["files"],
    &["dirs"],
    &["paths"],
    &["symlinks"],
    &["readdir"],
    &["times"],
    &["clocks"],
    &["random"],
    &["poll"],
    &["fdstat"],
    &["stdin"],
    &["sockets"],
    &["misc"],
    &["exit", "0"],
    &["exit", "3"],
    &["exit", "125"],
    &["exit", "126"],
    &["no-such-case"],
];

/// Reads the module at `path` (one of this crate's constants).
///
/// # Panics
///
/// If the file cannot be read; this is test support, where that is a broken build.
#[must_use]
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("cannot read guest program {path}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_is_a_wasm_module() {
        assert!(!ALL.is_empty());
        for (name, path) in ALL {
            let module = bytes(path);
            assert!(
                module.starts_with(b"\0asm"),
                "{name} ({path}) does not start with the wasm magic bytes"
            );
        }
    }

    #[test]
    fn foreach_program_covers_all() {
        let mut seen = Vec::new();
        macro_rules! record {
            ($name:ident) => {
                seen.push(stringify!($name));
            };
        }
        foreach_program!(record);
        let expected: Vec<String> = ALL.iter().map(|(name, _)| name.replace('-', "_")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn embedded_bytes_are_the_built_programs() {
        assert_eq!(embedded::HELLO, &bytes(HELLO)[..]);
        assert_eq!(embedded::MANDELBROT, &bytes(MANDELBROT)[..]);
    }

    #[test]
    fn constants_name_their_program() {
        for (name, path) in ALL {
            assert!(
                path.ends_with(&format!("/{name}.wasm")),
                "{name} points at {path}"
            );
        }
        assert!(HELLO.ends_with("/hello.wasm"));
        assert!(LIMITS.ends_with("/limits.wasm"));
    }
}

/// The map/reduce example of the jobs framework (`mapreduce/`): word count over a small
/// corpus, a batch of `map` instances then a `reduce` job that takes their outputs.
/// `corral dev` writes it out next to the example modules and runs it.
pub mod mapreduce {
    /// The spec file, `wordcount.toml`; it names `wordfreq.wasm` and the corpus files
    /// relative to itself.
    pub const SPEC: &str = include_str!("../mapreduce/wordcount.toml");
    /// The corpus: `(path relative to the spec, text)`.
    pub const CORPUS: &[(&str, &str)] = &[
        (
            "corpus/01-mesos.txt",
            include_str!("../mapreduce/corpus/01-mesos.txt"),
        ),
        (
            "corpus/02-offers.txt",
            include_str!("../mapreduce/corpus/02-offers.txt"),
        ),
        (
            "corpus/03-drf.txt",
            include_str!("../mapreduce/corpus/03-drf.txt"),
        ),
        (
            "corpus/04-spark.txt",
            include_str!("../mapreduce/corpus/04-spark.txt"),
        ),
        (
            "corpus/05-wasm.txt",
            include_str!("../mapreduce/corpus/05-wasm.txt"),
        ),
        (
            "corpus/06-corral.txt",
            include_str!("../mapreduce/corpus/06-corral.txt"),
        ),
    ];

    /// Writes the spec, the corpus and `wordfreq.wasm` into `dir`; returns the spec's path.
    ///
    /// # Errors
    ///
    /// A file that cannot be written.
    pub fn write_to(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir.join("corpus"))?;
        for (path, text) in CORPUS {
            std::fs::write(dir.join(path), text)?;
        }
        std::fs::write(dir.join("wordfreq.wasm"), crate::embedded::WORDFREQ)?;
        let spec = dir.join("wordcount.toml");
        std::fs::write(&spec, SPEC)?;
        Ok(spec)
    }
}

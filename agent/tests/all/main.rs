//! Integration tests of the executor against real guest programs from `wasm-tasks/`.
//!
//! One module per guest program (named after it), plus modules per concern.

// Helpers outside `#[test]` functions unwrap too: a panic in a test is a failure with a trace.
#![allow(clippy::unwrap_used)]

mod cache;
mod components;
mod concurrency;
mod cpu_share;
mod fake_master;
mod invoke;
mod isolation;
mod node;
mod outputs;
mod restart;
mod util;

mod hello;
mod limits;
mod mandelbrot;
mod primes;
mod sdk_demo;
mod wasi_compat;
mod wordcount;
mod wordfreq;

// A guest program without a test module of its name is a compile error.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(
            unused_imports,
            reason = "only checks that the program has a test module"
        )]
        use self::$name as _;
    };
}
corral_wasm_tasks::foreach_program!(assert_test_exists);

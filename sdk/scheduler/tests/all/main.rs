//! Integration tests of corral-scheduler against its own `MockMaster` over real sockets.
#![allow(
    clippy::unwrap_used,
    reason = "tests: a panic is a test failure with a backtrace"
)]

mod driver;
mod framework;
mod util;

//! Integration tests of corral-proto: conversions through the public API and a real tonic
//! server on 127.0.0.1.

// Test helpers outside `#[test]` functions unwrap too: a panic there is a test failure.
#![allow(clippy::unwrap_used)]

mod docs;
mod server;
mod task;

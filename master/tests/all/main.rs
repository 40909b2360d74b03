//! Integration tests: a real `Master` on 127.0.0.1:0, driven by raw tonic clients from
//! corral_proto (a fake agent over AgentLink, a raw scheduler, an operator).
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is a failure with a backtrace

mod auth;
mod end_to_end;
mod errors;
mod etcd;
#[allow(
    dead_code,
    reason = "shared with the CLI's tests, which use other parts"
)]
mod failures;
mod fairness;
mod files;
mod introspection;
mod outputs;
mod rates;
mod registry;
mod util;

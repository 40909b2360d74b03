//! End-to-end tests of the `corral` binary against real `corral master` and `corral agent`
//! processes on free local ports.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on broken setup")]

mod cluster;
mod failures;
mod framework;
mod kill;
mod roles;
mod run;

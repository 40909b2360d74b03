//! End-to-end tests of the `corral` binary against real `corral master` and `corral agent`
//! processes on free local ports.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on broken setup")]

mod api;
mod bench;
mod cluster;
mod dev;
mod drain;
mod events;
mod failures;
mod framework;
mod ha;
mod habits;
mod hostile;
mod job;
mod kill;
mod languages;
mod metrics;
mod new;
mod outputs;
mod roles;
mod run;
mod sdk;
mod secure;
mod secure_jobs;
mod slow;
mod standalone;
mod tls;
mod ui;
mod wasi_compat;

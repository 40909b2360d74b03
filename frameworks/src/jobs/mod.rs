//! The built-in jobs framework: batch jobs, services and cron jobs from job specs, on the
//! public framework SDK only, with its state in the framework store.
//!
//! - [`JobsFramework::run`] runs it against a cluster's masters;
//! - [`jobs_service`] serves the Jobs gRPC service (`jobs.proto`) over it, which `corral
//!   master` and `corral dev` mount on the master's port, and `corral frameworks run` on a
//!   port of its own (named by the [`JOBS_ADDRESS_LABEL`] label of the framework).
//!
//! A batch job's instances run as tasks `<job>.<index>` with `CORRAL_JOB`,
//! `CORRAL_TASK_INDEX` (0-based) and `CORRAL_TASK_ATTEMPT` (1-based) in their environment;
//! a failed attempt is retried after its backoff while retries are left, and the next attempt
//! gets the checkpoint the failed one left. A job that takes inputs `from` another job gets
//! each of its succeeded instances' outputs as `<path>/<index>/<output path>`.

mod book;
mod decide;
mod framework;
mod placement;
mod record;
mod service;
mod template;
#[cfg(test)]
mod tests;
mod timetable;

pub use decide::MasterDecisions;
pub use framework::{FRAMEWORK_ID, JOBS_ADDRESS_LABEL, JobsError, JobsFramework};
pub use service::{JobsService, MAX_SPEC_BYTES, jobs_service, jobs_service_asking};

//! Where the built-in jobs framework's Jobs service answers, for every client of it (the CLI's
//! `corral job`, the master's `/api/v1/jobs`): on the masters' port while the framework runs
//! inside the master, or at the address its [`JOBS_ADDRESS_LABEL`] names when it runs as a
//! process of its own (`corral frameworks run`).

use crate::v1;

/// The framework's ID (fixed, so every start fails over the previous one and finds its
/// store) and name.
pub const FRAMEWORK_ID: &str = "corral-jobs";

/// The label (on its FrameworkInfo) that says where a jobs framework running as a process
/// of its own serves its Jobs service, `host:port`; clients go there rather than to the
/// master.
pub const JOBS_ADDRESS_LABEL: &str = "corral.jobs.address";

/// Where the Jobs service is, by the master's framework listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobsAt {
    /// On the master's own port (or no framework has registered yet: the master says so).
    Master,
    /// At this `host:port`.
    Address(String),
}

/// The jobs framework among `frameworks`, if it runs as a process of its own: its summary
/// and the address it serves at.
pub fn jobs_framework(
    frameworks: &[v1::FrameworkSummary],
) -> Option<(&v1::FrameworkSummary, &str)> {
    let framework = frameworks.iter().find(|f| f.id == FRAMEWORK_ID)?;
    Some((framework, framework.labels.get(JOBS_ADDRESS_LABEL)?))
}

/// Where to call the Jobs service, by the master's framework listing.
pub fn jobs_at(listing: &v1::ListFrameworksResponse) -> JobsAt {
    match listing.jobs_address.as_str() {
        "" => JobsAt::Master,
        address => JobsAt::Address(address.to_owned()),
    }
}

/// What the master decided about the caller of a Jobs call, which the Jobs service reads
/// from the request's extensions ([`JobsCaller`]): whose jobs it sees and may change, and in
/// which roles it may run them. Without one (a jobs framework serving on a port of its own)
/// every caller may do everything.
pub trait JobsAccess: Send + Sync + std::fmt::Debug {
    /// The principal the jobs it submits belong to (`None`: the master does not
    /// authenticate, or the caller is the master itself).
    fn principal(&self) -> Option<&str>;

    /// Whether it sees the jobs of `owner`.
    fn sees(&self, owner: Option<&str>) -> bool;

    /// Decides (and audits) a change to job `job` of `owner`: PERMISSION_DENIED if refused.
    fn may_manage(&self, owner: Option<&str>, job: &str) -> Result<(), tonic::Status>;

    /// Decides (and audits) running a job's tasks in `role`: PERMISSION_DENIED if refused.
    fn may_run_in(&self, role: &str, job: &str) -> Result<(), tonic::Status>;
}

/// A Jobs call's [`JobsAccess`], in the request's extensions.
#[derive(Debug, Clone)]
pub struct JobsCaller(pub std::sync::Arc<dyn JobsAccess>);

/// Paces the launches a jobs framework makes for a job's owner by the owner's launch rate
/// (the masters' per-principal limits), as if the owner launched them: the framework asks
/// before each launch, and an instance refused waits for a later offer.
pub trait LaunchPacer: Send + Sync + std::fmt::Debug {
    /// Takes one launch from `owner`'s rate, or says how long until one is there.
    fn take(&self, owner: &str) -> Result<(), std::time::Duration>;
}

/// No pacing: a jobs framework that is not told its masters' rates launches what its offers hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpaced;

impl LaunchPacer for Unpaced {
    fn take(&self, _owner: &str) -> Result<(), std::time::Duration> {
        Ok(())
    }
}

//! The master's decisions for the built-in Jobs service: whose jobs a caller sees and may
//! change, and in which roles it may run them ([`JobsAccess`]), handed to the service in the
//! request's extensions. The service runs inside the master but in a crate of its own, so
//! it gets the decisions, not the ACLs.
//!
//! Jobs belong to the principal that submitted them, and their tasks run for it
//! (`TaskInfo.owner`). The master's HTTP API calls the Jobs service with the master's own
//! token and names the principal it calls for in [`ON_BEHALF_OF`], which only the master's
//! token may do.

use std::sync::Arc;

use corral_proto::ServiceError;
use corral_proto::jobs::{JobsAccess, JobsCaller, LaunchPacer};
use corral_types::Role;

use super::rate::{Kind, Subject};
use super::{Action, Auth, Caller, Object, Visibility};

/// The metadata key in which the master's own calls to the Jobs service name the
/// principal they are made for.
pub(crate) const ON_BEHALF_OF: &str = "corral-on-behalf-of";

/// A caller of the Jobs service, with the master's rules.
#[derive(Debug)]
pub(crate) struct JobsRights {
    auth: Arc<Auth>,
    caller: Caller,
    /// Whose jobs it sees.
    view: Visibility,
}

impl JobsRights {
    /// The rights of `caller`.
    pub(crate) fn of(auth: &Arc<Auth>, caller: &Caller) -> Self {
        Self {
            view: auth.visibility(caller, Action::ViewJobs),
            auth: Arc::clone(auth),
            caller: caller.clone(),
        }
    }
}

/// The [`JobsCaller`] of `caller`.
pub(super) fn jobs_caller(auth: &Arc<Auth>, caller: &Caller) -> JobsCaller {
    JobsCaller(Arc::new(JobsRights::of(auth, caller)))
}

impl JobsAccess for JobsRights {
    fn principal(&self) -> Option<&str> {
        self.caller.principal()
    }

    fn sees(&self, owner: Option<&str>) -> bool {
        self.view.sees(owner)
    }

    fn may_manage(&self, owner: Option<&str>, _job: &str) -> Result<(), tonic::Status> {
        self.auth
            .authorize(&self.caller, Action::ManageJobs, Object::Owner(owner))
            .map_err(tonic::Status::from)
    }

    fn may_run_in(&self, role: &str, _job: &str) -> Result<(), tonic::Status> {
        let role = Role::new(role).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        self.auth
            .authorize(&self.caller, Action::RegisterFramework, Object::Role(&role))
            .map_err(tonic::Status::from)
    }
}

/// The built-in jobs framework's launches for a job's owner, taken from the owner's launch
/// rate as its own would be (the framework itself, acting as the master, is not limited).
#[derive(Debug)]
pub(crate) struct OwnersLaunches(pub(crate) Arc<Auth>);

impl LaunchPacer for OwnersLaunches {
    fn take(&self, owner: &str) -> Result<(), std::time::Duration> {
        let owner = Subject::Principal(owner.into());
        match self.0.throttle(Some(&owner), Kind::Launches, 1) {
            Ok(()) => Ok(()),
            Err(ServiceError::RateLimited { retry_after, .. }) => Err(retry_after),
            // One launch is within any burst; should the rate refuse it anyway, try again later.
            Err(_) => Err(std::time::Duration::from_secs(1)),
        }
    }
}

/// Where a jobs framework running as a process of its own serves, among `frameworks` (every
/// one, unfiltered), if it is one clients may trust with their tokens: without
/// authentication any, else one whose principal may run tasks for every principal.
pub(crate) fn trusted_jobs_address(
    auth: &Auth,
    frameworks: &[corral_proto::v1::FrameworkSummary],
) -> Option<String> {
    let (framework, address) = corral_proto::jobs::jobs_framework(frameworks)?;
    let trusted = match framework.principal.as_str() {
        "" => true,
        principal => auth.allows(
            &Caller::Principal(principal.into()),
            Action::RunTasksFor,
            Object::Everyone,
        ),
    };
    trusted.then(|| address.to_owned())
}

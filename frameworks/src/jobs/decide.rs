//! The decisions a Jobs call needs about its caller when the master is not in front of the
//! service (`corral frameworks run`): asked of the leading master with the caller's own token
//! (`Operator.DecideJobs`), so the master's credentials and ACLs hold there as on its own
//! port, and a revoked token stops working at once.

use std::collections::{BTreeMap, BTreeSet};

use corral_proto::auth::{AUTHORIZATION, Token};
use corral_proto::jobs::JobsAccess;
use corral_proto::status::leader_hint;
use corral_proto::tls::{Dialer, Tls};
use corral_proto::{limits, v1};
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};

/// Standbys' leader hints followed per master before trying the next.
const HOPS: usize = 3;

/// Asks the masters for each Jobs call's decisions.
#[derive(Debug, Clone)]
pub struct MasterDecisions {
    masters: Vec<String>,
    /// TLS as the framework reaches the masters, and no token of its own: each call
    /// presents its caller's.
    dialer: Dialer,
}

/// What one Jobs call needs decided: owners are principals, `None` for jobs submitted
/// without authentication.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    pub(crate) view: BTreeSet<Option<String>>,
    pub(crate) manage: BTreeSet<Option<String>>,
    pub(crate) roles: BTreeSet<String>,
}

impl MasterDecisions {
    /// Asks `masters` (the leader found as clients find it), over TLS when `tls` is given.
    pub fn new(masters: Vec<String>, tls: Option<Tls>) -> Self {
        Self {
            masters,
            dialer: Dialer::new(tls, Token::none()),
        }
    }

    /// The decisions `needs` names, for the caller presenting `authorization`.
    pub(crate) async fn decide(
        &self,
        authorization: Option<&MetadataValue<Ascii>>,
        needs: Needs,
    ) -> Result<Decided, Status> {
        let owner = |o: &Option<String>| o.clone().unwrap_or_default();
        let request = v1::DecideJobsRequest {
            view: needs.view.iter().map(owner).collect(),
            manage: needs.manage.iter().map(owner).collect(),
            roles: needs.roles.iter().cloned().collect(),
        };
        let mut last = Status::unavailable("no master is configured");
        for first in &self.masters {
            let mut address = first.clone();
            for _ in 0..HOPS {
                let conn = match self.dialer.connect(&address).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        last = Status::unavailable(format!("master {address}: {e}"));
                        break;
                    }
                };
                let mut call = tonic::Request::new(request.clone());
                if let Some(token) = authorization {
                    call.metadata_mut().insert(AUTHORIZATION, token.clone());
                }
                match limits::operator_client(conn).decide_jobs(call).await {
                    Ok(answer) => return Decided::new(needs, answer.into_inner()),
                    Err(status) => match leader_hint(&status) {
                        Some(leader) => address = leader.to_owned(),
                        None if status.code() == tonic::Code::Unavailable => {
                            last = status;
                            break;
                        }
                        // The caller's own refusal (no token, a revoked one).
                        None => return Err(status),
                    },
                }
            }
        }
        Err(Status::unavailable(format!(
            "cannot ask the masters who may do this: {}",
            last.message()
        )))
    }
}

/// The master's decisions for one call. Whatever was not asked is refused.
#[derive(Debug)]
pub(crate) struct Decided {
    principal: Option<String>,
    view: BTreeMap<Option<String>, bool>,
    /// Owner to why not (empty: allowed).
    manage: BTreeMap<Option<String>, String>,
    roles: BTreeMap<String, String>,
}

impl Decided {
    fn new(needs: Needs, answer: v1::DecideJobsResponse) -> Result<Self, Status> {
        if answer.view.len() != needs.view.len()
            || answer.manage.len() != needs.manage.len()
            || answer.roles.len() != needs.roles.len()
        {
            return Err(Status::internal(
                "the master's decisions do not match the question",
            ));
        }
        Ok(Self {
            principal: (!answer.principal.is_empty()).then_some(answer.principal),
            view: needs.view.into_iter().zip(answer.view).collect(),
            manage: needs.manage.into_iter().zip(answer.manage).collect(),
            roles: needs.roles.into_iter().zip(answer.roles).collect(),
        })
    }

    /// Its own jobs are always the caller's to see and change.
    fn own(&self, owner: Option<&str>) -> bool {
        owner == self.principal.as_deref()
    }
}

/// `Ok` for an empty refusal, else PERMISSION_DENIED with it.
fn allowed(why_not: Option<&String>) -> Result<(), Status> {
    match why_not.map(String::as_str) {
        Some("") => Ok(()),
        Some(why) => Err(Status::permission_denied(why)),
        None => Err(Status::permission_denied(
            "the master was not asked about this (the jobs changed meanwhile): try again",
        )),
    }
}

impl JobsAccess for Decided {
    fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    fn sees(&self, owner: Option<&str>) -> bool {
        self.own(owner) || self.view.get(&owner.map(str::to_owned)) == Some(&true)
    }

    fn may_manage(&self, owner: Option<&str>, job: &str) -> Result<(), Status> {
        let decided = if self.own(owner) {
            Ok(())
        } else {
            allowed(self.manage.get(&owner.map(str::to_owned)))
        };
        let outcome = if decided.is_ok() { "allowed" } else { "denied" };
        tracing::info!(target: "corral::audit", principal = self.principal.as_deref().unwrap_or("-"), action = "manage_jobs", job, outcome);
        decided
    }

    fn may_run_in(&self, role: &str, _job: &str) -> Result<(), Status> {
        allowed(self.roles.get(role))
    }
}

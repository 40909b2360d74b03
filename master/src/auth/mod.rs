//! Who is calling, and what they may do: the one place gRPC, HTTP, the event stream and the
//! UI are checked (DESIGN.md, "Security").
//!
//! - **Authentication** ([`credentials`]): a caller presents a bearer token; the
//!   credentials file maps the token's SHA-256 to a principal. Without a credentials file the
//!   master does not authenticate: every caller is [`Caller::Anyone`] and may do everything.
//! - **Authorization** ([`acl`]): with an ACL file, a principal may do what a rule grants
//!   and nothing else, except that it always reaches its own frameworks, tasks and sandboxes
//!   (tenant isolation). Without one, every authenticated principal may do everything.
//! - **Audit** ([`audit`]): every refusal and every mutating call leaves a line.
//! - **Rate limits** ([`rate`]): a token bucket per principal for requests, task launches
//!   and module uploads; over it, RESOURCE_EXHAUSTED (HTTP 429) with when to retry.
//!
//! [`gate`] applies this where a request enters, before any handler: open paths pass,
//! others must authenticate, and actions taken on nothing (or on everyone's objects) are
//! decided there. Handlers decide actions on a role or an owner with [`Auth::authorize`].
//! The files are read again on [`Auth::reload`] (SIGHUP in `corral master`).

mod acl;
pub(crate) mod action;
mod audit;
mod credentials;
mod gate;
mod jobs;
pub(crate) mod rate;

pub(crate) use acl::Object;
pub(crate) use action::Action;
pub use credentials::{check_principal, new_token, token_sha256};
pub(crate) use gate::{GateState, PresentedToken, gate};
pub(crate) use jobs::{JobsRights, ON_BEHALF_OF, OwnersLaunches, trusted_jobs_address};

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use corral_proto::ServiceError;
use corral_proto::auth::Token;

use self::acl::Acls;
use self::audit::{AuditLog, Line, Outcome};
use self::credentials::{Credentials, Refusal};
use self::rate::{Limiter, RateLimits, Subject};

/// The cookie a signed-in browser presents its token in (see `http::api::session`).
pub(crate) const TOKEN_COOKIE: &str = "corral_token";

/// Where a master's credentials, ACLs and audit log live; all optional.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Principals and their tokens' SHA-256 (see `corral token new`). Without it the master
    /// does not authenticate.
    pub credentials: Option<PathBuf>,
    /// Who may do what. Needs `credentials`.
    pub acls: Option<PathBuf>,
    /// Where audit lines are appended.
    pub audit_log: Option<PathBuf>,
    /// Per-principal rate limits (see [`rate`]). Without it nothing is rate limited.
    pub rate_limits: Option<PathBuf>,
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The master does not authenticate.
    Anyone,
    /// The master's own built-in frameworks, with the token only this process knows.
    Master,
    Principal(Arc<str>),
}

impl Caller {
    /// The principal a framework this caller registers belongs to.
    pub(crate) fn principal(&self) -> Option<&str> {
        match self {
            Caller::Principal(p) => Some(p),
            Caller::Anyone | Caller::Master => None,
        }
    }

    fn name(&self) -> &str {
        match self {
            Caller::Anyone => "-",
            Caller::Master => "(master)",
            Caller::Principal(p) => p,
        }
    }
}

/// Whose objects a caller sees in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Visibility {
    All,
    /// Only those of these principals.
    Only(Vec<Arc<str>>),
}

impl Visibility {
    /// Whether objects of `owner` are visible.
    pub(crate) fn sees(&self, owner: Option<&str>) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Only(owners) => owner.is_some_and(|o| owners.iter().any(|v| &**v == o)),
        }
    }
}

#[derive(Debug, Default)]
struct Policy {
    credentials: Option<Credentials>,
    acls: Option<Acls>,
    rates: Option<RateLimits>,
}

/// The master's authenticator, authorizer and audit log.
#[derive(Debug)]
pub(crate) struct Auth {
    config: AuthConfig,
    policy: RwLock<Arc<Policy>>,
    audit: AuditLog,
    limiter: Limiter,
    /// The token of [`Caller::Master`], made at start and never written anywhere.
    master_token: String,
}

impl Auth {
    /// Reads the files `config` names; a missing or malformed one fails the start.
    pub(crate) fn new(config: AuthConfig) -> Result<Self, String> {
        let policy = Self::read(&config)?;
        let audit = AuditLog::open(config.audit_log.as_deref()).map_err(|e| {
            format!(
                "opening the audit log {}: {e}",
                config
                    .audit_log
                    .as_deref()
                    .unwrap_or_else(|| "".as_ref())
                    .display()
            )
        })?;
        Ok(Self {
            config,
            policy: RwLock::new(Arc::new(policy)),
            audit,
            limiter: Limiter::default(),
            master_token: new_token(),
        })
    }

    fn read(config: &AuthConfig) -> Result<Policy, String> {
        if config.acls.is_some() && config.credentials.is_none() {
            return Err(
                "ACLs need a credentials file: without one no caller has a principal".into(),
            );
        }
        let credentials = match &config.credentials {
            Some(path) => Some(
                Credentials::load(path)
                    .map_err(|e| format!("credentials {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let acls = match &config.acls {
            Some(path) => {
                Some(Acls::load(path).map_err(|e| format!("ACLs {}: {e}", path.display()))?)
            }
            None => None,
        };
        let rates = match &config.rate_limits {
            Some(path) => Some(
                RateLimits::load(path)
                    .map_err(|e| format!("rate limits {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(Policy {
            credentials,
            acls,
            rates,
        })
    }

    /// Reads the credentials, ACL and rate limit files again. On an error the rules in force stay.
    pub(crate) fn reload(&self) -> Result<usize, String> {
        let policy = Self::read(&self.config)?;
        let principals = policy.credentials.as_ref().map_or(0, Credentials::len);
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        // New limits start every bucket full.
        self.limiter.forget_all();
        Ok(principals)
    }

    fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The token of the master's own frameworks.
    pub(crate) fn master_token(&self) -> Token {
        Token::new(&self.master_token).unwrap_or_default()
    }

    /// The caller an `authorization` header names; `action` is what the call is, for the
    /// audit line of a refusal.
    pub(crate) fn authenticate(
        &self,
        header: Option<&[u8]>,
        action: &str,
    ) -> Result<Caller, ServiceError> {
        let policy = self.policy();
        let Some(credentials) = &policy.credentials else {
            return Ok(Caller::Anyone);
        };
        let token = match header {
            None => return Err(self.unauthenticated(action, "no bearer token")),
            Some(h) => std::str::from_utf8(h)
                .ok()
                .and_then(corral_proto::auth::bearer)
                .ok_or_else(|| self.unauthenticated(action, "malformed authorization header"))?,
        };
        if token == self.master_token {
            return Ok(Caller::Master);
        }
        match credentials.principal(token, jiff::Timestamp::now()) {
            Ok(principal) => Ok(Caller::Principal(principal)),
            Err(Refusal::Unknown) => Err(self.unauthenticated(action, "unknown token")),
            Err(Refusal::Expired { principal }) => {
                Err(self.unauthenticated_as(&principal, action, "token expired"))
            }
        }
    }

    fn unauthenticated(&self, action: &str, reason: &str) -> ServiceError {
        self.unauthenticated_as("-", action, reason)
    }

    fn unauthenticated_as(&self, principal: &str, action: &str, reason: &str) -> ServiceError {
        self.audit.record(&Line {
            principal,
            action,
            object: "-",
            outcome: Outcome::Unauthenticated,
            reason,
        });
        ServiceError::Unauthenticated(format!(
            "{reason}: this master needs a bearer token (CORRAL_TOKEN, --token-file or `corral login`)"
        ))
    }

    /// Whether `caller` may take `action` on `object`, without an audit line (for what a
    /// listing shows).
    pub(crate) fn allows(&self, caller: &Caller, action: Action, object: Object<'_>) -> bool {
        match caller {
            Caller::Anyone | Caller::Master => true,
            Caller::Principal(p) => {
                if let Object::Owner(Some(owner)) = object
                    && owner == &**p
                {
                    return true;
                }
                match &self.policy().acls {
                    Some(acls) => acls.allows(p, action, object),
                    None => true,
                }
            }
        }
    }

    /// Decides `action` on `object` for `caller`: PERMISSION_DENIED if not allowed. A
    /// refusal, or any mutating action, leaves an audit line.
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        object: Object<'_>,
    ) -> Result<(), ServiceError> {
        let allowed = self.allows(caller, action, object);
        if allowed && !action.mutates() {
            return Ok(());
        }
        let shown = object.to_string();
        let object_text = if shown.is_empty() { "-" } else { &shown };
        self.audit.record(&Line {
            principal: caller.name(),
            action: action.name(),
            object: object_text,
            outcome: if allowed {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
            reason: if allowed { "" } else { "no ACL grants it" },
        });
        if allowed {
            Ok(())
        } else {
            let on = if shown.is_empty() {
                String::new()
            } else {
                format!(" on {shown}")
            };
            Err(ServiceError::PermissionDenied(format!(
                "principal {} may not {action}{on}",
                caller.name()
            )))
        }
    }

    /// Spends `cost` of `subject`'s rate limit of `kind`: RESOURCE_EXHAUSTED with when to
    /// retry if it is spent. `None` (the master's own frameworks) is never limited.
    pub(crate) fn throttle(
        &self,
        subject: Option<&Subject>,
        kind: rate::Kind,
        cost: usize,
    ) -> Result<(), ServiceError> {
        let (Some(subject), Some(limits)) = (subject, &self.policy().rates) else {
            return Ok(());
        };
        self.limiter.spend(
            limits,
            subject,
            kind,
            cost as f64,
            std::time::Instant::now(),
        )
    }

    /// Notes a call refused before authentication (no client certificate).
    pub(crate) fn audit_refused(&self, keeping: action::Gatekeeping, reason: &str) {
        let action = match keeping {
            action::Gatekeeping::Action(a) => a.name(),
            _ => "-",
        };
        self.audit.record(&Line {
            principal: "-",
            action,
            object: "-",
            outcome: Outcome::Unauthenticated,
            reason,
        });
    }

    /// Notes a mutating call allowed without an ACL decision (a framework acting on itself).
    pub(crate) fn audit_allowed(&self, caller: &Caller, action: &str, object: &str) {
        self.audit.record(&Line {
            principal: caller.name(),
            action,
            object,
            outcome: Outcome::Allowed,
            reason: "",
        });
    }

    /// Notes a refusal decided outside [`Auth::authorize`] (a framework another principal
    /// owns).
    pub(crate) fn audit_denied(&self, caller: &Caller, action: &str, object: &str, reason: &str) {
        self.audit.record(&Line {
            principal: caller.name(),
            action,
            object,
            outcome: Outcome::Denied,
            reason,
        });
    }

    /// Whose objects of `action` (an owner-object action) `caller` sees.
    pub(crate) fn visibility(&self, caller: &Caller, action: Action) -> Visibility {
        let Caller::Principal(p) = caller else {
            return Visibility::All;
        };
        if self.allows(caller, action, Object::Everyone) {
            return Visibility::All;
        }
        let mut owners = vec![p.clone()];
        if let Some(acls) = &self.policy().acls {
            for owner in acls.named_objects(p, action) {
                if !owners.iter().any(|o| **o == *owner)
                    && self.allows(caller, action, Object::Owner(Some(owner)))
                {
                    owners.push(owner.into());
                }
            }
        }
        Visibility::Only(owners)
    }
}

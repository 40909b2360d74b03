//! What an allocator refusal means to a client: the one mapping from [`AllocatorError`] to
//! [`ServiceError`] (whose mapping to gRPC codes is corral-proto's). Only the master knows
//! the allocator, so the mapping lives here.

use corral_allocator::{AllocatorError, QuotaError};
use corral_proto::ServiceError;

/// The service error for a refused allocator call.
pub(crate) fn refused(e: AllocatorError) -> ServiceError {
    use AllocatorError as A;
    let text = e.to_string();
    match e {
        A::UnknownAgent(id) => ServiceError::NotFound {
            kind: "agent",
            id: id.to_string(),
        },
        A::UnknownFramework(id) => ServiceError::NotFound {
            kind: "framework",
            id: id.to_string(),
        },
        A::UnknownRole(role) => ServiceError::NotFound {
            kind: "role",
            id: role.to_string(),
        },
        A::NoQuota(role) => ServiceError::NotFound {
            kind: "quota for role",
            id: role.to_string(),
        },
        A::DuplicateAgent(id) => ServiceError::AlreadyExists {
            kind: "agent",
            id: id.to_string(),
        },
        A::DuplicateFramework(id) => ServiceError::AlreadyExists {
            kind: "framework",
            id: id.to_string(),
        },
        A::NoRoles(_) | A::Overflow(..) | A::NothingToReserve(_) => {
            ServiceError::InvalidArgument(text)
        }
        A::Quota { error, .. } => match *error {
            // Wrong whatever the cluster looks like.
            QuotaError::GuaranteeExceedsLimit { .. } | QuotaError::Overflow => {
                ServiceError::InvalidArgument(text)
            }
            // Depend on the cluster or other roles; `force` or other changes can fix them.
            QuotaError::ExceedsCluster { .. }
            | QuotaError::ChildrenExceedParent { .. }
            | QuotaError::LimitBelowConsumption { .. } => ServiceError::FailedPrecondition(text),
        },
        A::LimitExceeded { .. } => ServiceError::ResourceExhausted(text),
        A::NotSubscribed { .. }
        | A::Insufficient { .. }
        | A::NotAllocated { .. }
        | A::CannotUnreserve { .. } => ServiceError::FailedPrecondition(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_types::{AgentId, QuotaLimits, Resources, Role};
    use tonic::{Code, Status};

    #[test]
    fn allocator_errors_map_by_kind() {
        let agent = AgentId::new("a1").unwrap();
        let role = Role::new("eng").unwrap();
        let cases = [
            (AllocatorError::UnknownAgent(agent.clone()), Code::NotFound),
            (AllocatorError::NoQuota(role.clone()), Code::NotFound),
            (
                AllocatorError::DuplicateAgent(agent.clone()),
                Code::AlreadyExists,
            ),
            (
                AllocatorError::Insufficient {
                    agent,
                    available: Box::default(),
                    requested: Box::default(),
                },
                Code::FailedPrecondition,
            ),
            (
                AllocatorError::Quota {
                    role: role.clone(),
                    error: Box::new(QuotaError::Overflow),
                },
                Code::InvalidArgument,
            ),
            (
                AllocatorError::Quota {
                    role: role.clone(),
                    error: Box::new(QuotaError::ExceedsCluster {
                        guaranteed: Resources::new(),
                        total: Resources::new(),
                    }),
                },
                Code::FailedPrecondition,
            ),
            (
                AllocatorError::LimitExceeded {
                    role,
                    limit: Box::new(QuotaLimits::unlimited()),
                    requested: Box::default(),
                },
                Code::ResourceExhausted,
            ),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let status = Status::from(refused(err));
            assert_eq!(status.code(), code, "{text}");
        }
        let s = Status::from(refused(AllocatorError::UnknownAgent(
            AgentId::new("a9").unwrap(),
        )));
        assert_eq!(s.message(), "unknown agent a9");
    }
}

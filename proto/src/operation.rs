//! Domain version of `Event.OperationUpdate`: an offer operation the master did not apply.

use corral_types::{AgentId, OperationState};

use crate::convert::parse_optional_id;
use crate::error::ProtoError;
use crate::state::ProtoEnum;
use crate::v1;

/// A RESERVE or UNRESERVE of an ACCEPT that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationUpdate {
    /// The framework's id for the operation (`Operation.id`; empty if it set none).
    pub operation_id: String,
    /// Its position in the ACCEPT's operations, from 0.
    pub index: u32,
    /// DROPPED (the offers were not valid) or ERROR (refused).
    pub state: OperationState,
    /// The offers' agent, when they named a valid one.
    pub agent_id: Option<AgentId>,
    /// Why, for people.
    pub message: String,
}

impl TryFrom<&v1::event::OperationUpdate> for OperationUpdate {
    type Error = ProtoError;

    fn try_from(u: &v1::event::OperationUpdate) -> Result<Self, ProtoError> {
        Ok(OperationUpdate {
            operation_id: u.operation_id.clone(),
            index: u.index,
            state: OperationState::from_proto("state", u.state)?,
            agent_id: parse_optional_id("agent_id", Some(&u.agent_id))?,
            message: u.message.clone(),
        })
    }
}

impl From<&OperationUpdate> for v1::event::OperationUpdate {
    fn from(u: &OperationUpdate) -> Self {
        v1::event::OperationUpdate {
            operation_id: u.operation_id.clone(),
            index: u.index,
            state: u.state.to_i32(),
            agent_id: u
                .agent_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            message: u.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_requires_a_state() {
        let update = OperationUpdate {
            operation_id: "r1".into(),
            index: 2,
            state: OperationState::Error,
            agent_id: Some(AgentId::new("a1").unwrap()),
            message: "refused".into(),
        };
        let wire = v1::event::OperationUpdate::from(&update);
        assert_eq!(OperationUpdate::try_from(&wire), Ok(update));
        let unset = v1::event::OperationUpdate::default();
        assert_eq!(
            OperationUpdate::try_from(&unset),
            Err(ProtoError::missing("state"))
        );
    }
}

//! Conversions between the core's descriptions of agents and frameworks and their
//! `corral.v1` messages: the services read requests with them and the registry stores
//! records with them, so both read and write the same fields.

use std::time::Duration;

use corral_proto::convert::{each, parse_optional_id, parse_role, parse_roles, require};
use corral_proto::{ProtoError, v1};

use super::{AgentInfo, FrameworkInfo};

impl TryFrom<&v1::AgentInfo> for AgentInfo {
    type Error = ProtoError;

    fn try_from(info: &v1::AgentInfo) -> Result<Self, ProtoError> {
        Ok(AgentInfo {
            hostname: info.hostname.clone(),
            address: info.address.clone(),
            resources: require("resources", info.resources.as_ref())?,
            attributes: info
                .attributes
                .iter()
                .map(|a| (a.key.clone(), a.value.clone()))
                .collect(),
            engine_hash: info.engine_hash.clone(),
            version: info.version.clone(),
            labels: info.labels.clone(),
            static_reservations: each("static_reservations", &info.static_reservations, |r| {
                let role = parse_role("role", &r.role)?;
                if role.is_default() {
                    return Err(ProtoError::invalid(
                        "role",
                        "resources cannot be reserved to the default role *",
                    ));
                }
                Ok((role, require("resources", r.resources.as_ref())?))
            })?,
        })
    }
}

impl From<&AgentInfo> for v1::AgentInfo {
    fn from(info: &AgentInfo) -> Self {
        v1::AgentInfo {
            hostname: info.hostname.clone(),
            address: info.address.clone(),
            resources: Some((&info.resources).into()),
            attributes: attributes(&info.attributes),
            engine_hash: info.engine_hash.clone(),
            version: info.version.clone(),
            labels: info.labels.clone(),
            static_reservations: info
                .static_reservations
                .iter()
                .map(|(role, resources)| v1::StaticReservation {
                    role: role.to_string(),
                    resources: Some(resources.into()),
                })
                .collect(),
            // Not kept by the master.
            ..v1::AgentInfo::default()
        }
    }
}

/// Agent attributes as messages.
pub(super) fn attributes(attrs: &[(String, String)]) -> Vec<v1::Attribute> {
    attrs
        .iter()
        .map(|(key, value)| v1::Attribute {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

impl TryFrom<&v1::FrameworkInfo> for FrameworkInfo {
    type Error = ProtoError;

    fn try_from(info: &v1::FrameworkInfo) -> Result<Self, ProtoError> {
        let roles = parse_roles("roles", &info.roles)?;
        if roles.is_empty() {
            return Err(ProtoError::missing("roles"));
        }
        Ok(FrameworkInfo {
            id: parse_optional_id("id", info.id.as_deref())?,
            name: info.name.clone(),
            user: info.user.clone(),
            roles,
            failover_timeout: Duration::from_millis(info.failover_timeout_millis),
            labels: info.labels.clone(),
        })
    }
}

impl From<&FrameworkInfo> for v1::FrameworkInfo {
    fn from(info: &FrameworkInfo) -> Self {
        v1::FrameworkInfo {
            id: info.id.as_ref().map(ToString::to_string),
            name: info.name.clone(),
            user: info.user.clone(),
            roles: info.roles.iter().map(ToString::to_string).collect(),
            failover_timeout_millis: u64::try_from(info.failover_timeout.as_millis())
                .unwrap_or(u64::MAX),
            labels: info.labels.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_types::{Resources, Role};

    #[test]
    fn agent_and_framework_infos_round_trip() {
        let agent = AgentInfo {
            hostname: "h".into(),
            address: "10.0.0.1:5051".into(),
            resources: Resources::new().with_cpus_milli(1500).with_mem_mib(64),
            attributes: vec![("arch".into(), "aarch64".into())],
            engine_hash: "e".into(),
            version: "0.1.0".into(),
            labels: [("zone".to_owned(), "a".to_owned())].into(),
            static_reservations: vec![(
                Role::new("eng").unwrap(),
                Resources::new().with_cpus_milli(500),
            )],
        };
        let wire = v1::AgentInfo::from(&agent);
        assert_eq!(AgentInfo::try_from(&wire), Ok(agent));

        // Nothing can be reserved to the default role.
        let mut to_default = wire;
        to_default.static_reservations[0].role = "*".into();
        let err = AgentInfo::try_from(&to_default).unwrap_err();
        assert!(
            err.to_string().contains("static_reservations[0].role"),
            "{err}"
        );
        let framework = FrameworkInfo {
            id: Some(corral_types::FrameworkId::new("f-1").unwrap()),
            name: "batch".into(),
            user: "me".into(),
            roles: vec![Role::new("eng/batch").unwrap(), Role::default_role()],
            failover_timeout: Duration::from_secs(90),
            labels: Default::default(),
        };
        let back = FrameworkInfo::try_from(&v1::FrameworkInfo::from(&framework));
        assert_eq!(back, Ok(framework));
    }
}

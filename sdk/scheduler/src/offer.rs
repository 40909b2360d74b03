//! The domain form of a resource offer.

use std::collections::BTreeMap;

use corral_proto::convert::{each, parse_id, parse_role, require};
use corral_proto::{ProtoError, v1};
use corral_types::{AgentId, Digest, FrameworkId, OfferId, Resources, Role};

/// Resources of one agent offered to this framework in one role (see `Offer` in
/// `scheduler.proto`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Names the offer in `launch` and `decline`.
    pub id: OfferId,
    /// The framework it is offered to.
    pub framework_id: FrameworkId,
    /// The agent the resources are on.
    pub agent_id: AgentId,
    /// The agent's hostname.
    pub hostname: String,
    /// The role the resources are offered in.
    pub role: Role,
    /// Everything offered, reserved part included.
    pub resources: Resources,
    /// The part of `resources` reserved to `role`.
    pub reserved: Resources,
    /// The agent's attributes (`arch` = `x86_64`), for placement constraints.
    pub attributes: BTreeMap<String, String>,
    /// Modules the agent has compiled and cached: launching one skips fetch and compile.
    pub cached_modules: Vec<Digest>,
}

impl Offer {
    /// The value of an attribute, if the agent has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// True when the agent has `digest` compiled already.
    pub fn has_cached(&self, digest: &Digest) -> bool {
        self.cached_modules.contains(digest)
    }
}

impl TryFrom<&v1::Offer> for Offer {
    type Error = ProtoError;

    fn try_from(o: &v1::Offer) -> Result<Self, ProtoError> {
        Ok(Offer {
            id: parse_id("id", &o.id)?,
            framework_id: parse_id("framework_id", &o.framework_id)?,
            agent_id: parse_id("agent_id", &o.agent_id)?,
            hostname: o.hostname.clone(),
            role: parse_role("role", &o.role)?,
            resources: require("resources", o.resources.as_ref())?,
            reserved: match o.reserved.as_ref() {
                None => Resources::new(),
                Some(r) => Resources::try_from(r).map_err(|e| e.within("reserved"))?,
            },
            attributes: o
                .attributes
                .iter()
                .map(|a| (a.key.clone(), a.value.clone()))
                .collect(),
            cached_modules: each("cached_modules", &o.cached_modules, |d| {
                d.parse::<Digest>()
                    .map_err(|error| ProtoError::InvalidDigest {
                        field: "".into(),
                        error,
                    })
            })?,
        })
    }
}

impl From<&Offer> for v1::Offer {
    fn from(o: &Offer) -> Self {
        v1::Offer {
            id: o.id.to_string(),
            framework_id: o.framework_id.to_string(),
            agent_id: o.agent_id.to_string(),
            hostname: o.hostname.clone(),
            role: o.role.as_str().to_owned(),
            resources: Some(v1::Resources::from(&o.resources)),
            reserved: Some(v1::Resources::from(&o.reserved)),
            attributes: o
                .attributes
                .iter()
                .map(|(key, value)| v1::Attribute {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            cached_modules: o.cached_modules.iter().map(ToString::to_string).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto() -> v1::Offer {
        v1::Offer {
            id: "o1".into(),
            framework_id: "fw".into(),
            agent_id: "a1".into(),
            hostname: "h1".into(),
            role: "eng/batch".into(),
            resources: Some(v1::Resources {
                cpus_milli: 2000,
                mem_bytes: 1 << 30,
                ..Default::default()
            }),
            reserved: None,
            attributes: vec![v1::Attribute {
                key: "arch".into(),
                value: "x86_64".into(),
            }],
            cached_modules: vec![Digest::of(b"m").to_string()],
        }
    }

    #[test]
    fn offers_round_trip() {
        let offer = Offer::try_from(&proto()).unwrap();
        assert_eq!(offer.attribute("arch"), Some("x86_64"));
        assert!(offer.has_cached(&Digest::of(b"m")));
        assert_eq!(offer.resources.cpus_milli(), 2000);
        let back = v1::Offer::from(&offer);
        assert_eq!(Offer::try_from(&back).unwrap(), offer);
    }

    #[test]
    fn invalid_offers_name_the_field() {
        let mut p = proto();
        p.cached_modules = vec!["md5:x".into()];
        assert_eq!(
            Offer::try_from(&p).unwrap_err().field(),
            "cached_modules[0]"
        );
        let mut p = proto();
        p.resources = None;
        assert_eq!(Offer::try_from(&p).unwrap_err().field(), "resources");
    }
}

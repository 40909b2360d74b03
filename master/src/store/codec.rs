//! Keys and values of the registry, shared by both backends: each record is one key
//! (`agents/<id>`, `frameworks/<id>`, `weights/<role>`, `quotas/<role>`,
//! `artifacts/<digest>`, `outputs/<framework>/<task>`, `kv/<framework>/<key>`) holding a
//! protobuf message. Protobuf keeps old records readable
//! when fields are added, and reuses the `corral.v1` messages for infos, resources and
//! quotas.

use corral_proto::ProtoEnum;
use corral_proto::convert::{parse_id, parse_optional_id};
use corral_proto::{ProtoError, v1};
use corral_types::{AgentState, Digest, Quota, Reason, Role, TaskOutput, TaskState, Weight};
use prost::Message;

use super::StoreError;
use crate::core::{
    AgentInfo, AgentRecord, ArtifactKind, ArtifactRecord, DrainRecord, FrameworkInfo,
    FrameworkRecord, OutputsRecord, Recovered, RegistryWrite,
};

const AGENTS: &str = "agents/";
const FRAMEWORKS: &str = "frameworks/";
const WEIGHTS: &str = "weights/";
const QUOTAS: &str = "quotas/";
/// The prefix of artifact index keys (`artifacts/<digest>`).
pub(crate) const ARTIFACTS: &str = "artifacts/";
/// Tasks' outputs: `outputs/<framework>/<task>` (IDs hold no `/`).
const OUTPUTS: &str = "outputs/";
/// Frameworks' stores: `kv/<framework>/<key>` (the key may hold `/`; the ID does not).
const KV: &str = "kv/";

/// One key to set (`Some`) or delete (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyWrite {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct AgentPb {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(message, optional, tag = "2")]
    info: Option<v1::AgentInfo>,
    #[prost(int32, tag = "3")]
    state: i32,
    #[prost(uint64, tag = "4")]
    registered_unix_millis: u64,
    #[prost(message, optional, tag = "5")]
    drain: Option<DrainPb>,
    #[prost(message, repeated, tag = "6")]
    reservations: Vec<ReservationPb>,
}

#[derive(Clone, PartialEq, Message)]
struct DrainPb {
    #[prost(uint64, optional, tag = "1")]
    deadline_unix_millis: Option<u64>,
    #[prost(bool, tag = "2")]
    mark_gone: bool,
}

#[derive(Clone, PartialEq, Message)]
struct ReservationPb {
    #[prost(string, tag = "1")]
    role: String,
    #[prost(message, optional, tag = "2")]
    resources: Option<v1::Resources>,
}

#[derive(Clone, PartialEq, Message)]
struct FrameworkPb {
    #[prost(message, optional, tag = "1")]
    info: Option<v1::FrameworkInfo>,
    #[prost(uint64, tag = "2")]
    registered_unix_millis: u64,
    #[prost(uint64, optional, tag = "3")]
    disconnected_unix_millis: Option<u64>,
    #[prost(bool, tag = "4")]
    removed: bool,
}

#[derive(Clone, PartialEq, Message)]
struct WeightPb {
    #[prost(double, tag = "1")]
    weight: f64,
}

#[derive(Clone, PartialEq, Message)]
struct ArtifactPb {
    #[prost(uint64, tag = "1")]
    size: u64,
    #[prost(uint64, tag = "2")]
    stored_unix_millis: u64,
    /// False for a module (records from before outputs read so).
    #[prost(bool, tag = "3")]
    output: bool,
    /// The principals who stored it (none in records from before authentication).
    #[prost(string, repeated, tag = "4")]
    owners: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct KvPb {
    #[prost(bytes = "bytes", tag = "1")]
    value: bytes::Bytes,
    #[prost(uint64, tag = "2")]
    version: u64,
}

#[derive(Clone, PartialEq, Message)]
struct OutputsPb {
    #[prost(string, tag = "1")]
    agent_id: String,
    #[prost(int32, tag = "2")]
    state: i32,
    #[prost(int32, tag = "3")]
    reason: i32,
    #[prost(uint64, tag = "4")]
    finished_unix_millis: u64,
    #[prost(message, repeated, tag = "5")]
    outputs: Vec<v1::TaskOutput>,
    #[prost(string, tag = "6")]
    not_kept: String,
    #[prost(string, tag = "7")]
    owner: String,
}

/// The key and value a write sets.
pub(crate) fn encode(write: &RegistryWrite) -> KeyWrite {
    let (key, value) = match write {
        RegistryWrite::Agent(a) => (
            format!("{AGENTS}{}", a.id),
            Some(
                AgentPb {
                    id: a.id.to_string(),
                    info: Some((&a.info).into()),
                    state: a.state.to_i32(),
                    registered_unix_millis: a.registered_unix_millis,
                    drain: a.drain.map(|d| DrainPb {
                        deadline_unix_millis: d.deadline_unix_millis,
                        mark_gone: d.mark_gone,
                    }),
                    reservations: a
                        .reservations
                        .iter()
                        .map(|(role, r)| ReservationPb {
                            role: role.to_string(),
                            resources: Some(r.into()),
                        })
                        .collect(),
                }
                .encode_to_vec(),
            ),
        ),
        RegistryWrite::Framework(f) => (
            format!("{FRAMEWORKS}{}", f.id),
            Some(
                FrameworkPb {
                    info: Some(v1::FrameworkInfo::from(&FrameworkInfo {
                        id: Some(f.id.clone()),
                        ..f.info.clone()
                    })),
                    registered_unix_millis: f.registered_unix_millis,
                    disconnected_unix_millis: f.disconnected_unix_millis,
                    removed: f.removed,
                }
                .encode_to_vec(),
            ),
        ),
        RegistryWrite::Weight { role, weight } => (
            format!("{WEIGHTS}{role}"),
            Some(
                WeightPb {
                    weight: weight.get(),
                }
                .encode_to_vec(),
            ),
        ),
        RegistryWrite::Quota { role, quota } => (
            format!("{QUOTAS}{role}"),
            quota.as_ref().map(|q| v1::Quota::from(q).encode_to_vec()),
        ),
        RegistryWrite::Artifact(a) => (
            format!("{ARTIFACTS}{}", a.digest),
            Some(
                ArtifactPb {
                    size: a.size,
                    stored_unix_millis: a.stored_unix_millis,
                    output: a.kind == ArtifactKind::Output,
                    owners: a.owners.iter().cloned().collect(),
                }
                .encode_to_vec(),
            ),
        ),
        RegistryWrite::TaskOutputs(o) => (
            format!("{OUTPUTS}{}/{}", o.framework_id, o.task_id),
            Some(
                OutputsPb {
                    agent_id: o
                        .agent_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    state: o.state.to_i32(),
                    reason: o.reason.to_i32(),
                    finished_unix_millis: o.finished_unix_millis,
                    outputs: o.outputs.iter().map(Into::into).collect(),
                    not_kept: o.not_kept.clone().unwrap_or_default(),
                    owner: o.owner.clone().unwrap_or_default(),
                }
                .encode_to_vec(),
            ),
        ),
        RegistryWrite::DropArtifact(digest) => (format!("{ARTIFACTS}{digest}"), None),
        RegistryWrite::DropTaskOutputs((framework, task)) => {
            (format!("{OUTPUTS}{framework}/{task}"), None)
        }
        RegistryWrite::Kv {
            framework,
            key,
            entry,
        } => (
            format!("{KV}{framework}/{key}"),
            entry.as_ref().map(|(value, version)| {
                KvPb {
                    value: value.clone(),
                    version: *version,
                }
                .encode_to_vec()
            }),
        ),
    };
    KeyWrite { key, value }
}

/// Rebuilds the registry's contents from its keys and values (in any order).
pub(crate) fn decode<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Recovered, StoreError>
where
    K: AsRef<str>,
    V: AsRef<[u8]>,
{
    let mut out = Recovered::default();
    for (key, value) in pairs {
        let (key, value) = (key.as_ref(), value.as_ref());
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        decode_one(&mut out, key, value).map_err(corrupt)?;
    }
    // Stable order: recovery and its logs do not depend on the backend's iteration order.
    out.agents.sort_by(|a, b| a.id.cmp(&b.id));
    out.frameworks.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn decode_one(out: &mut Recovered, key: &str, value: &[u8]) -> Result<(), String> {
    let proto = |e: ProtoError| e.to_string();
    let wire = |e: prost::DecodeError| e.to_string();
    if let Some(id) = key.strip_prefix(AGENTS) {
        let pb = AgentPb::decode(value).map_err(wire)?;
        if pb.id != id {
            return Err(format!("holds agent {:?}", pb.id));
        }
        let info = pb.info.as_ref().ok_or("no agent info")?;
        out.agents.push(AgentRecord {
            id: parse_id("id", &pb.id).map_err(proto)?,
            info: AgentInfo::try_from(info).map_err(proto)?,
            state: AgentState::from_proto("state", pb.state).map_err(proto)?,
            registered_unix_millis: pb.registered_unix_millis,
            drain: pb.drain.map(|d| DrainRecord {
                deadline_unix_millis: d.deadline_unix_millis,
                mark_gone: d.mark_gone,
            }),
            reservations: pb
                .reservations
                .iter()
                .map(|r| {
                    Ok((
                        Role::new(&r.role).map_err(|e| e.to_string())?,
                        corral_proto::convert::require("resources", r.resources.as_ref())
                            .map_err(proto)?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        });
    } else if let Some(id) = key.strip_prefix(FRAMEWORKS) {
        let pb = FrameworkPb::decode(value).map_err(wire)?;
        let info =
            FrameworkInfo::try_from(pb.info.as_ref().ok_or("no framework info")?).map_err(proto)?;
        let id = parse_id("id", id).map_err(proto)?;
        if info.id.as_ref() != Some(&id) {
            return Err(format!("holds framework {:?}", info.id));
        }
        out.frameworks.push(FrameworkRecord {
            id,
            info,
            registered_unix_millis: pb.registered_unix_millis,
            disconnected_unix_millis: pb.disconnected_unix_millis,
            removed: pb.removed,
        });
    } else if let Some(role) = key.strip_prefix(WEIGHTS) {
        let pb = WeightPb::decode(value).map_err(wire)?;
        let role = Role::new(role).map_err(|e| e.to_string())?;
        let weight = Weight::new(pb.weight).map_err(|e| e.to_string())?;
        out.weights.push((role, weight));
    } else if let Some(role) = key.strip_prefix(QUOTAS) {
        let pb = v1::Quota::decode(value).map_err(wire)?;
        let role = Role::new(role).map_err(|e| e.to_string())?;
        out.quotas
            .push((role, Quota::try_from(&pb).map_err(proto)?));
    } else if let Some(digest) = key.strip_prefix(ARTIFACTS) {
        let pb = ArtifactPb::decode(value).map_err(wire)?;
        out.artifacts.push(ArtifactRecord {
            digest: digest.parse::<Digest>().map_err(|e| e.to_string())?,
            size: pb.size,
            stored_unix_millis: pb.stored_unix_millis,
            kind: if pb.output {
                ArtifactKind::Output
            } else {
                ArtifactKind::Module
            },
            owners: pb.owners.into_iter().collect(),
        });
    } else if let Some(rest) = key.strip_prefix(KV) {
        let pb = KvPb::decode(value).map_err(wire)?;
        let (framework, key) = rest.split_once('/').ok_or("not kv/<framework>/<key>")?;
        out.kv.push((
            parse_id("framework", framework).map_err(proto)?,
            key.to_owned(),
            pb.value,
            pb.version,
        ));
    } else if let Some(ids) = key.strip_prefix(OUTPUTS) {
        let pb = OutputsPb::decode(value).map_err(wire)?;
        let (framework, task) = ids
            .split_once('/')
            .ok_or("not outputs/<framework>/<task>")?;
        out.task_outputs.push(OutputsRecord {
            framework_id: parse_id("framework", framework).map_err(proto)?,
            task_id: parse_id("task", task).map_err(proto)?,
            agent_id: parse_optional_id("agent_id", Some(&pb.agent_id)).map_err(proto)?,
            state: TaskState::from_proto("state", pb.state).map_err(proto)?,
            reason: Reason::from_proto("reason", pb.reason).map_err(proto)?,
            finished_unix_millis: pb.finished_unix_millis,
            outputs: pb
                .outputs
                .iter()
                .map(TaskOutput::try_from)
                .collect::<Result<_, _>>()
                .map_err(proto)?,
            not_kept: (!pb.not_kept.is_empty()).then_some(pb.not_kept),
            owner: match pb.owner.as_str() {
                "" => None,
                owner => {
                    corral_proto::auth::check_principal(owner)
                        .map_err(|e| format!("owner: {e}"))?;
                    Some(pb.owner)
                }
            },
        });
    } else {
        return Err("not a registry key".into());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use corral_types::{QuotaLimits, Resources};

    use super::*;

    /// One of each record.
    pub(crate) fn sample() -> Vec<RegistryWrite> {
        let role = Role::new("eng/batch").unwrap();
        vec![
            RegistryWrite::Agent(AgentRecord {
                id: parse_id("id", "m-S1").unwrap(),
                info: AgentInfo {
                    hostname: "h".into(),
                    address: "127.0.0.1:5051".into(),
                    resources: Resources::new().with_cpus_milli(2000).with_mem_mib(512),
                    ..AgentInfo::default()
                },
                state: AgentState::Draining,
                registered_unix_millis: 7,
                drain: Some(DrainRecord {
                    deadline_unix_millis: Some(99),
                    mark_gone: true,
                }),
                reservations: vec![(role.clone(), Resources::new().with_cpus_milli(500))],
            }),
            RegistryWrite::Framework(FrameworkRecord {
                id: parse_id("id", "m-F2").unwrap(),
                info: FrameworkInfo {
                    id: Some(parse_id("id", "m-F2").unwrap()),
                    name: "batch".into(),
                    user: "me".into(),
                    roles: vec![role.clone()],
                    failover_timeout: Duration::from_secs(60),
                    labels: Default::default(),
                    principal: Some("alice".into()),
                },
                registered_unix_millis: 8,
                disconnected_unix_millis: Some(9),
                removed: false,
            }),
            RegistryWrite::Weight {
                role: role.clone(),
                weight: Weight::new(2.5).unwrap(),
            },
            RegistryWrite::Quota {
                role,
                quota: Some(Quota {
                    guarantee: Resources::new().with_cpus_milli(1000),
                    limit: QuotaLimits::at_most(Resources::new().with_mem_mib(1024)),
                }),
            },
            RegistryWrite::Artifact(ArtifactRecord {
                digest: Digest::of(b"module"),
                size: 6,
                stored_unix_millis: 10,
                kind: ArtifactKind::Output,
                owners: ["alice".to_owned(), "bob".to_owned()].into(),
            }),
            RegistryWrite::TaskOutputs(OutputsRecord {
                framework_id: parse_id("id", "m-F2").unwrap(),
                task_id: parse_id("id", "build-1").unwrap(),
                agent_id: Some(parse_id("id", "m-S1").unwrap()),
                state: TaskState::Failed,
                reason: Reason::DiskLimit,
                finished_unix_millis: 11,
                outputs: vec![TaskOutput {
                    path: "plots/a.png".into(),
                    size: 6,
                    digest: Digest::of(b"module"),
                }],
                not_kept: Some("big.bin (too large)".into()),
                owner: Some("carol".into()),
            }),
            RegistryWrite::Kv {
                framework: parse_id("id", "m-F2").unwrap(),
                key: "jobs/nightly/spec".into(),
                entry: Some((bytes::Bytes::from_static(b"{\"kind\": \"cron\"}"), 7)),
            },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        let writes = sample();
        let pairs: Vec<(String, Vec<u8>)> = writes
            .iter()
            .map(encode)
            .map(|w| (w.key, w.value.unwrap()))
            .collect();
        let r = decode(pairs).unwrap();
        for w in writes {
            match w {
                RegistryWrite::Agent(a) => assert_eq!(r.agents, vec![a]),
                RegistryWrite::Framework(f) => assert_eq!(r.frameworks, vec![f]),
                RegistryWrite::Weight { role, weight } => {
                    assert_eq!(r.weights, vec![(role, weight)])
                }
                RegistryWrite::Quota { role, quota } => {
                    assert_eq!(r.quotas, vec![(role, quota.unwrap())]);
                }
                RegistryWrite::Artifact(a) => assert_eq!(r.artifacts, vec![a]),
                RegistryWrite::TaskOutputs(o) => assert_eq!(r.task_outputs, vec![o]),
                RegistryWrite::DropTaskOutputs(_) | RegistryWrite::DropArtifact(_) => {
                    unreachable!("not in the sample")
                }
                RegistryWrite::Kv {
                    framework,
                    key,
                    entry,
                } => {
                    let (value, version) = entry.unwrap();
                    assert_eq!(r.kv, vec![(framework, key, value, version)]);
                }
            }
        }
    }

    #[test]
    fn dropping_an_artifact_deletes_its_key() {
        let digest = Digest::of(b"output");
        let indexed = encode(&RegistryWrite::Artifact(ArtifactRecord {
            digest,
            size: 6,
            stored_unix_millis: 1,
            kind: ArtifactKind::Output,
            owners: BTreeSet::new(),
        }));
        let dropped = encode(&RegistryWrite::DropArtifact(digest));
        assert_eq!(dropped.key, indexed.key);
        assert_eq!(dropped.value, None);
    }

    #[test]
    fn removing_a_quota_deletes_its_key() {
        let w = encode(&RegistryWrite::Quota {
            role: Role::default_role(),
            quota: None,
        });
        assert_eq!(w.key, "quotas/*");
        assert_eq!(w.value, None);
    }

    #[test]
    fn unreadable_records_name_their_key() {
        let err = decode([("agents/m-S1", b"\xff\xff\xff".as_slice())]).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { key, .. } if key == "agents/m-S1"),
            "{err}"
        );
        let err = decode([("weights/*", WeightPb { weight: -1.0 }.encode_to_vec())]).unwrap_err();
        assert!(err.to_string().contains("weights/*"), "{err}");
        let err = decode([("nonsense", Vec::new())]).unwrap_err();
        assert!(err.to_string().contains("not a registry key"), "{err}");
    }
}

//! Entry points for the fuzz targets (`fuzz/`, built with the `fuzzing` feature): each takes
//! bytes as a peer would send them, decodes them and turns them into what the core handles,
//! as the services and the registry do. Bad input must come back as an error, never a panic,
//! an abort or an unbounded allocation. Each says whether the input was accepted; the fuzz
//! targets drop that, the seeds' test below needs it.

use corral_proto::v1;
use prost::Message;

use crate::service::{agent_link, scheduler};
use crate::store::codec;

/// A scheduler's Subscribe, Call or Store request; the first byte picks which.
pub fn scheduler_request(data: &[u8]) -> bool {
    let Some((&kind, body)) = data.split_first() else {
        return false;
    };
    match kind % 3 {
        0 => v1::SubscribeRequest::decode(body)
            .is_ok_and(|r| scheduler::subscribe_event(0, &r).is_ok()),
        1 => v1::CallRequest::decode(body).is_ok_and(|r| scheduler::call_event(r, None).is_ok()),
        _ => v1::StoreRequest::decode(body).is_ok_and(|r| scheduler::store_event(r, None).is_ok()),
    }
}

/// A message on an agent's link: the first one (register or reregister) when the first byte
/// is even, a later one when it is odd.
pub fn agent_message(data: &[u8]) -> bool {
    let Some((&first, body)) = data.split_first() else {
        return false;
    };
    v1::AgentMessage::decode(body).is_ok_and(|msg| {
        if first % 2 == 0 {
            agent_link::first_event(0, msg).is_ok()
        } else {
            agent_link::agent_event(0, msg).is_ok()
        }
    })
}

/// Registry records, as the store hands them back on recovery. The input is a list of
/// `[key length: u8][key][value length: u16 LE][value]`.
pub fn registry(mut data: &[u8]) -> bool {
    let mut pairs = Vec::new();
    while let Some((&key_len, rest)) = data.split_first() {
        let Some((key, rest)) = rest.split_at_checked(usize::from(key_len)) else {
            break;
        };
        let Some((len, rest)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let Some((value, rest)) = rest.split_at_checked(usize::from(u16::from_le_bytes(*len)))
        else {
            break;
        };
        pairs.push((String::from_utf8_lossy(key).into_owned(), value));
        data = rest;
    }
    codec::decode(pairs).is_ok()
}

/// The seeds the fuzz targets above start from, kept under `fuzz/seeds/<target>/`: one
/// well-formed input per kind of request, message and record, so that fuzzing begins deep in
/// the decoders instead of rediscovering the wire format. The test checks that each is
/// accepted and that the files are current; `CORRAL_BLESS_SEEDS=1` rewrites them.
#[cfg(test)]
mod seeds {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use corral_proto::v1;
    use corral_proto::v1::agent_message::Kind as AgentKind;
    use corral_proto::v1::call_request::{self as call, Kind as CallKind};
    use corral_proto::v1::store_request::{self as store, Op as StoreOp};
    use corral_types::Digest;
    use prost::Message;

    const FRAMEWORK: &str = "m-F2";
    const AGENT: &str = "m-S1";
    const UUID: [u8; 16] = [7; 16];

    fn digest() -> String {
        Digest::of(b"module").to_string()
    }

    fn resources(cpus_milli: u64) -> v1::Resources {
        v1::Resources {
            cpus_milli,
            mem_bytes: 64 << 20,
            disk_bytes: 16 << 20,
            scalars_milli: [("gpus".to_owned(), 1000)].into(),
        }
    }

    fn labels() -> BTreeMap<String, String> {
        [("team".to_owned(), "data".to_owned())].into()
    }

    /// A task using every field a launch may carry.
    fn task() -> v1::TaskInfo {
        let input = |path: &str, source| v1::InputFile {
            path: path.into(),
            source: Some(source),
        };
        use v1::input_file::Source;
        v1::TaskInfo {
            task_id: "build-1".into(),
            name: "build".into(),
            module: Some(v1::ModuleRef {
                source: Some(v1::module_ref::Source::Digest(digest())),
            }),
            entrypoint: "_start".into(),
            args: vec!["--level".into(), "3".into()],
            env: vec![v1::EnvVar {
                name: "TOKEN".into(),
                value: "s3cret".into(),
                secret: true,
            }],
            inputs: vec![
                input("data/in.txt", Source::Contents(b"hello".to_vec().into())),
                input("data/model.bin", Source::Artifact(digest())),
            ],
            resources: Some(resources(500)),
            limits: Some(v1::TaskLimits {
                max_fuel: Some(1_000_000),
                timeout_millis: Some(60_000),
                max_output_bytes: Some(1 << 20),
            }),
            labels: labels(),
            argv0: "build.wasm".into(),
            preopens: vec![v1::Preopen {
                guest_path: "/data".into(),
                sandbox_path: "data".into(),
            }],
            stdin: b"input".to_vec().into(),
            checkpoint: Default::default(),
            owner: "alice".into(),
        }
    }

    fn status() -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: "build-1".into(),
            framework_id: FRAMEWORK.into(),
            agent_id: AGENT.into(),
            state: v1::TaskState::Running.into(),
            reason: v1::Reason::Launched.into(),
            message: "running".into(),
            usage: Some(v1::Usage {
                fuel_consumed: 10,
                cpu_time_nanos: 20,
                peak_memory_bytes: 30,
                wall_time_nanos: 40,
                exit_code: None,
            }),
            timestamp_millis: 1,
            uuid: UUID.to_vec().into(),
            source: v1::StatusSource::Agent.into(),
            healthy: Some(true),
            progress: Some(v1::Progress {
                fraction: 0.5,
                message: "half".into(),
            }),
            outputs: vec![v1::TaskOutput {
                path: "plots/a.png".into(),
                size: 6,
                digest: digest(),
            }],
            ..Default::default()
        }
    }

    fn agent_info() -> v1::AgentInfo {
        v1::AgentInfo {
            hostname: "h".into(),
            address: "127.0.0.1:5051".into(),
            resources: Some(resources(4000)),
            attributes: vec![v1::Attribute {
                key: "zone".into(),
                value: "a".into(),
            }],
            version: "0.1.0".into(),
            labels: labels(),
            fuel_per_cpu_second: 1_000_000_000,
            static_reservations: vec![v1::StaticReservation {
                role: "analytics".into(),
                resources: Some(resources(1000)),
            }],
            ..Default::default()
        }
    }

    /// Named inputs of one target.
    type Seeds = Vec<(&'static str, Vec<u8>)>;

    fn scheduler() -> Seeds {
        let subscribe = v1::SubscribeRequest {
            framework_info: Some(v1::FrameworkInfo {
                id: Some(FRAMEWORK.into()),
                name: "batch".into(),
                user: "me".into(),
                roles: vec!["analytics".into()],
                failover_timeout_millis: 60_000,
                labels: labels(),
                principal: Some("alice".into()),
            }),
            suppressed_roles: vec!["analytics".into()],
        };
        let filters = Some(v1::Filters {
            refuse_seconds: Some(5.0),
        });
        let operation = |id: &str, kind| v1::Operation {
            id: id.into(),
            kind: Some(kind),
        };
        use v1::operation::{Kind as Op, Launch, Reserve, Unreserve};
        let calls = [
            (
                "call-accept",
                CallKind::Accept(call::Accept {
                    offer_ids: vec!["m-O1".into()],
                    operations: vec![
                        operation(
                            "",
                            Op::Launch(Launch {
                                tasks: vec![task()],
                            }),
                        ),
                        operation(
                            "r1",
                            Op::Reserve(Reserve {
                                role: "analytics".into(),
                                resources: Some(resources(1000)),
                            }),
                        ),
                        operation(
                            "r2",
                            Op::Unreserve(Unreserve {
                                role: "analytics".into(),
                                resources: Some(resources(1000)),
                            }),
                        ),
                    ],
                    filters,
                }),
            ),
            (
                "call-decline",
                CallKind::Decline(call::Decline {
                    offer_ids: vec!["m-O1".into()],
                    filters,
                }),
            ),
            (
                "call-revive",
                CallKind::Revive(call::Revive {
                    roles: vec!["analytics".into()],
                }),
            ),
            (
                "call-suppress",
                CallKind::Suppress(call::Suppress {
                    roles: vec!["analytics".into()],
                }),
            ),
            (
                "call-kill",
                CallKind::Kill(call::Kill {
                    task_id: "build-1".into(),
                    agent_id: Some(AGENT.into()),
                }),
            ),
            (
                "call-acknowledge",
                CallKind::Acknowledge(call::Acknowledge {
                    acks: vec![v1::Ack {
                        agent_id: AGENT.into(),
                        task_id: "build-1".into(),
                        uuid: UUID.to_vec().into(),
                    }],
                }),
            ),
            (
                "call-reconcile",
                CallKind::Reconcile(call::Reconcile {
                    tasks: vec![v1::ReconcileTask {
                        task_id: "build-1".into(),
                        agent_id: Some(AGENT.into()),
                    }],
                }),
            ),
            ("call-teardown", CallKind::Teardown(call::Teardown {})),
        ];
        let stores = [
            (
                "store-get",
                StoreOp::Get(store::Get {
                    key: "jobs/a".into(),
                }),
            ),
            (
                "store-put",
                StoreOp::Put(store::Put {
                    key: "jobs/a".into(),
                    value: b"{}".to_vec().into(),
                    expected_version: Some(1),
                }),
            ),
            (
                "store-delete",
                StoreOp::Delete(store::Delete {
                    key: "jobs/a".into(),
                    expected_version: Some(2),
                }),
            ),
            (
                "store-list",
                StoreOp::List(store::List {
                    prefix: "jobs/".into(),
                }),
            ),
        ];
        let mut seeds = vec![("subscribe", framed(0, &subscribe))];
        seeds.extend(calls.into_iter().map(|(name, kind)| {
            let req = v1::CallRequest {
                framework_id: FRAMEWORK.into(),
                stream_id: "s1".into(),
                kind: Some(kind),
            };
            (name, framed(1, &req))
        }));
        seeds.extend(stores.into_iter().map(|(name, op)| {
            let req = v1::StoreRequest {
                framework_id: FRAMEWORK.into(),
                stream_id: "s1".into(),
                op: Some(op),
            };
            (name, framed(2, &req))
        }));
        seeds
    }

    fn agent() -> Seeds {
        use v1::agent_message::{
            Heartbeat, ModuleCached, ModuleEvicted, ReRegister, Register, StatusUpdate,
        };
        let message = |first: u8, kind| framed(first, &v1::AgentMessage { kind: Some(kind) });
        vec![
            (
                "register",
                message(
                    0,
                    AgentKind::Register(Register {
                        agent_info: Some(agent_info()),
                        cached_modules: vec![digest()],
                    }),
                ),
            ),
            (
                "reregister",
                message(
                    0,
                    AgentKind::Reregister(ReRegister {
                        agent_id: AGENT.into(),
                        agent_info: Some(agent_info()),
                        tasks: vec![v1::RunningTask {
                            framework_id: FRAMEWORK.into(),
                            task: Some(task()),
                            status: Some(status()),
                        }],
                        unacknowledged_updates: vec![status()],
                        cached_modules: vec![digest()],
                        last_epoch: 3,
                    }),
                ),
            ),
            ("heartbeat", message(1, AgentKind::Heartbeat(Heartbeat {}))),
            (
                "status-update",
                message(
                    1,
                    AgentKind::StatusUpdate(StatusUpdate {
                        status: Some(status()),
                    }),
                ),
            ),
            (
                "module-cached",
                message(
                    1,
                    AgentKind::ModuleCached(ModuleCached { digest: digest() }),
                ),
            ),
            (
                "module-evicted",
                message(
                    1,
                    AgentKind::ModuleEvicted(ModuleEvicted { digest: digest() }),
                ),
            ),
        ]
    }

    /// One record of each kind, then all of them together.
    fn registry() -> Seeds {
        let records: Vec<Vec<u8>> = crate::store::codec::tests::sample()
            .iter()
            .map(|w| {
                let w = crate::store::codec::encode(w);
                let value = w.value.expect("the sample sets every key");
                let mut out = vec![u8::try_from(w.key.len()).unwrap()];
                out.extend(w.key.as_bytes());
                out.extend(u16::try_from(value.len()).unwrap().to_le_bytes());
                out.extend(value);
                out
            })
            .collect();
        let names = [
            "agent",
            "framework",
            "weight",
            "quota",
            "artifact",
            "outputs",
            "kv",
        ];
        assert_eq!(records.len(), names.len(), "name each sample record");
        let mut seeds: Vec<_> = names.into_iter().zip(records.iter().cloned()).collect();
        seeds.push(("all", records.concat()));
        seeds
    }

    fn framed(first: u8, message: &impl Message) -> Vec<u8> {
        let mut out = vec![first];
        message.encode(&mut out).expect("a Vec grows");
        out
    }

    #[test]
    fn every_seed_is_accepted_and_current() {
        type Accepts = fn(&[u8]) -> bool;
        let targets: [(&str, Accepts, Seeds); 3] = [
            ("scheduler_requests", super::scheduler_request, scheduler()),
            ("agent_messages", super::agent_message, agent()),
            ("registry_records", super::registry, registry()),
        ];
        let bless = std::env::var_os("CORRAL_BLESS_SEEDS").is_some();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        for (target, accepts, seeds) in targets {
            let dir = root.join(target);
            if bless {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
            }
            for (name, bytes) in &seeds {
                assert!(accepts(bytes), "{target}: seed {name} is refused");
                let path = dir.join(name);
                if bless {
                    std::fs::write(&path, bytes).unwrap();
                }
                let kept = std::fs::read(&path).unwrap_or_default();
                assert!(
                    kept == *bytes,
                    "{} is not current: run this test with CORRAL_BLESS_SEEDS=1",
                    path.display()
                );
            }
            let files = std::fs::read_dir(&dir).unwrap().count();
            assert_eq!(files, seeds.len(), "{}: files no seed names", dir.display());
        }
    }

    /// A seed's task must reach the core whole, not as a task that fails its launch.
    #[test]
    fn the_seed_task_is_valid() {
        corral_proto::TaskInfo::try_from(&task()).unwrap();
    }
}

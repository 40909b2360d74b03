//! TaskInfo and TaskStatus: round trips through the wire format and validation errors.

use std::time::Duration;

use bytes::Bytes;
use corral_proto::convert::each;
use corral_proto::{
    EnvVar, InputFile, InputSource, ModuleSource, ProtoError, TaskInfo, TaskStatus, UpdateUuid,
    limits, v1,
};
use corral_types::{
    Digest, Preopen, Reason, Resources, StatusSource, TaskId, TaskLimits, TaskState, TrapKind,
    Usage,
};
use prost::Message;

fn task() -> TaskInfo {
    TaskInfo {
        id: TaskId::new("sieve-1").unwrap(),
        name: "sieve".into(),
        module: ModuleSource::Digest(Digest::of(b"\0asm")),
        entrypoint: "_start".into(),
        args: vec!["--n".into(), "1000".into()],
        env: vec![
            EnvVar::plain("RUST_LOG", "info"),
            EnvVar::plain("A", ""),
            EnvVar::secret("API_KEY", "s3cr3t-value"),
        ],
        inputs: vec![
            InputFile {
                path: "in/data.txt".into(),
                source: InputSource::Contents(Bytes::from_static(b"1 2 3")),
            },
            InputFile {
                path: "lib".into(),
                source: InputSource::TarArchive(Bytes::from_static(b"tar")),
            },
            InputFile {
                path: "big".into(),
                source: InputSource::TarArtifact(Digest::of(b"a large tar")),
            },
        ],
        resources: Resources::new().with_cpus_milli(250).with_mem_mib(64),
        limits: TaskLimits {
            max_fuel: Some(1_000_000),
            timeout: Some(Duration::from_secs(30)),
            max_output_bytes: None,
        },
        labels: [("team".to_owned(), "search".to_owned())].into(),
        argv0: Some("sieve.wasm".into()),
        preopens: vec![
            Preopen {
                guest_path: "/data".into(),
                sandbox_path: "lib".into(),
            },
            Preopen {
                guest_path: ".".into(),
                sandbox_path: ".".into(),
            },
        ],
        stdin: Bytes::from_static(b"line one\nline two\n"),
        checkpoint: Bytes::from_static(b"\x01\x02"),
        owner: Some("alice".into()),
    }
}

#[test]
fn a_secret_env_value_survives_the_wire_and_never_shows_in_debug_output() {
    let t = task();
    let back = through_the_wire(&t).unwrap();
    assert_eq!(back.env[2], EnvVar::secret("API_KEY", "s3cr3t-value"));
    let message = v1::TaskInfo::from(&t);
    for shown in [
        format!("{t:?}"),
        format!("{message:?}"),
        format!("{back:#?}"),
    ] {
        assert!(
            shown.contains("API_KEY") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        // Plain values show as they are.
        assert!(
            shown.contains("RUST_LOG") && shown.contains("info"),
            "{shown}"
        );
    }
}

/// Domain -> message -> bytes -> message -> domain.
fn through_the_wire(t: &TaskInfo) -> Result<TaskInfo, ProtoError> {
    let bytes = v1::TaskInfo::from(t).encode_to_vec();
    TaskInfo::try_from(&v1::TaskInfo::decode(bytes.as_slice()).unwrap())
}

#[test]
fn task_info_round_trips() {
    let t = task();
    assert_eq!(through_the_wire(&t).unwrap(), t);

    let mut url = task();
    url.module = ModuleSource::Url {
        url: "https://example.com/m.wasm".into(),
        digest: Some(Digest::of(b"m")),
    };
    url.inputs = vec![InputFile {
        path: "./x".into(),
        source: InputSource::HostPath("/srv/x".into()),
    }];
    url.limits = TaskLimits::default();
    assert_eq!(through_the_wire(&url).unwrap(), url);

    let mut file = task();
    file.module = ModuleSource::File("/opt/tasks/hello.wasm".into());
    assert_eq!(through_the_wire(&file).unwrap(), file);
    assert_eq!(file.module.to_string(), "file:///opt/tasks/hello.wasm");
}

#[test]
fn empty_argv0_means_the_task_id_and_no_preopens_the_root() {
    let mut p = v1::TaskInfo::from(&task());
    p.argv0.clear();
    p.preopens.clear();
    let t = TaskInfo::try_from(&p).unwrap();
    assert_eq!((t.argv0, t.preopens), (None, Vec::new()));
}

#[test]
fn empty_entrypoint_means_start() {
    let mut p = v1::TaskInfo::from(&task());
    p.entrypoint.clear();
    assert_eq!(TaskInfo::try_from(&p).unwrap().entrypoint, "_start");
}

/// A change to a valid task message.
type Edit = fn(&mut v1::TaskInfo);

/// Applies `edit` to a valid task message and returns the validation error.
fn error_after(edit: Edit) -> ProtoError {
    let mut p = v1::TaskInfo::from(&task());
    edit(&mut p);
    TaskInfo::try_from(&p).unwrap_err()
}

#[test]
fn invalid_tasks_name_the_field() {
    use v1::input_file::Source as In;
    use v1::module_ref::Source as Mod;

    let cases: Vec<(Edit, &str)> = vec![
        (|t| t.task_id = "a/b".into(), "task_id"),
        (|t| t.task_id.clear(), "task_id"),
        (|t| t.resources = None, "resources"),
        (
            |t| t.resources.as_mut().unwrap().cpus_milli = 0,
            "resources.cpus_milli",
        ),
        (
            |t| {
                let r = t.resources.as_mut().unwrap();
                r.scalars_milli.insert("gpu!".into(), 1);
            },
            r#"resources.scalars_milli["gpu!"]"#,
        ),
        (|t| t.module = None, "module"),
        (
            |t| t.module = Some(v1::ModuleRef { source: None }),
            "module.source",
        ),
        (
            |t| {
                t.module = Some(v1::ModuleRef {
                    source: Some(Mod::Digest("sha256:abc".into())),
                })
            },
            "module.digest",
        ),
        (
            |t| {
                t.module = Some(v1::ModuleRef {
                    source: Some(Mod::Url(v1::UrlModule {
                        url: "ftp://x/m.wasm".into(),
                        digest: String::new(),
                    })),
                })
            },
            "module.url.url",
        ),
        (
            |t| {
                t.module = Some(v1::ModuleRef {
                    source: Some(Mod::FilePath("rel/m.wasm".into())),
                })
            },
            "module.file_path",
        ),
        (|t| t.owner = "not a principal".into(), "owner"),
        (|t| t.owner = "x".repeat(129), "owner"),
        (|t| t.args[1] = "a\0b".into(), "args[1]"),
        (|t| t.env[0].name = "A=B".into(), "env[0].name"),
        (|t| t.env[1].name.clear(), "env[1].name"),
        (
            |t| t.inputs[0].path = "../etc/passwd".into(),
            "inputs[0].path",
        ),
        (
            |t| t.inputs[0].path = "/etc/passwd".into(),
            "inputs[0].path",
        ),
        (|t| t.inputs[1].path.clear(), "inputs[1].path"),
        (|t| t.inputs[1].source = None, "inputs[1].source"),
        (
            |t| t.inputs[0].source = Some(In::HostPath("x".into())),
            "inputs[0].host_path",
        ),
        (|t| t.argv0 = "a\0".into(), "argv0"),
        (
            |t| t.stdin = vec![b'x'; limits::MAX_STDIN_BYTES + 1].into(),
            "stdin",
        ),
        (
            |t| t.preopens[0].guest_path.clear(),
            "preopens[0].guest_path",
        ),
        (
            |t| t.preopens[1].guest_path = "a\0b".into(),
            "preopens[1].guest_path",
        ),
        (
            |t| t.preopens[0].guest_path = "x".repeat(limits::MAX_PREOPEN_NAME_BYTES + 1),
            "preopens[0].guest_path",
        ),
        (
            |t| t.preopens[1].sandbox_path = "../up".into(),
            "preopens[1].sandbox_path",
        ),
        (
            |t| t.preopens[1].sandbox_path.clear(),
            "preopens[1].sandbox_path",
        ),
        (
            |t| t.preopens = vec![t.preopens[0].clone(); limits::MAX_PREOPENS + 1],
            "preopens",
        ),
        (
            |t| t.limits.as_mut().unwrap().max_fuel = Some(0),
            "limits.max_fuel",
        ),
        (
            |t| t.limits.as_mut().unwrap().timeout_millis = Some(0),
            "limits.timeout_millis",
        ),
    ];
    for (edit, field) in cases {
        let err = error_after(edit);
        assert_eq!(err.field(), field, "{err}");
    }
}

#[test]
fn errors_in_a_batch_name_the_element() {
    let mut bad = v1::TaskInfo::from(&task());
    bad.resources = None;
    let batch = [v1::TaskInfo::from(&task()), bad];
    let err = each("tasks", &batch, TaskInfo::try_from)
        .map_err(|e| e.within("launch"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "launch.tasks[1].resources: required field is missing"
    );
    assert!(matches!(err, ProtoError::MissingField { .. }));
}

#[test]
fn a_long_outputs_note_is_cut_not_refused() {
    let mut wire = v1::TaskStatus::from(&status());
    wire.outputs_not_kept = "é".repeat(limits::MAX_NOTE_BYTES);
    let status = TaskStatus::try_from(&wire).unwrap();
    let note = status.outputs_not_kept.unwrap();
    assert!(note.len() <= limits::MAX_NOTE_BYTES && note.ends_with('…'));
}

fn status() -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new("t1").unwrap(),
        framework_id: "fw-1".parse().unwrap(),
        agent_id: Some("agent-1".parse().unwrap()),
        state: TaskState::Failed,
        reason: Reason::Trap,
        message: "wasm trap: integer divide by zero".into(),
        usage: Some(Usage {
            fuel_consumed: 12_345,
            cpu_time: Duration::from_micros(1500),
            peak_memory_bytes: 1 << 20,
            wall_time: Duration::from_millis(3),
            exit_code: None,
        }),
        timestamp_millis: 1_700_000_000_000,
        uuid: Some(UpdateUuid::from_bytes([7; 16])),
        source: StatusSource::Agent,
        trap_kind: Some(TrapKind::Arithmetic),
        healthy: None,
        progress: None,
        result_json: None,
        checkpoint: Default::default(),
        outputs: vec![corral_types::TaskOutput {
            path: "plots/a.png".into(),
            size: 3,
            digest: corral_types::Digest::of(b"png"),
        }],
        outputs_not_kept: Some("big.bin (over the limit)".into()),
    }
}

#[test]
fn task_status_round_trips() {
    let s = status();
    let bytes = v1::TaskStatus::from(&s).encode_to_vec();
    let back = TaskStatus::try_from(&v1::TaskStatus::decode(bytes.as_slice()).unwrap()).unwrap();
    assert_eq!(back, s);

    // Reconciliation answers: no agent, no uuid, no usage, from the master.
    let r = TaskStatus {
        agent_id: None,
        state: TaskState::Unknown,
        reason: Reason::Reconciliation,
        usage: None,
        uuid: None,
        source: StatusSource::Master,
        trap_kind: None,
        ..status()
    };
    let p = v1::TaskStatus::from(&r);
    assert!(p.uuid.is_empty() && p.agent_id.is_empty());
    assert_eq!(TaskStatus::try_from(&p).unwrap(), r);
    assert_eq!(
        UpdateUuid::from_bytes([0xab; 16]).to_string(),
        "abababab-abab-abab-abab-abababababab"
    );
}

#[test]
fn invalid_statuses_are_rejected() {
    let mut p = v1::TaskStatus::from(&status());
    p.uuid = Bytes::from_static(b"short");
    assert_eq!(TaskStatus::try_from(&p).unwrap_err().field(), "uuid");

    let mut p = v1::TaskStatus::from(&status());
    p.state = 0;
    assert_eq!(
        TaskStatus::try_from(&p).unwrap_err(),
        ProtoError::missing("state")
    );

    let mut p = v1::TaskStatus::from(&status());
    p.reason = 4242;
    assert!(matches!(
        TaskStatus::try_from(&p).unwrap_err(),
        ProtoError::UnknownEnumValue { value: 4242, .. }
    ));

    // An unset source means the agent (older agents do not send it).
    let mut p = v1::TaskStatus::from(&status());
    p.source = 0;
    assert_eq!(
        TaskStatus::try_from(&p).unwrap().source,
        StatusSource::Agent
    );
}

#[test]
fn usage_saturates_instead_of_wrapping() {
    let u = Usage {
        cpu_time: Duration::MAX,
        ..Usage::default()
    };
    assert_eq!(v1::Usage::from(u).cpu_time_nanos, u64::MAX);
}

#[test]
fn a_not_kept_list_shows_five_and_counts_the_rest() {
    let few = ["a (too large)", "b (a link)"];
    assert_eq!(
        corral_proto::not_kept_list(&few),
        "a (too large), b (a link)"
    );
    let many: Vec<String> = (0..7).map(|i| format!("f{i}")).collect();
    assert_eq!(
        corral_proto::not_kept_list(&many),
        "f0, f1, f2, f3, f4 and 2 more"
    );
}

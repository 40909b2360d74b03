//! Frameworks' stores: reads and writes by the current subscription only, versions and
//! compare-and-set, limits, every write recorded before it is answered, recovery, and
//! removal with the framework.

use bytes::Bytes;
use corral_proto::limits::{MAX_STORE_KEYS, MAX_STORE_VALUE_BYTES};

use super::*;

fn kv(core: &mut MasterCore, fw: &FrameworkId, stream: &str, op: KvOp) -> Vec<Effect> {
    core.handle(
        Event::Kv {
            framework_id: fw.clone(),
            stream_id: stream.into(),
            principal: None,
            op,
        },
        ms(5),
    )
}

/// The reply of the last effect.
fn answer(fx: &[Effect]) -> Result<Vec<KvEntry>, ServiceError> {
    match fx.last() {
        Some(Effect::Reply(Reply::Kv(r))) => r.clone(),
        other => panic!("no store reply: {other:?}"),
    }
}

fn put(key: &str, value: &'static [u8], expected: Option<u64>) -> KvOp {
    KvOp::Put {
        key: key.into(),
        value: Bytes::from_static(value),
        expected,
    }
}

fn get(key: &str) -> KvOp {
    KvOp::Get { key: key.into() }
}

fn entry(key: &str, value: &'static [u8], version: u64) -> KvEntry {
    KvEntry {
        key: key.into(),
        value: Bytes::from_static(value),
        version,
    }
}

#[test]
fn writes_are_recorded_before_they_are_answered_and_versions_grow() {
    let mut core = MasterCore::new(config());
    let (fw, stream) = subscribe(&mut core, FW, None, Duration::from_secs(60), ms(0));
    let fx = kv(&mut core, &fw, &stream, put("jobs/a", b"spec-a", Some(0)));
    assert_eq!(
        fx,
        vec![
            Effect::Persist(RegistryWrite::Kv {
                framework: fw.clone(),
                key: "jobs/a".into(),
                entry: Some((Bytes::from_static(b"spec-a"), 1)),
            }),
            Effect::Reply(Reply::Kv(Ok(vec![entry("jobs/a", b"", 1)]))),
        ]
    );
    kv(&mut core, &fw, &stream, put("jobs/b", b"spec-b", None));
    kv(&mut core, &fw, &stream, put("other", b"x", None));
    let fx = kv(&mut core, &fw, &stream, put("jobs/a", b"spec-a2", Some(1)));
    assert_eq!(answer(&fx), Ok(vec![entry("jobs/a", b"", 4)]));

    assert_eq!(
        answer(&kv(&mut core, &fw, &stream, get("jobs/a"))),
        Ok(vec![entry("jobs/a", b"spec-a2", 4)])
    );
    assert_eq!(
        answer(&kv(&mut core, &fw, &stream, get("nope"))),
        Ok(vec![])
    );
    let listed = answer(&kv(
        &mut core,
        &fw,
        &stream,
        KvOp::List {
            prefix: "jobs/".into(),
        },
    ));
    assert_eq!(
        listed,
        Ok(vec![
            entry("jobs/a", b"spec-a2", 4),
            entry("jobs/b", b"spec-b", 2)
        ])
    );
    // Reads write nothing.
    let fx = kv(&mut core, &fw, &stream, get("jobs/a"));
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::Persist(_))),
        "{fx:?}"
    );
}

#[test]
fn a_stale_version_is_refused_and_changes_nothing() {
    let mut core = MasterCore::new(config());
    let (fw, stream) = subscribe(&mut core, FW, None, Duration::from_secs(60), ms(0));
    kv(&mut core, &fw, &stream, put("k", b"v1", None));
    for op in [
        put("k", b"v2", Some(0)),
        put("k", b"v2", Some(7)),
        KvOp::Delete {
            key: "k".into(),
            expected: Some(2),
        },
    ] {
        let fx = kv(&mut core, &fw, &stream, op);
        assert!(
            matches!(answer(&fx), Err(ServiceError::FailedPrecondition(m)) if m.contains("version 1")),
            "{fx:?}"
        );
        assert_eq!(fx.len(), 1, "nothing recorded: {fx:?}");
    }
    let fx = kv(
        &mut core,
        &fw,
        &stream,
        KvOp::Delete {
            key: "k".into(),
            expected: Some(1),
        },
    );
    assert_eq!(
        fx[0],
        Effect::Persist(RegistryWrite::Kv {
            framework: fw.clone(),
            key: "k".into(),
            entry: None,
        })
    );
    assert_eq!(answer(&kv(&mut core, &fw, &stream, get("k"))), Ok(vec![]));
}

#[test]
fn only_the_current_subscription_may_use_the_store() {
    let mut core = MasterCore::new(config());
    let (fw, stream) = subscribe(&mut core, FW, None, Duration::from_secs(60), ms(0));
    let stale = kv(&mut core, &fw, "an-older-stream", put("k", b"v", None));
    assert!(matches!(
        answer(&stale),
        Err(ServiceError::FailedPrecondition(_))
    ));
    let unknown = FrameworkId::new("nobody").unwrap();
    let fx = kv(&mut core, &unknown, &stream, get("k"));
    assert!(matches!(answer(&fx), Err(ServiceError::NotFound { .. })));
}

#[test]
fn keys_values_and_totals_are_bounded() {
    let mut core = MasterCore::new(config());
    let (fw, stream) = subscribe(&mut core, FW, None, Duration::from_secs(60), ms(0));
    for bad in ["", "a\0b"] {
        let fx = kv(&mut core, &fw, &stream, put(bad, b"v", None));
        assert!(
            matches!(answer(&fx), Err(ServiceError::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    let long = "k".repeat(corral_proto::limits::MAX_STORE_KEY_BYTES + 1);
    let fx = kv(&mut core, &fw, &stream, put(&long, b"v", None));
    assert!(matches!(answer(&fx), Err(ServiceError::InvalidArgument(_))));
    let big = KvOp::Put {
        key: "big".into(),
        value: Bytes::from(vec![0; MAX_STORE_VALUE_BYTES + 1]),
        expected: None,
    };
    assert!(matches!(
        answer(&kv(&mut core, &fw, &stream, big)),
        Err(ServiceError::InvalidArgument(_))
    ));
    // The byte total: 32 values of 256 KiB fill 8 MiB with the keys' bytes on top.
    let mut refused = None;
    for i in 0..40 {
        let op = KvOp::Put {
            key: format!("v{i:02}"),
            value: Bytes::from(vec![0; MAX_STORE_VALUE_BYTES]),
            expected: None,
        };
        if let Err(e) = answer(&kv(&mut core, &fw, &stream, op)) {
            refused = Some((i, e));
            break;
        }
    }
    let (at, error) = refused.expect("the total is bounded");
    assert_eq!(at, 31, "{error}");
    assert!(
        matches!(error, ServiceError::ResourceExhausted(_)),
        "{error}"
    );
    // Replacing a value frees what it held.
    let op = KvOp::Put {
        key: "v00".into(),
        value: Bytes::from_static(b"small"),
        expected: None,
    };
    assert!(answer(&kv(&mut core, &fw, &stream, op)).is_ok());

    // The key count.
    let (fw2, stream2) = subscribe(&mut core, FW + 1, None, Duration::from_secs(60), ms(0));
    for i in 0..MAX_STORE_KEYS {
        let op = KvOp::Put {
            key: format!("k{i}"),
            value: Bytes::new(),
            expected: None,
        };
        assert!(answer(&kv(&mut core, &fw2, &stream2, op)).is_ok());
    }
    let fx = kv(&mut core, &fw2, &stream2, put("one-more", b"", None));
    assert!(matches!(
        answer(&fx),
        Err(ServiceError::ResourceExhausted(_))
    ));
    // An existing key may still be rewritten.
    assert!(answer(&kv(&mut core, &fw2, &stream2, put("k0", b"x", None))).is_ok());
}

#[test]
fn a_recovered_store_answers_and_a_removed_framework_loses_it() {
    let mut core = MasterCore::new(config());
    let (fw, _) = subscribe(&mut core, FW, None, Duration::from_secs(60), ms(0));
    let mut again = MasterCore::new(config());
    let record = core.framework_record_of(&fw).unwrap();
    again.recover(
        Recovered {
            frameworks: vec![record],
            kv: vec![
                (fw.clone(), "a".into(), Bytes::from_static(b"1"), 3),
                (fw.clone(), "b".into(), Bytes::from_static(b"2"), 9),
            ],
            ..Recovered::default()
        },
        ms(0),
    );
    let (same, stream) = subscribe(&mut again, FW, Some(&fw), Duration::from_secs(60), ms(1));
    assert_eq!(same, fw);
    assert_eq!(
        answer(&kv(&mut again, &fw, &stream, get("b"))),
        Ok(vec![entry("b", b"2", 9)])
    );
    // Versions go on from the highest recovered.
    let fx = kv(&mut again, &fw, &stream, put("c", b"3", None));
    assert_eq!(answer(&fx), Ok(vec![entry("c", b"", 10)]));

    let fx = call(&mut again, &fw, &stream, Call::Teardown, ms(2));
    let deleted: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(RegistryWrite::Kv {
                key, entry: None, ..
            }) => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["a", "b", "c"]);
}

//! Every count a peer controls in a request is bounded, and going past a bound is an error
//! naming the field: one test per place, each one element over.

use std::collections::BTreeMap;

use corral_proto::limits::{
    MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS, MAX_LIST_ITEMS,
};
use corral_proto::v1;
use v1::call_request::Kind;

use super::{agent_link, operator, scheduler};

fn over<T: Clone>(item: T) -> Vec<T> {
    vec![item; MAX_LIST_ITEMS + 1]
}

fn over_labels() -> BTreeMap<String, String> {
    (0..=MAX_LABELS)
        .map(|i| (i.to_string(), String::new()))
        .collect()
}

fn refused(what: &str, field: &str, err: impl std::fmt::Display) {
    let err = err.to_string();
    assert!(
        err.contains(field) && err.contains("at most"),
        "{what}: {err}"
    );
}

fn call(kind: Kind) -> v1::CallRequest {
    v1::CallRequest {
        framework_id: "f1".into(),
        stream_id: "s1".into(),
        kind: Some(kind),
    }
}

fn refused_call(field: &str, kind: Kind) {
    let err = scheduler::call_event(call(kind), None).expect_err(field);
    refused(field, field, err);
}

fn task() -> v1::TaskInfo {
    v1::TaskInfo {
        task_id: "t1".into(),
        module: Some(v1::ModuleRef {
            source: Some(v1::module_ref::Source::Digest(format!("sha256:{:064}", 0))),
        }),
        resources: Some(v1::Resources {
            cpus_milli: 100,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn agent_info() -> v1::AgentInfo {
    v1::AgentInfo {
        hostname: "h".into(),
        resources: Some(v1::Resources {
            cpus_milli: 1000,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn scheduler_calls_refuse_lists_past_the_bound() {
    let offers = over("o1".to_owned());
    refused_call(
        "accept.offer_ids",
        Kind::Accept(v1::call_request::Accept {
            offer_ids: offers.clone(),
            ..Default::default()
        }),
    );
    refused_call(
        "decline.offer_ids",
        Kind::Decline(v1::call_request::Decline {
            offer_ids: offers,
            ..Default::default()
        }),
    );
    refused_call(
        "accept.operations",
        Kind::Accept(v1::call_request::Accept {
            offer_ids: vec!["o1".into()],
            operations: over(v1::Operation::default()),
            ..Default::default()
        }),
    );
    let launch = v1::Operation {
        kind: Some(v1::operation::Kind::Launch(v1::operation::Launch {
            tasks: over(task()),
        })),
        ..Default::default()
    };
    refused_call(
        "launch.tasks",
        Kind::Accept(v1::call_request::Accept {
            offer_ids: vec!["o1".into()],
            operations: vec![launch],
            ..Default::default()
        }),
    );
    let roles = over("r".to_owned());
    refused_call(
        "revive.roles",
        Kind::Revive(v1::call_request::Revive {
            roles: roles.clone(),
        }),
    );
    refused_call(
        "suppress.roles",
        Kind::Suppress(v1::call_request::Suppress { roles }),
    );
    refused_call(
        "acknowledge.acks",
        Kind::Acknowledge(v1::call_request::Acknowledge {
            acks: over(v1::Ack::default()),
        }),
    );
    refused_call(
        "reconcile.tasks",
        Kind::Reconcile(v1::call_request::Reconcile {
            tasks: over(v1::ReconcileTask::default()),
        }),
    );
}

#[test]
fn a_launched_task_refuses_lists_and_labels_past_the_bound() {
    use corral_proto::TaskInfo;
    let cases = [
        (
            "args",
            v1::TaskInfo {
                args: over(String::new()),
                ..task()
            },
        ),
        (
            "env",
            v1::TaskInfo {
                env: over(v1::EnvVar {
                    name: "A".into(),
                    ..Default::default()
                }),
                ..task()
            },
        ),
        (
            "inputs",
            v1::TaskInfo {
                inputs: over(v1::InputFile::default()),
                ..task()
            },
        ),
        (
            "labels",
            v1::TaskInfo {
                labels: over_labels(),
                ..task()
            },
        ),
        (
            "labels[\"k\"].key",
            v1::TaskInfo {
                labels: [("k".repeat(MAX_LABEL_KEY_BYTES + 1), String::new())].into(),
                ..task()
            },
        ),
        (
            "labels[\"k\"].value",
            v1::TaskInfo {
                labels: [("k".into(), "v".repeat(MAX_LABEL_VALUE_BYTES + 1))].into(),
                ..task()
            },
        ),
    ];
    // At the bound is fine.
    let full = v1::TaskInfo {
        labels: (0..MAX_LABELS)
            .map(|i| (i.to_string(), String::new()))
            .collect(),
        args: vec![String::new(); MAX_LIST_ITEMS],
        ..task()
    };
    TaskInfo::try_from(&full).expect("at the bounds");
    for (field, t) in cases {
        // The error path may abbreviate a long key: match its start.
        let field = field.split("k\"]").next().unwrap();
        refused(field, field, TaskInfo::try_from(&t).expect_err(field));
    }
}

#[test]
fn subscribing_frameworks_refuse_roles_and_labels_past_the_bound() {
    let info = v1::FrameworkInfo {
        roles: vec!["r".into()],
        ..Default::default()
    };
    let cases = [
        (
            "suppressed_roles",
            v1::SubscribeRequest {
                framework_info: Some(info.clone()),
                suppressed_roles: over("r".into()),
            },
        ),
        (
            "framework_info.roles",
            v1::SubscribeRequest {
                framework_info: Some(v1::FrameworkInfo {
                    roles: over("r".into()),
                    ..info.clone()
                }),
                ..Default::default()
            },
        ),
        (
            "framework_info.labels",
            v1::SubscribeRequest {
                framework_info: Some(v1::FrameworkInfo {
                    labels: over_labels(),
                    ..info
                }),
                ..Default::default()
            },
        ),
    ];
    for (field, r) in cases {
        refused(
            field,
            field,
            scheduler::subscribe_event(0, &r).expect_err(field),
        );
    }
}

#[test]
fn agents_refuse_lists_attributes_and_labels_past_the_bound() {
    use v1::agent_message::{Kind, ReRegister, Register};
    let register = |r: Register| v1::AgentMessage {
        kind: Some(Kind::Register(r)),
    };
    let reregister = |r: ReRegister| v1::AgentMessage {
        kind: Some(Kind::Reregister(ReRegister {
            agent_id: "a1".into(),
            agent_info: r.agent_info.or(Some(agent_info())),
            ..r
        })),
    };
    let cases = [
        (
            "register.cached_modules",
            register(Register {
                agent_info: Some(agent_info()),
                cached_modules: over(String::new()),
            }),
        ),
        (
            "register.agent_info.attributes",
            register(Register {
                agent_info: Some(v1::AgentInfo {
                    attributes: vec![v1::Attribute::default(); MAX_LABELS + 1],
                    ..agent_info()
                }),
                ..Default::default()
            }),
        ),
        (
            "register.agent_info.labels",
            register(Register {
                agent_info: Some(v1::AgentInfo {
                    labels: over_labels(),
                    ..agent_info()
                }),
                ..Default::default()
            }),
        ),
        (
            "reregister.tasks",
            reregister(ReRegister {
                tasks: over(v1::RunningTask::default()),
                ..Default::default()
            }),
        ),
        (
            "reregister.unacknowledged_updates",
            reregister(ReRegister {
                unacknowledged_updates: over(v1::TaskStatus::default()),
                ..Default::default()
            }),
        ),
        (
            "reregister.cached_modules",
            reregister(ReRegister {
                cached_modules: over(String::new()),
                ..Default::default()
            }),
        ),
    ];
    for (field, msg) in cases {
        let err = agent_link::first_event(0, msg).expect_err(field);
        refused(field, field, err.message());
    }
}

#[test]
fn task_listings_refuse_state_filters_past_the_bound() {
    let r = v1::ListTasksRequest {
        states: over(v1::TaskState::Running as i32),
        ..Default::default()
    };
    refused(
        "states",
        "states",
        operator::list_tasks_request(r, crate::auth::Visibility::All).expect_err("states"),
    );
    let r = v1::ListTasksRequest {
        labels: over_labels(),
        ..Default::default()
    };
    refused(
        "labels",
        "labels",
        operator::list_tasks_request(r, crate::auth::Visibility::All).expect_err("labels"),
    );
}

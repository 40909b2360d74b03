//! Authentication, ACLs, tenant isolation and the audit log, on a master started with a
//! credentials file, an ACL file and an audit log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use corral_master::AuthConfig;
use corral_master::auth::{new_token, token_sha256};
use corral_proto::auth::Token;
use corral_proto::{limits, v1};
use serde_json::Value;
use tonic::Code;

use crate::util::{
    self, Channel, FakeAgent, RawScheduler, TestMaster, connect_as, subscribe_request, within,
};

const ACLS: &str = r#"
[[acl]]
actions = ["register_framework"]
principals = ["alice", "bob"]
objects = ["eng/*", "*"]

[[acl]]
actions = ["register_agent"]
principals = ["agent"]

[[acl]]
actions = ["upload_modules"]
principals = ["alice", "bob"]

# Bob shares his modules with alice.
[[acl]]
actions = ["view_modules"]
principals = ["alice"]
objects = ["bob"]

[[acl]]
actions = ["view_tasks", "view_frameworks", "kill_tasks", "view_sandboxes", "view_agents",
           "view_roles", "set_weights", "drain_agents", "view_modules"]
principals = ["ops"]
objects = "any"

# Ops runs the jobs framework as a process of its own.
[[acl]]
actions = ["register_framework", "run_tasks_for"]
principals = ["ops"]
objects = "any"
"#;

pub(crate) struct Secured {
    pub(crate) test: TestMaster,
    pub(crate) tokens: HashMap<&'static str, Token>,
    credentials: PathBuf,
    audit: PathBuf,
    pub(crate) rate_limits: PathBuf,
}

impl Secured {
    pub(crate) async fn as_(&self, principal: &str) -> Channel {
        connect_as(self.test.master.local_addr(), &self.tokens[principal]).await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.test.master.local_addr())
    }

    /// The audit log's lines so far.
    fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Whether the audit log has a line with every one of these fields.
    fn audited(&self, fields: &[(&str, &str)]) -> bool {
        self.audit_lines()
            .iter()
            .any(|line| fields.iter().all(|(k, v)| line[*k] == *v))
    }
}

/// Writes a credentials file with a fresh token for each `(principal, expires)`.
fn write_credentials(
    path: &Path,
    principals: &[(&'static str, Option<&str>)],
) -> HashMap<&'static str, Token> {
    let mut file = String::new();
    let mut tokens = HashMap::new();
    for (name, expires) in principals {
        let token = new_token();
        file.push_str(&format!(
            "[[principal]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n",
            token_sha256(&token)
        ));
        if let Some(expires) = expires {
            file.push_str(&format!("expires = \"{expires}\"\n"));
        }
        tokens.insert(*name, Token::new(&token).unwrap());
    }
    std::fs::write(path, file).unwrap();
    tokens
}

async fn secured() -> Secured {
    secured_with(None).await
}

/// A secured master, with these rate limits if any.
pub(crate) async fn secured_with(rates: Option<&str>) -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let rate_limits = dir.path().join("rates.toml");
    if let Some(rates) = rates {
        std::fs::write(&rate_limits, rates).unwrap();
    }
    let credentials = dir.path().join("credentials.toml");
    let acls = dir.path().join("acls.toml");
    let audit = dir.path().join("audit.log");
    let mut tokens = write_credentials(
        &credentials,
        &[
            ("alice", None),
            ("bob", None),
            ("ops", None),
            ("agent", None),
            ("old", Some("2020-01-01T00:00:00Z")),
        ],
    );
    tokens.insert("nobody", Token::none());
    tokens.insert("wrong", Token::new(&new_token()).unwrap());
    std::fs::write(&acls, ACLS).unwrap();
    let auth = AuthConfig {
        credentials: Some(credentials.clone()),
        acls: Some(acls),
        audit_log: Some(audit.clone()),
        rate_limits: rates.map(|_| rate_limits.clone()),
    };
    let test = util::start_in(std::sync::Arc::new(dir), |c| c.auth = auth).await;
    let s = Secured {
        test,
        tokens,
        credentials,
        audit,
        rate_limits,
    };
    // The module `util::task` runs, alice's.
    util::upload(s.as_("alice").await, b"module").await.unwrap();
    s
}

/// Launches task `id` on `offer`, and sees it reach the agent.
pub(crate) async fn launch_one(
    framework: &mut RawScheduler,
    agent: &mut FakeAgent,
    offer: &str,
    id: &str,
) {
    launch_task(framework, agent, offer, util::task(id, 100)).await;
}

/// Launches `task` on `offer`, and sees it reach the agent.
async fn launch_task(
    framework: &mut RawScheduler,
    agent: &mut FakeAgent,
    offer: &str,
    task: v1::TaskInfo,
) {
    let id = task.task_id.clone();
    framework
        .call(util::launch(offer, vec![task]))
        .await
        .unwrap();
    match agent.next("LAUNCH").await {
        v1::master_message::Kind::LaunchTasks(launch) => {
            assert_eq!(launch.tasks[0].task_id, id);
        }
        other => panic!("expected LAUNCH, got {other:?}"),
    }
}

/// An ACCEPT of `task` whose leftovers are offered again at once.
fn launch_now(offer: &str, task: v1::TaskInfo) -> v1::call_request::Kind {
    let mut accept = util::launch(offer, vec![task]);
    if let v1::call_request::Kind::Accept(a) = &mut accept {
        a.filters = Some(v1::Filters {
            refuse_seconds: Some(0.0),
        });
    }
    accept
}

/// The code of a call's refusal.
fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    result.expect_err("refused").code()
}

#[tokio::test]
async fn every_service_refuses_callers_without_a_valid_token_and_audits_it() {
    let s = secured().await;
    let http = reqwest::Client::new();
    for who in ["nobody", "wrong", "old"] {
        let channel = s.as_(who).await;
        let mut operator = limits::operator_client(channel.clone());
        assert_eq!(
            code(operator.list_agents(v1::ListAgentsRequest {}).await),
            Code::Unauthenticated,
            "{who}: Operator"
        );
        let mut scheduler = limits::scheduler_client(channel.clone());
        assert_eq!(
            code(scheduler.subscribe(subscribe_request(None, "*")).await),
            Code::Unauthenticated,
            "{who}: Scheduler"
        );
        let mut link = limits::agent_link_client(channel.clone());
        assert_eq!(
            code(link.connect(tokio_stream::empty()).await),
            Code::Unauthenticated,
            "{who}: AgentLink"
        );
        let mut peer = limits::master_peer_client(channel.clone());
        let fetch = v1::FetchModuleRequest {
            digest: corral_types::Digest::of(b"m").to_string(),
            offset: 0,
        };
        assert_eq!(
            code(peer.fetch_module(fetch).await),
            Code::Unauthenticated,
            "{who}: MasterPeer"
        );
        for path in [
            "/api/v1/agents",
            "/api/v1/tasks",
            "/api/v1/events",
            "/metrics",
        ] {
            let mut request = http.get(s.url(path));
            if let Some(header) = s.tokens[who].header() {
                request = request.header("authorization", header);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{who}: GET {path}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"corral\""
            );
            let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
            assert_eq!(body["error"]["status"], 401, "{body}");
        }
    }
    // Open to anyone: health (load balancers), the UI's page and the API's description.
    let nobody = s.as_("nobody").await;
    let health = tonic_health::pb::health_client::HealthClient::new(nobody)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(health.is_ok(), "{health:?}");
    for path in ["/", "/api/v1/openapi.json"] {
        let response = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
    }
    // Each refusal left a line; the expired token's names whose it was.
    assert!(s.audited(&[
        ("outcome", "unauthenticated"),
        ("reason", "no bearer token")
    ]));
    assert!(s.audited(&[("outcome", "unauthenticated"), ("reason", "unknown token")]));
    assert!(s.audited(&[
        ("outcome", "unauthenticated"),
        ("principal", "old"),
        ("reason", "token expired"),
        ("action", "view_agents"),
    ]));
    let refusals = s
        .audit_lines()
        .iter()
        .filter(|l| l["outcome"] == "unauthenticated")
        .count();
    assert_eq!(refusals, 3 * 8, "one line per refused call");
    // No secret reaches the log.
    let log = std::fs::read_to_string(&s.audit).unwrap();
    for who in ["alice", "wrong", "old"] {
        let secret = s.tokens[who]
            .header()
            .unwrap()
            .trim_start_matches("Bearer ");
        assert!(!log.contains(secret), "{who}'s token is in the audit log");
    }
}

#[tokio::test]
async fn tenants_see_and_touch_only_their_own_frameworks_and_tasks() {
    let s = secured().await;
    let mut agent = FakeAgent::register(s.as_("agent").await).await;
    let mut alice = RawScheduler::subscribe_as(s.as_("alice").await, "eng/batch").await;
    let offer = alice.offers().await.remove(0);
    launch_one(&mut alice, &mut agent, &offer.id, "t1").await;
    agent
        .status(&alice.framework_id, "t1", v1::TaskState::Running, 1)
        .await;
    assert_eq!(alice.update().await.state, v1::TaskState::Running as i32);
    let bob = RawScheduler::subscribe_as(s.as_("bob").await, "*").await;

    // Listings show each tenant its own; ops, granted every principal's, sees all.
    let tasks_of = |channel: Channel| async move {
        let page = limits::operator_client(channel)
            .list_tasks(v1::ListTasksRequest::default())
            .await
            .unwrap()
            .into_inner();
        page.tasks.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    assert_eq!(tasks_of(s.as_("alice").await).await, ["t1"]);
    assert!(tasks_of(s.as_("bob").await).await.is_empty());
    assert_eq!(tasks_of(s.as_("ops").await).await, ["t1"]);
    let frameworks_of = |channel: Channel| async move {
        let list = limits::operator_client(channel)
            .list_frameworks(v1::ListFrameworksRequest::default())
            .await
            .unwrap()
            .into_inner();
        list.frameworks
            .into_iter()
            .map(|f| f.principal)
            .collect::<Vec<_>>()
    };
    assert_eq!(frameworks_of(s.as_("bob").await).await, ["bob"]);
    let mut all = frameworks_of(s.as_("ops").await).await;
    all.sort();
    assert_eq!(all, ["alice", "bob"]);
    let http = reqwest::Client::new();
    let listed: Value = serde_json::from_str(
        &http
            .get(s.url("/api/v1/tasks"))
            .header("authorization", s.tokens["bob"].header().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(listed["tasks"], Value::Array(vec![]), "{listed}");

    // Bob cannot touch alice's task, framework or sandbox, by any door; to him her task is
    // not there at all, as an unknown ID.
    let mut bob_op = limits::operator_client(s.as_("bob").await);
    let kill = v1::KillTaskRequest {
        task_id: "t1".into(),
        framework_id: None,
    };
    assert_eq!(code(bob_op.kill_task(kill.clone()).await), Code::NotFound);
    let files = v1::ListFilesRequest {
        task_id: "t1".into(),
        path: String::new(),
        framework_id: None,
    };
    assert_eq!(code(bob_op.list_files(files).await), Code::NotFound);
    let read = http
        .get(s.url("/api/v1/tasks/t1/files/read?path=stdout"))
        .header("authorization", s.tokens["bob"].header().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 404);
    let mut bob_scheduler = limits::scheduler_client(s.as_("bob").await);
    let hijack = subscribe_request(Some(alice.framework_id.clone()), "*");
    assert_eq!(
        code(bob_scheduler.subscribe(hijack).await),
        Code::PermissionDenied
    );
    let mut forged = alice.request(v1::call_request::Kind::Teardown(
        v1::call_request::Teardown {},
    ));
    forged.framework_id.clone_from(&alice.framework_id);
    assert_eq!(
        code(bob_scheduler.call(forged).await),
        Code::PermissionDenied
    );
    // Alice's framework survived all of it.
    assert_eq!(tasks_of(s.as_("alice").await).await, ["t1"]);
    drop(bob);

    // Roles: only those the ACLs grant; and no principal but one's own.
    let mut alice_scheduler = limits::scheduler_client(s.as_("alice").await);
    assert_eq!(
        code(
            alice_scheduler
                .subscribe(subscribe_request(None, "ops"))
                .await
        ),
        Code::PermissionDenied
    );
    let mut claims_ops = subscribe_request(None, "*");
    if let Some(info) = claims_ops.framework_info.as_mut() {
        info.principal = Some("ops".into());
    }
    assert_eq!(
        code(alice_scheduler.subscribe(claims_ops).await),
        Code::PermissionDenied
    );
    let weight = v1::SetWeightRequest {
        role: "eng".into(),
        weight: 2.0,
    };
    let mut alice_op = limits::operator_client(s.as_("alice").await);
    assert_eq!(
        code(alice_op.set_weight(weight.clone()).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(alice_op.get_state(v1::GetStateRequest::default()).await),
        Code::PermissionDenied,
        "the whole cluster's state is every principal's"
    );
    let mut ops = limits::operator_client(s.as_("ops").await);
    ops.set_weight(weight).await.unwrap();

    // An operator granted it kills anyone's task.
    let killed = ops.kill_task(kill).await.unwrap().into_inner();
    assert_eq!(killed.framework_id, alice.framework_id);
    assert!(matches!(
        agent.next("KILL").await,
        v1::master_message::Kind::KillTask(_)
    ));

    // The audit log has who did what to whom.
    assert!(s.audited(&[
        ("principal", "bob"),
        ("action", "kill_tasks"),
        ("object", "task t1"),
        ("outcome", "denied"),
    ]));
    assert!(s.audited(&[
        ("principal", "ops"),
        ("action", "kill_tasks"),
        ("object", "principal alice"),
        ("outcome", "allowed"),
    ]));
    assert!(s.audited(&[
        ("principal", "bob"),
        ("action", "register_framework"),
        ("outcome", "denied"),
    ]));
    assert!(s.audited(&[
        ("principal", "bob"),
        ("action", "teardown"),
        ("outcome", "denied"),
    ]));
    assert!(s.audited(&[
        ("principal", "alice"),
        ("action", "set_weights"),
        ("object", "role eng"),
        ("outcome", "denied"),
    ]));
    assert!(s.audited(&[
        ("principal", "alice"),
        ("action", "accept"),
        ("outcome", "allowed"),
    ]));
    assert!(s.audited(&[
        ("principal", "agent"),
        ("action", "register_agent"),
        ("outcome", "allowed"),
    ]));
}

#[tokio::test]
async fn modules_are_listed_fetched_and_run_only_by_those_who_stored_them_or_are_shared_them() {
    let s = secured().await;
    let mut agent = FakeAgent::register(s.as_("agent").await).await;
    let alices = util::upload(s.as_("alice").await, b"alice's")
        .await
        .unwrap();
    let bobs = util::upload(s.as_("bob").await, b"bob's").await.unwrap();
    let module = corral_types::Digest::of(b"module").to_string();

    // Listings: each principal its own, alice bob's too (he shares them), ops all.
    let listed = |who: &'static str| {
        let s = &s;
        async move {
            let list = limits::operator_client(s.as_(who).await)
                .list_modules(v1::ListModulesRequest {})
                .await
                .unwrap()
                .into_inner();
            let mut digests: Vec<String> = list.modules.into_iter().map(|m| m.digest).collect();
            digests.sort();
            digests
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        listed("alice").await,
        sorted(vec![
            alices.digest.clone(),
            bobs.digest.clone(),
            module.clone()
        ])
    );
    assert_eq!(listed("bob").await, std::slice::from_ref(&bobs.digest));
    assert_eq!(listed("ops").await.len(), 3);
    let over_http: Value = reqwest::Client::new()
        .get(s.url("/api/v1/modules"))
        .header("authorization", s.tokens["bob"].header().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let modules = over_http["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 1, "{over_http}");
    assert_eq!(modules[0]["digest"], bobs.digest.as_str());

    // Fetching: bob gets the same refusal for alice's module as for one nobody stored.
    let fetch = |who: &'static str, digest: String| {
        let s = &s;
        async move {
            limits::operator_client(s.as_(who).await)
                .fetch_artifact(v1::FetchModuleRequest { digest, offset: 0 })
                .await
                .map(|_| ())
        }
    };
    let unknown = corral_types::Digest::of(b"nobody's").to_string();
    for digest in [alices.digest.clone(), unknown] {
        let refused = fetch("bob", digest).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("not shared"), "{refused:?}");
    }
    fetch("alice", bobs.digest.clone()).await.unwrap();
    assert!(s.audited(&[
        ("principal", "bob"),
        ("action", "view_modules"),
        ("object", alices.digest.as_str()),
        ("outcome", "denied"),
    ]));

    // Running: bob's task naming alice's module ends in ERROR before any agent hears of it.
    let run_module = |id: &str, digest: &str| {
        let mut task = util::task(id, 100);
        task.module = Some(v1::ModuleRef {
            source: Some(v1::module_ref::Source::Digest(digest.into())),
        });
        task
    };
    let mut bob = RawScheduler::subscribe_as(s.as_("bob").await, "*").await;
    let offer = bob.offers().await.remove(0);
    let task = run_module("b1", &alices.digest);
    bob.call(launch_now(&offer.id, task)).await.unwrap();
    let refused = bob.update().await;
    assert_eq!(refused.state, v1::TaskState::Error as i32);
    assert!(refused.message.contains("not shared"), "{refused:?}");
    // An input naming it is refused alike.
    let offer = bob.offers().await.remove(0);
    let mut task = run_module("b2", &bobs.digest);
    task.inputs.push(v1::InputFile {
        path: "in".into(),
        source: Some(v1::input_file::Source::Artifact(alices.digest.clone())),
    });
    bob.call(launch_now(&offer.id, task)).await.unwrap();
    assert_eq!(bob.update().await.state, v1::TaskState::Error as i32);

    // Once bob stores the same bytes himself, they are his to run too.
    util::upload(s.as_("bob").await, b"alice's").await.unwrap();
    let offer = bob.offers().await.remove(0);
    let task = run_module("b3", &alices.digest);
    launch_task(&mut bob, &mut agent, &offer.id, task).await;

    // Alice runs bob's shared module.
    let mut alice = RawScheduler::subscribe_as(s.as_("alice").await, "eng/batch").await;
    let offer = alice.offers().await.remove(0);
    let task = run_module("a1", &bobs.digest);
    launch_task(&mut alice, &mut agent, &offer.id, task).await;
}

/// The next event of `stream` that is not a heartbeat.
async fn next_change(
    stream: &mut tonic::Streaming<v1::OperatorEvent>,
) -> v1::operator_event::Event {
    loop {
        let event = util::within("an event", stream.message())
            .await
            .unwrap()
            .unwrap();
        if !matches!(event.event, Some(v1::operator_event::Event::Heartbeat(_))) {
            return event.event.unwrap();
        }
    }
}

#[tokio::test]
async fn a_tenants_event_stream_shows_only_what_it_may_list() {
    use v1::operator_event::Event as E;

    let s = secured().await;
    let mut agent = FakeAgent::register(s.as_("agent").await).await;
    let mut alice = RawScheduler::subscribe_as(s.as_("alice").await, "eng/batch").await;
    let offer = alice.offers().await.remove(0);
    launch_one(&mut alice, &mut agent, &offer.id, "t1").await;
    let subscribe = |who: &'static str| {
        let s = &s;
        async move {
            limits::operator_client(s.as_(who).await)
                .subscribe(v1::SubscribeEventsRequest::default())
                .await
                .unwrap()
                .into_inner()
        }
    };
    let state = |event: v1::OperatorEvent| match event.event {
        Some(E::Subscribed(s)) => s.state.unwrap(),
        other => panic!("expected SUBSCRIBED, got {other:?}"),
    };

    // The state: alice's framework and task, and no agents or roles (not hers to list).
    let mut alices = subscribe("alice").await;
    let seen = state(alices.message().await.unwrap().unwrap());
    let principals: Vec<&str> = seen.frameworks.iter().map(|f| &*f.principal).collect();
    assert_eq!(principals, ["alice"]);
    let tasks: Vec<&str> = seen.tasks.iter().map(|t| &*t.id).collect();
    assert_eq!(tasks, ["t1"]);
    assert!(seen.agents.is_empty() && seen.roles.is_empty(), "{seen:?}");
    let mut ops = subscribe("ops").await;
    let seen = state(ops.message().await.unwrap().unwrap());
    assert_eq!((seen.frameworks.len(), seen.agents.len()), (1, 1));

    // Bob arrives and launches: alice's stream shows none of it; her task's change it does.
    util::upload(s.as_("bob").await, b"module").await.unwrap();
    let mut bob = RawScheduler::subscribe_as(s.as_("bob").await, "*").await;
    let offer = bob.offers().await.remove(0);
    launch_one(&mut bob, &mut agent, &offer.id, "b1").await;
    agent
        .status(&alice.framework_id, "t1", v1::TaskState::Running, 1)
        .await;
    match next_change(&mut alices).await {
        E::TaskUpdated(u) => assert_eq!((&*u.id, u.state), ("t1", v1::TaskState::Running as i32)),
        other => panic!("alice saw {other:?}"),
    }
    // Ops sees bob's framework and task come.
    assert!(matches!(next_change(&mut ops).await, E::FrameworkAdded(f) if f.principal == "bob"));
    assert!(matches!(next_change(&mut ops).await, E::TaskAdded(t) if t.id == "b1"));
}

#[tokio::test]
async fn only_a_principal_trusted_to_run_tasks_for_others_registers_the_jobs_framework() {
    // Clients send the jobs framework their tokens: a tenant's framework may not claim to be
    // it, and only the one a trusted principal runs is named to them.
    let s = secured().await;
    let jobs_framework = |principal: &str| {
        let mut request = subscribe_request(Some(corral_proto::jobs::FRAMEWORK_ID.into()), "*");
        if let Some(info) = request.framework_info.as_mut() {
            info.labels.insert(
                corral_proto::jobs::JOBS_ADDRESS_LABEL.into(),
                format!("{principal}.example:5060"),
            );
        }
        request
    };
    let listing = async || {
        limits::operator_client(s.as_("bob").await)
            .list_frameworks(v1::ListFrameworksRequest::default())
            .await
            .unwrap()
            .into_inner()
    };
    let mut alice = limits::scheduler_client(s.as_("alice").await);
    let refused = alice.subscribe(jobs_framework("alice")).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("run_tasks_for"), "{refused:?}");
    assert_eq!(listing().await.jobs_address, "");

    let mut ops = limits::scheduler_client(s.as_("ops").await);
    let mut events = ops
        .subscribe(jobs_framework("ops"))
        .await
        .unwrap()
        .into_inner();
    within("SUBSCRIBED", events.message())
        .await
        .unwrap()
        .unwrap();
    let seen = listing().await;
    assert_eq!(seen.jobs_address, "ops.example:5060");
    assert!(seen.frameworks.is_empty(), "bob sees no framework of ops'");
    assert!(s.audited(&[
        ("principal", "alice"),
        ("action", "register_framework"),
        ("object", corral_proto::jobs::FRAMEWORK_ID),
        ("outcome", "denied"),
    ]));
}

#[tokio::test]
async fn reloaded_credentials_take_effect_at_the_next_request() {
    let s = secured().await;
    let mut bob = limits::operator_client(s.as_("bob").await);
    bob.list_frameworks(v1::ListFrameworksRequest::default())
        .await
        .unwrap();
    // Bob's token is revoked, carol's is new; bob's connection stays open.
    let tokens = write_credentials(&s.credentials, &[("carol", None), ("ops", None)]);
    assert_eq!(s.test.master.reload_auth().unwrap(), 2);
    let refused = bob
        .list_frameworks(v1::ListFrameworksRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let carol = connect_as(s.test.master.local_addr(), &tokens["carol"]).await;
    within(
        "carol's listing",
        limits::operator_client(carol).list_frameworks(v1::ListFrameworksRequest::default()),
    )
    .await
    .unwrap();
    // A broken file is refused, and the rules in force stay.
    std::fs::write(&s.credentials, "[[principal]]\nname = \"x\"\n").unwrap();
    let error = s.test.master.reload_auth().unwrap_err().to_string();
    assert!(error.contains("token_sha256"), "{error}");
    let ops = connect_as(s.test.master.local_addr(), &tokens["ops"]).await;
    limits::operator_client(ops)
        .list_agents(v1::ListAgentsRequest {})
        .await
        .unwrap();
}

#[tokio::test]
async fn a_master_does_not_start_on_a_bad_credentials_acl_or_rate_limits_file() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.toml");
    let acls = dir.path().join("acls.toml");
    let rates = dir.path().join("rates.toml");
    std::fs::write(&credentials, "").unwrap();
    std::fs::write(&rates, "[default]\nrequests = { per_second = 0 }\n").unwrap();
    std::fs::write(
        &acls,
        "[[acl]]\nactions = [\"fly\"]\nprincipals = \"any\"\n",
    )
    .unwrap();
    for (auth, says) in [
        (
            AuthConfig {
                credentials: Some(dir.path().join("missing.toml")),
                ..AuthConfig::default()
            },
            "missing.toml",
        ),
        (
            AuthConfig {
                credentials: Some(credentials.clone()),
                acls: Some(acls.clone()),
                ..AuthConfig::default()
            },
            "unknown action \"fly\"",
        ),
        (
            AuthConfig {
                acls: Some(acls.clone()),
                ..AuthConfig::default()
            },
            "ACLs need a credentials file",
        ),
        (
            AuthConfig {
                rate_limits: Some(rates.clone()),
                ..AuthConfig::default()
            },
            "rates.toml: [default] requests: per_second must be a positive number",
        ),
    ] {
        let mut config =
            corral_master::MasterConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
        config.auth = auth;
        let error = corral_master::Master::start(config).await.unwrap_err();
        assert!(format!("{error:#}").contains(says), "{error:#}");
    }
}

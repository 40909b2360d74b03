//! Per-principal rate limits on an authenticating master: requests and launches over a
//! principal's rate are refused with when to retry, and nobody else is slowed.

use corral_proto::{limits, v1};
use serde_json::Value;
use tonic::Code;

use crate::auth::{launch_one, secured_with};
use crate::util::{self, FakeAgent, RawScheduler};

const RATES: &str = r#"
[default]
launches = { per_second = 0.1, burst = 1 }

[[principal]]
name = "ops"
requests = { per_second = 0.5, burst = 3 }
"#;

#[tokio::test]
async fn a_principal_over_its_request_rate_is_told_when_to_retry_and_others_are_not_slowed() {
    let s = secured_with(Some(RATES)).await;
    let mut ops = limits::operator_client(s.as_("ops").await);
    for _ in 0..3 {
        ops.list_agents(v1::ListAgentsRequest {}).await.unwrap();
    }
    let refused = ops.list_agents(v1::ListAgentsRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("principal ops"), "{refused:?}");
    let wait = corral_proto::status::retry_after(&refused).expect("a retry-after");
    assert!(
        wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(2),
        "{wait:?}"
    );
    // HTTP answers 429 with Retry-After in whole seconds.
    let answer = reqwest::Client::new()
        .get(s.url("/api/v1/agents"))
        .header("authorization", s.tokens["ops"].header().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let retry = answer.headers()["retry-after"].to_str().unwrap().to_owned();
    assert!(["1", "2"].contains(&retry.as_str()), "Retry-After: {retry}");
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over its rate"),
        "{body}"
    );
    // Bob's requests are not limited (no default), and ops's bucket is not his.
    let mut bob = limits::operator_client(s.as_("bob").await);
    for _ in 0..10 {
        bob.list_frameworks(v1::ListFrameworksRequest::default())
            .await
            .unwrap();
    }
    // Reloaded limits take effect at the next request.
    std::fs::write(
        &s.rate_limits,
        "[[principal]]\nname = \"ops\"\nrequests = { per_second = 1000 }\n",
    )
    .unwrap();
    s.test.master.reload_auth().unwrap();
    ops.list_agents(v1::ListAgentsRequest {}).await.unwrap();
}

#[tokio::test]
async fn launches_over_the_rate_are_refused_before_they_reach_an_agent() {
    let s = secured_with(Some(RATES)).await;
    let mut agent = FakeAgent::register(s.as_("agent").await).await;
    let mut alice = RawScheduler::subscribe_as(s.as_("alice").await, "eng/batch").await;
    let offer = alice.offers().await.remove(0);
    // More tasks in one call than the burst can never be launched at once.
    let two = vec![util::task("t1", 100), util::task("t2", 100)];
    let refused = alice.call(util::launch(&offer.id, two)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("at most 1"), "{refused:?}");
    assert_eq!(corral_proto::status::retry_after(&refused), None);
    // The offer was not used by the refusal: it still launches one task.
    launch_one(&mut alice, &mut agent, &offer.id, "t1").await;
    // The bucket is empty for ten seconds: the next launch is refused with when to retry.
    let refused = alice
        .call(util::launch(&offer.id, vec![util::task("t2", 100)]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let wait = corral_proto::status::retry_after(&refused).expect("a retry-after");
    assert!(wait > std::time::Duration::from_secs(5), "{wait:?}");
}

//! Bad calls get clear errors and the master keeps serving.

use corral_proto::v1;

use crate::util::{RawScheduler, start};

#[tokio::test]
async fn wrong_stream_unknown_framework_malformed_and_oversized_calls_are_refused() {
    let m = start().await;
    let mut fw = RawScheduler::subscribe(m.channel.clone()).await;
    let revive = || v1::call_request::Kind::Revive(v1::call_request::Revive { roles: vec![] });

    let mut req = fw.request(revive());
    req.stream_id = "stale".into();
    let err = fw.client.call(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("stream"), "{}", err.message());

    let mut req = fw.request(revive());
    req.framework_id = "nobody".into();
    let err = fw.client.call(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    let mut req = fw.request(revive());
    req.kind = None;
    let err = fw.client.call(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "kind: required field is missing");

    let mut req = fw.request(revive());
    req.framework_id = "a/b".into();
    let err = fw.client.call(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Over the message limit: a client without limits sends it, the server refuses it.
    let mut raw = v1::scheduler_client::SchedulerClient::new(m.channel.clone());
    let mut req = fw.request(revive());
    req.stream_id = "x".repeat(corral_proto::limits::MAX_MESSAGE_BYTES + 1);
    let err = raw.call(req).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);

    // A subscription without roles is refused.
    let err = fw
        .client
        .subscribe(v1::SubscribeRequest {
            framework_info: Some(v1::FrameworkInfo::default()),
            suppressed_roles: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A task with an invalid description is refused with an ERROR update naming the field.
    let _agent = crate::util::FakeAgent::register(m.channel.clone()).await;
    let offers = fw.offers().await;
    let mut bad = crate::util::task("bad", 100);
    bad.resources = None;
    fw.call(crate::util::launch(&offers[0].id, vec![bad]))
        .await
        .unwrap();
    let u = fw.update().await;
    assert_eq!(u.state, v1::TaskState::Error as i32);
    assert_eq!(u.reason, v1::Reason::InvalidTask as i32);
    assert_eq!(u.message, "resources: required field is missing");

    // Still serving.
    fw.call(revive()).await.unwrap();
    m.master.shutdown().await;
}

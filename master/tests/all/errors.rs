//! Bad calls get clear errors and the master keeps serving.

use std::time::Duration;

use corral_proto::v1;

use crate::util::{FakeAgent, RawScheduler, start, within};

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
    let _agent = FakeAgent::register(m.channel.clone()).await;
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

#[tokio::test]
async fn a_stalled_upload_is_cut_at_the_request_timeout_and_streams_live_on() {
    use bytes::Bytes;
    use corral_proto::limits;

    let m = crate::util::start_with(|c| c.request_timeout = Duration::from_millis(300)).await;
    // A framework's stream is answered at once: it is not a request that times out.
    let mut fw = RawScheduler::subscribe(m.channel.clone()).await;
    // An upload that sends one chunk and then nothing holds its handler until the timeout.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(v1::ModuleChunk {
        data: Bytes::from_static(b"\0asm"),
        total_size: 1 << 20,
    })
    .await
    .unwrap();
    let mut operator = limits::operator_client(m.channel.clone());
    let stalled = operator.upload_module(tokio_stream::wrappers::ReceiverStream::new(rx));
    let refused = within("the stalled upload to be cut", stalled)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Cancelled, "{refused:?}");
    drop(tx);
    // Past the timeout the framework's stream still delivers: the offers of a new agent.
    let _agent = FakeAgent::register(m.channel.clone()).await;
    assert!(!within("offers", fw.offers()).await.is_empty());
}

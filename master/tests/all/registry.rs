//! The durable registry over the wire: a master restarted on the same work dir comes back
//! with what it acknowledged.

use std::time::Duration;

use bytes::Bytes;
use corral_proto::{limits, v1};
use tokio_stream::StreamExt;

use crate::util::{FakeAgent, RawScheduler, resources, start, start_in, within};

fn operator(
    channel: &crate::util::Channel,
) -> v1::operator_client::OperatorClient<crate::util::Channel> {
    limits::operator_client(channel.clone())
}

async fn fetch(channel: &crate::util::Channel, digest: &str) -> Vec<u8> {
    let mut client = limits::agent_link_client(channel.clone());
    let mut chunks = client
        .fetch_module(v1::FetchModuleRequest {
            digest: digest.into(),
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = chunks.next().await {
        out.extend_from_slice(&chunk.unwrap().data);
    }
    out
}

#[tokio::test]
async fn a_restarted_master_comes_back_with_what_it_acknowledged() {
    let m = start().await;
    let agent = FakeAgent::register(m.channel.clone()).await;
    let drained = FakeAgent::register(m.channel.clone()).await;
    let fw = RawScheduler::subscribe(m.channel.clone()).await;
    let mut op = operator(&m.channel);
    op.set_weight(v1::SetWeightRequest {
        role: "eng".into(),
        weight: 3.0,
    })
    .await
    .unwrap();
    let quota = v1::Quota {
        guarantee: Some(resources(500, 0)),
        limit: Some(v1::ResourceLimits {
            mem_bytes: Some(1 << 30),
            ..Default::default()
        }),
    };
    op.set_quota(v1::SetQuotaRequest {
        role: "eng".into(),
        quota: Some(quota.clone()),
        force: true,
    })
    .await
    .unwrap();
    op.drain_agent(v1::DrainAgentRequest {
        agent_id: drained.id.clone(),
        max_grace_period_millis: Some(3_600_000),
        mark_gone: false,
    })
    .await
    .unwrap();
    let module = b"\0asm\x01\0\0\0 a module".to_vec();
    let uploaded = op
        .upload_module(tokio_stream::iter(vec![v1::ModuleChunk {
            data: Bytes::from(module.clone()),
            total_size: module.len() as u64,
        }]))
        .await
        .unwrap()
        .into_inner();

    // Stop everything; start a new master on the same directory.
    let dir = m.dir.clone();
    let (agent_id, drained_id) = (agent.id.clone(), drained.id.clone());
    drop((agent, drained));
    m.master.shutdown().await;
    drop(fw.events);
    let m = start_in(dir, |_| {}).await;

    let state = operator(&m.channel)
        .get_state(v1::GetStateRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.master.as_ref().unwrap().epoch, 2, "a new term");
    let agent_state = |id: &str| {
        state
            .agents
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.state)
            .unwrap_or_else(|| panic!("agent {id} forgotten: {:?}", state.agents))
    };
    assert_eq!(agent_state(&agent_id), v1::AgentState::Admitted as i32);
    assert_eq!(agent_state(&drained_id), v1::AgentState::Drained as i32);
    assert_eq!(state.agents.len(), 2);
    let framework = state
        .frameworks
        .iter()
        .find(|f| f.id == fw.framework_id)
        .expect("framework forgotten");
    assert_eq!(framework.state, v1::FrameworkState::Disconnected as i32);
    assert_eq!(framework.failover_timeout_millis, 60_000);
    let eng = state.roles.iter().find(|r| r.name == "eng").expect("role");
    assert_eq!(eng.weight, 3.0);
    assert_eq!(eng.quota.as_ref(), Some(&quota));
    assert_eq!(fetch(&m.channel, &uploaded.digest).await, module);

    // The agent and the framework come back under their IDs, in the new epoch.
    let agent = FakeAgent::reregister(m.channel.clone(), &agent_id).await;
    assert_eq!(agent.epoch, 2);
    let fw = RawScheduler::resubscribe(m.channel.clone(), Some(fw.framework_id.clone())).await;
    assert_eq!(fw.epoch, 2);
    m.master.shutdown().await;
}

#[tokio::test]
async fn a_frameworks_store_survives_a_restart_and_only_its_current_stream_uses_it() {
    use v1::store_request::{Get, Op, Put};
    let m = start().await;
    let dir = m.dir.clone();
    let mut fw = RawScheduler::subscribe(m.channel.clone()).await;
    let put = |key: &str, value: &'static [u8], expected| {
        Op::Put(Put {
            key: key.into(),
            value: bytes::Bytes::from_static(value),
            expected_version: expected,
        })
    };
    let written = fw
        .store(put("jobs/nightly", b"spec", Some(0)))
        .await
        .unwrap();
    assert_eq!(written[0].version, 1);
    m.master.shutdown().await;

    let m = start_in(dir, |_| {}).await;
    let mut fw = RawScheduler::resubscribe(m.channel.clone(), Some(fw.framework_id.clone())).await;
    let get = Op::Get(Get {
        key: "jobs/nightly".into(),
    });
    let read = fw.store(get.clone()).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!((&read[0].value[..], read[0].version), (&b"spec"[..], 1));
    // A write that expects the key absent is refused: it exists.
    let err = fw
        .store(put("jobs/nightly", b"other", Some(0)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    // A second subscription takes over; the first may no longer write.
    let mut successor =
        RawScheduler::resubscribe(m.channel.clone(), Some(fw.framework_id.clone())).await;
    let err = fw
        .store(put("jobs/nightly", b"late", None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(&successor.store(get).await.unwrap()[0].value[..], b"spec");
    m.master.shutdown().await;
}

#[tokio::test]
async fn agents_that_do_not_return_after_a_restart_are_reported_unreachable() {
    let m = start().await;
    let agent = FakeAgent::register(m.channel.clone()).await;
    let fw = RawScheduler::subscribe(m.channel.clone()).await;
    let dir = m.dir.clone();
    m.master.shutdown().await;
    drop(fw.events);

    let m = start_in(dir, |c| {
        c.agent_reregister_timeout = Duration::from_millis(300)
    })
    .await;
    let mut fw = RawScheduler::resubscribe(m.channel.clone(), Some(fw.framework_id)).await;
    loop {
        match fw.next("FAILURE for the agent that did not return").await {
            v1::event::Kind::Failure(f) => {
                assert_eq!(f.agent_id, agent.id);
                assert!(f.message.contains("re-register"), "{f:?}");
                break;
            }
            v1::event::Kind::Offers(_) | v1::event::Kind::Rescind(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    let agents = within(
        "ListAgents",
        operator(&m.channel).list_agents(v1::ListAgentsRequest::default()),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(agents.agents[0].state, v1::AgentState::Unreachable as i32);
    m.master.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_registry_file_fails_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    std::fs::write(&path, vec![0x5Au8; 8192]).unwrap();
    let config = corral_master::MasterConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
    let err = corral_master::Master::start(config).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("registry.redb"), "{text}");
    assert!(text.contains("cannot open the registry"), "{text}");
    // The file is left as it was, for the operator to inspect.
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x5Au8; 8192]);
}

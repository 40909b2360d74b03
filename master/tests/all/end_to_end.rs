//! A framework launches a task on an agent through a real master and sees it through.

use bytes::Bytes;
use corral_proto::{limits, v1};
use tokio_stream::StreamExt;

use crate::util::{FakeAgent, RawScheduler, launch, start, task, within};

#[tokio::test]
async fn launch_run_finish_and_acknowledge_through_a_real_master() {
    let m = start().await;
    let mut agent = FakeAgent::register(m.channel.clone()).await;
    let mut fw = RawScheduler::subscribe(m.channel.clone()).await;

    let offers = fw.offers().await;
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].agent_id, agent.id);
    assert_eq!(offers[0].hostname, "fake-host");
    assert_eq!(offers[0].resources.as_ref().unwrap().cpus_milli, 2000);

    fw.call(launch(&offers[0].id, vec![task("t1", 500)]))
        .await
        .unwrap();
    let v1::master_message::Kind::LaunchTasks(l) = agent.next("LaunchTasks").await else {
        panic!("expected LaunchTasks");
    };
    assert_eq!(l.framework_id, fw.framework_id);
    assert_eq!(l.tasks[0].task_id, "t1");

    agent
        .status(&fw.framework_id, "t1", v1::TaskState::Running, 1)
        .await;
    let u = fw.update().await;
    assert_eq!(
        (u.task_id.as_str(), u.state),
        ("t1", v1::TaskState::Running as i32)
    );
    assert_eq!(u.uuid, Bytes::from(vec![1u8; 16]));

    let ack = v1::call_request::Kind::Acknowledge(v1::call_request::Acknowledge {
        acks: vec![v1::Ack {
            agent_id: u.agent_id.clone(),
            task_id: u.task_id.clone(),
            uuid: u.uuid.clone(),
        }],
    });
    fw.call(ack).await.unwrap();
    let v1::master_message::Kind::Acknowledge(a) = agent.next("Acknowledge").await else {
        panic!("expected Acknowledge");
    };
    assert_eq!(
        (a.task_id.as_str(), a.uuid.clone()),
        ("t1", Bytes::from(vec![1u8; 16]))
    );
    assert_eq!(a.framework_id, fw.framework_id);

    agent
        .status(&fw.framework_id, "t1", v1::TaskState::Finished, 2)
        .await;
    let u = fw.update().await;
    assert_eq!(u.state, v1::TaskState::Finished as i32);

    // The operator sees the task and the agent.
    let mut op = limits::operator_client(m.channel.clone());
    let tasks = op
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tasks.tasks.len(), 1);
    assert_eq!(tasks.tasks[0].state, v1::TaskState::Finished as i32);
    let agents = op
        .list_agents(v1::ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agents.agents[0].id, agent.id);
    m.master.shutdown().await;
}

#[tokio::test]
async fn uploaded_modules_can_be_fetched_by_agents() {
    let m = start().await;
    let data: Vec<u8> = (0..limits::MODULE_CHUNK_BYTES + 100)
        .map(|i| i as u8)
        .collect();
    let chunks: Vec<v1::ModuleChunk> = data
        .chunks(limits::MODULE_CHUNK_BYTES)
        .map(|c| v1::ModuleChunk {
            data: Bytes::copy_from_slice(c),
            total_size: data.len() as u64,
        })
        .collect();
    let mut op = limits::operator_client(m.channel.clone());
    let r = op
        .upload_module(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.digest, corral_types::Digest::of(&data).to_string());

    let mut link = limits::agent_link_client(m.channel.clone());
    let mut stream = link
        .fetch_module(v1::FetchModuleRequest {
            digest: r.digest.clone(),
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(c) = within("module chunk", stream.next()).await {
        got.extend_from_slice(&c.unwrap().data);
    }
    assert_eq!(got, data);
    let err = link
        .fetch_module(v1::FetchModuleRequest {
            digest: corral_types::Digest::of(b"missing").to_string(),
            offset: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    m.master.shutdown().await;
}

//! High availability on a real etcd (Debian's `etcd-server`, which `.ci/run` installs):
//! election, redirection, takeover with a higher epoch, and fencing of a deposed leader.
//! Without `etcd` on PATH these tests say loudly that they skipped.

use std::net::SocketAddr;
use std::time::Duration;

use crate::util::Channel;
use corral_master::{Master, MasterConfig, StoreConfig};
use corral_proto::status::leader_hint;
use corral_proto::{limits, v1};

use crate::util::{connect, within};
use corral_fixtures::{Etcd, set_weight, weight};

const PREFIX: &str = "/corral-test";

/// The registry on `etcd`, under the tests' prefix.
fn store(etcd: &Etcd) -> StoreConfig {
    format!("etcd://{}{PREFIX}", etcd.client_addr())
        .parse()
        .unwrap()
}

/// A call to etcd's JSON gateway (bytes fields are base64).
async fn gateway(etcd: &Etcd, path: &str, body: serde_json::Value) -> serde_json::Value {
    let url = format!("http://{}{path}", etcd.client_addr());
    let text = reqwest::Client::new()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The current leader's election key (base64) and lease.
async fn leader_key(etcd: &Etcd) -> (String, String) {
    let name = base64(format!("{PREFIX}/leader").as_bytes());
    let r = gateway(
        etcd,
        "/v3/election/leader",
        serde_json::json!({ "name": name }),
    )
    .await;
    let kv = &r["kv"];
    (
        kv["key"].as_str().unwrap().to_owned(),
        kv["lease"].as_str().unwrap().to_owned(),
    )
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct HaMaster {
    master: Master,
    channel: Channel,
    _dir: tempfile::TempDir,
}

async fn start_master(etcd: &Etcd) -> HaMaster {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MasterConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
    config.store = store(etcd);
    config.leader_lease = Duration::from_secs(2);
    let master = Master::start(config).await.unwrap();
    let channel = connect(master.local_addr()).await;
    HaMaster {
        master,
        channel,
        _dir: dir,
    }
}

/// Starts two masters; returns (leader, standby) once one leads.
async fn two_masters(etcd: &Etcd) -> (HaMaster, HaMaster) {
    let a = start_master(etcd).await;
    let b = start_master(etcd).await;
    let a_leads = within("a leader", async {
        tokio::select! {
            () = a.master.leading() => true,
            () = b.master.leading() => false,
        }
    })
    .await;
    if a_leads { (a, b) } else { (b, a) }
}

async fn state(channel: &Channel) -> Result<v1::GetStateResponse, tonic::Status> {
    limits::operator_client(channel.clone())
        .get_state(v1::GetStateRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

/// Waits until `channel`'s master redirects to `leader` (standbys learn the leader from
/// the election as it changes).
async fn redirects_to(channel: &Channel, leader: SocketAddr) -> tonic::Status {
    within("a redirection to the leader", async {
        loop {
            match state(channel).await {
                Err(s) if leader_hint(&s) == Some(leader.to_string().as_str()) => return s,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_one_leads_and_the_other_redirects_every_call() {
    let Some(etcd) = Etcd::start("two_masters_one_leads_and_the_other_redirects_every_call") else {
        return;
    };
    let (leader, standby) = two_masters(&etcd).await;
    let epoch = state(&leader.channel).await.unwrap().master.unwrap().epoch;
    assert!(
        epoch > 1,
        "the epoch is the election key's create revision: {epoch}"
    );

    let status = redirects_to(&standby.channel, leader.master.local_addr()).await;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    // Frameworks and agents are redirected too.
    let subscribe = limits::scheduler_client(standby.channel.clone())
        .subscribe(v1::SubscribeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        leader_hint(&subscribe),
        Some(leader.master.local_addr().to_string().as_str())
    );
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    drop(tx);
    let connect = limits::agent_link_client(standby.channel.clone())
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(
        leader_hint(&connect),
        Some(leader.master.local_addr().to_string().as_str()),
        "{connect:?}"
    );
    // The leader serves.
    set_weight(leader.channel.clone(), "eng", 2.0)
        .await
        .unwrap();
    // Health checks say so: the standby's process serves, its public services do not.
    let health = |channel: &Channel, service: &str| {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let request = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        async move { client.check(request).await.unwrap().into_inner().status }
    };
    use tonic_health::pb::health_check_response::ServingStatus::{NotServing, Serving};
    assert_eq!(
        health(&leader.channel, "corral.v1.Scheduler").await,
        Serving as i32
    );
    assert_eq!(health(&standby.channel, "").await, Serving as i32);
    assert_eq!(
        health(&standby.channel, "corral.v1.Scheduler").await,
        NotServing as i32
    );
    assert_eq!(
        health(&standby.channel, "corral.v1.MasterPeer").await,
        Serving as i32
    );
    leader.master.shutdown().await;
    standby.master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_writes_nothing_and_the_standby_leads_with_a_higher_epoch() {
    let Some(etcd) =
        Etcd::start("a_deposed_leader_writes_nothing_and_the_standby_leads_with_a_higher_epoch")
    else {
        return;
    };
    let (old, standby) = two_masters(&etcd).await;
    let old_epoch = state(&old.channel).await.unwrap().master.unwrap().epoch;
    set_weight(old.channel.clone(), "before", 2.0)
        .await
        .unwrap();

    // Someone deletes the leader's election key: the standby is elected, and the old
    // leader's next write is refused by the fence whether or not it noticed yet.
    let (key, _) = leader_key(&etcd).await;
    gateway(
        &etcd,
        "/v3/kv/deleterange",
        serde_json::json!({ "key": key }),
    )
    .await;
    let refused = set_weight(old.channel.clone(), "after", 5.0)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    within("the standby to lead", standby.master.leading()).await;
    let new_epoch = state(&standby.channel).await.unwrap().master.unwrap().epoch;
    assert!(new_epoch > old_epoch, "{new_epoch} > {old_epoch}");
    assert_eq!(
        weight(standby.channel.clone(), "before").await.unwrap(),
        Some(2.0)
    );
    assert_eq!(
        weight(standby.channel.clone(), "after").await.unwrap(),
        None
    );
    // The old leader stepped down and now points at the new one.
    redirects_to(&old.channel, standby.master.local_addr()).await;
    old.master.shutdown().await;
    standby.master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_revoked_steps_down_and_the_standby_takes_over() {
    let Some(etcd) =
        Etcd::start("a_leader_whose_lease_is_revoked_steps_down_and_the_standby_takes_over")
    else {
        return;
    };
    let (old, standby) = two_masters(&etcd).await;
    let old_epoch = state(&old.channel).await.unwrap().master.unwrap().epoch;
    let (_, lease) = leader_key(&etcd).await;
    gateway(
        &etcd,
        "/v3/lease/revoke",
        serde_json::json!({ "ID": lease }),
    )
    .await;

    within("the standby to lead", standby.master.leading()).await;
    let new_epoch = state(&standby.channel).await.unwrap().master.unwrap().epoch;
    assert!(new_epoch > old_epoch, "{new_epoch} > {old_epoch}");
    redirects_to(&old.channel, standby.master.local_addr()).await;
    set_weight(standby.channel.clone(), "eng", 3.0)
        .await
        .unwrap();
    old.master.shutdown().await;
    standby.master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_its_lease_steps_down_before_the_lease_ends() {
    let Some(mut etcd) =
        Etcd::start("a_leader_that_cannot_renew_its_lease_steps_down_before_the_lease_ends")
    else {
        return;
    };
    let leader = start_master(&etcd).await;
    within("leadership", leader.master.leading()).await;
    state(&leader.channel).await.unwrap();

    // Every renewal the leader got was sent before this instant, so its lease (2 s) ends
    // no earlier than 2 s from here, in etcd's eyes; the leader must stop serving first.
    let killed = std::time::Instant::now();
    etcd.kill();
    let status = within("the leader to step down", async {
        loop {
            match state(&leader.channel).await {
                Err(s) => return s,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    let after = killed.elapsed();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        after < Duration::from_secs(2),
        "stepped down {after:?} after losing etcd"
    );
    leader.master.shutdown().await;
}

/// Regression: the keep-alive stream used to wait for etcd's response headers before
/// sending its first renewal, and etcd sends them only with a response, so no renewal was
/// ever sent and every leader stepped down about 1.6 s (of a 2 s lease) after winning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_keeps_leading_over_several_lease_terms() {
    let Some(etcd) = Etcd::start("a_leader_keeps_leading_over_several_lease_terms") else {
        return;
    };
    let leader = start_master(&etcd).await;
    within("leadership", leader.master.leading()).await;
    let epoch = state(&leader.channel).await.unwrap().master.unwrap().epoch;
    // Three lease terms (2 s each), observed every 100 ms: it serves throughout, same epoch.
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        let now = state(&leader.channel).await.unwrap().master.unwrap().epoch;
        assert_eq!(now, epoch, "leadership changed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    leader.master.shutdown().await;
}

/// Uploads `module` to `leader` until both masters hold it (the standby registers itself
/// in the background; until it has, an upload counts one copy); returns its digest.
async fn upload_to_both(leader: &Channel, module: &[u8]) -> String {
    within("an upload held by both masters", async {
        loop {
            let uploaded = limits::operator_client(leader.clone())
                .upload_module(tokio_stream::iter(limits::module_chunks(module)))
                .await
                .unwrap()
                .into_inner();
            if uploaded.replicas == 2 {
                return uploaded.digest;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn fetch_module(channel: &Channel, digest: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut chunks = limits::agent_link_client(channel.clone())
        .fetch_module(v1::FetchModuleRequest {
            digest: digest.into(),
            offset: 0,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = chunks.message().await? {
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_on_both_masters_and_a_leader_missing_it_fetches_it_from_the_standby() {
    let Some(etcd) = Etcd::start(
        "an_upload_is_on_both_masters_and_a_leader_missing_it_fetches_it_from_the_standby",
    ) else {
        return;
    };
    let (leader, standby) = two_masters(&etcd).await;
    let module = b"\0asm\x01\0\0\0 a module both masters hold".to_vec();
    let digest = upload_to_both(&leader.channel, &module).await;
    let file = |m: &HaMaster| {
        let hex = digest.strip_prefix("sha256:").unwrap();
        m._dir.path().join("artifacts").join(hex)
    };
    // Acknowledged: the bytes are on the standby's disk already.
    assert_eq!(std::fs::read(file(&standby)).unwrap(), module);

    // The leader loses its copy (a replaced disk); an agent's fetch finds it on the standby.
    std::fs::remove_file(file(&leader)).unwrap();
    assert_eq!(
        fetch_module(&leader.channel, &digest).await.unwrap(),
        module
    );
    assert_eq!(std::fs::read(file(&leader)).unwrap(), module);
    // A digest the index does not know is not looked for elsewhere.
    let unknown = corral_types::Digest::of(b"never uploaded").to_string();
    let err = fetch_module(&leader.channel, &unknown).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // A standby serves agents nothing: it redirects them to the leader.
    redirects_to(&standby.channel, leader.master.local_addr()).await;
    let err = fetch_module(&standby.channel, &digest).await.unwrap_err();
    assert_eq!(
        leader_hint(&err),
        Some(leader.master.local_addr().to_string().as_str())
    );
    leader.master.shutdown().await;
    standby.master.shutdown().await;
}

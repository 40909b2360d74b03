//! The etcd backend: a fenced registry and leader election on an etcd lease.
//!
//! Keys under the prefix `P`:
//! - `P/leader/<lease>`: election keys (etcd's Election API); the one with the lowest create
//!   revision leads, and its value is the leader's address. The leader's epoch is its key's
//!   create revision, which etcd makes unique and increasing.
//! - `P/registry/<codec key>`: the records (see [`codec`](super::codec)).
//! - `P/members/<master id>`: every running master's address (see [`members`](super::members)).
//!
//! Fencing: every registry write is a transaction that compares that the leader's key still
//! exists with its create revision, so a deposed leader (its lease ended, its key deleted)
//! can write nothing. A leader renews its lease every third of its TTL and steps down when a
//! renewal has not been confirmed by a fifth of the TTL before the lease could end, so it
//! stops serving before another master can be elected.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_proto::tls::Tls;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::etcd_login::{EtcdChannel, EtcdUser};

use super::{Registry, StoreError, codec};
use crate::core::{Recovered, RegistryWrite};
use crate::leadership::{Election, Lost, Term};

/// The generated etcd clients.
#[allow(
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    reason = "generated code"
)]
pub(super) mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
    }
}

use pb::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, compare, kv_client::KvClient,
    lease_client::LeaseClient, request_op,
};
use pb::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ResignRequest, election_client::ElectionClient,
};

/// How long a unary etcd call may take.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd refuses transactions of more operations than this (`--max-txn-ops`, default 128).
const MAX_TXN_OPS: usize = 128;
/// Stay well below etcd's request size limit (`--max-request-bytes`, default 1.5 MiB).
const MAX_TXN_BYTES: usize = 1 << 20;
/// Registry reads can be large (thousands of agents).
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// How often a failed call is tried again before the error counts.
const ATTEMPTS: u32 = 3;
/// How long to wait before watching the leader again after the stream broke.
const OBSERVE_RETRY: Duration = Duration::from_millis(500);

/// An etcd call's failure, with its causes: a refused TLS handshake says why.
pub(super) fn etcd(what: &str, status: &tonic::Status) -> StoreError {
    StoreError::Etcd(format!(
        "{what}: {}",
        corral_proto::status::describe(status)
    ))
}

/// How a master reaches etcd: over TLS (with a client certificate when etcd asks for one),
/// and as a user authenticated by password; neither by default.
#[derive(Debug, Clone, Default)]
pub struct EtcdAccess {
    pub tls: Option<Tls>,
    pub user: Option<EtcdUser>,
}

/// A lazily connected channel balanced over the endpoints (`host:port`), as `access` says.
pub(super) fn channel(
    endpoints: &[String],
    access: &EtcdAccess,
) -> Result<EtcdChannel, StoreError> {
    let tls = access.tls.as_ref();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoints = endpoints
        .iter()
        .map(|e| {
            let endpoint = Endpoint::from_shared(format!("{scheme}://{e}"))
                .map_err(|_| StoreError::Etcd(format!("endpoint {e:?}")))?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5));
            match tls {
                Some(tls) => endpoint
                    .tls_config(tls.client_config())
                    .map_err(|err| StoreError::Etcd(format!("TLS to etcd at {e}: {err}"))),
                None => Ok(endpoint),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let balanced = Channel::balance_list(endpoints.into_iter());
    Ok(EtcdChannel::new(balanced, access.user.as_ref()))
}

/// The end of the key range of every key starting with `prefix`.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: to the end of the keyspace.
    vec![0]
}

/// The registry, fenced by the leader's election key.
#[derive(Debug, Clone)]
pub(crate) struct EtcdRegistry {
    kv: KvClient<EtcdChannel>,
    records: String,
    leader_key: Vec<u8>,
    epoch: i64,
}

impl EtcdRegistry {
    /// Up to [`MAX_TXN_OPS`] operations (and [`MAX_TXN_BYTES`]) per transaction, the leader
    /// check taking one slot. A key written twice keeps its last value: etcd refuses a key
    /// twice in one transaction.
    fn transactions(&self, writes: &[RegistryWrite]) -> Vec<Vec<RequestOp>> {
        let mut last: Vec<codec::KeyWrite> = Vec::new();
        for w in writes.iter().map(codec::encode) {
            last.retain(|k| k.key != w.key);
            last.push(w);
        }
        let mut txns: Vec<Vec<RequestOp>> = Vec::new();
        let mut bytes = 0;
        for w in last {
            let key = format!("{}{}", self.records, w.key).into_bytes();
            let size = key.len() + w.value.as_ref().map_or(0, Vec::len);
            let op = match w.value {
                Some(value) => request_op::Request::RequestPut(PutRequest {
                    key,
                    value,
                    lease: 0,
                }),
                None => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key,
                    range_end: Vec::new(),
                }),
            };
            let full = txns
                .last()
                .is_none_or(|t| t.len() + 1 >= MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES);
            if full {
                txns.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(t) = txns.last_mut() {
                t.push(RequestOp { request: Some(op) });
            }
        }
        txns
    }

    fn fence(&self) -> Compare {
        Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: self.leader_key.clone(),
            target_union: Some(compare::TargetUnion::CreateRevision(self.epoch)),
        }
    }
}

#[async_trait::async_trait]
impl Registry for EtcdRegistry {
    async fn load(&self) -> Result<Recovered, StoreError> {
        let records = read_prefix(&self.kv, "reading the registry", &self.records, false).await?;
        let pairs = records.into_iter().map(|(key, value)| {
            let key = match key.strip_prefix(&self.records) {
                Some(rest) => rest.to_owned(),
                None => key,
            };
            (key, value)
        });
        codec::decode(pairs)
    }

    async fn commit(&self, writes: Vec<RegistryWrite>) -> Result<(), StoreError> {
        for ops in self.transactions(&writes) {
            let resp = retry("writing the registry", || {
                let mut kv = self.kv.clone();
                let req = TxnRequest {
                    compare: vec![self.fence()],
                    success: ops.clone(),
                    failure: Vec::new(),
                };
                async move { kv.txn(req).await }
            })
            .await?;
            if !resp.succeeded {
                return Err(StoreError::Fenced {
                    epoch: u64::try_from(self.epoch).unwrap_or(0),
                });
            }
        }
        Ok(())
    }
}

/// Every key under `prefix` with its value (empty with `keys_only`), read with [`retry`].
pub(super) async fn read_prefix(
    kv: &KvClient<EtcdChannel>,
    what: &str,
    prefix: &str,
    keys_only: bool,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let key = prefix.as_bytes().to_vec();
    let range_end = prefix_end(&key);
    let resp = retry(what, || {
        let mut kv = kv.clone();
        let req = RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            limit: 0,
            revision: 0,
            keys_only,
        };
        async move { kv.range(req).await }
    })
    .await?;
    Ok(resp
        .kvs
        .into_iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.value))
        .collect())
}

/// Calls `f` up to [`ATTEMPTS`] times while etcd is unavailable, each within
/// [`CALL_TIMEOUT`]. The calls here are idempotent (reads, whole-record writes).
pub(super) async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let status = match tokio::time::timeout(CALL_TIMEOUT, f()).await {
            Ok(Ok(resp)) => return Ok(resp.into_inner()),
            Ok(Err(status)) => status,
            Err(_) => tonic::Status::deadline_exceeded("no answer from etcd"),
        };
        // UNAUTHENTICATED: etcd no longer knows the token (it expired, or etcd restarted);
        // the channel has dropped it, and the next attempt authenticates again.
        let transient = matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unauthenticated
        );
        if !transient || attempt >= ATTEMPTS {
            return Err(etcd(what, &status));
        }
        tracing::debug!(attempt, error = %status.message(), "{what}: retrying");
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
    }
}

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The lease and key of the current campaign or term.
#[derive(Debug)]
struct Held {
    epoch: u64,
    lease: i64,
    leader: LeaderKey,
    _keepalive: AbortOnDrop,
}

/// Leader election among the masters sharing a prefix.
#[derive(Debug)]
pub(crate) struct EtcdElection {
    channel: EtcdChannel,
    name: Vec<u8>,
    records: String,
    address: String,
    ttl: Duration,
    leader: watch::Sender<Option<String>>,
    held: Mutex<Option<Held>>,
    _observer: AbortOnDrop,
}

impl EtcdElection {
    /// Prepares an election under `prefix` at `endpoints`; this master campaigns with
    /// `address` and leases of `ttl`. Connects lazily: an unreachable etcd shows in
    /// [`Election::campaign`], which the supervisor retries.
    pub(crate) fn new(
        endpoints: &[String],
        access: &EtcdAccess,
        prefix: &str,
        address: String,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        let channel = channel(endpoints, access)?;
        let name = format!("{prefix}/leader").into_bytes();
        let leader = watch::Sender::new(None);
        let observer = tokio::spawn(observe(channel.clone(), name.clone(), leader.clone()));
        Ok(Self {
            channel,
            name,
            records: format!("{prefix}/registry/"),
            address,
            ttl,
            leader,
            held: Mutex::new(None),
            _observer: AbortOnDrop(observer),
        })
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX)
    }
}

/// Grants a lease of `ttl_secs`; returns its id and the TTL etcd granted. `what` names it in
/// errors.
pub(super) async fn grant_lease(
    channel: &EtcdChannel,
    ttl_secs: i64,
    what: &str,
) -> Result<(i64, Duration), StoreError> {
    let doing = format!("granting {what}");
    let granted = retry(&doing, || {
        let mut lease = LeaseClient::new(channel.clone());
        let req = LeaseGrantRequest {
            ttl: ttl_secs,
            id: 0,
        };
        async move { lease.lease_grant(req).await }
    })
    .await?;
    if !granted.error.is_empty() {
        return Err(StoreError::Etcd(format!("{doing}: {}", granted.error)));
    }
    let ttl = Duration::from_secs(u64::try_from(granted.ttl).unwrap_or(1).max(1));
    Ok((granted.id, ttl))
}

#[async_trait::async_trait]
impl Election for EtcdElection {
    async fn campaign(&self) -> Result<Term, StoreError> {
        let (lease, ttl) = grant_lease(&self.channel, self.ttl_secs(), "a lease").await?;
        let (lost_tx, mut lost_rx) = watch::channel(None::<String>);
        let keepalive = AbortOnDrop(tokio::spawn(keep_alive(
            self.channel.clone(),
            lease,
            ttl,
            lost_tx,
        )));
        let mut election = ElectionClient::new(self.channel.clone());
        let req = CampaignRequest {
            name: self.name.clone(),
            lease,
            value: self.address.clone().into_bytes(),
        };
        // Blocks while another master leads; the lease is kept alive meanwhile.
        let won = tokio::select! {
            won = election.campaign(req) => won.map_err(|s| etcd("campaigning", &s)),
            _ = lost_rx.wait_for(Option::is_some) => {
                Err(StoreError::Etcd("the lease ended while campaigning".into()))
            }
        };
        let leader = match won.map(|r| r.into_inner().leader) {
            Ok(Some(leader)) => leader,
            Ok(None) => Err(StoreError::Etcd("campaign answered without a key".into()))?,
            Err(e) => {
                revoke(&self.channel, lease).await;
                return Err(e);
            }
        };
        let epoch = u64::try_from(leader.rev).unwrap_or(0);
        let registry = EtcdRegistry {
            kv: KvClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES),
            records: self.records.clone(),
            leader_key: leader.key.clone(),
            epoch: leader.rev,
        };
        let deposed = deposed(self.channel.clone(), self.name.clone(), leader.key.clone());
        let lost: Lost = Box::pin(async move {
            tokio::select! {
                why = async {
                    let _ = lost_rx.wait_for(Option::is_some).await;
                    lost_rx.borrow().clone().unwrap_or_default()
                } => why,
                why = deposed => why,
            }
        });
        if let Ok(mut held) = self.held.lock() {
            *held = Some(Held {
                epoch,
                lease,
                leader,
                _keepalive: keepalive,
            });
        }
        self.leader.send_replace(Some(self.address.clone()));
        Ok(Term {
            epoch,
            registry: Arc::new(registry),
            lost,
        })
    }

    async fn resign(&self, epoch: u64) {
        let held = match self.held.lock() {
            Ok(mut held) if held.as_ref().is_some_and(|h| h.epoch == epoch) => held.take(),
            _ => None,
        };
        let Some(held) = held else {
            return;
        };
        let mut election = ElectionClient::new(self.channel.clone());
        let resign = election.resign(ResignRequest {
            leader: Some(held.leader.clone()),
        });
        let _ = tokio::time::timeout(CALL_TIMEOUT, resign).await;
        // Revoking also deletes the key if resigning failed; without it the key would
        // block the others for the rest of the lease.
        revoke(&self.channel, held.lease).await;
    }

    fn leader(&self) -> watch::Receiver<Option<String>> {
        self.leader.subscribe()
    }
}

pub(super) async fn revoke(channel: &EtcdChannel, lease: i64) {
    let mut client = LeaseClient::new(channel.clone());
    let revoke = client.lease_revoke(LeaseRevokeRequest { id: lease });
    if let Ok(Err(status)) = tokio::time::timeout(CALL_TIMEOUT, revoke).await {
        tracing::debug!(lease, error = %status.message(), "revoking the lease failed");
    }
}

/// Keeps `lease` alive; sets `lost` (and returns) when a renewal is not confirmed in time
/// or etcd says the lease ended.
pub(super) async fn keep_alive(
    channel: EtcdChannel,
    lease: i64,
    ttl: Duration,
    lost: watch::Sender<Option<String>>,
) {
    let every = ttl / 3;
    let margin = ttl / 5;
    // Until a renewal is confirmed, count from the grant (a little after it, in truth).
    let mut deadline = Instant::now() + ttl.saturating_sub(margin);
    let mut stream: Option<(
        mpsc::Sender<LeaseKeepAliveRequest>,
        tonic::Streaming<pb::etcdserverpb::LeaseKeepAliveResponse>,
    )> = None;
    let why = loop {
        if Instant::now() >= deadline {
            break "the lease was not renewed before its end".to_owned();
        }
        let sent = Instant::now();
        match stream.as_mut() {
            Some((tx, _)) => {
                if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                    stream = None;
                    continue;
                }
            }
            None => {
                let (tx, rx) = mpsc::channel(1);
                // etcd sends a stream's response headers with its first response, so the
                // call resolves only once a request is on its way: the first renewal is
                // queued before the stream opens (otherwise no renewal is ever sent).
                let _ = tx.try_send(LeaseKeepAliveRequest { id: lease });
                let mut client = LeaseClient::new(channel.clone());
                let opened = tokio::time::timeout_at(
                    deadline,
                    client.lease_keep_alive(ReceiverStream::new(rx)),
                )
                .await;
                match opened {
                    Ok(Ok(resp)) => stream = Some((tx, resp.into_inner())),
                    Ok(Err(status)) => {
                        tracing::warn!(lease, error = %status.message(), "lease keep-alive failed");
                        tokio::time::sleep_until(deadline.min(Instant::now() + every / 4)).await;
                        continue;
                    }
                    Err(_) => continue,
                }
            }
        }
        let Some((_, responses)) = stream.as_mut() else {
            continue;
        };
        match tokio::time::timeout_at(deadline, responses.message()).await {
            Ok(Ok(Some(r))) if r.ttl > 0 => {
                let granted = Duration::from_secs(u64::try_from(r.ttl).unwrap_or(0));
                deadline = sent + granted.saturating_sub(margin);
            }
            Ok(Ok(Some(_))) => break "etcd says the lease has ended".to_owned(),
            Ok(Ok(None)) | Ok(Err(_)) => {
                stream = None;
                continue;
            }
            Err(_) => continue,
        }
        tokio::time::sleep_until((sent + every).min(deadline)).await;
    };
    lost.send_replace(Some(why));
}

/// Resolves when another key than `ours` leads the election.
async fn deposed(channel: EtcdChannel, name: Vec<u8>, ours: Vec<u8>) -> String {
    follow_leader(channel, name, |kv| {
        (kv.key != ours).then(|| "another master leads".to_owned())
    })
    .await
}

/// Keeps `leader` set to the address of the master that leads, for redirections.
async fn observe(channel: EtcdChannel, name: Vec<u8>, leader: watch::Sender<Option<String>>) {
    follow_leader(channel, name, |kv| {
        leader.send_replace(Some(String::from_utf8_lossy(&kv.value).into_owned()));
        None::<()>
    })
    .await;
}

/// Calls `each` with the election's leader key as it changes, until it returns a value;
/// a broken watch is opened again.
async fn follow_leader<T>(
    channel: EtcdChannel,
    name: Vec<u8>,
    mut each: impl FnMut(pb::mvccpb::KeyValue) -> Option<T>,
) -> T {
    loop {
        let mut election = ElectionClient::new(channel.clone());
        if let Ok(resp) = election.observe(LeaderRequest { name: name.clone() }).await {
            let mut stream = resp.into_inner();
            while let Ok(Some(r)) = stream.message().await {
                if let Some(done) = r.kv.and_then(&mut each) {
                    return done;
                }
            }
        }
        tokio::time::sleep(OBSERVE_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::tests::sample;

    fn registry() -> EtcdRegistry {
        EtcdRegistry {
            kv: KvClient::new(EtcdChannel::new(
                Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
                None,
            )),
            records: "/c/registry/".into(),
            leader_key: b"/c/leader/1".to_vec(),
            epoch: 7,
        }
    }

    #[test]
    fn prefix_ends_cover_exactly_the_prefix() {
        assert_eq!(prefix_end(b"/c/registry/"), b"/c/registry0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[tokio::test]
    async fn transactions_keep_the_last_write_per_key_and_respect_etcd_limits() {
        let r = registry();
        let mut writes = sample();
        writes.extend(sample());
        let txns = r.transactions(&writes);
        assert_eq!(txns.len(), 1);
        assert_eq!(txns[0].len(), sample().len(), "one op per key");

        let many: Vec<RegistryWrite> = (0..300)
            .map(|i| RegistryWrite::Weight {
                role: corral_types::Role::new(format!("r{i}")).unwrap(),
                weight: corral_types::Weight::new(1.0).unwrap(),
            })
            .collect();
        let txns = r.transactions(&many);
        assert!(
            txns.iter().all(|t| t.len() < MAX_TXN_OPS),
            "room for the fence"
        );
        assert_eq!(txns.iter().map(Vec::len).sum::<usize>(), 300);
    }
}

//! Who the other masters are, so the leader can copy module bytes to and from them
//! (see [`peers`](crate::peers)).
//!
//! With etcd, every master — leader or standby — keeps `P/members/<master id>` set to its
//! advertised address, attached to a lease of its own (not the election's: a standby has no
//! election lease, and a leader's is revoked when it steps down while it keeps running). A
//! master that dies stops renewing, and its key disappears when the lease ends; a master
//! whose lease is lost (etcd unreachable for a whole TTL) registers again with a new one.
//! With the embedded store there is one master and no one else.

use std::collections::BTreeSet;
use std::time::Duration;

use corral_types::Digest;
use tokio::sync::watch;

use super::embedded::EmbeddedRegistry;
use super::etcd::pb::etcdserverpb::{
    PutRequest, RequestOp, TxnRequest, kv_client::KvClient, request_op,
};
use super::etcd::{
    AbortOnDrop, EtcdAccess, channel, grant_lease, keep_alive, read_prefix, retry, revoke,
};
use super::etcd_login::EtcdChannel;
use super::{StoreError, codec};

/// How long to wait before registering again after a failed registration or a lost lease.
const REGISTER_RETRY: Duration = Duration::from_secs(1);

/// The other masters of the cluster and the artifact index they share.
#[async_trait::async_trait]
pub(crate) trait Membership: Send + Sync + std::fmt::Debug {
    /// The advertised addresses of the other masters that are registered (their lease has
    /// not ended: running, or dead for less than a TTL), each once.
    async fn peers(&self) -> Result<Vec<String>, StoreError>;
    /// The digests in the registry's artifact index, as any master may read them.
    async fn indexed_artifacts(&self) -> Result<Vec<Digest>, StoreError>;
}

/// A single master on the embedded store: no peers, and the index in its own registry.
#[derive(Debug)]
pub(crate) struct SoleMaster(pub(crate) EmbeddedRegistry);

#[async_trait::async_trait]
impl Membership for SoleMaster {
    async fn peers(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn indexed_artifacts(&self) -> Result<Vec<Digest>, StoreError> {
        self.0.indexed_artifacts().await
    }
}

/// Membership kept in etcd under `P/members/`.
#[derive(Debug)]
pub(crate) struct EtcdMembership {
    kv: KvClient<EtcdChannel>,
    members: String,
    artifacts: String,
    own_key: String,
    own_address: String,
    _registration: AbortOnDrop,
}

impl EtcdMembership {
    /// Registers this master (`master_id`, reachable at `address`) under `prefix` with leases
    /// of `ttl`, in the background for as long as the value lives. Connects lazily, as the
    /// election does: registration retries until etcd answers.
    pub(crate) fn new(
        endpoints: &[String],
        access: &EtcdAccess,
        prefix: &str,
        master_id: &str,
        address: String,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        let channel = channel(endpoints, access)?;
        let members = format!("{prefix}/members/");
        let own_key = format!("{members}{master_id}");
        let registration = tokio::spawn(register(
            channel.clone(),
            own_key.clone(),
            address.clone(),
            ttl,
        ));
        Ok(Self {
            kv: KvClient::new(channel),
            artifacts: format!("{prefix}/registry/{}", codec::ARTIFACTS),
            members,
            own_key,
            own_address: address,
            _registration: AbortOnDrop(registration),
        })
    }
}

#[async_trait::async_trait]
impl Membership for EtcdMembership {
    async fn peers(&self) -> Result<Vec<String>, StoreError> {
        let members = read_prefix(&self.kv, "listing masters", &self.members, false).await?;
        Ok(others(&self.own_key, &self.own_address, members))
    }

    async fn indexed_artifacts(&self) -> Result<Vec<Digest>, StoreError> {
        let keys = read_prefix(
            &self.kv,
            "reading the artifact index",
            &self.artifacts,
            true,
        )
        .await?;
        Ok(keys
            .iter()
            .filter_map(|(key, _)| key.strip_prefix(&self.artifacts)?.parse().ok())
            .collect())
    }
}

/// The addresses of registered masters other than this one, each once. A key of this
/// master's previous run (same address, other ID) is not a peer either.
fn others(own_key: &str, own_address: &str, members: Vec<(String, Vec<u8>)>) -> Vec<String> {
    let addresses: BTreeSet<String> = members
        .into_iter()
        .filter(|(key, _)| key != own_key)
        .map(|(_, value)| String::from_utf8_lossy(&value).into_owned())
        .filter(|address| !address.is_empty() && address != own_address)
        .collect();
    addresses.into_iter().collect()
}

/// Keeps `key` = `address` on a lease of `ttl`, registering again whenever the lease is lost.
async fn register(channel: EtcdChannel, key: String, address: String, ttl: Duration) {
    let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    loop {
        match put_on_lease(&channel, &key, &address, ttl_secs).await {
            Ok((lease, granted)) => {
                tracing::debug!(%key, lease, "registered as a master");
                let (lost_tx, lost_rx) = watch::channel(None);
                keep_alive(channel.clone(), lease, granted, lost_tx).await;
                let why = lost_rx.borrow().clone().unwrap_or_default();
                tracing::warn!(%key, reason = %why, "master registration lost; registering again");
                revoke(&channel, lease).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot register as a master; retrying"),
        }
        tokio::time::sleep(REGISTER_RETRY).await;
    }
}

/// Grants a lease and puts `key` on it; returns the lease and its granted TTL.
async fn put_on_lease(
    channel: &EtcdChannel,
    key: &str,
    address: &str,
    ttl_secs: i64,
) -> Result<(i64, Duration), StoreError> {
    let (lease, ttl) = grant_lease(channel, ttl_secs, "a membership lease").await?;
    let put = retry("registering as a master", || {
        let mut kv = KvClient::new(channel.clone());
        // The trimmed KV API has no Put: a transaction without conditions is one.
        let put = PutRequest {
            key: key.as_bytes().to_vec(),
            value: address.as_bytes().to_vec(),
            lease,
        };
        let req = TxnRequest {
            compare: Vec::new(),
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put)),
            }],
            failure: Vec::new(),
        };
        async move { kv.txn(req).await }
    })
    .await;
    if let Err(e) = put {
        revoke(channel, lease).await;
        return Err(e);
    }
    Ok((lease, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_the_other_masters_each_once() {
        let member = |key: &str, address: &str| (key.to_owned(), address.as_bytes().to_vec());
        let members = vec![
            member("/c/members/a", "10.0.0.1:5050"),
            member("/c/members/b", "10.0.0.2:5050"),
            // This master's previous run at the same address, not yet expired.
            member("/c/members/old", "10.0.0.1:5050"),
            member("/c/members/c", "10.0.0.3:5050"),
            member("/c/members/c2", "10.0.0.3:5050"),
            member("/c/members/empty", ""),
        ];
        assert_eq!(
            others("/c/members/a", "10.0.0.1:5050", members),
            ["10.0.0.2:5050", "10.0.0.3:5050"]
        );
    }
}

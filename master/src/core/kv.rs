//! Each framework's small durable key-value store (Scheduler.Store): where a framework keeps
//! what it must not forget across its own restarts and the master's — job specs, which
//! instances ran, cron history — inside or outside the master process alike.
//!
//! Kept in the registry (`kv/<framework>/<key>`): every write is a registry write, durable
//! before it is answered and, with etcd, fenced by the leader's epoch. Only the framework's
//! current subscription may read or write it, so a framework that failed over cannot write
//! behind its successor. Bounded per framework by [`limits`]; removed with the framework.
//!
//! Every write gives the key a new version: the framework's revision, which grows with each
//! write to any of its keys. A write may name the version it expects (0: the key must not
//! exist) and is refused if the key moved on: compare-and-set, for a framework that runs
//! twice by mistake.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use corral_proto::ServiceError;
use corral_proto::limits::{
    MAX_STORE_BYTES, MAX_STORE_KEY_BYTES, MAX_STORE_KEYS, MAX_STORE_VALUE_BYTES,
};
use corral_types::FrameworkId;

use super::MasterCore;
use super::registry::RegistryWrite;

/// One operation on a framework's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvOp {
    Get {
        key: String,
    },
    /// `expected`: the key's current version, 0 for "absent"; `None` writes regardless.
    Put {
        key: String,
        value: Bytes,
        expected: Option<u64>,
    },
    Delete {
        key: String,
        expected: Option<u64>,
    },
    /// Every entry whose key starts with `prefix`, in key order.
    List {
        prefix: String,
    },
}

/// A key, its value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KvEntry {
    pub key: String,
    pub value: Bytes,
    pub version: u64,
}

/// One framework's store.
#[derive(Debug, Default, Clone)]
struct Store {
    entries: BTreeMap<String, (Bytes, u64)>,
    /// Keys and values together.
    bytes: usize,
    /// The last version given.
    revision: u64,
}

/// Every framework's store.
#[derive(Debug, Default)]
pub(super) struct Stores(HashMap<FrameworkId, Store>);

impl Stores {
    /// Restores an entry read from the registry.
    pub(super) fn recover(
        &mut self,
        framework: FrameworkId,
        key: String,
        value: Bytes,
        version: u64,
    ) {
        let store = self.0.entry(framework).or_default();
        store.bytes += key.len() + value.len();
        store.revision = store.revision.max(version);
        store.entries.insert(key, (value, version));
    }
}

impl MasterCore {
    /// Applies `op` to `framework`'s store (its current subscription checked by the caller);
    /// a write is recorded before it is answered.
    pub(super) fn kv(
        &mut self,
        framework: &FrameworkId,
        op: KvOp,
    ) -> Result<Vec<KvEntry>, ServiceError> {
        let store = self.kv.0.entry(framework.clone()).or_default();
        match op {
            KvOp::Get { key } => Ok(store
                .entries
                .get(&key)
                .map(|(value, version)| KvEntry {
                    key,
                    value: value.clone(),
                    version: *version,
                })
                .into_iter()
                .collect()),
            KvOp::List { prefix } => Ok(store
                .entries
                .range(prefix.clone()..)
                .take_while(|(key, _)| key.starts_with(&prefix))
                .map(|(key, (value, version))| KvEntry {
                    key: key.clone(),
                    value: value.clone(),
                    version: *version,
                })
                .collect()),
            KvOp::Put {
                key,
                value,
                expected,
            } => {
                check_key(&key)?;
                if value.len() > MAX_STORE_VALUE_BYTES {
                    return Err(ServiceError::InvalidArgument(format!(
                        "value: {} bytes, at most {MAX_STORE_VALUE_BYTES}",
                        value.len()
                    )));
                }
                let current = store.entries.get(&key);
                check_version(&key, current.map(|(_, v)| *v), expected)?;
                let freed = current.map_or(0, |(old, _)| key.len() + old.len());
                let bytes = store.bytes - freed + key.len() + value.len();
                if bytes > MAX_STORE_BYTES {
                    return Err(ServiceError::ResourceExhausted(format!(
                        "framework {framework}'s store would hold {bytes} bytes, at most \
                         {MAX_STORE_BYTES}"
                    )));
                }
                if current.is_none() && store.entries.len() >= MAX_STORE_KEYS {
                    return Err(ServiceError::ResourceExhausted(format!(
                        "framework {framework}'s store holds {MAX_STORE_KEYS} keys, the most it may"
                    )));
                }
                store.revision += 1;
                let version = store.revision;
                store.bytes = bytes;
                store.entries.insert(key.clone(), (value.clone(), version));
                let entry = KvEntry {
                    key,
                    value,
                    version,
                };
                self.persist(RegistryWrite::Kv {
                    framework: framework.clone(),
                    key: entry.key.clone(),
                    entry: Some((entry.value.clone(), version)),
                });
                Ok(vec![KvEntry {
                    value: Bytes::new(),
                    ..entry
                }])
            }
            KvOp::Delete { key, expected } => {
                check_key(&key)?;
                let current = store.entries.get(&key).map(|(_, v)| *v);
                check_version(&key, current, expected)?;
                if let Some((value, _)) = store.entries.remove(&key) {
                    store.bytes -= key.len() + value.len();
                    self.persist(RegistryWrite::Kv {
                        framework: framework.clone(),
                        key,
                        entry: None,
                    });
                }
                Ok(Vec::new())
            }
        }
    }

    /// Drops a removed framework's store, from the registry too.
    pub(super) fn remove_kv(&mut self, framework: &FrameworkId) {
        let Some(store) = self.kv.0.remove(framework) else {
            return;
        };
        for key in store.entries.into_keys() {
            self.persist(RegistryWrite::Kv {
                framework: framework.clone(),
                key,
                entry: None,
            });
        }
    }
}

fn check_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty() || key.len() > MAX_STORE_KEY_BYTES || key.contains('\0') {
        return Err(ServiceError::InvalidArgument(format!(
            "key: must be 1 to {MAX_STORE_KEY_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

/// Refuses a write that expects another version than the key has (0: absent).
fn check_version(
    key: &str,
    current: Option<u64>,
    expected: Option<u64>,
) -> Result<(), ServiceError> {
    match expected {
        Some(expected) if expected != current.unwrap_or(0) => {
            Err(ServiceError::FailedPrecondition(format!(
                "key {key:?} is at version {}, not {expected}",
                current.unwrap_or(0)
            )))
        }
        _ => Ok(()),
    }
}

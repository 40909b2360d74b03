//! Registry persistence: the durable record the master recovers from (DESIGN.md, "Registry").
//!
//! One trait, [`Registry`], with two backends:
//! - [`embedded`]: a redb file in the master's work dir, the default; a single master needs
//!   nothing else. Its epoch is a counter in the file, incremented at every start.
//! - [`etcd`]: several masters share an etcd cluster; one leads (an etcd lease), its epoch is
//!   the create revision of its election key, and every write is a transaction that
//!   compares that key is still its own (fencing).
//!
//! Both store the same keys and values ([`codec`]): `agents/<id>`, `frameworks/<id>`,
//! `weights/<role>`, `quotas/<role>`, `artifacts/<digest>`, each a protobuf record.

pub(crate) mod codec;
pub(crate) mod embedded;
pub(crate) mod etcd;
pub(crate) mod etcd_login;
pub(crate) mod members;

use std::fmt;
use std::str::FromStr;

use crate::core::{Recovered, RegistryWrite};

/// Where the registry lives (`corral master --store`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreConfig {
    /// A redb file, `registry.redb`, in the master's work dir.
    #[default]
    Embedded,
    /// An etcd cluster shared by several masters, under a key prefix.
    Etcd {
        /// `host:port` of each etcd member.
        endpoints: Vec<String>,
        /// The key prefix, without a trailing slash (`/corral`).
        prefix: String,
    },
}

impl FromStr for StoreConfig {
    type Err = String;

    /// `embedded`, or `etcd://host:port[,host:port...]/prefix`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "embedded" {
            return Ok(Self::Embedded);
        }
        let Some(rest) = s.strip_prefix("etcd://") else {
            return Err(format!(
                "unknown store {s:?}: expected `embedded` or `etcd://host:port[,host:port]/prefix`"
            ));
        };
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() {
            return Err(format!("store {s:?} names no etcd endpoint"));
        }
        if let Some(bad) = endpoints.iter().find(|e| !valid_endpoint(e)) {
            return Err(format!(
                "store {s:?}: etcd endpoint {bad:?} is not host:port"
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(format!(
                "store {s:?} needs a key prefix (etcd://host:port/corral): masters of one cluster share it"
            ));
        }
        Ok(Self::Etcd {
            endpoints,
            prefix: format!("/{prefix}"),
        })
    }
}

fn valid_endpoint(e: &str) -> bool {
    e.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Etcd { endpoints, prefix } => {
                write!(f, "etcd://{}{prefix}", endpoints.join(","))
            }
        }
    }
}

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    // The cause is the error's source, shown by `{:#}` and error reports.
    #[error("cannot open the registry file {path}")]
    Open {
        path: std::path::PathBuf,
        source: redb::DatabaseError,
    },
    #[error("registry file: {0}")]
    Embedded(#[from] redb::Error),
    #[error("registry written by a newer corral (schema {found}, this one reads up to {known})")]
    NewerSchema { found: u64, known: u64 },
    #[error("registry record {key:?} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("no longer the leader: etcd refused a write fenced by epoch {epoch}")]
    Fenced { epoch: u64 },
    #[error("registry task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The durable record of agents, frameworks, weights, quotas, reservations, drain state and
/// the artifact index. Writes are all or nothing and durable when `commit` returns.
#[async_trait::async_trait]
pub(crate) trait Registry: Send + Sync + fmt::Debug {
    /// Everything recorded.
    async fn load(&self) -> Result<Recovered, StoreError>;
    /// Makes `writes` durable, in order, atomically.
    async fn commit(&self, writes: Vec<RegistryWrite>) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_settings_parse_with_clear_errors() {
        assert_eq!("embedded".parse(), Ok(StoreConfig::Embedded));
        assert_eq!(
            "etcd://10.0.0.1:2379,10.0.0.2:2379/corral/".parse(),
            Ok(StoreConfig::Etcd {
                endpoints: vec!["10.0.0.1:2379".into(), "10.0.0.2:2379".into()],
                prefix: "/corral".into(),
            })
        );
        let err = |s: &str| s.parse::<StoreConfig>().unwrap_err();
        assert!(err("redb").contains("expected `embedded`"));
        assert!(err("etcd:///corral").contains("no etcd endpoint"));
        assert!(err("etcd://host/corral").contains("not host:port"));
        assert!(err("etcd://h:2379").contains("needs a key prefix"));
        let round = "etcd://a:1,b:2/x".parse::<StoreConfig>().unwrap();
        assert_eq!(round.to_string(), "etcd://a:1,b:2/x");
    }
}

/// An in-memory registry for tests of the runtime: commits wait for permits, so a test
/// decides when a write becomes durable, and can be made to fail.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Mutex;

    use tokio::sync::Semaphore;

    use super::*;

    #[derive(Debug)]
    pub(crate) struct GatedRegistry {
        pub(crate) permits: Semaphore,
        pub(crate) committed: Mutex<Vec<Vec<RegistryWrite>>>,
        pub(crate) fail: std::sync::atomic::AtomicBool,
    }

    impl GatedRegistry {
        /// Commits wait until [`Semaphore::add_permits`] lets them through.
        pub(crate) fn closed() -> Self {
            Self {
                permits: Semaphore::new(0),
                committed: Mutex::new(Vec::new()),
                fail: false.into(),
            }
        }

        /// Every commit goes through at once.
        pub(crate) fn open() -> Self {
            let r = Self::closed();
            r.permits.add_permits(Semaphore::MAX_PERMITS);
            r
        }

        pub(crate) fn batches(&self) -> Vec<Vec<RegistryWrite>> {
            self.committed.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl Registry for GatedRegistry {
        async fn load(&self) -> Result<Recovered, StoreError> {
            Ok(Recovered::default())
        }

        async fn commit(&self, writes: Vec<RegistryWrite>) -> Result<(), StoreError> {
            self.permits.acquire().await.unwrap().forget();
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::NewerSchema { found: 0, known: 0 });
            }
            self.committed.lock().unwrap().push(writes);
            Ok(())
        }
    }
}

//! The embedded registry: one redb file, `<work_dir>/registry.redb`.
//!
//! Table `records` maps [`codec`](super::codec) keys to their values; table `meta` holds the
//! schema version and the epoch counter. redb commits are durable (fsync) when `commit`
//! returns. Its calls block, so they run on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_types::Digest;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Registry, StoreError, codec};
use crate::core::{Recovered, RegistryWrite};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";
const EPOCH_KEY: &str = "epoch";
/// The layout this code reads and writes.
const SCHEMA: u64 = 1;

/// The registry file's name in the work dir.
pub(crate) const FILE_NAME: &str = "registry.redb";

/// A registry in a redb file. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddedRegistry {
    db: Arc<Database>,
    path: PathBuf,
}

impl EmbeddedRegistry {
    /// Opens (creating) `<work_dir>/registry.redb`. A file that is not a registry, or one
    /// written by a newer corral, is an error: nothing is overwritten.
    pub(crate) async fn open(work_dir: &Path) -> Result<Self, StoreError> {
        let path = work_dir.join(FILE_NAME);
        let dir = work_dir.to_owned();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::Open {
                path: path.clone(),
                source: redb::DatabaseError::Storage(redb::StorageError::Io(e)),
            })?;
            let db = Database::create(&path).map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
            let tx = db.begin_write().map_err(redb::Error::from)?;
            {
                tx.open_table(RECORDS).map_err(redb::Error::from)?;
                let mut meta = tx.open_table(META).map_err(redb::Error::from)?;
                let found = meta
                    .get(SCHEMA_KEY)
                    .map_err(redb::Error::from)?
                    .map(|v| v.value());
                match found {
                    Some(found) if found > SCHEMA => {
                        return Err(StoreError::NewerSchema {
                            found,
                            known: SCHEMA,
                        });
                    }
                    Some(_) => {}
                    None => {
                        meta.insert(SCHEMA_KEY, SCHEMA).map_err(redb::Error::from)?;
                    }
                }
            }
            tx.commit().map_err(redb::Error::from)?;
            Ok(Self {
                db: Arc::new(db),
                path,
            })
        })
        .await?
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The digests in the artifact index.
    pub(crate) async fn indexed_artifacts(&self) -> Result<Vec<Digest>, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(redb::Error::from)?;
            let table = tx.open_table(RECORDS).map_err(redb::Error::from)?;
            let mut digests = Vec::new();
            for entry in table.range(codec::ARTIFACTS..).map_err(redb::Error::from)? {
                let (key, _) = entry.map_err(redb::Error::from)?;
                let Some(digest) = key.value().strip_prefix(codec::ARTIFACTS) else {
                    break;
                };
                digests.push(digest.parse().map_err(|_| StoreError::Corrupt {
                    key: key.value().to_owned(),
                    reason: "not a digest".into(),
                })?);
            }
            Ok(digests)
        })
        .await?
    }

    /// Increments and returns the epoch counter: each start of a master on this file leads
    /// with a higher epoch than any before it.
    pub(crate) async fn next_epoch(&self) -> Result<u64, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(redb::Error::from)?;
            let epoch = {
                let mut meta = tx.open_table(META).map_err(redb::Error::from)?;
                let last = meta
                    .get(EPOCH_KEY)
                    .map_err(redb::Error::from)?
                    .map_or(0, |v| v.value());
                let epoch = last.saturating_add(1);
                meta.insert(EPOCH_KEY, epoch).map_err(redb::Error::from)?;
                epoch
            };
            tx.commit().map_err(redb::Error::from)?;
            Ok(epoch)
        })
        .await?
    }
}

#[async_trait::async_trait]
impl Registry for EmbeddedRegistry {
    async fn load(&self) -> Result<Recovered, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(redb::Error::from)?;
            let table = tx.open_table(RECORDS).map_err(redb::Error::from)?;
            let mut pairs = Vec::new();
            for entry in table.iter().map_err(redb::Error::from)? {
                let (k, v) = entry.map_err(redb::Error::from)?;
                pairs.push((k.value().to_owned(), v.value().to_vec()));
            }
            codec::decode(pairs)
        })
        .await?
    }

    async fn commit(&self, writes: Vec<RegistryWrite>) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(redb::Error::from)?;
            {
                let mut table = tx.open_table(RECORDS).map_err(redb::Error::from)?;
                for w in writes.iter().map(codec::encode) {
                    match &w.value {
                        Some(v) => {
                            table
                                .insert(w.key.as_str(), v.as_slice())
                                .map_err(redb::Error::from)?;
                        }
                        None => {
                            table.remove(w.key.as_str()).map_err(redb::Error::from)?;
                        }
                    }
                }
            }
            tx.commit().map_err(redb::Error::from)?;
            Ok(())
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::tests::sample;

    #[tokio::test]
    async fn commits_survive_reopening_and_epochs_increase() {
        let dir = tempfile::tempdir().unwrap();
        let reg = EmbeddedRegistry::open(dir.path()).await.unwrap();
        assert_eq!(reg.next_epoch().await.unwrap(), 1);
        reg.commit(sample()).await.unwrap();
        let before = reg.load().await.unwrap();
        assert_eq!(before.agents.len(), 1);
        assert_eq!(before.quotas.len(), 1);
        drop(reg);

        let reg = EmbeddedRegistry::open(dir.path()).await.unwrap();
        assert_eq!(reg.next_epoch().await.unwrap(), 2);
        assert_eq!(reg.load().await.unwrap(), before);
        // A removed quota is gone after the next load.
        let RegistryWrite::Quota { role, .. } = sample().remove(3) else {
            panic!("sample order changed");
        };
        reg.commit(vec![RegistryWrite::Quota { role, quota: None }])
            .await
            .unwrap();
        assert!(reg.load().await.unwrap().quotas.is_empty());
    }

    #[tokio::test]
    async fn the_index_lists_the_artifacts_recorded_and_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let reg = EmbeddedRegistry::open(dir.path()).await.unwrap();
        // Keys on either side of the index's range are not in it.
        reg.commit(sample()).await.unwrap();
        let recorded: Vec<Digest> = reg
            .load()
            .await
            .unwrap()
            .artifacts
            .iter()
            .map(|a| a.digest)
            .collect();
        assert_eq!(recorded.len(), 1);
        assert_eq!(reg.indexed_artifacts().await.unwrap(), recorded);
        reg.commit(vec![RegistryWrite::DropArtifact(recorded[0])])
            .await
            .unwrap();
        assert_eq!(reg.indexed_artifacts().await.unwrap(), vec![]);
        assert!(reg.load().await.unwrap().artifacts.is_empty());
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_registry_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let garbage = vec![0xA5u8; 64 * 1024];
        std::fs::write(&path, &garbage).unwrap();
        let err = EmbeddedRegistry::open(dir.path()).await.unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }

    #[tokio::test]
    async fn a_registry_from_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let reg = EmbeddedRegistry::open(dir.path()).await.unwrap();
        let db = reg.db.clone();
        drop(reg);
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert(SCHEMA_KEY, SCHEMA + 1)
            .unwrap();
        tx.commit().unwrap();
        drop(db);
        let err = EmbeddedRegistry::open(dir.path()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found: 2, known: 1 }),
            "{err}"
        );
    }
}

//! The state database: one redb file (`berth.redb`) with a schema version and ordered
//! migrations. The engine keeps container records here as JSON values; the image store keeps its
//! own tables in the same file.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{EngineError, Result};

/// The schema this build writes. Bump it and add a step to [`MIGRATIONS`] on any change.
pub const SCHEMA_VERSION: u64 = 3;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
pub(crate) const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("volumes");
pub(crate) const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");

/// Ordered migrations: entry `i` upgrades a store at version `i + 1` to `i + 2`.
const MIGRATIONS: &[fn(&redb::WriteTransaction) -> Result<()>] = &[add_volumes, add_networks];

/// 2 -> 3: the network table.
fn add_networks(txn: &redb::WriteTransaction) -> Result<()> {
    txn.open_table(NETWORKS)?;
    Ok(())
}

/// 1 -> 2: the volume table.
fn add_volumes(txn: &redb::WriteTransaction) -> Result<()> {
    txn.open_table(VOLUMES)?;
    Ok(())
}

/// The open state database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Database>,
}

impl Db {
    /// Opens (or creates) the database and brings its schema up to date. A store written by a
    /// newer Berth is refused rather than misread.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            let mut version = match found {
                Some(v) => v,
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                    SCHEMA_VERSION
                }
            };
            if version > SCHEMA_VERSION {
                return Err(EngineError::Db(format!(
                    "{} has schema version {version}, newer than this berthd's {SCHEMA_VERSION}",
                    path.display()
                )));
            }
            while version < SCHEMA_VERSION {
                let step = MIGRATIONS.get((version - 1) as usize).ok_or_else(|| {
                    EngineError::Db(format!("no migration from schema {version}"))
                })?;
                step(&txn)?;
                version += 1;
                meta.insert("schema_version", version)?;
            }
            txn.open_table(CONTAINERS)?;
            txn.open_table(VOLUMES)?;
            txn.open_table(NETWORKS)?;
        }
        txn.commit()?;
        Ok(Self {
            inner: Arc::new(db),
        })
    }

    /// The underlying database, shared with the image store.
    pub fn database(&self) -> Arc<Database> {
        self.inner.clone()
    }

    /// The schema version on disk.
    pub fn schema_version(&self) -> Result<u64> {
        let txn = self.inner.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get("schema_version")?.map(|v| v.value()).unwrap_or(0))
    }

    /// Writes one JSON record (one transaction: atomic and durable).
    pub fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let data = serde_json::to_vec(value).map_err(|e| EngineError::Db(e.to_string()))?;
        let txn = self.inner.begin_write()?;
        txn.open_table(table)?.insert(key, data.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Deletes one record.
    pub fn delete(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<()> {
        let txn = self.inner.begin_write()?;
        txn.open_table(table)?.remove(key)?;
        txn.commit()?;
        Ok(())
    }

    /// Every record of a table; records that no longer parse are skipped with a warning.
    pub fn all<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<T>> {
        let txn = self.inner.begin_read()?;
        let t = txn.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            match serde_json::from_slice(v.value()) {
                Ok(rec) => out.push(rec),
                Err(e) => tracing::warn!(key = k.value(), "skipping unreadable record: {e}"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_written_and_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        db.put(CONTAINERS, "a", &serde_json::json!({"x": 1}))
            .unwrap();
        drop(db);
        let db = Db::open(&path).unwrap();
        let all: Vec<serde_json::Value> = db.all(CONTAINERS).unwrap();
        assert_eq!(all, vec![serde_json::json!({"x": 1})]);
        db.delete(CONTAINERS, "a").unwrap();
        assert!(db.all::<serde_json::Value>(CONTAINERS).unwrap().is_empty());
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Db::open(&path).err().expect("must refuse");
        assert!(err.to_string().contains("newer"), "{err}");
    }
}

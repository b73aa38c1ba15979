//! The build cache: what each build step produced (its layers and image config), keyed by
//! a digest of everything the step depends on. It lives with the images (table
//! `build_cache`) because the layers it names must survive garbage collection exactly as an
//! image's do; `builder prune` drops entries and collects what no image or entry uses.

use chrono::Utc;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::ImageError;
use crate::store::{ImageStore, LayerRef};

/// Cache key -> JSON [`CacheEntry`].
pub(crate) const BUILD_CACHE: TableDefinition<&str, &[u8]> = TableDefinition::new("build_cache");

/// The schema of a cache entry this build writes; entries of other versions are misses.
const ENTRY_VERSION: u32 = 1;

/// The state a build step left: the layers of the stage so far and its image config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Schema of the entry.
    #[serde(default)]
    pub v: u32,
    /// Layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// The image config (JSON) after the step.
    pub config: serde_json::Value,
    /// Bytes of the layer the step made (0 when it made none).
    pub size: u64,
    /// What the step was, for `builder prune` and debugging.
    pub description: String,
    /// When the entry was made, unix seconds.
    pub created: i64,
    /// When a build last used it, unix seconds.
    pub last_used: i64,
}

/// What `builder prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachePruned {
    /// Keys of the removed entries.
    pub keys: Vec<String>,
    /// Bytes of the layers they had made.
    pub reclaimed: u64,
}

/// Cache writes need not reach the disk at once: losing one costs a rebuild of a step,
/// and the next durable commit of the database carries them.
fn lazy(txn: &mut redb::WriteTransaction) -> Result<(), ImageError> {
    txn.set_durability(redb::Durability::None)
        .map_err(|e| ImageError::Db(format!("build cache transaction: {e}")))
}

impl ImageStore {
    /// The entry of `key`; `None` when absent, of another schema or with a layer gone. A
    /// build marks what it used with [`ImageStore::cache_touch`] once at its end.
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>, ImageError> {
        let raw = {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(BUILD_CACHE)?;
            table.get(key)?.map(|v| v.value().to_vec())
        };
        let Some(raw) = raw else { return Ok(None) };
        let entry: CacheEntry = match serde_json::from_slice(&raw) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(key, error = %e, "ignoring an unreadable build cache entry");
                return Ok(None);
            }
        };
        if entry.v != ENTRY_VERSION {
            return Ok(None);
        }
        // The layers may have gone with a prune that raced this build: then it is a miss.
        let diff_ids: Vec<String> = entry.layers.iter().map(|l| l.diff_id.clone()).collect();
        if self.layer_dirs(&diff_ids).is_err() {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// Marks the entries of `keys` as used now, in one transaction.
    pub fn cache_touch(&self, keys: &[String]) -> Result<(), ImageError> {
        let now = Utc::now().timestamp();
        let _g = self.guard();
        let mut txn = self.db.begin_write()?;
        lazy(&mut txn)?;
        {
            let mut table = txn.open_table(BUILD_CACHE)?;
            for k in keys {
                let raw = table.get(k.as_str())?.map(|v| v.value().to_vec());
                let Some(mut entry) =
                    raw.and_then(|r| serde_json::from_slice::<CacheEntry>(&r).ok())
                else {
                    continue;
                };
                if now - entry.last_used > 60 {
                    entry.last_used = now;
                    let data = serde_json::to_vec(&entry).map_err(|e| {
                        ImageError::Corrupt(format!("encode build cache entry: {e}"))
                    })?;
                    table.insert(k.as_str(), data.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Records what a step produced. Its layers must be unpacked (pending or in use).
    pub fn cache_put(
        &self,
        key: &str,
        layers: Vec<LayerRef>,
        config: serde_json::Value,
        size: u64,
        description: &str,
    ) -> Result<CacheEntry, ImageError> {
        let now = Utc::now().timestamp();
        let entry = CacheEntry {
            v: ENTRY_VERSION,
            layers,
            config,
            size,
            description: description.to_owned(),
            created: now,
            last_used: now,
        };
        let _g = self.guard();
        self.cache_write(key, &entry)?;
        Ok(entry)
    }

    fn cache_write(&self, key: &str, entry: &CacheEntry) -> Result<(), ImageError> {
        let data = serde_json::to_vec(entry)
            .map_err(|e| ImageError::Corrupt(format!("encode build cache entry: {e}")))?;
        let mut txn = self.db.begin_write()?;
        lazy(&mut txn)?;
        txn.open_table(BUILD_CACHE)?.insert(key, data.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Every entry's layers, for garbage collection.
    pub(crate) fn cached_layers(&self) -> Result<Vec<Vec<LayerRef>>, ImageError> {
        Ok(self
            .cache_entries()?
            .into_iter()
            .map(|(_, e)| e.layers)
            .collect())
    }

    /// Every readable entry with its key.
    pub fn cache_entries(&self) -> Result<Vec<(String, CacheEntry)>, ImageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BUILD_CACHE)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            if let Ok(e) = serde_json::from_slice::<CacheEntry>(v.value()) {
                out.push((k.value().to_owned(), e));
            }
        }
        Ok(out)
    }

    /// Removes the entries last used before `until` (unix seconds; all when `None`), then
    /// the layers and blobs nothing uses any more.
    pub fn cache_prune(&self, until: Option<i64>) -> Result<CachePruned, ImageError> {
        let mut pruned = CachePruned::default();
        {
            let _g = self.guard();
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(BUILD_CACHE)?;
                let mut doomed = Vec::new();
                for row in table.iter()? {
                    let (k, v) = row?;
                    let entry = serde_json::from_slice::<CacheEntry>(v.value()).ok();
                    let old = match (&entry, until) {
                        (Some(e), Some(t)) => e.last_used < t,
                        _ => true,
                    };
                    if old {
                        pruned.reclaimed += entry.map_or(0, |e| e.size);
                        doomed.push(k.value().to_owned());
                    }
                }
                for k in &doomed {
                    table.remove(k.as_str())?;
                }
                pruned.keys = doomed;
            }
            txn.commit()?;
            self.collect_garbage()?;
        }
        Ok(pruned)
    }
}

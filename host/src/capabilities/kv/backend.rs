//! The sled storage behind `wasi:keyvalue`: one tree per app and bucket, named
//! `kv/<app>/<bucket>`, so an app can only ever reach trees under its own name.
//!
//! Writes are acknowledged according to [`Durability`]: with `flush` the call returns only
//! after sled has written and fsynced its log, so an acknowledged write survives `kill -9`.
//!
//! What one app can take is bounded: its bytes and buckets by its [`KvQuota`] (accounted in
//! [`AppStorage`]), each call by the `[kv]` key, value and batch limits, and every write by the
//! free space the [`DiskGuard`] keeps on the data disk.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::disk::{DiskFull, DiskGuard};
use crate::group_commit::GroupCommit;

/// When an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every write call returns after an fsync: survives `kill -9` and power loss (as far as
    /// the disk honours fsync). Costs one fsync per write call (concurrent ones share it).
    Flush,
    /// Writes return at once and are fsynced every `flush_interval_ms`: a crash can lose the
    /// writes acknowledged in the last interval. Several times faster.
    Periodic,
}

/// The `[kv]` section of the node config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvConfig {
    pub durability: Durability,
    /// How often buffered writes are fsynced in the background (both modes), in ms.
    pub flush_interval_ms: u64,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Keys per `list-keys` page.
    pub page_size: usize,
    /// Keys one `get-many`, `set-many` or `delete-many` call may name.
    pub max_batch_keys: usize,
    /// Bytes (keys and values) one `get-many` may return or one `set-many` may carry.
    pub max_batch_bytes: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Flush,
            flush_interval_ms: 500,
            max_key_bytes: 1024,
            max_value_bytes: 1024 * 1024,
            page_size: 100,
            max_batch_keys: 1000,
            max_batch_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What one app may keep in its key-value namespace (`[limits] kv_quota_mib` and `kv_buckets`,
/// or `edge deploy --kv-quota` and `--kv-buckets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Bytes of keys and values, all buckets together.
    pub bytes: u64,
    /// Buckets.
    pub buckets: usize,
}

impl Default for KvQuota {
    fn default() -> Self {
        Self {
            bytes: u64::MAX,
            buckets: usize::MAX,
        }
    }
}

/// Longest bucket name.
pub const MAX_BUCKET_LEN: usize = 64;

/// Why a key-value operation failed; mapped onto each WIT version's `error` variant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KvError {
    #[error("this app has no key-value grant; redeploy it with --kv")]
    AccessDenied,
    #[error(
        "invalid bucket name {0:?}: use 1 to {MAX_BUCKET_LEN} letters, digits, '.', '_' or '-'"
    )]
    InvalidBucket(String),
    #[error("key is {len} bytes, over the limit of {limit}")]
    KeyTooLarge { len: usize, limit: usize },
    #[error("key is empty")]
    EmptyKey,
    #[error("value is {len} bytes, over the limit of {limit}")]
    ValueTooLarge { len: usize, limit: usize },
    #[error("the value of key {0:?} is not a decimal integer, so it cannot be incremented")]
    NotANumber(String),
    #[error("incrementing key {0:?} overflows")]
    Overflow(String),
    #[error(
        "this write would take the app's key-value data to {would} bytes, over its quota of \
         {quota}: nothing was stored; delete keys, or redeploy with a larger --kv-quota"
    )]
    QuotaExceeded { would: u64, quota: u64 },
    #[error(
        "the app already has {have} key-value buckets, its limit: bucket {bucket:?} was not \
         created; use an existing bucket, or redeploy with a larger --kv-buckets"
    )]
    TooManyBuckets { have: usize, bucket: String },
    #[error("{what} names {count} keys, over the limit of {limit} per call; split it")]
    TooManyKeys {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{what} would move {bytes} bytes, over the limit of {limit} per call; split it")]
    BatchTooLarge {
        what: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error("{0}")]
    DiskFull(#[from] DiskFull),
    #[error("storage error: {0}")]
    Storage(String),
}

impl From<sled::Error> for KvError {
    fn from(err: sled::Error) -> Self {
        KvError::Storage(err.to_string())
    }
}

/// The node's key-value store.
pub struct KvBackend {
    db: sled::Db,
    config: KvConfig,
    /// Shared with the other writers of the node's database.
    commit: Arc<GroupCommit>,
    disk: Arc<DiskGuard>,
    /// What each app holds, counted when it first opens a bucket after start.
    storage: Mutex<HashMap<String, Arc<AppStorage>>>,
}

/// What one app's namespace holds: bytes of keys and values and its buckets. Kept up to date
/// by every write through [`Bucket`]; concurrent writes of the same key may make the byte count
/// drift by a value's size, never past the quota by more than that.
pub struct AppStorage {
    bytes: AtomicU64,
    buckets: Mutex<BTreeSet<String>>,
}

impl AppStorage {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl KvBackend {
    pub fn new(
        db: sled::Db,
        config: KvConfig,
        commit: Arc<GroupCommit>,
        disk: Arc<DiskGuard>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            config,
            commit,
            disk,
            storage: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// What `app` holds (counted now if this is the first look since start).
    pub fn storage(&self, app: &str) -> Result<Arc<AppStorage>, KvError> {
        let mut storage = self.storage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = storage.get(app) {
            return Ok(found.clone());
        }
        let buckets: BTreeSet<String> = self.buckets(app).into_iter().collect();
        let mut bytes = 0u64;
        for bucket in &buckets {
            for entry in self.db.open_tree(tree_name(app, bucket))?.iter() {
                let (key, value) = entry?;
                bytes += (key.len() + value.len()) as u64;
            }
        }
        let counted = Arc::new(AppStorage {
            bytes: AtomicU64::new(bytes),
            buckets: Mutex::new(buckets),
        });
        storage.insert(app.to_string(), counted.clone());
        Ok(counted)
    }

    /// Opens (creating, within `quota`) `bucket` in `app`'s namespace. An empty name means
    /// `default`.
    pub fn bucket(&self, app: &str, bucket: &str, quota: KvQuota) -> Result<Bucket, KvError> {
        let bucket = if bucket.is_empty() { "default" } else { bucket };
        validate_bucket(bucket)?;
        let storage = self.storage(app)?;
        {
            let mut buckets = storage.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if !buckets.contains(bucket) {
                if buckets.len() >= quota.buckets {
                    return Err(KvError::TooManyBuckets {
                        have: buckets.len(),
                        bucket: bucket.to_string(),
                    });
                }
                buckets.insert(bucket.to_string());
            }
        }
        let tree = self.db.open_tree(tree_name(app, bucket))?;
        Ok(Bucket {
            tree,
            name: bucket.to_string(),
            storage,
            quota: quota.bytes,
            disk: self.disk.clone(),
        })
    }

    /// The buckets holding data for `app`.
    pub fn buckets(&self, app: &str) -> Vec<String> {
        let prefix = format!("kv/{app}/");
        self.db
            .tree_names()
            .into_iter()
            .filter_map(|name| {
                String::from_utf8(name.to_vec())
                    .ok()?
                    .strip_prefix(&prefix)
                    .map(str::to_string)
            })
            .collect()
    }

    /// Deletes every bucket of `app`; returns how many there were.
    pub fn delete_app_data(&self, app: &str) -> Result<usize, KvError> {
        let buckets = self.buckets(app);
        for bucket in &buckets {
            self.db.drop_tree(tree_name(app, bucket))?;
        }
        self.db.flush()?;
        self.storage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app);
        Ok(buckets.len())
    }

    /// Makes the writes done so far durable according to the configured mode: in `flush`
    /// mode through the node's group commit (a failed fsync is an error, never an
    /// acknowledgement).
    pub async fn persist(&self) -> Result<(), KvError> {
        if self.config.durability != Durability::Flush {
            return Ok(());
        }
        self.commit
            .persist()
            .await
            .map_err(|err| KvError::Storage(err.to_string()))
    }

    pub fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if key.len() > self.config.max_key_bytes {
            return Err(KvError::KeyTooLarge {
                len: key.len(),
                limit: self.config.max_key_bytes,
            });
        }
        Ok(())
    }

    pub fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() > self.config.max_value_bytes {
            return Err(KvError::ValueTooLarge {
                len: value.len(),
                limit: self.config.max_value_bytes,
            });
        }
        Ok(())
    }
}

/// The operations both WIT versions share: limits checked, writes persisted per the
/// durability mode. Each version's bindings only convert types and errors.
impl KvBackend {
    pub fn get(&self, bucket: &Bucket, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check_key(key)?;
        bucket.get(key)
    }

    pub fn exists(&self, bucket: &Bucket, key: &str) -> Result<bool, KvError> {
        self.check_key(key)?;
        bucket.exists(key)
    }

    pub async fn set(&self, bucket: &Bucket, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.check_key(key)?;
        self.check_value(value)?;
        bucket.set(key, value)?;
        self.persist().await
    }

    pub async fn delete(&self, bucket: &Bucket, key: &str) -> Result<(), KvError> {
        self.check_key(key)?;
        bucket.delete(key)?;
        self.persist().await
    }

    pub async fn increment(&self, bucket: &Bucket, key: &str, delta: i64) -> Result<i64, KvError> {
        self.check_key(key)?;
        let value = bucket.increment(key, delta)?;
        self.persist().await?;
        Ok(value)
    }

    /// Values of `keys`, stopping with an error once the answer would pass
    /// `max_batch_bytes` (so a guest cannot make the node copy its whole store at once).
    pub fn get_many(
        &self,
        bucket: &Bucket,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        self.check_batch("get-many", keys.len())?;
        keys.iter().try_for_each(|k| self.check_key(k))?;
        let mut bytes = 0usize;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let value = bucket.get(key)?;
            bytes += key.len() + value.as_ref().map_or(0, Vec::len);
            if bytes > self.config.max_batch_bytes {
                return Err(KvError::BatchTooLarge {
                    what: "get-many",
                    bytes,
                    limit: self.config.max_batch_bytes,
                });
            }
            values.push(value);
        }
        Ok(values)
    }

    pub async fn set_many(
        &self,
        bucket: &Bucket,
        pairs: &[(String, Vec<u8>)],
    ) -> Result<(), KvError> {
        self.check_batch("set-many", pairs.len())?;
        let mut bytes = 0usize;
        for (key, value) in pairs {
            self.check_key(key)?;
            self.check_value(value)?;
            bytes += key.len() + value.len();
        }
        if bytes > self.config.max_batch_bytes {
            return Err(KvError::BatchTooLarge {
                what: "set-many",
                bytes,
                limit: self.config.max_batch_bytes,
            });
        }
        bucket.set_many(pairs)?;
        self.persist().await
    }

    pub async fn delete_many(&self, bucket: &Bucket, keys: &[String]) -> Result<(), KvError> {
        self.check_batch("delete-many", keys.len())?;
        keys.iter().try_for_each(|k| self.check_key(k))?;
        bucket.delete_many(keys)?;
        self.persist().await
    }

    fn check_batch(&self, what: &'static str, count: usize) -> Result<(), KvError> {
        if count > self.config.max_batch_keys {
            return Err(KvError::TooManyKeys {
                what,
                count,
                limit: self.config.max_batch_keys,
            });
        }
        Ok(())
    }
}

fn tree_name(app: &str, bucket: &str) -> String {
    format!("kv/{app}/{bucket}")
}

fn validate_bucket(bucket: &str) -> Result<(), KvError> {
    let ok = bucket.len() <= MAX_BUCKET_LEN
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && bucket != "."
        && bucket != "..";
    if ok {
        Ok(())
    } else {
        Err(KvError::InvalidBucket(bucket.to_string()))
    }
}

/// One open bucket of one app. Cheap to clone (sled trees are reference-counted). Every write
/// is admitted against the app's quota and the disk's free space first, and counted after.
#[derive(Clone)]
pub struct Bucket {
    tree: sled::Tree,
    pub name: String,
    storage: Arc<AppStorage>,
    quota: u64,
    disk: Arc<DiskGuard>,
}

/// One page of keys and where the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// The last key of this page when more follow.
    pub next_after: Option<String>,
}

/// Bytes an entry counts for in a quota.
fn entry_bytes(key: &[u8], value: Option<&[u8]>) -> u64 {
    value.map_or(0, |v| (key.len() + v.len()) as u64)
}

impl Bucket {
    /// Takes `bytes` of the app's quota for a write about to happen, after checking the disk;
    /// the caller gives back what the write replaced (or all of it when the write fails).
    fn admit(&self, bytes: u64) -> Result<(), KvError> {
        self.disk.admit(bytes)?;
        let before = self.storage.bytes.fetch_add(bytes, Ordering::SeqCst);
        let would = before.saturating_add(bytes);
        if bytes > 0 && would > self.quota {
            self.release(bytes);
            return Err(KvError::QuotaExceeded {
                would,
                quota: self.quota,
            });
        }
        Ok(())
    }

    fn release(&self, bytes: u64) {
        let _ = self
            .storage
            .bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// Runs one write that adds `added` bytes, giving back what it replaced.
    fn write<T>(
        &self,
        added: u64,
        op: impl FnOnce() -> Result<(T, u64), sled::Error>,
    ) -> Result<T, KvError> {
        self.admit(added)?;
        match op() {
            Ok((answer, replaced)) => {
                self.release(replaced);
                Ok(answer)
            }
            Err(err) => {
                self.release(added);
                Err(err.into())
            }
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.write(entry_bytes(key.as_bytes(), Some(value)), || {
            let old = self.tree.insert(key, value)?;
            Ok(((), entry_bytes(key.as_bytes(), old.as_deref())))
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        // A delete adds nothing, so a full disk or quota never blocks one.
        let old = self.tree.remove(key)?;
        self.release(entry_bytes(key.as_bytes(), old.as_deref()));
        Ok(())
    }

    pub fn exists(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.tree.contains_key(key)?)
    }

    /// Keys in order, starting after `after`, at most `page_size` of them.
    pub fn list_keys(&self, after: Option<&str>, page_size: usize) -> Result<KeyPage, KvError> {
        let start = match after {
            Some(key) => Bound::Excluded(key.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut keys = Vec::new();
        let mut more = false;
        for entry in self.tree.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (key, _) = entry?;
            if keys.len() == page_size {
                more = true;
                break;
            }
            keys.push(String::from_utf8_lossy(&key).into_owned());
        }
        let next_after = if more { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, next_after })
    }

    /// Atomically adds `delta` to the decimal integer stored at `key` (absent counts as 0)
    /// and returns the new value. Stored as decimal text, so `get` shows `"42"`.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        loop {
            let current = self.tree.get(key)?;
            let value = match &current {
                None => 0,
                Some(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or_else(|| KvError::NotANumber(key.to_string()))?,
            };
            let next = value
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow(key.to_string()))?;
            let text = next.to_string().into_bytes();
            let added = entry_bytes(key.as_bytes(), Some(&text));
            let replaced = entry_bytes(key.as_bytes(), current.as_deref());
            let swapped = self.write(added, || {
                let swapped = self.tree.compare_and_swap(key, current, Some(text))?;
                // A lost race stored nothing: give back what was taken.
                Ok((
                    swapped.is_ok(),
                    if swapped.is_ok() { replaced } else { added },
                ))
            })?;
            if swapped {
                return Ok(next);
            }
        }
    }

    /// Replaces the value at `key` only if it is still `expected`; otherwise returns the
    /// value found.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Result<(), Option<Vec<u8>>>, KvError> {
        let added = entry_bytes(key.as_bytes(), Some(new));
        let replaced = entry_bytes(key.as_bytes(), expected);
        self.write(added, || {
            let swapped = self
                .tree
                .compare_and_swap(key, expected, Some(new))?
                .map_err(|conflict| conflict.current.map(|v| v.to_vec()));
            Ok((
                swapped.clone(),
                if swapped.is_ok() { replaced } else { added },
            ))
        })
    }

    /// Stores all pairs atomically: a crash leaves all or none of them.
    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let added = pairs
            .iter()
            .map(|(k, v)| entry_bytes(k.as_bytes(), Some(v)))
            .sum();
        self.write(added, || {
            let mut replaced = 0;
            for (key, _) in pairs {
                replaced += entry_bytes(key.as_bytes(), self.tree.get(key)?.as_deref());
            }
            let mut batch = sled::Batch::default();
            for (key, value) in pairs {
                batch.insert(key.as_bytes(), value.as_slice());
            }
            self.tree.apply_batch(batch)?;
            Ok(((), replaced))
        })
    }

    /// Deletes all keys atomically.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        let mut replaced = 0;
        for key in keys {
            replaced += entry_bytes(key.as_bytes(), self.tree.get(key)?.as_deref());
        }
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(key.as_bytes());
        }
        self.tree.apply_batch(batch)?;
        self.release(replaced);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> (tempfile::TempDir, Arc<KvBackend>) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::group_commit::open_test_db(dir.path());
        let disk = Arc::new(DiskGuard::new(
            dir.path(),
            &crate::disk::StorageConfig {
                min_free_mib: 0,
                reserve_mib: 0,
            },
        ));
        let kv = KvBackend::new(
            db.clone(),
            KvConfig::default(),
            Arc::new(GroupCommit::new(db)),
            disk,
        );
        (dir, kv)
    }

    #[test]
    fn apps_with_the_same_bucket_name_do_not_share_keys() {
        let (_dir, kv) = backend();
        kv.bucket("a", "shared", KvQuota::default())
            .unwrap()
            .set("k", b"from a")
            .unwrap();
        let b = kv.bucket("b", "shared", KvQuota::default()).unwrap();
        assert_eq!(b.get("k").unwrap(), None);
        assert!(b.list_keys(None, 10).unwrap().keys.is_empty());
        assert_eq!(kv.buckets("b"), vec!["shared".to_string()]);
    }

    #[test]
    fn bucket_names_cannot_escape_the_namespace() {
        let (_dir, kv) = backend();
        for bad in ["../b/x", "a/b", "..", &"x".repeat(65), "sp ace"] {
            assert!(
                matches!(
                    kv.bucket("a", bad, KvQuota::default()),
                    Err(KvError::InvalidBucket(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            kv.bucket("a", "", KvQuota::default()).unwrap().name,
            "default"
        );
    }

    #[test]
    fn list_keys_pages_through_every_key_once() {
        let (_dir, kv) = backend();
        let bucket = kv.bucket("a", "b", KvQuota::default()).unwrap();
        for i in 0..25 {
            bucket.set(&format!("key{i:02}"), b"v").unwrap();
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = bucket.list_keys(after.as_deref(), 10).unwrap();
            seen.extend(page.keys);
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        assert_eq!(seen[0], "key00");
        assert_eq!(seen[24], "key24");
    }

    #[test]
    fn increment_is_decimal_text_and_refuses_non_numbers() {
        let (_dir, kv) = backend();
        let bucket = kv.bucket("a", "b", KvQuota::default()).unwrap();
        assert_eq!(bucket.increment("n", 5).unwrap(), 5);
        assert_eq!(bucket.increment("n", -2).unwrap(), 3);
        assert_eq!(bucket.get("n").unwrap().unwrap(), b"3");
        bucket.set("text", b"hello").unwrap();
        assert!(matches!(
            bucket.increment("text", 1),
            Err(KvError::NotANumber(_))
        ));
        bucket.set("max", i64::MAX.to_string().as_bytes()).unwrap();
        assert!(matches!(
            bucket.increment("max", 1),
            Err(KvError::Overflow(_))
        ));
    }

    #[test]
    fn deleting_app_data_removes_only_that_app() {
        let (_dir, kv) = backend();
        kv.bucket("a", "one", KvQuota::default())
            .unwrap()
            .set("k", b"v")
            .unwrap();
        kv.bucket("a", "two", KvQuota::default())
            .unwrap()
            .set("k", b"v")
            .unwrap();
        kv.bucket("b", "one", KvQuota::default())
            .unwrap()
            .set("k", b"v")
            .unwrap();
        assert_eq!(kv.delete_app_data("a").unwrap(), 2);
        assert!(kv.buckets("a").is_empty());
        assert_eq!(
            kv.bucket("b", "one", KvQuota::default())
                .unwrap()
                .get("k")
                .unwrap()
                .unwrap(),
            b"v"
        );
    }

    #[test]
    fn an_app_cannot_store_past_its_byte_quota_and_deletes_give_room_back() {
        let (_dir, kv) = backend();
        let quota = KvQuota {
            bytes: 100,
            buckets: 8,
        };
        let bucket = kv.bucket("a", "b", quota).unwrap();
        bucket.set("k1", &[0; 40]).unwrap();
        bucket.set("k1", &[0; 40]).unwrap(); // a replacement counts once
        bucket.set("k2", &[0; 40]).unwrap();
        assert_eq!(kv.storage("a").unwrap().bytes(), 84);
        let err = bucket.set("k3", &[0; 40]).unwrap_err();
        assert!(
            matches!(err, KvError::QuotaExceeded { quota: 100, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("--kv-quota"), "{err}");
        assert_eq!(
            bucket.get("k3").unwrap(),
            None,
            "a refused write stores nothing"
        );
        bucket.delete("k1").unwrap();
        bucket.set("k3", &[0; 40]).unwrap();
        // Another app is not charged.
        kv.bucket("b", "b", quota)
            .unwrap()
            .set("k", &[0; 90])
            .unwrap();
        // The count survives a restart: recounted from disk.
        kv.storage.lock().unwrap().clear();
        assert_eq!(kv.storage("a").unwrap().bytes(), 84);
    }

    #[test]
    fn an_app_cannot_open_more_buckets_than_its_quota() {
        let (_dir, kv) = backend();
        let quota = KvQuota {
            bytes: u64::MAX,
            buckets: 2,
        };
        kv.bucket("a", "one", quota).unwrap();
        kv.bucket("a", "two", quota).unwrap();
        kv.bucket("a", "one", quota).unwrap();
        let err = kv.bucket("a", "three", quota).err().unwrap();
        assert!(
            matches!(err, KvError::TooManyBuckets { have: 2, .. }),
            "{err}"
        );
        kv.bucket("b", "three", quota).unwrap();
    }

    #[tokio::test]
    async fn batch_calls_are_bounded_in_keys_and_bytes() {
        let (_dir, kv) = backend();
        let bucket = kv.bucket("a", "b", KvQuota::default()).unwrap();
        let limit = kv.config().max_batch_keys;
        let keys: Vec<String> = (0..=limit).map(|i| format!("k{i}")).collect();
        let err = kv.get_many(&bucket, &keys).unwrap_err();
        assert!(
            matches!(
                err,
                KvError::TooManyKeys {
                    what: "get-many",
                    ..
                }
            ),
            "{err}"
        );
        // 20 values of 1 MiB pass the 16 MiB a get-many may return.
        let value = vec![1u8; 1024 * 1024];
        for i in 0..20 {
            bucket.set(&format!("big{i}"), &value).unwrap();
        }
        let big: Vec<String> = (0..20).map(|i| format!("big{i}")).collect();
        let err = kv.get_many(&bucket, &big).unwrap_err();
        assert!(matches!(err, KvError::BatchTooLarge { .. }), "{err}");
        assert_eq!(kv.get_many(&bucket, &big[..4]).unwrap().len(), 4);
        let pairs: Vec<(String, Vec<u8>)> =
            big.iter().map(|k| (k.clone(), value.clone())).collect();
        let err = kv.set_many(&bucket, &pairs).await.unwrap_err();
        assert!(
            matches!(
                err,
                KvError::BatchTooLarge {
                    what: "set-many",
                    ..
                }
            ),
            "{err}"
        );
    }
}

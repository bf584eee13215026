//! The sled storage behind `wasi:keyvalue`: one tree per app and bucket, named
//! `kv/<app>/<bucket>`, so an app can only ever reach trees under its own name.
//!
//! Writes are acknowledged according to [`Durability`]: with `flush` the call returns only
//! after sled has written and fsynced its log, so an acknowledged write survives `kill -9`.

use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
}

impl Default for KvConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Flush,
            flush_interval_ms: 500,
            max_key_bytes: 1024,
            max_value_bytes: 1024 * 1024,
            page_size: 100,
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
}

impl KvBackend {
    pub fn new(db: sled::Db, config: KvConfig, commit: Arc<GroupCommit>) -> Arc<Self> {
        Arc::new(Self { db, config, commit })
    }

    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// Opens (creating) `bucket` in `app`'s namespace. An empty name means `default`.
    pub fn bucket(&self, app: &str, bucket: &str) -> Result<Bucket, KvError> {
        let bucket = if bucket.is_empty() { "default" } else { bucket };
        validate_bucket(bucket)?;
        let tree = self.db.open_tree(tree_name(app, bucket))?;
        Ok(Bucket {
            tree,
            name: bucket.to_string(),
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

    pub fn get_many(
        &self,
        bucket: &Bucket,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        keys.iter().try_for_each(|k| self.check_key(k))?;
        bucket.get_many(keys)
    }

    pub async fn set_many(
        &self,
        bucket: &Bucket,
        pairs: &[(String, Vec<u8>)],
    ) -> Result<(), KvError> {
        for (key, value) in pairs {
            self.check_key(key)?;
            self.check_value(value)?;
        }
        bucket.set_many(pairs)?;
        self.persist().await
    }

    pub async fn delete_many(&self, bucket: &Bucket, keys: &[String]) -> Result<(), KvError> {
        keys.iter().try_for_each(|k| self.check_key(k))?;
        bucket.delete_many(keys)?;
        self.persist().await
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

/// One open bucket. Cheap to clone (sled trees are reference-counted).
#[derive(Clone)]
pub struct Bucket {
    tree: sled::Tree,
    pub name: String,
}

/// One page of keys and where the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// The last key of this page when more follow.
    pub next_after: Option<String>,
}

impl Bucket {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.tree.insert(key, value)?;
        Ok(())
    }

    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        self.tree.remove(key)?;
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
            let swapped =
                self.tree
                    .compare_and_swap(key, current, Some(next.to_string().into_bytes()))?;
            if swapped.is_ok() {
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
        Ok(self
            .tree
            .compare_and_swap(key, expected, Some(new))?
            .map_err(|conflict| conflict.current.map(|v| v.to_vec())))
    }

    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        keys.iter().map(|key| self.get(key)).collect()
    }

    /// Stores all pairs atomically: a crash leaves all or none of them.
    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let mut batch = sled::Batch::default();
        for (key, value) in pairs {
            batch.insert(key.as_bytes(), value.as_slice());
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Deletes all keys atomically.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(key.as_bytes());
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> (tempfile::TempDir, Arc<KvBackend>) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::group_commit::open_test_db(dir.path());
        (
            dir,
            KvBackend::new(
                db.clone(),
                KvConfig::default(),
                Arc::new(GroupCommit::new(db)),
            ),
        )
    }

    #[test]
    fn apps_with_the_same_bucket_name_do_not_share_keys() {
        let (_dir, kv) = backend();
        kv.bucket("a", "shared")
            .unwrap()
            .set("k", b"from a")
            .unwrap();
        let b = kv.bucket("b", "shared").unwrap();
        assert_eq!(b.get("k").unwrap(), None);
        assert!(b.list_keys(None, 10).unwrap().keys.is_empty());
        assert_eq!(kv.buckets("b"), vec!["shared".to_string()]);
    }

    #[test]
    fn bucket_names_cannot_escape_the_namespace() {
        let (_dir, kv) = backend();
        for bad in ["../b/x", "a/b", "..", &"x".repeat(65), "sp ace"] {
            assert!(
                matches!(kv.bucket("a", bad), Err(KvError::InvalidBucket(_))),
                "{bad}"
            );
        }
        assert_eq!(kv.bucket("a", "").unwrap().name, "default");
    }

    #[test]
    fn list_keys_pages_through_every_key_once() {
        let (_dir, kv) = backend();
        let bucket = kv.bucket("a", "b").unwrap();
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
        let bucket = kv.bucket("a", "b").unwrap();
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
        kv.bucket("a", "one").unwrap().set("k", b"v").unwrap();
        kv.bucket("a", "two").unwrap().set("k", b"v").unwrap();
        kv.bucket("b", "one").unwrap().set("k", b"v").unwrap();
        assert_eq!(kv.delete_app_data("a").unwrap(), 2);
        assert!(kv.buckets("a").is_empty());
        assert_eq!(
            kv.bucket("b", "one").unwrap().get("k").unwrap().unwrap(),
            b"v"
        );
    }
}

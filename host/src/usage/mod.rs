//! Usage metering: what each app consumed, as a FaaS provider bills it.
//!
//! Per app and trigger: invocations; per app: wall time (instantiation to the instance's
//! end), CPU time (of the threads while they ran the invocation: guest code and the host calls
//! it made), memory-seconds (the instance's linear memory integrated over its life, in GB-s
//! with GB = 10^9 bytes), request and message bytes in, response bytes out, inferences, and
//! how often instances grew their memory while they ran (a cost signal, not a charge).
//! [`meter`] measures one invocation; this module keeps the per-app counters, persists them
//! in sled per hour (`usage` tree, app + hour -> counters) every `[metering] flush_interval_ms`
//! and at shutdown, and answers `edge usage` and the metrics. A crash loses at most the last
//! interval's counts (documented in docs/operations.md).

pub mod meter;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use meter::{BudgetShare, CpuTimed, InvocationMeter, MemoryBudget, Trigger};

/// What an app consumed (`edge usage`, `GET /v1/usage`). docs/operations.md says exactly how
/// each figure is measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageCounters {
    /// Invocations of every trigger.
    pub invocations: u64,
    pub invocations_http: u64,
    pub invocations_message: u64,
    /// From the start of instantiation to the end of the instance.
    pub wall_seconds: f64,
    /// CPU time of the threads running the invocation (guest code and its host calls).
    pub cpu_seconds: f64,
    /// Linear memory integrated over each instance's life, in GB-s (GB = 10^9 bytes).
    pub gb_seconds: f64,
    /// Request bodies read by the guest and message payloads delivered to it.
    pub bytes_in: u64,
    /// Response bodies sent to clients.
    pub bytes_out: u64,
    /// Successful wasi-nn `compute` calls.
    pub inferences: u64,
    /// Times an instance grew a linear memory it started with (`memory.grow` after
    /// instantiation). Not a charge: each growth costs the node two page-protection changes,
    /// so an app with about one per invocation would serve faster from a larger initial memory.
    pub memory_growths: u64,
}

/// One app's usage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageView {
    pub app: String,
    #[serde(flatten)]
    pub usage: UsageCounters,
}

/// `[metering]` in the node config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeteringConfig {
    /// Measure and persist usage. Off, invocations cost slightly less and `edge usage` is empty.
    pub enabled: bool,
    /// How often counters are written to the database (a crash loses at most this much).
    pub flush_interval_ms: u64,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flush_interval_ms: 5_000,
        }
    }
}

/// One app's counters since the last flush: added to by invocations, drained by the flush.
#[derive(Debug, Default)]
pub struct AppUsage {
    pub invocations_http: AtomicU64,
    pub invocations_message: AtomicU64,
    pub wall_nanos: AtomicU64,
    pub cpu_nanos: AtomicU64,
    pub memory_kib_ms: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub inferences: AtomicU64,
    pub memory_growths: AtomicU64,
}

impl AppUsage {
    /// Counts one invocation of `trigger`.
    pub fn count_invocation(&self, trigger: Trigger) {
        let counter = match trigger {
            Trigger::Http => &self.invocations_http,
            Trigger::Message => &self.invocations_message,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now, without draining them.
    fn peek(&self) -> UsageCounters {
        self.read(|c| c.load(Ordering::Relaxed))
    }

    /// The counters now, reset to zero.
    fn drain(&self) -> UsageCounters {
        self.read(|c| c.swap(0, Ordering::Relaxed))
    }

    fn read(&self, take: impl Fn(&AtomicU64) -> u64) -> UsageCounters {
        let http = take(&self.invocations_http);
        let message = take(&self.invocations_message);
        UsageCounters {
            invocations: http + message,
            invocations_http: http,
            invocations_message: message,
            wall_seconds: take(&self.wall_nanos) as f64 / 1e9,
            cpu_seconds: take(&self.cpu_nanos) as f64 / 1e9,
            // KiB-ms to GB-s: x 1024 bytes / 1e9, x 1e-3 s.
            gb_seconds: take(&self.memory_kib_ms) as f64 * 1024.0 / 1e12,
            bytes_in: take(&self.bytes_in),
            bytes_out: take(&self.bytes_out),
            inferences: take(&self.inferences),
            memory_growths: take(&self.memory_growths),
        }
    }

    /// Puts drained counters back (a flush that failed to write them).
    fn restore(&self, counters: &UsageCounters) {
        let add = |c: &AtomicU64, v: u64| c.fetch_add(v, Ordering::Relaxed);
        add(&self.invocations_http, counters.invocations_http);
        add(&self.invocations_message, counters.invocations_message);
        add(&self.wall_nanos, (counters.wall_seconds * 1e9) as u64);
        add(&self.cpu_nanos, (counters.cpu_seconds * 1e9) as u64);
        add(
            &self.memory_kib_ms,
            (counters.gb_seconds * 1e12 / 1024.0) as u64,
        );
        add(&self.bytes_in, counters.bytes_in);
        add(&self.bytes_out, counters.bytes_out);
        add(&self.inferences, counters.inferences);
        add(&self.memory_growths, counters.memory_growths);
    }
}

/// Adds `other` into `total`.
fn accumulate(total: &mut UsageCounters, other: &UsageCounters) {
    total.invocations += other.invocations;
    total.invocations_http += other.invocations_http;
    total.invocations_message += other.invocations_message;
    total.wall_seconds += other.wall_seconds;
    total.cpu_seconds += other.cpu_seconds;
    total.gb_seconds += other.gb_seconds;
    total.bytes_in += other.bytes_in;
    total.bytes_out += other.bytes_out;
    total.inferences += other.inferences;
    total.memory_growths += other.memory_growths;
}

/// Seconds in one persisted bucket.
const BUCKET_SECONDS: u64 = 3600;

/// The node's usage: live counters per app and the persisted history.
pub struct Usage {
    config: MeteringConfig,
    db: sled::Db,
    tree: sled::Tree,
    live: RwLock<BTreeMap<String, Arc<AppUsage>>>,
    /// Everything flushed so far, per app (loaded at start): the metrics' base.
    flushed: Mutex<BTreeMap<String, UsageCounters>>,
    /// Serialises flushes.
    flushing: Mutex<()>,
}

fn bucket_key(app: &str, hour: u64) -> Vec<u8> {
    let mut key = app.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&hour.to_be_bytes());
    key
}

fn parse_key(key: &[u8]) -> Option<(String, u64)> {
    let split = key.iter().position(|b| *b == 0)?;
    let app = String::from_utf8(key[..split].to_vec()).ok()?;
    let hour = u64::from_be_bytes(key[split + 1..].try_into().ok()?);
    Some((app, hour))
}

impl Usage {
    pub fn open(db: &sled::Db, config: MeteringConfig) -> anyhow::Result<Self> {
        let tree = db.open_tree("usage").context("opening the usage tree")?;
        let mut flushed: BTreeMap<String, UsageCounters> = BTreeMap::new();
        for entry in tree.iter() {
            let (key, raw) = entry?;
            let (Some((app, _)), Ok(counters)) = (
                parse_key(&key),
                serde_json::from_slice::<UsageCounters>(&raw),
            ) else {
                tracing::warn!("skipping an undecodable usage record");
                continue;
            };
            accumulate(flushed.entry(app).or_default(), &counters);
        }
        Ok(Self {
            config,
            db: db.clone(),
            tree,
            live: RwLock::new(BTreeMap::new()),
            flushed: Mutex::new(flushed),
            flushing: Mutex::new(()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn flush_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.flush_interval_ms.max(100))
    }

    /// The live counters of `app` (`None` when metering is off).
    pub fn app(&self, app: &str) -> Option<Arc<AppUsage>> {
        if !self.config.enabled {
            return None;
        }
        if let Some(usage) = self.live.read().unwrap_or_else(|p| p.into_inner()).get(app) {
            return Some(usage.clone());
        }
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        Some(live.entry(app.to_string()).or_default().clone())
    }

    /// Writes the counters gathered since the last flush into the current hour's buckets.
    /// Blocking (sled): call from a blocking thread.
    pub fn flush(&self) -> anyhow::Result<()> {
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let live: Vec<(String, Arc<AppUsage>)> = self
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, usage)| (name.clone(), usage.clone()))
            .collect();
        let hour = crate::names::unix_now() / BUCKET_SECONDS;
        for (app, usage) in live {
            let delta = usage.drain();
            if delta.invocations == 0 && delta.bytes_out == 0 && delta.cpu_seconds == 0.0 {
                continue;
            }
            let key = bucket_key(&app, hour);
            let result = self.tree.update_and_fetch(&key, |old| {
                let mut counters: UsageCounters = old
                    .and_then(|raw| serde_json::from_slice(raw).ok())
                    .unwrap_or_default();
                accumulate(&mut counters, &delta);
                serde_json::to_vec(&counters).ok()
            });
            if let Err(err) = result {
                usage.restore(&delta);
                return Err(err).context("writing usage");
            }
            accumulate(
                self.flushed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(app)
                    .or_default(),
                &delta,
            );
        }
        self.db.flush().context("flushing usage")?;
        Ok(())
    }

    /// Usage per app (or of one app) since `since_secs` (rounded down to the hour), including
    /// what was not flushed yet. Blocking (sled).
    pub fn report(
        &self,
        app: Option<&str>,
        since_secs: Option<u64>,
    ) -> anyhow::Result<Vec<UsageView>> {
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let since_hour = since_secs.map_or(0, |s| s / BUCKET_SECONDS);
        let mut totals: BTreeMap<String, UsageCounters> = BTreeMap::new();
        let entries: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match app {
            Some(app) => {
                let mut prefix = app.as_bytes().to_vec();
                prefix.push(0);
                Box::new(self.tree.scan_prefix(prefix))
            }
            None => Box::new(self.tree.iter()),
        };
        for entry in entries {
            let (key, raw) = entry?;
            let Some((name, hour)) = parse_key(&key) else {
                continue;
            };
            if hour < since_hour {
                continue;
            }
            if let Ok(counters) = serde_json::from_slice::<UsageCounters>(&raw) {
                accumulate(totals.entry(name).or_default(), &counters);
            }
        }
        // Counters not flushed yet belong to the current hour.
        let now_hour = crate::names::unix_now() / BUCKET_SECONDS;
        if since_hour <= now_hour {
            for (name, usage) in self.live.read().unwrap_or_else(|p| p.into_inner()).iter() {
                if app.is_none_or(|a| a == name) {
                    accumulate(totals.entry(name.clone()).or_default(), &usage.peek());
                }
            }
        }
        Ok(totals
            .into_iter()
            .map(|(app, usage)| UsageView { app, usage })
            .collect())
    }

    /// Every app's all-time totals, flushed and not: what the metrics show. Never blocks.
    pub fn totals(&self) -> BTreeMap<String, UsageCounters> {
        let mut totals = self
            .flushed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, usage) in self.live.read().unwrap_or_else(|p| p.into_inner()).iter() {
            accumulate(totals.entry(name.clone()).or_default(), &usage.peek());
        }
        totals
    }

    /// Forgets a removed app's live counters (its history stays, for billing).
    pub fn forget(&self, app: &str) {
        if let Err(err) = self.flush() {
            tracing::warn!(app, "flushing usage before removing the app: {err:#}");
        }
        self.live
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_survives_reopen_and_since_filters_by_hour() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::group_commit::open_test_db(dir.path());
            let usage = Usage::open(&db, MeteringConfig::default()).unwrap();
            let app = usage.app("hello").unwrap();
            app.invocations_http.fetch_add(3, Ordering::Relaxed);
            app.bytes_out.fetch_add(100, Ordering::Relaxed);
            usage.flush().unwrap();
            app.invocations_message.fetch_add(2, Ordering::Relaxed);
            let report = usage.report(None, None).unwrap();
            assert_eq!(report[0].usage.invocations, 5);
            usage.flush().unwrap();
        }
        let db = crate::group_commit::open_test_db(dir.path());
        let usage = Usage::open(&db, MeteringConfig::default()).unwrap();
        let report = usage.report(Some("hello"), None).unwrap();
        assert_eq!(report.len(), 1);
        let counters = &report[0].usage;
        assert_eq!(
            (
                counters.invocations_http,
                counters.invocations_message,
                counters.bytes_out
            ),
            (3, 2, 100)
        );
        assert_eq!(usage.totals()["hello"].invocations, 5);
        let future = crate::names::unix_now() + 2 * BUCKET_SECONDS;
        assert!(usage.report(None, Some(future)).unwrap().is_empty());
        assert!(usage.report(Some("other"), None).unwrap().is_empty());
    }

    #[test]
    fn metering_off_gives_no_counters() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::group_commit::open_test_db(dir.path());
        let usage = Usage::open(
            &db,
            MeteringConfig {
                enabled: false,
                ..MeteringConfig::default()
            },
        )
        .unwrap();
        assert!(usage.app("hello").is_none());
    }
}

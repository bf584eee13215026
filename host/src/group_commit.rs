//! Group commit for the node's sled database: concurrent writers that need their writes on
//! disk share fsyncs instead of queueing one each. Used by kv writes (in `flush` durability)
//! and by the messaging outbox.
//!
//! One caller leads an fsync (on a blocking thread) covering every write counted before it
//! started; callers arriving meanwhile wait for it or lead the next one. A failed fsync
//! acknowledges nobody: the leader gets the error, and each waiter then leads a flush of its
//! own (and gets that one's result). A leader that is cancelled (its request timed out) hands
//! the lead on: the waiters flush again rather than wait for a publication that never comes.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, watch};

/// The group commit of one database.
pub struct GroupCommit {
    db: sled::Db,
    /// Writes counted so far.
    writes: AtomicU64,
    /// Writes known durable.
    durable: watch::Sender<u64>,
    leader: Mutex<()>,
}

/// Why a write could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("writing to disk failed: {0}")]
    Flush(String),
    #[error("the flush task failed: {0}")]
    Task(String),
}

impl GroupCommit {
    pub fn new(db: sled::Db) -> Self {
        Self {
            db,
            writes: AtomicU64::new(0),
            durable: watch::Sender::new(0),
            leader: Mutex::new(()),
        }
    }

    /// Returns once everything written before the call is on disk.
    pub async fn persist(&self) -> Result<(), CommitError> {
        let mine = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut durable = self.durable.subscribe();
        loop {
            if *durable.borrow_and_update() >= mine {
                return Ok(());
            }
            if let Ok(leading) = self.leader.try_lock() {
                let mut lead = Lead {
                    commit: self,
                    guard: Some(leading),
                };
                let covered = self.writes.load(Ordering::SeqCst);
                let db = self.db.clone();
                let flushed = tokio::task::spawn_blocking(move || db.flush())
                    .await
                    .map_err(|err| CommitError::Task(err.to_string()))
                    .and_then(|result| result.map_err(|err| CommitError::Flush(err.to_string())));
                lead.end(flushed.is_ok().then_some(covered));
                flushed?;
                continue;
            }
            if durable.changed().await.is_err() {
                return Err(CommitError::Flush("the database is shutting down".into()));
            }
        }
    }
}

/// The lead of one flush. Ending it releases the lead, then publishes what became durable, or
/// only wakes the waiters (a failed flush, or a leader dropped mid-flush because its caller
/// was cancelled) so that each of them leads a flush of its own instead of waiting for ever.
struct Lead<'a> {
    commit: &'a GroupCommit,
    guard: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl Lead<'_> {
    fn end(&mut self, durable: Option<u64>) {
        // Released first, so a woken waiter finds the lead free.
        if self.guard.take().is_none() {
            return;
        }
        self.commit.durable.send_modify(|d| {
            if let Some(covered) = durable {
                *d = (*d).max(covered);
            }
        });
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.end(None);
    }
}

/// Opens the sled database at `path` for a test, waiting (up to 10 s) while a database just
/// dropped in this process still holds its file lock: sled's background threads release it a
/// moment after the last handle goes, so reopening at once fails now and then on a busy
/// machine.
#[cfg(test)]
pub fn open_test_db(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(err)
                if err.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(err) => panic!("opening test database {}: {err}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_all_return_and_a_cancelled_leader_strands_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let commit = Arc::new(GroupCommit::new(db.clone()));
        for round in 0..20 {
            let tree = db.open_tree("t").unwrap();
            tree.insert(format!("k{round}"), "v").unwrap();
            // One caller is cancelled right away, possibly while leading a flush.
            let cancelled = tokio::spawn({
                let commit = commit.clone();
                async move { commit.persist().await }
            });
            cancelled.abort();
            let writers: Vec<_> = (0..8)
                .map(|_| {
                    let commit = commit.clone();
                    tokio::spawn(async move { commit.persist().await })
                })
                .collect();
            for writer in writers {
                tokio::time::timeout(Duration::from_secs(30), writer)
                    .await
                    .expect("no writer is stranded")
                    .unwrap()
                    .expect("the flush succeeds");
            }
        }
    }
}

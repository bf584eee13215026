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
                let covered = self.writes.load(Ordering::SeqCst);
                let db = self.db.clone();
                let flushed = tokio::task::spawn_blocking(move || db.flush())
                    .await
                    .map_err(|err| CommitError::Task(err.to_string()))?
                    .map_err(|err| CommitError::Flush(err.to_string()));
                drop(leading);
                match flushed {
                    // Published after releasing the lead, so a waiter that saw the lead taken
                    // is sure to be woken by this send.
                    Ok(_) => self.durable.send_modify(|d| *d = (*d).max(covered)),
                    Err(err) => {
                        // Wake the waiters so they try (and learn) for themselves.
                        self.durable.send_modify(|_| {});
                        return Err(err);
                    }
                }
                continue;
            }
            if durable.changed().await.is_err() {
                return Err(CommitError::Flush("the database is shutting down".into()));
            }
        }
    }
}

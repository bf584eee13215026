//! Free space on the node's data disk. sled fails every later operation, reads included, once
//! one of its writes meets a full disk, so the node keeps it from getting there:
//! - apps' key-value writes are refused while the disk has less than `[storage] min_free_mib`
//!   free (a clear error to the guest; nothing acknowledged that was not stored):
//!   the space under that floor is left to the node's own metadata, usage and audit writes;
//! - a reserve file (`<data_dir>/reserve`, `[storage] reserve_mib`) holds space back that no
//!   other process can take. It is released when the node starts on a full disk (so the
//!   database can open and the node serve) and put back once space returns.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The `[storage]` section of the node config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Apps' key-value writes are refused while the data disk has less than this free, in MiB.
    pub min_free_mib: u64,
    /// Space held back in `<data_dir>/reserve` for the node itself, in MiB (0: none).
    pub reserve_mib: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            min_free_mib: 64,
            reserve_mib: 16,
        }
    }
}

/// Why a write was refused for lack of disk space.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the node's disk is nearly full ({free_mib} MiB free, app writes stop below {floor_mib} MiB): \
     nothing was stored; writes resume by themselves once space is freed on the node"
)]
pub struct DiskFull {
    pub free_mib: u64,
    pub floor_mib: u64,
}

/// Watches the free space of one data folder.
pub struct DiskGuard {
    dir: PathBuf,
    min_free: u64,
    reserve_bytes: u64,
    /// Whether the reserve file is known to be in place (so a write does not stat it).
    reserve_in_place: AtomicBool,
    /// When the reserve was last found missing and could not be put back (retried at most
    /// every few seconds).
    last_restore_try: Mutex<Option<Instant>>,
}

const MIB: u64 = 1024 * 1024;
const RESTORE_RETRY: Duration = Duration::from_secs(5);

impl DiskGuard {
    pub fn new(dir: &Path, config: &StorageConfig) -> Self {
        Self {
            dir: dir.to_path_buf(),
            min_free: config.min_free_mib.saturating_mul(MIB),
            reserve_bytes: config.reserve_mib.saturating_mul(MIB),
            reserve_in_place: AtomicBool::new(false),
            last_restore_try: Mutex::new(None),
        }
    }

    fn reserve_path(&self) -> PathBuf {
        self.dir.join("reserve")
    }

    /// Bytes available to the node on the data disk.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.dir)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Whether an app may write `bytes` more. Puts the reserve back when space has returned.
    pub fn admit(&self, bytes: u64) -> Result<(), DiskFull> {
        let Ok(free) = self.free_bytes() else {
            // Cannot tell: let the write try (sled reports a real failure).
            return Ok(());
        };
        if free.saturating_sub(bytes) < self.min_free {
            return Err(DiskFull {
                free_mib: free / MIB,
                floor_mib: self.min_free / MIB,
            });
        }
        if self.reserve_bytes > 0
            && !self.reserve_in_place.load(Ordering::Relaxed)
            && free >= self.min_free + self.reserve_bytes + bytes
        {
            self.try_restore_reserve();
        }
        Ok(())
    }

    /// Called before the database opens: on a disk too full to open it, the reserve is
    /// released so the node can start and serve.
    pub fn prepare_for_start(&self) {
        let short = self
            .free_bytes()
            .is_ok_and(|free| free < self.min_free.max(MIB));
        if short && self.release_reserve() {
            tracing::warn!(
                "the data disk is full: released the {} MiB reserve so the node can start; app \
                 key-value writes are refused until space is freed",
                self.reserve_bytes / MIB
            );
        } else if !short {
            self.try_restore_reserve();
        }
    }

    /// Deletes the reserve file; true if there was one.
    fn release_reserve(&self) -> bool {
        self.reserve_in_place.store(false, Ordering::Relaxed);
        std::fs::remove_file(self.reserve_path()).is_ok()
    }

    /// Writes the reserve file unless it exists, the disk has no room for it beside the floor,
    /// or a try failed a moment ago.
    fn try_restore_reserve(&self) {
        if self.reserve_bytes == 0 {
            return;
        }
        if self.reserve_path().exists() {
            self.reserve_in_place.store(true, Ordering::Relaxed);
            return;
        }
        {
            let mut last = self
                .last_restore_try
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < RESTORE_RETRY) {
                return;
            }
            *last = Some(Instant::now());
        }
        if self
            .free_bytes()
            .map_or(true, |free| free < self.min_free + self.reserve_bytes)
        {
            return;
        }
        match allocate(&self.reserve_path(), self.reserve_bytes) {
            Ok(()) => tracing::info!(mib = self.reserve_bytes / MIB, "disk reserve in place"),
            Err(err) => {
                let _ = std::fs::remove_file(self.reserve_path());
                tracing::warn!("cannot write the disk reserve: {err}");
            }
        }
    }
}

/// Creates `path` with `bytes` really allocated (not a sparse file), atomically.
fn allocate(path: &Path, bytes: u64) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    let file = std::fs::File::create(&partial)?;
    let allocated = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, bytes)
        .map_err(std::io::Error::from)
        .or_else(|_| {
            // Filesystems without fallocate: write zeros.
            use std::io::Write as _;
            let mut writer = std::io::BufWriter::new(&file);
            let zeros = vec![0u8; MIB as usize];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(MIB) as usize;
                writer.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            writer.flush()
        });
    if let Err(err) = allocated.and_then(|()| file.sync_all()) {
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_written_when_there_is_room_and_writes_past_the_floor_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let guard = DiskGuard::new(
            dir.path(),
            &StorageConfig {
                min_free_mib: 1,
                reserve_mib: 1,
            },
        );
        guard.prepare_for_start();
        let reserve = dir.path().join("reserve");
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), MIB);
        // A write larger than the free space is refused; the reserve stays for the next start.
        let free = guard.free_bytes().unwrap();
        let err = guard.admit(free).unwrap_err();
        assert!(err.to_string().contains("nearly full"), "{err}");
        assert!(reserve.exists());
        guard.admit(0).unwrap();
    }
}

//! The audit trail: every admin action (deploy, remove, rollback, kv write or delete, token
//! change, and refusals for lack of a role) appended as one JSON line to `audit/audit.log`.
//!
//! Each line carries the SHA-256 of the previous line's content and its own, and the chain's
//! head (sequence number and hash) is also kept in sled, so [`AuditLog::verify`] finds an
//! edited line (its hash no longer matches), a removed or reordered one (the chain breaks) and
//! a truncated tail (the last line is not the recorded head). Files rotate at
//! `[audit] max_file_bytes` into `audit.log.1`, `.2`, …; the chain continues across files, and
//! only the oldest kept file's first link cannot be checked (its predecessor was rotated away).
//!
//! Secrets never enter the log: entries hold token names, app names and digests, never tokens
//! or config values.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

pub use crate::api::{AuditEntry, AuditVerification};
use crate::config::AuditConfig;

/// The hash a chain starts from.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const FILE_NAME: &str = "audit.log";
const HEAD_KEY: &str = "head";

/// One admin action, as the caller describes it.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    /// The token's name (never its secret).
    pub token: String,
    /// `deploy`, `remove`, `rollback`, `kv.set`, `kv.delete`, `token.create`, …
    pub action: &'static str,
    pub app: Option<String>,
    /// What else the action concerns: `bucket/key` for kv, the token's name for tokens.
    pub target: Option<String>,
    /// The component digest the action concerns, if any.
    pub digest: Option<String>,
    /// `ok`, or what went wrong.
    pub result: String,
}

/// Where the chain stands: kept in sled beside the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Head {
    seq: u64,
    hash: String,
}

struct Writer {
    file: File,
    size: u64,
    head: Head,
}

/// The node's audit log.
pub struct AuditLog {
    dir: PathBuf,
    config: AuditConfig,
    db: sled::Db,
    tree: sled::Tree,
    writer: Mutex<Writer>,
}

/// The content an entry's hash covers: everything but the hash itself.
fn entry_hash(entry: &AuditEntry) -> String {
    let mut unhashed = entry.clone();
    unhashed.hash = String::new();
    let json = serde_json::to_vec(&unhashed).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&json))
}

impl AuditLog {
    /// Opens (creating if needed) the log under `<data_dir>/audit`. A last line written but
    /// not yet recorded as the head (a crash between the two) is adopted when it links to it.
    pub fn open(data_dir: &Path, db: &sled::Db, config: AuditConfig) -> anyhow::Result<Self> {
        let dir = data_dir.join("audit");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating audit folder {}", dir.display()))?;
        let tree = db.open_tree("audit").context("opening the audit tree")?;
        let mut head = match tree.get(HEAD_KEY)? {
            Some(raw) => serde_json::from_slice(&raw).context("decoding the audit head")?,
            None => Head {
                seq: 0,
                hash: GENESIS.to_string(),
            },
        };
        let path = dir.join(FILE_NAME);
        if let Some(last) = read_entries(&path)?.last()
            && last.seq == head.seq + 1
            && last.prev == head.hash
            && entry_hash(last) == last.hash
        {
            head = Head {
                seq: last.seq,
                hash: last.hash.clone(),
            };
            tree.insert(HEAD_KEY, serde_json::to_vec(&head)?)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening audit log {}", path.display()))?;
        let size = file.metadata()?.len();
        Ok(Self {
            dir,
            config,
            db: db.clone(),
            tree,
            writer: Mutex::new(Writer { file, size, head }),
        })
    }

    /// Appends one entry durably (file fsynced, head flushed) and returns it.
    pub fn record(&self, event: &AuditEvent) -> anyhow::Result<AuditEntry> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = AuditEntry {
            seq: writer.head.seq + 1,
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            token: event.token.clone(),
            action: event.action.to_string(),
            app: event.app.clone(),
            target: event.target.clone(),
            digest: event.digest.clone(),
            result: event.result.clone(),
            prev: writer.head.hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        let mut line = serde_json::to_vec(&entry).context("encoding audit entry")?;
        line.push(b'\n');
        if writer.size > 0 && writer.size + line.len() as u64 > self.config.max_file_bytes {
            self.rotate(&mut writer)?;
        }
        writer.file.write_all(&line).context("writing audit log")?;
        writer.file.sync_data().context("syncing audit log")?;
        writer.size += line.len() as u64;
        writer.head = Head {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        self.tree
            .insert(HEAD_KEY, serde_json::to_vec(&writer.head)?)
            .context("recording the audit head")?;
        self.db.flush().context("flushing the audit head")?;
        Ok(entry)
    }

    /// Logs and swallows a failure to record: an action that happened is not undone because
    /// its audit line could not be written, but the operator must see it.
    pub fn record_or_log(&self, event: &AuditEvent) {
        if let Err(err) = self.record(event) {
            tracing::error!(action = event.action, "cannot write the audit log: {err:#}");
        }
    }

    /// `audit.log` -> `audit.log.1` -> … -> `audit.log.{keep_files}` (the oldest is deleted).
    fn rotate(&self, writer: &mut Writer) -> anyhow::Result<()> {
        let keep = self.config.keep_files;
        let _ = std::fs::remove_file(self.rotated(keep));
        for n in (1..keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))
                    .with_context(|| format!("rotating {}", from.display()))?;
            }
        }
        let current = self.dir.join(FILE_NAME);
        if keep > 0 {
            std::fs::rename(&current, self.rotated(1)).context("rotating the audit log")?;
        } else {
            std::fs::remove_file(&current).context("rotating the audit log")?;
        }
        writer.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)
            .with_context(|| format!("opening audit log {}", current.display()))?;
        writer.size = 0;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{FILE_NAME}.{n}"))
    }

    /// Every kept file, oldest first.
    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..=self.config.keep_files)
            .rev()
            .map(|n| self.rotated(n))
            .filter(|p| p.exists())
            .collect();
        files.push(self.dir.join(FILE_NAME));
        files
    }

    /// The last `limit` entries, oldest first.
    pub fn tail(&self, limit: usize) -> anyhow::Result<Vec<AuditEntry>> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries = Vec::new();
        for path in self.files() {
            entries.extend(read_entries(&path)?);
        }
        let skip = entries.len().saturating_sub(limit);
        Ok(entries.split_off(skip))
    }

    /// Checks the whole chain in every kept file against the recorded head.
    pub fn verify(&self) -> anyhow::Result<AuditVerification> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let head = writer.head.clone();
        drop(writer);
        let mut result = AuditVerification {
            ok: true,
            entries: 0,
            first_seq: None,
            last_seq: None,
            head_seq: head.seq,
            problem: None,
        };
        let mut previous: Option<(u64, String)> = None;
        for path in self.files() {
            let file_name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err).context(format!("reading {}", path.display())),
            };
            for (index, line) in text.lines().enumerate() {
                let at = format!("line {} of {file_name}", index + 1);
                let fail = |result: &mut AuditVerification, why: String| {
                    result.ok = false;
                    result.problem = Some(format!("{at}: {why}"));
                };
                let entry: AuditEntry = match serde_json::from_str(line) {
                    Ok(entry) => entry,
                    Err(err) => {
                        fail(&mut result, format!("not an audit entry ({err})"));
                        return Ok(result);
                    }
                };
                if entry_hash(&entry) != entry.hash {
                    fail(
                        &mut result,
                        format!("entry {} does not match its hash: it was edited", entry.seq),
                    );
                    return Ok(result);
                }
                match &previous {
                    Some((seq, hash)) if entry.seq != seq + 1 || entry.prev != *hash => {
                        fail(
                            &mut result,
                            format!(
                                "entry {} does not follow entry {seq}: entries were removed, \
                                 inserted or reordered",
                                entry.seq
                            ),
                        );
                        return Ok(result);
                    }
                    None if entry.seq == 1 && entry.prev != GENESIS => {
                        fail(
                            &mut result,
                            "the first entry does not start the chain".into(),
                        );
                        return Ok(result);
                    }
                    _ => {}
                }
                result.entries += 1;
                result.first_seq.get_or_insert(entry.seq);
                result.last_seq = Some(entry.seq);
                previous = Some((entry.seq, entry.hash));
            }
        }
        let last = previous.unwrap_or((0, GENESIS.to_string()));
        if last.0 != head.seq || last.1 != head.hash {
            result.ok = false;
            result.problem = Some(format!(
                "the log ends at entry {} but the node recorded entry {} as the last: the log \
                 was truncated or replaced",
                last.0, head.seq
            ));
        }
        Ok(result)
    }
}

/// The entries of one file; lines that do not parse are skipped (verify reports them).
fn read_entries(path: &Path) -> anyhow::Result<Vec<AuditEntry>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let mut entries = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if let Ok(entry) = serde_json::from_str(&line) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &'static str) -> AuditEvent {
        AuditEvent {
            token: "ci".into(),
            action,
            app: Some("hello".into()),
            target: None,
            digest: Some("abc".into()),
            result: "ok".into(),
        }
    }

    fn open(dir: &Path, max_file_bytes: u64) -> AuditLog {
        let db = crate::group_commit::open_test_db(&dir.join("db"));
        AuditLog::open(
            dir,
            &db,
            AuditConfig {
                max_file_bytes,
                keep_files: 3,
            },
        )
        .unwrap()
    }

    #[test]
    fn intact_chain_verifies_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 600);
        for _ in 0..8 {
            log.record(&event("deploy")).unwrap();
        }
        assert!(dir.path().join("audit/audit.log.1").exists());
        let verified = log.verify().unwrap();
        assert!(verified.ok, "{verified:?}");
        assert_eq!(verified.last_seq, Some(8));
        assert_eq!(log.tail(2).unwrap().len(), 2);
    }

    /// A log of three entries; its path and text.
    fn three_entries(dir: &Path) -> (AuditLog, PathBuf, String) {
        let log = open(dir, 1 << 20);
        for action in ["deploy", "remove", "rollback"] {
            log.record(&event(action)).unwrap();
        }
        let path = dir.join("audit/audit.log");
        let text = std::fs::read_to_string(&path).unwrap();
        (log, path, text)
    }

    #[test]
    fn edited_line_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path, text) = three_entries(dir.path());
        std::fs::write(&path, text.replacen("\"remove\"", "\"rollback\"", 1)).unwrap();
        let verified = log.verify().unwrap();
        assert!(!verified.ok);
        let problem = verified.problem.unwrap();
        assert!(
            problem.contains("line 2") && problem.contains("edited"),
            "{problem}"
        );
    }

    #[test]
    fn truncated_tail_and_removed_line_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path, text) = three_entries(dir.path());
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
        let problem = log.verify().unwrap().problem.unwrap();
        assert!(problem.contains("truncated"), "{problem}");
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let problem = log.verify().unwrap().problem.unwrap();
        assert!(problem.contains("does not follow"), "{problem}");
    }

    #[test]
    fn chain_continues_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path(), 1 << 20);
            log.record(&event("deploy")).unwrap();
        }
        let log = open(dir.path(), 1 << 20);
        assert_eq!(log.record(&event("remove")).unwrap().seq, 2);
        assert!(log.verify().unwrap().ok);
    }
}

//! What a node persists: component originals and precompiled artifacts as content-addressed
//! files, and app metadata (current and previous version of each app) in sled.
//!
//! Layout under the data folder:
//! ```text
//! components/<sha256>.wasm            original bytes, as deployed
//! artifacts/<sha256>-<engine>.cwasm   precompiled for one engine configuration
//! db/                                 sled: tree "apps", name -> AppRecord (JSON)
//! ```
//! Files are written to a temporary name, synced and renamed, so a crash mid-write never
//! leaves a truncated blob under a final name. Metadata is flushed before a deploy answers.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::api::Reuse;
use crate::capabilities::config::ConfigValues;
use crate::capabilities::messaging::MessagingGrant;
use crate::capabilities::outbound_http::OutboundGrant;
use crate::config::AppLimits;

/// One deployed version of an app: the component and how it is served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Hex sha256 of the component bytes.
    pub digest: String,
    /// Component size in bytes.
    pub size: u64,
    /// Route prefix the version answers under.
    pub route: String,
    /// Environment variables given to every instance.
    pub env: Vec<(String, String)>,
    /// wasi:config values (`--config`); never shown, only their keys.
    #[serde(default, skip_serializing_if = "ConfigValues::is_empty")]
    pub config: ConfigValues,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
    /// Capabilities granted to this version.
    #[serde(default)]
    pub grants: Grants,
    /// The pre-initialised component served instead of the original, when the component
    /// exports an init function.
    #[serde(default)]
    pub snapshot: Option<SnapshotRecord>,
    /// Limits asked for at deploy over the node's defaults.
    #[serde(default, skip_serializing_if = "AppLimits::is_default")]
    pub limits: AppLimits,
    /// Instance reuse asked for at deploy (off by default).
    #[serde(default, skip_serializing_if = "Reuse::is_default")]
    pub reuse: Reuse,
    /// Where the component came from when it was pulled from a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRecord>,
}

/// A version pulled from an OCI registry: by whom, and from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// `oci://REGISTRY/REPO@sha256:…`, pinned to the manifest digest that was pulled.
    pub reference: String,
    /// Set when the fleet agent deployed it: the digest of the desired-state entry, so the
    /// agent knows this version is what the fleet asked for (and may remove it later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_spec: Option<String>,
}

/// A deploy-time snapshot of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Hex sha256 of the snapshotted component.
    pub digest: String,
    pub size: u64,
    /// How long the init function ran at deploy, in ms.
    pub init_ms: f64,
}

impl VersionRecord {
    /// Same component and settings, whenever deployed.
    pub fn same_deployment(&self, other: &VersionRecord) -> bool {
        self.digest == other.digest
            && self.route == other.route
            && self.env == other.env
            && self.config == other.config
            && self.grants == other.grants
            && self.limits == other.limits
            && self.reuse == other.reuse
            && self.snapshot.is_some() == other.snapshot.is_some()
    }

    /// Digest of the component actually served: the snapshot when there is one.
    pub fn served_digest(&self) -> &str {
        self.snapshot
            .as_ref()
            .map_or(self.digest.as_str(), |s| s.digest.as_str())
    }
}

/// Capabilities an app version was deployed with (deny by default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grants {
    /// `--kv`: a private key-value namespace.
    #[serde(default)]
    pub kv: bool,
    /// `--model NAME`: models of the node's registry the app may open with `load-by-name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// `--allow-outbound ORIGIN`: where the app may send HTTP requests.
    #[serde(default, skip_serializing_if = "OutboundGrant::is_empty")]
    pub outbound: OutboundGrant,
    /// `--subscribe` and `--publish`: topics the app is triggered by and may publish to.
    #[serde(default, skip_serializing_if = "MessagingGrant::is_empty")]
    pub messaging: MessagingGrant,
}

/// An app: its serving version and the one `rollback` returns to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub name: String,
    pub current: VersionRecord,
    pub previous: Option<VersionRecord>,
}

/// An app whose record does not decode: its name and why.
pub type DamagedRecord = (String, String);

/// The node's persistent store.
pub struct Repository {
    components: PathBuf,
    artifacts: PathBuf,
    db: sled::Db,
    apps: sled::Tree,
}

impl Repository {
    /// Opens (creating if needed) the store under `data_dir`.
    /// `flush_every_ms`: how often sled writes buffered data in the background.
    pub fn open(data_dir: &Path, flush_every_ms: u64) -> anyhow::Result<Self> {
        let components = data_dir.join("components");
        let artifacts = data_dir.join("artifacts");
        for dir in [&components, &artifacts] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating data folder {}", dir.display()))?;
        }
        let db_path = data_dir.join("db");
        let db = sled::Config::new()
            .path(&db_path)
            .flush_every_ms(Some(flush_every_ms.max(1)))
            .open()
            .map_err(|err| match err {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("could not acquire lock") =>
                {
                    anyhow::anyhow!(
                        "data folder {} is in use by another edge node; stop it or pass another \
                 --data-dir",
                        data_dir.display()
                    )
                }
                other => {
                    anyhow::anyhow!("opening metadata database {}: {other}", db_path.display())
                }
            })?;
        let apps = db.open_tree("apps").context("opening the apps tree")?;
        Ok(Self {
            components,
            artifacts,
            db,
            apps,
        })
    }

    /// The database, shared with the key-value store.
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    pub fn component_path(&self, digest: &str) -> PathBuf {
        self.components.join(format!("{digest}.wasm"))
    }

    pub fn artifact_path(&self, digest: &str, engine_tag: &str) -> PathBuf {
        self.artifacts.join(format!("{digest}-{engine_tag}.cwasm"))
    }

    /// Writes the original component bytes unless a file with that digest already exists.
    pub fn store_component(&self, digest: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        let path = self.component_path(digest);
        write_once(&path, bytes)?;
        Ok(path)
    }

    /// Writes a precompiled artifact, atomically replacing an unusable one.
    pub fn store_artifact(
        &self,
        digest: &str,
        engine_tag: &str,
        bytes: &[u8],
    ) -> anyhow::Result<PathBuf> {
        let path = self.artifact_path(digest, engine_tag);
        write_atomic(&path, bytes)?;
        Ok(path)
    }

    pub fn read_component(&self, digest: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.component_path(digest);
        std::fs::read(&path).with_context(|| format!("reading component {}", path.display()))
    }

    pub fn get_app(&self, name: &str) -> anyhow::Result<Option<AppRecord>> {
        let Some(raw) = self.apps.get(name)? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&raw)
            .with_context(|| format!("decoding metadata of app {name}"))?;
        Ok(Some(record))
    }

    pub fn list_apps(&self) -> anyhow::Result<Vec<AppRecord>> {
        self.apps
            .iter()
            .map(|entry| {
                let (key, raw) = entry?;
                serde_json::from_slice(&raw).with_context(|| {
                    format!("decoding metadata of app {}", String::from_utf8_lossy(&key))
                })
            })
            .collect()
    }

    /// Every app record that decodes, and the names (with the reason) of those that do not:
    /// one damaged record must not keep the other apps from starting.
    pub fn list_apps_lenient(&self) -> anyhow::Result<(Vec<AppRecord>, Vec<DamagedRecord>)> {
        let mut records = Vec::new();
        let mut damaged = Vec::new();
        for entry in self.apps.iter() {
            let (key, raw) = entry?;
            let name = String::from_utf8_lossy(&key).into_owned();
            match serde_json::from_slice(&raw) {
                Ok(record) => records.push(record),
                Err(err) => damaged.push((name, format!("its metadata does not decode: {err}"))),
            }
        }
        Ok((records, damaged))
    }

    /// Stores an app record durably (flushed before returning).
    pub fn put_app(&self, record: &AppRecord) -> anyhow::Result<()> {
        let raw = serde_json::to_vec(record)?;
        self.apps.insert(record.name.as_bytes(), raw)?;
        self.db.flush().context("flushing app metadata")?;
        Ok(())
    }

    /// Removes an app record durably; returns it if it existed.
    pub fn remove_app(&self, name: &str) -> anyhow::Result<Option<AppRecord>> {
        let removed = self.apps.remove(name)?;
        self.db.flush().context("flushing app metadata")?;
        removed
            .map(|raw| serde_json::from_slice(&raw).context("decoding removed app metadata"))
            .transpose()
    }

    /// Writes everything buffered to disk.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Deletes component and artifact files no app version refers to any more.
    pub fn collect_garbage(&self) -> anyhow::Result<usize> {
        let mut live = HashSet::new();
        for app in self.list_apps()? {
            for version in std::iter::once(app.current).chain(app.previous) {
                live.insert(version.served_digest().to_string());
                live.insert(version.digest);
            }
        }
        let mut removed = 0;
        for dir in [&self.components, &self.artifacts] {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                let Some(stem) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let digest = stem.split(['.', '-']).next().unwrap_or_default();
                if !live.contains(digest) {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing unused {}", path.display()))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Creates `path` with `bytes` unless it exists: names are content-addressed, so an existing
/// file already holds these bytes.
fn write_once(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    write_atomic(path, bytes)
}

/// Writes `path` atomically: temp file, fsync, rename over the old one, fsync the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("blob path has no parent folder")?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(digest: &str) -> VersionRecord {
        VersionRecord {
            digest: digest.into(),
            size: 3,
            route: "/a".into(),
            env: vec![],
            config: ConfigValues::default(),
            deployed_at: 0,
            grants: Grants::default(),
            snapshot: None,
            limits: AppLimits::default(),
            reuse: Reuse::default(),
            source: None,
        }
    }

    #[test]
    fn app_records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let record = AppRecord {
            name: "a".into(),
            current: version("bb"),
            previous: Some(version("aa")),
        };
        {
            let repo = Repository::open(dir.path(), 500).unwrap();
            repo.put_app(&record).unwrap();
        }
        // sled's background threads release the lock a moment after the last handle goes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let repo = loop {
            match Repository::open(dir.path(), 500) {
                Ok(repo) => break repo,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(err) => panic!("reopening: {err:#}"),
            }
        };
        assert_eq!(repo.get_app("a").unwrap(), Some(record));
    }

    #[test]
    fn garbage_collection_keeps_current_and_previous_only() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path(), 500).unwrap();
        for digest in ["aa", "bb", "cc"] {
            repo.store_component(digest, b"x").unwrap();
            repo.store_artifact(digest, "e1", b"y").unwrap();
        }
        repo.put_app(&AppRecord {
            name: "a".into(),
            current: version("bb"),
            previous: Some(version("aa")),
        })
        .unwrap();
        assert_eq!(repo.collect_garbage().unwrap(), 2);
        assert!(repo.component_path("aa").exists());
        assert!(repo.artifact_path("bb", "e1").exists());
        assert!(!repo.component_path("cc").exists());
    }

    #[test]
    fn a_damaged_record_does_not_hide_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path(), 500).unwrap();
        repo.put_app(&AppRecord {
            name: "good".into(),
            current: version("aa"),
            previous: None,
        })
        .unwrap();
        repo.apps.insert("bad", b"{not json".to_vec()).unwrap();
        assert!(repo.list_apps().is_err());
        let (records, damaged) = repo.list_apps_lenient().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(damaged[0].0, "bad");
        assert!(damaged[0].1.contains("does not decode"), "{}", damaged[0].1);
    }

    #[test]
    fn second_open_of_same_data_dir_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Repository::open(dir.path(), 500).unwrap();
        let err = Repository::open(dir.path(), 500).err().unwrap().to_string();
        assert!(err.contains("in use by another edge node"), "{err}");
    }
}

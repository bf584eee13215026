//! What a full disk and a greedy app cannot do: get a write acknowledged that was not stored,
//! stop reads or other apps, keep the node from starting, or take more than its kv quota.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{TestHost, client, get, guest, send};

/// A tmpfs mounted on a temporary folder for one test, unmounted on drop. `None` (the test
/// skips, saying why) where this process may not mount, e.g. not root.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self { dir }),
            Ok(out) => {
                eprintln!(
                    "skipping: cannot mount a tmpfs to fill ({}); run the suite as root to \
                     include this test",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(err) => {
                eprintln!("skipping: cannot run mount ({err})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros to `path` until the disk is full.
fn fill_disk(path: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

fn node_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(&path, body).expect("node.toml");
    path
}

async fn put(url: &str, body: Vec<u8>) -> crate::harness::Reply {
    send(client().put(url).body(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_clearly_keeps_reads_restarts_and_recovers_by_itself() {
    let Some(disk) = Tmpfs::mount(24) else {
        return;
    };
    let outside = tempfile::tempdir().expect("temp");
    let config = node_config(
        outside.path(),
        "[storage]\nmin_free_mib = 4\nreserve_mib = 2\n",
    );
    let config = config.to_str().expect("utf-8");
    let data = disk.path().join("node");
    let host = TestHost::start_in(&data, &["--config", config]);
    host.deploy("counter", &guest("counter"), &["--kv"]);
    host.deploy("hello", &guest("hello"), &[]);

    // The app writes until the node refuses; every acknowledged write is kept.
    let value = |i: usize| vec![b'a' + (i % 26) as u8; 256 * 1024];
    let mut stored = Vec::new();
    let mut refusal = None;
    for i in 0..200 {
        let reply = put(&format!("{}/counter/kv/k{i}", host.data_url), value(i)).await;
        if reply.status == 200 {
            stored.push(i);
        } else {
            refusal = Some(reply);
            break;
        }
    }
    let refusal = refusal.expect("the disk never filled");
    assert!(
        refusal.body.contains("nearly full") && refusal.body.contains("nothing was stored"),
        "{} {}",
        refusal.status,
        refusal.body
    );
    assert!(stored.len() > 10, "only {} writes fit", stored.len());
    let first = get(&format!("{}/counter/kv/k0", host.data_url)).await;
    assert_eq!(first.status, 200, "reads go on: {}", first.body);
    assert_eq!(get(&format!("{}/hello/", host.data_url)).await.status, 200);

    // Someone else takes the rest of the disk: still a clear refusal, reads still served.
    let filler = disk.path().join("filler");
    fill_disk(&filler);
    let refused = put(&format!("{}/counter/kv/late", host.data_url), value(1)).await;
    assert!(refused.body.contains("nearly full"), "{}", refused.body);
    assert_eq!(
        get(&format!("{}/counter/kv/k1", host.data_url))
            .await
            .status,
        200
    );
    host.stop();

    // A node starts and serves on the full disk, with every acknowledged write.
    let host = TestHost::start_in(&data, &["--config", config]);
    assert_eq!(get(&format!("{}/hello/", host.data_url)).await.status, 200);
    for &i in &stored {
        let reply = send(client().get(format!("{}/counter/kv/k{i}", host.data_url))).await;
        assert_eq!(reply.status, 200, "acknowledged write k{i} lost");
        assert!(reply.body.as_bytes() == value(i), "k{i} changed");
    }
    assert_eq!(
        get(&format!("{}/counter/kv/late", host.data_url))
            .await
            .status,
        404
    );

    // Space returns: writes work again without a restart.
    std::fs::remove_file(&filler).expect("remove filler");
    let again = put(&format!("{}/counter/kv/late", host.data_url), value(7)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    host.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_cannot_store_past_its_kv_quota_and_edge_list_shows_what_it_holds() {
    let host = TestHost::start();
    host.deploy(
        "counter",
        &guest("counter"),
        &["--kv", "--kv-quota", "1MiB", "--kv-buckets", "1"],
    );
    host.deploy("other", &guest("counter"), &["--kv"]);
    let chunk = vec![b'x'; 300 * 1024];
    for i in 0..3 {
        let reply = put(&format!("{}/counter/kv/k{i}", host.data_url), chunk.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let over = put(&format!("{}/counter/kv/k3", host.data_url), chunk.clone()).await;
    assert!(
        over.body.contains("quota") && over.body.contains("--kv-quota"),
        "{}",
        over.body
    );
    assert_eq!(
        get(&format!("{}/counter/kv/k3", host.data_url))
            .await
            .status,
        404
    );
    let bucket = put(
        &format!("{}/counter/kv/k?bucket=second", host.data_url),
        b"v".to_vec(),
    )
    .await;
    assert!(bucket.body.contains("--kv-buckets"), "{}", bucket.body);
    // Another app has its own quota.
    let other = put(&format!("{}/other/kv/k", host.data_url), chunk.clone()).await;
    assert_eq!(other.status, 200, "{}", other.body);
    // Deleting gives room back.
    let deleted = send(client().delete(format!("{}/counter/kv/k0", host.data_url))).await;
    assert_eq!(deleted.status, 200);
    let fits = put(&format!("{}/counter/kv/k3", host.data_url), chunk).await;
    assert_eq!(fits.status, 200, "{}", fits.body);

    let listed = host.edge(&["list", "--json"]);
    let apps: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    let counter = apps
        .as_array()
        .and_then(|a| a.iter().find(|app| app["name"] == "counter"))
        .expect("counter listed");
    let held = counter["kv_bytes"].as_u64().expect("kv_bytes");
    assert!((900 * 1024..1024 * 1024).contains(&held), "{held}");
    assert_eq!(counter["limits"]["kv_quota_mib"], 1);
    assert_eq!(counter["limits"]["kv_buckets"], 1);
    let table = host.edge(&["list"]);
    assert!(table.stdout.contains("/1MiB*"), "{}", table.stdout);
}

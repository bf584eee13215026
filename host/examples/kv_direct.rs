//! Reference for `scripts/bench-kv.sh`: atomic increments on sled directly, no guest, no
//! HTTP, with the same algorithm the node uses (read, add, compare-and-swap, retry) and, in
//! `flush` mode, an fsync (`Db::flush`) before each increment counts as done.
//!
//!   cargo run --release --example kv_direct -- DIR flush|periodic THREADS SECONDS
//!
//! Prints one line: `increments_per_second`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, mode, threads, seconds] = args.as_slice() else {
        return Err("usage: kv_direct DIR flush|periodic THREADS SECONDS".into());
    };
    let flush = match mode.as_str() {
        "flush" => true,
        "periodic" => false,
        other => return Err(format!("unknown mode {other}").into()),
    };
    let threads: usize = threads.parse()?;
    let duration = Duration::from_secs_f64(seconds.parse()?);
    let db = sled::Config::new()
        .path(dir)
        .flush_every_ms(Some(500))
        .open()?;
    let tree = db.open_tree("kv/bench/default")?;

    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (db, tree, done, stop) = (db.clone(), tree.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || -> sled::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    increment(&tree, b"k")?;
                    if flush {
                        db.flush()?;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().map_err(|_| "worker panicked")??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("{rate:.0}");
    Ok(())
}

fn increment(tree: &sled::Tree, key: &[u8]) -> sled::Result<i64> {
    loop {
        let current = tree.get(key)?;
        let value: i64 = current
            .as_ref()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        let next = value + 1;
        if tree
            .compare_and_swap(key, current, Some(next.to_string().into_bytes()))?
            .is_ok()
        {
            return Ok(next);
        }
    }
}

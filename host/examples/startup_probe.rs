//! Reference-free timing for `scripts/bench-cold-start.sh`: starts `edge serve` on a data
//! folder with deployed apps and measures, from the moment the process is spawned, when each
//! app first answers 200. Polls over plain TCP (no client library start-up in the way).
//!
//!   cargo run --release --example startup_probe -- EDGE DATA_DIR PORT ROUTE...
//!
//! Prints `ROUTE MILLISECONDS` per app, then `all MILLISECONDS` (the last one to answer).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, edge, data_dir, port, routes @ ..] = args.as_slice() else {
        return Err("usage: startup_probe EDGE DATA_DIR PORT ROUTE...".into());
    };
    let listen = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = Command::new(edge)
        .args([
            "serve",
            "--listen",
            &listen,
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("EDGE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = started + Duration::from_secs(10);
    let mut all = Duration::ZERO;
    for route in routes {
        loop {
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("{route} did not answer 200 within 10 s").into());
            }
            if status_of(&listen, route) == Some(200) {
                let elapsed = started.elapsed();
                all = all.max(elapsed);
                println!("{route} {:.2}", elapsed.as_secs_f64() * 1e3);
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    println!("all {:.2}", all.as_secs_f64() * 1e3);
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

fn status_of(addr: &str, route: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    let request = format!("GET {route} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

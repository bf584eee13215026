//! Guest output: what apps write to stdout and stderr, captured per app as lines tagged with
//! the invocation's request id and time, kept in a bounded ring (`edge logs`), optionally
//! appended to a file per app, and never written to the node's own stdout or stderr.
//!
//! Writing never blocks the guest or an async worker: a line goes into the ring under a short
//! lock, or is dropped (and counted) when the app is over its rate; the file copy goes through
//! a bounded queue to a writer thread and is dropped when that queue is full.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

pub use crate::api::{LogLine, LogPage};

/// `[guest_logs]` in the node config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestLogsConfig {
    /// Lines kept per app for `edge logs` (the oldest go first).
    pub ring_lines: usize,
    /// Longer lines are cut at this many bytes (marked with `…`).
    pub max_line_bytes: usize,
    /// Lines per second an app may log on average; past it lines are dropped and counted.
    pub lines_per_second: u32,
    /// Lines an app may log in a burst above that rate.
    pub burst_lines: u32,
    /// Also append each app's lines to `<data_dir>/logs/<app>.log`.
    pub file: bool,
    /// Size at which an app's log file is rotated to `<app>.log.1` (one old file is kept).
    pub file_max_bytes: u64,
}

impl Default for GuestLogsConfig {
    fn default() -> Self {
        Self {
            ring_lines: 1000,
            max_line_bytes: 4096,
            lines_per_second: 100,
            burst_lines: 500,
            file: false,
            file_max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The guest logs of every app on the node.
pub struct GuestLogs {
    config: GuestLogsConfig,
    apps: RwLock<HashMap<String, Arc<AppLog>>>,
    files: Option<std::sync::mpsc::SyncSender<(Arc<str>, String)>>,
}

impl GuestLogs {
    pub fn new(config: GuestLogsConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let files = if config.file {
            let dir = data_dir.join("logs");
            std::fs::create_dir_all(&dir)?;
            let (tx, rx) = std::sync::mpsc::sync_channel(4096);
            let max = config.file_max_bytes;
            std::thread::Builder::new()
                .name("edge-guest-logs".into())
                .spawn(move || write_files(&dir, max, &rx))?;
            Some(tx)
        } else {
            None
        };
        Ok(Self {
            config,
            apps: RwLock::new(HashMap::new()),
            files,
        })
    }

    /// The log of `app`, created on first use; kept across its versions.
    pub fn app(&self, app: &str) -> Arc<AppLog> {
        if let Some(log) = self.apps.read().unwrap_or_else(|p| p.into_inner()).get(app) {
            return log.clone();
        }
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        apps.entry(app.to_string())
            .or_insert_with(|| {
                Arc::new(AppLog::new(
                    Arc::from(app),
                    self.config.clone(),
                    self.files.clone(),
                ))
            })
            .clone()
    }

    /// The log of `app` if it has one.
    pub fn get(&self, app: &str) -> Option<Arc<AppLog>> {
        self.apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .cloned()
    }

    /// Forgets a removed app's lines.
    pub fn forget(&self, app: &str) {
        self.apps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
    }
}

/// One app's ring of lines and its rate limiter.
pub struct AppLog {
    app: Arc<str>,
    config: GuestLogsConfig,
    state: Mutex<RingState>,
    /// The sequence number of the newest line, for followers to wait on.
    newest: watch::Sender<u64>,
    files: Option<std::sync::mpsc::SyncSender<(Arc<str>, String)>>,
}

struct RingState {
    lines: VecDeque<LogLine>,
    next_seq: u64,
    /// Token bucket: lines that may be logged now.
    allowance: f64,
    refilled: Instant,
    /// Lines dropped since the last one kept (reported in a marker line).
    dropped_since: u64,
    dropped_total: u64,
}

impl AppLog {
    fn new(
        app: Arc<str>,
        config: GuestLogsConfig,
        files: Option<std::sync::mpsc::SyncSender<(Arc<str>, String)>>,
    ) -> Self {
        let burst = f64::from(config.burst_lines.max(1));
        Self {
            app,
            state: Mutex::new(RingState {
                lines: VecDeque::new(),
                next_seq: 1,
                allowance: burst,
                refilled: Instant::now(),
                dropped_since: 0,
                dropped_total: 0,
            }),
            config,
            newest: watch::Sender::new(0),
            files,
        }
    }

    /// Adds one line unless the app is over its rate.
    pub fn push(&self, request_id: &str, stream: &'static str, text: &str) {
        let text = cut(text, self.config.max_line_bytes);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let rate = f64::from(self.config.lines_per_second);
        let burst = f64::from(self.config.burst_lines.max(1));
        state.allowance =
            (state.allowance + now.duration_since(state.refilled).as_secs_f64() * rate).min(burst);
        state.refilled = now;
        if state.allowance < 1.0 {
            state.dropped_since += 1;
            state.dropped_total += 1;
            return;
        }
        state.allowance -= 1.0;
        let time_ms = crate::names::unix_now_ms();
        if state.dropped_since > 0 {
            let marker = format!(
                "[edge: {} lines dropped: over the app's log rate of {} lines/s]",
                state.dropped_since, self.config.lines_per_second
            );
            state.dropped_since = 0;
            self.keep(&mut state, time_ms, "", "edge", marker);
        }
        self.keep(&mut state, time_ms, request_id, stream, text);
        let newest = state.next_seq - 1;
        drop(state);
        self.newest.send_replace(newest);
    }

    fn keep(
        &self,
        state: &mut RingState,
        time_ms: u64,
        request_id: &str,
        stream: &'static str,
        text: String,
    ) {
        let line = LogLine {
            seq: state.next_seq,
            time_ms,
            request_id: request_id.to_string(),
            stream: stream.to_string(),
            text,
        };
        state.next_seq += 1;
        if let Some(files) = &self.files
            && let Ok(json) = serde_json::to_string(&line)
        {
            // A full queue drops the file copy, never blocks the guest.
            let _ = files.try_send((self.app.clone(), json));
        }
        state.lines.push_back(line);
        while state.lines.len() > self.config.ring_lines.max(1) {
            state.lines.pop_front();
        }
    }

    /// Lines after `after` (a sequence number) and from `since_ms` on, at most `limit`.
    pub fn page(&self, after: u64, since_ms: u64, limit: usize) -> LogPage {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let lines: Vec<LogLine> = state
            .lines
            .iter()
            .filter(|l| l.seq > after && l.time_ms >= since_ms)
            .take(limit)
            .cloned()
            .collect();
        let next_after = lines
            .last()
            .map_or(after.max(state.next_seq - 1), |l| l.seq);
        LogPage {
            lines,
            next_after,
            dropped: state.dropped_total,
        }
    }

    /// Waits until a line after `after` exists or `wait` passes.
    pub async fn wait_after(&self, after: u64, wait: std::time::Duration) {
        let mut newest = self.newest.subscribe();
        let _ = tokio::time::timeout(wait, newest.wait_for(|seq| *seq > after)).await;
    }

    /// The stdout or stderr of one instance, its lines tagged with the request it serves.
    pub fn output(self: &Arc<Self>, request: RequestTag, stream: &'static str) -> GuestOutput {
        GuestOutput {
            log: self.clone(),
            request,
            stream,
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The id of the request an instance is serving, as its log lines name it: set once for a
/// fresh instance, moved on by each request of a reused one (a guest may keep its stdout
/// stream open across requests).
#[derive(Clone)]
pub struct RequestTag(Arc<std::sync::Mutex<Arc<str>>>);

impl RequestTag {
    pub fn new(request_id: Arc<str>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(request_id)))
    }

    pub fn set(&self, request_id: Arc<str>) {
        *self.lock() = request_id;
    }

    pub fn get(&self) -> Arc<str> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<str>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a store's stdout or stderr is: each instance's streams buffer a partial line and
/// hand complete lines to the app's log.
pub struct GuestOutput {
    log: Arc<AppLog>,
    request: RequestTag,
    stream: &'static str,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            log: self.log.clone(),
            request: self.request.clone(),
            stream: self.stream,
            partial: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(AsyncLineWriter(LineWriter {
            log: self.log.clone(),
            request: self.request.clone(),
            stream: self.stream,
            partial: Vec::new(),
        }))
    }
}

/// Most bytes accepted per write: a guest cannot make the host buffer more than this at once.
const WRITE_BUDGET: usize = 64 * 1024;

struct LineWriter {
    log: Arc<AppLog>,
    request: RequestTag,
    stream: &'static str,
    partial: Vec<u8>,
}

impl LineWriter {
    fn accept(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..newline]);
            self.emit();
            rest = &rest[newline + 1..];
        }
        self.partial.extend_from_slice(rest);
        // A line without end is cut rather than buffered without bound.
        if self.partial.len() > self.log.config.max_line_bytes {
            self.emit();
        }
    }

    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.partial);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.log.push(&self.request.get(), self.stream, text);
        self.partial.clear();
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.emit();
        }
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > WRITE_BUDGET {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write of {} bytes exceeds the permitted {WRITE_BUDGET}",
                bytes.len()
            )));
        }
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

struct AsyncLineWriter(LineWriter);

impl tokio::io::AsyncWrite for AsyncLineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.accept(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The file writer thread: appends JSON lines to `<dir>/<app>.log`, rotating at `max` bytes.
fn write_files(dir: &Path, max: u64, rx: &std::sync::mpsc::Receiver<(Arc<str>, String)>) {
    let mut open: HashMap<Arc<str>, (std::fs::File, u64)> = HashMap::new();
    while let Ok((app, line)) = rx.recv() {
        let path: PathBuf = dir.join(format!("{app}.log"));
        let entry = match open.entry(app.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let file = match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                {
                    Ok(file) => file,
                    Err(err) => {
                        tracing::warn!(app = %app, "cannot open guest log file: {err}");
                        continue;
                    }
                };
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                v.insert((file, size))
            }
        };
        if entry.1 + line.len() as u64 + 1 > max {
            let _ = std::fs::rename(&path, dir.join(format!("{app}.log.1")));
            match std::fs::File::create(&path) {
                Ok(file) => *entry = (file, 0),
                Err(err) => {
                    tracing::warn!(app = %app, "cannot rotate guest log file: {err}");
                    open.remove(&app);
                    continue;
                }
            }
        }
        if writeln!(entry.0, "{line}").is_ok() {
            entry.1 += line.len() as u64 + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(config: GuestLogsConfig) -> Arc<AppLog> {
        Arc::new(AppLog::new(Arc::from("app"), config, None))
    }

    #[test]
    fn lines_are_split_tagged_and_the_partial_one_kept_until_drop() {
        let log = log(GuestLogsConfig::default());
        let mut writer = LineWriter {
            log: log.clone(),
            request: RequestTag::new(Arc::from("r1")),
            stream: "stdout",
            partial: Vec::new(),
        };
        writer.accept(b"one\ntw");
        writer.accept(b"o\r\nthree");
        assert_eq!(log.page(0, 0, 10).lines.len(), 2);
        drop(writer);
        let page = log.page(0, 0, 10);
        let texts: Vec<_> = page.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert!(page.lines.iter().all(|l| l.request_id == "r1"));
        assert_eq!(log.page(2, 0, 10).lines.len(), 1);
    }

    #[test]
    fn a_kept_stream_tags_lines_with_the_request_being_served_now() {
        let log = log(GuestLogsConfig::default());
        let tag = RequestTag::new(Arc::from("first"));
        let mut writer = LineWriter {
            log: log.clone(),
            request: tag.clone(),
            stream: "stdout",
            partial: Vec::new(),
        };
        writer.accept(b"one\n");
        tag.set(Arc::from("second"));
        writer.accept(b"two\n");
        let page = log.page(0, 0, 10);
        let tagged: Vec<_> = page
            .lines
            .iter()
            .map(|l| (l.request_id.as_str(), l.text.as_str()))
            .collect();
        assert_eq!(tagged, [("first", "one"), ("second", "two")]);
    }

    #[test]
    fn rate_limit_drops_and_reports_and_ring_is_bounded() {
        let log = log(GuestLogsConfig {
            ring_lines: 50,
            lines_per_second: 1,
            burst_lines: 10,
            ..GuestLogsConfig::default()
        });
        for i in 0..1000 {
            log.push("r", "stdout", &format!("line {i}"));
        }
        let page = log.page(0, 0, 1000);
        assert_eq!(page.lines.len(), 10);
        assert!(page.dropped >= 989, "{}", page.dropped);
        assert!(log.state.lock().unwrap().lines.len() <= 50);
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "h…");
        assert_eq!(cut("abc", 3), "abc");
    }
}

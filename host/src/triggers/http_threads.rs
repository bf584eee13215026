//! The data plane's connection threads: one thread per core, each driving its own
//! current-thread tokio runtime. The listener hands every accepted connection to the thread
//! holding the fewest open connections, and the connection then lives on that thread: its
//! socket's readiness, its requests and (for 0.2 apps) their guest calls are polled there, so
//! a request wakes no other thread and no task migrates between cores.
//!
//! Work a request hands elsewhere stays where it is: apps granted a model run on the
//! inference workers, WASI 0.3 instances on the thread that created them, blocking work on
//! the runtime's blocking pool. A guest that computes yields every epoch tick (10 ms), so the
//! other connections of its thread wait at most that long for a turn; `[server] http_threads`
//! = 0 serves connections on the node's shared multi-threaded runtime instead (work stealing,
//! at the price of cross-thread wake-ups on every request).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;

/// How long a stopping thread waits for blocking work its requests started.
const BLOCKING_WORK_AT_STOP: std::time::Duration = std::time::Duration::from_secs(1);

std::thread_local! {
    /// Which connection thread this is; `None` on every other thread.
    static THREAD_INDEX: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the connection thread running the caller, `None` off them.
pub fn current_thread_index() -> Option<usize> {
    THREAD_INDEX.with(std::cell::Cell::get)
}

/// One value per connection thread (an app's instance set, its idle instances): each thread
/// uses its own, so nothing it holds is touched from another core on the request path. Code
/// off the connection threads (the shared runtime, the inference workers) uses the first.
pub struct PerThread<T> {
    slots: Box<[T]>,
}

impl<T> PerThread<T> {
    /// `threads` values (at least one), each made by `make`.
    pub fn new(threads: usize, make: impl FnMut() -> T) -> Self {
        Self {
            slots: std::iter::repeat_with(make).take(threads.max(1)).collect(),
        }
    }

    /// The calling thread's value.
    pub fn current(&self) -> &T {
        &self.slots[self.current_index()]
    }

    /// Every value, the calling thread's first, then the others in thread order after it.
    pub fn current_first(&self) -> impl Iterator<Item = &T> {
        let (before, from_current) = self.slots.split_at(self.current_index());
        from_current.iter().chain(before)
    }

    /// Every value.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter()
    }

    fn current_index(&self) -> usize {
        current_thread_index().unwrap_or(0) % self.slots.len()
    }
}

/// The connection threads of one data plane; dropping it stops them (connections still open
/// are cut, so drain first).
pub struct ConnectionThreads {
    threads: Vec<ConnectionThread>,
}

struct ConnectionThread {
    runtime: tokio::runtime::Handle,
    open: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Keeps its thread's count of open connections while the connection lives.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionThreads {
    /// Starts `count` threads (at least one), named `edge-http-N`.
    pub fn start(count: usize) -> anyhow::Result<Self> {
        let mut threads = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("edge-http-{index}-blocking"))
                .build()
                .context("starting a data-plane runtime")?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("edge-http-{index}"))
                .spawn(move || {
                    THREAD_INDEX.with(|cell| cell.set(Some(index)));
                    let _ = runtime.block_on(stopped);
                    // Blocking work still running (a kv write) may finish, briefly.
                    runtime.shutdown_timeout(BLOCKING_WORK_AT_STOP);
                })
                .context("starting a data-plane thread")?;
            threads.push(ConnectionThread {
                runtime: handle,
                open: Arc::new(AtomicUsize::new(0)),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Self { threads })
    }

    /// How many threads serve connections.
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// Runs `serve(stream)` on the thread with the fewest open connections. The accepted
    /// socket is moved to that thread's runtime, so its readiness events arrive there.
    pub fn serve<F, Fut>(&self, stream: tokio::net::TcpStream, serve: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let thread = self
            .threads
            .iter()
            .min_by_key(|thread| thread.open.load(Ordering::Relaxed))
            .expect("at least one connection thread");
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!("cannot hand a connection to a data-plane thread: {err}");
                return;
            }
        };
        thread.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenConnection(thread.open.clone());
        thread.runtime.spawn(async move {
            let _open = open;
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(err) => tracing::debug!("cannot register a data-plane connection: {err}"),
            }
        });
    }
}

impl Drop for ConnectionThreads {
    fn drop(&mut self) {
        for thread in &mut self.threads {
            drop(thread.stop.take());
        }
        for thread in &mut self.threads {
            if let Some(handle) = thread.thread.take() {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn connections_are_spread_over_the_threads_and_served_off_the_acceptor() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let threads = ConnectionThreads::start(2).unwrap();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            threads.serve(server, |mut stream| async move {
                let name = std::thread::current().name().unwrap_or("").to_string();
                let mut byte = [0u8; 1];
                // Held open until the client sends a byte, then answers with its thread.
                let _ = stream.read_exact(&mut byte).await;
                let _ = stream.write_all(name.as_bytes()).await;
            });
            clients.push(client);
        }
        let mut names = Vec::new();
        for mut client in clients {
            client.write_all(b"x").await.unwrap();
            let mut name = String::new();
            client.read_to_string(&mut name).await.unwrap();
            names.push(name);
        }
        names.sort();
        assert_eq!(
            names,
            ["edge-http-0", "edge-http-0", "edge-http-1", "edge-http-1"],
            "each thread holds two of the four open connections"
        );
    }

    #[test]
    fn each_connection_thread_uses_its_own_value_and_other_threads_the_first() {
        let values = PerThread::new(3, {
            let mut next = 0;
            move || {
                next += 1;
                next * 10
            }
        });
        assert_eq!(
            *values.current(),
            10,
            "off the connection threads: the first"
        );
        let seen_by = |index: usize| {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        THREAD_INDEX.with(|cell| cell.set(Some(index)));
                        let order: Vec<i32> = values.current_first().copied().collect();
                        (*values.current(), order)
                    })
                    .join()
                    .unwrap()
            })
        };
        assert_eq!(seen_by(1), (20, vec![20, 30, 10]));
        assert_eq!(seen_by(2), (30, vec![30, 10, 20]));
        assert_eq!(
            seen_by(4),
            (20, vec![20, 30, 10]),
            "more threads than values wrap around"
        );
        assert_eq!(values.iter().count(), 3);
    }
}

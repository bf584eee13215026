//! `edge serve`: opens the node, binds both listeners, serves until ctrl-c or SIGTERM, then
//! drains requests in flight and closes the database cleanly.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::auth;
use crate::config::NodeConfig;
use crate::connections::ConnectionLimits;
use crate::control::admin::{self, AdminState};
use crate::control::node::Node;
use crate::control::tokens::TokenStore;

/// Runs a node with `config` until `shutdown` resolves.
///
/// The bound addresses are printed on stdout as `edge: data plane listening on http://…` and
/// `edge: admin API listening on http://…` (tests and scripts read them when using port 0).
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let started = Instant::now();
    // The loader is done with it; a long-running node need not keep it resident.
    crate::relocations::release_relocation_table();
    let data_dir = config.server.data_dir.clone();
    auth::create_private_dir(&data_dir)?;
    let token = auth::load_or_generate(&config.server.token, &data_dir)?;

    // Everything that can fail is checked before the sockets are bound.
    let (node, tokens) = tokio::task::spawn_blocking(move || {
        let node = Node::open(config)?;
        let tokens = TokenStore::open(&node.repo.db(), &token)?;
        anyhow::Ok((node, Arc::new(tokens)))
    })
    .await
    .context("node start-up task failed")??;
    let result = serve(node.clone(), tokens, started, shutdown).await;
    // Exiting while a start-up thread is inside OpenVINO would crash in its static destructors.
    let _ = tokio::task::spawn_blocking(move || node.join_start_up_threads()).await;
    result
}

/// Binds both listeners and serves until `shutdown`, then drains and flushes.
async fn serve(
    node: Arc<Node>,
    tokens: Arc<TokenStore>,
    started: Instant,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let admin_tls = match node.config.server.admin_tls() {
        Some((cert, key)) => Some(crate::tls::server_config(cert, key)?),
        None => None,
    };
    let data_listener = bind(node.config.server.listen, "data plane").await?;
    let admin_listener = bind(node.config.server.admin_listen, "admin API").await?;
    let data_addr = data_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let admin_scheme = if admin_tls.is_some() { "https" } else { "http" };
    let data_plane_url: Arc<str> = format!("http://{data_addr}").into();

    node.metrics.node_started(started.elapsed());
    tracing::info!(
        data_plane = %data_addr,
        admin = %admin_addr,
        data_dir = %node.config.server.data_dir.display(),
        allocator = ?node.engine.allocator,
        apps = node.routes.current().apps().count(),
        memory_mib = node.config.limits.memory_mib,
        timeout_ms = node.config.limits.request_timeout_ms,
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        "edge node ready"
    );
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "edge: data plane listening on {data_plane_url}")?;
        writeln!(
            stdout,
            "edge: admin API listening on {admin_scheme}://{admin_addr}"
        )?;
        stdout.flush()?;
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let data_plane = tokio::spawn(crate::triggers::http::serve_data_plane(
        node.clone(),
        data_listener,
        stopped(stop_rx.clone()),
    ));
    let messages = tokio::spawn(crate::triggers::messaging::run(
        node.clone(),
        stopped(stop_rx.clone()),
    ));
    // Desired state from NATS, when [fleet] is set; it stops with the process.
    let fleet = crate::fleet::agent::spawn(node.clone());
    let metering = tokio::spawn(flush_usage_periodically(
        node.clone(),
        stopped(stop_rx.clone()),
    ));
    let admin_router = admin::router(AdminState {
        node: node.clone(),
        tokens,
        data_plane_url,
    });
    let admin = tokio::spawn(serve_admin(
        admin_listener,
        admin_router,
        admin_tls,
        Duration::from_millis(node.config.server.drain_timeout_ms),
        stopped(stop_rx),
    ));

    shutdown.await;
    if let Some(fleet) = fleet {
        fleet.abort();
    }
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    let _ = data_plane.await;
    let _ = admin.await;
    let _ = messages.await;
    let _ = metering.await;
    let flushed = node.clone();
    tokio::task::spawn_blocking(move || flushed.usage.flush())
        .await
        .context("usage flush task failed")?
        .context("writing usage at shutdown")?;
    node.repo
        .flush()
        .context("flushing the database at shutdown")?;
    tracing::info!("stopped");
    Ok(())
}

/// How long a client may take for the TLS handshake and request headers on the admin API.
const ADMIN_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the admin API holds at once, in all and per client address.
const ADMIN_MAX_CONNECTIONS: usize = 128;
const ADMIN_MAX_CONNECTIONS_PER_CLIENT: usize = 32;

/// Serves the admin router until `shutdown`, then lets requests in flight finish for at most
/// `drain`. Connections are capped and must send their headers (and TLS handshake) in time.
/// With `tls`, a client speaking plain HTTP gets a 400 saying to use https:// instead of a
/// failed handshake it cannot read.
async fn serve_admin(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    drain: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections =
        ConnectionLimits::new(ADMIN_MAX_CONNECTIONS, ADMIN_MAX_CONNECTIONS_PER_CLIENT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(ADMIN_HANDSHAKE_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer, slot) = tokio::select! {
            accepted = connections.accept_retrying(&listener, "admin API") => accepted,
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let http = http.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(err) = watcher.watch(conn).await {
                    tracing::debug!("admin connection ended: {err}");
                }
                return;
            };
            let mut first = [0u8; 1];
            let peeked =
                tokio::time::timeout(ADMIN_HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
            if !matches!(peeked, Ok(Ok(1))) {
                return;
            }
            // A TLS handshake starts with record type 22; an HTTP request with a letter.
            if first[0].is_ascii_alphabetic() {
                refuse_plain_http(stream).await;
                return;
            }
            let tls = match tokio::time::timeout(ADMIN_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!("admin TLS handshake failed: {err}");
                    return;
                }
                Err(_) => return,
            };
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!("admin connection ended: {err}");
            }
        });
    }
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("admin requests still in flight at the drain deadline were cut");
    }
}

/// Answers a plain HTTP request on the TLS port with a 400 that says what to do.
async fn refuse_plain_http(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let body = "{\"error\": \"this admin API requires TLS: use https:// (and --ca-file for a private CA)\"}\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(ADMIN_HANDSHAKE_TIMEOUT, async {
        // Read the request head first: closing with unread bytes would reset the connection
        // and could destroy the answer before the client reads it.
        use tokio::io::AsyncReadExt as _;
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Writes usage counters to the database every `[metering] flush_interval_ms` until `stop`.
async fn flush_usage_periodically(node: Arc<Node>, stop: impl Future<Output = ()>) {
    if !node.usage.enabled() {
        return;
    }
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(node.usage.flush_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => return,
        }
        let flushing = node.clone();
        match tokio::task::spawn_blocking(move || flushing.usage.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!("writing usage counters: {err:#}"),
            Err(err) => tracing::warn!("usage flush task failed: {err}"),
        }
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for the {what} on {addr}; is another node running there? choose another address in the config or with a flag")
    })
}

/// Resolves on ctrl-c or SIGTERM. The handlers are installed when this is called (inside the
/// runtime), not when the future is first polled: a SIGTERM that arrives right after the node
/// printed its addresses must stop it cleanly, not kill it.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {},
                        _ = terminate.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

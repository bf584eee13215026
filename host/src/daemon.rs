//! `edge serve`: opens the node, binds both listeners, serves until ctrl-c or SIGTERM, then
//! drains requests in flight and closes the database cleanly.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::auth;
use crate::config::NodeConfig;
use crate::control::admin::{self, AdminState};
use crate::control::node::Node;

/// Runs a node with `config` until `shutdown` resolves.
///
/// The bound addresses are printed on stdout as `edge: data plane listening on http://…` and
/// `edge: admin API listening on http://…` (tests and scripts read them when using port 0).
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data folder {}", data_dir.display()))?;
    let token: Arc<str> = auth::load_or_generate(&config.server.token, &data_dir)?.into();

    // Everything that can fail is checked before the sockets are bound.
    let node = tokio::task::spawn_blocking(move || Node::open(config))
        .await
        .context("node start-up task failed")??;
    let result = serve(node.clone(), token, started, shutdown).await;
    // Exiting while the model loader is inside OpenVINO would crash in its static destructors.
    let _ = tokio::task::spawn_blocking(move || {
        node.wait_until_restored(std::time::Duration::from_secs(60));
    })
    .await;
    result
}

/// Binds both listeners and serves until `shutdown`, then drains and flushes.
async fn serve(
    node: Arc<Node>,
    token: Arc<str>,
    started: Instant,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let data_listener = bind(node.config.server.listen, "data plane").await?;
    let admin_listener = bind(node.config.server.admin_listen, "admin API").await?;
    let data_addr = data_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
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
        writeln!(stdout, "edge: admin API listening on http://{admin_addr}")?;
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
    let admin_router = admin::router(AdminState {
        node: node.clone(),
        token,
        data_plane_url,
    });
    let admin = tokio::spawn(
        axum::serve(admin_listener, admin_router)
            .with_graceful_shutdown(stopped(stop_rx))
            .into_future(),
    );

    shutdown.await;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    let _ = data_plane.await;
    let _ = admin.await;
    let _ = messages.await;
    node.repo
        .flush()
        .context("flushing the database at shutdown")?;
    tracing::info!("stopped");
    Ok(())
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

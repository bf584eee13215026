//! Caps on the connections one listener holds, in all and per client address, so clients that
//! open many connections and send nothing cannot exhaust the node's file descriptors or memory.
//! Past the total the listener stops accepting (new clients wait in the kernel's backlog); past
//! a client's share its new connections are closed at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a listener pauses after a failed accept before it accepts again.
const ACCEPT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// The connection caps of one listener.
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    max_per_client: usize,
}

/// One accepted connection's place under the caps; dropping it frees the place.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    client: IpAddr,
    _total: OwnedSemaphorePermit,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(max_total.max(1))),
            per_client: Mutex::new(HashMap::new()),
            max_per_client: max_per_client.max(1),
        })
    }

    /// [`Self::accept`] until a connection comes: a failed accept (out of file descriptors,
    /// a connection reset before it was taken) is logged as one of `listener_name`'s and
    /// retried after [`ACCEPT_RETRY_PAUSE`], so that one failure neither ends the listener
    /// nor spins it. Cancel-safe.
    pub async fn accept_retrying(
        self: &Arc<Self>,
        listener: &TcpListener,
        listener_name: &str,
    ) -> (TcpStream, SocketAddr, ConnectionSlot) {
        loop {
            match self.accept(listener).await {
                Ok(accepted) => return accepted,
                Err(err) => {
                    tracing::warn!("accepting a connection on the {listener_name}: {err}");
                    tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Accepts the next connection within the caps. Waits while the listener is full; closes
    /// connections of a client already at its share. Cancel-safe.
    pub async fn accept(
        self: &Arc<Self>,
        listener: &TcpListener,
    ) -> std::io::Result<(TcpStream, SocketAddr, ConnectionSlot)> {
        let permit = self
            .total
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            let (stream, peer) = listener.accept().await?;
            let client = peer.ip();
            {
                let mut clients = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
                let held = clients.entry(client).or_insert(0);
                if *held >= self.max_per_client {
                    drop(clients);
                    tracing::debug!(%client, "connection refused: the client holds its share");
                    drop(stream);
                    continue;
                }
                *held += 1;
            }
            let slot = ConnectionSlot {
                limits: self.clone(),
                client,
                _total: permit,
            };
            return Ok((stream, peer, slot));
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut clients = self
            .limits
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(held) = clients.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_past_its_share_is_closed_and_a_freed_slot_is_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits::new(10, 2);
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let (_a, _, first) = limits.accept(&listener).await.unwrap();
        let (_b, _, _second) = limits.accept(&listener).await.unwrap();
        // The third is closed at accept, and nothing else is waiting.
        let waiting = std::time::Duration::from_millis(500);
        assert!(
            tokio::time::timeout(waiting, limits.accept(&listener))
                .await
                .is_err()
        );
        use tokio::io::AsyncReadExt as _;
        let mut byte = [0u8; 1];
        let third = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            clients[2].read(&mut byte),
        )
        .await
        .expect("the third connection was closed");
        assert!(matches!(third, Ok(0) | Err(_)), "{third:?}");
        // With one place freed, the client gets in again.
        drop(first);
        clients.push(TcpStream::connect(addr).await.unwrap());
        tokio::time::timeout(std::time::Duration::from_secs(10), limits.accept(&listener))
            .await
            .expect("a freed place is reused")
            .unwrap();
    }
}

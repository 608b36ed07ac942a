//! The NBD listener: accepts connections up to a cap, negotiates, serves, and on shutdown
//! stops accepting and lets every connection drain.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::device::Exports;
use super::handshake::{negotiate, BlockSizes};
use super::transmission::{serve, Limits};

/// Server settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Most connections at once; more are closed right after accept.
    pub max_connections: usize,
    /// Negotiation must finish within this.
    pub handshake_timeout: Duration,
    /// Per-connection limits.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

/// Serves one connection (any byte stream, so tests can use in-process pipes).
pub async fn handle_connection<S>(
    stream: S,
    exports: Arc<dyn Exports>,
    config: ServerConfig,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stream = stream;
    let sizes = BlockSizes {
        minimum: 1,
        preferred: 4096,
        maximum: config.limits.max_payload,
    };
    let negotiated = tokio::time::timeout(
        config.handshake_timeout,
        negotiate(&mut stream, &exports, sizes),
    )
    .await;
    let session = match negotiated {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            tracing::info!("handshake timed out");
            return Ok(());
        }
    };
    tracing::info!(export = %session.name, structured = session.structured, "client connected");
    let (reader, writer) = tokio::io::split(stream);
    serve(reader, writer, session, config.limits, shutdown).await
}

/// Accepts connections on `listener` until `shutdown` turns true, then waits for the open
/// connections to drain.
pub async fn run(
    listener: TcpListener,
    exports: Arc<dyn Exports>,
    config: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (exports, shutdown) = (exports.clone(), shutdown.clone());
        conns.spawn(async move {
            if let Err(e) = handle_connection(stream, exports, config, shutdown).await {
                tracing::info!(%peer, "connection ended: {e}");
            }
            drop(slot);
        });
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

//! The proxy's HTTP/1 server: a cap on open connections (one more waits in the
//! listen backlog until one closes), a timeout on reading a request's headers (an idle
//! or slow connection is closed rather than held until the process runs out of file
//! descriptors), and a shutdown that stops accepting, lets open requests end for a
//! grace period, then cuts the rest, so every row is written before the export.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;

use super::Shared;

/// The bounds on connections.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// The most connections open at once (each holds at most one request in flight).
    pub max_connections: usize,
    /// The longest a client may take to send a request's headers, idle connections
    /// included.
    pub header_timeout: Duration,
}

/// Serves until `stop` says how long to wait for open requests; returns once every
/// connection has ended or been cut.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: ConnLimits,
    mut stop: oneshot::Receiver<Duration>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing) = watch::channel(false);
    let mut conns = JoinSet::new();
    let grace = loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            g = &mut stop => break g.unwrap_or_default(),
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Duration::ZERO,
            },
        };
        let (tcp, peer) = tokio::select! {
            g = &mut stop => break g.unwrap_or_default(),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept:
                    // back off instead of spinning.
                    tracing::warn!("proxy accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let mut closing = closing.clone();
        let timeout = limits.header_timeout;
        conns.spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(super::forward(shared, peer, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = closing.wait_for(|c| *c) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    };
    drop(listener);
    let _ = closing_tx.send(true);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        // What is still open is cut: its rows say so (written as the tasks drop).
        shared.cutting.store(true, Ordering::SeqCst);
        conns.shutdown().await;
    }
}

/// Binds `addr`.
pub(super) async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the proxy to {addr}: {e}"))
}

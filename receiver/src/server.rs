//! Serving: HTTP/1.1 with a header-read timeout (slow clients cannot hold
//! connections open), at most `max_connections` connections at once (more
//! wait in the kernel's listen backlog until one closes), and graceful
//! shutdown that stops accepting, then lets in-flight requests finish
//! within the drain timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The most a connection buffers while reading (hyper's default is about
/// 400 KiB): a request head must fit (FusionAuth's, a signature token
/// included, take under 2 KiB), so a client that sends an endless head gets
/// 431 rather than making every connection slot hold 400 KiB before any
/// credential is seen. Memory for heads is at most `max_connections` times this.
pub const MAX_BUFFER_BYTES: usize = 32 * 1024;

/// Shutdown timing.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownConfig {
    /// After SIGTERM, keep serving (with `/readyz` failing) this long so load
    /// balancers stop sending first.
    pub delay: Duration,
    /// Then wait at most this long for in-flight requests.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    max_connections: usize,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .max_buf_size(MAX_BUFFER_BYTES)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all in-flight requests finished"),
        () = tokio::time::sleep(drain_timeout) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

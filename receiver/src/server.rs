//! Serving: HTTP/1.1 with a header-read timeout (a connection that has not
//! sent a request head within `headerTimeoutMs`, idle keep-alive ones
//! included, is closed), at most `maxConnections` connections at once, and
//! graceful shutdown that stops accepting, then lets in-flight requests
//! finish within the drain timeout.
//!
//! At the limit, a new connection is not left in the kernel's backlog
//! while idle ones hold every slot (530 silent connections used to shut
//! FusionAuth out): the connection idle the longest (no request in
//! service) is closed to make room, as nginx reuses keep-alive
//! connections. Only when every connection has a request in service does a
//! new one wait (briefly) or get closed. Both are logged and counted
//! (`fusionhook_receiver_connections_*`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use crate::metrics::ConnectionMetrics;

/// The most a connection buffers while reading (hyper's default is about
/// 400 KiB): a request head must fit (FusionAuth's, a signature token
/// included, take under 2 KiB), so a client that sends an endless head gets
/// 431 rather than making every connection slot hold 400 KiB before any
/// credential is seen. Memory for heads is at most `max_connections` times this.
pub const MAX_BUFFER_BYTES: usize = 32 * 1024;

/// How long a new connection waits for a slot when every connection has a
/// request in service (then it is closed: the client tries again).
const WAIT_FOR_SLOT: Duration = Duration::from_millis(500);
/// "Connection limit reached" is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Shutdown timing.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownConfig {
    /// After SIGTERM, keep serving (with `/readyz` failing) this long so load
    /// balancers stop sending first.
    pub delay: Duration,
    /// Then wait at most this long for in-flight requests.
    pub drain_timeout: Duration,
}

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for a request head to arrive, on a new or a kept-alive connection.
    pub header_timeout: Duration,
    /// After shutdown, in-flight requests get this long.
    pub drain_timeout: Duration,
}

/// A connection, as the limit sees it.
struct Connection {
    /// A request is in service.
    busy: AtomicBool,
    /// Since when it has had none (ms since the listener started).
    idle_since: AtomicU64,
    /// Closes it (when idle) to make room.
    close: Notify,
}

/// The open connections of one listener.
struct Connections {
    started: Instant,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next: AtomicU64,
}

impl Connections {
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn add(&self) -> (u64, Arc<Connection>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection =
            Arc::new(Connection { busy: AtomicBool::new(false), idle_since: AtomicU64::new(self.now()), close: Notify::new() });
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, connection.clone());
        (id, connection)
    }

    fn remove(&self, id: u64) {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }

    /// Asks the connection idle the longest to close; `false` when every
    /// one has a request in service.
    fn close_longest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let idle = open.values().filter(|c| !c.busy.load(Ordering::Acquire)).min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        match idle {
            Some(connection) => {
                connection.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks a connection busy for as long as a request is in service.
struct InService<'c>(&'c Connection, &'c Connections);

impl<'c> InService<'c> {
    fn begin(connection: &'c Connection, connections: &'c Connections) -> Self {
        connection.busy.store(true, Ordering::Release);
        Self(connection, connections)
    }
}

impl Drop for InService<'_> {
    fn drop(&mut self) {
        self.0.idle_since.store(self.1.now(), Ordering::Relaxed);
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, metrics: ConnectionMetrics, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = Arc::new(Connections { started: Instant::now(), open: Mutex::new(HashMap::new()), next: AtomicU64::new(0) });
    let mut logged: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let made_room = connections.close_longest_idle();
                metrics.limit_reached(made_room);
                if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    logged = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        closed_an_idle_one = made_room,
                        "connection limit reached: the connection idle the longest is closed to make room (fusionhook_receiver_connections_closed_idle_total); with every one busy a new one waits or is closed"
                    );
                }
                match tokio::time::timeout(WAIT_FOR_SLOT, slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        metrics.refused();
                        continue;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, connection) = connections.add();
        let tracked = {
            let (app, connection, connections) = (app.clone(), connection.clone(), connections.clone());
            tower::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (app, connection, connections) = (app.clone(), connection.clone(), connections.clone());
                async move {
                    let _in_service = InService::begin(&connection, &connections);
                    tower::ServiceExt::oneshot(app, request).await
                }
            })
        };
        let served = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(MAX_BUFFER_BYTES)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(tracked));
        let served = graceful.watch(served);
        let connections = connections.clone();
        let open = metrics.open();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            tokio::select! {
                result = served => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                // Closed to make room while idle (not in service): the
                // request head it may be waiting for has not arrived.
                () = connection.close.notified() => {}
            }
            connections.remove(id);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all in-flight requests finished"),
        () = tokio::time::sleep(limits.drain_timeout) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

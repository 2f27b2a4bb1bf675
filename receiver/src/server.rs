//! Serving: HTTP/1.1 with a header-read timeout (a connection that has not
//! sent a request head within `headerTimeoutMs`, idle keep-alive ones
//! included, is closed), at most `maxConnections` connections at once, and
//! graceful shutdown that stops accepting, then lets in-flight requests
//! finish within the drain timeout.
//!
//! At the limit, a new connection is not left in the kernel's backlog
//! while idle ones hold every slot (530 silent connections used to shut
//! FusionAuth out): the connection known idle the longest (no request in
//! service, and a read found nothing since its last one) is closed to make
//! room, as nginx reuses keep-alive connections. The close takes effect in
//! the connection's own read, only if that read finds nothing: a request
//! that arrived meanwhile is served, never dropped. A connection sending a
//! head is left to the header timeout. A new connection waits for the room
//! it made (up to 1.5 s, making room again every 100 ms; at most 64 wait,
//! more are closed at once), then is closed. Both are logged and counted
//! (`fusionhook_receiver_connections_*`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::ConnectionMetrics;

/// The most a connection buffers while reading (hyper's default is about
/// 400 KiB): a request head must fit (FusionAuth's, a signature token
/// included, take under 2 KiB), so a client that sends an endless head gets
/// 431 rather than making every connection slot hold 400 KiB before any
/// credential is seen. Memory for heads is at most `max_connections` times this.
pub const MAX_BUFFER_BYTES: usize = 32 * 1024;

/// How long a new connection waits for a slot (then it is closed: the
/// client tries again): within FusionAuth's default read timeout (2 s).
const WAIT_FOR_SLOT: Duration = Duration::from_millis(1500);
/// While it waits, room is made again this often (a connection accepted
/// but not read yet cannot be told idle, so an earlier try may have found none).
const MAKE_ROOM_EVERY: Duration = Duration::from_millis(100);
/// New connections that may wait for a slot at once (more are closed).
const MAX_WAITING: usize = 64;
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

/// Where a connection stands, as the limit sees it.
mod state {
    /// Not read since it was accepted or since its last request: its next
    /// request may already wait in the kernel's buffer.
    pub const UNKNOWN: u8 = 0;
    /// A read found nothing: known idle.
    pub const IDLE: u8 = 1;
    /// Bytes of its next request arrived (a head on its way).
    pub const READING: u8 = 2;
    /// A request is in service.
    pub const BUSY: u8 = 3;
    /// Chosen to make room: it ends at its next read that finds nothing.
    pub const CLOSING: u8 = 4;
}

/// A connection, as the limit sees it.
struct Connection {
    /// See [`state`].
    state: AtomicU8,
    /// Since when it has had no request in service (ms since the listener started).
    idle_since: AtomicU64,
    /// Wakes its task, so a connection chosen to make room reads (and ends) now.
    waker: futures::task::AtomicWaker,
}

/// The connection's stream. A close to make room takes effect here, and
/// only when a read finds nothing: a request that arrived meanwhile is read
/// and served (the close is called off), never dropped.
struct Noted<S> {
    inner: S,
    connection: Arc<Connection>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Noted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let connection = &self.connection;
        match &polled {
            std::task::Poll::Ready(Ok(())) if buf.filled().len() > before => {
                // A request (or more of one): not idle, and a close is off.
                let now = connection.state.load(Ordering::Acquire);
                if matches!(now, state::UNKNOWN | state::IDLE | state::CLOSING) {
                    let _ = connection.state.compare_exchange(now, state::READING, Ordering::AcqRel, Ordering::Acquire);
                }
            }
            std::task::Poll::Pending => {
                connection.waker.register(cx.waker());
                let _ = connection.state.compare_exchange(state::UNKNOWN, state::IDLE, Ordering::AcqRel, Ordering::Acquire);
                if connection.state.load(Ordering::Acquire) == state::CLOSING {
                    // Nothing was waiting: end of stream, and hyper closes it.
                    return std::task::Poll::Ready(Ok(()));
                }
            }
            _ => {}
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Noted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
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

    /// Registers a connection; it leaves the list when the guard drops.
    fn add(self: &Arc<Self>) -> (Registered, Arc<Connection>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            state: AtomicU8::new(state::UNKNOWN),
            idle_since: AtomicU64::new(self.now()),
            waker: futures::task::AtomicWaker::new(),
        });
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, connection.clone());
        (Registered(id, self.clone()), connection)
    }

    /// Chooses the connection known idle the longest to close and wakes it
    /// (it ends at its next read that finds nothing); `false` when none is
    /// known idle (in service, sending a head, or not read yet).
    fn close_longest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut idle: Vec<&Arc<Connection>> = open.values().filter(|c| c.state.load(Ordering::Acquire) == state::IDLE).collect();
        idle.sort_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        for connection in idle {
            if connection.state.compare_exchange(state::IDLE, state::CLOSING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                connection.waker.wake();
                return true;
            }
        }
        false
    }
}

/// A connection's place in the list, removed on drop (a panic included).
struct Registered(u64, Arc<Connections>);

impl Drop for Registered {
    fn drop(&mut self) {
        self.1.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.0);
    }
}

/// Marks a connection busy for as long as a request is in service.
struct InService<'c>(&'c Connection, &'c Connections);

impl<'c> InService<'c> {
    fn begin(connection: &'c Connection, connections: &'c Connections) -> Self {
        connection.state.store(state::BUSY, Ordering::Release);
        Self(connection, connections)
    }
}

impl Drop for InService<'_> {
    fn drop(&mut self) {
        self.0.idle_since.store(self.1.now(), Ordering::Relaxed);
        // Known idle only once a read finds nothing.
        self.0.state.store(state::UNKNOWN, Ordering::Release);
    }
}

/// What every connection of one listener shares.
#[derive(Clone)]
struct Listener {
    app: Router,
    limits: Limits,
    slots: Arc<Semaphore>,
    /// New connections waiting for a slot while every one is in service.
    waiting: Arc<Semaphore>,
    connections: Arc<Connections>,
    metrics: ConnectionMetrics,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, metrics: ConnectionMetrics, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let shared = Listener {
        app,
        limits,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        waiting: Arc::new(Semaphore::new(MAX_WAITING)),
        connections: Arc::new(Connections { started: Instant::now(), open: Mutex::new(HashMap::new()), next: AtomicU64::new(0) }),
        metrics,
    };
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
        let slot = shared.slots.clone().try_acquire_owned().ok();
        let mut waiter = None;
        if slot.is_none() {
            match at_limit(&shared, &mut logged) {
                Some(permit) => waiter = Some(permit),
                None => continue,
            }
        }
        let (shared, watcher) = (shared.clone(), graceful.watcher());
        // The accept loop never waits for a slot: a connection that must
        // wait does so in its own task.
        tokio::spawn(async move {
            let slot = match slot {
                Some(slot) => slot,
                None => match wait_for_slot(&shared).await {
                    Some(slot) => slot,
                    None => {
                        shared.metrics.refused();
                        return;
                    }
                },
            };
            drop(waiter);
            serve_connection(stream, slot, &shared, watcher).await;
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all in-flight requests finished"),
        () = tokio::time::sleep(limits.drain_timeout) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

/// No free slot: a connection that may wait (in the waiting line) makes
/// room by closing the connection idle the longest, and gets its place in
/// line; one past the waiting line is refused (`None`). Logged once per
/// [`LOG_EVERY`].
fn at_limit(shared: &Listener, logged: &mut Option<Instant>) -> Option<tokio::sync::OwnedSemaphorePermit> {
    // Only a connection that may wait makes room (a flood of connects past
    // the waiting line closes nobody).
    let Ok(permit) = shared.waiting.clone().try_acquire_owned() else {
        shared.metrics.refused();
        return None;
    };
    let made_room = shared.connections.close_longest_idle();
    if made_room {
        shared.metrics.closed_idle();
    }
    if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
        *logged = Some(Instant::now());
        tracing::warn!(
            max_connections = shared.limits.max_connections,
            closed_an_idle_one = made_room,
            "connection limit reached: the connection idle the longest is closed to make room (fusionhook_receiver_connections_closed_idle_total); with none idle a new one waits up to 1.5 s, then is closed"
        );
    }
    Some(permit)
}

/// A slot for a connection that found none free, making room while it
/// waits; `None` after [`WAIT_FOR_SLOT`].
async fn wait_for_slot(shared: &Listener) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let deadline = Instant::now() + WAIT_FOR_SLOT;
    loop {
        if let Ok(Ok(slot)) = tokio::time::timeout(MAKE_ROOM_EVERY, shared.slots.clone().acquire_owned()).await {
            return Some(slot);
        }
        if Instant::now() >= deadline {
            return None;
        }
        if shared.connections.close_longest_idle() {
            shared.metrics.closed_idle();
        }
    }
}

/// Serves one connection in its slot until it ends or is closed to make room.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    slot: tokio::sync::OwnedSemaphorePermit,
    shared: &Listener,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _slot = slot;
    let _open = shared.metrics.open();
    let _ = stream.set_nodelay(true);
    let connections = shared.connections.clone();
    let (_registered, connection) = connections.add();
    let tracked = {
        let (app, connection, connections) = (shared.app.clone(), connection.clone(), connections.clone());
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
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(MAX_BUFFER_BYTES)
        .serve_connection(TokioIo::new(Noted { inner: stream, connection }), TowerToHyperService::new(tracked));
    if let Err(e) = watcher.watch(served).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

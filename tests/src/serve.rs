//! Serving a router for tests so that stopping really stops: the accept loop
//! owns its connections, so aborting it also cuts keep-alive connections a
//! client may be pooling ("the service went down").

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serves `app` on `listener` until the returned task is aborted.
pub fn spawn(listener: TcpListener, app: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            connections.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
            while connections.try_join_next().is_some() {}
        }
    })
}

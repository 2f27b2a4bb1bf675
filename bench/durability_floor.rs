//! The durability floor of the durable-ack benchmark: the receiver's
//! serving stack with a handler that hands each request body to one writer
//! thread, which appends every body queued at that moment to one file and
//! calls `fdatasync` once for the batch before any of them is answered. No
//! parsing, no index, no dispatch: what durability alone costs on this disk.
//!
//! `cargo run --release -p fusionhook-receiver --example durability_floor -- 127.0.0.1:18404 DIR`

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::any;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

type Queue = mpsc::UnboundedSender<(Bytes, oneshot::Sender<()>)>;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18404".to_owned());
    let dir = std::env::args().nth(2).unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(std::path::Path::new(&dir).join("floor.log"))?;
    let (queue, mut rx) = mpsc::unbounded_channel::<(Bytes, oneshot::Sender<()>)>();
    std::thread::spawn(move || {
        let mut batch = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            for (body, _) in &batch {
                if file.write_all(body).is_err() {
                    return;
                }
            }
            if file.sync_data().is_err() {
                return;
            }
            for (_, done) in batch.drain(..) {
                let _ = done.send(());
            }
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let app = Router::new().fallback(any(append)).with_state(queue);
        println!("durability floor listening on {addr}");
        fusionhook_receiver::server::serve(
            listener,
            app,
            fusionhook_receiver::server::Limits {
                max_connections: fusionhook_receiver::config::DEFAULT_MAX_CONNECTIONS,
                header_timeout: Duration::from_secs(10),
                drain_timeout: Duration::from_secs(1),
            },
            fusionhook_receiver::metrics::Metrics::new().connections,
            fusionhook_receiver::process::termination(),
        )
        .await;
        Ok(())
    })
}

async fn append(State(queue): State<Queue>, body: Bytes) -> http::StatusCode {
    let (done, committed) = oneshot::channel();
    if queue.send((body, done)).is_err() {
        return http::StatusCode::INTERNAL_SERVER_ERROR;
    }
    match committed.await {
        Ok(()) => http::StatusCode::OK,
        Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
    }
}

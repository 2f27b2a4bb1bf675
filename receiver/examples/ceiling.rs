//! The benchmark's ceiling: the receiver's own serving stack (axum on the
//! same hyper/tokio server loop) with a handler that reads the body and
//! answers 200, nothing else. Also serves as the sink for `http` routes.
//!
//! `cargo run --release -p fusionhook-receiver --example ceiling -- 127.0.0.1:18401`

use std::time::Duration;

use axum::Router;
use axum::routing::any;
use bytes::Bytes;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18401".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let app = Router::new().fallback(any(|_body: Bytes| async { "" }));
        println!("ceiling listening on {addr}");
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

//! `fusionauth-emulator --listen 127.0.0.1:9011 --api-key KEY`
//!
//! A FusionAuth stand-in for tests and the sandbox: the Webhook, Tenant,
//! Key, JWKS and Webhook Event Log APIs, and `POST /emulator/events` to raise
//! an event (see `fusionhook_tests::fusionauth_emulator`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use fusionhook_tests::fusionauth_emulator::{Emulator, Settings};

/// Runs the FusionAuth emulator.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FUSIONAUTH_EMULATOR_LISTEN", default_value = "127.0.0.1:9011")]
    listen: SocketAddr,
    /// The global API key clients must send.
    #[arg(long, env = "FUSIONAUTH_EMULATOR_API_KEY")]
    api_key: String,
    /// Pause between delivery retries, ms (FusionAuth retries back-to-back).
    #[arg(long, env = "FUSIONAUTH_EMULATOR_RETRY_DELAY_MS", default_value_t = 0)]
    retry_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let emulator = Emulator::new(Settings { api_key: args.api_key, retry_delay: Duration::from_millis(args.retry_delay_ms) });
    let running = emulator.serve(args.listen).await?;
    println!("fusionauth-emulator listening on {}", running.url());
    tokio::signal::ctrl_c().await?;
    running.stop().await;
    Ok(())
}

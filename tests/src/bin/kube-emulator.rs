//! `kube-emulator --listen 127.0.0.1:6443 [--kubeconfig FILE]`
//!
//! A Kubernetes API server stand-in over plain HTTP (see
//! `fusionhook_tests::kube_emulator`). Point kubectl or helm at it with the
//! kubeconfig it writes.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use fusionhook_tests::kube_emulator::KubeEmulator;

/// Runs the Kubernetes API emulator.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "KUBE_EMULATOR_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at the emulator here.
    #[arg(long, env = "KUBE_EMULATOR_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let emulator = KubeEmulator::new();
    let running = emulator.serve(args.listen).await?;
    if let Some(path) = &args.kubeconfig {
        running.write_kubeconfig(path, "default")?;
        println!("kubeconfig written to {}", path.display());
    }
    println!("kube-emulator listening on {}", running.url());
    tokio::signal::ctrl_c().await?;
    running.stop().await;
    Ok(())
}

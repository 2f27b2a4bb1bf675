//! Starts a throwaway PostgreSQL cluster for the benchmarks (see
//! `fusionhook_tests::postgres`), prints its connection string and the
//! directory of the server's tools (pgbench), and keeps it until SIGTERM or
//! Ctrl-C, then stops and removes it.

use fusionhook_tests::postgres::Postgres;

fn main() -> std::io::Result<()> {
    let pg = Postgres::start();
    println!("{}", pg.url());
    println!("{}", pg.tools().display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<(), std::io::Error>(())
    })?;
    drop(pg);
    Ok(())
}

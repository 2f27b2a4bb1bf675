//! promtool, from Debian's `prometheus` package, installed by
//! `scripts/install-prometheus.sh` when missing: the chart's alert rules
//! are checked and unit-tested with it. A test that cannot get it fails and
//! says why; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::tools::workspace_root;

/// promtool's path, installed on first call. Panics with the installer's
/// output when it cannot be installed.
pub fn promtool() -> &'static Path {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL.get_or_init(|| {
        let script = workspace_root().join("scripts/install-prometheus.sh");
        let output = Command::new("bash").arg(&script).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed, so promtool is not available:\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

//! The chart installed into a real control plane ([`crate::control_plane`])
//! with the real `helm` 4, as the README installs it, and the operator run
//! as the chart's pod would run it: its args and environment from the
//! chart's Deployment, under the chart's ServiceAccount (a kubeconfig with
//! a token from the TokenRequest API), so every call it makes passes or
//! fails through real RBAC. The chart is installed with the operator's
//! replicas at 0: no node here runs container images. Used by the tests on
//! the real server, the operator benchmark and the sandbox.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::control_plane::{ControlPlane, tied};
use crate::tools::{tools, workspace_root};

/// `helm …` with the admin's kubeconfig and a private HOME; its stdout, or
/// its stderr as the error.
pub fn helm(plane: &ControlPlane, args: &[&str]) -> anyhow::Result<String> {
    let home = tempfile::tempdir()?;
    let output = Command::new(&tools().helm)
        .args(args)
        .current_dir(workspace_root())
        .env("KUBECONFIG", &plane.kubeconfig)
        .env("HOME", home.path())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `helm install <release> charts/fusionhook --namespace <namespace>` (the
/// namespace made first), the operator's replicas at 0, then waits for the
/// CRD to be established.
pub fn install(plane: &ControlPlane, release: &str, namespace: &str) -> anyhow::Result<()> {
    plane.kubectl(&["create", "namespace", namespace])?;
    helm(plane, &["install", release, "charts/fusionhook", "--namespace", namespace, "--set", "operator.replicas=0"])
        .context("helm install")?;
    plane.kubectl(&["wait", "--for=condition=Established", "crd/fusionauthwebhooks.fusionhook.dev", "--timeout=60s"])?;
    Ok(())
}

/// The operator process; killed on drop.
pub struct OperatorProcess {
    child: Child,
    /// Its log (JSON lines, as the chart configures it).
    pub log: PathBuf,
    /// Its identity in the Lease (`POD_NAME`: `<release>-operator-0` unless `env` names one).
    pub identity: String,
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OperatorProcess {
    /// Runs the operator with the args and environment of the chart's
    /// Deployment `release` in `namespace`, as its pod would, with
    /// `kubeconfig`: only the metrics address (a free loopback port), the
    /// backoff (2 s) and `env` differ. Tied to this process (it dies with it).
    pub fn start(
        plane: &ControlPlane,
        release: &str,
        namespace: &str,
        kubeconfig: &Path,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let deployment: Value = serde_json::from_str(&plane.kubectl(&["-n", namespace, "get", "deployment", release, "-o", "json"])?)?;
        let bin = crate::binaries::built("fusionhook-operator", "fusionhook-operator")?;
        let log = dir.join("operator.log");
        let mut command = tied(&bin, &log)?;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        for arg in container["args"].as_array().into_iter().flatten() {
            command.arg(arg.as_str().context("an arg that is not a string")?);
        }
        for var in container["env"].as_array().into_iter().flatten() {
            if let (Some(name), Some(value)) = (var["name"].as_str(), var["value"].as_str()) {
                command.env(name, value);
            }
        }
        let identity = env.iter().find(|(k, _)| *k == "POD_NAME").map_or_else(|| format!("{release}-operator-0"), |(_, v)| (*v).to_owned());
        command
            .env("POD_NAME", &identity)
            .env("POD_NAMESPACE", namespace)
            .env("FUSIONHOOK_METRICS_ADDR", "127.0.0.1:0")
            .env("FUSIONHOOK_MAX_BACKOFF", "2s")
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().copied());
        let child = crate::control_plane::spawn_tied(command).context("starting fusionhook-operator")?;
        Ok(Self { child, log, identity })
    }

    /// Stops it as Kubernetes stops a pod: SIGTERM, then up to `grace`
    /// for it to finish (SIGKILL after). Whether it ended within the grace.
    pub fn terminate(mut self, grace: std::time::Duration) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where its /metrics listens, once its log says so.
    pub fn metrics_addr(&self) -> Option<String> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("health and metrics listening"))?;
        serde_json::from_str::<Value>(line).ok()?["addr"].as_str().map(str::to_owned)
    }

    /// A metric of the operator (`/metrics`), summed over its series; 0 when unknown.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let Some(addr) = self.metrics_addr() else { return 0.0 };
        crate::stack::scrape(&addr, prefix).await
    }

    /// Peak resident memory (VmHWM) in MiB, from /proc; 0 when unknown.
    pub fn peak_rss_mib(&self) -> f64 {
        crate::stack::peak_rss_kib(self.child.id()) as f64 / 1024.0
    }
}

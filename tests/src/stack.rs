//! The whole fusionhook stack on loopback, for the end-to-end tests and
//! the sandbox: the Kubernetes API emulator, the FusionAuth emulator, the
//! stand-in kubelet running real receiver binaries, and real operator
//! processes (as many replicas as asked, with leader election).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::fusionauth_emulator::{Emulator, RunningEmulator, Settings};
use crate::kube_emulator::{KubeEmulator, PatchKind, RunningKube};
use crate::kubelet::Kubelet;

/// The namespace the operator runs in (its Lease lives there).
pub const OPERATOR_NAMESPACE: &str = "fusionhook-system";

/// A running operator process; killed on drop.
pub struct Operator {
    child: Child,
    /// Its identity in the Lease.
    pub identity: String,
    /// Where /metrics listens.
    pub metrics: SocketAddr,
    /// Its log lines (JSON).
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Operator {
    /// Kills the process (SIGKILL: no Lease release).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident memory (VmHWM) in KiB, from /proc; 0 when unknown.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.child.id())
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// The value of a Prometheus sample line starting with `prefix`, summed.
    pub async fn metric(&self, prefix: &str) -> f64 {
        scrape(&self.metrics.to_string(), prefix).await
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Everything, on loopback.
pub struct Stack {
    /// The Kubernetes API emulator.
    pub kube: KubeEmulator,
    /// Serving it.
    pub kube_running: RunningKube,
    /// The FusionAuth emulator.
    pub fusionauth: Emulator,
    /// Serving it.
    pub fusionauth_running: Option<RunningEmulator>,
    /// Where FusionAuth listens (stable across restarts).
    pub fusionauth_addr: SocketAddr,
    /// The stand-in kubelet.
    pub kubelet: Kubelet,
    kubelet_task: tokio::task::JoinHandle<()>,
    /// The kubeconfig for kubectl, helm and the operator.
    pub kubeconfig: PathBuf,
    /// The operator processes started so far.
    pub operators: Vec<Operator>,
    operator_bin: PathBuf,
    /// The FusionAuth API key in the stack.
    pub api_key: String,
    dir: tempfile::TempDir,
}

impl Stack {
    /// Starts both emulators and the kubelet; installs the CRD and the
    /// operator's namespace. Operators are started with [`Stack::start_operator`].
    pub async fn start(api_key: &str) -> anyhow::Result<Self> {
        let operator_bin = crate::binaries::built("fusionhook-operator", "fusionhook-operator")?;
        let receiver_bin = crate::binaries::built("fusionhook-receiver", "fusionhook-receiver")?;
        let kube = KubeEmulator::new();
        let kube_running = kube.serve("127.0.0.1:0".parse()?).await?;
        let fusionauth = Emulator::new(Settings { api_key: api_key.to_owned(), retry_delay: Duration::ZERO });
        let fusionauth_running = fusionauth.serve("127.0.0.1:0".parse()?).await?;
        let fusionauth_addr = fusionauth_running.addr;
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        kube_running.write_kubeconfig(&kubeconfig, "default")?;
        let kubelet = Kubelet::new(kube.clone(), fusionauth.clone(), receiver_bin);
        let kubelet_task = kubelet.spawn();
        let stack = Self {
            kube,
            kube_running,
            fusionauth,
            fusionauth_running: Some(fusionauth_running),
            fusionauth_addr,
            kubelet,
            kubelet_task,
            kubeconfig,
            operators: Vec::new(),
            operator_bin,
            api_key: api_key.to_owned(),
            dir,
        };
        let crd: Value =
            serde_yaml::from_str(&std::fs::read_to_string(crate::tools::workspace_root().join("crds/fusionauthwebhooks.yaml"))?)?;
        stack.create("apiextensions.k8s.io", "v1", "customresourcedefinitions", "", crd)?;
        stack.create("", "v1", "namespaces", "", json!({"metadata": {"name": OPERATOR_NAMESPACE}}))?;
        Ok(stack)
    }

    /// FusionAuth's base URL.
    pub fn fusionauth_url(&self) -> String {
        format!("http://{}", self.fusionauth_addr)
    }

    /// Creates an object (as `kubectl create` would).
    pub fn create(&self, group: &str, version: &str, resource: &str, namespace: &str, object: Value) -> anyhow::Result<Value> {
        let mut store = self.kube.store();
        let t = store.find(group, version, resource).cloned().with_context(|| format!("no type {group}/{version}/{resource}"))?;
        store.create(&t, namespace, object, "e2e").map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    /// Merge-patches an object (as `kubectl patch --type=merge` would).
    pub fn patch(&self, group: &str, version: &str, resource: &str, namespace: &str, name: &str, patch: &Value) -> anyhow::Result<Value> {
        let mut store = self.kube.store();
        let t = store.find(group, version, resource).cloned().with_context(|| format!("no type {resource}"))?;
        store.patch(&t, namespace, name, PatchKind::Merge, patch, false, "e2e", false).map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    /// Deletes an object (as `kubectl delete --wait=false` would).
    pub fn delete(&self, group: &str, version: &str, resource: &str, namespace: &str, name: &str) -> anyhow::Result<()> {
        let mut store = self.kube.store();
        let t = store.find(group, version, resource).cloned().with_context(|| format!("no type {resource}"))?;
        store.delete(&t, namespace, name).map(|_| ()).map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    /// Creates a namespace with a Secret holding the FusionAuth API key (`fusionauth-api-key`/`api-key`).
    pub fn namespace_with_api_key(&self, namespace: &str) -> anyhow::Result<()> {
        self.create("", "v1", "namespaces", "", json!({"metadata": {"name": namespace}}))?;
        self.create(
            "",
            "v1",
            "secrets",
            namespace,
            json!({"metadata": {"name": "fusionauth-api-key"}, "stringData": {"api-key": self.api_key}}),
        )?;
        Ok(())
    }

    /// Starts an operator replica with leader election and a short resync.
    pub fn start_operator(&mut self, identity: &str, requeue: &str) -> anyhow::Result<usize> {
        self.start_operator_with_env(identity, requeue, &[])
    }

    /// As [`Stack::start_operator`], with these environment variables.
    pub fn start_operator_with_env(&mut self, identity: &str, requeue: &str, env: &[(&str, String)]) -> anyhow::Result<usize> {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&self.operator_bin)
            .args(["run", "--metrics-addr", "127.0.0.1:0", "--identity", identity, "--lease-namespace", OPERATOR_NAMESPACE])
            .args(["--requeue-interval", requeue, "--lease-duration", "3s", "--lease-renew", "1s", "--max-backoff", "2s"])
            .args(["--receiver-image", "fusionhook:e2e", "--fusionauth-timeout", "2s", "--log-format", "json"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("FUSIONHOOK_LOG", "info")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")).map(|(k, _)| (k, String::new())))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Tied to this process: it dies with it, whatever ends it.
        let mut child = crate::control_plane::spawn_tied(command).context("starting fusionhook-operator")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let sink = Arc::clone(&logs);
        let mut file = std::fs::File::create(self.dir.path().join(format!("operator-{identity}.log"))).ok();
        let rx = crate::logs::announced(stdout, "fusionhook-operator health and metrics listening", "addr", move |line| {
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line.to_owned());
        });
        let metrics = rx.recv_timeout(Duration::from_secs(20)).context("the operator did not start")?.parse()?;
        self.operators.push(Operator { child, identity: identity.to_owned(), metrics, logs });
        Ok(self.operators.len() - 1)
    }

    /// Stops FusionAuth (connections refused until [`Stack::restart_fusionauth`]).
    pub async fn stop_fusionauth(&mut self) {
        if let Some(running) = self.fusionauth_running.take() {
            running.stop().await;
        }
    }

    /// Starts FusionAuth again on the same address, with its state.
    pub async fn restart_fusionauth(&mut self) -> anyhow::Result<()> {
        self.fusionauth_running = Some(self.fusionauth.serve(self.fusionauth_addr).await?);
        Ok(())
    }

    /// The resource's condition `kind`: (status, reason).
    pub fn condition(&self, namespace: &str, name: &str, kind: &str) -> Option<(String, String)> {
        let r = self.kube.get("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", namespace, name)?;
        let c = r["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)?.clone();
        Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned()))
    }

    /// The holder of the operator's Lease.
    pub fn lease_holder(&self) -> Option<String> {
        let lease = self.kube.get("coordination.k8s.io", "v1", "leases", OPERATOR_NAMESPACE, "fusionhook-operator")?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kubelet_task.abort();
        self.operators.clear();
        if let Ok(mut pods) = self.kubelet.pods.lock() {
            *pods = Default::default();
        }
    }
}

/// The samples at `http://<addr>/metrics` whose line starts with `prefix`,
/// summed; 0 when nothing answers.
pub async fn scrape(addr: &str, prefix: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{addr}/metrics")).await else { return 0.0 };
    let text = response.text().await.unwrap_or_default();
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())).sum()
}

/// Peak resident memory (VmHWM) of process `pid` in KiB, from /proc; 0 when unknown.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// Polls `check` every 50 ms until it is true or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

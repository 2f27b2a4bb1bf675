//! A stand-in kubelet (plus the bits of the Deployment and StatefulSet
//! controllers and kube-proxy the end-to-end runs need), for the Kubernetes
//! API emulator: for each Deployment or StatefulSet the operator creates
//! (one process each, whatever the replicas) it runs the receiver binary
//! with the rendered config and the Secrets projected as files, reports the
//! Deployment's status, keeps the files in step with the Secrets (as the
//! kubelet refreshes projected volumes), restarts a receiver that died,
//! rolls a new process out before stopping the old one when the pod
//! template changes, and points the Service's DNS name at the running
//! process through the FusionAuth emulator's host overrides, and registers
//! the pod (labels, named ports) for the API server's proxy. A StatefulSet's
//! pod gets a directory of its own as its volume claim (`store-<name>-0`),
//! which outlives the process, a restart and the StatefulSet itself (as a
//! retained claim does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::fusionauth_emulator::Emulator;
use crate::kube_emulator::{Endpoint, KubeEmulator};

/// Paths inside the pod that the operator's Deployment mounts.
const POD_CONFIG_DIR: &str = "/etc/fusionhook/config";
const POD_SECRETS_DIR: &str = "/etc/fusionhook/secrets";
/// Where a StatefulSet's pod mounts its volume claim.
const POD_STORE_DIR: &str = "/var/lib/fusionhook";

/// How long a replaced receiver process keeps running (FusionAuth's read
/// timeout is 2 s by default, so an accepted delivery finishes within it).
const TERMINATION_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

struct Pod {
    child: Child,
    addr: SocketAddr,
    template: String,
    dir: tempfile::TempDir,
    restarts: u32,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the kubelet runs, for tests to look at (and to kill), by
/// namespace and pod name ([`pod_name`]: a Deployment and a StatefulSet of
/// one name, as while an old store drains, have pods of their own).
#[derive(Default)]
pub struct Pods {
    pods: BTreeMap<(String, String), Pod>,
}

impl Pods {
    /// The pod of workload `name`: the Deployment's, else the StatefulSet's.
    fn find(&self, namespace: &str, name: &str) -> Option<&Pod> {
        ["deployments", "statefulsets"].iter().find_map(|r| self.pods.get(&(namespace.to_owned(), pod_name(r, name))))
    }

    /// The address of the receiver of workload `name` in `namespace`.
    pub fn address(&self, namespace: &str, name: &str) -> Option<SocketAddr> {
        self.find(namespace, name).map(|p| p.addr)
    }

    /// Whether pod `pod` (see [`pod_name`]) runs.
    pub fn running(&self, namespace: &str, pod: &str) -> bool {
        self.pods.contains_key(&(namespace.to_owned(), pod.to_owned()))
    }

    /// Kills the receiver process of workload `name` (the kubelet restarts it).
    pub fn kill(&mut self, namespace: &str, name: &str) -> bool {
        let key = ["deployments", "statefulsets"]
            .iter()
            .map(|r| (namespace.to_owned(), pod_name(r, name)))
            .find(|key| self.pods.contains_key(key));
        key.and_then(|key| self.pods.get_mut(&key)).is_some_and(|p| p.child.kill().is_ok())
    }

    /// How often the receiver of workload `name` was restarted after dying.
    pub fn restarts(&self, namespace: &str, name: &str) -> u32 {
        self.find(namespace, name).map_or(0, |p| p.restarts)
    }

    /// Number of running receivers.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

/// The stand-in kubelet.
#[derive(Clone)]
pub struct Kubelet {
    kube: KubeEmulator,
    fusionauth: Emulator,
    receiver: PathBuf,
    /// The running receivers.
    pub pods: Arc<Mutex<Pods>>,
    simulated: Arc<Mutex<Vec<String>>>,
    /// The volume claims of StatefulSet pods: `<namespace>/<claim>`.
    volumes: Arc<tempfile::TempDir>,
    /// How many pods of a workload run at most ([`Kubelet::run_up_to`]).
    max_replicas: Arc<std::sync::atomic::AtomicUsize>,
    /// Namespaces where nothing runs ([`Kubelet::stop_namespace`]).
    stopped: Arc<Mutex<Vec<String>>>,
}

fn secret_data(kube: &KubeEmulator, namespace: &str, name: &str, key: &str) -> Option<Vec<u8>> {
    let secret = kube.get("", "v1", "secrets", namespace, name)?;
    base64::engine::general_purpose::STANDARD.decode(secret["data"][key].as_str()?).ok()
}

impl Kubelet {
    /// A kubelet running `receiver` binaries, resolving Service names in `fusionauth`.
    pub fn new(kube: KubeEmulator, fusionauth: Emulator, receiver: PathBuf) -> Self {
        let volumes = Arc::new(tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory for volumes: {e}")));
        let max_replicas = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        Self { kube, fusionauth, receiver, pods: Arc::default(), simulated: Arc::default(), volumes, max_replicas, stopped: Arc::default() }
    }

    /// In `namespace`, report Deployments available without running
    /// anything (for scale tests; nothing there can receive deliveries).
    pub fn simulate(&self, namespace: &str) {
        self.simulated.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(namespace.to_owned());
    }

    /// Stops every receiver in `namespace` and starts none there (all its
    /// nodes are gone) until [`Kubelet::start_namespace`]: FusionAuth's
    /// deliveries find nothing listening.
    pub fn stop_namespace(&self, namespace: &str) {
        self.stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(namespace.to_owned());
        self.sync();
    }

    /// Runs the receivers of `namespace` again.
    pub fn start_namespace(&self, namespace: &str) {
        self.stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|n| n != namespace);
    }

    /// Syncs every 100 ms until the returned task is aborted.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let kubelet = me.clone();
                let _ = tokio::task::spawn_blocking(move || kubelet.sync()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Pods> {
        self.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The directory of the volume claim `store-<name>-0` of StatefulSet
    /// `name` in `namespace` (it survives the pod and the StatefulSet).
    pub fn claim_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.claim_dir_at(namespace, name, 0)
    }

    fn claim_dir_at(&self, namespace: &str, name: &str, ordinal: i64) -> PathBuf {
        self.volumes.path().join(namespace).join(format!("store-{name}-{ordinal}"))
    }

    /// Runs up to `n` pods of each workload (1 by default: one process
    /// stands for every replica, which most tests need and the machine
    /// affords).
    pub fn run_up_to(&self, n: usize) {
        self.max_replicas.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// One pass over every Deployment and StatefulSet the operator manages.
    pub fn sync(&self) {
        let mut wanted = Vec::new();
        for resource in ["deployments", "statefulsets"] {
            let workloads: Vec<Value> = self
                .kube
                .list("apps", "v1", resource, None)
                .into_iter()
                .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "fusionhook-operator")
                .collect();
            for d in &workloads {
                let ns = d["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
                let name = d["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                wanted.extend(self.sync_one(resource, &ns, &name, d));
            }
        }
        let gone: Vec<(String, String)> = self.locked().pods.keys().filter(|key| !wanted.contains(key)).cloned().collect();
        for (ns, pod) in gone {
            self.locked().pods.remove(&(ns.clone(), pod.clone()));
            self.kube.remove_endpoint(&ns, &pod);
        }
        self.resolve_services();
    }

    /// Points each Service's DNS name at a pod its selector picks (as
    /// kube-proxy routes a Service's port `http`).
    fn resolve_services(&self) {
        let services = self.kube.list("", "v1", "services", None);
        for service in services.iter().filter(|s| s["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "fusionhook-operator") {
            let ns = service["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = service["metadata"]["name"].as_str().unwrap_or_default();
            let addresses = self.kube.service_addresses(ns, name, "http");
            if !addresses.is_empty() {
                self.fusionauth.resolve_all(&format!("{name}.{ns}.svc"), addresses);
            }
        }
    }

    /// Syncs the pods of one workload; returns their keys.
    fn sync_one(&self, resource: &str, ns: &str, name: &str, workload: &Value) -> Vec<(String, String)> {
        let replicas = workload["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let template = workload["spec"]["template"].to_string();
        let simulated = self.simulated.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|n| n == ns);
        if simulated {
            let status = json!({"observedGeneration": workload["metadata"]["generation"], "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas});
            if workload["status"] != status {
                let _ = self.kube.set_status("apps", "v1", resource, ns, name, status);
            }
            return Vec::new();
        }
        let stopped = self.stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|n| n == ns);
        let running = if stopped { 0 } else { replicas.min(self.max_replicas.load(std::sync::atomic::Ordering::Relaxed) as i64) };
        let keys: Vec<(String, String)> = (0..running).map(|i| (ns.to_owned(), pod_name_at(resource, name, i))).collect();
        for (ordinal, key) in keys.iter().enumerate() {
            self.sync_pod(resource, ns, name, ordinal as i64, key, workload, &template);
        }
        let templates: Vec<Option<String>> = keys.iter().map(|key| self.locked().pods.get(key).map(|p| p.template.clone())).collect();
        // Ready as its readiness probe says (`/readyz`: the store commits).
        let labels = &workload["spec"]["template"]["metadata"]["labels"];
        let mut up = 0;
        for key in &keys {
            let Some((addr, restarts, template)) = self.locked().pods.get(key).map(|p| (p.addr, p.restarts, p.template.clone())) else {
                continue;
            };
            let ready = probe(addr);
            let volumes = serde_json::from_str::<Value>(&template).map(|t| t["spec"]["volumes"].clone()).unwrap_or_default();
            self.kube.report_pod(ns, &key.1, labels, &volumes, ready, restarts);
            up += i64::from(ready);
        }
        // The pods it runs stand for all replicas once they all run.
        let available = if running > 0 && up == running { replicas } else { up };
        let current = templates.iter().filter(|t| t.as_deref() == Some(template.as_str())).count() as i64;
        let updated = if current == running { replicas } else { current };
        let mut status = json!({
            "observedGeneration": workload["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
        });
        if resource == "statefulsets" {
            // The StatefulSet controller's revisions: the template the pods
            // run, and the one they should.
            let revision = |template: &str| {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                template.hash(&mut hasher);
                format!("{name}-{:010x}", hasher.finish() & 0xff_ffff_ffff)
            };
            let current = templates.first().cloned().flatten().unwrap_or_default();
            status["currentRevision"] = json!(revision(&current));
            status["updateRevision"] = json!(revision(&template));
        }
        if workload["status"] != status {
            let _ = self.kube.set_status("apps", "v1", resource, ns, name, status);
        }
        keys
    }

    /// Starts, restarts, replaces or refreshes pod `ordinal` of a workload.
    #[allow(clippy::too_many_arguments)]
    fn sync_pod(&self, resource: &str, ns: &str, name: &str, ordinal: i64, key: &(String, String), workload: &Value, template: &str) {
        let current = {
            let mut pods = self.locked();
            match pods.pods.get_mut(key) {
                Some(pod) if pod.template == template => {
                    let dead = pod.child.try_wait().ok().flatten().is_some();
                    if dead { Some(pod.restarts + 1) } else { None }
                }
                Some(pod) => Some(pod.restarts),
                None => Some(0),
            }
        };
        let Some(restarts) = current else {
            // Running: keep the projected Secret files fresh.
            if let Some(pod) = self.locked().pods.get(key) {
                let _ = self.project(resource, ns, name, ordinal, workload, pod.dir.path());
            }
            return;
        };
        match self.replace(resource, ns, name, ordinal, key, workload) {
            Ok(Started { child, addr, admin, dir }) => {
                // The new process is up: it becomes the pod's endpoint
                // (the Service's, if it selects it), then the old one stops.
                self.kube.set_endpoint(endpoint(resource, ns, name, ordinal, workload, addr, admin));
                let pod = Pod { child, addr, template: template.to_owned(), dir, restarts };
                let old = self.locked().pods.insert(key.clone(), pod);
                self.resolve_services();
                if let Some(old) = old {
                    // As a kubelet's termination grace: deliveries the old
                    // process already accepted finish before it is stopped.
                    std::thread::spawn(move || {
                        std::thread::sleep(TERMINATION_GRACE);
                        drop(old);
                    });
                }
            }
            Err(e) => {
                tracing::warn!(namespace = ns, name, error = %e, "stand-in kubelet cannot start the receiver");
                self.locked().pods.remove(key);
                self.kube.remove_endpoint(ns, &key.1);
            }
        }
    }

    /// Writes the ConfigMap and the projected Secrets of the pod template
    /// under `dir` (the pod's `/etc/fusionhook`).
    fn project(&self, resource: &str, ns: &str, name: &str, ordinal: i64, deployment: &Value, dir: &Path) -> anyhow::Result<()> {
        let store = self.claim_dir_at(ns, name, ordinal);
        if resource == "statefulsets" {
            std::fs::create_dir_all(&store)?;
        }
        let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().cloned().unwrap_or_default();
        std::fs::create_dir_all(dir.join("config"))?;
        std::fs::create_dir_all(dir.join("secrets"))?;
        for volume in &volumes {
            if let Some(cm) = volume["configMap"]["name"].as_str() {
                let config = self.kube.get("", "v1", "configmaps", ns, cm).ok_or_else(|| anyhow::anyhow!("ConfigMap {cm} missing"))?;
                for (file, text) in config["data"].as_object().into_iter().flatten() {
                    let text = text.as_str().unwrap_or_default();
                    let rewritten = text
                        .replace(POD_CONFIG_DIR, &dir.join("config").display().to_string())
                        .replace(POD_SECRETS_DIR, &dir.join("secrets").display().to_string())
                        .replace(POD_STORE_DIR, &store.display().to_string())
                        .replace("0.0.0.0:8080", "127.0.0.1:0")
                        .replace("0.0.0.0:8081", "127.0.0.1:0")
                        .replace("delayMs: 5000", "delayMs: 0");
                    write_if_changed(&dir.join("config").join(file), rewritten.as_bytes())?;
                }
            }
            for source in volume["projected"]["sources"].as_array().into_iter().flatten() {
                let secret = source["secret"]["name"].as_str().unwrap_or_default();
                for item in source["secret"]["items"].as_array().into_iter().flatten() {
                    let key = item["key"].as_str().unwrap_or_default();
                    let path = item["path"].as_str().unwrap_or_default();
                    let data =
                        secret_data(&self.kube, ns, secret, key).ok_or_else(|| anyhow::anyhow!("Secret {secret} key {key} missing"))?;
                    write_if_changed(&dir.join("secrets").join(path), &data)?;
                }
            }
        }
        Ok(())
    }

    /// Starts the pod's successor. A StatefulSet's pod goes first: they
    /// share the volume claim (the store file's lock); a Deployment's new
    /// pod starts while the old one still serves.
    fn replace(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        ordinal: i64,
        key: &(String, String),
        workload: &Value,
    ) -> anyhow::Result<Started> {
        if resource == "statefulsets" {
            let old = self.locked().pods.remove(key);
            drop(old);
        }
        self.start(resource, ns, name, ordinal, workload)
    }

    fn start(&self, resource: &str, ns: &str, name: &str, ordinal: i64, deployment: &Value) -> anyhow::Result<Started> {
        let dir = tempfile::tempdir()?;
        self.project(resource, ns, name, ordinal, deployment, dir.path())?;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<String> = container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|a| a.replace(POD_CONFIG_DIR, &dir.path().join("config").display().to_string()))
            .collect();
        // As the pod's env (the downward API): its name, which the admin API binds its proofs to.
        // Tied to this process: a stopped process's grace runs in a thread
        // that may not outlive the test, and the process must not either.
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&self.receiver)
            .args(&args)
            .env("FUSIONHOOK_POD_NAME", pod_name_at(resource, name, ordinal))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = crate::control_plane::spawn_tied(command)?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (admin_tx, admin_rx) = std::sync::mpsc::channel();
        let rx = crate::logs::announced(stdout, "fusionhook-receiver listening", "address", move |line| {
            if let Ok(v) = serde_json::from_str::<Value>(line)
                && v["message"] == "admin API listening"
            {
                let _ = admin_tx.send(v["address"].as_str().unwrap_or_default().to_owned());
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => {
                // The admin listener is announced right after the main one.
                let has_admin = config_has_admin(&dir);
                let admin = if has_admin { admin_rx.recv_timeout(Duration::from_secs(5)).ok().and_then(|a| a.parse().ok()) } else { None };
                Ok(Started { child, addr: addr.parse()?, admin, dir })
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the receiver did not start (config rejected?)")
            }
        }
    }
}

/// The readiness probe: `GET /readyz` answers 200.
fn probe(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// A receiver process just started.
struct Started {
    child: Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    dir: tempfile::TempDir,
}

/// Whether the projected config asks for an admin API.
fn config_has_admin(dir: &tempfile::TempDir) -> bool {
    std::fs::read_dir(dir.path().join("config"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|f| std::fs::read_to_string(f.path()).is_ok_and(|text| text.lines().any(|l| l.starts_with("admin:"))))
}

/// The name of a workload's first pod.
pub fn pod_name(resource: &str, workload: &str) -> String {
    pod_name_at(resource, workload, 0)
}

/// The name of pod `ordinal`: a StatefulSet's `<name>-<ordinal>`, a
/// Deployment's `<name>-pod-<ordinal>` (a real one has a hash and a suffix).
pub fn pod_name_at(resource: &str, workload: &str, ordinal: i64) -> String {
    if resource == "statefulsets" { format!("{workload}-{ordinal}") } else { format!("{workload}-pod-{ordinal}") }
}

/// The pod as the API server's proxy reaches it: its template's labels,
/// and its container's named ports where the process listens.
fn endpoint(resource: &str, ns: &str, name: &str, ordinal: i64, workload: &Value, addr: SocketAddr, admin: Option<SocketAddr>) -> Endpoint {
    let labels = workload["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let ports = workload["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            let number = u16::try_from(p["containerPort"].as_u64()?).ok()?;
            let listening = if name == "admin" { admin? } else { addr };
            Some((name, number, listening))
        })
        .collect();
    Endpoint { namespace: ns.to_owned(), pod: pod_name_at(resource, name, ordinal), labels, ports }
}

fn write_if_changed(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(data) {
        return Ok(());
    }
    // Atomic, like the kubelet's symlink swap of a projected volume.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

//! A stand-in node for the real control plane ([`crate::control_plane`]),
//! a client of the API server as a kubelet is: it registers a `Node`, binds
//! the pods of its namespace that no scheduler placed (none runs here),
//! runs each pod's receiver process in a network namespace of its own with
//! a real pod IP ([`crate::netns`]), projects its ConfigMap, Secrets and
//! volume claims as files (kept in step, as a kubelet refreshes projected
//! volumes), reports the pod's status (`podIP`, `Ready` from the container's
//! readiness probe, restarts), restarts a process that died, and honours
//! deletion (SIGTERM, the grace period, then the pod is removed). The
//! Deployment, ReplicaSet, StatefulSet and EndpointSlice controllers are
//! kube-controller-manager's own.
//!
//! No kube-proxy runs: a Service is reached through its EndpointSlices, as
//! a resolver of the FusionAuth emulator ([`Node::resolve_for`]) keeps
//! `NAME.NAMESPACE.svc` pointing at the ready endpoints of port `http`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node as NodeObject, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::control_plane::spawn_tied;
use crate::fusionauth_emulator::Emulator;
use crate::netns::{Network, PodNetwork};

/// The longest a stopping pod is given (its `terminationGracePeriodSeconds`
/// otherwise): the tests need not wait 30 s.
const MAX_GRACE: Duration = Duration::from_secs(10);

/// A running node; its pods, processes and network go on drop.
pub struct Node {
    /// The Node object's name.
    pub name: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    client: Client,
    namespace: String,
    name: String,
    receiver: PathBuf,
    dir: PathBuf,
    network: Network,
    pods: Mutex<BTreeMap<String, Running>>,
    /// Pods whose termination runs (in a task of its own).
    terminating: Mutex<std::collections::BTreeSet<String>>,
    fusionauth: Mutex<Option<Emulator>>,
    /// Pods reported running and ready without a process (see
    /// [`Node::start_simulated`]): their IP and the status last written.
    simulated: Option<Mutex<BTreeMap<String, (String, Value)>>>,
    /// Every process stopped and kept stopped ([`Node::pause`]).
    paused: std::sync::atomic::AtomicBool,
}

/// A pod's process.
struct Running {
    uid: String,
    child: Child,
    network: PodNetwork,
    /// Its files: volumes and the log.
    dir: PathBuf,
    started_at: String,
    started: Instant,
    restarts: i32,
    /// The last status written, to write only changes.
    reported: Value,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

impl Node {
    /// Registers Node `name` and serves the pods of `namespace` with the
    /// receiver binary `receiver`; files under `dir`.
    pub async fn start(client: Client, namespace: &str, receiver: PathBuf, dir: &Path) -> anyhow::Result<Self> {
        Self::begin(client, namespace, receiver, dir, false).await
    }

    /// A node that reports every pod of `namespace` running and ready
    /// without starting anything (each gets an address no one listens on):
    /// the operator at scale measures the operator and the API server, not
    /// hundreds of receivers on two cores.
    pub async fn start_simulated(client: Client, namespace: &str, dir: &Path) -> anyhow::Result<Self> {
        Self::begin(client, namespace, PathBuf::new(), dir, true).await
    }

    async fn begin(client: Client, namespace: &str, receiver: PathBuf, dir: &Path, simulated: bool) -> anyhow::Result<Self> {
        let network = Network::create().context("the stand-in node's pod network (needs root and iproute2)")?;
        let name = format!("node-{namespace}");
        register(&client, &name, network.host_ip()).await?;
        let shared = Arc::new(Shared {
            client,
            namespace: namespace.to_owned(),
            name: name.clone(),
            receiver,
            dir: dir.to_owned(),
            network,
            pods: Mutex::new(BTreeMap::new()),
            terminating: Mutex::new(std::collections::BTreeSet::new()),
            fusionauth: Mutex::new(None),
            simulated: simulated.then(|| Mutex::new(BTreeMap::new())),
            paused: std::sync::atomic::AtomicBool::new(false),
        });
        let worker = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = worker.pass().await {
                    eprintln!("stand-in node ({}): {e:#}", worker.namespace);
                }
                // Simulated pods need no prompt restarts; listing thousands of
                // them four times a second would load what is measured.
                let pause = if worker.simulated.is_some() { 1000 } else { 250 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        });
        Ok(Self { name, shared, task })
    }

    /// The node's address on the pod network: a server the pods must reach
    /// listens here.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.shared.network.host_ip()
    }

    /// Makes `fusionauth` reach this namespace's Services through their
    /// EndpointSlices (`NAME.NAMESPACE.svc`, port `http`).
    pub fn resolve_for(&self, fusionauth: &Emulator) {
        *self.shared.fusionauth.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fusionauth.clone());
    }

    /// Stops every receiver process and keeps them stopped (their pods stay,
    /// not ready): every receiver is down, as in a node outage.
    pub fn pause(&self) {
        self.shared.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets the processes run again.
    pub fn resume(&self) {
        self.shared.paused.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Kills pod `pod`'s process (SIGKILL, as the OOM killer would); the
    /// node starts it again after its back-off, as a kubelet does. Whether
    /// it ran here.
    pub fn kill(&self, pod: &str) -> bool {
        self.shared.locked().get_mut(pod).is_some_and(|r| r.child.kill().is_ok())
    }

    /// The IP of pod `pod`, while it runs here.
    pub fn pod_ip(&self, pod: &str) -> Option<Ipv4Addr> {
        self.shared.locked().get(pod).map(|r| r.network.ip)
    }

    /// The names of the pods running here.
    pub fn running(&self) -> Vec<String> {
        self.shared.locked().keys().cloned().collect()
    }

    /// The log of pod `pod`'s process.
    pub fn log(&self, pod: &str) -> String {
        let dir = self.shared.locked().get(pod).map(|r| r.dir.clone());
        dir.and_then(|d| std::fs::read_to_string(d.join("log")).ok()).unwrap_or_default()
    }
}

/// The Node object, Ready, with the bridge's address.
async fn register(client: &Client, name: &str, address: Ipv4Addr) -> anyhow::Result<()> {
    let nodes: Api<NodeObject> = Api::all(client.clone());
    let node: NodeObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "fusionhook.test/stand-in": "true"}},
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": address.to_string()}, {"type": "Hostname", "address": name}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "stand-in node", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"}, "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

impl Shared {
    fn locked(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// One look at every pod of the namespace, then at the Services.
    async fn pass(self: &Arc<Self>) -> anyhow::Result<()> {
        let pods = self.pods().list(&ListParams::default()).await?.items;
        // One pod's trouble is that pod's: the others are still served.
        for pod in &pods {
            let spec = pod.spec.clone().unwrap_or_default();
            let ours = spec.node_name.as_deref() == Some(self.name.as_str());
            let done = if pod.metadata.deletion_timestamp.is_some() {
                if ours || spec.node_name.is_none() {
                    self.terminate_in_background(pod);
                }
                Ok(())
            } else if spec.node_name.is_none() {
                self.bind(&pod.name_any()).await
            } else if ours {
                self.run(pod).await
            } else {
                Ok(())
            };
            if let Err(e) = done {
                eprintln!("stand-in node: pod {}: {e:#}", pod.name_any());
            }
        }
        let listed: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
        self.locked().retain(|name, _| listed.contains(name));
        if let Some(simulated) = &self.simulated {
            simulated.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|name, _| listed.contains(name));
        }
        self.resolve().await
    }

    /// What the scheduler would do: the pod goes to this node.
    async fn bind(&self, pod: &str) -> anyhow::Result<()> {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": self.name}});
        match self.pods().create_subresource::<Value, Value>("binding", pod, &PostParams::default(), &binding).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts the pod's process if it is not running (again, if it died),
    /// keeps its files in step, probes it and reports its status.
    async fn run(&self, pod: &Pod) -> anyhow::Result<()> {
        if let Some(simulated) = &self.simulated {
            return self.pretend(pod, simulated).await;
        }
        let name = pod.name_any();
        let uid = pod.uid().unwrap_or_default();
        let known = self.locked().get(&name).map(|r| r.uid.clone());
        if known.as_deref().is_some_and(|u| u != uid) {
            self.locked().remove(&name);
        }
        let dir = self.dir.join(&self.namespace).join(&name).join(&uid);
        let command = match self.project(pod, &dir).await {
            Ok(command) => command,
            // As a kubelet: a running pod keeps the files it has (its
            // ConfigMap goes first when its owner is deleted); a new one
            // waits in ContainerCreating, saying why (kubelet's FailedMount).
            Err(_) if self.locked().contains_key(&name) => return self.report(pod).await,
            Err(e) => return self.waiting(pod, &format!("MountVolume.SetUp failed: {e:#}")).await,
        };
        self.keep_running(&name, uid, &command, dir)?;
        self.report(pod).await
    }

    /// A pod whose container cannot start yet: `ContainerCreating` with
    /// `message`, written when it changes.
    async fn waiting(&self, pod: &Pod, message: &str) -> anyhow::Result<()> {
        let shown = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).and_then(|c| c.state.as_ref());
        if shown.and_then(|s| s.waiting.as_ref()).and_then(|w| w.message.as_deref()) == Some(message) {
            return Ok(());
        }
        let image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default();
        let status = json!({"status": {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [{"name": "receiver", "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
                "state": {"waiting": {"reason": "ContainerCreating", "message": message}}}],
        }});
        self.pods().patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await?;
        Ok(())
    }

    /// Starts the pod's process, or again when it ended (restartPolicy Always).
    fn keep_running(&self, name: &str, uid: String, command: &Command, dir: PathBuf) -> anyhow::Result<()> {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut pods = self.locked();
        if self.paused.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(running) = pods.get_mut(name)
                && running.child.try_wait()?.is_none()
            {
                running.child.kill()?;
                running.child.wait()?;
            }
            return Ok(());
        }
        match pods.get_mut(name) {
            // As a kubelet's CrashLoopBackOff: 250 ms after the first
            // exit, doubling, at most 10 s.
            Some(running) => {
                let backoff = Duration::from_millis(250u64 << running.restarts.clamp(0, 6)).min(Duration::from_secs(10));
                if running.child.try_wait()?.is_some() && running.started.elapsed() >= backoff {
                    running.child = self.spawn(command, &running.network, &dir)?;
                    running.restarts += 1;
                    running.started_at = now;
                    running.started = Instant::now();
                }
            }
            None => {
                let network = self.network.pod()?;
                let child = self.spawn(command, &network, &dir)?;
                let running =
                    Running { uid, child, network, dir, started_at: now, started: Instant::now(), restarts: 0, reported: Value::Null };
                pods.insert(name.to_owned(), running);
            }
        }
        Ok(())
    }

    /// The process in the pod's namespace, tied to this test process.
    fn spawn(&self, command: &Command, network: &PodNetwork, dir: &Path) -> anyhow::Result<Child> {
        // Appended: a restart keeps the log of the crash that caused it.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log"))?;
        let mut process = std::process::Command::new("setpriv");
        process.args(["--pdeathsig", "KILL", "--", "ip", "netns", "exec", &network.name]).arg(&self.receiver).args(&command.args);
        process.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
        for (key, value) in &command.env {
            process.env(key, value.replace("$(POD_IP)", &network.ip.to_string()));
        }
        Ok(spawn_tied(process)?)
    }

    /// Writes the pod's volumes under `dir` and returns its command, its
    /// paths turned into those files.
    async fn project(&self, pod: &Pod, dir: &Path) -> anyhow::Result<Command> {
        let spec = pod.spec.clone().unwrap_or_default();
        let container = spec.containers.first().cloned().ok_or_else(|| anyhow!("no container"))?;
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        let mut config_files = Vec::new();
        for volume in spec.volumes.unwrap_or_default() {
            let Some(mount) = container.volume_mounts.iter().flatten().find(|m| m.name == volume.name) else { continue };
            let local = dir.join("volumes").join(&volume.name);
            std::fs::create_dir_all(&local)?;
            if let Some(cm) = &volume.config_map {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
                let data = api.get(&cm.name).await?.data.unwrap_or_default();
                config_files.extend(data.into_iter().map(|(file, text)| (local.join(file), text)));
            }
            for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
                let Some(secret) = &source.secret else { continue };
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
                let data = api.get(&secret.name).await?.data.unwrap_or_default();
                for item in secret.items.iter().flatten() {
                    let value = data.get(&item.key).ok_or_else(|| anyhow!("Secret {} has no key {}", secret.name, item.key))?;
                    write_if_changed(&local.join(&item.path), &value.0)?;
                }
            }
            let path = match &volume.persistent_volume_claim {
                Some(claim) => self.claim_path(&claim.claim_name).await?,
                None => local,
            };
            mounts.push((mount.mount_path.clone(), path));
        }
        // Longer mount paths first, so none is replaced inside another.
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let localize =
            |text: &str| mounts.iter().fold(text.to_owned(), |t, (from, to)| t.replace(from.as_str(), &to.display().to_string()));
        for (file, text) in config_files {
            write_if_changed(&file, localize(&text).as_bytes())?;
        }
        Ok(Command { args: container.args.iter().flatten().map(|a| localize(a)).collect(), env: env(pod, &container) })
    }

    /// The folder of the PersistentVolume bound to claim `claim` (the
    /// stand-in storage driver's `hostPath`).
    async fn claim_path(&self, claim: &str) -> anyhow::Result<PathBuf> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.namespace);
        let bound = claims.get(claim).await?.spec.and_then(|s| s.volume_name).ok_or_else(|| anyhow!("claim {claim} is not bound yet"))?;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let volume = volumes.get(&bound).await?;
        let path = volume.spec.and_then(|s| s.host_path).map(|h| h.path).ok_or_else(|| anyhow!("volume {bound} has no hostPath"))?;
        Ok(PathBuf::from(path))
    }

    /// Probes the pod (its readiness probe's path and port) and writes its
    /// status when it changed.
    async fn report(&self, pod: &Pod) -> anyhow::Result<()> {
        let name = pod.name_any();
        let probe = readiness(pod);
        let (ip, started_at, restarts, exited) = {
            let mut pods = self.locked();
            let Some(r) = pods.get_mut(&name) else { return Ok(()) };
            let exited = r.child.try_wait()?.map(|s| s.code().unwrap_or(137));
            (r.network.ip, r.started_at.clone(), r.restarts, exited)
        };
        let ready = match (&probe, exited) {
            (_, Some(_)) => false,
            (Some((path, port)), None) => probe_http(SocketAddr::from((ip, *port)), path).await,
            (None, None) => true,
        };
        let mut status = self.status(pod, &ip.to_string(), &started_at, restarts, ready);
        if let Some(code) = exited {
            // Between an exit and the restart, as a kubelet shows it.
            let container = &mut status["status"]["containerStatuses"][0];
            container["state"] =
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container receiver"}});
            container["lastState"] =
                json!({"terminated": {"exitCode": code, "reason": "Error", "finishedAt": k8s_openapi::jiff::Timestamp::now().to_string()}});
            container["started"] = json!(false);
        }
        let changed = {
            let mut pods = self.locked();
            let Some(r) = pods.get_mut(&name) else { return Ok(()) };
            std::mem::replace(&mut r.reported, status.clone()) != status
        };
        if changed {
            self.pods().patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
        }
        Ok(())
    }

    /// A simulated pod: running and ready at an address of its own.
    async fn pretend(&self, pod: &Pod, simulated: &Mutex<BTreeMap<String, (String, Value)>>) -> anyhow::Result<()> {
        let name = pod.name_any();
        let known = simulated.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&name).cloned();
        let (ip, reported) = match known {
            Some(known) => known,
            None => (self.network.address()?.to_string(), Value::Null),
        };
        let started = pod.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
        let status = self.status(pod, &ip, &started, 0, true);
        if reported != status {
            self.pods().patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
        }
        simulated.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name, (ip, status));
        Ok(())
    }

    /// A running pod's status.
    fn status(&self, pod: &Pod, ip: &str, started_at: &str, restarts: i32, ready: bool) -> Value {
        let flag = if ready { "True" } else { "False" };
        let image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default();
        let host = self.network.host_ip().to_string();
        json!({"status": {
            "phase": "Running", "hostIP": host, "hostIPs": [{"ip": host}], "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": started_at,
            "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": flag}, {"type": "Ready", "status": flag},
            ],
            "containerStatuses": [{
                "name": "receiver", "ready": ready, "started": true, "restartCount": restarts, "image": image, "imageID": "",
                "state": {"running": {"startedAt": started_at}},
            }],
        }})
    }

    /// Starts [`Shared::terminate`] in a task of its own (once per pod): a
    /// pod's grace period holds up no other pod.
    fn terminate_in_background(self: &Arc<Self>, pod: &Pod) {
        let name = pod.name_any();
        if !self.terminating.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.clone()) {
            return;
        }
        let (me, pod) = (Arc::clone(self), pod.clone());
        tokio::spawn(async move {
            if let Err(e) = me.terminate(&pod).await {
                eprintln!("stand-in node: pod {name}: {e:#}");
            }
            me.terminating.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&name);
        });
    }

    /// A pod being deleted: SIGTERM, at most its grace period, then the
    /// process is killed and the pod removed.
    async fn terminate(&self, pod: &Pod) -> anyhow::Result<()> {
        let name = pod.name_any();
        let running = self.locked().remove(&name);
        if let Some(mut running) = running {
            let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
            let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0)).min(MAX_GRACE);
            // Only a process not reaped yet: a reaped one's pid may be another's now.
            if running.child.try_wait()?.is_none() {
                let _ = std::process::Command::new("kill").args(["-TERM", &running.child.id().to_string()]).status();
            }
            let deadline = Instant::now() + grace;
            while running.child.try_wait()?.is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: pod.uid().map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        match self.pods().delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Points the FusionAuth emulator at the ready endpoints of each
    /// Service's port `http`, from its EndpointSlices.
    async fn resolve(&self) -> anyhow::Result<()> {
        let Some(fusionauth) = self.fusionauth.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() else { return Ok(()) };
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut services: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
        for slice in slices.list(&ListParams::default()).await?.items {
            let Some(service) = slice.labels().get("kubernetes.io/service-name").cloned() else { continue };
            let port = slice.ports.iter().flatten().find(|p| p.name.as_deref() == Some("http")).and_then(|p| p.port);
            let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else { continue };
            let addresses = services.entry(service).or_default();
            for endpoint in slice.endpoints.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true)) {
                addresses
                    .extend(endpoint.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()).map(|ip| SocketAddr::from((ip, port))));
            }
        }
        for (service, addresses) in services {
            fusionauth.resolve_all(&format!("{service}.{}.svc", self.namespace), addresses);
        }
        Ok(())
    }
}

/// What a container runs: its arguments and environment.
struct Command {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// The container's environment: values, and the downward API's pod name,
/// namespace and IP.
fn env(pod: &Pod, container: &Container) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for var in container.env.iter().flatten() {
        let field = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str());
        let value = match (var.value.as_deref(), field) {
            (Some(value), _) => value.to_owned(),
            (None, Some("metadata.name")) => pod.name_any(),
            (None, Some("metadata.namespace")) => pod.namespace().unwrap_or_default(),
            (None, Some("status.podIP")) => "$(POD_IP)".to_owned(),
            _ => continue,
        };
        vars.push((var.name.clone(), value));
    }
    vars
}

/// The readiness probe's HTTP path and port.
fn readiness(pod: &Pod) -> Option<(String, u16)> {
    let container = pod.spec.as_ref()?.containers.first()?;
    let get = container.readiness_probe.as_ref()?.http_get.as_ref()?;
    let port = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => u16::try_from(*p).ok()?,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
            let port = container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name.as_str()))?;
            u16::try_from(port.container_port).ok()?
        }
    };
    Some((get.path.clone().unwrap_or_else(|| "/".to_owned()), port))
}

/// `GET path` answers 2xx within a second.
async fn probe_http(addr: SocketAddr, path: &str) -> bool {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).no_proxy().build();
    let Ok(client) = client else { return false };
    client.get(format!("http://{addr}{path}")).send().await.is_ok_and(|r| r.status().is_success())
}

fn write_if_changed(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Whole files only, as the kubelet swaps a projected volume's folder.
    let temp = path.with_extension("tmp~");
    std::fs::write(&temp, data)?;
    std::fs::rename(&temp, path)
}

//! The sandbox's Kubernetes: the real control plane (`--kube real`, the
//! default) or the Kubernetes API emulator (`--kube emulated`), behind the
//! few things the walkthrough does with it.
//!
//! Real: etcd, kube-apiserver and kube-controller-manager built from
//! Kubernetes' Go modules ([`fusionhook_tests::control_plane`]), the chart
//! installed by `helm install` ([`fusionhook_tests::release`]), the operator
//! run under the chart's ServiceAccount, the examples applied with the real
//! `kubectl`, and a stand-in node ([`fusionhook_tests::node`]) that runs the
//! receiver pods the real controllers make, each in a network namespace
//! with a pod IP of its own, with a stand-in storage driver as the default
//! StorageClass. Emulated: everything on loopback in this process
//! ([`fusionhook_tests::stack`]), no Go and no root needed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use fusionhook_tests::control_plane::{ControlPlane, KUBERNETES_VERSION};
use fusionhook_tests::fusionauth_emulator::{Emulator, RunningEmulator, Settings};
use fusionhook_tests::node::Node;
use fusionhook_tests::release::OperatorProcess;
use fusionhook_tests::stack::Stack;
use fusionhook_tests::volumes::StorageDriver;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

/// Which Kubernetes the sandbox runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kube {
    /// etcd, kube-apiserver and kube-controller-manager built from
    /// Kubernetes' Go modules (needs Go and root; the first build takes
    /// minutes), the chart installed by helm.
    Real,
    /// The Kubernetes API emulator of `tests/`: starts in a second, needs
    /// neither Go nor root.
    Emulated,
}

/// The namespace the walkthrough's resources live in.
pub const NAMESPACE: &str = "todo";

/// The Helm release (and its namespace) on the real control plane.
const RELEASE: &str = "fusionhook";

/// A running sandbox cluster with FusionAuth beside it.
pub enum Cluster {
    Real(Box<Real>),
    Emulated(Box<Stack>),
}

pub struct Real {
    // Dropped in this order: the operator, the node's pods, the driver,
    // FusionAuth, then the control plane.
    operator: Option<OperatorProcess>,
    node: Node,
    _driver: StorageDriver,
    fusionauth: Emulator,
    _fusionauth_running: RunningEmulator,
    fusionauth_addr: SocketAddr,
    client: kube::Client,
    plane: ControlPlane,
    dir: tempfile::TempDir,
}

fn faw(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("fusionhook.dev", "v1alpha1", "FusionAuthWebhook"));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Whether this process runs as root (the stand-in node makes network namespaces).
fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.strip_prefix("Uid:").is_some_and(|u| u.split_whitespace().next() == Some("0"))))
}

impl Cluster {
    /// Starts the cluster and FusionAuth (accepting `api_key`); what
    /// started, one line each.
    pub async fn start(kube: Kube, api_key: &str) -> anyhow::Result<(Self, Vec<String>)> {
        match kube {
            Kube::Emulated => {
                let stack = Stack::start(api_key).await?;
                let said = vec![
                    format!("Kubernetes API emulator on {} (CRD fusionauthwebhooks.fusionhook.dev installed)", stack.kube_running.url()),
                    "a stand-in kubelet runs a fusionhook-receiver process for each receiver Deployment or StatefulSet".to_owned(),
                    format!("FusionAuth emulator on {} (global API key {api_key})", stack.fusionauth_url()),
                ];
                Ok((Self::Emulated(Box::new(stack)), said))
            }
            Kube::Real => Real::start(api_key).await.map(|(real, said)| (Self::Real(Box::new(real)), said)),
        }
    }

    pub fn fusionauth(&self) -> &Emulator {
        match self {
            Self::Real(r) => &r.fusionauth,
            Self::Emulated(s) => &s.fusionauth,
        }
    }

    pub fn fusionauth_url(&self) -> String {
        match self {
            Self::Real(r) => format!("http://{}", r.fusionauth_addr),
            Self::Emulated(s) => s.fusionauth_url(),
        }
    }

    /// Where a service the receivers call listens (the node's address on
    /// the pod network, or loopback).
    pub fn service_ip(&self) -> IpAddr {
        match self {
            Self::Real(r) => IpAddr::V4(r.node.host_ip()),
            Self::Emulated(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// The administrator's kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        match self {
            Self::Real(r) => &r.plane.kubeconfig,
            Self::Emulated(s) => &s.kubeconfig,
        }
    }

    /// Starts the operator with leader election on; its identity in the Lease.
    pub fn start_operator(&mut self) -> anyhow::Result<String> {
        match self {
            Self::Real(r) => {
                let kubeconfig = r.plane.kubeconfig_for_service_account(RELEASE, RELEASE)?;
                let operator = OperatorProcess::start(&r.plane, RELEASE, RELEASE, &kubeconfig, r.dir.path(), &[])?;
                let identity = operator.identity.clone();
                r.operator = Some(operator);
                Ok(identity)
            }
            Self::Emulated(s) => {
                s.start_operator("sandbox-operator", "30s")?;
                Ok("sandbox-operator".to_owned())
            }
        }
    }

    /// The holder of the operator's Lease.
    pub async fn lease_holder(&self) -> Option<String> {
        match self {
            Self::Real(r) => {
                let api: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(r.client.clone(), RELEASE);
                api.get_opt(RELEASE).await.ok()??.spec?.holder_identity
            }
            Self::Emulated(s) => s.lease_holder(),
        }
    }

    /// Namespace [`NAMESPACE`] (made at the start on the real one, where the
    /// node serves it) and the API key Secret `fusionauth-api-key` in it.
    pub fn api_key_secret(&self, api_key: &str) -> anyhow::Result<()> {
        match self {
            Self::Real(r) => {
                let literal = format!("--from-literal=api-key={api_key}");
                r.kubectl(&["-n", NAMESPACE, "create", "secret", "generic", "fusionauth-api-key", &literal]).map(|_| ())
            }
            Self::Emulated(s) => s.namespace_with_api_key(NAMESPACE),
        }
    }

    /// Applies a multi-document YAML file: the real `kubectl apply -f`, or
    /// its emulated equivalent; a line for each object.
    pub fn apply(&self, text: &str) -> anyhow::Result<Vec<String>> {
        match self {
            Self::Real(r) => {
                let file = r.dir.path().join("apply.yaml");
                std::fs::write(&file, text)?;
                let out = r.kubectl(&["apply", "-f", &file.display().to_string()])?;
                Ok(out.lines().map(str::to_owned).collect())
            }
            Self::Emulated(s) => apply_emulated(s, text),
        }
    }

    /// Deletes FusionAuthWebhook `name` (its finalizer runs; not waited for).
    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Self::Real(r) => {
                faw(&r.client, NAMESPACE).delete(name, &Default::default()).await?;
                Ok(())
            }
            Self::Emulated(s) => s.delete("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", NAMESPACE, name),
        }
    }

    /// FusionAuthWebhook `name` as JSON, if it exists.
    pub async fn resource(&self, name: &str) -> Option<Value> {
        match self {
            Self::Real(r) => serde_json::to_value(faw(&r.client, NAMESPACE).get_opt(name).await.ok()??).ok(),
            Self::Emulated(s) => s.kube.get("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", NAMESPACE, name),
        }
    }

    /// Condition `kind` of FusionAuthWebhook `name`: (status, reason).
    pub async fn condition(&self, name: &str, kind: &str) -> Option<(String, String)> {
        let resource = self.resource(name).await?;
        let c = resource["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)?.clone();
        Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned()))
    }

    /// The address of a running receiver of workload `workload` and where
    /// it runs, in words.
    pub fn receiver(&self, workload: &str) -> Option<(SocketAddr, String)> {
        match self {
            Self::Real(r) => {
                let pod = r.node.running().into_iter().find(|p| p.starts_with(&format!("{workload}-")))?;
                let ip = r.node.pod_ip(&pod)?;
                Some((SocketAddr::from((ip, 8080)), format!("pod {pod} on node {} (its own network namespace)", r.node.name)))
            }
            Self::Emulated(s) => {
                let addr = s.kubelet.pods.lock().ok()?.address(NAMESPACE, workload)?;
                Some((addr, "a process of the stand-in kubelet".to_owned()))
            }
        }
    }

    /// Whether FusionAuth reaches Service `service` (through a ready
    /// endpoint of its EndpointSlice on the real server; the emulated
    /// kubelet resolves it as soon as its process runs).
    pub fn reachable(&self, service: &str) -> bool {
        let host = format!("{service}.{NAMESPACE}.svc");
        match self {
            Self::Real(r) => r.fusionauth.state().resolve.get(&host).is_some_and(|a| !a.is_empty()),
            Self::Emulated(_) => true,
        }
    }

    /// The last `lines` lines of the operator's log.
    pub fn operator_log_tail(&self, lines: usize) -> String {
        let log: Vec<String> = match self {
            Self::Real(r) => r.operator.as_ref().map(OperatorProcess::log).unwrap_or_default().lines().map(str::to_owned).collect(),
            Self::Emulated(s) => s.operators.first().map(|o| o.logs.lock().map(|l| l.clone()).unwrap_or_default()).unwrap_or_default(),
        };
        log[log.len().saturating_sub(lines)..].join("\n")
    }

    /// What to try by hand while the sandbox runs, beyond the plugin.
    pub fn hints(&self) -> String {
        match self {
            Self::Real(r) => format!(
                "  kubectl:         export KUBECONFIG={kubeconfig}\n                   \
                 kubectl -n todo get faw,sts,pods,endpointslices,pvc\n                   \
                 kubectl -n {RELEASE} get deployment,serviceaccount,lease   (helm -n {RELEASE} status {RELEASE} with the same KUBECONFIG)\n  \
                 operator:        curl -s http://{metrics}/metrics | grep fusionhook_   (its log: {log})\n  \
                 control plane:   logs of etcd, kube-apiserver and kube-controller-manager in {dir}\n",
                kubeconfig = r.plane.kubeconfig.display(),
                metrics = r.operator.as_ref().and_then(OperatorProcess::metrics_addr).unwrap_or_default(),
                log = r.operator.as_ref().map(|o| o.log.display().to_string()).unwrap_or_default(),
                dir = r.plane.dir.display(),
            ),
            Self::Emulated(s) => format!(
                "  kubectl:         export KUBECONFIG={kubeconfig}\n                   \
                 kubectl -n todo get faw,sts,svc,cm   (kubectl apply needs --validate=false: the emulator serves no OpenAPI)\n  \
                 operator:        curl -s http://{metrics}/metrics | grep fusionhook_\n  \
                 the real one:    run the sandbox with `-- --kube real` (needs Go and root)\n",
                kubeconfig = s.kubeconfig.display(),
                metrics = s.operators.first().map(|o| o.metrics.to_string()).unwrap_or_default(),
            ),
        }
    }
}

impl Real {
    async fn start(api_key: &str) -> anyhow::Result<(Self, Vec<String>)> {
        if !root() {
            bail!(
                "the real control plane's stand-in node runs receiver pods in network namespaces, which needs root: \
                 run the sandbox as root, or add `-- --kube emulated` for the Kubernetes API emulator"
            );
        }
        let receiver = fusionhook_tests::binaries::built("fusionhook-receiver", "fusionhook-receiver")?;
        fusionhook_tests::binaries::built("fusionhook-operator", "fusionhook-operator")?;
        // Builds Kubernetes on first use (minutes, with progress), then starts it.
        let plane = tokio::task::block_in_place(ControlPlane::start).context("the Kubernetes control plane")?;
        tokio::task::block_in_place(|| fusionhook_tests::release::install(&plane, RELEASE, RELEASE))?;
        tokio::task::block_in_place(|| plane.kubectl(&["create", "namespace", NAMESPACE]))?;
        let client = plane.client().await?;
        let dir = tempfile::tempdir()?;
        // The durable example asks for no class: the stand-in's is the default.
        fusionhook_tests::volumes::storage_class(&client, "stand-in", true).await?;
        let default = json!({"metadata": {"annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}).to_string();
        tokio::task::block_in_place(|| plane.kubectl(&["patch", "storageclass", "stand-in", "--type=merge", "-p", &default]))?;
        let driver = StorageDriver::start(client.clone(), NAMESPACE, dir.path().join("volumes"));
        let node = Node::start(client.clone(), NAMESPACE, receiver, &dir.path().join("node")).await?;
        let fusionauth = Emulator::new(Settings { api_key: api_key.to_owned(), retry_delay: Duration::ZERO });
        node.resolve_for(&fusionauth);
        let running = fusionauth.serve("127.0.0.1:0".parse()?).await?;
        let fusionauth_addr = running.addr;
        let said = vec![
            format!(
                "Kubernetes {KUBERNETES_VERSION} on {}: etcd, kube-apiserver (RBAC on) and kube-controller-manager, built from Kubernetes' Go modules",
                plane.server
            ),
            format!(
                "helm install {RELEASE} charts/fusionhook --namespace {RELEASE}: the CRD, the operator's ServiceAccount and ClusterRole, ..."
            ),
            format!(
                "a stand-in node ({}) runs the receiver pods the controllers make, each in a network namespace of its own (pod IPs 10.x on a bridge at {})",
                node.name,
                node.host_ip()
            ),
            "StorageClass stand-in (the default): a volume on a folder for each claim, as a local provisioner gives".to_owned(),
            format!(
                "FusionAuth emulator on http://{fusionauth_addr} (global API key {api_key}); Services resolved through their EndpointSlices"
            ),
        ];
        let real =
            Self { operator: None, node, _driver: driver, fusionauth, _fusionauth_running: running, fusionauth_addr, client, plane, dir };
        Ok((real, said))
    }

    fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        tokio::task::block_in_place(|| self.plane.kubectl(args))
    }
}

/// Creates every object of a multi-document YAML file in the emulator, as
/// `kubectl create -f` would.
fn apply_emulated(stack: &Stack, text: &str) -> anyhow::Result<Vec<String>> {
    let mut created = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let object: Value = serde::Deserialize::deserialize(doc)?;
        if object.is_null() {
            continue;
        }
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let kind = object["kind"].as_str().unwrap_or_default();
        let resource = stack
            .kube
            .store()
            .types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .map(|t| t.resource.clone())
            .with_context(|| format!("no resource type for {kind}"))?;
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
        stack.create(group, version, &resource, &namespace, object.clone())?;
        created.push(format!("{}/{} created", kind.to_ascii_lowercase(), object["metadata"]["name"].as_str().unwrap_or_default()));
    }
    Ok(created)
}

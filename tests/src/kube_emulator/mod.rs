//! A Kubernetes API server emulator, over plain HTTP, for the operator's
//! end-to-end tests, the sandbox, and the real `kubectl` and `helm`.
//!
//! It follows kube-apiserver where our tools can tell: discovery, CRDs that
//! register their types, one monotonically increasing resourceVersion,
//! `uid`/`creationTimestamp`/`generation` (bumped on spec changes only),
//! the `status` subresource, create/get/list/replace/delete/patch with the
//! real `Status` bodies and reasons, label and field selectors,
//! `generateName`, optimistic concurrency, finalizers, namespaces,
//! background garbage collection by ownerReferences, merge / JSON /
//! strategic-merge patches and server-side apply (`patch.rs` documents how
//! far field ownership goes), streaming watches with bookmarks, timeouts
//! and 410 Gone, `Table` answers for kubectl's printer columns, and
//! metadata-only answers for metadata watches; the pod and service proxy
//! (`proxy.rs`) to what the stand-in kubelet runs; request bodies in JSON,
//! YAML, or protobuf for the kinds typed clients send (`protobuf.rs`); a
//! custom resource's structural schema (types, patterns, ranges, required
//! fields) and its CEL rules (`x-kubernetes-validations`, with `kube-cel`).
//!
//! Not emulated (documented, not silently wrong): authentication and RBAC
//! (every request is allowed; the audit log records each one so tests can
//! check the RBAC a component needs), pruning of unknown fields in custom
//! resources, admission webhooks and policies,
//! the OpenAPI documents (`kubectl` needs `--validate=false`), and the
//! controllers of built-in kinds (a Deployment gets no pods or status unless
//! a test, like the end-to-end tests' stand-in kubelet, writes them).

mod http;
mod patch;
mod protobuf;
pub mod proxy;
pub mod registry;
mod selectors;
pub mod store;
mod table;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use http::Audit;
pub use proxy::Endpoint;
use serde_json::Value;
pub use store::{ApiError, PatchKind, Store};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The emulator (cheap to clone; clones share state).
#[derive(Clone, Default)]
pub struct KubeEmulator {
    store: Arc<Mutex<Store>>,
    audit: Arc<Mutex<Vec<Audit>>>,
    address: Arc<Mutex<String>>,
    endpoints: Arc<Mutex<Vec<Endpoint>>>,
}

impl KubeEmulator {
    /// An empty cluster (namespaces `default`, `kube-system`, `kube-public`, `kube-node-lease`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The storage, locked (never hold it across an await).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn audit(&self, entry: Audit) {
        self.audit.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(entry);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Audit> {
        self.audit.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn endpoints(&self) -> MutexGuard<'_, Vec<Endpoint>> {
        self.endpoints.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a running pod for the proxy (replacing one of that name).
    pub fn set_endpoint(&self, endpoint: Endpoint) {
        let mut endpoints = self.endpoints();
        endpoints.retain(|e| (e.namespace.as_str(), e.pod.as_str()) != (endpoint.namespace.as_str(), endpoint.pod.as_str()));
        endpoints.push(endpoint);
    }

    /// Where the Service's port `port` leads now (the pods its selector picks).
    pub fn service_addresses(&self, namespace: &str, service: &str, port: &str) -> Vec<SocketAddr> {
        proxy::backends(self, "services", namespace, &format!("{service}:{port}")).unwrap_or_default()
    }

    /// Creates or updates the Pod object of a running pod (as the kubelet
    /// reports it): its labels, the volumes of the template it runs (which
    /// config version it mounts) and readiness.
    pub fn report_pod(&self, namespace: &str, pod: &str, labels: &Value, volumes: &Value, ready: bool, restarts: u32) {
        let mut store = self.store();
        let Some(t) = store.find("", "v1", "pods").cloned() else { return };
        let status = serde_json::json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": "receiver", "ready": ready, "restartCount": restarts, "state": {"running": {}}}],
        });
        match store.get(&t, namespace, pod) {
            Ok(existing) if existing["status"] == status && existing["spec"]["volumes"] == *volumes => {}
            Ok(existing) => {
                if existing["spec"]["volumes"] != *volumes {
                    // The emulated kubelet runs a workload's new template
                    // under the same pod name.
                    let patch = serde_json::json!({"spec": {"volumes": volumes}});
                    let _ = store.patch(&t, namespace, pod, PatchKind::Merge, &patch, false, "kubelet", false);
                }
                let patch = serde_json::json!({ "status": status });
                let _ = store.patch(&t, namespace, pod, PatchKind::Merge, &patch, true, "kubelet", false);
            }
            Err(_) => {
                let object = serde_json::json!({"metadata": {"name": pod, "labels": labels},
                    "spec": {"containers": [{"name": "receiver"}], "volumes": volumes}});
                if store.create(&t, namespace, object, "kubelet").is_ok() {
                    let _ =
                        store.patch(&t, namespace, pod, PatchKind::Merge, &serde_json::json!({ "status": status }), true, "kubelet", false);
                }
            }
        }
    }

    /// Forgets a pod that stopped (its endpoint and its Pod object).
    pub fn remove_endpoint(&self, namespace: &str, pod: &str) {
        self.endpoints().retain(|e| (e.namespace.as_str(), e.pod.as_str()) != (namespace, pod));
        let mut store = self.store();
        if let Some(t) = store.find("", "v1", "pods").cloned() {
            let _ = store.delete(&t, namespace, pod);
        }
    }

    fn address(&self) -> String {
        self.address.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reads one object (`group` `""` for core).
    pub fn get(&self, group: &str, version: &str, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let store = self.store();
        let t = store.find(group, version, resource)?.clone();
        store.get(&t, namespace, name).ok()
    }

    /// Lists objects of a type (all namespaces when `namespace` is `None`).
    pub fn list(&self, group: &str, version: &str, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let store = self.store();
        let Some(t) = store.find(group, version, resource).cloned() else { return Vec::new() };
        store.list(&t, namespace, &Default::default(), &Default::default())
    }

    /// Writes the status subresource (as a kubelet or controller would).
    pub fn set_status(
        &self,
        group: &str,
        version: &str,
        resource: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let mut store = self.store();
        let t = store.find(group, version, resource).cloned().ok_or_else(|| ApiError::NotFound(resource.to_owned()))?;
        store.patch(&t, namespace, name, PatchKind::Merge, &serde_json::json!({ "status": status }), true, "emulator", false)
    }

    /// The router.
    pub fn router(&self) -> axum::Router {
        axum::Router::new().fallback(http::handle).with_state(self.clone())
    }

    /// Serves on `addr` until stopped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<RunningKube> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        *self.address.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = addr.to_string();
        let task = crate::serve::spawn(listener, self.router());
        Ok(RunningKube { addr, task })
    }
}

/// A serving emulator.
pub struct RunningKube {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningKube {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig for `kubectl`, `helm` and kube-rs (plain HTTP,
    /// no credentials), with `namespace` as the context's default.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> std::io::Result<()> {
        std::fs::write(path, kubeconfig(&self.url(), namespace))
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A kubeconfig for a plain-HTTP server.
pub fn kubeconfig(url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {url}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: {namespace}\ncurrent-context: emulator\nusers:\n- name: emulator\n  user: {{}}\n"
    )
}

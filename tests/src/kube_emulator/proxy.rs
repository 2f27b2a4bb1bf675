//! The API server's proxy subresources, as kube-apiserver serves them:
//! `/api/v1/namespaces/NS/pods/[scheme:]NAME[:PORT]/proxy/PATH` and
//! `/api/v1/namespaces/NS/services/[scheme:]NAME[:PORT]/proxy/PATH`. A
//! Service is resolved through its selector and its port's `targetPort` to
//! a pod's named or numbered container port, as kube-apiserver does with the
//! Service's endpoints. Pods are not API objects here: whoever runs them (the
//! stand-in kubelet) registers each as an [`Endpoint`].
//!
//! Like kube-apiserver, the proxy drops the caller's `Authorization` header
//! (its credential for the API server, not for the backend) and answers 503
//! `ServiceUnavailable` when there is nothing to reach.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::KubeEmulator;
use super::store::ApiError;

/// A running pod, as the proxy reaches it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// The pod's labels (what Service selectors match).
    pub labels: BTreeMap<String, String>,
    /// Container ports: name, number, and where the process listens.
    pub ports: Vec<(String, u16, SocketAddr)>,
}

impl Endpoint {
    fn port(&self, wanted: &str) -> Option<SocketAddr> {
        self.ports.iter().find(|(name, number, _)| name == wanted || number.to_string() == wanted).map(|(_, _, addr)| *addr)
    }
}

/// `[scheme:]name[:port]` of a proxy path.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let parts: Vec<&str> = target.split(':').collect();
    match parts.as_slice() {
        [name] => (name, None),
        ["http" | "https", name, port] => (name, Some(*port).filter(|p| !p.is_empty())),
        [name, port] => (name, Some(*port).filter(|p| !p.is_empty())),
        _ => (target, None),
    }
}

/// The proxied request's `(kind, namespace, target, rest)` when `path` is one.
pub fn parse(path: &str) -> Option<(&str, &str, &str, String)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let mut parts = rest.splitn(5, '/');
    let (namespace, kind, target, proxy) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if proxy != "proxy" || !matches!(kind, "pods" | "services") {
        return None;
    }
    Some((kind, namespace, target, format!("/{}", parts.next().unwrap_or_default())))
}

fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str()))
}

/// Where a proxied request goes: the pod, or the first of the Service's endpoints.
fn backend(emulator: &KubeEmulator, kind: &str, namespace: &str, target: &str) -> Result<SocketAddr, ApiError> {
    backends(emulator, kind, namespace, target).map(|all| all[0])
}

/// Every address a proxied request could go to (never empty).
pub(super) fn backends(emulator: &KubeEmulator, kind: &str, namespace: &str, target: &str) -> Result<Vec<SocketAddr>, ApiError> {
    let (name, port) = split_target(target);
    let endpoints = emulator.endpoints();
    if kind == "pods" {
        let pod = endpoints
            .iter()
            .find(|e| e.namespace == namespace && e.pod == name)
            .ok_or_else(|| ApiError::NotFound(format!("pods \"{name}\" not found")))?;
        let port = port.map_or_else(|| pod.ports.first().map(|p| p.2), |p| pod.port(p));
        return port.map(|p| vec![p]).ok_or_else(|| ApiError::ServiceUnavailable(format!("pod {name} has no port {}", port_name(target))));
    }
    let service =
        emulator.get("", "v1", "services", namespace, name).ok_or_else(|| ApiError::NotFound(format!("services \"{name}\" not found")))?;
    let ports = service["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let service_port = match port {
        None if ports.len() == 1 => ports.first(),
        None => None,
        Some(p) => ports.iter().find(|sp| sp["name"] == p || sp["port"].as_u64().is_some_and(|n| n.to_string() == p)),
    }
    .ok_or_else(|| ApiError::ServiceUnavailable(format!("no service port {:?} found for service \"{name}\"", port.unwrap_or_default())))?;
    let target_port = match &service_port["targetPort"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => service_port["port"].to_string(),
    };
    let addresses: Vec<SocketAddr> = endpoints
        .iter()
        .filter(|e| e.namespace == namespace && selects(&service["spec"]["selector"], &e.labels))
        .filter_map(|e| e.port(&target_port))
        .collect();
    if addresses.is_empty() {
        return Err(ApiError::ServiceUnavailable(format!("no endpoints available for service \"{name}\"")));
    }
    Ok(addresses)
}

fn port_name(target: &str) -> &str {
    split_target(target).1.unwrap_or_default()
}

/// Forwards one request (without `Authorization`) and relays the answer.
pub async fn forward(
    emulator: &KubeEmulator,
    method: &Method,
    (kind, namespace, target, rest): (&str, &str, &str, String),
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let addr = backend(emulator, kind, namespace, target)?;
    let query = if query.is_empty() { String::new() } else { format!("?{query}") };
    let url = format!("http://{addr}{rest}{query}");
    let mut request = reqwest::Client::new().request(method.clone(), url).body(body);
    for (name, value) in headers {
        if ![header::AUTHORIZATION, header::HOST, header::CONTENT_LENGTH, header::CONNECTION, header::TRANSFER_ENCODING].contains(name) {
            request = request.header(name, value);
        }
    }
    let answer = request
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| ApiError::ServiceUnavailable(format!("error trying to reach service: {e}")))?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.map_err(|e| ApiError::ServiceUnavailable(format!("error reading the answer: {e}")))?;
    let mut response = (status, bytes).into_response();
    // The backend's headers as they came (Content-Encoding included), but
    // for the framing, which is this connection's.
    for (name, value) in &headers {
        if ![header::CONTENT_LENGTH, header::CONNECTION, header::TRANSFER_ENCODING].contains(name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_name_the_target_and_the_rest() {
        assert_eq!(
            parse("/api/v1/namespaces/ns/services/web:admin/proxy/v1/stats"),
            Some(("services", "ns", "web:admin", "/v1/stats".to_owned()))
        );
        assert_eq!(parse("/api/v1/namespaces/ns/pods/web-0:8081/proxy"), Some(("pods", "ns", "web-0:8081", "/".to_owned())));
        assert_eq!(parse("/api/v1/namespaces/ns/services/web"), None);
        assert_eq!(split_target("https:web:admin"), ("web", Some("admin")));
        assert_eq!(split_target("web"), ("web", None));
    }
}

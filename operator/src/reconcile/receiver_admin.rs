//! receiver_admin: the operator as a client of a receiver's admin API,
//! through the API server's pod proxy (`pods/<pod>:8081/proxy/…`, RBAC
//! `pods/proxy` get), the way `kubectl` reaches a pod without exposing it.
//! The token is the one the operator generated into its own Secret; the
//! proxy drops `Authorization` (the caller's credential for the API
//! server), so it travels in the admin API's own header.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client};
use serde_json::Value;

use std::time::Duration;

use crate::names;
use crate::reconcile::build::receiver::STORE_LABEL;
use crate::reconcile::build::receiver_config::ADMIN_PORT;

/// The admin token of resource `resource`'s receivers (`None`: not generated yet or gone).
pub async fn token(client: &Client, namespace: &str, resource: &str) -> Result<Option<String>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(&names::authorization_secret_name(resource)).await?;
    Ok(secret.and_then(|s| s.data).and_then(|d| d.get(names::kept::ADMIN_TOKEN).cloned()).and_then(|b| String::from_utf8(b.0).ok()))
}

/// `GET /v1/stats` of pod `pod`: what its store holds (`null` figures: it
/// cannot be read) and, while it cannot commit, why (`storeProblem`). The
/// error is a sentence for a condition.
pub async fn stats(client: &Client, namespace: &str, pod: &str, token: &str) -> Result<Value, String> {
    let (status, value) = call(client, namespace, pod, token, http::Method::GET, "v1/stats", None, Duration::from_secs(5)).await?;
    if status.is_success() {
        return Ok(value);
    }
    Err(failure(status, &value))
}

/// `POST /v1/ingest` of `event` (the body FusionAuth sent) to pod `pod`:
/// the receiver's outcome (`handled`, `stored`, `duplicate`, `unmatched`),
/// or why not.
pub async fn ingest(client: &Client, namespace: &str, pod: &str, token: &str, event: Vec<u8>) -> Result<String, Refusal> {
    let call = call(client, namespace, pod, token, http::Method::POST, "v1/ingest", Some(event), INGEST_TIMEOUT).await;
    let (status, value) = call.map_err(Refusal::Unreachable)?;
    // The receiver's own answers carry `{"errors": [...]}`; the API server's
    // (a pod gone mid-pass: 404, RBAC: 403) a `Status`: those are not about
    // the event and are tried again.
    let from_receiver = value["errors"].is_array();
    match status.as_u16() {
        200..=299 => Ok(value["outcome"].as_str().unwrap_or("handled").to_owned()),
        400 | 413 | 415 if from_receiver => Err(Refusal::Invalid(failure(status, &value))),
        500 if from_receiver => Err(Refusal::Failed(failure(status, &value))),
        _ => Err(Refusal::Unreachable(failure(status, &value))),
    }
}

/// The most the operator reads of an admin API answer (stats and ingest
/// answers take well under 4 KiB): a receiver pod runs an image the
/// resource names, so a namespace must not make the cluster-wide operator
/// read until it is killed.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// How long an ingest may take: a route without a store runs before the
/// answer (its own timeouts are shorter).
const INGEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an ingest did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No answer, or not from the receiver (the proxy, a timeout): try later.
    Unreachable(String),
    /// The receiver could not act on it now (500: a route failed, the store
    /// cannot commit): try later.
    Failed(String),
    /// The receiver itself refused it (400, 413, 415): it never will take it.
    Invalid(String),
}

fn failure(status: http::StatusCode, value: &Value) -> String {
    let message = value["errors"][0]["message"].as_str().or_else(|| value["message"].as_str()).unwrap_or("no message");
    format!("{message} ({status})")
}

/// One admin API call to pod `pod` through the pod proxy: status and JSON
/// body (`null` when there is none).
#[allow(clippy::too_many_arguments)]
async fn call(
    client: &Client,
    namespace: &str,
    pod: &str,
    token: &str,
    method: http::Method,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(http::StatusCode, Value), String> {
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{ADMIN_PORT}/proxy/{path}");
    let builder = http::Request::builder().method(method).uri(uri).header("x-fusionhook-token", token);
    let request = match body {
        Some(bytes) => builder.header("content-type", "application/json").body(kube::client::Body::from(bytes)),
        None => builder.body(kube::client::Body::empty()),
    }
    .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.send(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        // The pod runs the resource's own image: what it answers is bounded.
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES))
            .await
            .map_err(|e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => format!("the answer is larger than {} KiB", MAX_ANSWER_BYTES / 1024),
                None => e.to_string(),
            })?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) =
        tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("no answer within {} s", timeout.as_secs()))??;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// The ready receiver pods of resource `resource` on the current store
/// (`store`: the value of the store label), by name.
pub async fn ready_pods(client: &Client, namespace: &str, resource: &str, store: &str) -> Result<Vec<String>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{},{STORE_LABEL}={store}", selector(resource));
    let pods = api.list(&kube::api::ListParams::default().labels(&selector)).await?;
    let mut names: Vec<String> = pods.items.iter().filter(|p| ready(p)).filter_map(|p| p.metadata.name.clone()).collect();
    names.sort();
    Ok(names)
}

fn selector(resource: &str) -> String {
    format!("app.kubernetes.io/instance={resource},app.kubernetes.io/managed-by={}", names::FIELD_MANAGER)
}

fn ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Why the store of a receiver pod that is not ready cannot commit, as the
/// pod itself says (`storeProblem`; at most two not-ready pods are asked).
/// `None` when no pod says so, or none can be asked.
pub async fn store_problem(client: &Client, namespace: &str, resource: &str) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api.list(&kube::api::ListParams::default().labels(&selector(resource))).await.ok()?;
    let token = token(client, namespace, resource).await.ok()??;
    let not_ready = pods.items.iter().filter(|p| !ready(p));
    for pod in not_ready.take(2) {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if let Ok(stats) = stats(client, namespace, name, &token).await
            && let Some(problem) = stats["storeProblem"].as_str()
        {
            return Some(format!("pod {name} is not ready: its store cannot commit: {problem}"));
        }
    }
    None
}

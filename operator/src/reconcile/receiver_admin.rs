//! receiver_admin: the operator as a client of a receiver's admin API,
//! through the API server's pod proxy (`pods/<pod>:8081/proxy/…`, RBAC
//! `pods/proxy` get), the way `kubectl` reaches a pod without exposing it.
//! The tokens are the ones the operator generates into the admin Secrets
//! ([`names::admin_secret_name`], one per scope); the proxy drops
//! `Authorization` (the caller's credential for the API server), so a
//! token travels in the admin API's own header.
//!
//! A pod is shown a token only after it proved it holds that token already
//! ([`prove`]): any pod in the namespace can carry the receiver's labels,
//! and the labels are all a Service or a list by selector goes by.
//! (Owner references can be written by whoever creates the pod too; the
//! proof holds because only a pod that mounts the admin Secret can make it,
//! and whoever can create such a pod can read the Secret anyway.)

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client};
use rand::RngCore;
use serde_json::{Value, json};

use std::time::Duration;

use crate::names::{self, AdminScope, admin_token};
use crate::reconcile::build::receiver::STORE_LABEL;
use crate::reconcile::build::receiver_config::ADMIN_PORT;

/// The header a token travels in through the API server's proxy.
pub use fusionhook_receiver::admin::TOKEN_HEADER;

/// An admin token of one scope, as its Secret holds it: the current value
/// and, shortly after a rotation, the one it replaced.
#[derive(Clone)]
pub struct Token {
    scope: AdminScope,
    /// The Secret it comes from.
    secret: String,
    values: Vec<String>,
}

/// The admin token of `scope` of resource `resource`'s receivers (`None`:
/// not generated yet, or gone).
pub async fn token(client: &Client, namespace: &str, resource: &str, scope: AdminScope) -> Result<Option<Token>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = names::admin_secret_name(resource, scope);
    let data = api.get_opt(&secret).await?.and_then(|s| s.data).unwrap_or_default();
    let value = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()).filter(|v| !v.is_empty());
    let values: Vec<String> = [admin_token::TOKEN, admin_token::PREVIOUS].into_iter().filter_map(value).collect();
    Ok((!values.is_empty()).then_some(Token { scope, secret, values }))
}

/// A receiver pod that proved it holds a token, and the value it holds.
pub struct Proven {
    /// The pod's name.
    pub pod: String,
    token: String,
}

impl Proven {
    /// The token value the pod holds (to send with calls to it).
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// The one admin token of receivers from before scoped tokens, while the
/// operator keeps it ([`names::kept::LEGACY_ADMIN_TOKEN`]).
pub async fn legacy_token(client: &Client, namespace: &str, resource: &str) -> Option<String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let data = api.get_opt(&names::authorization_secret_name(resource)).await.ok()??.data?;
    data.get(names::kept::LEGACY_ADMIN_TOKEN).and_then(|b| String::from_utf8(b.0.clone()).ok()).filter(|t| !t.is_empty())
}

/// Pod `pod` of an old StatefulSet, by its ordinal name, whose image has
/// no `/v1/prove` yet (it answered 404): asked with the legacy token, the
/// only one it accepts. Only for the pods of a StatefulSet the operator
/// made, named by ordinal: never for pods found by their labels.
pub fn unproven_old_pod(pod: &str, legacy: &str) -> Proven {
    Proven { pod: pod.to_owned(), token: legacy.to_owned() }
}

/// Asks pod `pod` to prove that it holds `token` (`POST /v1/prove` with a
/// fresh nonce; it answers an HMAC of its own name and the nonce under the
/// token, see `fusionhook_receiver::admin::proof`) without showing it the
/// token. A pod that cannot is not one of this resource's receivers (or
/// has not read a rotated token yet: then the previous value matches).
pub async fn prove(client: &Client, namespace: &str, pod: &str, token: &Token) -> Result<Proven, String> {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let body = serde_json::to_vec(&json!({"nonce": nonce, "scope": token.scope.as_str()})).map_err(|e| e.to_string())?;
    let (status, answer) = call(client, namespace, pod, "", http::Method::POST, "v1/prove", Some(body), PROVE_TIMEOUT).await?;
    if !status.is_success() {
        return Err(format!("pod {pod} cannot prove it is a receiver: {}", failure(status, &answer)));
    }
    let proofs: Vec<&str> = answer["proofs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let held = token.values.iter().find(|value| {
        let expected = fusionhook_receiver::admin::proof(value.as_bytes(), pod, &nonce);
        proofs.iter().any(|p| *p == expected)
    });
    match held {
        Some(value) => Ok(Proven { pod: pod.to_owned(), token: value.clone() }),
        None => Err(format!(
            "pod {pod} carries the receiver's labels but does not hold its admin token (Secret {}): it is not one of its receivers, so nothing is sent to it",
            token.secret
        )),
    }
}

/// How long a proof may take.
const PROVE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /v1/stats` of a proven pod: what its store holds (`null` figures:
/// it cannot be read) and, while it cannot commit, why (`storeProblem`).
/// The error is a sentence for a condition.
pub async fn stats(client: &Client, namespace: &str, pod: &Proven) -> Result<Value, String> {
    let (status, value) =
        call(client, namespace, &pod.pod, &pod.token, http::Method::GET, "v1/stats", None, Duration::from_secs(5)).await?;
    if status.is_success() {
        return Ok(value);
    }
    Err(failure(status, &value))
}

/// `POST /v1/ingest` of `event` (the body FusionAuth sent) to a proven pod
/// (with the ingest token): the receiver's outcome (`handled`, `stored`,
/// `duplicate`, `unmatched`), or why not.
pub async fn ingest(client: &Client, namespace: &str, pod: &Proven, event: Vec<u8>) -> Result<String, Refusal> {
    let call = call(client, namespace, &pod.pod, &pod.token, http::Method::POST, "v1/ingest", Some(event), INGEST_TIMEOUT).await;
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
    let mut builder = http::Request::builder().method(method).uri(uri);
    if !token.is_empty() {
        builder = builder.header(fusionhook_receiver::admin::TOKEN_HEADER, token);
    }
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

/// The label selector of resource `resource`'s receiver pods.
pub fn selector(resource: &str) -> String {
    format!("app.kubernetes.io/instance={resource},app.kubernetes.io/managed-by={}", names::FIELD_MANAGER)
}

/// Whether pod `pod` is Ready.
pub fn ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Why the store of a receiver pod that is not ready cannot commit, as the
/// pod itself says (`storeProblem`; at most two not-ready pods are asked).
/// `None` when no pod says so, or none can be asked.
pub async fn store_problem(client: &Client, namespace: &str, resource: &str) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api.list(&kube::api::ListParams::default().labels(&selector(resource))).await.ok()?;
    let token = token(client, namespace, resource, AdminScope::Read).await.ok()??;
    let not_ready = pods.items.iter().filter(|p| !ready(p));
    for pod in not_ready.take(2) {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let Ok(proven) = prove(client, namespace, name, &token).await else { continue };
        if let Ok(stats) = stats(client, namespace, &proven).await
            && let Some(problem) = stats["storeProblem"].as_str()
        {
            return Some(format!("pod {name} is not ready: its store cannot commit: {problem}"));
        }
    }
    None
}

//! The one client of a receiver's admin API, for the operator and the
//! plugin: through the API server's pod proxy (`pods/<pod>:8081/proxy/…`,
//! RBAC `pods/proxy` get and create), the way `kubectl` reaches a pod
//! without exposing it.
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
use serde_json::Value;

use std::time::Duration;

use crate::admin::{Challenge, PORT, Proofs, TOKEN_HEADER, proof};
use crate::names::{self, AdminScope, STORE_LABEL, admin_token};

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
    let challenge = Challenge { nonce: nonce.clone(), scope: token.scope.as_str().to_owned() };
    let body = serde_json::to_vec(&challenge).map_err(|e| e.to_string())?;
    let request = Call::new(&super::PROVE.route(), "").body(body).timeout(PROVE_TIMEOUT);
    let (status, answer) = call(client, namespace, pod, request).await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("pod {pod} cannot prove it is a receiver: {}", failure(status, &answer)));
    }
    let proofs = serde_json::from_value::<Proofs>(answer).map(|p| p.proofs).unwrap_or_default();
    let held = token.values.iter().find(|value| {
        let expected = proof(value.as_bytes(), pod, &nonce);
        proofs.contains(&expected)
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
    let request = Call::new(&super::STATS.route(), &pod.token).timeout(Duration::from_secs(5));
    let (status, value) = call(client, namespace, &pod.pod, request).await.map_err(|e| e.to_string())?;
    if status.is_success() {
        return Ok(value);
    }
    Err(failure(status, &value))
}

/// `POST /v1/ingest` of `event` (the body FusionAuth sent) to a proven pod
/// (with the ingest token): the receiver's outcome (`handled`, `stored`,
/// `duplicate`, `unmatched`), or why not.
pub async fn ingest(client: &Client, namespace: &str, pod: &Proven, event: Vec<u8>) -> Result<String, Refusal> {
    let request = Call::new(&super::INGEST.route(), &pod.token).body(event).timeout(INGEST_TIMEOUT);
    let (status, value) = call(client, namespace, &pod.pod, request).await.map_err(|e| Refusal::Unreachable(e.to_string()))?;
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

/// The most read of an admin API answer unless a [`Call`] says otherwise
/// (stats, proofs and ingest answers take well under 4 KiB): a receiver
/// pod runs an image the resource names, so a namespace must not make the
/// cluster-wide operator read until it is killed.
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

/// The receiver's message in a refusal (or the API server's), with the status.
pub fn failure(status: http::StatusCode, value: &Value) -> String {
    let message = value["errors"][0]["message"].as_str().or_else(|| value["message"].as_str()).unwrap_or("no message");
    format!("{message} ({status})")
}

/// One admin API call: what to ask, with which token, how long to wait
/// and how much to read.
pub struct Call<'a> {
    method: http::Method,
    /// The path and query, after the pod's proxy prefix (`v1/stats`).
    path: String,
    token: &'a str,
    body: Option<Vec<u8>>,
    timeout: Duration,
    limit: usize,
}

impl<'a> Call<'a> {
    /// `route` with `token` (empty: none), no body, 30 s, [`MAX_ANSWER_BYTES`].
    pub fn new(route: &super::Route, token: &'a str) -> Self {
        let method = match route.endpoint.method {
            super::Method::Get => http::Method::GET,
            super::Method::Post => http::Method::POST,
        };
        Self { method, path: route.path.clone(), token, body: None, timeout: Duration::from_secs(30), limit: MAX_ANSWER_BYTES }
    }

    /// With a query (already encoded: `state=dead&limit=10`; empty: none).
    pub fn query(self, query: &str) -> Self {
        if query.is_empty() {
            return self;
        }
        Self { path: format!("{}?{query}", self.path), ..self }
    }

    /// With a JSON body.
    pub fn body(self, body: Vec<u8>) -> Self {
        Self { body: Some(body), ..self }
    }

    /// Waiting at most `timeout` for the whole answer.
    pub fn timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// Reading at most `limit` bytes of the answer.
    pub fn limit(self, limit: usize) -> Self {
        Self { limit, ..self }
    }
}

/// Why a call got no answer to read.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request could not be built (a path that is not a URI).
    #[error("cannot build the request: {0}")]
    Request(String),
    /// The API server could not be asked, or refused before proxying.
    #[error(transparent)]
    Kubernetes(kube::Error),
    /// The answer was larger than the call's limit.
    #[error("the answer is larger than {} KiB", .0 / 1024)]
    TooLarge(usize),
    /// The answer broke off.
    #[error("reading the answer: {0}")]
    Read(String),
    /// No whole answer in time.
    #[error("no answer within {0} s")]
    Timeout(u64),
}

/// One admin API call to pod `pod` through the pod proxy: status and JSON
/// body (`null` when there is none or it is not JSON).
pub async fn call(client: &Client, namespace: &str, pod: &str, call: Call<'_>) -> Result<(http::StatusCode, Value), CallError> {
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{PORT}/proxy/{}", call.path);
    let mut builder = http::Request::builder().method(call.method).uri(uri);
    if !call.token.trim().is_empty() {
        builder = builder.header(TOKEN_HEADER, call.token.trim());
    }
    let request = match call.body {
        Some(bytes) => builder.header("content-type", "application/json").body(kube::client::Body::from(bytes)),
        None => builder.body(kube::client::Body::empty()),
    }
    .map_err(|e| CallError::Request(e.to_string()))?;
    let limit = call.limit;
    let exchange = async {
        let response = client.send(request).await.map_err(CallError::Kubernetes)?;
        let status = response.status();
        // The pod runs the resource's own image: what it answers is bounded.
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(response.into_body(), limit))
            .await
            .map_err(|e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => CallError::TooLarge(limit),
                None => CallError::Read(e.to_string()),
            })?
            .to_bytes();
        Ok::<_, CallError>((status, body))
    };
    let (status, body) = tokio::time::timeout(call.timeout, exchange).await.map_err(|_| CallError::Timeout(call.timeout.as_secs()))??;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// The ready receiver pods of resource `resource` on the current store
/// (`store`: the value of the store label), by name.
pub async fn ready_pods(client: &Client, namespace: &str, resource: &str, store: &str) -> Result<Vec<String>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{},{STORE_LABEL}={store}", names::receiver_selector(resource));
    let pods = api.list(&kube::api::ListParams::default().labels(&selector)).await?;
    let mut names: Vec<String> = pods.items.iter().filter(|p| ready(p)).filter_map(|p| p.metadata.name.clone()).collect();
    names.sort();
    Ok(names)
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
    let pods = api.list(&kube::api::ListParams::default().labels(&names::receiver_selector(resource))).await.ok()?;
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

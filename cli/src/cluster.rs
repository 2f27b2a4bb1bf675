//! cluster: the Kubernetes side. The user's kubeconfig and context; the
//! resource; the receiver's admin API through the API server's pod proxy
//! (`pods/POD:8081/proxy/…`, RBAC `pods/proxy`), of a pod that proved it
//! holds the admin token of the scope the command needs (the token travels
//! in `X-Fusionhook-Token`: the proxy drops `Authorization`). Errors say
//! what to do.
//!
//! With an embedded store each replica has its own store and its own
//! delivery ids: its admin API is reached pod by pod through the pod proxy
//! (`pods/NAME-receiver-N:8081/proxy/…`, RBAC `pods/proxy`), which also
//! reaches a pod that is not ready (its store may be what is wrong).

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use fusionhook_api::admin::client::{self as receiver_admin, Call, CallError};
use fusionhook_api::admin::{self, Route};
use fusionhook_api::names;
use fusionhook_api::resource::{FusionAuthWebhook, StoreType};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Config};
use serde_json::{Value, json};

/// The most the plugin reads of one admin API answer (a page of 1,000
/// deliveries with their histories takes a few MiB).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// A connection to the cluster, in one namespace.
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// The namespace.
    pub namespace: String,
}

impl Cluster {
    /// From the kubeconfig (`KUBECONFIG` or `~/.kube/config`), `context` or the current one.
    pub async fn connect(context: Option<&str>, namespace: Option<&str>) -> anyhow::Result<Self> {
        let options = kube::config::KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
        let config = match Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            Err(e) => bail!(
                "no usable kubeconfig ({e}): set KUBECONFIG or create ~/.kube/config (kubectl config view shows what kubectl uses){}",
                context.map(|c| format!("; is `{c}` one of `kubectl config get-contexts`?")).unwrap_or_default()
            ),
        };
        let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_owned);
        let mut config = config;
        // A proxy's 503 (no ready pod) is an answer to show, not to retry for half a minute.
        config.default_retry = false;
        let client = Client::try_from(config).context("cannot build a Kubernetes client from the kubeconfig")?;
        Ok(Self { client, namespace })
    }

    fn resources(&self) -> Api<FusionAuthWebhook> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The resource, or an error that says how to find it.
    pub async fn resource(&self, name: &str) -> anyhow::Result<FusionAuthWebhook> {
        match self.resources().get_opt(name).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => bail!(
                "FusionAuthWebhook {name} not found in namespace {}: `kubectl get faw -A` lists them (use -n NAMESPACE)",
                self.namespace
            ),
            Err(e) => Err(explain(e, &format!("read FusionAuthWebhook {name}"), "get fusionauthwebhooks.fusionhook.dev")),
        }
    }

    /// A Secret's key, `None` when it or the key is missing.
    pub async fn secret_key(&self, name: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = api.get_opt(name).await.map_err(|e| explain(e, &format!("read Secret {name}"), "get secrets"))?;
        Ok(secret.and_then(|s| s.data).and_then(|d| d.get(key).map(|v| v.0.clone())))
    }

    /// Where the admin API of resource `name` is called: with an embedded
    /// store each pod of the StatefulSet (running or not, by name), else
    /// the Service (one shared store, or none).
    pub async fn targets(&self, r: &FusionAuthWebhook) -> anyhow::Result<Vec<Target>> {
        let name = r.metadata.name.clone().unwrap_or_default();
        if r.spec.receiver.store.as_ref().map(|s| s.kind) != Some(StoreType::Embedded) {
            return Ok(vec![Target::Service(names::receiver_name(&name))]);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector =
            format!("app.kubernetes.io/instance={name},app.kubernetes.io/managed-by=fusionhook-operator,fusionhook.dev/store=embedded");
        let pods = api.list(&ListParams::default().labels(&selector)).await.map_err(|e| explain(e, "list Pods", "list pods"))?;
        let mut pods: Vec<String> = pods.items.into_iter().filter_map(|p| p.metadata.name).collect();
        pods.sort();
        if pods.is_empty() {
            bail!("no receiver pod of {name} exists: kubectl fusionhook status {name}");
        }
        Ok(pods.into_iter().map(Target::Pod).collect())
    }

    /// A call to the admin API of resource `name`'s receivers at `target`;
    /// the JSON answer, or an error with the receiver's message.
    pub async fn admin(
        &self,
        name: &str,
        target: &Target,
        route: &Route,
        query: &[(String, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.admin_raw(name, target, route, query, body).await?;
        if status.is_success() {
            return Ok(value);
        }
        let message = value["errors"][0]["message"].as_str().or_else(|| value["message"].as_str()).map(str::to_owned);
        match (status.as_u16(), message) {
            (409, Some(m)) => bail!("{m} (the receiver has no durable store: set spec.receiver.store)"),
            (_, Some(m)) => bail!("the receiver's admin API answered {status}: {m}"),
            (_, None) => bail!("the receiver's admin API answered {status}"),
        }
    }

    /// As [`Cluster::admin`], with the status whatever it is.
    pub async fn admin_raw(
        &self,
        name: &str,
        target: &Target,
        route: &Route,
        query: &[(String, String)],
        body: Option<Value>,
    ) -> anyhow::Result<(http::StatusCode, Value)> {
        // The least scope the call needs: its own Secret, which the
        // person's RBAC may or may not let them read.
        self.admin_as(name, target, route.scope(), route, query, body).await
    }

    /// As [`Cluster::admin_raw`], with the token of `scope` (every scope may read).
    #[allow(clippy::too_many_arguments)]
    pub async fn admin_as(
        &self,
        name: &str,
        target: &Target,
        scope: names::AdminScope,
        route: &Route,
        query: &[(String, String)],
        body: Option<Value>,
    ) -> anyhow::Result<(http::StatusCode, Value)> {
        let secret = names::admin_secret_name(name, scope);
        let token = receiver_admin::token(&self.client, &self.namespace, name, scope)
            .await
            .map_err(|e| explain(e, &format!("read Secret {secret}"), "get secrets"))?
            .ok_or_else(|| {
                anyhow!(
                    "no admin token in Secret {secret}: the operator has not got {name} that far (an invalid spec, a missing Secret, or it is not running): kubectl fusionhook status {name}"
                )
            })?;
        // A pod shows it holds the token before it is shown one (a pod that
        // only carries the receiver's labels learns nothing). A Service may
        // send each call to another pod, so no proof binds there: with a
        // shared store (or none) any receiver pod answers alike, and the
        // first ready one that proves itself is called through the pod proxy.
        let (pod, proven) = match target {
            Target::Pod(pod) => (pod.clone(), self.prove(pod, &token).await?),
            Target::Service(_) => self.proven_ready_pod(name, &token).await?,
        };
        self.admin_call(name, &pod, route, query, body.as_ref(), proven.token()).await
    }

    /// Asks pod `pod` to prove it holds `token` (see `receiver_admin::prove`).
    async fn prove(&self, pod: &str, token: &receiver_admin::Token) -> anyhow::Result<receiver_admin::Proven> {
        receiver_admin::prove(&self.client, &self.namespace, pod, token).await.map_err(|e| {
            if e.contains("(403") {
                anyhow!(
                    "the API server refused the proxy to pod {pod} (403): you need RBAC `get` and `create` on `pods/proxy` in namespace {}",
                    self.namespace
                )
            } else {
                anyhow!(e)
            }
        })
    }

    /// The first ready receiver pod of resource `name` (by name) that
    /// proves it holds `token`.
    async fn proven_ready_pod(&self, name: &str, token: &receiver_admin::Token) -> anyhow::Result<(String, receiver_admin::Proven)> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = names::receiver_selector(name);
        let pods = api.list(&ListParams::default().labels(&selector)).await.map_err(|e| explain(e, "list Pods", "list pods"))?;
        let mut ready: Vec<String> =
            pods.items.iter().filter(|p| receiver_admin::ready(p)).filter_map(|p| p.metadata.name.clone()).collect();
        ready.sort();
        if ready.is_empty() {
            bail!("no ready receiver pod of {name}: kubectl fusionhook status {name}");
        }
        let mut refused = Vec::new();
        for pod in ready {
            match self.prove(&pod, token).await {
                Ok(proven) => return Ok((pod, proven)),
                Err(e) if e.to_string().contains("(403)") => return Err(e),
                Err(e) => refused.push(e.to_string()),
            }
        }
        bail!("no ready pod of {name} proved it is one of its receivers: {}", refused.join("; "))
    }

    /// One admin API call with `token` (the shared client, with the
    /// plugin's limits and its words for what went wrong).
    #[allow(clippy::too_many_arguments)]
    async fn admin_call(
        &self,
        name: &str,
        pod: &str,
        route: &Route,
        query: &[(String, String)],
        body: Option<&Value>,
        token: &str,
    ) -> anyhow::Result<(http::StatusCode, Value)> {
        let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let mut call = Call::new(route, token).query(&pairs.join("&")).limit(MAX_ANSWER_BYTES);
        if let Some(body) = body {
            call = call.body(serde_json::to_vec(body)?);
        }
        let (status, value) = receiver_admin::call(&self.client, &self.namespace, pod, call).await.map_err(|e| match e {
            CallError::Kubernetes(e) => explain(e, &format!("reach the admin API of pod {pod}"), "get and create on pods/proxy"),
            CallError::TooLarge(limit) => anyhow!("the admin API of pod {pod} answered more than {} MiB", limit / (1024 * 1024)),
            CallError::Timeout(seconds) => anyhow!("the receiver's admin API did not answer within {seconds} s"),
            other => anyhow!("the admin API of pod {pod}: {other}"),
        })?;
        let from_api_server = value["kind"] == "Status";
        if status == http::StatusCode::FORBIDDEN && from_api_server {
            bail!(
                "the API server refused the proxy to pod {pod} (403): you need RBAC `get` and `create` on `pods/proxy` in namespace {}",
                self.namespace
            );
        }
        if status == http::StatusCode::SERVICE_UNAVAILABLE && from_api_server {
            bail!("pod {pod} does not answer: kubectl fusionhook status {name}");
        }
        Ok((status, value))
    }

    /// Sets the reconcile annotation and, with `wait`, waits until the
    /// operator recorded that it handled it; the resource's Ready then.
    pub async fn reconcile(&self, name: &str, wait: bool, timeout: Duration) -> anyhow::Result<Value> {
        self.resource(name).await?;
        let requested = k8s_openapi::jiff::Timestamp::now().to_string();
        self.annotate(name, names::RECONCILE_ANNOTATION, &requested).await?;
        if !wait {
            return Ok(json!({"requested": requested, "handled": false}));
        }
        // Done once the operator handled our request or a later one (another
        // user's: the operator copies the annotation it read).
        let ours: Timestamp = requested.parse()?;
        let r = self
            .wait_for(name, timeout, |r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.handled_reconcile_request.as_deref())
                    .and_then(|h| h.parse::<Timestamp>().ok())
                    .is_some_and(|handled| handled >= ours)
            })
            .await?;
        let ready = r.status.iter().flat_map(|s| &s.conditions).find(|c| c.type_ == "Ready").cloned();
        Ok(json!({
            "requested": requested,
            "handled": true,
            "ready": ready.as_ref().map(|c| c.status.clone()),
            "reason": ready.as_ref().map(|c| c.reason.clone()),
            "message": ready.as_ref().map(|c| c.message.clone()),
        }))
    }

    /// Asks for one backfill pass from `since` ago and waits for its result.
    pub async fn backfill(&self, name: &str, since: Duration, timeout: Duration) -> anyhow::Result<Value> {
        self.resource(name).await?;
        let now = k8s_openapi::jiff::Timestamp::now();
        let from = now.checked_sub(k8s_openapi::jiff::SignedDuration::try_from(since)?)?;
        let request = format!("{from}/{now}");
        self.annotate(name, names::BACKFILL_ANNOTATION, &request).await?;
        let handled = |r: &FusionAuthWebhook| {
            r.status.as_ref().and_then(|s| s.backfill.as_ref()).and_then(|b| b.handled_request.as_deref()) == Some(request.as_str())
        };
        let r = self.wait_for(name, timeout, |r| handled(r) || blocked(r).is_some()).await?;
        if !handled(&r) {
            bail!(
                "the operator runs a requested pass once the receiver is available and the webhook registered; now: {} (kubectl fusionhook status {name})",
                blocked(&r).unwrap_or_default()
            );
        }
        let backfill = r.status.and_then(|s| s.backfill).unwrap_or_default();
        let result = backfill.last_request_result.unwrap_or_default();
        // An operator from before these fields: its summary's first word.
        let ok = backfill.last_request_succeeded.unwrap_or_else(|| result.starts_with("handed "));
        Ok(json!({"since": from.to_string(), "result": result, "ok": ok, "complete": backfill.last_request_complete == Some(true)}))
    }

    async fn annotate(&self, name: &str, key: &str, value: &str) -> anyhow::Result<()> {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.resources()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| explain(e, &format!("annotate FusionAuthWebhook {name}"), "patch fusionauthwebhooks.fusionhook.dev"))?;
        Ok(())
    }

    async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&FusionAuthWebhook) -> bool,
    ) -> anyhow::Result<FusionAuthWebhook> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.resource(name).await?;
            if done(&r) {
                return Ok(r);
            }
            if r.metadata.deletion_timestamp.is_some() {
                let ready = r.status.iter().flat_map(|s| &s.conditions).find(|c| c.type_ == "Ready").map(|c| c.message.clone());
                bail!("{name} is being deleted: {}", ready.unwrap_or_else(|| "the operator is removing it".into()));
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator did not handle the request within {}: is it running? (kubectl get leases -A | grep fusionhook-operator names its leader pod)",
                    humantime::format_duration(timeout)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Sends `event` (the `{"event": …}` body) through the receiver's
    /// routes (admin `POST /v1/ingest`), then, with a store, waits up to
    /// `timeout` for its deliveries to settle.
    pub async fn send(&self, name: &str, event: &Value, timeout: Duration) -> anyhow::Result<Value> {
        let r = self.resource(name).await?;
        // One pod: the outcome is asked where the event was stored.
        let target = self.targets(&r).await?.remove(0);
        let id = event["event"]["id"].as_str().unwrap_or_default().to_owned();
        let (status, answer) = self.admin_raw(name, &target, &admin::INGEST.route(), &[], Some(event.clone())).await?;
        let mut outcome = json!({"eventId": id, "type": event["event"]["type"], "status": status.as_u16(), "answer": answer});
        if answer["outcome"] != "stored" {
            return Ok(outcome);
        }
        let deadline = Instant::now() + timeout;
        loop {
            // With the ingest token `send` already holds (it may read too).
            let route = admin::EVENT.route_to(&encode(&id));
            let (status, view) = self.admin_as(name, &target, names::AdminScope::Ingest, &route, &[], None).await?;
            let deliveries = view["deliveries"].as_array().cloned().unwrap_or_default();
            let settled = status.is_success() && !deliveries.is_empty() && deliveries.iter().all(|d| d["state"] != "pending");
            if settled || Instant::now() > deadline {
                outcome["deliveries"] = Value::Array(deliveries);
                outcome["settled"] = json!(settled);
                return Ok(outcome);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Where an admin API call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The receiver Service (any ready pod).
    Service(String),
    /// One pod.
    Pod(String),
}

impl Target {
    /// The pod's name (`None` for the Service).
    pub fn pod(&self) -> Option<&str> {
        match self {
            Self::Pod(p) => Some(p),
            Self::Service(_) => None,
        }
    }
}

/// Why a requested backfill pass cannot run now: the first of the
/// receiver's and the webhook's conditions that is False.
fn blocked(r: &FusionAuthWebhook) -> Option<String> {
    let conditions = r.status.iter().flat_map(|s| &s.conditions);
    let failing = conditions.filter(|c| ["ReceiverAvailable", "WebhookRegistered", "SecretsResolved"].contains(&c.type_.as_str()));
    failing.filter(|c| c.status == "False").map(|c| format!("{} is False ({}): {}", c.type_, c.reason, c.message)).next()
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Kubernetes error in words: what failed and, for 401/403, which permission is missing.
pub fn explain(e: kube::Error, what: &str, permission: &str) -> anyhow::Error {
    match &e {
        kube::Error::Api(status) if status.code == 403 => {
            anyhow!("cannot {what}: forbidden; you need RBAC `{permission}` ({})", status.message)
        }
        kube::Error::Api(status) if status.code == 401 => {
            anyhow!("cannot {what}: the API server does not accept your credentials (401); log in again or check the kubeconfig's user")
        }
        _ => anyhow!("cannot {what}: {e}"),
    }
}

//! receiver_admin: the operator as a client of a receiver's admin API,
//! through the API server's pod proxy (`pods/<pod>:8081/proxy/…`, RBAC
//! `pods/proxy` get), the way `kubectl` reaches a pod without exposing it.
//! The token is the one the operator generated into its own Secret; the
//! proxy drops `Authorization` (the caller's credential for the API
//! server), so it travels in the admin API's own header.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client};
use serde_json::Value;

use crate::names;
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
    let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{ADMIN_PORT}/proxy/v1/stats");
    let request =
        http::Request::get(path).header("x-fusionhook-token", token).body(kube::client::Body::empty()).map_err(|e| e.to_string())?;
    let call = async {
        let response = client.send(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.into_body().collect_bytes().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, body))
    };
    let (status, body) =
        tokio::time::timeout(std::time::Duration::from_secs(5), call).await.map_err(|_| "no answer within 5 s".to_owned())??;
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let message = value["errors"][0]["message"].as_str().or_else(|| value["message"].as_str()).unwrap_or("no message");
    Err(format!("{message} ({status})"))
}

/// Why the store of a receiver pod that is not ready cannot commit, as the
/// pod itself says (`storeProblem`; at most two not-ready pods are asked).
/// `None` when no pod says so, or none can be asked.
pub async fn store_problem(client: &Client, namespace: &str, resource: &str) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("app.kubernetes.io/instance={resource},app.kubernetes.io/managed-by={}", names::FIELD_MANAGER);
    let pods = api.list(&kube::api::ListParams::default().labels(&selector)).await.ok()?;
    let token = token(client, namespace, resource).await.ok()??;
    let not_ready = pods.items.iter().filter(|p| {
        let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
        !conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
    });
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

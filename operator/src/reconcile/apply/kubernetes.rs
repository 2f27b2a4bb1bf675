//! The Kubernetes half of apply: server-side apply the receiver objects
//! with one field manager, tell where their rollout stands, and patch the
//! status subresource.
//!
//! Each applied object carries a hash of what we applied; an object whose
//! hash already matches is not applied again, so a resync over unchanged
//! resources makes no Kubernetes write.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::names;
use crate::reconcile::build::{ReceiverObjects, Workload};
use crate::resource::{FusionAuthWebhook, FusionAuthWebhookStatus};

/// Annotation with the hash of the object as last applied by us.
pub const APPLIED_HASH_ANNOTATION: &str = "fusionhook.dev/applied-hash";

fn hash_of<T: Serialize>(object: &T) -> String {
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    Sha256::digest(&bytes).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn already_applied<T: Resource>(observed: Option<&T>, hash: &str) -> bool {
    observed.and_then(|o| o.meta().annotations.as_ref()).and_then(|a| a.get(APPLIED_HASH_ANNOTATION)).is_some_and(|h| h == hash)
}

/// Server-side applies `desired` (field manager [`names::FIELD_MANAGER`],
/// forced) unless `observed` shows it was applied as is. Returns the object
/// as the API server has it, or `None` when nothing was written.
async fn apply_one<T>(api: &Api<T>, mut desired: T, observed: Option<&T>) -> Result<Option<T>, kube::Error>
where
    T: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let hash = hash_of(&desired);
    if already_applied(observed, &hash) {
        return Ok(None);
    }
    desired.meta_mut().annotations.get_or_insert_with(Default::default).insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
    let name = desired.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&desired)).await.map(Some)
}

/// What the receiver objects look like now (from the controller's caches).
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// The generated `Authorization` Secret.
    pub secret: Option<Secret>,
    /// The admin tokens' Secrets, by name.
    pub admin_secrets: std::collections::BTreeMap<String, Secret>,
    /// The config.
    pub config_map: Option<ConfigMap>,
    /// The Deployment.
    pub deployment: Option<Deployment>,
    /// The StatefulSet.
    pub stateful_set: Option<StatefulSet>,
    /// The Service.
    pub service: Option<Service>,
    /// The StatefulSet's headless Service.
    pub pods_service: Option<Service>,
}

/// What applying the receiver objects did.
#[derive(Debug, Default)]
pub struct ReceiverApplied {
    /// Where the workload's rollout stands (applied or observed).
    pub rollout: Option<Rollout>,
    /// Kinds written (empty when everything was applied as is already).
    pub written: Vec<&'static str>,
}

/// Deletes one object (gone already is fine).
pub async fn delete_one<T>(api: &Api<T>, name: &str) -> Result<(), kube::Error>
where
    T: Resource + DeserializeOwned + Clone + std::fmt::Debug,
{
    match api.delete(name, &kube::api::DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A workload kind's API, what the cache shows of it, its kind's name.
type Kind<'a, T> = (&'a Api<T>, Option<&'a T>, &'static str);

/// Applies `desired` (the workload of `wanted`'s kind) after deleting the
/// workload of the `other` kind, if one is given: the store type changed
/// (an old StatefulSet is not given here: `old_store` removes it once it
/// is drained). Returns the applied object (`None`: unchanged).
async fn apply_workload<T, O>(
    wanted: Kind<'_, T>,
    desired: T,
    other: Option<Kind<'_, O>>,
    written: &mut Vec<&'static str>,
) -> Result<Option<T>, kube::Error>
where
    T: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
    O: Resource + DeserializeOwned + Clone + std::fmt::Debug,
{
    let (api, observed, kind) = wanted;
    if let Some((other_api, Some(other_observed), other_kind)) = other
        && let Some(name) = other_observed.meta().name.clone()
    {
        delete_one(other_api, &name).await?;
        written.push(other_kind);
    }
    let applied = apply_one(api, desired, observed).await?;
    if applied.is_some() {
        written.push(kind);
    }
    Ok(applied)
}

/// Applies the receiver objects: the operator's Secret (when it holds
/// anything or exists), ConfigMap, Service, the headless Service and the
/// Deployment or StatefulSet.
pub async fn apply_receiver(
    client: &Client,
    namespace: &str,
    desired: &ReceiverObjects,
    observed: &Observed,
) -> Result<ReceiverApplied, kube::Error> {
    let mut written = Vec::new();
    apply_secrets(client, namespace, desired, observed, &mut written).await?;
    // A new pod template names a config version the cache may still show
    // as present after it was deleted (watch lag; an older version comes
    // back when a change is undone): then it is applied regardless.
    let template_changes = match &desired.workload {
        Workload::Deployment(d) => !already_applied(observed.deployment.as_ref(), &hash_of(d)),
        Workload::StatefulSet(s) => !already_applied(observed.stateful_set.as_ref(), &hash_of(s)),
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config_observed = if template_changes { None } else { observed.config_map.as_ref() };
    if apply_one(&api, desired.config_map.clone(), config_observed).await?.is_some() {
        written.push("ConfigMap");
    }
    apply_services(client, namespace, desired, observed, &mut written).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let rollout = match &desired.workload {
        Workload::Deployment(d) => {
            let wanted = (&deployments, observed.deployment.as_ref(), "Deployment");
            let applied = apply_workload::<_, StatefulSet>(wanted, (**d).clone(), None, &mut written).await?;
            rollout(applied.as_ref().or(observed.deployment.as_ref()), d.metadata.name.as_deref().unwrap_or_default())
        }
        Workload::StatefulSet(s) => {
            let wanted = (&stateful_sets, observed.stateful_set.as_ref(), "StatefulSet");
            let other = (&deployments, observed.deployment.as_ref(), "Deployment");
            let applied = apply_workload(wanted, (**s).clone(), Some(other), &mut written).await?;
            stateful_rollout(applied.as_ref().or(observed.stateful_set.as_ref()), s.metadata.name.as_deref().unwrap_or_default())
        }
    };
    Ok(ReceiverApplied { rollout: Some(rollout), written })
}

/// The operator's Secret (when it holds anything or exists) and the admin
/// tokens' Secrets.
async fn apply_secrets(
    client: &Client,
    namespace: &str,
    desired: &ReceiverObjects,
    observed: &Observed,
    written: &mut Vec<&'static str>,
) -> Result<(), kube::Error> {
    let holds_anything = desired.kept_secret.data.as_ref().is_some_and(|d| !d.is_empty());
    if holds_anything || observed.secret.is_some() {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        if apply_one(&api, desired.kept_secret.clone(), observed.secret.as_ref()).await?.is_some() {
            written.push("Secret");
        }
    }
    for secret in &desired.admin_secrets {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let observed = secret.metadata.name.as_ref().and_then(|name| observed.admin_secrets.get(name));
        if apply_one(&api, secret.clone(), observed).await?.is_some() {
            written.push("Secret");
        }
    }
    Ok(())
}

/// The receiver's Service and, for a StatefulSet, its headless Service
/// (kept while an old StatefulSet drains: it is its serviceName).
async fn apply_services(
    client: &Client,
    namespace: &str,
    desired: &ReceiverObjects,
    observed: &Observed,
    written: &mut Vec<&'static str>,
) -> Result<(), kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    if apply_one(&api, desired.service.clone(), observed.service.as_ref()).await?.is_some() {
        written.push("Service");
    }
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    match &desired.pods_service {
        Some(pods) => {
            if apply_one(&services, pods.clone(), observed.pods_service.as_ref()).await?.is_some() {
                written.push("Service");
            }
        }
        // Kept while an old StatefulSet drains (it is its serviceName).
        None if observed.stateful_set.is_some() => {}
        None => {
            if let Some(name) = observed.pods_service.as_ref().and_then(|s| s.metadata.name.clone()) {
                delete_one(&services, &name).await?;
                written.push("Service");
            }
        }
    }
    Ok(())
}

/// Applies the operator's own Secret alone (see `reconcile`: the kept
/// signing key copy, right after FusionAuth switched).
pub async fn apply_kept_secret(client: &Client, namespace: &str, secret: Secret) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    apply_one(&api, secret, None).await.map(drop)
}

/// Deletes a ConfigMap (gone already is fine).
pub async fn delete_config_map(client: &Client, namespace: &str, name: &str) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &kube::api::DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the Deployment has finished rolling out its current template:
/// every replica updated and available, as observed by the controller.
pub fn rolled_out(deployment: Option<&Deployment>) -> bool {
    let Some(d) = deployment else { return false };
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else { return false };
    let updated = status.updated_replicas.unwrap_or(0);
    // As `kubectl rollout status`: every replica updated, no old one left
    // (`replicas` counts old and new pods; with a surge, `available` may
    // still count an old pod while a new one is not ready), all available.
    status.observed_generation >= d.metadata.generation
        && updated >= wanted
        && status.replicas.unwrap_or(0) <= updated
        && status.available_replicas.unwrap_or(0) >= updated
}

/// Where the receiver's Deployment stands, for `ReceiverAvailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// The current template is rolled out: every replica updated and available.
    Done,
    /// Still rolling out (or nothing available yet); says how far.
    Waiting(String),
    /// The Deployment controller gave up (`ProgressDeadlineExceeded`): new
    /// pods do not become ready, while old ones may still serve.
    Stuck(String),
}

/// Pure: the rollout of `deployment`, the receiver of `name`. An old
/// replica still answering is not enough: new pods that cannot start (a bad
/// image, a config they refuse) must show, not hide behind it.
pub fn rollout(deployment: Option<&Deployment>, name: &str) -> Rollout {
    let Some(d) = deployment else { return Rollout::Waiting(format!("Deployment {name} does not exist yet")) };
    let status = d.status.clone().unwrap_or_default();
    let stuck = status.conditions.iter().flatten().find(|c| c.type_ == "Progressing" && c.status == "False");
    if let Some(condition) = stuck {
        let reason = condition.reason.as_deref().unwrap_or("NotProgressing");
        let message = condition.message.as_deref().unwrap_or("");
        return Rollout::Stuck(format!(
            "Deployment {name} is not progressing ({reason}): {message}; `kubectl describe` its newest pods for the cause"
        ));
    }
    if rolled_out(Some(d)) {
        return Rollout::Done;
    }
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    Rollout::Waiting(format!(
        "Deployment {name} is rolling out: {} of {wanted} replicas updated, {} available",
        status.updated_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0)
    ))
}

/// Pure: the rollout of the StatefulSet `name` (as `kubectl rollout
/// status`: the controller saw the current spec, every replica is on the
/// update revision and ready).
pub fn stateful_rollout(stateful_set: Option<&StatefulSet>, name: &str) -> Rollout {
    let Some(s) = stateful_set else { return Rollout::Waiting(format!("StatefulSet {name} does not exist yet")) };
    let status = s.status.clone().unwrap_or_default();
    let wanted = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let seen = status.observed_generation >= s.metadata.generation;
    let revision_done = status.update_revision.is_none() || status.current_revision == status.update_revision;
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    if seen && revision_done && updated >= wanted && ready >= wanted && status.replicas <= wanted {
        return Rollout::Done;
    }
    Rollout::Waiting(format!("StatefulSet {name} is rolling out: {updated} of {wanted} replicas updated, {ready} ready"))
}

/// The pods the receiver's Service selects (`selector`) that may still
/// serve and run another config version than `config_map` (see
/// [`other_versions`]): a workload's status stops counting a pod once it is
/// being deleted, but the pod serves on through its shutdown delay and a
/// client's view of the endpoints lags behind. One list call; none with an
/// empty selector (it would list the namespace).
pub async fn pods_of_other_versions(
    client: &Client,
    namespace: &str,
    selector: &std::collections::BTreeMap<String, String>,
    config_map: &str,
) -> Result<Vec<String>, kube::Error> {
    if selector.is_empty() {
        return Ok(Vec::new());
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let labels = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let pods = api.list(&kube::api::ListParams::default().labels(&labels)).await?;
    Ok(other_versions(&pods.items, config_map, k8s_openapi::jiff::Timestamp::now()))
}

/// How long past its deletion deadline a terminating pod is taken to be
/// stuck on a node that is gone (it serves nothing; only a force delete
/// removes it).
const STUCK_TERMINATING_SECONDS: i64 = 60;

/// Pure: `pods` that mount another config version than `config_map` and
/// may still serve, each with what it is: terminating, or owned by no
/// workload. Finished pods (`Failed`, `Succeeded`: evicted, shut down) and
/// pods terminating for a minute past their deadline serve nothing.
pub fn other_versions(pods: &[Pod], config_map: &str, now: k8s_openapi::jiff::Timestamp) -> Vec<String> {
    let current = |pod: &Pod| {
        let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
        volumes.filter_map(|v| v.config_map.as_ref()).any(|c| c.name == config_map)
    };
    let finished = |pod: &Pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Failed" || p == "Succeeded");
    let stuck =
        |pod: &Pod| pod.metadata.deletion_timestamp.as_ref().is_some_and(|t| now.as_second() - t.0.as_second() > STUCK_TERMINATING_SECONDS);
    pods.iter()
        .filter(|p| !current(p) && !finished(p) && !stuck(p))
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            if p.metadata.deletion_timestamp.is_some() {
                format!("{name} (terminating)")
            } else if p.metadata.owner_references.as_ref().is_none_or(Vec::is_empty) {
                format!("{name} (no workload owns it)")
            } else {
                name
            }
        })
        .collect()
}

/// Why the receiver's pods do not become ready, from their status (one
/// list call, made only for a stuck rollout): the first container that
/// waits or last ended with a reason, e.g. `pod todo-receiver-7d-x: container
/// receiver CrashLoopBackOff (last exit 2, Error)`.
pub async fn pod_trouble(client: &Client, namespace: &str, instance: &str) -> Result<Option<String>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("app.kubernetes.io/instance={instance},app.kubernetes.io/managed-by={}", names::FIELD_MANAGER);
    let pods = api.list(&kube::api::ListParams::default().labels(&selector)).await?;
    Ok(pods.items.iter().find_map(trouble_of))
}

fn trouble_of(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    let statuses = status.container_statuses.iter().flatten();
    let describe = |c: &k8s_openapi::api::core::v1::ContainerStatus| {
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref())?;
        let reason = waiting.reason.as_deref()?;
        let last = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| format!(" (last exit {}, {})", t.exit_code, t.reason.as_deref().unwrap_or("terminated")));
        let message: String = waiting.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default().chars().take(200).collect();
        Some(format!("pod {name}: container {} {reason}{}{message}", c.name, last.unwrap_or_default()))
    };
    statuses.filter_map(describe).next().or_else(|| {
        let unschedulable = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
        Some(format!(
            "pod {name}: not scheduled ({}): {}",
            unschedulable.reason.as_deref().unwrap_or("?"),
            unschedulable.message.as_deref().unwrap_or("")
        ))
    })
}

/// One merge patch of the status subresource; skipped when unchanged.
pub async fn patch_status(
    api: &Api<FusionAuthWebhook>,
    resource: &FusionAuthWebhook,
    status: &FusionAuthWebhookStatus,
) -> Result<bool, kube::Error> {
    if resource.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let name = resource.metadata.name.clone().unwrap_or_default();
    // A merge patch leaves out what is absent; name the emptied fields as
    // null so that, e.g., tenant switches turned off leave the status too.
    let mut body = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    if let Some(fields) = body.as_object_mut() {
        for key in ["observedGeneration", "fusionAuthUrl", "webhookId", "url", "signingKeyId", "enabledTenantEvents", "conditions"] {
            fields.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    let patch = serde_json::json!({ "status": body });
    // Under the operator's own name, so a status field someone else wrote is
    // told apart by its manager (see cleanup's `registered_url`).
    let params = PatchParams { field_manager: Some(names::FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    api.patch_status(&name, &params, &Patch::Merge(&patch)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "r", "generation": generation}, "spec": {"replicas": 2, "selector": {}, "template": {}}, "status": status}))
            .unwrap()
    }

    #[test]
    fn a_pod_of_an_earlier_config_version_is_found_even_while_it_terminates() {
        let pod = |name: &str, config: &str, extra: serde_json::Value| -> Pod {
            let mut pod = serde_json::json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"}]},
                "spec": {"containers": [], "volumes": [{"name": "config", "configMap": {"name": config}}, {"name": "secrets", "projected": {"sources": []}}]}});
            json_patch::merge(&mut pod, &extra);
            serde_json::from_value(pod).unwrap()
        };
        let now: k8s_openapi::jiff::Timestamp = "2026-12-06T21:00:00Z".parse().unwrap();
        let deleting = |at: &str| serde_json::json!({"metadata": {"deletionTimestamp": at}});
        let pods = [
            pod("new-a", "hook-receiver-b2", serde_json::json!({})),
            pod("old-a", "hook-receiver-a1", deleting("2026-12-06T21:00:25Z")),
            pod("new-b", "hook-receiver-b2", deleting("2026-12-06T21:00:25Z")),
            pod("old-b", "hook-receiver-a1", serde_json::json!({})),
            pod("rogue", "", serde_json::json!({"metadata": {"ownerReferences": null}})),
            pod("evicted", "hook-receiver-a1", serde_json::json!({"status": {"phase": "Failed"}})),
            pod("lost-node", "hook-receiver-a1", deleting("2026-12-06T20:58:00Z")),
        ];
        assert_eq!(other_versions(&pods, "hook-receiver-b2", now), ["old-a (terminating)", "old-b", "rogue (no workload owns it)"]);
        assert_eq!(other_versions(&pods[..1], "hook-receiver-b2", now), Vec::<String>::new());
    }

    #[test]
    fn an_old_replica_serving_is_not_a_rolled_out_receiver() {
        let done = deployment(3, serde_json::json!({"observedGeneration": 3, "updatedReplicas": 2, "availableReplicas": 2}));
        assert_eq!(rollout(Some(&done), "r"), Rollout::Done);
        // A new template: the old pods still answer, the new ones are not there yet.
        // Surge: two new pods exist, one not ready; an old one still counts as available.
        let surging =
            deployment(4, serde_json::json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}));
        assert!(matches!(rollout(Some(&surging), "r"), Rollout::Waiting(_)), "an old pod still serves");
        let rolling = deployment(4, serde_json::json!({"observedGeneration": 4, "updatedReplicas": 1, "availableReplicas": 2}));
        assert_eq!(
            rollout(Some(&rolling), "r"),
            Rollout::Waiting("Deployment r is rolling out: 1 of 2 replicas updated, 2 available".into())
        );
        let unseen = deployment(5, serde_json::json!({"observedGeneration": 4, "updatedReplicas": 2, "availableReplicas": 2}));
        assert!(matches!(rollout(Some(&unseen), "r"), Rollout::Waiting(_)), "the controller has not seen the new template yet");
        let stuck = deployment(
            4,
            serde_json::json!({"observedGeneration": 4, "updatedReplicas": 1, "availableReplicas": 2, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"r-7d\" has timed out progressing."}
            ]}),
        );
        let Rollout::Stuck(message) = rollout(Some(&stuck), "r") else { panic!("stuck") };
        assert!(message.contains("ProgressDeadlineExceeded") && message.contains("timed out progressing"), "{message}");
        assert!(matches!(rollout(None, "r"), Rollout::Waiting(_)));
    }
}

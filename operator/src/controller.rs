//! The watch loop: a kube-runtime Controller over `FusionAuthWebhook`
//! resources that also watches what they own (Deployments, ConfigMaps and
//! Services labelled as managed by the operator) and the Secrets they
//! reference, so a rotated API key or `Authorization` value is picked up
//! without touching the resource.
//!
//! ConfigMaps, Services and Secrets are watched by metadata only: the operator never caches Secret
//! data; it reads the few Secrets a resource references when reconciling it.
//! Of every Secret in the watched namespaces it keeps only what the mapping
//! and its own apply need ([`keep_only_what_is_needed`]): a Secret's
//! annotations can hold its data (`kubectl apply` writes
//! `last-applied-configuration`), and any tenant can make them large.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::context::{Caches, Context, Settings};
use crate::metrics::Metrics;
use crate::names;
use crate::reconcile::apply::kubernetes::APPLIED_HASH_ANNOTATION;
use crate::reconcile::dereference::referenced_secrets;
use crate::reconcile::{error_policy, reconcile};
use crate::resource::FusionAuthWebhook;

/// Where to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace.
    All,
    /// One namespace.
    Namespace(String),
}

impl Scope {
    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Self::All => Api::all(client.clone()),
            Self::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// Strips a watched Secret's metadata down to what the operator uses: its
/// name and namespace (to find the resources that reference it), uid and
/// resourceVersion, and the applied-hash annotation of the Secrets the
/// operator writes itself. Everything else (other annotations, labels,
/// managedFields, owner references) is dropped before it is cached.
pub fn keep_only_what_is_needed(secret: &mut PartialObjectMeta<Secret>) {
    let meta = std::mem::take(&mut secret.metadata);
    let applied_hash = meta.annotations.and_then(|mut a| a.remove(APPLIED_HASH_ANNOTATION));
    secret.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        annotations: applied_hash.map(|hash| [(APPLIED_HASH_ANNOTATION.to_owned(), hash)].into()),
        ..ObjectMeta::default()
    };
}

/// Drops what the API server keeps for its own bookkeeping and the operator
/// never reads: managedFields (but who wrote `status.fusionAuthUrl`, which
/// cleanup checks before sending the API key there) and `kubectl apply`'s
/// copy of the object in an annotation. At thousands of resources they are
/// most of the cache.
pub fn drop_bookkeeping(resource: &mut FusionAuthWebhook) {
    let kept: Vec<_> = resource
        .metadata
        .managed_fields
        .take()
        .into_iter()
        .flatten()
        .filter(crate::reconcile::cleanup::writes_status_url)
        .map(|mut m| {
            m.fields_v1 =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(serde_json::json!({"f:status": {"f:fusionAuthUrl": {}}})));
            m
        })
        .collect();
    resource.metadata.managed_fields = (!kept.is_empty()).then_some(kept);
    if let Some(annotations) = &mut resource.metadata.annotations {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// What the operator keeps of a receiver Deployment it watches: metadata
/// (its applied-hash annotation says whether a re-apply is needed),
/// `spec.replicas` and the status (the rollout). The pod template, most of
/// the object, is only ever written, never read from the cache.
pub fn keep_rollout_state(deployment: &mut Deployment) {
    deployment.metadata.managed_fields = None;
    if let Some(spec) = &mut deployment.spec {
        spec.template = Default::default();
    }
}

/// Runs the controller for one scope until `shutdown` completes.
pub async fn run(
    client: Client,
    scope: Scope,
    settings: Settings,
    concurrency: u16,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (caches, writers) = Caches::new();
    let managed = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={}", names::FIELD_MANAGER));
    let deployments = watcher(scope.api::<Deployment>(&client), managed.clone()).modify(keep_rollout_state);
    let deployments = reflector(writers.deployments, deployments).default_backoff().touched_objects();
    let stateful_sets = watcher(scope.api::<StatefulSet>(&client), managed.clone()).modify(keep_claims_and_rollout_state);
    let stateful_sets = reflector(writers.stateful_sets, stateful_sets).default_backoff().touched_objects();
    let config_maps =
        watcher(scope.api::<PartialObjectMeta<ConfigMap>>(&client), managed.clone()).modify(|m| m.metadata.managed_fields = None);
    let config_maps = reflector(writers.config_maps, config_maps).default_backoff().touched_objects();
    let services = watcher(scope.api::<PartialObjectMeta<Service>>(&client), managed).modify(|m| m.metadata.managed_fields = None);
    let services = reflector(writers.services, services).default_backoff().touched_objects();
    let secrets = watcher(scope.api::<PartialObjectMeta<Secret>>(&client), watcher::Config::default()).modify(keep_only_what_is_needed);
    let secrets = reflector(writers.secrets, secrets).default_backoff().touched_objects();

    let (resources, writer) = reflector::store();
    let watched = watcher(scope.api::<FusionAuthWebhook>(&client), watcher::Config::default()).modify(drop_bookkeeping);
    let controller = Controller::for_stream(reflector(writer, watched).default_backoff().applied_objects(), resources.clone());
    let referencing = resources.clone();
    let ctx = Arc::new(Context::new(client, settings, caches, metrics));
    controller
        .owns_stream(deployments)
        .owns_stream(stateful_sets)
        .owns_stream(config_maps)
        .owns_stream(services)
        .watches_stream(secrets, move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            referencing
                .state()
                .into_iter()
                .filter(|r| r.namespace() == namespace && referenced_secrets(&r.name_any(), &r.spec).contains(&name))
                .map(|r| ObjectRef::from_obj(&*r))
                .collect::<Vec<_>>()
        })
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move { log(result) })
        .await;
}

/// What the operator keeps of a receiver StatefulSet it watches: as for
/// Deployments ([`keep_rollout_state`]), and the claim template, whose size
/// is what `store_growth` compares.
pub fn keep_claims_and_rollout_state(set: &mut StatefulSet) {
    set.metadata.managed_fields = None;
    if let Some(spec) = &mut set.spec {
        spec.template = Default::default();
    }
}

/// Logs one controller result (reconcile errors are logged by
/// `error_policy`; these are the controller's own).
fn log<E: std::fmt::Display, T>(result: Result<(ObjectRef<FusionAuthWebhook>, T), controller::Error<E, watcher::Error>>) {
    match result {
        Ok((object, _)) => tracing::debug!(namespace = object.namespace, name = object.name, "reconciled"),
        Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(e) => tracing::warn!(error = %e, "controller"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_secret_keeps_only_its_identity_and_our_applied_hash() {
        let mut secret: PartialObjectMeta<Secret> = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "fusionauth-api-key", "namespace": "team-a", "uid": "u-1", "resourceVersion": "42",
                "labels": {"team": "a"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"key\":\"c2VjcmV0\"}}",
                    APPLIED_HASH_ANNOTATION: "abc",
                    "padding": "x".repeat(100_000),
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:data": {}}}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u-2"}],
            },
        }))
        .unwrap();
        keep_only_what_is_needed(&mut secret);
        let kept = serde_json::to_value(&secret.metadata).unwrap();
        assert_eq!(
            kept,
            serde_json::json!({"name": "fusionauth-api-key", "namespace": "team-a", "uid": "u-1", "resourceVersion": "42", "annotations": {APPLIED_HASH_ANNOTATION: "abc"}})
        );
        let mut plain: PartialObjectMeta<Secret> =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "s", "annotations": {"a": "b"}}})).unwrap();
        keep_only_what_is_needed(&mut plain);
        assert_eq!(serde_json::to_value(&plain.metadata).unwrap(), serde_json::json!({"name": "s"}));
    }

    #[test]
    fn a_cached_deployment_keeps_what_the_rollout_needs_and_not_its_template() {
        let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r", "generation": 3, "annotations": {APPLIED_HASH_ANNOTATION: "h"},
                         "managedFields": [{"manager": "fusionhook-operator", "operation": "Apply"}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "receiver", "image": "x", "args": ["y".repeat(10_000)]}]}}},
            "status": {"observedGeneration": 3, "updatedReplicas": 2, "availableReplicas": 2},
        }))
        .unwrap();
        keep_rollout_state(&mut deployment);
        assert_eq!(
            crate::reconcile::apply::kubernetes::rollout(Some(&deployment), "r"),
            crate::reconcile::apply::kubernetes::Rollout::Done
        );
        assert!(serde_json::to_string(&deployment).unwrap().len() < 600, "the pod template is gone");
        assert!(deployment.metadata.managed_fields.is_none());
        assert_eq!(deployment.metadata.annotations.unwrap()[APPLIED_HASH_ANNOTATION], "h");
    }
}

//! What every reconcile shares: the Kubernetes client, the settings, the
//! caches of the objects the operator owns, the FusionAuth clients, Events,
//! metrics and the per-resource error counts that drive the backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusionhook_fusionauth::client::{ApiKey, CallObserver, ClientConfig, ClientError, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::model::Webhook;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, ObjectRef, Store};
use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::names;
use crate::reconcile::apply::kubernetes::Observed;
use crate::reconcile::observe::Snapshots;
use crate::reconcile::validate::Connection;
use crate::resource::FusionAuthWebhook;

/// Tunables, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The receivers' image when the resource names none, and their traces.
    pub receiver: crate::reconcile::build::ReceiverDefaults,
    /// Periodic re-check of a reconciled resource (drift repair).
    pub requeue: Duration,
    /// Re-check while the receiver is not available yet.
    pub waiting_requeue: Duration,
    /// First backoff after a transient error; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Upper bound of the backoff.
    pub max_backoff: Duration,
    /// Per-attempt timeout of FusionAuth calls.
    pub fusionauth_timeout: Duration,
    /// How old a receiver admin token gets before it is replaced (`None`: never).
    pub admin_token_rotation: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            receiver: crate::reconcile::build::ReceiverDefaults {
                image: "ghcr.io/fusionhook/fusionhook:latest".to_owned(),
                otlp_endpoint: None,
            },
            requeue: Duration::from_secs(300),
            waiting_requeue: Duration::from_secs(15),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            fusionauth_timeout: Duration::from_secs(10),
            admin_token_rotation: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// Caches of what the operator owns, filled by the controller's watches.
/// Only the Deployment is cached whole (its status tells availability); the
/// others only by metadata, which holds the applied hash.
#[derive(Clone)]
pub struct Caches {
    /// Deployments labelled as managed by the operator.
    pub deployments: Store<Deployment>,
    /// StatefulSets labelled as managed by the operator.
    pub stateful_sets: Store<StatefulSet>,
    /// ConfigMaps labelled as managed by the operator (metadata).
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// Services labelled as managed by the operator (metadata).
    pub services: Store<PartialObjectMeta<Service>>,
    /// Every Secret in the watched namespaces (metadata only, never data).
    pub secrets: Store<PartialObjectMeta<Secret>>,
}

/// Writers behind [`Caches`], for the controller's reflectors (or a test).
pub struct CacheWriters {
    /// Deployments.
    pub deployments: reflector::store::Writer<Deployment>,
    /// StatefulSets.
    pub stateful_sets: reflector::store::Writer<StatefulSet>,
    /// ConfigMaps.
    pub config_maps: reflector::store::Writer<PartialObjectMeta<ConfigMap>>,
    /// Services.
    pub services: reflector::store::Writer<PartialObjectMeta<Service>>,
    /// Secrets.
    pub secrets: reflector::store::Writer<PartialObjectMeta<Secret>>,
}

impl Caches {
    /// Empty caches and their writers.
    pub fn new() -> (Self, CacheWriters) {
        let (deployments, deployments_w) = reflector::store();
        let (stateful_sets, stateful_sets_w) = reflector::store();
        let (config_maps, config_maps_w) = reflector::store();
        let (services, services_w) = reflector::store();
        let (secrets, secrets_w) = reflector::store();
        (
            Self { deployments, stateful_sets, config_maps, services, secrets },
            CacheWriters {
                deployments: deployments_w,
                stateful_sets: stateful_sets_w,
                config_maps: config_maps_w,
                services: services_w,
                secrets: secrets_w,
            },
        )
    }

    /// The config versions of resource `name` in `namespace` other than
    /// `current` (and the one un-versioned ConfigMap of versions before 0.2).
    pub fn other_config_maps(&self, namespace: &str, name: &str, current: &str) -> Vec<String> {
        let receiver = names::receiver_name(name);
        let versioned = format!("{receiver}-");
        self.config_maps
            .state()
            .iter()
            .filter(|m| m.metadata.namespace.as_deref() == Some(namespace))
            .filter(|m| m.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/instance")).is_some_and(|i| i == name))
            .filter_map(|m| m.metadata.name.clone())
            .filter(|n| n != current && (*n == receiver || n.strip_prefix(&versioned).is_some_and(|h| h.len() == 10)))
            .collect()
    }

    /// The receiver objects of resource `name` in `namespace`, as last seen;
    /// `config_map`: the name of the config version wanted now.
    pub fn observed(&self, namespace: &str, name: &str, config_map: &str) -> Observed {
        let receiver = names::receiver_name(name);
        Observed {
            deployment: self.deployments.get(&ObjectRef::new(&receiver).within(namespace)).map(|d| (*d).clone()),
            stateful_set: self.stateful_sets.get(&ObjectRef::new(&receiver).within(namespace)).map(|s| (*s).clone()),
            pods_service: self
                .services
                .get(&ObjectRef::new(&format!("{receiver}-pods")).within(namespace))
                .map(|m| Service { metadata: m.metadata.clone(), ..Service::default() }),
            config_map: self
                .config_maps
                .get(&ObjectRef::new(config_map).within(namespace))
                .map(|m| ConfigMap { metadata: m.metadata.clone(), ..ConfigMap::default() }),
            service: self
                .services
                .get(&ObjectRef::new(&receiver).within(namespace))
                .map(|m| Service { metadata: m.metadata.clone(), ..Service::default() }),
            secret: self
                .secrets
                .get(&ObjectRef::new(&names::authorization_secret_name(name)).within(namespace))
                .map(|m| Secret { metadata: m.metadata.clone(), ..Secret::default() }),
            admin_secrets: names::AdminScope::ALL
                .into_iter()
                .filter_map(|scope| {
                    let secret = names::admin_secret_name(name, scope);
                    let cached = self.secrets.get(&ObjectRef::new(&secret).within(namespace))?;
                    Some((secret, Secret { metadata: cached.metadata.clone(), ..Secret::default() }))
                })
                .collect(),
        }
    }
}

/// Shared by all reconciles.
pub struct Context {
    /// Kubernetes.
    pub client: Client,
    /// Tunables.
    pub settings: Settings,
    /// Owned objects as last seen.
    pub caches: Caches,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The backfill's memory between passes.
    pub backfill: crate::reconcile::backfill::memory::Memory,
    fusionauth: Mutex<HashMap<[u8; 32], FusionAuthClient>>,
    snapshots: Snapshots,
    failures: Mutex<HashMap<ObjectRef<FusionAuthWebhook>, u32>>,
}

/// Identifies a FusionAuth connection: URL, API key and CA bundle.
fn connection_key(v: &Connection) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [v.url.as_bytes(), v.api_key.0.as_bytes(), v.ca_pem.as_deref().unwrap_or_default()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The longest a listing of FusionAuth's webhooks serves reconciles (and
/// at most half the resync interval): an edit made in FusionAuth is seen
/// within one resync plus this.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(60);

/// Most FusionAuth clients kept (one per distinct URL, key and CA).
const MAX_CLIENTS: usize = 256;

impl Context {
    /// A context over `client`.
    pub fn new(client: Client, settings: Settings, caches: Caches, metrics: Arc<Metrics>) -> Self {
        let reporter =
            kube::runtime::events::Reporter { controller: names::FIELD_MANAGER.to_owned(), instance: std::env::var("POD_NAME").ok() };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            caches,
            metrics,
            backfill: crate::reconcile::backfill::memory::Memory::default(),
            fusionauth: Mutex::default(),
            // A resync reconciles everything within moments: one listing
            // serves it; short enough that a periodic re-check stays current.
            snapshots: Snapshots::new(SNAPSHOT_MAX_AGE.min(settings.requeue / 2)),
            settings,
            failures: Mutex::default(),
        }
    }

    /// The FusionAuth client for the resource's connection, built once per
    /// distinct URL, API key and CA bundle (a rotated key gets a new one).
    pub fn fusionauth(&self, v: &Connection) -> Result<FusionAuthClient, ClientError> {
        let key = connection_key(v);
        let mut clients = self.fusionauth.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let url = v.url.parse().map_err(|e| ClientError::Config(format!("fusionAuth.url: {e}")))?;
        let mut config = ClientConfig::new(url, ApiKey::new(v.api_key.0.clone()));
        config.ca_pem = v.ca_pem.clone();
        config.timeout = self.settings.fusionauth_timeout;
        config.connect_timeout = self.settings.fusionauth_timeout.min(Duration::from_secs(3));
        // The controller backs off between reconciles; one quick retry here
        // rides over a blip without holding a reconcile for long.
        config.retry = RetryPolicy { attempts: 2, ..RetryPolicy::default() };
        let metrics = Arc::clone(&self.metrics);
        config.observer = Some(CallObserver(Arc::new(move |operation, status| metrics.fusionauth_call(operation, status))));
        let client = FusionAuthClient::new(config)?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The FusionAuth client for `v`, and webhook `id` as FusionAuth has it
    /// now (through the shared listing of a resync, see [`Snapshots`]).
    pub async fn fusionauth_webhook(&self, v: &Connection, id: Uuid) -> Result<(FusionAuthClient, Option<Webhook>), ClientError> {
        let fa = self.fusionauth(v)?;
        let webhook = self.snapshots.webhook(connection_key(v), &fa, id).await?;
        Ok((fa, webhook))
    }

    /// A pass may have written webhook `id` (see [`Snapshots::written`]).
    pub async fn fusionauth_webhook_written(&self, v: &Connection, id: Uuid) {
        self.snapshots.written(connection_key(v), id).await;
    }

    /// Backoff after the `n`-th consecutive failure of `resource`: full
    /// jitter over `min * 2^(n-1)`, capped.
    pub fn failed(&self, resource: &FusionAuthWebhook) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(ObjectRef::from_obj(resource)).or_insert(0);
        *n = n.saturating_add(1);
        backoff(self.settings.min_backoff, self.settings.max_backoff, *n)
    }

    /// Forgets the failures of `resource` after a successful reconcile.
    pub fn succeeded(&self, resource: &FusionAuthWebhook) {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&ObjectRef::from_obj(resource));
    }

    /// `duration` +/- 10 %, so resources created together do not resync together.
    pub fn jittered(&self, duration: Duration) -> Duration {
        duration.mul_f64(rand::rng().random_range(0.9..=1.1))
    }
}

/// Exponential backoff with jitter: uniform in `[cap/2, cap]` where
/// `cap = min(max, min * 2^(n-1))` (half jitter keeps a floor, so a broken
/// FusionAuth is not hammered by unlucky draws).
pub fn backoff(min: Duration, max: Duration, n: u32) -> Duration {
    let cap = min.saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(30))).min(max);
    cap.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds_and_is_capped() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for n in 1..=40 {
            let cap = Duration::from_secs(1u64 << (n - 1).min(6)).min(max);
            let d = backoff(min, max, n);
            assert!(d >= cap / 2 && d <= cap, "n={n}: {d:?} not in [{:?}, {cap:?}]", cap / 2);
        }
    }
}

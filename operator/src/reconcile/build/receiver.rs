//! The receiver's Kubernetes objects: its config (ConfigMap, the receiver
//! config contract of DESIGN.md), the generated `Authorization` Secret, a
//! hardened Deployment and a Service. Secrets reach the receiver as files of
//! one projected volume, so a rotated Secret is picked up without a restart;
//! a config change rolls the pods through a checksum annotation.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ProjectedVolumeSource, ResourceRequirements, SeccompProfile, Secret, SecretProjection, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::fusionauth::RECEIVER_PORT;
use super::receiver_config::{ADMIN_PORT, SECRETS_DIR, STORE_DIR, secret_mounts};
use crate::names::{self, AdminScope, admin_token, kept};
use crate::reconcile::rotation::{AdminToken, Credentials, Previous};
use crate::reconcile::validate::{SecretString, Validated};
use crate::resource::StoreType;

/// Where the config file is mounted.
pub const CONFIG_DIR: &str = "/etc/fusionhook/config";
/// The config file's name in the ConfigMap and under [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "receiver.yaml";
/// Pod template annotation that changes with the config, so it rolls the pods.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "fusionhook.dev/config-checksum";
/// What the pod template takes from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The ConfigMap of this config version ([`config_map_name`]).
    pub config_map: String,
    /// [`config_checksum`] of the config and the previous values.
    pub checksum: String,
    /// Where the receivers send traces (OTLP/HTTP), if anywhere.
    pub otlp_endpoint: Option<String>,
}

/// UID the receiver runs as (distroless `nonroot`).
const RUN_AS: i64 = 65532;

/// The pod label naming the store type, for a Service to select only the
/// pods of the current store while an old embedded store drains (the
/// workloads' selectors cannot change: they are immutable).
pub use fusionhook_api::names::STORE_LABEL;

/// The [`STORE_LABEL`] value of `v`'s store.
pub fn store_label(v: &Validated) -> &'static str {
    match v.store.kind {
        StoreType::None => "none",
        StoreType::Embedded => "embedded",
        StoreType::Postgres => "postgres",
    }
}

/// Narrows `service` to the pods of the current store type (while an old
/// store's StatefulSet still runs, FusionAuth must not reach it).
pub fn select_current_store(service: &mut Service, v: &Validated) {
    if let Some(selector) = service.spec.as_mut().and_then(|s| s.selector.as_mut()) {
        selector.insert(STORE_LABEL.to_owned(), store_label(v).to_owned());
    }
}

/// Labels on every object, and the Deployment's selector.
pub fn labels(v: &Validated) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "fusionhook-receiver".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), v.name.clone()),
        ("app.kubernetes.io/managed-by".to_owned(), names::FIELD_MANAGER.to_owned()),
    ])
}

fn metadata(v: &Validated, name: String, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(v.namespace.clone()),
        labels: Some(labels(v)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// SHA-256 (hex) for the pod template annotation: of the config, and of
/// the previous values the pods must start with (they are files the config
/// only points at, so a new one must roll the pods too).
pub fn config_checksum(config: &str, previous: &Previous, generated: Option<&SecretString>, pepper: &SecretString) -> String {
    let mut hash = Sha256::new();
    hash.update(config.as_bytes());
    // A regenerated value (a move to another FusionAuth) rolls the pods too,
    // so FusionAuth is told only once they read it. It is 32 random bytes:
    // its hash gives nothing away.
    for value in [previous.authorization.as_ref(), previous.hmac.as_ref().map(|k| &k.secret), generated].into_iter().flatten() {
        // Keyed by `pepper` (the FusionAuth API key): whoever reads the
        // Deployment cannot test guesses of a weak previous value.
        hash.update([0]);
        hash.update(names::keyed_digest(&pepper.0, &[&value.0]).as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The ConfigMap holding `receiver.yaml`. It holds no secret values.
///
/// Each config version is its own immutable ConfigMap, named after its
/// content ([`config_map_name`]): pods that run never see their config
/// change under them, a rollout that goes wrong leaves the old pods on the
/// old config, and a pod that restarts gets the config it was made for.
/// Apply deletes the versions no pod needs once a rollout is done.
pub fn config_map(v: &Validated, config: &str, owner: &OwnerReference) -> ConfigMap {
    ConfigMap {
        metadata: metadata(v, config_map_name(v, config), owner),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_owned(), config.to_owned())])),
        immutable: Some(true),
        ..ConfigMap::default()
    }
}

/// `<name>-receiver-<first 10 hex digits of the config's SHA-256>`.
pub fn config_map_name(v: &Validated, config: &str) -> String {
    let digest = Sha256::digest(config.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", names::receiver_name(&v.name))
}

/// The operator-owned Secret ([`names::kept`]): the generated
/// `Authorization` value, the previous value during a rotation, and the
/// HMAC key FusionAuth signs with. `data`, not `stringData`: server-side
/// apply then removes a key the operator stops applying.
pub fn kept_secret(v: &Validated, credentials: &Credentials, owner: &OwnerReference) -> Secret {
    let mut data = BTreeMap::new();
    let mut keep = |key: &str, value: &str| data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
    if let Some(value) = &credentials.generated {
        keep(kept::AUTHORIZATION, &value.0);
    }
    if let Some(previous) = &credentials.previous.authorization {
        keep(kept::PREVIOUS_AUTHORIZATION, &previous.0);
    }
    if let Some(key) = &credentials.hmac_in_use {
        keep(kept::HMAC_SECRET, &key.secret.0);
        keep(kept::HMAC_ALGORITHM, &key.algorithm);
    }
    if let Some(token) = &credentials.legacy_admin_token {
        keep(kept::LEGACY_ADMIN_TOKEN, &token.0);
    }
    Secret {
        metadata: metadata(v, names::authorization_secret_name(&v.name), owner),
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// The Secret of the admin token of `scope` ([`names::admin_token`]): its
/// own Secret, so RBAC can grant reading it by name.
pub fn admin_secret(v: &Validated, scope: AdminScope, token: &AdminToken, owner: &OwnerReference) -> Secret {
    let mut data = BTreeMap::new();
    let mut keep = |key: &str, value: &str| data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
    keep(admin_token::TOKEN, &token.token.0);
    if let Some(previous) = &token.previous {
        keep(admin_token::PREVIOUS, &previous.0);
    }
    let rotated_at = k8s_openapi::jiff::Timestamp::from_second(token.rotated_at).unwrap_or_default();
    keep(admin_token::ROTATED_AT, &rotated_at.to_string());
    Secret {
        metadata: metadata(v, names::admin_secret_name(&v.name, scope), owner),
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(RECEIVER_PORT.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn default_resources() -> ResourceRequirements {
    // Measured: ~7 MiB idle, ~30 MiB under a 38k requests/s benchmark.
    ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".to_owned(), Quantity("20m".into())), ("memory".to_owned(), Quantity("32Mi".into()))])),
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity("128Mi".into()))])),
        ..ResourceRequirements::default()
    }
}

/// One projected volume source per Secret, with the keys the receiver reads.
fn secret_sources(v: &Validated, previous: &Previous) -> Vec<VolumeProjection> {
    let mut sources: Vec<VolumeProjection> = Vec::new();
    for mount in secret_mounts(v, previous) {
        let item = KeyToPath { key: mount.key.clone(), path: mount.file.name(), mode: None };
        match sources.iter_mut().find(|s| s.secret.as_ref().map(|s| s.name.as_str()) == Some(mount.secret.as_str())) {
            Some(source) => source.secret.as_mut().into_iter().for_each(|s| s.items.get_or_insert_with(Vec::new).push(item.clone())),
            None => sources.push(VolumeProjection {
                secret: Some(SecretProjection { name: mount.secret.clone(), items: Some(vec![item]), optional: Some(false) }),
                ..VolumeProjection::default()
            }),
        }
    }
    sources
}

/// The receiver container: non-root, read-only root filesystem, no
/// privilege escalation, all capabilities dropped, probes.
fn container(v: &Validated, default_image: &str) -> Container {
    Container {
        name: "receiver".to_owned(),
        image: Some(v.image.clone().unwrap_or_else(|| default_image.to_owned())),
        command: Some(vec!["/usr/local/bin/fusionhook-receiver".to_owned()]),
        args: Some(vec!["--config".to_owned(), format!("{CONFIG_DIR}/{CONFIG_FILE}")]),
        ports: Some(vec![
            ContainerPort { name: Some("http".to_owned()), container_port: RECEIVER_PORT.into(), ..ContainerPort::default() },
            ContainerPort { name: Some("admin".to_owned()), container_port: ADMIN_PORT.into(), ..ContainerPort::default() },
        ]),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        resources: Some(v.resources.clone().unwrap_or_else(default_resources)),
        // The admin API binds its proofs to the pod's name (see receiver_admin::prove).
        env: Some(vec![EnvVar {
            name: "FUSIONHOOK_POD_NAME".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".to_owned(), api_version: None }),
                ..EnvVarSource::default()
            }),
            value: None,
        }]),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount { name: "config".to_owned(), mount_path: CONFIG_DIR.to_owned(), read_only: Some(true), ..VolumeMount::default() },
            VolumeMount { name: "secrets".to_owned(), mount_path: SECRETS_DIR.to_owned(), read_only: Some(true), ..VolumeMount::default() },
        ]),
        ..Container::default()
    }
}

/// Traces to `endpoint` (OTLP over HTTP/protobuf), each span's resource
/// naming the FusionAuthWebhook and its namespace.
fn trace_env(v: &Validated, endpoint: &str) -> Vec<EnvVar> {
    let plain = |name: &str, value: String| EnvVar { name: name.to_owned(), value: Some(value), value_from: None };
    vec![
        plain("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        plain("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        plain("OTEL_RESOURCE_ATTRIBUTES", format!("k8s.namespace.name={},fusionauthwebhook={}", v.namespace, v.name)),
    ]
}

/// The receiver's pod: non-root, read-only root filesystem, no privilege
/// escalation, all capabilities dropped, RuntimeDefault seccomp, no service
/// account token, probes, and the config checksum. With an embedded store,
/// its volume (claim `store`, see [`stateful_set`]) is mounted too.
fn pod_template(v: &Validated, previous: &Previous, default_image: &str, config: &Template) -> PodTemplateSpec {
    let mut container = container(v, default_image);
    if let Some(endpoint) = &config.otlp_endpoint {
        container.env.get_or_insert_with(Vec::new).extend(trace_env(v, endpoint));
    }
    if v.store.kind == StoreType::Embedded {
        container.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
            name: STORE_VOLUME.to_owned(),
            mount_path: STORE_DIR.to_owned(),
            ..VolumeMount::default()
        });
    }
    let mut pod_labels = labels(v);
    pod_labels.insert(STORE_LABEL.to_owned(), store_label(v).to_owned());
    let mut template_meta = ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() };
    template_meta.annotations = Some(BTreeMap::from([(CONFIG_CHECKSUM_ANNOTATION.to_owned(), config.checksum.clone())]));
    PodTemplateSpec {
        metadata: Some(template_meta),
        spec: Some(PodSpec {
            containers: vec![container],
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                // Volumes (an embedded store's claim, the projected Secrets)
                // are group-owned by the receiver's group, so a disk
                // formatted root-only is still writable.
                fs_group: Some(RUN_AS),
                fs_group_change_policy: Some("OnRootMismatch".to_owned()),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
                ..PodSecurityContext::default()
            }),
            termination_grace_period_seconds: Some(30),
            volumes: Some(vec![
                Volume {
                    name: "config".to_owned(),
                    config_map: Some(ConfigMapVolumeSource { name: config.config_map.clone(), ..ConfigMapVolumeSource::default() }),
                    ..Volume::default()
                },
                Volume {
                    name: "secrets".to_owned(),
                    projected: Some(ProjectedVolumeSource { sources: Some(secret_sources(v, previous)), default_mode: Some(0o440) }),
                    ..Volume::default()
                },
            ]),
            ..PodSpec::default()
        }),
    }
}

/// The receiver Deployment (no store, or PostgreSQL): rolled without ever
/// fewer ready receivers than asked.
pub fn deployment(v: &Validated, previous: &Previous, default_image: &str, config: &Template, owner: &OwnerReference) -> Deployment {
    Deployment {
        metadata: metadata(v, names::receiver_name(&v.name), owner),
        spec: Some(DeploymentSpec {
            replicas: Some(v.replicas),
            selector: LabelSelector { match_labels: Some(labels(v)), ..LabelSelector::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                // Never fewer ready receivers than asked while rolling.
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: pod_template(v, previous, default_image, config),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The volume (claim template) of an embedded store.
pub const STORE_VOLUME: &str = "store";
/// Its size when the spec gives none.
const DEFAULT_STORE_SIZE: &str = "1Gi";

/// The size of each replica's volume claim (embedded store).
pub fn store_size(v: &Validated) -> String {
    v.store.size.as_ref().map_or_else(|| DEFAULT_STORE_SIZE.to_owned(), |q| q.0.clone())
}

/// Sets the size of `set`'s volume claim template (`store_growth` keeps
/// the one a StatefulSet has while the spec's cannot be had).
pub fn set_store_size(set: &mut StatefulSet, size: &str) {
    let templates = set.spec.as_mut().and_then(|s| s.volume_claim_templates.as_mut());
    for claim in templates.into_iter().flatten() {
        let requests = claim.spec.as_mut().and_then(|s| s.resources.as_mut()).and_then(|r| r.requests.as_mut());
        if let Some(requests) = requests {
            requests.insert("storage".to_owned(), Quantity(size.to_owned()));
        }
    }
}

/// The receiver StatefulSet (embedded store): each replica keeps its own
/// volume claim (`store-<name>-receiver-<ordinal>`) across restarts and
/// reschedules. Claims are kept when the StatefulSet is deleted or scaled
/// down: they may hold pending deliveries (docs/stores.md).
pub fn stateful_set(v: &Validated, previous: &Previous, default_image: &str, config: &Template, owner: &OwnerReference) -> StatefulSet {
    let size = Quantity(store_size(v));
    StatefulSet {
        metadata: metadata(v, names::receiver_name(&v.name), owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(v.replicas),
            selector: LabelSelector { match_labels: Some(labels(v)), ..LabelSelector::default() },
            service_name: Some(pods_service_name(v)),
            // Replicas do not wait for each other: each has its own store.
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy { type_: Some("RollingUpdate".to_owned()), rolling_update: None }),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".to_owned()),
                when_scaled: Some("Retain".to_owned()),
            }),
            template: pod_template(v, previous, default_image, config),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some(STORE_VOLUME.to_owned()), labels: Some(labels(v)), ..ObjectMeta::default() },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: v.store.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_owned(), size)])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// `<name>-receiver-pods`: the StatefulSet's headless Service.
pub fn pods_service_name(v: &Validated) -> String {
    format!("{}-pods", names::receiver_name(&v.name))
}

/// The StatefulSet's headless Service: a DNS name per pod
/// (`<name>-receiver-0.<name>-receiver-pods`), for reaching one replica's
/// store (its admin API) rather than whichever the Service picks.
pub fn pods_service(v: &Validated, owner: &OwnerReference) -> Service {
    let mut service = service(v, owner);
    service.metadata.name = Some(pods_service_name(v));
    if let Some(spec) = &mut service.spec {
        spec.cluster_ip = Some("None".to_owned());
        spec.publish_not_ready_addresses = Some(true);
    }
    service
}

/// The receiver Service (the in-cluster URL FusionAuth calls by default).
pub fn service(v: &Validated, owner: &OwnerReference) -> Service {
    Service {
        metadata: metadata(v, names::receiver_name(&v.name), owner),
        spec: Some(ServiceSpec {
            selector: Some(labels(v)),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".to_owned()),
                    port: RECEIVER_PORT.into(),
                    target_port: Some(IntOrString::String("http".to_owned())),
                    ..ServicePort::default()
                },
                // The admin API (scoped tokens), for a person's own tools
                // (`kubectl port-forward svc/NAME-receiver 8081:admin`); the
                // operator and the plugin call a proven pod instead.
                ServicePort {
                    name: Some("admin".to_owned()),
                    port: ADMIN_PORT.into(),
                    target_port: Some(IntOrString::String("admin".to_owned())),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::build::fixtures::{UID, validated};
    use crate::reconcile::build::receiver_url;
    use crate::reconcile::rotation::{Kept, Seen};

    fn template(checksum: &str) -> Template {
        Template { config_map: "todo-cleanup-receiver-0123456789".into(), checksum: checksum.into(), otlp_endpoint: None }
    }

    fn credentials(v: &Validated) -> Credentials {
        crate::reconcile::rotation::credentials(v, &Kept::default(), Seen::Webhook(None), false)
    }

    #[test]
    fn the_pod_is_hardened() {
        let (v, owner) = validated(json!({}));
        let d = deployment(&v, &Previous::default(), "ghcr.io/fusionhook/fusionhook:0.1.0", &template("abc"), &owner);
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(pod.security_context.as_ref().unwrap().seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
        assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
        assert!(c.resources.as_ref().unwrap().limits.as_ref().unwrap().contains_key("memory"));
        assert_eq!(c.image.as_deref(), Some("ghcr.io/fusionhook/fusionhook:0.1.0"));
        let annotations = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
        assert_eq!(annotations[CONFIG_CHECKSUM_ANNOTATION], "abc");
    }

    #[test]
    fn receivers_send_traces_where_the_operator_is_told_and_name_their_resource() {
        let (v, owner) = validated(json!({}));
        let env_of = |template: &Template| {
            let d = deployment(&v, &Previous::default(), "i", template, &owner);
            let env = d.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap_or_default();
            env.into_iter().map(|e| (e.name, e.value.unwrap_or_default())).collect::<std::collections::BTreeMap<_, _>>()
        };
        let off = env_of(&template("abc"));
        assert!(!off.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"), "no traces unless the operator is told: {off:?}");
        let on = env_of(&Template { otlp_endpoint: Some("http://collector.monitoring:4318".into()), ..template("abc") });
        assert_eq!(on["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://collector.monitoring:4318");
        assert_eq!(on["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
        assert_eq!(on["OTEL_RESOURCE_ATTRIBUTES"], format!("k8s.namespace.name={},fusionauthwebhook={}", v.namespace, v.name));
    }

    #[test]
    fn spec_fields_reach_the_workload() {
        let (v, owner) = validated(json!({"receiver": {"replicas": 3, "image": "registry.local/receiver:dev",
            "resources": {"limits": {"memory": "64Mi"}}}}));
        let d = deployment(&v, &Previous::default(), "default-image", &template("x"), &owner);
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.local/receiver:dev"));
        assert_eq!(c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"], Quantity("64Mi".into()));
        // Every object is owned by the resource.
        let s = service(&v, &owner);
        for meta in [&d.metadata, &s.metadata, &config_map(&v, "c", &owner).metadata, &kept_secret(&v, &credentials(&v), &owner).metadata] {
            assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, UID);
            assert_eq!(meta.owner_references.as_ref().unwrap()[0].controller, Some(true));
            assert_eq!(meta.namespace.as_deref(), Some("todo"));
        }
        // The Service selects the pods (the workload's selector: the store
        // label only narrows it while an old store drains) and is what the
        // registered URL names.
        assert_eq!(s.spec.as_ref().unwrap().selector.as_ref(), Some(&spec.selector.match_labels.clone().unwrap()));
        let pod_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(pod_labels["fusionhook.dev/store"], "none");
        let mut narrowed = s.clone();
        select_current_store(&mut narrowed, &v);
        assert!(narrowed.spec.unwrap().selector.unwrap().iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        let url = receiver_url(&v);
        assert!(url.starts_with(&format!(
            "http://{}.todo.svc:{}/",
            s.metadata.name.as_ref().unwrap(),
            s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port
        )));
    }

    #[test]
    fn a_config_change_changes_the_checksum() {
        let (a, _) = validated(json!({}));
        let (b, _) = validated(json!({"delivery": {"connectTimeoutMs": 1000, "readTimeoutMs": 3000}}));
        let none = Previous::default();
        let pepper = SecretString("api-key".into());
        let render = |v| crate::reconcile::build::receiver_config::render(v, &none);
        assert_eq!(config_checksum(&render(&a), &none, None, &pepper), config_checksum(&render(&a), &none, None, &pepper));
        assert_ne!(config_checksum(&render(&a), &none, None, &pepper), config_checksum(&render(&b), &none, None, &pepper));
        assert_eq!(config_checksum("x", &none, None, &pepper).len(), 64);
        // Each config version is its own immutable ConfigMap.
        let (a_map, b_map) = (config_map_name(&a, &render(&a)), config_map_name(&b, &render(&b)));
        assert_ne!(a_map, b_map);
        assert_eq!(a_map, config_map_name(&a, &render(&a)));
        assert!(a_map.starts_with("todo-cleanup-receiver-") && a_map.len() == "todo-cleanup-receiver-".len() + 10, "{a_map}");
        let (_, owner) = validated(json!({}));
        let map = config_map(&a, &render(&a), &owner);
        assert_eq!((map.metadata.name.as_deref(), map.immutable), (Some(a_map.as_str()), Some(true)));
        // A new previous value (a second rotation) rolls the pods although the config text is the same.
        let first = Previous { authorization: Some(SecretString("one".into())), ..Previous::default() };
        let second = Previous { authorization: Some(SecretString("two".into())), ..Previous::default() };
        assert_ne!(config_checksum("x", &first, None, &pepper), config_checksum("x", &second, None, &pepper));
        assert_ne!(
            config_checksum("x", &none, Some(&SecretString("a".into())), &pepper),
            config_checksum("x", &none, Some(&SecretString("b".into())), &pepper)
        );
    }

    #[test]
    fn an_embedded_store_runs_as_a_stateful_set_with_a_claim_per_replica_mounted_where_the_config_points() {
        let (v, owner) = validated(json!({"receiver": {"replicas": 3, "store": {"type": "embedded", "storageClassName": "fast"}}}));
        let config = crate::reconcile::build::receiver_config::render(&v, &Previous::default());
        assert!(config.contains("type: embedded") && config.contains(&format!("path: {STORE_DIR}")), "{config}");
        let s = stateful_set(&v, &Previous::default(), "image", &template("x"), &owner);
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("todo-cleanup-receiver-pods"));
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim.metadata.name.as_deref(), Some("store"));
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"], Quantity("1Gi".into()));
        let retention = spec.persistent_volume_claim_retention_policy.as_ref().unwrap();
        assert_eq!((retention.when_deleted.as_deref(), retention.when_scaled.as_deref()), (Some("Retain"), Some("Retain")));
        let pod = spec.template.spec.as_ref().unwrap();
        let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
        assert!(mounts.iter().any(|m| m.name == "store" && m.mount_path == STORE_DIR && m.read_only != Some(true)));
        // The same hardened pod as the Deployment's.
        let d = deployment(&v, &Previous::default(), "image", &template("x"), &owner);
        let mut deployment_pod = d.spec.unwrap().template;
        deployment_pod.spec.as_mut().unwrap().containers[0].volume_mounts.as_mut().unwrap().retain(|m| m.name != "store");
        let mut stateful_pod = spec.template.clone();
        stateful_pod.spec.as_mut().unwrap().containers[0].volume_mounts.as_mut().unwrap().retain(|m| m.name != "store");
        assert_eq!(deployment_pod, stateful_pod);
        let headless = pods_service(&v, &owner);
        assert_eq!(headless.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
        assert_eq!(headless.metadata.name.as_deref(), Some("todo-cleanup-receiver-pods"));
    }
}

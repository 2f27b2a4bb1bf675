//! The receiver's Kubernetes objects: its config (ConfigMap, the receiver
//! config contract of DESIGN.md), the generated `Authorization` Secret, a
//! hardened Deployment and a Service. Secrets reach the receiver as files of
//! one projected volume, so a rotated Secret is picked up without a restart;
//! a config change rolls the pods through a checksum annotation.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, Secret, SecretProjection, SecurityContext,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::fusionauth::{RECEIVER_PATH, RECEIVER_PORT};
use crate::names;
use crate::resource::{BodyMode, SecretKeyRef};
use crate::validate::{Signing, Validated};

/// Where the config file is mounted.
pub const CONFIG_DIR: &str = "/etc/fusionhook/config";
/// Where Secret values are mounted, one file each.
pub const SECRETS_DIR: &str = "/etc/fusionhook/secrets";
/// Pod template annotation that changes with the config, so it rolls the pods.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "fusionhook.dev/config-checksum";
/// Key of the generated Secret.
pub const AUTHORIZATION_KEY: &str = "authorization";
/// UID the receiver runs as (distroless `nonroot`).
const RUN_AS: i64 = 65532;

/// One Secret key mounted as a file under [`SECRETS_DIR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    /// Secret name.
    pub secret: String,
    /// Key in it.
    pub key: String,
    /// File name under [`SECRETS_DIR`].
    pub file: String,
}

impl SecretMount {
    fn new(reference: &SecretKeyRef, file: String) -> Self {
        Self { secret: reference.name.clone(), key: reference.key.clone(), file }
    }

    fn path(&self) -> String {
        format!("{SECRETS_DIR}/{}", self.file)
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

/// Every Secret key the receiver needs, in a stable order.
pub fn secret_mounts(v: &Validated) -> Vec<SecretMount> {
    let mut mounts = Vec::new();
    match (&v.auth_refs.authorization_secret_ref, &v.auth_refs.basic) {
        (_, Some(basic)) => {
            mounts.push(SecretMount::new(&basic.username_secret_ref, "basic-username".into()));
            mounts.push(SecretMount::new(&basic.password_secret_ref, "basic-password".into()));
        }
        (Some(reference), None) => mounts.push(SecretMount::new(reference, AUTHORIZATION_KEY.into())),
        (None, None) => mounts.push(SecretMount {
            secret: names::authorization_secret_name(&v.name),
            key: AUTHORIZATION_KEY.into(),
            file: AUTHORIZATION_KEY.into(),
        }),
    }
    if v.previous_authorization.is_some() {
        mounts.push(SecretMount {
            secret: names::authorization_secret_name(&v.name),
            key: names::PREVIOUS_AUTHORIZATION_KEY.into(),
            file: names::PREVIOUS_AUTHORIZATION_KEY.into(),
        });
    }
    if let (Some(Signing::Hmac { .. }), Some(reference)) =
        (&v.signing, v.auth_refs.signature.as_ref().and_then(|s| s.hmac_secret_ref.as_ref()))
    {
        mounts.push(SecretMount::new(reference, "signature-hmac".into()));
    }
    for (i, route) in v.routes.iter().enumerate() {
        for (name, header) in route.http.iter().flat_map(|h| h.headers.iter()) {
            if let Some(reference) = &header.secret_key_ref {
                mounts.push(SecretMount::new(reference, format!("header-{i}-{}", name.to_ascii_lowercase())));
            }
        }
    }
    mounts
}

/// The receiver config (DESIGN.md's contract), as YAML.
pub fn receiver_config(v: &Validated) -> String {
    let mounts = secret_mounts(v);
    let path_of = |file: &str| mounts.iter().find(|m| m.file == file).map(SecretMount::path);
    let mut auth = serde_json::Map::new();
    if v.auth_refs.basic.is_some() {
        auth.insert("basic".into(), json!({"usernameFile": path_of("basic-username"), "passwordFile": path_of("basic-password")}));
    } else {
        auth.insert("authorizationFile".into(), json!(path_of(AUTHORIZATION_KEY)));
        if v.previous_authorization.is_some() {
            auth.insert("previousAuthorizationFile".into(), json!(path_of(names::PREVIOUS_AUTHORIZATION_KEY)));
        }
    }
    match &v.signing {
        Some(Signing::Hmac { algorithm, .. }) => {
            auth.insert("signature".into(), json!({"algorithms": [algorithm], "hmacSecretFile": path_of("signature-hmac")}));
        }
        Some(Signing::KeyPair { algorithm, .. }) => {
            let jwks = format!("{}/.well-known/jwks.json", v.fusionauth_url.trim_end_matches('/'));
            auth.insert("signature".into(), json!({"algorithms": [algorithm], "jwksUrl": jwks}));
        }
        None => {}
    }
    let routes: Vec<Value> = v
        .routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let mut out = json!({"name": route.name, "events": route.events});
            if let Some(http) = &route.http {
                let mut action = json!({"url": http.url});
                if let Some(method) = &http.method {
                    action["method"] = json!(method);
                }
                if let Some(timeout) = http.timeout_ms {
                    action["timeoutMs"] = json!(timeout);
                }
                if let Some(body) = http.body {
                    action["body"] = json!(match body {
                        BodyMode::Event => "event",
                        BodyMode::None => "none",
                    });
                }
                if !http.headers.is_empty() {
                    let headers: serde_json::Map<String, Value> = http
                        .headers
                        .iter()
                        .map(|(name, value)| {
                            let rendered = match (&value.value, &value.secret_key_ref) {
                                (Some(text), _) => json!(text),
                                (None, _) => json!({"valueFile": path_of(&format!("header-{i}-{}", name.to_ascii_lowercase()))}),
                            };
                            (name.clone(), rendered)
                        })
                        .collect();
                    action["headers"] = Value::Object(headers);
                }
                out["http"] = action;
            }
            if let Some(log) = &route.log {
                out["log"] = json!({"fields": log.fields});
            }
            out
        })
        .collect();
    let config = json!({
        "listen": format!("0.0.0.0:{RECEIVER_PORT}"),
        "path": RECEIVER_PATH,
        "auth": auth,
        "readTimeoutMs": v.read_timeout_ms,
        // Endpoints take a moment to drop a terminating pod; keep serving meanwhile.
        "shutdown": {"delayMs": 5000, "drainTimeoutMs": 20000},
        "routes": routes,
    });
    let yaml = serde_yaml::to_string(&config).unwrap_or_default();
    format!("# Rendered by fusionhook-operator for {}/{}; edits are overwritten.\n{yaml}", v.namespace, v.name)
}

/// SHA-256 (hex) of the config, for the pod template annotation.
pub fn config_checksum(config: &str) -> String {
    Sha256::digest(config.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The ConfigMap holding `receiver.yaml`. It holds no secret values.
pub fn config_map(v: &Validated, config: &str, owner: &OwnerReference) -> ConfigMap {
    ConfigMap {
        metadata: metadata(v, names::receiver_name(&v.name), owner),
        data: Some(BTreeMap::from([("receiver.yaml".to_owned(), config.to_owned())])),
        ..ConfigMap::default()
    }
}

/// The operator-owned Secret: the generated `Authorization` value (when the
/// user gives neither a value nor Basic credentials) and, during a rotation,
/// the previous value. `data`, not `stringData`: server-side apply then
/// removes a key the operator stops applying.
pub fn authorization_secret(v: &Validated, generated: Option<&str>, owner: &OwnerReference) -> Secret {
    let mut data = BTreeMap::new();
    if let Some(value) = generated {
        data.insert(AUTHORIZATION_KEY.to_owned(), ByteString(value.as_bytes().to_vec()));
    }
    if let Some(previous) = &v.previous_authorization {
        data.insert(names::PREVIOUS_AUTHORIZATION_KEY.to_owned(), ByteString(previous.0.as_bytes().to_vec()));
    }
    Secret {
        metadata: metadata(v, names::authorization_secret_name(&v.name), owner),
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

/// The receiver Deployment: non-root, read-only root filesystem, no
/// privilege escalation, all capabilities dropped, RuntimeDefault seccomp,
/// no service account token, probes, and the config checksum.
pub fn deployment(v: &Validated, default_image: &str, checksum: &str, owner: &OwnerReference) -> Deployment {
    let name = names::receiver_name(&v.name);
    let mut sources: Vec<VolumeProjection> = Vec::new();
    for mount in secret_mounts(v) {
        let item = KeyToPath { key: mount.key.clone(), path: mount.file.clone(), mode: None };
        match sources.iter_mut().find(|s| s.secret.as_ref().map(|s| s.name.as_str()) == Some(mount.secret.as_str())) {
            Some(source) => source.secret.as_mut().into_iter().for_each(|s| s.items.get_or_insert_with(Vec::new).push(item.clone())),
            None => sources.push(VolumeProjection {
                secret: Some(SecretProjection { name: mount.secret.clone(), items: Some(vec![item]), optional: Some(false) }),
                ..VolumeProjection::default()
            }),
        }
    }
    let container = Container {
        name: "receiver".to_owned(),
        image: Some(v.image.clone().unwrap_or_else(|| default_image.to_owned())),
        command: Some(vec!["/usr/local/bin/fusionhook-receiver".to_owned()]),
        args: Some(vec!["--config".to_owned(), format!("{CONFIG_DIR}/receiver.yaml")]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: RECEIVER_PORT.into(),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        resources: Some(v.resources.clone().unwrap_or_else(default_resources)),
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
    };
    let mut template_meta = ObjectMeta { labels: Some(labels(v)), ..ObjectMeta::default() };
    template_meta.annotations = Some(BTreeMap::from([(CONFIG_CHECKSUM_ANNOTATION.to_owned(), checksum.to_owned())]));
    Deployment {
        metadata: metadata(v, name.clone(), owner),
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
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
                        ..PodSecurityContext::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    volumes: Some(vec![
                        Volume {
                            name: "config".to_owned(),
                            config_map: Some(ConfigMapVolumeSource { name: name.clone(), ..ConfigMapVolumeSource::default() }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "secrets".to_owned(),
                            projected: Some(ProjectedVolumeSource { sources: Some(sources), default_mode: Some(0o440) }),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The receiver Service (the in-cluster URL FusionAuth calls by default).
pub fn service(v: &Validated, owner: &OwnerReference) -> Service {
    Service {
        metadata: metadata(v, names::receiver_name(&v.name), owner),
        spec: Some(ServiceSpec {
            selector: Some(labels(v)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: RECEIVER_PORT.into(),
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{owner_reference, receiver_url};
    use crate::resource::FusionAuthWebhook;
    use crate::validate::{SecretData, validate};

    const UID: &str = "6a1f8a52-3c3e-4a7e-9a57-2d9c4f6b1e01";

    fn resource(extra: Value) -> FusionAuthWebhook {
        let mut value = json!({
            "apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook",
            "metadata": {"name": "todo-cleanup", "namespace": "todo", "uid": UID},
            "spec": {
                "fusionAuth": {"url": "https://auth.example.com/", "apiKeySecretRef": {"name": "fa", "key": "api-key"}},
                "events": ["user.delete"],
                "routes": [
                    {"name": "todo-cleanup", "events": ["user.delete"], "http": {"method": "DELETE", "url": "http://todo/users/{{event.user.id}}/todos", "timeoutMs": 1500,
                     "headers": {"X-Api-Key": {"secretKeyRef": {"name": "todo-api", "key": "token"}}, "X-Source": {"value": "fusionhook"}}}},
                    {"name": "audit", "events": ["*"], "log": {"fields": ["event.user.id"]}}
                ]
            }
        });
        if let (Some(spec), Value::Object(extra)) = (value["spec"].as_object_mut(), extra) {
            spec.extend(extra);
        }
        serde_json::from_value(value).unwrap()
    }

    fn secrets() -> SecretData {
        let mut data = SecretData::new();
        for (name, key, value) in [("fa", "api-key", "k"), ("todo-api", "token", "t"), ("sig", "hmac", "h"), ("auth", "value", "a")] {
            data.entry(name.to_owned()).or_default().insert(key.to_owned(), value.as_bytes().to_vec());
        }
        data
    }

    #[test]
    fn routes_the_receiver_would_refuse_are_invalid_before_anything_is_written() {
        let route = |http: Value| json!({"routes": [{"name": "r", "events": ["user.delete"], "http": http}]});
        let cases = [
            (
                route(json!({"url": "http://todo/users/{{user.id}}"})),
                "routes[0].http.url: placeholder {{user.id}} must start with `event.`",
            ),
            (route(json!({"url": "http://todo/", "method": "GE T"})), "routes[0].http.method"),
            (route(json!({"url": "http://todo/a/../{{event.user.id}}"})), "routes[0].http.url: has a `.` or `..` path segment"),
            (
                route(json!({"url": "http://todo/", "headers": {"X-Source": {"value": "a"}, "x-source": {"value": "b"}}})),
                "routes[0].http.headers.x-source: is given twice",
            ),
            (json!({"routes": [{"name": "r", "events": ["user.delete"], "log": {"fields": ["user.email"]}}]}), "routes[0].log.fields[0]"),
        ];
        for (extra, expected) in cases {
            match validate(&resource(extra.clone()), &secrets()) {
                Err(crate::validate::ValidationError::InvalidSpec(message)) => {
                    assert!(message.contains(expected), "{extra}: expected {expected:?} in {message:?}");
                }
                other => panic!("{extra}: expected InvalidSpec, got {other:?}"),
            }
        }
        // Secret files do not exist where the operator runs: the check does not read them.
        assert!(validate(&resource(json!({})), &secrets()).is_ok());
    }

    fn validated(extra: Value) -> (Validated, OwnerReference) {
        let r = resource(extra);
        (validate(&r, &secrets()).unwrap(), owner_reference(&r).unwrap())
    }

    #[test]
    fn the_pod_is_hardened() {
        let (v, owner) = validated(json!({}));
        let d = deployment(&v, "ghcr.io/fusionhook/fusionhook:0.1.0", "abc", &owner);
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
    fn spec_fields_reach_the_workload() {
        let (v, owner) = validated(json!({"receiver": {"replicas": 3, "image": "registry.local/receiver:dev",
            "resources": {"limits": {"memory": "64Mi"}}}}));
        let d = deployment(&v, "default-image", "x", &owner);
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.local/receiver:dev"));
        assert_eq!(c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"], Quantity("64Mi".into()));
        // Every object is owned by the resource.
        let s = service(&v, &owner);
        for meta in [&d.metadata, &s.metadata, &config_map(&v, "c", &owner).metadata, &authorization_secret(&v, Some("x"), &owner).metadata]
        {
            assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, UID);
            assert_eq!(meta.owner_references.as_ref().unwrap()[0].controller, Some(true));
            assert_eq!(meta.namespace.as_deref(), Some("todo"));
        }
        // The Service selects the pods and is what the registered URL names.
        assert_eq!(s.spec.as_ref().unwrap().selector.as_ref(), spec.template.metadata.as_ref().unwrap().labels.as_ref());
        let url = receiver_url(&v);
        assert!(url.starts_with(&format!(
            "http://{}.todo.svc:{}/",
            s.metadata.name.as_ref().unwrap(),
            s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port
        )));
    }

    #[test]
    fn secrets_are_mounted_as_files_the_config_points_at() {
        let (v, owner) = validated(json!({"auth": {"signature": {"algorithm": "HS256", "hmacSecretRef": {"name": "sig", "key": "hmac"}}}}));
        let mounts = secret_mounts(&v);
        let files: Vec<(&str, &str, &str)> = mounts.iter().map(|m| (m.secret.as_str(), m.key.as_str(), m.file.as_str())).collect();
        assert_eq!(
            files,
            [
                ("todo-cleanup-receiver-auth", "authorization", "authorization"),
                ("sig", "hmac", "signature-hmac"),
                ("todo-api", "token", "header-0-x-api-key"),
            ]
        );
        let config = receiver_config(&v);
        assert!(config.contains("authorizationFile: /etc/fusionhook/secrets/authorization"), "{config}");
        assert!(config.contains("hmacSecretFile: /etc/fusionhook/secrets/signature-hmac"), "{config}");
        assert!(config.contains("valueFile: /etc/fusionhook/secrets/header-0-x-api-key"), "{config}");
        for value in ["\"k\"", "\"t\"", "\"h\""] {
            assert!(!config.contains(&format!(": {value}")), "no secret value in the config");
        }
        let d = deployment(&v, "i", "x", &owner);
        let volumes = d.spec.unwrap().template.spec.unwrap().volumes.unwrap();
        let projected = volumes.iter().find(|v| v.name == "secrets").unwrap().projected.as_ref().unwrap();
        assert_eq!(projected.sources.as_ref().unwrap().len(), 3, "one source per Secret");

        // A user-given Authorization Secret or Basic credentials replace the generated one.
        let (v, _) = validated(json!({"auth": {"authorizationSecretRef": {"name": "auth", "key": "value"}}}));
        assert_eq!(secret_mounts(&v)[0].secret, "auth");
        let (v, _) = validated(
            json!({"auth": {"basic": {"usernameSecretRef": {"name": "auth", "key": "value"}, "passwordSecretRef": {"name": "auth", "key": "value"}}}}),
        );
        assert!(receiver_config(&v).contains("usernameFile: /etc/fusionhook/secrets/basic-username"));
        let (v, _) =
            validated(json!({"auth": {"signature": {"algorithm": "RS256", "signingKeyId": "11111111-1111-4111-8111-111111111111"}}}));
        assert!(receiver_config(&v).contains("jwksUrl: https://auth.example.com/.well-known/jwks.json"));
    }

    #[test]
    fn the_rendered_config_is_one_the_receiver_accepts() {
        let (v, _) = validated(json!({"auth": {"signature": {"algorithm": "HS256", "hmacSecretRef": {"name": "sig", "key": "hmac"}}}}));
        let dir = tempfile::tempdir().unwrap();
        for mount in secret_mounts(&v) {
            std::fs::write(dir.path().join(&mount.file), "value\n").unwrap();
        }
        let config = receiver_config(&v).replace(SECRETS_DIR, &dir.path().display().to_string());
        let parsed = fusionhook_receiver::Config::from_yaml(&config).unwrap_or_else(|e| panic!("{e}\n{config}"));
        assert_eq!(parsed.routes.len(), 2);
        assert_eq!(parsed.read_timeout, std::time::Duration::from_millis(2000));
        assert!(parsed.auth.signature.is_some() && parsed.auth.authorization.is_some());
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }

    #[test]
    fn a_config_change_changes_the_checksum() {
        let (a, _) = validated(json!({}));
        let (b, _) = validated(json!({"delivery": {"connectTimeoutMs": 1000, "readTimeoutMs": 3000}}));
        assert_eq!(config_checksum(&receiver_config(&a)), config_checksum(&receiver_config(&a)));
        assert_ne!(config_checksum(&receiver_config(&a)), config_checksum(&receiver_config(&b)));
        assert_eq!(config_checksum("x").len(), 64);
    }
}

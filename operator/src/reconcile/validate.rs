//! validate: resource + the Secrets it references -> a checked value, or a
//! typed error that becomes a status condition (never a crash loop).
//!
//! Pure: no client, no clock. The dereference stage reads the Secrets; this
//! stage only looks at what it is given. The CRD schema already refuses most
//! mistakes; these checks repeat the ones a cluster without CEL would let
//! through and add those only the operator can see (Secrets, FusionAuth's
//! event names, route timeouts against the read timeout).

use std::collections::BTreeMap;

use fusionhook_fusionauth::event_types;
use fusionhook_fusionauth::model::TransactionType;
use uuid::Uuid;

use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::names;
use crate::reconcile::conditions::Reason;

use crate::resource::{DeletionPolicy, FusionAuthWebhook, ReceiverAuth, Route, SecretKeyRef, StoreSpec, StoreType, TransactionLevel};

/// Data of the Secrets the resource references, by Secret name then key.
/// A Secret that does not exist is simply absent.
pub type SecretData = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Why a resource cannot be reconciled. `reason()` is the condition reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A referenced Secret does not exist (yet).
    #[error("Secret {name} does not exist")]
    SecretNotFound {
        /// Secret name.
        name: String,
    },
    /// The Secret exists but lacks the key (or it is empty or not UTF-8).
    #[error("Secret {name} has no usable key {key}")]
    SecretKeyMissing {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
    },
    /// The spec itself is wrong; the message names the field.
    #[error("{0}")]
    InvalidSpec(String),
}

impl ValidationError {
    /// Condition reason.
    pub fn reason(&self) -> Reason {
        match self {
            Self::SecretNotFound { .. } => Reason::SecretNotFound,
            Self::SecretKeyMissing { .. } => Reason::SecretKeyMissing,
            Self::InvalidSpec(_) => Reason::InvalidSpec,
        }
    }
}

/// A secret value; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An HMAC signing key: what FusionAuth signs with and receivers check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacKey {
    /// HS256/384/512.
    pub algorithm: String,
    /// The shared secret.
    pub secret: SecretString,
}

impl HmacKey {
    /// The Key Master id this key is imported under for the resource `uid`
    /// (`pepper`: its FusionAuth API key): derived from the algorithm and
    /// the secret, so a changed secret or algorithm is a new key (FusionAuth
    /// never returns a secret to compare).
    pub fn key_id(&self, uid: &str, pepper: &SecretString) -> Uuid {
        names::signing_key_id(uid, &self.algorithm, &self.secret.0, &pepper.0)
    }
}

/// How the receiver checks the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// HMAC: the operator imports the secret under `key_id`.
    Hmac {
        /// The key.
        key: HmacKey,
        /// Its Key Master id.
        key_id: Uuid,
    },
    /// A FusionAuth key pair; the receiver uses the JWKS.
    KeyPair {
        /// RS*/ES*/EdDSA.
        algorithm: String,
        /// The existing FusionAuth key.
        key_id: Uuid,
    },
}

/// A resource that can be reconciled.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// Namespace of the resource.
    pub namespace: String,
    /// Name of the resource.
    pub name: String,
    /// Uid of the resource.
    pub uid: String,
    /// Generation being reconciled.
    pub generation: Option<i64>,
    /// The FusionAuth webhook id.
    pub webhook_id: Uuid,
    /// FusionAuth base URL.
    pub fusionauth_url: String,
    /// The global API key.
    pub api_key: SecretString,
    /// Extra CA bundle for FusionAuth.
    pub ca_pem: Option<Vec<u8>>,
    /// Events to enable (wire names, deduplicated, sorted).
    pub events: Vec<String>,
    /// All tenants.
    pub global: bool,
    /// Listed tenants.
    pub tenant_ids: Vec<Uuid>,
    /// Transaction level when the tenant switches are managed.
    pub tenant_events: Option<TransactionType>,
    /// FusionAuth connect timeout, ms.
    pub connect_timeout_ms: u32,
    /// FusionAuth read timeout, ms.
    pub read_timeout_ms: u32,
    /// The `Authorization` value, when the user gave one (else the operator generates it).
    pub authorization: Option<SecretString>,
    /// Basic credentials.
    pub basic: Option<(SecretString, SecretString)>,
    /// Signature settings.
    pub signing: Option<Signing>,
    /// Where the auth values come from (the receiver mounts these Secrets).
    pub auth_refs: ReceiverAuth,
    /// Receiver image override.
    pub image: Option<String>,
    /// Receiver resources override.
    pub resources: Option<ResourceRequirements>,
    /// Routes, as in the spec.
    pub routes: Vec<Route>,
    /// Receiver replicas.
    pub replicas: i32,
    /// External URL, when FusionAuth runs outside the cluster.
    pub external_url: Option<String>,
    /// The receiver's store (`type: none` when the spec has none).
    pub store: StoreSpec,
    /// Backfill from the Webhook Event Log (`None`: off).
    pub backfill: Option<crate::reconcile::backfill::scan::Settings>,
    /// On delete.
    pub deletion_policy: DeletionPolicy,
}

/// How to reach FusionAuth: all that clean-up needs, so a resource whose
/// spec went bad can still remove its webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// FusionAuth base URL.
    pub url: String,
    /// The global API key.
    pub api_key: SecretString,
    /// Extra CA bundle.
    pub ca_pem: Option<Vec<u8>>,
}

impl Validated {
    /// The HMAC key the spec signs with, and its Key Master id.
    pub fn hmac(&self) -> Option<(&HmacKey, Uuid)> {
        match &self.signing {
            Some(Signing::Hmac { key, key_id }) => Some((key, *key_id)),
            _ => None,
        }
    }

    /// The FusionAuth connection.
    pub fn connection(&self) -> Connection {
        Connection { url: self.fusionauth_url.clone(), api_key: self.api_key.clone(), ca_pem: self.ca_pem.clone() }
    }
}

/// Only the FusionAuth connection of a resource (for clean-up).
pub fn connection(resource: &FusionAuthWebhook, secrets: &SecretData) -> Result<Connection, ValidationError> {
    let spec = &resource.spec.fusion_auth;
    let url = http_url(&spec.url).ok_or_else(|| invalid(format!("fusionAuth.url: `{}` is not an http(s) URL", spec.url)))?;
    let api_key = secret_value(secrets, &spec.api_key_secret_ref)?;
    let ca_pem = spec.ca_secret_ref.as_ref().map(|r| secret_value(secrets, r).map(|s| s.0.into_bytes())).transpose()?;
    Ok(Connection { url, api_key, ca_pem })
}

fn invalid(message: impl Into<String>) -> ValidationError {
    ValidationError::InvalidSpec(message.into())
}

pub(crate) fn secret_value(secrets: &SecretData, reference: &SecretKeyRef) -> Result<SecretString, ValidationError> {
    let data = secrets.get(&reference.name).ok_or_else(|| ValidationError::SecretNotFound { name: reference.name.clone() })?;
    let missing = || ValidationError::SecretKeyMissing { name: reference.name.clone(), key: reference.key.clone() };
    let bytes = data.get(&reference.key).ok_or_else(missing)?;
    let text = std::str::from_utf8(bytes).map_err(|_| missing())?.trim_end_matches(['\n', '\r']);
    if text.is_empty() {
        return Err(missing());
    }
    Ok(SecretString(text.to_owned()))
}

fn transaction(level: TransactionLevel) -> TransactionType {
    match level {
        TransactionLevel::None => TransactionType::None,
        TransactionLevel::Any => TransactionType::Any,
        TransactionLevel::SimpleMajority => TransactionType::SimpleMajority,
        TransactionLevel::SuperMajority => TransactionType::SuperMajority,
        TransactionLevel::AbsoluteMajority => TransactionType::AbsoluteMajority,
    }
}

/// Checks a resource against the Secrets it references.
pub fn validate(resource: &FusionAuthWebhook, secrets: &SecretData) -> Result<Validated, ValidationError> {
    let meta = &resource.metadata;
    let spec = &resource.spec;
    let (Some(namespace), Some(name), Some(uid)) = (meta.namespace.clone(), meta.name.clone(), meta.uid.clone()) else {
        return Err(invalid("metadata: namespace, name and uid are required"));
    };
    let events = events(&spec.events)?;
    let Tenants { global, tenant_ids, tenant_events } = tenants(resource)?;
    let delivery = &spec.delivery;
    if delivery.connect_timeout_ms == 0 || delivery.read_timeout_ms == 0 {
        return Err(invalid("delivery: connectTimeoutMs and readTimeoutMs must be greater than 0"));
    }
    let store = store(spec.receiver.store.as_ref(), secrets)?;
    routes(&spec.routes, delivery.read_timeout_ms, store.kind != StoreType::None, secrets)?;
    let Credentials { authorization, basic } = credentials(&spec.auth, secrets)?;
    let Connection { url, api_key, ca_pem } = connection(resource, secrets)?;
    let signing = signing(&spec.auth, &uid, &api_key, secrets)?;
    if spec.receiver.replicas < 0 {
        return Err(invalid("receiver.replicas: must not be negative"));
    }
    if let Some(external) = &spec.receiver.external_url
        && http_url(external).is_none()
    {
        return Err(invalid(format!("receiver.externalUrl: `{external}` is not an http(s) URL")));
    }
    let validated = Validated {
        namespace,
        webhook_id: names::webhook_id(&uid),
        name,
        uid,
        generation: meta.generation,
        fusionauth_url: url,
        api_key,
        ca_pem,
        events,
        global,
        tenant_ids,
        tenant_events,
        connect_timeout_ms: delivery.connect_timeout_ms,
        read_timeout_ms: delivery.read_timeout_ms,
        authorization,
        basic,
        signing,
        auth_refs: spec.auth.clone(),
        image: spec.receiver.image.clone(),
        resources: spec.receiver.resources.clone(),
        routes: spec.routes.clone(),
        replicas: spec.receiver.replicas,
        external_url: spec.receiver.external_url.clone(),
        store,
        backfill: crate::reconcile::backfill::scan::Settings::of(spec.backfill.as_ref()),
        deletion_policy: spec.deletion_policy,
    };
    Ok(validated)
}

/// The events, as FusionAuth names them, sorted and deduplicated.
fn events(listed: &[String]) -> Result<Vec<String>, ValidationError> {
    if listed.is_empty() {
        return Err(invalid("events: list at least one FusionAuth event type"));
    }
    for (i, event) in listed.iter().enumerate() {
        // FusionAuth refuses unknown names with a 400 (FACTS.md §a.5): say so now.
        if !event_types::accepted_as_event_key(event) || event == "test" {
            return Err(invalid(format!("events[{i}]: `{event}` is not a FusionAuth event type")));
        }
    }
    let mut events = listed.to_vec();
    events.sort();
    events.dedup();
    Ok(events)
}

struct Tenants {
    global: bool,
    tenant_ids: Vec<Uuid>,
    tenant_events: Option<TransactionType>,
}

fn tenants(resource: &FusionAuthWebhook) -> Result<Tenants, ValidationError> {
    let selection = resource.spec.tenants.clone().unwrap_or_default();
    let mut tenant_ids = Vec::with_capacity(selection.tenant_ids.len());
    for (i, id) in selection.tenant_ids.iter().enumerate() {
        tenant_ids.push(Uuid::parse_str(id).map_err(|_| invalid(format!("tenants.tenantIds[{i}]: `{id}` is not a tenant id (UUID)")))?);
    }
    let global = match (selection.global, tenant_ids.is_empty()) {
        (Some(true), false) => return Err(invalid("tenants: set global: true or list tenantIds, not both")),
        (Some(false), true) => return Err(invalid("tenants: global: false needs tenantIds, or the webhook never receives anything")),
        (_, true) => true,
        (_, false) => false,
    };
    let tenant_events = match &resource.spec.tenant_events {
        Some(_) if tenant_ids.is_empty() => {
            return Err(invalid("tenantEvents: list tenants.tenantIds; the operator only changes the switches of tenants you list"));
        }
        Some(t) => Some(transaction(t.transaction_type)),
        None => None,
    };
    Ok(Tenants { global, tenant_ids, tenant_events })
}

/// The store, with the checks the CRD's CEL rules make (for a cluster
/// without CEL) and the Secret of a PostgreSQL connection string.
fn store(spec: Option<&StoreSpec>, secrets: &SecretData) -> Result<StoreSpec, ValidationError> {
    let store = spec.cloned().unwrap_or_default();
    match (store.kind, &store.url_secret_ref) {
        (StoreType::Postgres, None) => return Err(invalid("receiver.store: type postgres needs urlSecretRef")),
        (StoreType::Postgres, Some(reference)) => {
            secret_value(secrets, reference)?;
        }
        (_, Some(_)) => return Err(invalid("receiver.store.urlSecretRef: only for type postgres")),
        (_, None) => {}
    }
    if store.kind != StoreType::Embedded && (store.size.is_some() || store.storage_class_name.is_some()) {
        return Err(invalid("receiver.store: size and storageClassName are for type embedded"));
    }
    if let Some(size) = &store.size
        && !crate::quantity::positive(&size.0)
    {
        return Err(invalid(format!("receiver.store.size: `{}` is not a storage size like 1Gi or 500Mi", size.0)));
    }
    Ok(store)
}

/// What only the operator can check about routes (the receiver's own parser
/// checks the rest: `build::receiver_config::receiver_accepts`): unique names, one action, a
/// timeout inside FusionAuth's (for routes that run before the answer), the
/// Secrets of header values and signing.
fn routes(routes: &[Route], read_timeout_ms: u32, stored: bool, secrets: &SecretData) -> Result<(), ValidationError> {
    let mut names = std::collections::BTreeSet::new();
    for (i, route) in routes.iter().enumerate() {
        if !names.insert(route.name.as_str()) {
            return Err(invalid(format!("routes[{i}].name: `{}` is used by another route", route.name)));
        }
        if route.http.is_some() == route.log.is_some() {
            return Err(invalid(format!("routes[{i}]: give exactly one action, http or log")));
        }
        let durable = match route.ack {
            Some(crate::resource::Ack::Durable) if !stored => {
                return Err(invalid(format!("routes[{i}].ack: durable needs receiver.store (embedded or postgres)")));
            }
            Some(crate::resource::Ack::Durable) | None => stored,
            Some(crate::resource::Ack::Sync) => false,
        };
        let durable_only = [
            ("retry", route.retry.is_some()),
            ("ordering", route.ordering.is_some()),
            ("delayMs", route.delay_ms.is_some()),
            ("concurrency", route.concurrency.is_some()),
        ];
        if let Some((field, _)) = durable_only.iter().find(|(_, set)| *set).filter(|_| !durable) {
            return Err(invalid(format!("routes[{i}].{field}: only for durable routes (set receiver.store and leave ack at durable)")));
        }
        // A durable delivery runs after the answer: FusionAuth's read timeout does not bound it.
        if let Some(timeout) = route.http.as_ref().and_then(|h| h.timeout_ms)
            && timeout >= read_timeout_ms
            && !durable
        {
            return Err(invalid(format!(
                "routes[{i}].http.timeoutMs: {timeout} must be below delivery.readTimeoutMs ({read_timeout_ms}): FusionAuth would give up first"
            )));
        }
        for (name, header) in route.http.iter().flat_map(|h| h.headers.iter()) {
            if header.value.is_some() == header.secret_key_ref.is_some() {
                return Err(invalid(format!("routes[{i}].http.headers.{name}: give value or secretKeyRef, exactly one")));
            }
            if let Some(reference) = &header.secret_key_ref {
                secret_value(secrets, reference)?;
            }
        }
        if let Some(sign) = route.http.as_ref().and_then(|h| h.sign.as_ref()) {
            secret_value(secrets, &sign.secret_ref)?;
        }
    }
    Ok(())
}

struct Credentials {
    authorization: Option<SecretString>,
    basic: Option<(SecretString, SecretString)>,
}

fn credentials(auth: &ReceiverAuth, secrets: &SecretData) -> Result<Credentials, ValidationError> {
    let authorization = auth.authorization_secret_ref.as_ref().map(|r| secret_value(secrets, r)).transpose()?;
    let basic = match &auth.basic {
        Some(b) => Some((secret_value(secrets, &b.username_secret_ref)?, secret_value(secrets, &b.password_secret_ref)?)),
        None => None,
    };
    if authorization.is_some() && basic.is_some() {
        return Err(invalid("auth: authorizationSecretRef and basic both use the Authorization header; choose one"));
    }
    Ok(Credentials { authorization, basic })
}

fn signing(auth: &ReceiverAuth, uid: &str, pepper: &SecretString, secrets: &SecretData) -> Result<Option<Signing>, ValidationError> {
    let Some(sig) = &auth.signature else { return Ok(None) };
    let hmac = matches!(sig.algorithm.as_str(), "HS256" | "HS384" | "HS512");
    match (&sig.hmac_secret_ref, &sig.signing_key_id) {
        (Some(reference), None) if hmac => {
            let key = HmacKey { algorithm: sig.algorithm.clone(), secret: secret_value(secrets, reference)? };
            Ok(Some(Signing::Hmac { key_id: key.key_id(uid, pepper), key }))
        }
        (None, Some(key)) if !hmac => Ok(Some(Signing::KeyPair {
            algorithm: sig.algorithm.clone(),
            key_id: Uuid::parse_str(key).map_err(|_| invalid(format!("auth.signature.signingKeyId: `{key}` is not a key id (UUID)")))?,
        })),
        _ => Err(invalid(format!(
            "auth.signature: {} needs {}",
            sig.algorithm,
            if hmac { "hmacSecretRef (and no signingKeyId)" } else { "signingKeyId (and no hmacSecretRef)" }
        ))),
    }
}

/// Minimal absolute http(s) URL check without pulling a URL parser into the pure stage.
fn http_url(text: &str) -> Option<String> {
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"))?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !text.contains(char::is_whitespace)).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The pipeline's check: the spec, then the receiver's own parser.
    fn accepted(r: &FusionAuthWebhook) -> Result<Validated, ValidationError> {
        validate(r, &secrets()).and_then(|v| crate::reconcile::build::receiver_config::receiver_accepts(&v).map(|()| v))
    }
    use crate::reconcile::build::fixtures::{resource, secrets};

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
            match accepted(&resource(extra.clone())) {
                Err(ValidationError::InvalidSpec(message)) => {
                    assert!(message.contains(expected), "{extra}: expected {expected:?} in {message:?}");
                }
                other => panic!("{extra}: expected InvalidSpec, got {other:?}"),
            }
        }
        // Secret files do not exist where the operator runs: the check does not read them.
        assert!(accepted(&resource(json!({}))).is_ok());
    }

    #[test]
    fn store_and_durable_route_mistakes_are_conditions_naming_the_field() {
        let route = |extra: Value| {
            let mut r = json!({"name": "r", "events": ["user.delete"], "log": {}});
            r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            r
        };
        let postgres = json!({"type": "postgres", "urlSecretRef": {"name": "pg", "key": "url"}});
        let cases = [
            (json!({"routes": [route(json!({"ack": "durable"}))]}), "routes[0].ack: durable needs receiver.store"),
            (json!({"routes": [route(json!({"retry": {"maxAttempts": 3}}))]}), "routes[0].retry: only for durable routes"),
            (
                json!({"receiver": {"store": postgres.clone()}, "routes": [route(json!({"ack": "sync", "ordering": "perObject"}))]}),
                "routes[0].ordering: only for durable routes",
            ),
            (json!({"receiver": {"store": {"type": "postgres"}}}), "receiver.store: type postgres needs urlSecretRef"),
            (json!({"receiver": {"store": {"type": "none", "size": "1Gi"}}}), "size and storageClassName are for type embedded"),
            (json!({"receiver": {"store": {"type": "embedded", "size": "lots"}}}), "receiver.store.size: `lots` is not a storage size"),
            (json!({"receiver": {"store": {"type": "embedded", "size": "0"}}}), "receiver.store.size: `0` is not a storage size"),
        ];
        for (extra, expected) in cases {
            match accepted(&resource(extra.clone())) {
                Err(ValidationError::InvalidSpec(message)) => {
                    assert!(message.contains(expected), "{extra}: expected {expected:?} in {message:?}");
                }
                other => panic!("{extra}: expected InvalidSpec, got {other:?}"),
            }
        }
        let missing = json!({"receiver": {"store": {"type": "postgres", "urlSecretRef": {"name": "nope", "key": "url"}}}});
        assert_eq!(validate(&resource(missing), &secrets()), Err(ValidationError::SecretNotFound { name: "nope".into() }));
        // A durable route's timeout is not bounded by FusionAuth's read timeout.
        let ok = json!({"receiver": {"store": postgres}, "routes": [{"name": "r", "events": ["user.delete"], "retry": {"maxAttempts": 3},
            "http": {"url": "http://todo/", "timeoutMs": 10000}}]});
        let v = validate(&resource(ok), &secrets()).unwrap();
        assert_eq!(v.store.kind, StoreType::Postgres);
    }
}

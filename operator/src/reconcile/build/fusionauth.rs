//! The FusionAuth side of build: the webhook this resource wants, and the
//! comparison of an observed webhook with it over the fields we own.

use std::collections::{BTreeMap, BTreeSet};

use fusionhook_fusionauth::model::{SignatureConfiguration, Webhook};
use serde_json::{Map, Value};

use crate::names;
use crate::reconcile::validate::{Signing, Validated};

/// Port the receiver listens on inside the pod and behind its Service.
pub const RECEIVER_PORT: u16 = 8080;
/// Path FusionAuth posts to.
pub const RECEIVER_PATH: &str = "/events";

/// The URL FusionAuth calls: the external URL when given, else the
/// in-cluster Service URL.
pub fn receiver_url(v: &Validated) -> String {
    match &v.external_url {
        Some(url) => url.clone(),
        None => format!("http://{}.{}.svc:{RECEIVER_PORT}{RECEIVER_PATH}", names::receiver_name(&v.name), v.namespace),
    }
}

/// The FusionAuth webhook this resource wants. `authorization` is the value
/// FusionAuth must send (the user's, or the generated one); it is ignored
/// when Basic credentials are configured (FusionAuth sends one Authorization
/// header, FACTS.md §c.1).
pub fn fusionauth_webhook(v: &Validated, authorization: &str) -> Webhook {
    let mut headers = BTreeMap::new();
    let (username, password) = match &v.basic {
        Some((user, pass)) => (Some(user.0.clone()), Some(pass.0.clone())),
        None => {
            headers.insert("Authorization".to_owned(), authorization.to_owned());
            (None, None)
        }
    };
    let signature_configuration = v.signing.as_ref().map(|s| SignatureConfiguration {
        enabled: true,
        signing_key_id: Some(match s {
            Signing::Hmac { key_id, .. } | Signing::KeyPair { key_id, .. } => *key_id,
        }),
    });
    let mut data = Map::new();
    data.insert(names::OWNER_DATA_KEY.to_owned(), Value::String(format!("{}/{}", v.namespace, v.name)));
    data.insert(names::OWNER_UID_DATA_KEY.to_owned(), Value::String(v.uid.clone()));
    let mut tenant_ids = v.tenant_ids.clone();
    tenant_ids.sort();
    Webhook {
        id: Some(v.webhook_id),
        url: receiver_url(v),
        connect_timeout: v.connect_timeout_ms,
        read_timeout: v.read_timeout_ms,
        events_enabled: v.events.iter().map(|e| (e.clone(), true)).collect(),
        global: v.global,
        tenant_ids,
        headers,
        http_authentication_username: username,
        http_authentication_password: password,
        signature_configuration,
        description: Some(format!("fusionhook: {}/{}", v.namespace, v.name)),
        data,
        ..Webhook::default()
    }
}

/// The fields of a webhook the operator owns, normalised so that equal
/// intent compares equal (event maps without `false` entries, tenant ids as
/// a set, a disabled signature like an absent one).
#[derive(Debug, PartialEq)]
struct Owned<'a> {
    url: &'a str,
    connect_timeout: u32,
    read_timeout: u32,
    events: BTreeSet<&'a str>,
    global: bool,
    tenant_ids: BTreeSet<uuid::Uuid>,
    headers: &'a BTreeMap<String, String>,
    username: Option<&'a str>,
    password: Option<&'a str>,
    signing_key: Option<uuid::Uuid>,
    description: Option<&'a str>,
    owner: Option<&'a Value>,
    owner_uid: Option<&'a Value>,
    tenant_switches: Option<&'a Value>,
}

fn owned(w: &Webhook) -> Owned<'_> {
    Owned {
        url: &w.url,
        connect_timeout: w.connect_timeout,
        read_timeout: w.read_timeout,
        events: w.events_enabled.iter().filter(|(_, on)| **on).map(|(e, _)| e.as_str()).collect(),
        global: w.global,
        tenant_ids: w.tenant_ids.iter().copied().collect(),
        headers: &w.headers,
        username: w.http_authentication_username.as_deref().filter(|s| !s.is_empty()),
        password: w.http_authentication_password.as_deref().filter(|s| !s.is_empty()),
        signing_key: w.signature_configuration.as_ref().filter(|s| s.enabled).and_then(|s| s.signing_key_id),
        description: w.description.as_deref(),
        owner: w.data.get(names::OWNER_DATA_KEY),
        owner_uid: w.data.get(names::OWNER_UID_DATA_KEY),
        tenant_switches: w.data.get(names::TENANT_SWITCHES_DATA_KEY).filter(|v| v.as_array().is_some_and(|a| !a.is_empty())),
    }
}

/// Whether the observed webhook differs from the desired one in any field
/// the operator owns. Steady state: false, so no write happens.
pub fn drifted(observed: &Webhook, desired: &Webhook) -> bool {
    owned(observed) != owned(desired)
}

/// Names of the owned fields that differ, for Events and logs (no values:
/// headers and passwords are secrets).
pub fn drifted_fields(observed: &Webhook, desired: &Webhook) -> Vec<&'static str> {
    let (o, d) = (owned(observed), owned(desired));
    let mut fields = Vec::new();
    let mut check = |differs: bool, name: &'static str| {
        if differs {
            fields.push(name);
        }
    };
    check(o.url != d.url, "url");
    check(o.connect_timeout != d.connect_timeout, "connectTimeout");
    check(o.read_timeout != d.read_timeout, "readTimeout");
    check(o.events != d.events, "eventsEnabled");
    check(o.global != d.global, "global");
    check(o.tenant_ids != d.tenant_ids, "tenantIds");
    check(o.headers != d.headers, "headers");
    check(o.username != d.username || o.password != d.password, "httpAuthentication");
    check(o.signing_key != d.signing_key, "signatureConfiguration");
    check(o.description != d.description, "description");
    check(o.owner != d.owner || o.owner_uid != d.owner_uid || o.tenant_switches != d.tenant_switches, "data");
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::validate::{SecretData, ValidationError, validate};
    use crate::resource::FusionAuthWebhook;

    const UID: &str = "6a1f8a52-3c3e-4a7e-9a57-2d9c4f6b1e01";
    const TENANT_A: &str = "11111111-1111-4111-8111-111111111111";
    const TENANT_B: &str = "22222222-2222-4222-8222-222222222222";

    fn resource(spec: serde_json::Value) -> FusionAuthWebhook {
        let mut value = serde_json::json!({
            "apiVersion": "fusionhook.dev/v1alpha1",
            "kind": "FusionAuthWebhook",
            "metadata": {"name": "todo-cleanup", "namespace": "todo", "uid": UID, "generation": 3},
            "spec": {
                "fusionAuth": {"url": "http://fusionauth.fusionauth.svc:9011", "apiKeySecretRef": {"name": "fa", "key": "api-key"}},
                "events": ["user.delete"],
                "routes": [{"name": "todo-cleanup", "events": ["user.delete"], "http": {"method": "DELETE", "url": "http://todo/users/{{event.user.id}}/todos", "timeoutMs": 1500}}]
            }
        });
        if let (Some(base), serde_json::Value::Object(extra)) = (value["spec"].as_object_mut(), spec) {
            base.extend(extra);
        }
        serde_json::from_value(value).unwrap()
    }

    fn secrets(entries: &[(&str, &str, &str)]) -> SecretData {
        let mut data = SecretData::new();
        for (name, key, value) in entries {
            data.entry((*name).to_owned()).or_default().insert((*key).to_owned(), value.as_bytes().to_vec());
        }
        data
    }

    fn base_secrets() -> SecretData {
        secrets(&[("fa", "api-key", "global-key\n")])
    }

    #[test]
    fn the_example_becomes_the_webhook_fusionauth_needs() {
        let v = validate(&resource(serde_json::json!({})), &base_secrets()).unwrap();
        assert_eq!(v.api_key.0, "global-key", "trailing newline of a Secret file is dropped");
        assert!(!format!("{v:?}").contains("global-key"), "Debug never shows secrets");
        let w = fusionauth_webhook(&v, "generated-value");
        assert_eq!(w.id, Some(names::webhook_id(UID)));
        assert_eq!(w.url, "http://todo-cleanup-receiver.todo.svc:8080/events");
        assert_eq!((w.connect_timeout, w.read_timeout), (1000, 2000));
        assert_eq!(w.events_enabled, BTreeMap::from([("user.delete".to_owned(), true)]));
        assert!(w.global && w.tenant_ids.is_empty());
        assert_eq!(w.headers, BTreeMap::from([("Authorization".to_owned(), "generated-value".to_owned())]));
        assert_eq!(w.http_authentication_username, None);
        assert_eq!(w.signature_configuration, None);
        assert_eq!(w.data[names::OWNER_DATA_KEY], "todo/todo-cleanup");
        assert_eq!(w.data[names::OWNER_UID_DATA_KEY], UID);
        assert_eq!(w.description.as_deref(), Some("fusionhook: todo/todo-cleanup"));
        assert!(!w.description.unwrap().contains("generated-value"));
    }

    #[test]
    fn every_option_reaches_its_place() {
        let spec = serde_json::json!({
            "events": ["user.delete", "user.create", "user.delete"],
            "tenants": {"tenantIds": [TENANT_B, TENANT_A]},
            "tenantEvents": {"transactionType": "AbsoluteMajority"},
            "delivery": {"connectTimeoutMs": 500, "readTimeoutMs": 3000},
            "auth": {
                "basic": {"usernameSecretRef": {"name": "basic", "key": "u"}, "passwordSecretRef": {"name": "basic", "key": "p"}},
                "signature": {"algorithm": "HS512", "hmacSecretRef": {"name": "sig", "key": "hmac"}}
            },
            "receiver": {"replicas": 3, "externalUrl": "https://hooks.example.com/todo"},
            "deletionPolicy": "Orphan"
        });
        let mut s = base_secrets();
        s.extend(secrets(&[("basic", "u", "fa-user"), ("basic", "p", "fa-pass"), ("sig", "hmac", "hmac-secret")]));
        let v = validate(&resource(spec), &s).unwrap();
        assert_eq!(v.events, ["user.create", "user.delete"], "sorted, deduplicated");
        assert_eq!(v.tenant_events, Some(fusionhook_fusionauth::model::TransactionType::AbsoluteMajority));
        assert_eq!(v.replicas, 3);
        assert_eq!(v.deletion_policy, crate::resource::DeletionPolicy::Orphan);
        let w = fusionauth_webhook(&v, "ignored-with-basic");
        assert_eq!(w.url, "https://hooks.example.com/todo");
        assert_eq!((w.connect_timeout, w.read_timeout), (500, 3000));
        assert!(!w.global);
        assert_eq!(w.tenant_ids.iter().map(|t| t.to_string()).collect::<Vec<_>>(), [TENANT_A, TENANT_B]);
        assert!(w.headers.is_empty(), "Basic replaces the Authorization header");
        assert_eq!(w.http_authentication_username.as_deref(), Some("fa-user"));
        assert_eq!(w.http_authentication_password.as_deref(), Some("fa-pass"));
        let sig = w.signature_configuration.unwrap();
        assert!(sig.enabled);
        assert_eq!(sig.signing_key_id, Some(names::signing_key_id(UID, "HS512", "hmac-secret", "global-key")));

        let keypair = serde_json::json!({"auth": {"signature": {"algorithm": "RS256", "signingKeyId": TENANT_A}}});
        let v = validate(&resource(keypair), &base_secrets()).unwrap();
        assert_eq!(fusionauth_webhook(&v, "x").signature_configuration.unwrap().signing_key_id.unwrap().to_string(), TENANT_A);
    }

    #[test]
    fn bad_resources_get_a_reason_a_user_can_act_on() {
        let cases: Vec<(serde_json::Value, SecretData, &str, &str)> = vec![
            (serde_json::json!({}), SecretData::new(), "SecretNotFound", "Secret fa does not exist"),
            (serde_json::json!({}), secrets(&[("fa", "other", "x")]), "SecretKeyMissing", "Secret fa has no usable key api-key"),
            (serde_json::json!({}), secrets(&[("fa", "api-key", "\n")]), "SecretKeyMissing", "api-key"),
            (
                serde_json::json!({"events": ["user.delet"]}),
                base_secrets(),
                "InvalidSpec",
                "events[0]: `user.delet` is not a FusionAuth event type",
            ),
            (serde_json::json!({"tenants": {"global": true, "tenantIds": [TENANT_A]}}), base_secrets(), "InvalidSpec", "not both"),
            (serde_json::json!({"tenants": {"tenantIds": ["nope"]}}), base_secrets(), "InvalidSpec", "tenants.tenantIds[0]"),
            (serde_json::json!({"tenantEvents": {"transactionType": "Any"}}), base_secrets(), "InvalidSpec", "tenantEvents"),
            (
                serde_json::json!({"routes": [{"name": "r", "events": ["*"], "http": {"url": "http://x/", "timeoutMs": 2000}}]}),
                base_secrets(),
                "InvalidSpec",
                "routes[0].http.timeoutMs: 2000 must be below delivery.readTimeoutMs (2000)",
            ),
            (
                serde_json::json!({"routes": [{"name": "r", "events": ["*"], "log": {}}, {"name": "r", "events": ["*"], "log": {}}]}),
                base_secrets(),
                "InvalidSpec",
                "routes[1].name",
            ),
            (
                serde_json::json!({"routes": [{"name": "r", "events": ["*"], "http": {"url": "http://x/", "headers": {"X-Key": {"secretKeyRef": {"name": "hdr", "key": "k"}}}}}]}),
                base_secrets(),
                "SecretNotFound",
                "Secret hdr",
            ),
            (
                serde_json::json!({"auth": {"authorizationSecretRef": {"name": "fa", "key": "api-key"}, "basic": {"usernameSecretRef": {"name": "fa", "key": "api-key"}, "passwordSecretRef": {"name": "fa", "key": "api-key"}}}}),
                base_secrets(),
                "InvalidSpec",
                "choose one",
            ),
            (
                serde_json::json!({"auth": {"signature": {"algorithm": "RS256", "hmacSecretRef": {"name": "fa", "key": "api-key"}}}}),
                base_secrets(),
                "InvalidSpec",
                "RS256 needs signingKeyId",
            ),
            (
                serde_json::json!({"auth": {"signature": {"algorithm": "HS256"}}}),
                base_secrets(),
                "InvalidSpec",
                "HS256 needs hmacSecretRef",
            ),
        ];
        for (spec, secrets, reason, message) in cases {
            let err: ValidationError = validate(&resource(spec.clone()), &secrets).unwrap_err();
            assert_eq!(err.reason().as_str(), reason, "{spec}");
            assert!(err.to_string().contains(message), "{spec}: {err}");
            assert!(!err.to_string().contains("global-key"));
        }
    }

    #[test]
    fn drift_is_judged_on_owned_fields_only() {
        let v = validate(&resource(serde_json::json!({})), &base_secrets()).unwrap();
        let desired = fusionauth_webhook(&v, "auth-value");
        // What FusionAuth returns: same intent, plus fields we do not own.
        let mut observed = desired.clone();
        observed.insert_instant = Some(1);
        observed.events_enabled.insert("user.create".into(), false);
        observed.data.insert("someone-else".into(), "x".into());
        observed.signature_configuration = Some(SignatureConfiguration { enabled: false, signing_key_id: None });
        assert!(!drifted(&observed, &desired), "steady state: nothing to write");

        let mut edited = observed.clone();
        edited.url = "http://elsewhere/".into();
        edited.headers.insert("Authorization".into(), "tampered".into());
        edited.events_enabled.insert("user.create".into(), true);
        assert!(drifted(&edited, &desired));
        assert_eq!(drifted_fields(&edited, &desired), ["url", "eventsEnabled", "headers"]);
    }
}

//! Test fixtures: a resource with every kind of route, and its Secrets.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::reconcile::build::owner_reference;
use crate::reconcile::validate::{SecretData, Validated, validate};
use crate::resource::FusionAuthWebhook;

pub(crate) const UID: &str = "6a1f8a52-3c3e-4a7e-9a57-2d9c4f6b1e01";

pub(crate) fn resource(extra: Value) -> FusionAuthWebhook {
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

pub(crate) fn secrets() -> SecretData {
    let mut data = SecretData::new();
    for (name, key, value) in [
        ("fa", "api-key", "k"),
        ("todo-api", "token", "t"),
        ("sig", "hmac", "h"),
        ("sig", "whsec", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("auth", "value", "a"),
        ("pg", "url", "postgres://fusionhook:secret@127.0.0.1:5432/fusionhook"),
    ] {
        data.entry(name.to_owned()).or_default().insert(key.to_owned(), value.as_bytes().to_vec());
    }
    data
}

pub(crate) fn validated(extra: Value) -> (Validated, OwnerReference) {
    let r = resource(extra);
    (validate(&r, &secrets()).unwrap(), owner_reference(&r).unwrap())
}

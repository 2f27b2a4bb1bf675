//! dereference: reads the Secrets a resource references (the only reads
//! besides the resource itself and the controller's caches).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::names;
use crate::reconcile::validate::SecretData;
use crate::resource::{FusionAuthWebhook, FusionAuthWebhookSpec};

/// Names of the Secrets a resource reads: every reference in the spec, and
/// the operator's own Secret ([`names::kept`]).
pub fn referenced_secrets(name: &str, spec: &FusionAuthWebhookSpec) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    names.insert(spec.fusion_auth.api_key_secret_ref.name.clone());
    names.extend(spec.fusion_auth.ca_secret_ref.iter().map(|r| r.name.clone()));
    let auth = &spec.auth;
    names.extend(auth.authorization_secret_ref.iter().map(|r| r.name.clone()));
    if let Some(basic) = &auth.basic {
        names.insert(basic.username_secret_ref.name.clone());
        names.insert(basic.password_secret_ref.name.clone());
    }
    names.extend(auth.signature.iter().flat_map(|s| s.hmac_secret_ref.iter()).map(|r| r.name.clone()));
    for route in &spec.routes {
        names.extend(route.http.iter().flat_map(|h| h.headers.values()).filter_map(|v| v.secret_key_ref.as_ref()).map(|r| r.name.clone()));
        names.extend(route.http.iter().filter_map(|h| h.sign.as_ref()).map(|s| s.secret_ref.name.clone()));
    }
    names.extend(spec.receiver.store.iter().filter_map(|s| s.url_secret_ref.as_ref()).map(|r| r.name.clone()));
    // The operator's own Secret: the generated value, and what a rotation keeps.
    names.insert(names::authorization_secret_name(name));
    names.extend(names::AdminScope::ALL.map(|scope| names::admin_secret_name(name, scope)));
    names
}

/// Reads the Secrets the resource references. A missing Secret is simply
/// absent; validate turns that into `SecretNotFound`.
pub async fn secrets(client: &Client, resource: &FusionAuthWebhook) -> Result<SecretData, kube::Error> {
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    let name = resource.metadata.name.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut data = SecretData::new();
    for secret_name in referenced_secrets(&name, &resource.spec) {
        if let Some(secret) = api.get_opt(&secret_name).await? {
            let values = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            data.insert(secret_name, values);
        }
    }
    Ok(data)
}

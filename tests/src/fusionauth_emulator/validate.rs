//! Request validation as FusionAuth does it (FACTS.md §a.5), on the JSON as
//! sent, so wrong types and unknown keys are caught like the real server
//! catches them. Pure: state is passed in.

use fusionhook_fusionauth::model::Errors;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::uncertain;

/// What validation needs to know about the rest of the state.
pub trait Lookups {
    /// Whether a tenant exists.
    fn tenant_exists(&self, id: Uuid) -> bool;
    /// `Some(can_sign)` when a key exists.
    fn key_can_sign(&self, id: Uuid) -> Option<bool>;
}

fn positive_int(webhook: &Map<String, Value>, field: &str, errors: &mut Errors) {
    let path = format!("webhook.{field}");
    match webhook.get(field) {
        None | Some(Value::Null) => {
            errors.add_field(&path, &format!("[missing]{path}"), format!("You must specify the [{field}] property."))
        }
        Some(v) if v.as_i64().is_some_and(|n| n > 0) => {}
        Some(_) => errors.add_field(&path, &format!("[invalid]{path}"), format!("The [{field}] property must be greater than 0.")),
    }
}

fn max_len(webhook: &Map<String, Value>, field: &str, max: usize, errors: &mut Errors) {
    if let Some(s) = webhook.get(field).and_then(Value::as_str)
        && s.chars().count() > max
    {
        let path = format!("webhook.{field}");
        errors.add_field(&path, &format!("[tooLong]{path}"), format!("The [{field}] property is longer than {max} characters."));
    }
}

/// Checks a `{"webhook": {...}}` body and returns the webhook object to store
/// (defaults applied, `id` set, timestamps kept from `previous`).
pub fn webhook(body: &Value, id: Uuid, previous: Option<&Value>, lookups: &impl Lookups, now: i64) -> Result<Value, Errors> {
    let Some(webhook) = body.get("webhook").and_then(Value::as_object) else {
        return Err(Errors::field("webhook", "[missing]webhook", "You must specify the [webhook] property."));
    };
    // JSON conversion happens before validation: an unknown event name fails
    // the whole request with a conversion error (FACTS.md §a.5, S32).
    if let Some(events) = webhook.get("eventsEnabled") {
        let bad = match events {
            Value::Object(map) => map.iter().find(|(k, v)| !uncertain::is_known_event_key(k) || !v.is_boolean()).map(|(k, _)| k.clone()),
            Value::Null => None,
            _ => Some("(not an object)".to_owned()),
        };
        if let Some(key) = bad {
            return Err(Errors::field(
                "webhook.eventsEnabled",
                uncertain::INVALID_JSON_CODE,
                format!(
                    "Invalid JSON in the request body. The property was [webhook.eventsEnabled]. The error was [Unable to deserialize key [{key}] to an EventType]."
                ),
            ));
        }
    }

    let mut errors = Errors::default();
    match webhook.get("url").and_then(Value::as_str) {
        None | Some("") => errors.add_field("webhook.url", "[missing]webhook.url", "You must specify the [url] property."),
        Some(url) => {
            let ok = reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                errors.add_field("webhook.url", "[invalid]webhook.url", "The [url] property must be an absolute http or https URL.");
            }
        }
    }
    positive_int(webhook, "connectTimeout", &mut errors);
    positive_int(webhook, "readTimeout", &mut errors);
    max_len(webhook, "description", 255, &mut errors);
    max_len(webhook, "httpAuthenticationUsername", 255, &mut errors);
    max_len(webhook, "httpAuthenticationPassword", 255, &mut errors);
    if let Some(headers) = webhook.get("headers") {
        if !headers.as_object().is_some_and(|h| h.values().all(Value::is_string)) && !headers.is_null() {
            errors.add_field("webhook.headers", "[invalid]webhook.headers", "The [headers] property must map names to strings.");
        } else if headers.to_string().len() > 32768 {
            errors.add_field("webhook.headers", "[tooLong]webhook.headers", "The [headers] property is too long.");
        }
    }
    if webhook.get("sslCertificate").is_some_and(|v| !v.is_null()) && webhook.get("sslCertificateKeyId").is_some_and(|v| !v.is_null()) {
        errors.add_field(
            "webhook.sslCertificate",
            "[invalid]webhook.sslCertificate",
            "Specify sslCertificate or sslCertificateKeyId, not both.",
        );
    }

    let global = webhook.get("global").and_then(Value::as_bool).unwrap_or(false);
    let tenant_ids: Vec<&Value> = webhook.get("tenantIds").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    if global && !tenant_ids.is_empty() {
        errors.add_field("webhook.tenantIds", "[invalid]webhook.tenantIds", "A global webhook cannot list tenantIds.");
    }
    for tenant in &tenant_ids {
        let known = tenant.as_str().and_then(|s| Uuid::parse_str(s).ok()).is_some_and(|t| lookups.tenant_exists(t));
        if !known {
            errors.add_field(
                "webhook.tenantIds",
                "[invalid]webhook.tenantIds",
                format!("The tenant [{}] does not exist.", tenant.as_str().unwrap_or("?")),
            );
        }
    }

    if let Some(sig) = webhook.get("signatureConfiguration").and_then(Value::as_object)
        && sig.get("enabled").and_then(Value::as_bool) == Some(true)
    {
        let path = "webhook.signatureConfiguration.signingKeyId";
        match sig.get("signingKeyId").and_then(Value::as_str) {
            None => errors.add_field(path, &format!("[missing]{path}"), "You must specify a signing key when signing is enabled."),
            Some(key) => match Uuid::parse_str(key).ok().and_then(|k| lookups.key_can_sign(k)) {
                None => errors.add_field(path, &format!("[invalid]{path}"), format!("The key [{key}] does not exist.")),
                Some(false) => {
                    errors.add_field(path, &format!("[cannotSign]{path}"), format!("The key [{key}] cannot be used for signing."))
                }
                Some(true) => {}
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut stored = uncertain::webhook_defaults();
    let Value::Object(out) = &mut stored else { return Err(Errors::default()) };
    for (key, value) in webhook {
        if !value.is_null() {
            out.insert(key.clone(), value.clone());
        }
    }
    out.insert("id".into(), Value::String(id.to_string()));
    let inserted = previous.and_then(|p| p.get("insertInstant")).cloned().unwrap_or(Value::from(now));
    out.insert("insertInstant".into(), inserted);
    out.insert("lastUpdateInstant".into(), Value::from(now));
    Ok(stored)
}

/// Checks a tenant `eventConfiguration` after a PATCH.
pub fn tenant_events(tenant: &Value) -> Result<(), Errors> {
    let Some(events) = tenant.pointer("/eventConfiguration/events") else { return Ok(()) };
    let Some(events) = events.as_object() else {
        return Err(Errors::field("tenant.eventConfiguration.events", uncertain::INVALID_JSON_CODE, "Invalid JSON in the request body."));
    };
    for (name, config) in events {
        let path = "tenant.eventConfiguration.events";
        if !uncertain::is_known_event_key(name) {
            return Err(Errors::field(
                path,
                uncertain::INVALID_JSON_CODE,
                format!("Invalid JSON in the request body. Unknown event type [{name}]."),
            ));
        }
        let tx_ok = config
            .get("transactionType")
            .is_none_or(|t| t.is_null() || serde_json::from_value::<fusionhook_fusionauth::model::TransactionType>(t.clone()).is_ok());
        let enabled_ok = config.get("enabled").is_none_or(|e| e.is_boolean() || e.is_null());
        if !tx_ok || !enabled_ok || !config.is_object() {
            return Err(Errors::field(path, uncertain::INVALID_JSON_CODE, format!("Invalid JSON in the request body for event [{name}].")));
        }
    }
    Ok(())
}

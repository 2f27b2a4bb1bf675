//! Events shaped like FusionAuth's (compact JSON, `{"event": {...}}`,
//! FACTS.md §c.1 and §e), and their signatures.

use fusionhook_fusionauth::signature::{self, Algorithm, EncodingKey};
use serde_json::{Value, json};

/// The tenant our fixtures live in.
pub const TENANT_ID: &str = "e872a880-b14f-6d62-c312-cb40f22af465";

/// A `user.delete` event for `user_id` with event id `event_id`, as compact bytes.
pub fn user_delete(event_id: &str, user_id: &str) -> Vec<u8> {
    envelope(json!({
        "createInstant": 1_700_000_000_000_i64,
        "id": event_id,
        "info": {"ipAddress": "10.0.0.1", "userAgent": "fusionhook-tests"},
        "tenantId": TENANT_ID,
        "type": "user.delete",
        "user": {
            "active": true,
            "email": format!("{user_id}@example.test"),
            "id": user_id,
            "tenantId": TENANT_ID,
            "verified": true
        }
    }))
}

/// Any event type with the common fields filled in.
pub fn event(kind: &str, event_id: &str, extra: Value) -> Vec<u8> {
    let mut event = json!({"createInstant": 1_700_000_000_000_i64, "id": event_id, "tenantId": TENANT_ID, "type": kind});
    if let (Some(map), Value::Object(extra)) = (event.as_object_mut(), extra) {
        map.extend(extra);
    }
    envelope(event)
}

/// Wraps an event object the way FusionAuth does.
pub fn envelope(event: Value) -> Vec<u8> {
    // serde_json writes compact JSON; keys come out in insertion order of
    // the json! macro (sorted, as FusionAuth's mapper does).
    serde_json::to_vec(&json!({ "event": event })).unwrap_or_default()
}

/// Signs a body with an HMAC secret, as FusionAuth does with an HMAC key.
pub fn sign_hmac(body: &[u8], alg: Algorithm, kid: &str, secret: &str) -> String {
    signature::sign(body, alg, Some(kid), &EncodingKey::from_secret(secret.as_bytes())).unwrap_or_default()
}

//! Every emulator behaviour FACTS.md marks as inferred or open, in one place
//! so it is easy to correct when a real FusionAuth says otherwise.

use fusionhook_fusionauth::event_types;
use fusionhook_fusionauth::model::TransactionType;
use serde_json::{Value, json};

/// Keys accepted in `eventsEnabled` and tenant `events` \[infer\]: decided in
/// `event_types::accepted_as_event_key`, shared with the operator so both
/// agree on what FusionAuth refuses.
pub fn is_known_event_key(name: &str) -> bool {
    event_types::accepted_as_event_key(name)
}

/// The code of the JSON-conversion error for an unknown `eventsEnabled` key.
/// FACTS.md §a.5 / S32 give the message; the code string is \[infer\].
pub const INVALID_JSON_CODE: &str = "[invalidJSON]";

/// Creating a webhook whose id exists: `[duplicate]webhookId` (FACTS.md §a.5, code \[infer\]).
pub const DUPLICATE_WEBHOOK_ID: (&str, &str) = ("webhookId", "[duplicate]webhookId");

/// Importing a key whose id exists. \[infer\] by analogy with webhooks.
pub const DUPLICATE_KEY_ID: (&str, &str) = ("keyId", "[duplicate]keyId");

/// Fields a stored webhook always shows, as the Java model initialises them
/// (FACTS.md §a.3: `global` is a primitive boolean). The others are \[infer\].
pub fn webhook_defaults() -> Value {
    json!({
        "data": {},
        "eventsEnabled": {},
        "global": false,
        "headers": {},
        "signatureConfiguration": {"enabled": false},
        "tenantIds": []
    })
}

/// Whether the requirement of a transaction level is met (FACTS.md §c.4).
/// With zero eligible webhooks the docs say nothing \[open\]; we treat it as
/// met, since no webhook failed.
pub fn requirement_met(level: TransactionType, succeeded: usize, total: usize) -> bool {
    if total == 0 {
        return true;
    }
    match level {
        TransactionType::None => true,
        TransactionType::Any => succeeded >= 1,
        // "at least half": >= 50 %.
        TransactionType::SimpleMajority => succeeded * 2 >= total,
        // ">= 2/3".
        TransactionType::SuperMajority => succeeded * 3 >= total * 2,
        TransactionType::AbsoluteMajority => succeeded == total,
    }
}

/// How many more attempts a failed delivery gets (FACTS.md §c.4): three when
/// the transaction succeeded, none when it failed. Per issue #3549, level
/// `None` fires and forgets (no retries); non-transactional events are not
/// retried either [infer: the docs tie retries to a succeeding transaction].
pub fn retries_for(transactional: bool, level: TransactionType, committed: bool) -> usize {
    if transactional && committed && level != TransactionType::None { 3 } else { 0 }
}

/// FusionAuth's read timeout is a socket read timeout; reqwest offers a
/// per-read timeout, which we use as the same thing [infer: close enough for
/// a receiver that answers or stays silent].
pub const READ_TIMEOUT_IS_PER_READ: bool = true;

/// A custom `Authorization` header replaces the Basic one, because custom
/// headers are applied after Basic auth (FACTS.md §c.1, \[infer\]).
pub const CUSTOM_HEADERS_OVERRIDE_BASIC: bool = true;

/// JSON Patch (`application/json-patch+json`) paths are applied to the
/// request-shaped document, e.g. `/webhook/url` \[infer\].
pub const JSON_PATCH_ROOT_IS_REQUEST: bool = true;

/// Explicit `start`/`end` of a Webhook Event Log search are rounded like the
/// defaults (start down, end up to the minute): the docs describe rounding
/// only for the defaults (FACTS.md §c.7) [infer: the widest window, so a
/// client that filters by `insertInstant` itself is right either way].
pub const EXPLICIT_EVENT_LOG_TIMES_ROUNDED: bool = true;

/// The Webhook Event Log entry is written when the event is created, as
/// `Running`, and updated with its attempts and result afterwards
/// (FACTS.md §c.7: `Running` is the initial result) [infer: the attempts
/// appear one by one in FusionAuth; here they appear together at the end].
pub const EVENT_LOG_WRITTEN_BEFORE_DELIVERY: bool = true;

/// Entries with equal sort keys come by `sequence`, in the direction asked
/// [infer: the database's order is not documented; `sequence` is unique,
/// so a client that pages by it is stable either way].
pub const EVENT_LOG_TIES_BY_SEQUENCE: bool = true;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_levels() {
        use TransactionType::*;
        assert!(requirement_met(None, 0, 3));
        assert!(requirement_met(Any, 1, 3) && !requirement_met(Any, 0, 3));
        assert!(requirement_met(SimpleMajority, 1, 2) && !requirement_met(SimpleMajority, 1, 3));
        assert!(requirement_met(SuperMajority, 2, 3) && !requirement_met(SuperMajority, 1, 2));
        assert!(requirement_met(AbsoluteMajority, 3, 3) && !requirement_met(AbsoluteMajority, 2, 3));
        assert!(requirement_met(AbsoluteMajority, 0, 0));
    }
}

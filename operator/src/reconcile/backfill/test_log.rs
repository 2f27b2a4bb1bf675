//! Webhook Event Log entries for the stages' tests.

use fusionhook_fusionauth::model::{WebhookAttemptLog, WebhookEventLog};
use uuid::Uuid;

/// Entry `n` (its id is `n`), inserted at `at` (ms), with its event result
/// and one attempt per `(webhook, result)`.
pub(super) fn entry(n: u128, result: &str, attempts: &[(Uuid, &str)], at: i64) -> WebhookEventLog {
    WebhookEventLog {
        id: Some(Uuid::from_u128(n)),
        event_result: Some(result.into()),
        insert_instant: Some(at),
        attempts: attempts
            .iter()
            .map(|(w, r)| WebhookAttemptLog { webhook_id: Some(*w), attempt_result: Some((*r).into()), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

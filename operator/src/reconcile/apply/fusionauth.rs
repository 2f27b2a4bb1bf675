//! The FusionAuth half of apply: signing key and webhook (the tenant
//! switches have their own protocol, [`crate::reconcile::tenant_switches`]).
//! Only the leader calls these.
//!
//! Steady state costs one read: the webhook, written only when a field we
//! own differs; the signing key is read only when the webhook does not
//! already point at it.

use fusionhook_fusionauth::client::{ClientError, FusionAuthClient};
use fusionhook_fusionauth::model::Webhook;
use uuid::Uuid;

use crate::reconcile::build::{drifted, drifted_fields};
use crate::reconcile::conditions::Reason;
use crate::reconcile::validate::Validated;

/// A FusionAuth call failed; `reason()` is the condition reason.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApplyError(#[from] pub ClientError);

impl ApplyError {
    /// Condition reason.
    pub fn reason(&self) -> Reason {
        match &self.0 {
            ClientError::Unauthorized { .. } => Reason::ApiKeyRejected,
            ClientError::Invalid { .. } => Reason::FusionAuthRefused,
            ClientError::NotFound { .. } => Reason::NotFoundInFusionAuth,
            ClientError::Tls { .. } => Reason::FusionAuthTlsFailed,
            ClientError::Config(_) => Reason::InvalidFusionAuthConnection,
            ClientError::Server { .. }
            | ClientError::Timeout { .. }
            | ClientError::Connect { .. }
            | ClientError::Unexpected { .. }
            | ClientError::Decode { .. }
            | ClientError::TooLarge { .. } => Reason::FusionAuthUnreachable,
        }
    }
}

/// What happened to the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookChange {
    /// It matched: no write.
    Unchanged,
    /// It did not exist (first time, or deleted behind our back): created.
    Created,
    /// Owned fields differed (edited behind our back, or the spec changed): replaced.
    Updated {
        /// Which owned fields differed (names only; values may be secrets).
        fields: Vec<&'static str>,
    },
}

/// Imports the HMAC key the spec signs with, unless FusionAuth has it:
/// known when the webhook already points at it (no call), else one read.
/// Returns whether it wrote.
pub async fn apply_signing_key(fa: &FusionAuthClient, v: &Validated, in_use: Option<Uuid>) -> Result<bool, ApplyError> {
    let Some((key, key_id)) = v.hmac() else { return Ok(false) };
    if in_use == Some(key_id) || fa.retrieve_key(key_id).await?.is_some() {
        return Ok(false);
    }
    fa.import_hmac_key(key_id, &format!("fusionhook {}/{}", v.namespace, v.name), &key.algorithm, &key.secret.0).await?;
    Ok(true)
}

/// Creates the webhook, or repairs the fields we own; no write when equal.
/// `observed`: the webhook as just read from FusionAuth.
pub async fn apply_webhook(
    fa: &FusionAuthClient,
    id: Uuid,
    desired: &Webhook,
    observed: Option<&Webhook>,
) -> Result<WebhookChange, ApplyError> {
    match observed {
        None => {
            fa.create_webhook(id, desired).await?;
            Ok(WebhookChange::Created)
        }
        Some(observed) if !drifted(observed, desired) => Ok(WebhookChange::Unchanged),
        Some(observed) => {
            let fields = drifted_fields(observed, desired);
            // PUT replaces the whole webhook; keep what others added that we
            // do not own (unknown fields, extra data keys).
            let mut replacement = desired.clone();
            replacement.other = observed.other.clone();
            for (key, value) in &observed.data {
                replacement.data.entry(key.clone()).or_insert_with(|| value.clone());
            }
            fa.update_webhook(id, &replacement).await?;
            Ok(WebhookChange::Updated { fields })
        }
    }
}

/// Deletes Key Master keys (a key already gone is fine).
pub async fn delete_keys(fa: &FusionAuthClient, keys: impl IntoIterator<Item = Uuid>) -> Result<(), ApplyError> {
    for key in keys {
        fa.delete_key(key).await?;
    }
    Ok(())
}

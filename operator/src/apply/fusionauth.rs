//! The FusionAuth half of apply and clean-up. Only the leader calls these.
//!
//! Steady state costs reads only: the webhook is read once and written only
//! when a field we own differs; the signing key and tenant switches likewise.

use std::collections::BTreeMap;

use fusionhook_fusionauth::client::{ClientError, FusionAuthClient};
use fusionhook_fusionauth::model::{EventConfigurationData, TransactionType, Webhook};
use uuid::Uuid;

use crate::build::{drifted, drifted_fields};
use crate::validate::{Signing, Validated};

/// A FusionAuth call failed; `reason()` is the condition reason.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApplyError(#[from] pub ClientError);

impl ApplyError {
    /// PascalCase condition reason.
    pub fn reason(&self) -> &'static str {
        match &self.0 {
            ClientError::Unauthorized { .. } => "ApiKeyRejected",
            ClientError::Invalid { .. } => "FusionAuthRefused",
            ClientError::NotFound { .. } => "NotFoundInFusionAuth",
            ClientError::Tls { .. } => "FusionAuthTlsFailed",
            ClientError::Config(_) => "InvalidFusionAuthConnection",
            ClientError::Server { .. }
            | ClientError::Timeout { .. }
            | ClientError::Connect { .. }
            | ClientError::Unexpected { .. }
            | ClientError::Decode { .. } => "FusionAuthUnreachable",
        }
    }

    /// Whether retrying soon may help (else wait for a spec or Secret change).
    pub fn is_transient(&self) -> bool {
        self.0.is_transient()
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

/// Imports the HMAC signing secret under its deterministic id when FusionAuth
/// does not have it. Returns whether it wrote. A rotated secret needs a new
/// key id, since FusionAuth never returns the secret to compare.
pub async fn apply_signing_key(fa: &FusionAuthClient, v: &Validated) -> Result<bool, ApplyError> {
    let Some(Signing::Hmac { algorithm, secret, key_id }) = &v.signing else { return Ok(false) };
    if fa.retrieve_key(*key_id).await?.is_some() {
        return Ok(false);
    }
    fa.import_hmac_key(*key_id, &format!("fusionhook {}/{}", v.namespace, v.name), algorithm, &secret.0).await?;
    Ok(true)
}

/// Creates the webhook, or repairs the fields we own; no write when equal.
pub async fn apply_webhook(fa: &FusionAuthClient, id: Uuid, desired: &Webhook) -> Result<WebhookChange, ApplyError> {
    let observed = fa.retrieve_webhook(id).await?;
    apply_webhook_over(fa, id, desired, observed).await
}

/// [`apply_webhook`] given the webhook as just read from FusionAuth.
pub async fn apply_webhook_over(
    fa: &FusionAuthClient,
    id: Uuid,
    desired: &Webhook,
    observed: Option<Webhook>,
) -> Result<WebhookChange, ApplyError> {
    match observed {
        None => {
            fa.create_webhook(id, desired).await?;
            Ok(WebhookChange::Created)
        }
        Some(observed) if !drifted(&observed, desired) => Ok(WebhookChange::Unchanged),
        Some(observed) => {
            let fields = drifted_fields(&observed, desired);
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

/// `tenantId/event` keys, as recorded in status.
pub fn tenant_event_key(tenant: Uuid, event: &str) -> String {
    format!("{tenant}/{event}")
}

/// Turns each event on in each listed tenant with the level, patching only
/// the entries that differ. Returns every `tenantId/event` this resource
/// keeps on (for status, to turn off on delete).
pub async fn apply_tenant_events(fa: &FusionAuthClient, v: &Validated) -> Result<Vec<String>, ApplyError> {
    let Some(level) = v.tenant_events else { return Ok(Vec::new()) };
    let wanted = EventConfigurationData { enabled: true, transaction_type: level };
    let mut owned = Vec::new();
    for tenant in &v.tenant_ids {
        let current =
            fa.retrieve_tenant_event_configuration(*tenant).await?.ok_or(ClientError::NotFound { operation: "retrieve tenant" })?;
        let changes: BTreeMap<String, EventConfigurationData> =
            v.events.iter().filter(|e| current.events.get(*e) != Some(&wanted)).map(|e| (e.clone(), wanted)).collect();
        if !changes.is_empty() {
            fa.patch_tenant_events(*tenant, &changes).await?;
        }
        owned.extend(v.events.iter().map(|e| tenant_event_key(*tenant, e)));
    }
    Ok(owned)
}

/// Turns the tenant switches `keys` (`tenantId/event`) off, one merge patch
/// per tenant. A tenant deleted meanwhile has no switch left to turn off.
pub async fn disable_tenant_events(fa: &FusionAuthClient, keys: &[String]) -> Result<(), ApplyError> {
    let mut by_tenant: BTreeMap<Uuid, BTreeMap<String, EventConfigurationData>> = BTreeMap::new();
    for key in keys {
        let Some((tenant, event)) = key.split_once('/') else { continue };
        let Ok(tenant) = Uuid::parse_str(tenant) else { continue };
        let off = EventConfigurationData { enabled: false, transaction_type: TransactionType::None };
        by_tenant.entry(tenant).or_default().insert(event.to_owned(), off);
    }
    for (tenant, events) in by_tenant {
        match fa.patch_tenant_events(tenant, &events).await {
            Ok(_) | Err(ClientError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Clean-up on delete (`deletionPolicy: Delete`): the webhook (404 is
/// success), the tenant switches to turn off (those this resource turned on
/// that no other resource still needs), and the imported signing key. An
/// error keeps the finalizer.
pub async fn cleanup(
    fa: &FusionAuthClient,
    webhook_id: Uuid,
    signing_key_id: Option<Uuid>,
    switches_off: &[String],
) -> Result<(), ApplyError> {
    fa.delete_webhook(webhook_id).await?;
    disable_tenant_events(fa, switches_off).await?;
    if let Some(key_id) = signing_key_id {
        fa.delete_key(key_id).await?;
    }
    Ok(())
}

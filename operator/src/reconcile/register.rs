//! register: the FusionAuth stage. The signing key, the webhook with its
//! tenant-switch claims, the tenant switches, then the keys no longer used;
//! `WebhookRegistered`, `TenantEventsEnabled` and `InSync` from what it did.

use std::collections::BTreeSet;

use fusionhook_fusionauth::client::FusionAuthClient;
use fusionhook_fusionauth::model::Webhook;
use uuid::Uuid;

use crate::names;
use crate::reconcile::apply::fusionauth::{ApplyError, WebhookChange, apply_signing_key, apply_webhook, delete_keys};
use crate::reconcile::build::receiver_url;
use crate::reconcile::conditions::{EventReason, Kind, Reason};
use crate::reconcile::rotation::{self, Credentials};
use crate::reconcile::status::{self, Report};
use crate::reconcile::validate::Validated;
use crate::reconcile::{Pass, Stopped, tenant_switches};

/// FusionAuth: the signing key, the webhook with the tenant-switch claims,
/// the switches, then keys no longer used.
pub(crate) async fn register(
    fa: &FusionAuthClient,
    v: &Validated,
    mut webhook: Webhook,
    observed: Option<Webhook>,
    credentials: &Credentials,
    report: &mut Report,
) -> Result<Pass, Stopped> {
    let in_use = rotation::signing_key_of(observed.as_ref());
    apply_signing_key(fa, v, in_use).await.map_err(Stopped::fusionauth(Kind::WebhookRegistered))?;
    let (claims, plan) = switches(fa, v, observed.as_ref(), &mut webhook).await?;
    let change =
        apply_webhook(fa, v.webhook_id, &webhook, observed.as_ref()).await.map_err(Stopped::fusionauth(Kind::WebhookRegistered))?;
    registered(v, &change, report);
    tenant_switches::turn_on(fa, &plan).await.map_err(Stopped::fusionauth(Kind::TenantEventsEnabled))?;
    report.status.enabled_tenant_events = claims.into_iter().collect();
    if v.tenant_events.is_some() {
        let message = format!("{} event(s) switched on in {} tenant(s)", v.events.len(), v.tenant_ids.len());
        report.done(Kind::TenantEventsEnabled, Reason::Enabled, message);
    }
    retire_keys(fa, v, in_use, credentials, report).await.map_err(Stopped::fusionauth(Kind::InSync))?;
    report.done(Kind::InSync, Reason::InSync, "FusionAuth's webhook matches the spec");
    Ok(Pass { soon: credentials.previous != rotation::Previous::default(), backfill: None })
}

/// The tenant switches (see [`tenant_switches`]): reads the tenants,
/// turns off those no longer wanted (unless another webhook listens), and
/// records in `webhook`'s data the claims to hold: those we hold and still
/// want, plus the wanted switches that are off now. Returns the claims and
/// what to turn on once the webhook with them is written.
async fn switches(
    fa: &FusionAuthClient,
    v: &Validated,
    observed: Option<&Webhook>,
    webhook: &mut Webhook,
) -> Result<(BTreeSet<String>, tenant_switches::Plan), Stopped> {
    let plan = tenant_switches::plan(fa, v).await.map_err(Stopped::fusionauth(Kind::TenantEventsEnabled))?;
    let held = tenant_switches::claims_of(observed);
    let wanted = tenant_switches::wanted(v);
    let released: BTreeSet<String> = held.difference(&wanted).cloned().collect();
    tenant_switches::release(fa, v.webhook_id, &released).await.map_err(Stopped::fusionauth(Kind::TenantEventsEnabled))?;
    let claims: BTreeSet<String> = held.intersection(&wanted).cloned().chain(plan.off.iter().cloned()).collect();
    tenant_switches::record(webhook, &claims);
    Ok((claims, plan))
}

fn registered(v: &Validated, change: &WebhookChange, report: &mut Report) {
    let url = receiver_url(v);
    report.status.fusion_auth_url = Some(v.fusionauth_url.clone());
    report.status.webhook_id = Some(v.webhook_id.to_string());
    report.status.url = Some(url.clone());
    report.done(Kind::WebhookRegistered, Reason::Registered, format!("FusionAuth webhook {} calls {url}", v.webhook_id));
    if let WebhookChange::Updated { fields } = change {
        let note = format!("FusionAuth's webhook differed from the spec in {}; updated", fields.join(", "));
        report.event(status::normal(EventReason::WebhookRepaired, "Update", note));
    }
}

/// Deletes the HMAC keys of this resource FusionAuth no longer signs with:
/// the one recorded in status, and the one the webhook used before this
/// pass when it was ours (the kept copy's, or a pre-0.2 uid-only key).
async fn retire_keys(
    fa: &FusionAuthClient,
    v: &Validated,
    in_use: Option<Uuid>,
    credentials: &Credentials,
    report: &mut Report,
) -> Result<(), ApplyError> {
    let desired = v.hmac().map(|(_, id)| id);
    let recorded = report.status.signing_key_id.as_deref().and_then(|k| Uuid::parse_str(k).ok());
    let kept = credentials.hmac_in_use.as_ref().map(|k| k.key_id(&v.uid, &v.api_key));
    let ours = [recorded, kept, Some(names::legacy_signing_key_id(&v.uid))];
    let mut stale: BTreeSet<Uuid> = recorded.into_iter().collect();
    stale.extend(in_use.filter(|u| ours.contains(&Some(*u))));
    stale.retain(|k| Some(*k) != desired);
    delete_keys(fa, stale).await?;
    report.status.signing_key_id = desired.map(|k| k.to_string());
    Ok(())
}

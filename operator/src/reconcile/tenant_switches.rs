//! tenant switches: FusionAuth sends an event to a webhook only when the
//! tenant's switch for that event is on too (FACTS.md §c.6). With
//! `tenantEvents` set, the resource turns on the switches its events need
//! in the tenants it lists. The protocol, so that turning one off never
//! silences someone else:
//!
//! - a switch is *ours* only when it was off and we turned it on; one an
//!   administrator (or another tool) had on stays theirs;
//! - the claim is recorded in our FusionAuth webhook's `data`
//!   ([`names::TENANT_SWITCHES_DATA_KEY`]) *before* the switch is turned on,
//!   so a crash in between leaves a claim, never an orphaned switch; every
//!   operator (any namespace, any cluster) and every clean-up reads it there;
//! - a switch we no longer need is turned off only when no other webhook in
//!   that FusionAuth listens to the event for that tenant (any webhook, ours
//!   or not); otherwise it stays on, and we drop our claim.
//!
//! Claims recorded in status by versions before 0.2 (which also claimed
//! switches an administrator had on) are not trusted: such switches stay on.

use std::collections::{BTreeMap, BTreeSet};

use fusionhook_fusionauth::client::{ClientError, FusionAuthClient};
use fusionhook_fusionauth::model::{EventConfigurationData, TransactionType, Webhook};
use serde_json::Value;
use uuid::Uuid;

use crate::names;
use crate::reconcile::apply::fusionauth::ApplyError;
use crate::reconcile::validate::Validated;

/// A `tenantId/event` key.
pub type Switch = String;

fn key(tenant: Uuid, event: &str) -> Switch {
    format!("{tenant}/{event}")
}

fn parse(switch: &str) -> Option<(Uuid, &str)> {
    let (tenant, event) = switch.split_once('/')?;
    Some((Uuid::parse_str(tenant).ok()?, event))
}

/// The switches the spec needs on (none without `tenantEvents`).
pub fn wanted(v: &Validated) -> BTreeSet<Switch> {
    match v.tenant_events {
        Some(_) => v.tenant_ids.iter().flat_map(|t| v.events.iter().map(move |e| key(*t, e))).collect(),
        None => BTreeSet::new(),
    }
}

/// The switches a webhook's resource claimed, from its `data`.
pub fn claims_of(webhook: Option<&Webhook>) -> BTreeSet<Switch> {
    let listed = webhook.and_then(|w| w.data.get(names::TENANT_SWITCHES_DATA_KEY)).and_then(Value::as_array);
    listed.into_iter().flatten().filter_map(Value::as_str).filter(|s| parse(s).is_some()).map(str::to_owned).collect()
}

/// Writes `claims` into the webhook's `data` (absent when empty).
pub fn record(webhook: &mut Webhook, claims: &BTreeSet<Switch>) {
    if claims.is_empty() {
        webhook.data.remove(names::TENANT_SWITCHES_DATA_KEY);
    } else {
        let list = claims.iter().cloned().map(Value::String).collect();
        webhook.data.insert(names::TENANT_SWITCHES_DATA_KEY.to_owned(), Value::Array(list));
    }
}

/// What the tenants need, read from FusionAuth.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to patch, per tenant (only those that differ).
    pub patches: BTreeMap<Uuid, BTreeMap<String, EventConfigurationData>>,
    /// Switches that are off now: turning them on makes them ours.
    pub off: BTreeSet<Switch>,
}

/// Reads each listed tenant's switches (one call per tenant).
pub async fn plan(fa: &FusionAuthClient, v: &Validated) -> Result<Plan, ApplyError> {
    let Some(level) = v.tenant_events else { return Ok(Plan::default()) };
    let wanted = EventConfigurationData { enabled: true, transaction_type: level };
    let mut plan = Plan::default();
    for tenant in &v.tenant_ids {
        let current =
            fa.retrieve_tenant_event_configuration(*tenant).await?.ok_or(ClientError::NotFound { operation: "retrieve tenant" })?;
        for event in &v.events {
            let now = current.events.get(event);
            if now != Some(&wanted) {
                plan.patches.entry(*tenant).or_default().insert(event.clone(), wanted);
            }
            if !now.is_some_and(|c| c.enabled) {
                plan.off.insert(key(*tenant, event));
            }
        }
    }
    Ok(plan)
}

/// Patches the tenants (one merge patch per tenant that differs).
pub async fn turn_on(fa: &FusionAuthClient, plan: &Plan) -> Result<(), ApplyError> {
    for (tenant, events) in &plan.patches {
        fa.patch_tenant_events(*tenant, events).await?;
    }
    Ok(())
}

/// Whether `webhook` listens to `event` in `tenant`.
fn listens(webhook: &Webhook, tenant: Uuid, event: &str) -> bool {
    webhook.events_enabled.get(event).copied().unwrap_or(false) && (webhook.global || webhook.tenant_ids.contains(&tenant))
}

/// Turns off those of `released` (switches we claimed and no longer need)
/// that no webhook other than `ours` listens to. One list of the webhooks,
/// only when there is something to release.
pub async fn release(fa: &FusionAuthClient, ours: Uuid, released: &BTreeSet<Switch>) -> Result<(), ApplyError> {
    if released.is_empty() {
        return Ok(());
    }
    let others: Vec<Webhook> = fa.retrieve_webhooks().await?.into_iter().filter(|w| w.id != Some(ours)).collect();
    let mut off: BTreeMap<Uuid, BTreeMap<String, EventConfigurationData>> = BTreeMap::new();
    for (tenant, event) in released.iter().filter_map(|s| parse(s)) {
        if !others.iter().any(|w| listens(w, tenant, event)) {
            let disabled = EventConfigurationData { enabled: false, transaction_type: TransactionType::None };
            off.entry(tenant).or_default().insert(event.to_owned(), disabled);
        }
    }
    for (tenant, events) in off {
        match fa.patch_tenant_events(tenant, &events).await {
            // A tenant deleted meanwhile has no switch left to turn off.
            Ok(_) | Err(ClientError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_through_the_webhook_data_and_junk_is_ignored() {
        let tenant = Uuid::from_u128(7);
        let mut webhook = Webhook::default();
        let claims: BTreeSet<Switch> = [key(tenant, "user.delete"), key(tenant, "user.create")].into();
        record(&mut webhook, &claims);
        assert_eq!(claims_of(Some(&webhook)), claims);
        webhook.data.insert(names::TENANT_SWITCHES_DATA_KEY.into(), serde_json::json!(["not-a-switch", 3, key(tenant, "user.delete")]));
        assert_eq!(claims_of(Some(&webhook)), [key(tenant, "user.delete")].into());
        record(&mut webhook, &BTreeSet::new());
        assert!(!webhook.data.contains_key(names::TENANT_SWITCHES_DATA_KEY));
        assert!(claims_of(None).is_empty());
    }

    #[test]
    fn a_webhook_listens_in_its_tenants_or_everywhere_when_global() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut w = Webhook { tenant_ids: vec![a], events_enabled: [("user.delete".to_owned(), true)].into(), ..Webhook::default() };
        assert!(listens(&w, a, "user.delete"));
        assert!(!listens(&w, b, "user.delete"));
        assert!(!listens(&w, a, "user.create"));
        w.global = true;
        assert!(listens(&w, b, "user.delete"));
        w.events_enabled.insert("user.delete".into(), false);
        assert!(!listens(&w, b, "user.delete"));
    }
}

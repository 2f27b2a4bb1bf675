//! store_growth: an embedded store's volumes follow
//! `spec.receiver.store.size` upward. A StatefulSet's claim templates are
//! immutable, so growing is done as StatefulSet-based database operators do
//! it, in steps that are each safe to repeat:
//!
//! 1. every bound claim of the store (`store-<name>-receiver-N`, also those
//!    kept from a scale-down) smaller than the spec is patched to the new
//!    size; the API server refuses where the claim's StorageClass cannot
//!    expand (its `PersistentVolumeClaimResize` admission), and that refusal
//!    is `StoreCannotGrow` (the operator reads no StorageClass: it needs no
//!    cluster-wide permission for this). A claim not bound yet grows once
//!    it is;
//! 2. the StatefulSet is deleted with `propagationPolicy: Orphan` (its pods
//!    keep running and answering, its claims stay) and, once it is gone,
//!    applied again in the same pass with the new claim template: it adopts
//!    the running pods (same pod template: no restart), and replicas added
//!    later get volumes of the new size;
//! 3. the storage driver grows each volume (its resizer, then the kubelet
//!    grows the filesystem, online where the driver can); until every
//!    claim's capacity has its request the condition `StoreGrown` says
//!    `Growing`, with what the claims' own conditions say.
//!
//! While the spec's size cannot be had (a class that cannot expand, a
//! smaller size that got past the CRD's rule) the StatefulSet keeps the
//! claim template it has and everything else is applied as usual: the
//! condition `StoreGrown` (beside `Ready`) says why. The CRD refuses a size
//! below `status.storeSize`, which the operator keeps.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::quantity::bytes;
use crate::reconcile::build::receiver::STORE_VOLUME;
use crate::reconcile::conditions::EventReason;
use crate::reconcile::conditions::{Kind, Reason, Step};
use crate::reconcile::validate::Validated;
use crate::reconcile::{Error, Stopped, status};
use crate::resource::FusionAuthWebhook;

/// A claim of the store, as [`plan`] reads it.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// Its name.
    pub name: String,
    /// The replica it belongs to.
    pub ordinal: i32,
    /// Whether it is bound to a volume (only then can it grow).
    pub bound: bool,
    /// `spec.resources.requests.storage`.
    pub request: Option<String>,
    /// `status.capacity.storage`.
    pub capacity: Option<String>,
    /// Its StorageClass.
    pub class: Option<String>,
    /// What its conditions say (`Resizing`, `FileSystemResizePending`, errors).
    pub conditions: Vec<String>,
}

/// What the store's volumes need. Pure ([`plan`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The spec asks for less than the claim template has (its size): refused.
    pub shrink: Option<String>,
    /// The claim template is to be replaced: the spec asks for more.
    pub replace: bool,
    /// Bound claims smaller than the spec: patched to it.
    pub grow: Vec<String>,
    /// Claims of current replicas, smaller than the spec and not bound yet:
    /// they grow once bound.
    pub unbound: Vec<String>,
    /// Claims whose volume has not reached their request yet, and why.
    pub resizing: Vec<String>,
}

impl Plan {
    /// Nothing to do and nothing under way.
    pub fn steady(&self) -> bool {
        *self == Plan::default()
    }
}

/// Pure: what `size` (the spec's) asks of a StatefulSet of `replicas`
/// whose claim template asks for `template`, and of its `claims`. Sizes
/// that are not quantities (the API server has checked them) count as steady.
pub fn plan(size: &str, template: &str, replicas: i32, claims: &[Claim]) -> Plan {
    let (Some(wanted), Some(now)) = (bytes(size), bytes(template)) else { return Plan::default() };
    if wanted < now {
        return Plan { shrink: Some(template.to_owned()), ..Plan::default() };
    }
    let mut plan = Plan { replace: wanted > now, ..Plan::default() };
    for claim in claims {
        let request = claim.request.as_deref().and_then(bytes);
        if request.is_none_or(|r| r < wanted) {
            match (claim.bound, claim.ordinal < replicas) {
                (true, _) => plan.grow.push(claim.name.clone()),
                (false, true) => plan.unbound.push(claim.name.clone()),
                // A claim of a replica scaled away that never bound holds nothing.
                (false, false) => {}
            }
        } else if claim.bound && claim.capacity.as_deref().and_then(bytes) < request {
            let has = claim.capacity.as_deref().unwrap_or("nothing");
            let why = if claim.conditions.is_empty() { String::new() } else { format!(": {}", claim.conditions.join("; ")) };
            plan.resizing.push(format!("{} has {has} of {}{why}", claim.name, claim.request.as_deref().unwrap_or_default()));
        }
    }
    plan
}

/// What the stage decided for this pass.
#[derive(Debug, Default)]
pub struct Sized {
    /// The claim template size to apply instead of the spec's (the
    /// StatefulSet's own, while the spec's cannot be had).
    pub keep: Option<String>,
    /// The `StoreGrown` condition; `None`: nothing under way (absent).
    pub step: Option<Step>,
    /// The StatefulSet was replaced: it is gone, apply it afresh.
    pub replaced: bool,
}

/// The storage the StatefulSet's claim template asks for.
pub fn template_size(set: &StatefulSet) -> Option<&str> {
    let template = set.spec.as_ref()?.volume_claim_templates.as_ref()?.first()?;
    let requests = template.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    requests.get("storage").map(|q| q.0.as_str())
}

/// The store's claims: those of the StatefulSet `set`'s pods, any ordinal.
async fn claims(api: &Api<PersistentVolumeClaim>, resource: &str, set: &str) -> Result<Vec<Claim>, kube::Error> {
    let prefix = format!("{STORE_VOLUME}-{set}-");
    let listed = api.list(&ListParams::default().labels(&crate::names::receiver_selector(resource))).await?;
    let claim = |c: PersistentVolumeClaim| {
        let name = c.name_any();
        let ordinal = name.strip_prefix(&prefix)?.parse::<i32>().ok()?;
        let status = c.status.unwrap_or_default();
        let spec = c.spec.unwrap_or_default();
        let class = spec.storage_class_name;
        let request = spec.resources.and_then(|r| r.requests).and_then(|r| r.get("storage").map(|q| q.0.clone()));
        let conditions = status
            .conditions
            .iter()
            .flatten()
            .map(|c| format!("{} {}", c.type_, c.message.as_deref().unwrap_or_default()).trim().to_owned());
        Some(Claim {
            ordinal,
            bound: status.phase.as_deref() == Some("Bound"),
            request,
            capacity: status.capacity.as_ref().and_then(|c| c.get("storage")).map(|q| q.0.clone()),
            conditions: conditions.collect(),
            class,
            name,
        })
    };
    Ok(listed.items.into_iter().filter_map(claim).collect())
}

/// The stage: how the StatefulSet `set` is to be applied this pass, and
/// the `StoreGrown` condition. Stops only while the StatefulSet is being
/// deleted (it is applied again once it is gone) or a call fails.
pub async fn stage(ctx: &Context, r: &FusionAuthWebhook, v: &Validated, set: &StatefulSet, size: &str) -> Result<Sized, Stopped> {
    let name = set.name_any();
    if set.metadata.deletion_timestamp.is_some() {
        let message = format!("StatefulSet {name} is being deleted; it is applied again once it is gone");
        return Err(Stopped::wait(Kind::ReceiverAvailable, Reason::Progressing, message));
    }
    let Some(template) = template_size(set).map(str::to_owned) else { return Ok(Sized::default()) };
    let under_way = r.status.iter().flat_map(|s| &s.conditions).any(|c| c.type_ == Kind::StoreGrown.as_str());
    if bytes(size) == bytes(&template) && !under_way {
        return Ok(Sized::default());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let failed = Stopped::kubernetes(Kind::ReceiverAvailable, Error::ApplyReceiver);
    let listed = claims(&api, &v.name, &name).await.map_err(failed)?;
    let plan = plan(size, &template, v.replicas, &listed);
    if let Some(has) = &plan.shrink {
        let message = format!(
            "spec.receiver.store.size {size} is smaller than the store's volumes ({has}): a volume cannot shrink, so they stay at {has}; set the size back to {has} or more (to start over on smaller volumes, switch the store to `none` and back once the old store is drained)"
        );
        return Ok(Sized {
            keep: Some(template),
            step: Some(Step::failed(Kind::StoreGrown, Reason::StoreCannotShrink, message)),
            replaced: false,
        });
    }
    if plan.steady() {
        if under_way {
            let note = format!("every volume claim of the store has {size}");
            status::publish(r, ctx, &[status::normal(EventReason::StoreGrown, "Resize", note)]).await;
        }
        return Ok(Sized::default());
    }
    if let Some(refused) = grow(ctx, &api, &listed, &plan, size, &template).await? {
        return Ok(refused);
    }
    let replaced = plan.replace && replace(ctx, r, set, &template, size, &plan.grow).await?;
    let message = growing(&plan, size, &name);
    Ok(Sized { keep: None, step: Some(Step::failed(Kind::StoreGrown, Reason::Growing, message)), replaced })
}

/// Patches the claims `plan` grows to `size`; `Some`: the API server
/// refused one (its StorageClass cannot expand), the store stays at `template`.
async fn grow(
    ctx: &Context,
    api: &Api<PersistentVolumeClaim>,
    listed: &[Claim],
    plan: &Plan,
    size: &str,
    template: &str,
) -> Result<Option<Sized>, Stopped> {
    for claim in listed.iter().filter(|c| plan.grow.contains(&c.name)) {
        let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
        match api.patch(&claim.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => ctx.metrics.kubernetes_write("patch"),
            Err(kube::Error::Api(s)) if cannot_expand(&s) => {
                let class = claim.class.as_deref().unwrap_or("(none)");
                let message = format!(
                    "volume claim {} cannot grow to {size}: its StorageClass {class} does not allow volume expansion (the API server: {}); the store stays at {template}: set spec.receiver.store.size back to {template}, or have the cluster's admin set `allowVolumeExpansion: true` on StorageClass {class} if its storage driver can expand volumes",
                    claim.name, s.message
                );
                let keep = plan.replace.then(|| template.to_owned());
                let step = Some(Step::failed(Kind::StoreGrown, Reason::StoreCannotGrow, message));
                return Ok(Some(Sized { keep, step, replaced: false }));
            }
            Err(e) => return Err(Stopped::kubernetes(Kind::ReceiverAvailable, Error::ApplyReceiver)(e)),
        }
    }
    Ok(None)
}

/// Pure: the `Growing` message: what was asked, what waits and why.
fn growing(plan: &Plan, size: &str, set: &str) -> String {
    let mut parts = Vec::new();
    if !plan.grow.is_empty() {
        parts.push(format!("volume claims {} asked to grow", plan.grow.join(", ")));
    }
    parts.extend(plan.unbound.iter().map(|c| format!("{c} is not bound yet: it grows once it is")));
    parts.extend(plan.resizing.iter().cloned());
    if parts.is_empty() {
        parts.push(format!("StatefulSet {set} replaced with claims of the new size"));
    }
    format!("growing the store to {size}: {}", parts.join("; "))
}

/// The API server's `PersistentVolumeClaimResize` admission refusing a
/// claim: "only dynamically provisioned pvc can be resized and the
/// storageclass that provisions the pvc must support resize".
fn cannot_expand(status: &kube::core::Status) -> bool {
    status.code == 403 && status.message.contains("resize")
}

/// Deletes StatefulSet `set` leaving its pods (`Orphan`) and waits up to
/// 10 s for it to be gone; then it may be applied afresh (`true`). An
/// Event `StoreGrowing` says what happens.
async fn replace(
    ctx: &Context,
    r: &FusionAuthWebhook,
    set: &StatefulSet,
    template: &str,
    size: &str,
    grown: &[String],
) -> Result<bool, Stopped> {
    let name = set.name_any();
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        preconditions: Some(Preconditions { uid: set.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    match sets.delete(&name, &orphan).await {
        Ok(_) => {
            ctx.metrics.kubernetes_write("delete");
            let claims = if grown.is_empty() {
                "the volume claims have it already".to_owned()
            } else {
                format!("volume claims {} asked to grow", grown.join(", "))
            };
            let note = format!(
                "store size {template} -> {size}: {claims}; StatefulSet {name} is replaced to carry the new size (its pods keep running)"
            );
            status::publish(r, ctx, &[status::normal(EventReason::StoreGrowing, "Resize", note)]).await;
        }
        // Gone already, or replaced by another pass: look again.
        Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 409 => {}
        Err(e) => return Err(Stopped::kubernetes(Kind::ReceiverAvailable, Error::ApplyReceiver)(e)),
    }
    for _ in 0..40 {
        match sets.get_opt(&name).await {
            Ok(None) => return Ok(true),
            Ok(Some(s)) if s.uid() != set.uid() => return Ok(false),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let message = format!("StatefulSet {name} is being replaced to carry the store's new size (its pods keep running)");
    Err(Stopped::wait(Kind::ReceiverAvailable, Reason::Progressing, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(n: i32, request: &str, capacity: &str) -> Claim {
        let capacity = (!capacity.is_empty()).then(|| capacity.to_owned());
        Claim { name: format!("store-a-{n}"), ordinal: n, bound: true, request: Some(request.into()), capacity, ..Claim::default() }
    }

    #[test]
    fn the_plan_grows_only_what_is_smaller_and_never_shrinks() {
        let claims = [
            claim(0, "1Gi", "1Gi"),
            claim(1, "3Gi", "3Gi"),
            Claim { name: "store-a-2".into(), ordinal: 2, request: Some("1Gi".into()), ..Claim::default() },
        ];
        assert!(plan("1Gi", "1Gi", 3, &claims).steady());
        assert!(plan("1073741824", "1Gi", 3, &claims).steady(), "the same size spelled otherwise");
        let grow = plan("2Gi", "1Gi", 3, &claims);
        assert_eq!((grow.replace, grow.grow, grow.unbound), (true, vec!["store-a-0".into()], vec!["store-a-2".into()]));
        assert!(plan("2Gi", "1Gi", 2, &claims).unbound.is_empty(), "an unbound claim of a replica scaled away is left");
        assert_eq!(plan("3Gi", "1Gi", 2, &claims[1..2]).grow, Vec::<String>::new(), "a claim grown by hand stays");
        assert_eq!(plan("500Mi", "1Gi", 3, &claims).shrink.as_deref(), Some("1Gi"));
        assert_eq!(plan("1G", "1Gi", 3, &claims).shrink.as_deref(), Some("1Gi"), "1G is less than 1Gi");
        assert!(plan("lots", "1Gi", 3, &claims).steady(), "not a quantity: nothing to compare");
    }

    #[test]
    fn a_claim_whose_volume_lags_its_request_is_still_growing_with_its_conditions() {
        let mut lagging = claim(0, "2Gi", "1Gi");
        lagging.conditions = vec!["FileSystemResizePending waiting for the node".into()];
        let lags = plan("2Gi", "2Gi", 1, &[lagging, claim(1, "2Gi", "2Gi")]);
        assert!(!lags.replace && lags.grow.is_empty());
        assert_eq!(lags.resizing, vec!["store-a-0 has 1Gi of 2Gi: FileSystemResizePending waiting for the node".to_owned()]);
        // A claim made from the old template while it was replaced: grown, no replacement.
        let late = plan("2Gi", "2Gi", 2, &[claim(0, "2Gi", "2Gi"), claim(1, "1Gi", "1Gi")]);
        assert_eq!((late.replace, late.grow), (false, vec!["store-a-1".to_owned()]));
    }
}

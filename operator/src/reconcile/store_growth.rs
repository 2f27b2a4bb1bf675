//! store_growth: an embedded store's volumes follow
//! `spec.receiver.store.size` upward. A StatefulSet's claim templates are
//! immutable, so growing is done as StatefulSet-based database operators do
//! it, in steps that are each safe to repeat:
//!
//! 1. every claim of the store (`store-<name>-receiver-N`, also those kept
//!    from a scale-down) smaller than the spec is patched to the new size;
//!    the API server refuses where the claim's StorageClass cannot expand
//!    (its `PersistentVolumeClaimResize` admission), and that refusal is the
//!    condition `StoreCannotGrow` (the operator reads no StorageClass: it
//!    needs no cluster-wide permission for this);
//! 2. the StatefulSet is deleted with `propagationPolicy: Orphan`: its pods
//!    keep running and answering, its claims stay;
//! 3. the next pass applies it again, with the new claim template: it adopts
//!    the running pods (same pod template: no restart), and replicas added
//!    later get volumes of the new size.
//!
//! The volume itself grows by the storage driver (its resizer, then the
//! kubelet grows the filesystem), online where the driver can.
//!
//! Shrinking is refused: by the CRD's CEL rule at admission, and here (a
//! spec smaller than the claim template, e.g. applied through an older
//! CRD without the rule) as `StoreCannotShrink`, with nothing touched.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::quantity::bytes;
use crate::reconcile::conditions::{Kind, Reason, Step};
use crate::reconcile::validate::Validated;
use crate::reconcile::{Error, Stopped, Then, receiver_admin, status};
use crate::resource::FusionAuthWebhook;

/// What the store's volumes need. Pure ([`plan`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The StatefulSet's claim template asks for the spec's size.
    Steady,
    /// The spec asks for less than the claim template has: refused.
    Shrink {
        /// The claim template's size.
        template: String,
    },
    /// The spec asks for more: these claims (each smaller than it) grow,
    /// then the StatefulSet is replaced.
    Grow {
        /// The claims to patch, by name (empty: all are large enough).
        claims: Vec<String>,
    },
}

/// A claim of the store, as [`plan`] reads it.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Its name.
    pub name: String,
    /// `spec.resources.requests.storage`.
    pub request: Option<String>,
}

/// Pure: what `size` (the spec's) asks of a StatefulSet whose claim
/// template asks for `template` and of its `claims`. Sizes that are not
/// quantities (the API server has checked them) count as steady.
pub fn plan(size: &str, template: Option<&str>, claims: &[Claim]) -> Plan {
    let (Some(wanted), Some(now)) = (bytes(size), template.and_then(bytes)) else { return Plan::Steady };
    if wanted < now {
        return Plan::Shrink { template: template.unwrap_or_default().to_owned() };
    }
    if wanted == now {
        return Plan::Steady;
    }
    let smaller = |c: &&Claim| c.request.as_deref().and_then(bytes).is_none_or(|b| b < wanted);
    Plan::Grow { claims: claims.iter().filter(smaller).map(|c| c.name.clone()).collect() }
}

/// The storage the StatefulSet's claim template asks for.
fn template_size(set: &StatefulSet) -> Option<&str> {
    let template = set.spec.as_ref()?.volume_claim_templates.as_ref()?.first()?;
    let requests = template.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    requests.get("storage").map(|q| q.0.as_str())
}

/// The store's claims: those of the StatefulSet `set`'s pods, any ordinal.
async fn claims(claims: &Api<PersistentVolumeClaim>, v: &Validated, set: &str) -> Result<Vec<PersistentVolumeClaim>, kube::Error> {
    let prefix = format!("{}-{set}-", crate::reconcile::build::receiver::STORE_VOLUME);
    let listed = claims.list(&ListParams::default().labels(&receiver_admin::selector(&v.name))).await?;
    let ours = |c: &PersistentVolumeClaim| c.name_any().strip_prefix(&prefix).is_some_and(|n| n.parse::<u32>().is_ok());
    Ok(listed.items.into_iter().filter(ours).collect())
}

/// The stage: `Ok` when the StatefulSet may be applied as built; a stop
/// while its claims grow, it is replaced, or the spec cannot be met.
pub async fn stage(ctx: &Context, r: &FusionAuthWebhook, v: &Validated, set: &StatefulSet, size: &str) -> Result<(), Stopped> {
    let name = set.name_any();
    if set.metadata.deletion_timestamp.is_some() {
        let message = format!("StatefulSet {name} is being replaced (its pods keep running)");
        return Err(Stopped::wait(Kind::ReceiverAvailable, Reason::Progressing, message));
    }
    let template = template_size(set);
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let listed = match plan(size, template, &[]) {
        Plan::Steady => return Ok(()),
        Plan::Shrink { template } => {
            let message = format!(
                "spec.receiver.store.size {size} is smaller than the store's volumes ({template}): a volume cannot shrink; set it back to {template} or more (to start over on smaller volumes, switch the store to `none` and back once the old store is drained)"
            );
            return Err(Stopped { step: Step::failed(Kind::ReceiverAvailable, Reason::StoreCannotShrink, message), then: Then::Recheck });
        }
        Plan::Grow { .. } => claims(&api, v, &name).await.map_err(Stopped::kubernetes(Kind::ReceiverAvailable, Error::ApplyReceiver))?,
    };
    let read: Vec<Claim> = listed.iter().map(|c| Claim { name: c.name_any(), request: request(c) }).collect();
    let Plan::Grow { claims: to_grow } = plan(size, template, &read) else { return Ok(()) };
    for claim in listed.iter().filter(|c| to_grow.contains(&c.name_any())) {
        grow(&api, claim, size).await?;
        ctx.metrics.kubernetes_write("patch");
    }
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        preconditions: Some(Preconditions { uid: set.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    match sets.delete(&name, &orphan).await {
        Ok(_) => ctx.metrics.kubernetes_write("delete"),
        // Gone or replaced already (another pass got there first).
        Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 409 => {}
        Err(e) => return Err(Stopped::kubernetes(Kind::ReceiverAvailable, Error::ApplyReceiver)(e)),
    }
    let grown = if to_grow.is_empty() {
        "every volume claim has it already".to_owned()
    } else {
        format!("volume claims {} asked to grow", to_grow.join(", "))
    };
    let note = format!(
        "store size {} -> {size}: {grown}; StatefulSet {name} is replaced to carry the new size (its pods keep running)",
        template.unwrap_or("?")
    );
    status::publish(r, ctx, &[status::normal("StoreGrowing", "Resize", note.clone())]).await;
    Err(Stopped::wait(Kind::ReceiverAvailable, Reason::Progressing, note))
}

/// A claim's `spec.resources.requests.storage`.
fn request(claim: &PersistentVolumeClaim) -> Option<String> {
    let requests = claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    requests.get("storage").map(|q| q.0.clone())
}

/// Patches `claim` to `size`: a claim not bound yet is waited for (the API
/// server resizes bound claims only), a StorageClass that cannot expand is
/// `StoreCannotGrow`.
async fn grow(api: &Api<PersistentVolumeClaim>, claim: &PersistentVolumeClaim, size: &str) -> Result<(), Stopped> {
    let name = claim.name_any();
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase != "Bound" {
        let message = format!(
            "volume claim {name} is {phase}, not Bound: it can grow to {size} once it is bound (see `kubectl describe pvc {name}`)"
        );
        return Err(Stopped::wait(Kind::ReceiverAvailable, Reason::Progressing, message));
    }
    let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        // The PersistentVolumeClaimResize admission: "only dynamically
        // provisioned pvc can be resized and the storageclass that
        // provisions the pvc must support resize".
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("resize") => {
            let class = claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("(none)");
            let message = format!(
                "volume claim {name} cannot grow to {size}: its StorageClass {class} does not allow volume expansion (the API server: {}); set spec.receiver.store.size back, or have the cluster's admin set `allowVolumeExpansion: true` on StorageClass {class} if its storage driver can expand volumes",
                s.message
            );
            Err(Stopped { step: Step::failed(Kind::ReceiverAvailable, Reason::StoreCannotGrow, message), then: Then::Recheck })
        }
        Err(e) => Err(Stopped::kubernetes(Kind::ReceiverAvailable, Error::ApplyReceiver)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, request: &str) -> Claim {
        Claim { name: name.into(), request: Some(request.into()) }
    }

    #[test]
    fn the_plan_grows_only_what_is_smaller_and_never_shrinks() {
        let claims = [claim("store-a-0", "1Gi"), claim("store-a-1", "3Gi"), Claim { name: "store-a-2".into(), request: None }];
        assert_eq!(plan("1Gi", Some("1Gi"), &claims), Plan::Steady);
        assert_eq!(plan("1073741824", Some("1Gi"), &claims), Plan::Steady, "the same size spelled otherwise");
        assert_eq!(plan("2Gi", Some("1Gi"), &claims), Plan::Grow { claims: vec!["store-a-0".into(), "store-a-2".into()] });
        assert_eq!(plan("3Gi", Some("1Gi"), &claims[1..2]), Plan::Grow { claims: vec![] }, "a claim grown by hand stays");
        assert_eq!(plan("500Mi", Some("1Gi"), &claims), Plan::Shrink { template: "1Gi".into() });
        assert_eq!(plan("1G", Some("1Gi"), &claims), Plan::Shrink { template: "1Gi".into() }, "1G is less than 1Gi");
        assert_eq!(plan("2Gi", None, &claims), Plan::Steady, "no template read: nothing to compare");
    }
}

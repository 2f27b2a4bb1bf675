//! rollout: the receiver stage. Applies the receiver objects (after an
//! embedded store's growth stage), follows the rollout to
//! `ReceiverAvailable`, says why pods are not ready (a store that cannot
//! commit, a full disk), and keeps an embedded store the resource no longer
//! uses until it has drained (`old_store`).

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;

use crate::context::Context;
use crate::names;
use crate::reconcile::apply::kubernetes::{Rollout, apply_receiver};
use crate::reconcile::build::{self, Desired};
use crate::reconcile::conditions::{self, Kind, Reason};
use crate::reconcile::old_store::{removed, seconds_since};
use crate::reconcile::rotation::{self, Credentials};
use crate::reconcile::status::Report;
use crate::reconcile::validate::Validated;
use crate::reconcile::{Error, Stopped, apply, old_store, receiver_admin, store_growth};
use crate::resource::FusionAuthWebhook;

/// Applies the receiver objects; FusionAuth is told about a receiver only
/// once its current template is rolled out (during a rotation: once every
/// pod accepts both the old and the new credential). Returns whether an
/// old embedded store is kept until it drains (look again soon).
pub async fn receiver(
    ctx: &Context,
    r: &FusionAuthWebhook,
    v: &Validated,
    desired: &Desired,
    credentials: &Credentials,
    report: &mut Report,
) -> Result<bool, Stopped> {
    let config_map = desired.receiver.config_map.metadata.name.clone().unwrap_or_default();
    let observed = ctx.caches.observed(&v.namespace, &v.name, &config_map);
    let old = observed.stateful_set.clone().filter(|_| v.store.kind != crate::resource::StoreType::Embedded);
    let (mut objects, observed) = sized(ctx, r, v, desired, observed, old.is_some(), report).await?;
    if old.is_some() {
        build::receiver::select_current_store(&mut objects.service, v);
    }
    let applied = apply_receiver(&ctx.client, &v.namespace, &objects, &observed)
        .await
        .map_err(Stopped::kubernetes(Kind::ReceiverAvailable, Error::ApplyReceiver))?;
    for _ in &applied.written {
        ctx.metrics.kubernetes_write("apply");
    }
    let draining = match &old {
        Some(old) => drain_old_store(ctx, r, old, report).await?,
        None => false,
    };
    let name = names::receiver_name(&v.name);
    let rotating = credentials.previous != rotation::Previous::default();
    let note = if rotating { "; they accept the old and the new credential before FusionAuth is switched" } else { "" };
    let workload = if v.store.kind == crate::resource::StoreType::Embedded { "StatefulSet" } else { "Deployment" };
    let mut state = applied.rollout.unwrap_or_else(|| Rollout::Waiting(format!("{workload} {name} is not applied yet")));
    if rotating && state == Rollout::Done {
        state = earlier_pods_gone(ctx, v, &objects, &config_map, workload, &name).await;
    }
    if state == Rollout::Done && old.is_none() && credentials.legacy_admin_token.is_some() {
        forget_legacy_admin_token(ctx, v, credentials, desired).await;
    }
    availability(ctx, v, state, note, draining, &config_map, report).await
}

/// During a rotation, a rolled-out workload is not enough: a pod of the
/// earlier config version (it accepts only the old credential) still
/// serves while it terminates, and FusionAuth's deliveries may reach it
/// until the endpoints everywhere have caught up (on a real cluster 4 of
/// 206 deliveries were refused 401 this way). FusionAuth is switched once
/// every pod the Service selects runs the current version.
async fn earlier_pods_gone(
    ctx: &Context,
    v: &Validated,
    objects: &build::ReceiverObjects,
    config_map: &str,
    workload: &str,
    name: &str,
) -> Rollout {
    let selector = objects.service.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    match apply::kubernetes::pods_of_other_versions(&ctx.client, &v.namespace, &selector, config_map).await {
        Ok(earlier) if earlier.is_empty() => Rollout::Done,
        Ok(earlier) => Rollout::Waiting(format!(
            "{workload} {name} is rolled out, but pods of an earlier config version, which accept only the old credential, may still serve: {}",
            earlier.join(", ")
        )),
        Err(e) => Rollout::Waiting(format!("{workload} {name} is rolled out; its pods could not be listed ({e})")),
    }
}

/// The receiver objects to apply and what is observed of them, after an
/// embedded store's growth stage: its StatefulSet keeps the claim template
/// it has while the spec's size cannot be had, and one just replaced (to
/// grow) is applied afresh. Records `status.storeSize` and `StoreGrown`.
async fn sized(
    ctx: &Context,
    r: &FusionAuthWebhook,
    v: &Validated,
    desired: &Desired,
    mut observed: apply::kubernetes::Observed,
    old_store: bool,
    report: &mut Report,
) -> Result<(build::ReceiverObjects, apply::kubernetes::Observed), Stopped> {
    let mut objects = desired.receiver.clone();
    if let build::Workload::StatefulSet(set) = &mut objects.workload {
        let mut size = build::receiver::store_size(v);
        if let Some(current) = observed.stateful_set.clone() {
            let sized = store_growth::stage(ctx, r, v, &current, &size).await?;
            if let Some(kept) = sized.keep {
                build::receiver::set_store_size(set, &kept);
                size = kept;
            }
            if sized.replaced {
                observed.stateful_set = None;
            }
            report.record_if(sized.step);
        }
        report.status.store_size = Some(size);
    } else if !old_store {
        report.status.store_size = None;
    }
    Ok((objects, observed))
}

/// `ReceiverAvailable` from where the rollout stands (`state`): done, or
/// why not (scaled to 0, a store that cannot commit, pods that say why).
/// `note`: what a rotation adds; `draining`: an old store is kept.
async fn availability(
    ctx: &Context,
    v: &Validated,
    state: Rollout,
    note: &str,
    draining: bool,
    config_map: &str,
    report: &mut Report,
) -> Result<bool, Stopped> {
    let name = names::receiver_name(&v.name);
    let workload = if v.store.kind == crate::resource::StoreType::Embedded { "StatefulSet" } else { "Deployment" };
    match (v.replicas, state) {
        (0, _) => Err(Stopped::wait(
            Kind::ReceiverAvailable,
            Reason::ScaledToZero,
            format!("{workload} {name} is scaled to 0 replicas; FusionAuth is not told about a receiver that cannot answer"),
        )),
        (_, Rollout::Done) => {
            report.done(Kind::ReceiverAvailable, Reason::Available, format!("{workload} {name} is rolled out and available"));
            // An old store's pods still mount their config version.
            if !draining {
                delete_old_config_maps(ctx, v, config_map).await;
            }
            Ok(draining)
        }
        (_, Rollout::Waiting(message) | Rollout::Stuck(message)) if let Some(problem) = store_problem(ctx, v).await => {
            let (reason, advice) = store_verdict(v, &problem);
            Err(Stopped::wait(Kind::ReceiverAvailable, reason, format!("{message}; {problem}{advice}")))
        }
        (_, Rollout::Waiting(message)) => {
            // A StatefulSet has no progress deadline to say it is stuck: its
            // pods say why while it waits (a claim no StorageClass can
            // bind, a pod that cannot start).
            let trouble = match workload {
                "StatefulSet" => match apply::kubernetes::pod_trouble(&ctx.client, &v.namespace, &v.name).await {
                    Ok(Some(trouble)) => format!("; {trouble}"),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            Err(Stopped::wait(Kind::ReceiverAvailable, Reason::Progressing, format!("{message}{note}{trouble}")))
        }
        (_, Rollout::Stuck(message)) => {
            let trouble = match apply::kubernetes::pod_trouble(&ctx.client, &v.namespace, &v.name).await {
                Ok(Some(trouble)) => format!("; {trouble}"),
                Ok(None) => String::new(),
                Err(e) => format!("; the pods could not be listed ({e})"),
            };
            Err(Stopped::wait(Kind::ReceiverAvailable, Reason::RolloutStuck, format!("{message}{trouble}")))
        }
    }
}

/// Every receiver runs with scoped admin tokens now (rolled out, no old
/// store draining): the one token of earlier receivers goes from the
/// operator's Secret. Best effort: the next pass tries again.
async fn forget_legacy_admin_token(ctx: &Context, v: &Validated, credentials: &Credentials, desired: &Desired) {
    let Some(owner) = desired.receiver.kept_secret.metadata.owner_references.iter().flatten().next().cloned() else { return };
    let now = Credentials { legacy_admin_token: None, ..credentials.clone() };
    match apply::kubernetes::apply_kept_secret(&ctx.client, &v.namespace, build::receiver::kept_secret(v, &now, &owner)).await {
        Ok(()) => ctx.metrics.kubernetes_write("apply"),
        Err(e) => {
            tracing::warn!(namespace = v.namespace, name = v.name, error = %e, "cannot remove the earlier admin token; next pass will")
        }
    }
}

/// The reason for a store that cannot commit, and what to do when its
/// disk is full (the receivers recover by themselves once it has room).
/// Pure.
fn store_verdict(v: &Validated, problem: &str) -> (Reason, String) {
    // ENOSPC as the OS words it (redb's I/O error, PostgreSQL's "could not
    // extend file"), and PostgreSQL's disk_full SQLSTATE.
    let full = ["No space left on device", "os error 28", "Disk quota exceeded", "os error 122", "(53100)", "53100:"]
        .iter()
        .any(|sign| problem.contains(sign));
    if !full {
        return (Reason::StoreUnavailable, String::new());
    }
    let advice = match v.store.kind {
        crate::resource::StoreType::Embedded => {
            format!(
                " (the store's volume is full: raise spec.receiver.store.size, now {}, e.g. kubectl patch faw NAME --type=merge -p '{{\"spec\":{{\"receiver\":{{\"store\":{{\"size\":\"<larger>\"}}}}}}}}': each replica's volume claim grows where its StorageClass allows volume expansion; the receivers write again once there is room)",
                build::receiver::store_size(v)
            )
        }
        _ => " (the database's disk is full: give PostgreSQL room; delivered rows are compacted after delivery.retention)".to_owned(),
    };
    (Reason::StoreFull, advice.replace("NAME", &v.name))
}

/// With a store, a receiver that is not ready may say why: its store
/// cannot commit (PostgreSQL down, a full volume).
async fn store_problem(ctx: &Context, v: &Validated) -> Option<String> {
    if v.store.kind == crate::resource::StoreType::None {
        return None;
    }
    receiver_admin::store_problem(&ctx.client, &v.namespace, &v.name).await
}

/// An embedded store the resource no longer uses: kept (a condition says
/// why) until drained or discarded, then removed with an Event. Returns
/// whether it is kept.
async fn drain_old_store(ctx: &Context, r: &FusionAuthWebhook, old: &StatefulSet, report: &mut Report) -> Result<bool, Stopped> {
    let (namespace, resource) = (r.namespace().unwrap_or_default(), r.name_any());
    let confirmation = r.annotations().get(old_store::DISCARD_ANNOTATION).map(String::as_str);
    // Since the pass that narrowed the Service (when the condition appeared).
    let since = r.status.iter().flat_map(|s| &s.conditions).find(|c| c.type_ == Kind::OldStoreDrained.as_str());
    let cut_off = since.map(|c| seconds_since(&c.last_transition_time.0));
    let verdict = old_store::judge(&ctx.client, &namespace, &resource, old, cut_off, confirmation)
        .await
        .map_err(Stopped::kubernetes(Kind::ReceiverAvailable, Error::ApplyReceiver))?;
    let name = old.metadata.name.clone().unwrap_or_default();
    let note = match verdict {
        old_store::Verdict::Keep(message) => {
            report.record(conditions::Step::failed(Kind::OldStoreDrained, Reason::OldStoreKept, message));
            return Ok(true);
        }
        done => removed(&done, &name, "Drain"),
    };
    old_store::remove(&ctx.client, &namespace, old).await.map_err(Stopped::kubernetes(Kind::ReceiverAvailable, Error::ApplyReceiver))?;
    ctx.metrics.kubernetes_write("delete");
    report.event(note);
    Ok(false)
}

/// Once every pod runs the current config version, the others go. Best
/// effort: one that cannot be deleted now is tried again next pass.
async fn delete_old_config_maps(ctx: &Context, v: &Validated, current: &str) {
    for name in ctx.caches.other_config_maps(&v.namespace, &v.name, current) {
        match apply::kubernetes::delete_config_map(&ctx.client, &v.namespace, &name).await {
            Ok(()) => ctx.metrics.kubernetes_write("delete"),
            Err(e) => tracing::warn!(namespace = v.namespace, config_map = name, error = %e, "cannot delete an old receiver config"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::build::fixtures::validated;

    #[test]
    fn a_full_disk_is_named_with_what_to_do_and_other_store_problems_are_not() {
        let (embedded, _) = validated(serde_json::json!({"receiver": {"store": {"type": "embedded"}}}));
        let full = "commit failed: I/O error: No space left on device (os error 28)";
        let (reason, advice) = store_verdict(&embedded, full);
        assert_eq!(reason, Reason::StoreFull);
        assert!(advice.contains("raise spec.receiver.store.size, now 1Gi, e.g. kubectl patch faw todo-cleanup --type=merge"), "{advice}");
        assert_eq!(store_verdict(&embedded, "write: Disk quota exceeded (os error 122)").0, Reason::StoreFull);
        assert_eq!(store_verdict(&embedded, "cannot connect to 10.0.0.1:53100").0, Reason::StoreUnavailable, "a port is not a SQLSTATE");
        let (reason, advice) = store_verdict(&embedded, "database is locked");
        assert_eq!((reason, advice.as_str()), (Reason::StoreUnavailable, ""));
        let (reason, advice) = store_verdict(&validated(serde_json::json!({})).0, "db error: could not extend file (53100)");
        assert_eq!(reason, Reason::StoreFull);
        assert!(advice.contains("give PostgreSQL room"), "{advice}");
    }
}

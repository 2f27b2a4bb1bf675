//! reconcile: one resource through the pipeline of DESIGN.md, behind the
//! finalizer. Each stage is a module:
//!
//! - [`dereference`]: read the referenced Secrets;
//! - [`validate`](mod@validate): pure, resource + Secrets -> a checked value or a condition;
//! - [`observe`]: FusionAuth's webhook now (one listing serves a whole resync);
//! - [`rotation`]: pure, which credentials receivers accept this pass;
//! - [`build`]: pure, the desired state (receiver objects, FusionAuth webhook);
//! - [`apply`]: make Kubernetes and FusionAuth match it;
//! - [`tenant_switches`]: the protocol for FusionAuth's tenant event switches;
//! - [`cleanup`]: remove what the resource put in FusionAuth (on delete, or
//!   when it moves to another FusionAuth);
//! - [`old_store`]: an embedded store no longer used is kept until drained;
//! - [`store_growth`]: an embedded store's volume claims grow with its spec;
//! - [`backfill`]: events FusionAuth failed to deliver, recovered from its
//!   Webhook Event Log and handed to the receiver;
//! - [`status`] and [`conditions`]: one status patch at the end, and Events.
//!
//! Each stage returns `Result<_, Stopped>`: the step that stopped the pass,
//! why, and what to do next. Errors never crash the operator: a bad
//! resource (invalid spec, missing Secret) becomes a condition and a slow
//! re-check (a change to the resource or the Secret triggers one sooner); a
//! failing call to Kubernetes or FusionAuth becomes a condition and an
//! error, which [`error_policy`] turns into an exponential backoff with jitter.

pub mod apply;
pub mod backfill;
pub mod build;
pub mod cleanup;
pub mod conditions;
pub mod dereference;
pub mod finalizer;
pub mod observe;
pub mod old_store;
pub use fusionhook_api::admin::client as receiver_admin;
pub mod rotation;
pub mod status;
pub mod store_growth;
pub mod tenant_switches;
pub mod validate;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use fusionhook_fusionauth::client::FusionAuthClient;
use fusionhook_fusionauth::model::Webhook;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use uuid::Uuid;

use crate::context::Context;
use crate::names;
use crate::reconcile::conditions::EventReason;
use crate::resource::FusionAuthWebhook;
use apply::fusionauth::{ApplyError, WebhookChange, apply_signing_key, apply_webhook, delete_keys};
use apply::kubernetes::{Rollout, apply_receiver};
use build::{Desired, owner_reference, receiver_url};
use conditions::{Kind, Reason, Step};
use rotation::{Credentials, Kept, Seen};
use status::Report;
use validate::{Validated, ValidationError, validate};

/// A reconcile that failed; the controller retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the referenced Secrets failed.
    #[error("reading the referenced Secrets: {0}")]
    Dereference(#[source] kube::Error),
    /// Server-side apply of a receiver object failed.
    #[error("applying the receiver objects: {0}")]
    ApplyReceiver(#[source] kube::Error),
    /// The status patch failed.
    #[error("patching the status: {0}")]
    Status(#[source] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("updating the finalizer: {0}")]
    Finalizer(#[source] kube::Error),
    /// A FusionAuth call failed.
    #[error(transparent)]
    FusionAuth(#[from] ApplyError),
    /// Clean-up cannot reach FusionAuth: the connection Secret is gone or bad.
    #[error("cannot clean up: {0}")]
    CleanupBlocked(#[source] ValidationError),
    /// The resource lacks metadata an API server always sets.
    #[error("the resource has no {0}")]
    Incomplete(&'static str),
}

/// Where a pass stopped, and what the controller does next.
#[derive(Debug)]
pub struct Stopped {
    /// The step that stopped (a `Ready` step: before any step, e.g. an invalid spec).
    pub step: Step,
    /// What next.
    pub then: Then,
}

/// What the controller does after a stopped pass.
#[derive(Debug)]
pub enum Then {
    /// Nothing will change by itself: re-check at the slow interval (a
    /// change to the resource or a Secret triggers one sooner).
    Recheck,
    /// Something is under way (a rollout): look again soon.
    Wait,
    /// A call failed: back off and retry.
    Retry(Error),
}

impl Stopped {
    fn wait(kind: Kind, reason: Reason, message: impl Into<String>) -> Self {
        Self { step: Step::failed(kind, reason, message), then: Then::Wait }
    }

    /// A stop at `kind` because a FusionAuth call failed.
    fn fusionauth(kind: Kind) -> impl FnOnce(ApplyError) -> Self {
        move |e| Self { step: Step::failed(kind, e.reason(), e.to_string()), then: Then::Retry(Error::FusionAuth(e)) }
    }

    /// A stop at `kind` because a Kubernetes call failed.
    fn kubernetes(kind: Kind, error: impl FnOnce(kube::Error) -> Error) -> impl FnOnce(kube::Error) -> Self {
        move |e| Self { step: Step::failed(kind, Reason::KubernetesApiFailed, e.to_string()), then: Then::Retry(error(e)) }
    }
}

impl From<ValidationError> for Stopped {
    fn from(e: ValidationError) -> Self {
        let kind = if matches!(e, ValidationError::InvalidSpec(_)) { Kind::Ready } else { Kind::SecretsResolved };
        Self { step: Step::failed(kind, e.reason(), e.to_string()), then: Then::Recheck }
    }
}

/// A pass that went through; `soon`: a rotation is under way, look again
/// soon; `backfill`: when the next backfill pass is due.
struct Pass {
    soon: bool,
    backfill: Option<std::time::Duration>,
}

/// Reconciles one resource; the controller's entry point.
pub async fn reconcile(resource: Arc<FusionAuthWebhook>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    // A trace per reconcile (target `otel`: off unless traces are on), with
    // its calls to FusionAuth inside.
    let span = tracing::info_span!(
        target: "otel", "reconcile", k8s.namespace.name = resource.namespace().unwrap_or_default(),
        fusionauthwebhook = resource.name_any(), result = tracing::field::Empty, otel.status_code = tracing::field::Empty,
    );
    let result = tracing::Instrument::instrument(run(&resource, &ctx), span.clone()).await;
    let label = match &result {
        Ok((_, label)) => label,
        Err(_) => "error",
    };
    if !span.is_none() {
        span.record("result", label);
        if label == "error" {
            span.record("otel.status_code", "error");
        }
    }
    ctx.metrics.reconciled(label, started.elapsed());
    let (action, _) = result?;
    ctx.succeeded(&resource);
    Ok(action)
}

/// After a failed reconcile: exponential backoff with jitter per resource.
pub fn error_policy(resource: Arc<FusionAuthWebhook>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.failed(&resource);
    tracing::warn!(
        namespace = resource.namespace().unwrap_or_default(),
        name = resource.name_any(),
        error = %error,
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "reconcile failed"
    );
    Action::requeue(delay)
}

async fn run(r: &FusionAuthWebhook, ctx: &Context) -> Result<(Action, &'static str), Error> {
    let namespace = r.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<FusionAuthWebhook> = Api::namespaced(ctx.client.clone(), &namespace);
    if r.metadata.deletion_timestamp.is_some() {
        if finalizer::present(r) {
            ctx.backfill.forget(&r.uid().unwrap_or_default());
            cleanup::on_delete(r, ctx, &api).await?;
            if store_kept_on_delete(r, ctx, &api, &namespace).await? {
                return Ok((Action::requeue(ctx.jittered(ctx.settings.waiting_requeue)), "waiting"));
            }
            finalizer::remove(r, ctx, &api).await?;
        }
        return Ok((Action::await_change(), "deleted"));
    }
    if !finalizer::present(r) {
        finalizer::add(r, ctx, &api).await?;
    }
    let mut report = Report::new(r);
    // On the heap: the pipeline's future is large (debug builds above all),
    // and whoever awaits a reconcile should not need a large stack for it.
    let outcome = Box::pin(pipeline(r, ctx, &mut report)).await;
    // Handled, whatever the outcome: `kubectl fusionhook reconcile --wait` prints it.
    report.status.handled_reconcile_request = r.annotations().get(names::RECONCILE_ANNOTATION).cloned();
    if outcome.is_err()
        && r.spec.backfill.as_ref().is_some_and(|b| b.enabled)
        && let Some(step) = ctx.backfill.last_step(&r.uid().unwrap_or_default())
    {
        // Not reached this time: the last pass's word stands.
        report.record(step);
    }
    status::write(r, ctx, &api, report, outcome.as_ref().err().map(|s| &s.step)).await?;
    let (slow, soon) = (ctx.jittered(ctx.settings.requeue), ctx.jittered(ctx.settings.waiting_requeue));
    match outcome {
        Ok(Pass { soon: false, backfill }) => Ok((Action::requeue(backfill.map_or(slow, |b| b.min(slow))), "ok")),
        Ok(Pass { soon: true, backfill }) => Ok((Action::requeue(backfill.map_or(soon, |b| b.min(soon))), "ok")),
        Err(Stopped { then: Then::Recheck, .. }) => Ok((Action::requeue(slow), "invalid")),
        Err(Stopped { then: Then::Wait, .. }) => Ok((Action::requeue(soon), "waiting")),
        Err(Stopped { then: Then::Retry(e), .. }) => Err(e),
    }
}

/// On delete, once FusionAuth no longer calls the receiver: an embedded
/// store that still holds deliveries keeps the finalizer (and its
/// StatefulSet running) until it is drained or discarded; then it goes
/// with its volume claims. Returns whether it is kept.
async fn store_kept_on_delete(r: &FusionAuthWebhook, ctx: &Context, api: &Api<FusionAuthWebhook>, namespace: &str) -> Result<bool, Error> {
    // Read, not from the cache: after a restart or a leader change the cache
    // may not have loaded yet, and "no StatefulSet" would let it go.
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let receiver = names::receiver_name(&r.name_any());
    let uid = r.uid().ok_or(Error::Incomplete("metadata.uid"))?;
    let store = match sets.get_opt(&receiver).await.map_err(Error::ApplyReceiver)? {
        Some(store) => store,
        // Its pods may outlive it: a StatefulSet replaced to grow the store
        // and not applied again yet.
        None if embedded(r) => {
            match old_store::orphaned(&ctx.client, namespace, &r.name_any(), &uid).await.map_err(Error::ApplyReceiver)? {
                Some(orphans) => orphans,
                None => return Ok(false),
            }
        }
        None => return Ok(false),
    };
    // Nothing reaches it any more: not FusionAuth (its webhook is gone, or
    // orphaned on purpose), not a delivery still routed by the Service.
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(ctx.client.clone(), namespace);
    apply::kubernetes::delete_one(&services, &receiver).await.map_err(Error::ApplyReceiver)?;
    ctx.metrics.kubernetes_write("delete");
    let cut_off = r.metadata.deletion_timestamp.as_ref().map(|t| seconds_since(&t.0));
    let confirmation = r.annotations().get(old_store::DISCARD_ANNOTATION).map(String::as_str);
    let verdict =
        old_store::judge(&ctx.client, namespace, &r.name_any(), &store, cut_off, confirmation).await.map_err(Error::ApplyReceiver)?;
    let name = store.metadata.name.clone().unwrap_or_default();
    let event = match verdict {
        old_store::Verdict::Keep(message) => {
            let was_kept =
                r.status.iter().flat_map(|s| &s.conditions).any(|c| c.type_ == "Ready" && c.reason == Reason::OldStoreKept.as_str());
            let step = conditions::Step::failed(Kind::Ready, Reason::OldStoreKept, format!("deleting, once the store is empty: {message}"));
            let mut report = Report::new(r);
            report.status.handled_reconcile_request = r.annotations().get(names::RECONCILE_ANNOTATION).cloned();
            status::write(r, ctx, api, report, Some(&step)).await?;
            if !was_kept {
                status::publish(r, ctx, &[status::warning(EventReason::OldStoreKept, "Delete", step.message)]).await;
            }
            return Ok(true);
        }
        done => removed(&done, &name, "Delete"),
    };
    old_store::remove(&ctx.client, namespace, &store).await.map_err(Error::ApplyReceiver)?;
    old_store::remove_orphans(&ctx.client, namespace, &r.name_any()).await.map_err(Error::ApplyReceiver)?;
    status::publish(r, ctx, &[event]).await;
    Ok(false)
}

/// Whether the spec asks for an embedded store.
fn embedded(r: &FusionAuthWebhook) -> bool {
    r.spec.receiver.store.as_ref().is_some_and(|s| s.kind == crate::resource::StoreType::Embedded)
}

/// The plan: each line a stage.
async fn pipeline(r: &FusionAuthWebhook, ctx: &Context, report: &mut Report) -> Result<Pass, Stopped> {
    let secrets = dereference::secrets(&ctx.client, r).await.map_err(Stopped::kubernetes(Kind::SecretsResolved, Error::Dereference))?;
    let v = validate(r, &secrets)?;
    build::receiver_config::receiver_accepts(&v)?;
    report.done(Kind::SecretsResolved, Reason::Resolved, "every referenced Secret and key is present");
    let moved = cleanup::previous_fusionauth(r, ctx, &v, report).await?;
    let fusionauth = observe(ctx, &v).await;
    let seen = fusionauth.as_ref().map_or(Seen::Unknown, |(_, webhook)| Seen::Webhook(webhook.as_ref()));
    let kept = Kept::read(&v, &secrets);
    let credentials = rotation::credentials(&v, &kept, seen, moved);
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let admin = rotation::admin_tokens(&kept.admin, now, ctx.settings.admin_token_rotation);
    let owner = owner_reference(r).ok_or(ValidationError::InvalidSpec("metadata.uid: missing".into()))?;
    let desired = build::desired(&v, &credentials, &admin, &ctx.settings.receiver, &owner);
    let draining = receiver(ctx, r, &v, &desired, &credentials, report).await?;
    let (fa, observed) = fusionauth.map_err(Stopped::fusionauth(Kind::WebhookRegistered))?;
    let registered = register(&fa, &v, desired.webhook, observed, &credentials, report).await;
    ctx.fusionauth_webhook_written(&v.connection(), v.webhook_id).await;
    let soon = registered?.soon || draining;
    keep_the_key_fusionauth_signs_with(ctx, &v, &credentials, &owner).await;
    let request = r.annotations().get(names::BACKFILL_ANNOTATION).map(String::as_str);
    let backfill = backfill::stage(ctx, &v, &fa, request, report).await;
    Ok(Pass { soon, backfill })
}

/// FusionAuth now signs with the spec's HMAC key (or not at all): the
/// operator's copy follows in the same pass, so a second rotation right
/// after this one still finds the secret FusionAuth signs with. Best
/// effort: the next pass writes it anyway.
async fn keep_the_key_fusionauth_signs_with(ctx: &Context, v: &Validated, credentials: &Credentials, owner: &OwnerReference) {
    let signing = v.hmac().map(|(key, _)| key.clone());
    if credentials.hmac_in_use == signing {
        return;
    }
    let now = Credentials { hmac_in_use: signing, ..credentials.clone() };
    let secret = build::receiver::kept_secret(v, &now, owner);
    match apply::kubernetes::apply_kept_secret(&ctx.client, &v.namespace, secret).await {
        Ok(()) => ctx.metrics.kubernetes_write("apply"),
        Err(e) => {
            tracing::warn!(namespace = v.namespace, name = v.name, error = %e, "cannot update the kept signing key copy; next pass will")
        }
    }
}

/// FusionAuth's webhook as it is now: all a steady state reads (see [`observe`]).
async fn observe(ctx: &Context, v: &Validated) -> Result<(FusionAuthClient, Option<Webhook>), ApplyError> {
    Ok(ctx.fusionauth_webhook(&v.connection(), v.webhook_id).await?)
}

/// Applies the receiver objects; FusionAuth is told about a receiver only
/// once its current template is rolled out (during a rotation: once every
/// pod accepts both the old and the new credential). Returns whether an
/// old embedded store is kept until it drains (look again soon).
async fn receiver(
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
    let state = applied.rollout.unwrap_or_else(|| Rollout::Waiting(format!("{workload} {name} is not applied yet")));
    if state == Rollout::Done && old.is_none() && credentials.legacy_admin_token.is_some() {
        forget_legacy_admin_token(ctx, v, credentials, desired).await;
    }
    availability(ctx, v, state, note, draining, &config_map, report).await
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

/// The Event for an old store's StatefulSet `name` removed (`action`:
/// `Drain` after a store-type change, `Delete` with the resource).
fn removed(verdict: &old_store::Verdict, name: &str, action: &str) -> kube::runtime::events::Event {
    match verdict {
        old_store::Verdict::Discarded => status::warning(
            EventReason::OldStoreDiscarded,
            action,
            format!(
                "StatefulSet {name} and its volume claims deleted as confirmed by {}, with what they held",
                old_store::DISCARD_ANNOTATION
            ),
        ),
        _ => status::normal(
            EventReason::OldStoreDrained,
            action,
            format!("StatefulSet {name} and its volume claims deleted: its embedded store held nothing any more"),
        ),
    }
}

/// Whole seconds from `then` to now (0 if `then` is in the future).
fn seconds_since(then: &k8s_openapi::jiff::Timestamp) -> u64 {
    u64::try_from(k8s_openapi::jiff::Timestamp::now().as_second() - then.as_second()).unwrap_or(0)
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

/// FusionAuth: the signing key, the webhook with the tenant-switch claims,
/// the switches, then keys no longer used.
async fn register(
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

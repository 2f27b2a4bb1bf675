//! reconcile: one resource through the pipeline of DESIGN.md, behind the
//! finalizer. Each stage is a module:
//!
//! - [`dereference`]: read the referenced Secrets;
//! - [`validate`](mod@validate): pure, resource + Secrets -> a checked value or a condition;
//! - [`observe`]: FusionAuth's webhook now (one listing serves a whole resync);
//! - [`rotation`]: pure, which credentials receivers accept this pass;
//! - [`build`]: pure, the desired state (receiver objects, FusionAuth webhook);
//! - [`apply`]: make Kubernetes and FusionAuth match it;
//! - [`rollout`]: the receiver stage: apply its objects, follow the rollout,
//!   drain an old store;
//! - [`register`]: the FusionAuth stage: signing key, webhook, switches;
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
pub mod register;
pub use fusionhook_api::admin::client as receiver_admin;
pub mod rollout;
pub mod rotation;
pub mod status;
pub mod store_growth;
pub mod tenant_switches;
pub mod validate;

use std::sync::Arc;
use std::time::Instant;

use fusionhook_fusionauth::client::FusionAuthClient;
use fusionhook_fusionauth::model::Webhook;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::names;
use crate::resource::FusionAuthWebhook;
use apply::fusionauth::ApplyError;
use build::owner_reference;
use conditions::{EventReason, Kind, Reason, Step};
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
pub(crate) struct Pass {
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
        // and not applied again yet (whatever the spec says now: it may
        // have left embedded since).
        None => match old_store::orphaned(&ctx.client, namespace, &r.name_any(), &uid).await.map_err(Error::ApplyReceiver)? {
            Some(orphans) => orphans,
            None => return Ok(false),
        },
    };
    // Nothing reaches it any more: not FusionAuth (its webhook is gone, or
    // orphaned on purpose), not a delivery still routed by the Service.
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(ctx.client.clone(), namespace);
    apply::kubernetes::delete_one(&services, &receiver).await.map_err(Error::ApplyReceiver)?;
    ctx.metrics.kubernetes_write("delete");
    let cut_off = r.metadata.deletion_timestamp.as_ref().map(|t| old_store::seconds_since(&t.0));
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
        done => old_store::removed(&done, &name, "Delete"),
    };
    old_store::remove(&ctx.client, namespace, &store).await.map_err(Error::ApplyReceiver)?;
    old_store::remove_orphans(&ctx.client, namespace, &r.name_any()).await.map_err(Error::ApplyReceiver)?;
    status::publish(r, ctx, &[event]).await;
    Ok(false)
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
    let draining = rollout::receiver(ctx, r, &v, &desired, &credentials, report).await?;
    let (fa, observed) = fusionauth.map_err(Stopped::fusionauth(Kind::WebhookRegistered))?;
    let registered = register::register(&fa, &v, desired.webhook, observed, &credentials, report).await;
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

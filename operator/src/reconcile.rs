//! reconcile: one resource through the pipeline — dereference -> validate ->
//! build -> apply -> status — behind the finalizer, and clean-up on delete.
//!
//! Errors never crash the operator: a bad resource (invalid spec, missing
//! Secret) becomes a condition and a slow re-check (a change to the resource
//! or the Secret triggers one sooner); a failing call to Kubernetes or
//! FusionAuth becomes a condition and an error, which [`error_policy`] turns
//! into an exponential backoff with jitter.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use fusionhook_fusionauth::client::FusionAuthClient;
use fusionhook_fusionauth::model::Webhook;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::apply::fusionauth::{
    ApplyError, WebhookChange, apply_signing_key, apply_tenant_events, apply_webhook_over, cleanup, disable_tenant_events,
};
use crate::apply::kubernetes::{Rollout, apply_receiver, dereference, generated_authorization, patch_status, rolled_out, rollout};
use crate::build::{fusionauth_webhook, owner_reference, receiver_url};
use crate::context::Context;
use crate::names::{self, FINALIZER};
use crate::resource::{DeletionPolicy, FusionAuthWebhook, FusionAuthWebhookStatus};
use crate::status::{self, IN_SYNC, READY, RECEIVER_AVAILABLE, SECRETS_RESOLVED, Step, TENANT_EVENTS_ENABLED, WEBHOOK_REGISTERED};
use crate::validate::{self, SecretString, ValidationError, validate};

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

impl Error {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Dereference(_) => "dereference",
            Self::ApplyReceiver(_) => "apply_receiver",
            Self::Status(_) => "status",
            Self::Finalizer(_) => "finalizer",
            Self::FusionAuth(_) => "fusionauth",
            Self::CleanupBlocked(_) => "cleanup_blocked",
            Self::Incomplete(_) => "incomplete",
        }
    }
}

/// Reconciles one resource; the controller's entry point.
pub async fn reconcile(resource: Arc<FusionAuthWebhook>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = run(&resource, &ctx).await;
    let label = match &result {
        Ok((_, label)) => label,
        Err(_) => "error",
    };
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
    let has_finalizer = r.finalizers().iter().any(|f| f == FINALIZER);
    if r.meta().deletion_timestamp.is_some() {
        if has_finalizer {
            clean_up(r, ctx, &api).await?;
            remove_finalizer(r, ctx, &api).await?;
        }
        return Ok((Action::await_change(), "deleted"));
    }
    if !has_finalizer {
        add_finalizer(r, ctx, &api).await?;
    }
    apply(r, ctx, &api).await
}

/// JSON patch with a `test` first, as kube-runtime does: a concurrent change
/// of the finalizer list fails the patch instead of being overwritten.
async fn add_finalizer(r: &FusionAuthWebhook, ctx: &Context, api: &Api<FusionAuthWebhook>) -> Result<(), Error> {
    let patch = match &r.meta().finalizers {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(current) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    json_patch(api, &r.name_any(), patch).await?;
    ctx.metrics.kubernetes_write("finalizer");
    Ok(())
}

async fn remove_finalizer(r: &FusionAuthWebhook, ctx: &Context, api: &Api<FusionAuthWebhook>) -> Result<(), Error> {
    let Some(index) = r.finalizers().iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let path = format!("/metadata/finalizers/{index}");
    let patch = json!([{"op": "test", "path": path, "value": FINALIZER}, {"op": "remove", "path": path}]);
    match json_patch(api, &r.name_any(), patch).await {
        // Already gone: nothing holds it any more.
        Err(Error::Finalizer(kube::Error::Api(status))) if status.is_not_found() => Ok(()),
        Err(e) => Err(e),
        Ok(()) => {
            ctx.metrics.kubernetes_write("finalizer");
            Ok(())
        }
    }
}

async fn json_patch(api: &Api<FusionAuthWebhook>, name: &str, patch: serde_json::Value) -> Result<(), Error> {
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| Error::Finalizer(kube::Error::SerdeError(e)))?;
    api.patch::<FusionAuthWebhook>(name, &PatchParams::default(), &Patch::Json(patch)).await.map_err(Error::Finalizer)?;
    Ok(())
}

/// The condition types after `kind`, in pipeline order, for this resource.
fn later_steps(r: &FusionAuthWebhook, kind: &str) -> Vec<&'static str> {
    let mut all = vec![SECRETS_RESOLVED, RECEIVER_AVAILABLE, WEBHOOK_REGISTERED];
    if r.spec.tenant_events.is_some() {
        all.push(TENANT_EVENTS_ENABLED);
    }
    all.push(IN_SYNC);
    let from = all.iter().position(|k| *k == kind).map_or(0, |i| i + 1);
    all.split_off(from)
}

/// `steps` plus an `Unknown` for every later step: the pipeline stopped here.
fn stopped(r: &FusionAuthWebhook, mut steps: Vec<Step>, failed: Step) -> Vec<Step> {
    let kind = failed.kind;
    steps.push(failed);
    for later in later_steps(r, kind) {
        steps.push(Step::unknown(later, "NotChecked", format!("waiting for {kind}")));
    }
    steps
}

async fn apply(r: &FusionAuthWebhook, ctx: &Context, api: &Api<FusionAuthWebhook>) -> Result<(Action, &'static str), Error> {
    let mut status = r.status.clone().unwrap_or_default();
    let secrets = dereference(&ctx.client, r).await.map_err(Error::Dereference)?;
    let v = match validate(r, &secrets) {
        Ok(v) => v,
        Err(e) => {
            let steps = match &e {
                ValidationError::InvalidSpec(message) => {
                    let mut steps = vec![Step::failed(READY, e.reason(), message.clone())];
                    steps.extend(later_steps(r, "").into_iter().map(|k| Step::unknown(k, "InvalidSpec", "the spec is invalid; see Ready")));
                    steps
                }
                _ => stopped(r, Vec::new(), Step::failed(SECRETS_RESOLVED, e.reason(), e.to_string())),
            };
            finish(r, ctx, api, status, &steps, Vec::new()).await?;
            return Ok((Action::requeue(ctx.jittered(ctx.settings.requeue)), "invalid"));
        }
    };
    let mut steps = vec![Step::ok(SECRETS_RESOLVED, "Resolved", "every referenced Secret and key is present")];

    // Kubernetes: the receiver.
    let generated = generated_authorization(&v, &secrets);
    let owner = owner_reference(r).ok_or(Error::Incomplete("uid"))?;
    let applied = apply_receiver_counted(ctx, &v, &owner, generated.as_deref()).await?;
    let receiver = names::receiver_name(&v.name);
    let not_available = match (v.replicas, rollout(applied.deployment.as_ref(), &receiver)) {
        (0, _) => Some((
            "ScaledToZero",
            format!("Deployment {receiver} is scaled to 0 replicas; FusionAuth is not told about a receiver that cannot answer"),
        )),
        (_, Rollout::Done) => None,
        (_, Rollout::Waiting(message)) => Some(("Progressing", message)),
        (_, Rollout::Stuck(message)) => Some(("RolloutStuck", message)),
    };
    if let Some((reason, message)) = not_available {
        let steps = stopped(r, steps, Step::failed(RECEIVER_AVAILABLE, reason, message));
        finish(r, ctx, api, status, &steps, Vec::new()).await?;
        // The Deployment watch triggers sooner when its status changes.
        return Ok((Action::requeue(ctx.jittered(ctx.settings.waiting_requeue)), "waiting"));
    }
    steps.push(Step::ok(RECEIVER_AVAILABLE, "Available", format!("Deployment {receiver} is rolled out and available")));

    // FusionAuth: one read of the webhook (all a steady state costs)...
    let read = match ctx.fusionauth(&v.connection()) {
        Ok(fa) => fa.retrieve_webhook(v.webhook_id).await.map(|observed| (fa, observed)).map_err(ApplyError::from),
        Err(e) => Err(ApplyError::from(e)),
    };
    let (fa, observed) = match read {
        Ok(read) => read,
        Err(e) => {
            let steps = stopped(r, steps, Step::failed(WEBHOOK_REGISTERED, e.reason(), e.to_string()));
            finish(r, ctx, api, status, &steps, Vec::new()).await?;
            return Err(e.into());
        }
    };

    // ...then a rotation of the Authorization value, if one is under way...
    let mut v = v;
    let desired = v.authorization.as_ref().map(|s| s.0.clone()).or_else(|| generated.clone()).unwrap_or_default();
    match rotation(&v, &desired, observed.as_ref(), applied.deployment.as_ref()) {
        Rotation::None => {}
        Rotation::Keep { previous, wait } => {
            if v.previous_authorization.as_ref().map(|p| p.0.as_str()) != previous.as_deref() {
                v.previous_authorization = previous.map(SecretString);
                apply_receiver_counted(ctx, &v, &owner, generated.as_deref()).await?;
            }
            if wait {
                let mut steps = steps;
                steps.push(Step::ok(WEBHOOK_REGISTERED, "Registered", format!("FusionAuth webhook {} exists", v.webhook_id)));
                if r.spec.tenant_events.is_some() {
                    steps.push(Step::unknown(TENANT_EVENTS_ENABLED, "NotChecked", "waiting for the Authorization rotation"));
                }
                steps.push(Step::failed(
                    IN_SYNC,
                    "RotatingAuthorization",
                    format!("the Authorization value changed; FusionAuth is switched once every pod of Deployment {receiver} accepts both values"),
                ));
                finish(r, ctx, api, status, &steps, Vec::new()).await?;
                return Ok((Action::requeue(ctx.jittered(ctx.settings.waiting_requeue)), "waiting"));
            }
        }
    }

    // ...then signing key, webhook, tenant switches.
    let outcome = apply_fusionauth(r, ctx, &fa, &v, &desired, observed, &mut status).await;
    let (steps, events) = match outcome {
        Ok(FusionAuthApplied { steps: done, events }) => {
            steps.extend(done);
            (steps, events)
        }
        Err((failed, error)) => {
            let done = failed.0;
            steps.extend(done);
            let steps = stopped(r, steps, failed.1);
            finish(r, ctx, api, status, &steps, Vec::new()).await?;
            return Err(error.into());
        }
    };
    finish(r, ctx, api, status, &steps, events).await?;
    Ok((Action::requeue(ctx.jittered(ctx.settings.requeue)), "ok"))
}

/// Applies the receiver objects against the cached state and counts the writes.
async fn apply_receiver_counted(
    ctx: &Context,
    v: &validate::Validated,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    generated: Option<&str>,
) -> Result<crate::apply::kubernetes::ReceiverApplied, Error> {
    let observed = ctx.caches.observed(&v.namespace, &v.name);
    let applied =
        apply_receiver(&ctx.client, v, owner, &ctx.settings.receiver_image, generated, &observed).await.map_err(Error::ApplyReceiver)?;
    for _ in &applied.written {
        ctx.metrics.kubernetes_write("apply");
    }
    Ok(applied)
}

struct FusionAuthApplied {
    steps: Vec<Step>,
    events: Vec<Event>,
}

/// Steps done before the failure, the failed step, and the error.
type FusionAuthFailure = ((Vec<Step>, Step), ApplyError);

async fn apply_fusionauth(
    r: &FusionAuthWebhook,
    ctx: &Context,
    fa: &FusionAuthClient,
    v: &validate::Validated,
    authorization: &str,
    observed: Option<Webhook>,
    status: &mut FusionAuthWebhookStatus,
) -> Result<FusionAuthApplied, FusionAuthFailure> {
    let fail = |done: Vec<Step>, kind: &'static str, e: ApplyError| ((done, Step::failed(kind, e.reason(), e.to_string())), e);
    let mut events = Vec::new();
    let mut steps = Vec::new();

    apply_signing_key(fa, v).await.map_err(|e| fail(Vec::new(), WEBHOOK_REGISTERED, e))?;
    let desired = fusionauth_webhook(v, authorization);
    let change = apply_webhook_over(fa, v.webhook_id, &desired, observed).await.map_err(|e| fail(Vec::new(), WEBHOOK_REGISTERED, e))?;
    let url = receiver_url(v);
    status.webhook_id = Some(v.webhook_id.to_string());
    status.url = Some(url.clone());
    steps.push(Step::ok(WEBHOOK_REGISTERED, "Registered", format!("FusionAuth webhook {} calls {url}", v.webhook_id)));
    if let WebhookChange::Updated { fields } = &change {
        events.push(normal(
            "WebhookRepaired",
            "Update",
            format!("FusionAuth's webhook differed from the spec in {}; updated", fields.join(", ")),
        ));
    }

    // Tenant switches: turn on what the spec lists, turn off what this
    // resource turned on earlier and no resource needs any more.
    let wanted: Vec<String> = match v.tenant_events {
        Some(_) => {
            v.tenant_ids.iter().flat_map(|t| v.events.iter().map(move |e| crate::apply::fusionauth::tenant_event_key(*t, e))).collect()
        }
        None => Vec::new(),
    };
    if v.tenant_events.is_some() {
        // Record the intent first, so a delete after a half-done patch still turns them off.
        let before: BTreeSet<String> = status.enabled_tenant_events.iter().cloned().collect();
        status.enabled_tenant_events = before.union(&wanted.iter().cloned().collect()).cloned().collect();
        let on = apply_tenant_events(fa, v).await.map_err(|e| fail(steps.clone(), TENANT_EVENTS_ENABLED, e))?;
        debug_assert_eq!(on.len(), wanted.len());
    }
    let stale: Vec<String> = status.enabled_tenant_events.iter().filter(|k| !wanted.contains(k)).cloned().collect();
    if !stale.is_empty() {
        let off = unclaimed(ctx, r, &stale);
        disable_tenant_events(fa, &off).await.map_err(|e| fail(steps.clone(), TENANT_EVENTS_ENABLED, e))?;
    }
    status.enabled_tenant_events = wanted.clone();
    if v.tenant_events.is_some() {
        steps.push(Step::ok(
            TENANT_EVENTS_ENABLED,
            "Enabled",
            format!("{} event(s) switched on in {} tenant(s)", v.events.len(), v.tenant_ids.len()),
        ));
    }
    steps.push(Step::ok(IN_SYNC, "InSync", "FusionAuth's webhook matches the spec"));
    Ok(FusionAuthApplied { steps, events })
}

/// What a rotation of the `Authorization` value needs now.
#[derive(Debug, PartialEq, Eq)]
enum Rotation {
    /// Nothing: no webhook yet, Basic credentials, or no previous value kept.
    None,
    /// Keep `previous` as a second accepted value (`None`: stop keeping one);
    /// `wait`: do not switch FusionAuth yet.
    Keep { previous: Option<String>, wait: bool },
}

/// The rotation protocol. When FusionAuth sends a value other than the one
/// the receivers should accept (the Secret was rotated, or the header was
/// edited in FusionAuth), switching FusionAuth at once would fail every
/// delivery until the receivers read the new value. Instead: (1) keep what
/// FusionAuth sends as a second accepted value and roll the receivers out
/// with both; (2) once rolled out, switch FusionAuth; (3) then stop keeping
/// the old value. Pure.
fn rotation(
    v: &validate::Validated,
    desired: &str,
    observed: Option<&Webhook>,
    deployment: Option<&k8s_openapi::api::apps::v1::Deployment>,
) -> Rotation {
    if v.basic.is_some() {
        return Rotation::None;
    }
    let sent = observed.and_then(|w| w.headers.get("Authorization")).filter(|h| !h.is_empty() && h.as_str() != desired);
    let kept = v.previous_authorization.as_ref().map(|p| p.0.clone());
    match (sent, kept) {
        (None, None) => Rotation::None,
        (None, Some(_)) => Rotation::Keep { previous: None, wait: false },
        (Some(sent), kept) if kept.as_deref() == Some(sent.as_str()) => {
            if rolled_out(deployment) {
                Rotation::None
            } else {
                Rotation::Keep { previous: kept, wait: true }
            }
        }
        (Some(sent), _) => Rotation::Keep { previous: Some(sent.clone()), wait: true },
    }
}

/// The tenant switches among `keys` that no other resource has turned on.
fn unclaimed(ctx: &Context, r: &FusionAuthWebhook, keys: &[String]) -> Vec<String> {
    let uid = r.uid();
    let claimed: BTreeSet<String> = ctx
        .resources
        .state()
        .iter()
        .filter(|other| other.uid() != uid)
        .flat_map(|other| other.status.iter().flat_map(|s| s.enabled_tenant_events.iter().cloned()).collect::<Vec<_>>())
        .collect();
    keys.iter().filter(|k| !claimed.contains(*k)).cloned().collect()
}

/// Computes the conditions, patches the status when it changed, and
/// publishes an Event for each condition that changed to True or False
/// (`Ready` only when it becomes True: the failing step says why otherwise)
/// plus `extra`.
async fn finish(
    r: &FusionAuthWebhook,
    ctx: &Context,
    api: &Api<FusionAuthWebhook>,
    mut status: FusionAuthWebhookStatus,
    steps: &[Step],
    extra: Vec<Event>,
) -> Result<(), Error> {
    let previous = r.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    status.observed_generation = r.metadata.generation;
    status.conditions = status::conditions(&previous, steps, r.metadata.generation, &now);
    if patch_status(api, r, &status).await.map_err(Error::Status)? {
        ctx.metrics.kubernetes_write("status");
    }
    let mut events: Vec<Event> = status::changes(&previous, &status.conditions)
        .into_iter()
        .filter(|c| match c.status.as_str() {
            "True" => true,
            "False" => c.type_ != READY,
            _ => false,
        })
        .map(|c| Event {
            type_: if c.status == "True" { EventType::Normal } else { EventType::Warning },
            reason: c.reason.clone(),
            note: Some(format!("{}: {}", c.type_, c.message)),
            action: "Reconcile".into(),
            secondary: None,
        })
        .collect();
    events.extend(extra);
    publish(r, ctx, &events).await;
    Ok(())
}

/// A Normal Event (a state change that needs no action).
fn normal(reason: &str, action: &str, note: String) -> Event {
    Event { type_: EventType::Normal, reason: reason.into(), note: Some(note), action: action.into(), secondary: None }
}

/// Events are best effort: a failure is logged, never fails the reconcile.
async fn publish(r: &FusionAuthWebhook, ctx: &Context, events: &[Event]) {
    let reference = r.object_ref(&());
    for event in events {
        match ctx.recorder.publish(event, &reference).await {
            Ok(()) => ctx.metrics.kubernetes_write("event"),
            Err(e) => tracing::warn!(name = r.name_any(), reason = event.reason, error = %e, "cannot publish an Event"),
        }
    }
}

/// Clean-up before the finalizer goes: with `deletionPolicy: Delete` the
/// FusionAuth webhook, the signing key and the tenant switches this resource
/// turned on; with `Orphan` nothing. When FusionAuth cannot be reached the
/// finalizer stays and a condition says what to do.
async fn clean_up(r: &FusionAuthWebhook, ctx: &Context, api: &Api<FusionAuthWebhook>) -> Result<(), Error> {
    let uid = r.metadata.uid.clone().ok_or(Error::Incomplete("uid"))?;
    let webhook_id = names::webhook_id(&uid);
    if r.spec.deletion_policy == DeletionPolicy::Orphan {
        let event =
            normal("WebhookOrphaned", "Delete", format!("deletionPolicy is Orphan: FusionAuth webhook {webhook_id} is left in place"));
        publish(r, ctx, &[event]).await;
        return Ok(());
    }
    let status = r.status.clone().unwrap_or_default();
    let blocked = |reason: &str, message: String| {
        vec![Step::failed(
            READY,
            reason,
            format!("{message}; the finalizer stays until the webhook is removed (or set deletionPolicy: Orphan)"),
        )]
    };
    let secrets = dereference(&ctx.client, r).await.map_err(Error::Dereference)?;
    let connection = match validate::connection(r, &secrets) {
        Ok(c) => c,
        Err(e) => {
            let steps = blocked(e.reason(), format!("cannot remove FusionAuth webhook {webhook_id}: {e}"));
            finish(r, ctx, api, status, &steps, Vec::new()).await?;
            return Err(Error::CleanupBlocked(e));
        }
    };
    let signing_key = r.spec.auth.signature.as_ref().filter(|s| s.hmac_secret_ref.is_some()).map(|_| names::signing_key_id(&uid));
    let switches_off = unclaimed(ctx, r, &status.enabled_tenant_events);
    let result = match ctx.fusionauth(&connection) {
        Ok(fa) => cleanup(&fa, webhook_id, signing_key, &switches_off).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        let steps = blocked(e.reason(), format!("cannot remove FusionAuth webhook {webhook_id}: {e}"));
        finish(r, ctx, api, status, &steps, Vec::new()).await?;
        return Err(e.into());
    }
    let event = normal("WebhookDeleted", "Delete", format!("FusionAuth webhook {webhook_id} deleted"));
    publish(r, ctx, &[event]).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::State;

    fn resource(tenant_events: bool) -> FusionAuthWebhook {
        let mut spec = serde_json::json!({
            "fusionAuth": {"url": "http://fa", "apiKeySecretRef": {"name": "fa", "key": "k"}},
            "events": ["user.delete"],
        });
        if tenant_events {
            spec["tenants"] = json!({"tenantIds": ["e872a880-b14f-6d62-c312-cb40f22af465"]});
            spec["tenantEvents"] = json!({});
        }
        FusionAuthWebhook::new("x", serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}")))
    }

    fn validated(previous: Option<&str>) -> validate::Validated {
        let mut r = resource(false);
        r.metadata.namespace = Some("ns".into());
        r.metadata.uid = Some("uid".into());
        let mut secrets = validate::SecretData::new();
        secrets.entry("fa".into()).or_default().insert("k".into(), b"key".to_vec());
        if let Some(p) = previous {
            secrets.entry("x-receiver-auth".into()).or_default().insert(names::PREVIOUS_AUTHORIZATION_KEY.into(), p.as_bytes().to_vec());
        }
        validate(&r, &secrets).unwrap_or_else(|e| panic!("{e}"))
    }

    fn sending(value: &str) -> Webhook {
        Webhook { headers: [("Authorization".to_owned(), value.to_owned())].into(), ..Webhook::default() }
    }

    fn deployment(rolled_out: bool) -> k8s_openapi::api::apps::v1::Deployment {
        serde_json::from_value(json!({
            "metadata": {"generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": if rolled_out { 3 } else { 2 }, "updatedReplicas": 2, "availableReplicas": 2}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_rotation_keeps_both_values_until_rolled_out_then_switches_then_forgets() {
        let done = deployment(true);
        let rolling = deployment(false);
        // Steady state, or a webhook not created yet: nothing to do.
        assert_eq!(rotation(&validated(None), "new", Some(&sending("new")), Some(&done)), Rotation::None);
        assert_eq!(rotation(&validated(None), "new", None, Some(&done)), Rotation::None);
        // (1) The Secret changed: keep what FusionAuth sends, do not switch yet.
        assert_eq!(
            rotation(&validated(None), "new", Some(&sending("old")), Some(&done)),
            Rotation::Keep { previous: Some("old".into()), wait: true }
        );
        // ...until the receivers with both values are rolled out.
        assert_eq!(
            rotation(&validated(Some("old")), "new", Some(&sending("old")), Some(&rolling)),
            Rotation::Keep { previous: Some("old".into()), wait: true }
        );
        // (2) Rolled out: switch FusionAuth.
        assert_eq!(rotation(&validated(Some("old")), "new", Some(&sending("old")), Some(&done)), Rotation::None);
        // (3) FusionAuth sends the new value: forget the old one, no need to wait.
        assert_eq!(
            rotation(&validated(Some("old")), "new", Some(&sending("new")), Some(&rolling)),
            Rotation::Keep { previous: None, wait: false }
        );
    }

    #[test]
    fn a_stopped_pipeline_marks_every_later_step_unknown() {
        let steps = stopped(&resource(true), Vec::new(), Step::failed(RECEIVER_AVAILABLE, "Progressing", "waiting"));
        let kinds: Vec<(&str, State)> = steps.iter().map(|s| (s.kind, s.state)).collect();
        assert_eq!(
            kinds,
            [
                (RECEIVER_AVAILABLE, State::False),
                (WEBHOOK_REGISTERED, State::Unknown),
                (TENANT_EVENTS_ENABLED, State::Unknown),
                (IN_SYNC, State::Unknown)
            ]
        );
        assert_eq!(later_steps(&resource(false), ""), [SECRETS_RESOLVED, RECEIVER_AVAILABLE, WEBHOOK_REGISTERED, IN_SYNC]);
    }
}

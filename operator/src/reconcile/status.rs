//! status: what one pass did -> one status patch and the Events. The
//! pipeline records each step into a [`Report`]; where it stopped, every
//! step it did not reach becomes `Unknown`; [`write()`] patches the status
//! once, at the end, and only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use crate::context::Context;
use crate::reconcile::Error;
use crate::reconcile::apply::kubernetes::patch_status;
use crate::reconcile::conditions::{self, EventReason, Kind, Reason, State, Step};

use crate::resource::{FusionAuthWebhook, FusionAuthWebhookStatus};

/// What the pass did so far.
pub struct Report {
    steps: Vec<Step>,
    events: Vec<Event>,
    tenant_events: bool,
    /// The status fields the pass keeps up to date (conditions are computed at the end).
    pub status: FusionAuthWebhookStatus,
}

impl Report {
    /// A report starting from the resource's current status.
    pub fn new(r: &FusionAuthWebhook) -> Self {
        Self {
            steps: Vec::new(),
            events: Vec::new(),
            tenant_events: r.spec.tenant_events.is_some(),
            status: r.status.clone().unwrap_or_default(),
        }
    }

    /// A step succeeded.
    pub fn done(&mut self, kind: Kind, reason: Reason, message: impl Into<String>) {
        self.steps.push(Step::ok(kind, reason, message));
    }

    /// An Event beside the condition changes (e.g. a repaired webhook).
    pub fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Every step of the resource: what was recorded, `stopped`, and
    /// `Unknown` for the rest. A stop at `Ready` (an invalid spec) leaves
    /// every step `Unknown` with its reason.
    fn steps(&self, stopped: Option<&Step>) -> Vec<Step> {
        let mut steps = Vec::new();
        if let Some(ready) = stopped.filter(|s| s.kind == Kind::Ready) {
            steps.push(ready.clone());
        }
        for kind in Kind::steps(self.tenant_events) {
            let step = match (self.steps.iter().find(|s| s.kind == kind), stopped) {
                (Some(done), _) => done.clone(),
                (None, Some(stop)) if stop.kind == kind => stop.clone(),
                (None, Some(stop)) if stop.kind == Kind::Ready => Step::unknown(kind, stop.reason, "not checked: see Ready"),
                (None, Some(stop)) => Step::unknown(kind, Reason::NotChecked, format!("waiting for {}", stop.kind.as_str())),
                (None, None) => Step::unknown(kind, Reason::NotChecked, "not reached"),
            };
            steps.push(step);
        }
        // Beside the steps: only while there is an old store, only with backfill.
        steps.extend(self.steps.iter().filter(|s| s.kind.beside_ready()).cloned());
        steps
    }

    /// A step's outcome, whatever it is.
    pub fn record(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// A step beside `Ready` that is present only at times.
    pub fn record_if(&mut self, step: Option<Step>) {
        self.steps.extend(step);
    }
}

/// Patches the status when it changed, and publishes an Event for each
/// condition that changed to True or False (`Ready` only when it becomes
/// True: the failing step says why otherwise) plus the report's own.
pub async fn write(
    r: &FusionAuthWebhook,
    ctx: &Context,
    api: &Api<FusionAuthWebhook>,
    report: Report,
    stopped: Option<&Step>,
) -> Result<(), Error> {
    let previous = r.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let steps = report.steps(stopped);
    let mut status = report.status;
    status.observed_generation = r.metadata.generation;
    status.conditions = conditions::conditions(&previous, &steps, r.metadata.generation, &now);
    if patch_status(api, r, &status).await.map_err(Error::Status)? {
        ctx.metrics.kubernetes_write("status");
    }
    let mut events: Vec<Event> = conditions::changes(&previous, &status.conditions)
        .into_iter()
        .filter_map(|c| {
            let type_ = match (State::of(c), c.type_ == Kind::Ready.as_str()) {
                (State::True, _) => EventType::Normal,
                (State::False, false) => EventType::Warning,
                _ => return None,
            };
            Some(Event {
                type_,
                reason: c.reason.clone(),
                note: Some(format!("{}: {}", c.type_, c.message)),
                action: "Reconcile".into(),
                secondary: None,
            })
        })
        .collect();
    events.extend(report.events);
    publish(r, ctx, &events).await;
    Ok(())
}

/// A Normal Event (a state change that needs no action).
pub fn normal(reason: EventReason, action: &str, note: String) -> Event {
    debug_assert!(reason.doc().trim_start().starts_with("Normal:"), "{} is documented as a Warning", reason.as_str());
    Event { type_: EventType::Normal, reason: reason.as_str().into(), note: Some(note), action: action.into(), secondary: None }
}

/// A Warning Event (something a person should look at).
pub fn warning(reason: EventReason, action: &str, note: String) -> Event {
    debug_assert!(reason.doc().trim_start().starts_with("Warning:"), "{} is documented as Normal", reason.as_str());
    Event { type_: EventType::Warning, reason: reason.as_str().into(), note: Some(note), action: action.into(), secondary: None }
}

/// Events are best effort: a failure is logged, never fails the reconcile.
pub async fn publish(r: &FusionAuthWebhook, ctx: &Context, events: &[Event]) {
    let reference = r.object_ref(&());
    for event in events {
        match ctx.recorder.publish(event, &reference).await {
            Ok(()) => ctx.metrics.kubernetes_write("event"),
            Err(e) => tracing::warn!(name = r.name_any(), reason = event.reason, error = %e, "cannot publish an Event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(tenant_events: bool) -> Report {
        let mut spec = serde_json::json!({
            "fusionAuth": {"url": "http://fa", "apiKeySecretRef": {"name": "fa", "key": "k"}},
            "events": ["user.delete"],
        });
        if tenant_events {
            spec["tenants"] = serde_json::json!({"tenantIds": ["e872a880-b14f-6d62-c312-cb40f22af465"]});
            spec["tenantEvents"] = serde_json::json!({});
        }
        Report::new(&FusionAuthWebhook::new("x", serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}"))))
    }

    fn kinds(steps: &[Step]) -> Vec<(Kind, State, Reason)> {
        steps.iter().map(|s| (s.kind, s.state, s.reason)).collect()
    }

    #[test]
    fn a_stopped_pipeline_marks_every_step_it_did_not_reach_unknown() {
        let mut r = report(true);
        r.done(Kind::SecretsResolved, Reason::Resolved, "ok");
        let stop = Step::failed(Kind::ReceiverAvailable, Reason::Progressing, "rolling");
        assert_eq!(
            kinds(&r.steps(Some(&stop))),
            [
                (Kind::SecretsResolved, State::True, Reason::Resolved),
                (Kind::ReceiverAvailable, State::False, Reason::Progressing),
                (Kind::WebhookRegistered, State::Unknown, Reason::NotChecked),
                (Kind::TenantEventsEnabled, State::Unknown, Reason::NotChecked),
                (Kind::InSync, State::Unknown, Reason::NotChecked),
            ]
        );
        // An invalid spec stops before any step: Ready says why, each step points there.
        let invalid = Step::failed(Kind::Ready, Reason::InvalidSpec, "events[0]: ...");
        let steps = report(false).steps(Some(&invalid));
        assert_eq!(steps[0], invalid);
        assert!(steps[1..].iter().all(|s| s.state == State::Unknown && s.reason == Reason::InvalidSpec));
        assert_eq!(steps.len(), 5, "Ready and the four steps without tenant switches");
    }
}

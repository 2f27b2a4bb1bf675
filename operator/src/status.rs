//! status: the outcome of each reconcile step -> the resource's conditions.
//! Pure: the time is an input. Conditions follow the Kubernetes conventions
//! (PascalCase types and reasons, `lastTransitionTime` kept while the status
//! stays the same); `Ready` summarises the steps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Every step's condition is in place and true.
pub const READY: &str = "Ready";
/// The referenced Secrets exist and hold the keys.
pub const SECRETS_RESOLVED: &str = "SecretsResolved";
/// The receiver Deployment has available replicas.
pub const RECEIVER_AVAILABLE: &str = "ReceiverAvailable";
/// FusionAuth has the webhook under our id.
pub const WEBHOOK_REGISTERED: &str = "WebhookRegistered";
/// The tenant switches are on (only when `tenantEvents` is set).
pub const TENANT_EVENTS_ENABLED: &str = "TenantEventsEnabled";
/// The FusionAuth webhook matches the spec (no drift left).
pub const IN_SYNC: &str = "InSync";

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Done.
    True,
    /// Failed or not done.
    False,
    /// Not known yet (an earlier step stopped the reconcile).
    Unknown,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Condition type, e.g. [`WEBHOOK_REGISTERED`].
    pub kind: &'static str,
    /// Status.
    pub state: State,
    /// PascalCase reason a user can act on, e.g. `ApiKeyRejected`.
    pub reason: String,
    /// Human message; never a secret.
    pub message: String,
}

impl Step {
    /// A step that succeeded.
    pub fn ok(kind: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { kind, state: State::True, reason: reason.to_owned(), message: message.into() }
    }

    /// A step that failed.
    pub fn failed(kind: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { kind, state: State::False, reason: reason.to_owned(), message: message.into() }
    }

    /// A step not reached.
    pub fn unknown(kind: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { kind, state: State::Unknown, reason: reason.to_owned(), message: message.into() }
    }
}

/// The conditions for `steps`, `Ready` first, keeping each condition's
/// `lastTransitionTime` from `previous` while its status is unchanged.
/// `Ready` summarises the first step that is not done, unless `steps` holds
/// a `Ready` step itself (a resource that stopped before the first step,
/// e.g. an invalid spec).
pub fn conditions(previous: &[Condition], steps: &[Step], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    let given = steps.iter().find(|s| s.kind == READY).cloned();
    let steps: Vec<&Step> = steps.iter().filter(|s| s.kind != READY).collect();
    let ready = given.unwrap_or_else(|| match steps.iter().find(|s| s.state != State::True) {
        None => Step::ok(READY, "Reconciled", "the receiver runs and FusionAuth's webhook matches the spec"),
        Some(blocking) => Step {
            kind: READY,
            state: if blocking.state == State::False { State::False } else { State::Unknown },
            reason: blocking.reason.clone(),
            message: format!("{}: {}", blocking.kind, blocking.message),
        },
    });
    std::iter::once(&ready)
        .chain(steps)
        .map(|step| {
            let status = step.state.as_str().to_owned();
            let since = previous
                .iter()
                .find(|c| c.type_ == step.kind && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: step.kind.to_owned(),
                status,
                reason: step.reason.clone(),
                message: step.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Conditions whose status or reason changed: each deserves one Kubernetes
/// Event; a steady state yields none.
pub fn changes<'a>(previous: &[Condition], current: &'a [Condition]) -> Vec<&'a Condition> {
    current.iter().filter(|c| !previous.iter().any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn ready_summarises_the_first_step_that_is_not_done() {
        let steps = [
            Step::ok(SECRETS_RESOLVED, "Resolved", "all Secrets found"),
            Step::failed(WEBHOOK_REGISTERED, "ApiKeyRejected", "the Webhook API needs a global API key"),
            Step::unknown(IN_SYNC, "NotChecked", "waiting for registration"),
        ];
        let c = conditions(&[], &steps, Some(4), &at(100));
        assert_eq!(c[0].type_, READY);
        assert_eq!((c[0].status.as_str(), c[0].reason.as_str()), ("False", "ApiKeyRejected"));
        assert!(c[0].message.starts_with("WebhookRegistered: "));
        assert!(c.iter().all(|c| c.observed_generation == Some(4)));
        assert_eq!(c.len(), 4);

        let all_ok = [Step::ok(SECRETS_RESOLVED, "Resolved", "ok"), Step::ok(IN_SYNC, "InSync", "ok")];
        assert_eq!(conditions(&[], &all_ok, None, &at(1))[0].status, "True");
    }

    #[test]
    fn transition_times_move_only_on_transitions_and_steady_state_has_no_changes() {
        let failing = [Step::failed(WEBHOOK_REGISTERED, "FusionAuthUnreachable", "connection refused")];
        let first = conditions(&[], &failing, Some(1), &at(100));
        let again = conditions(&first, &failing, Some(1), &at(200));
        assert_eq!(again, first, "steady state: identical status, nothing to write");
        assert!(changes(&first, &again).is_empty(), "no Event for steady state");

        let fixed = [Step::ok(WEBHOOK_REGISTERED, "Registered", "webhook created")];
        let later = conditions(&again, &fixed, Some(1), &at(300));
        assert_eq!(later[1].last_transition_time, at(300));
        let changed: Vec<&str> = changes(&again, &later).iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(changed, [READY, WEBHOOK_REGISTERED]);
    }
}

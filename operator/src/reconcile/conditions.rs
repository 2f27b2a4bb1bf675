//! conditions: the outcome of each reconcile step -> the resource's conditions.
//! Pure: the time is an input. Conditions follow the Kubernetes conventions
//! (PascalCase types and reasons, `lastTransitionTime` kept while the status
//! stays the same); `Ready` summarises the steps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub use fusionhook_api::conditions::{EventReason, Kind, Reason};

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

    /// The state a condition's `status` string names.
    pub fn of(condition: &Condition) -> Self {
        match condition.status.as_str() {
            "True" => Self::True,
            "False" => Self::False,
            _ => Self::Unknown,
        }
    }
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Condition type.
    pub kind: Kind,
    /// Status.
    pub state: State,
    /// Reason a user can act on.
    pub reason: Reason,
    /// Human message; never a secret.
    pub message: String,
}

impl Step {
    /// A step that succeeded.
    pub fn ok(kind: Kind, reason: Reason, message: impl Into<String>) -> Self {
        Self { kind, state: State::True, reason, message: message.into() }
    }

    /// A step that failed.
    pub fn failed(kind: Kind, reason: Reason, message: impl Into<String>) -> Self {
        Self { kind, state: State::False, reason, message: message.into() }
    }

    /// A step not reached.
    pub fn unknown(kind: Kind, reason: Reason, message: impl Into<String>) -> Self {
        Self { kind, state: State::Unknown, reason, message: message.into() }
    }
}

/// The conditions for `steps`, `Ready` first, keeping each condition's
/// `lastTransitionTime` from `previous` while its status is unchanged.
/// `Ready` summarises the first step that is not done, unless `steps` holds
/// a `Ready` step itself (a resource that stopped before the first step,
/// e.g. an invalid spec).
pub fn conditions(previous: &[Condition], steps: &[Step], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    let given = steps.iter().find(|s| s.kind == Kind::Ready).cloned();
    let steps: Vec<&Step> = steps.iter().filter(|s| s.kind != Kind::Ready).collect();
    let ready = given.unwrap_or_else(|| match steps.iter().find(|s| s.state != State::True && !s.kind.beside_ready()) {
        None => Step::ok(Kind::Ready, Reason::Reconciled, "the receiver runs and FusionAuth's webhook matches the spec"),
        Some(blocking) => Step {
            kind: Kind::Ready,
            state: if blocking.state == State::False { State::False } else { State::Unknown },
            reason: blocking.reason,
            message: format!("{}: {}", blocking.kind.as_str(), blocking.message),
        },
    });
    std::iter::once(&ready)
        .chain(steps)
        .map(|step| {
            let status = step.state.as_str().to_owned();
            let since = previous
                .iter()
                .find(|c| c.type_ == step.kind.as_str() && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: step.kind.as_str().to_owned(),
                status,
                reason: step.reason.as_str().to_owned(),
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
            Step::ok(Kind::SecretsResolved, Reason::Resolved, "all Secrets found"),
            Step::failed(Kind::WebhookRegistered, Reason::ApiKeyRejected, "the Webhook API needs a global API key"),
            Step::unknown(Kind::InSync, Reason::NotChecked, "waiting for registration"),
        ];
        let c = conditions(&[], &steps, Some(4), &at(100));
        assert_eq!(c[0].type_, "Ready");
        assert_eq!((c[0].status.as_str(), c[0].reason.as_str()), ("False", "ApiKeyRejected"));
        assert!(c[0].message.starts_with("WebhookRegistered: "));
        assert!(c.iter().all(|c| c.observed_generation == Some(4)));
        assert_eq!(c.len(), 4);

        let all_ok = [Step::ok(Kind::SecretsResolved, Reason::Resolved, "ok"), Step::ok(Kind::InSync, Reason::InSync, "ok")];
        assert_eq!(conditions(&[], &all_ok, None, &at(1))[0].status, "True");
    }

    #[test]
    fn transition_times_move_only_on_transitions_and_steady_state_has_no_changes() {
        let failing = [Step::failed(Kind::WebhookRegistered, Reason::FusionAuthUnreachable, "connection refused")];
        let first = conditions(&[], &failing, Some(1), &at(100));
        let again = conditions(&first, &failing, Some(1), &at(200));
        assert_eq!(again, first, "steady state: identical status, nothing to write");
        assert!(changes(&first, &again).is_empty(), "no Event for steady state");

        let fixed = [Step::ok(Kind::WebhookRegistered, Reason::Registered, "webhook created")];
        let later = conditions(&again, &fixed, Some(1), &at(300));
        assert_eq!(later[1].last_transition_time, at(300));
        let changed: Vec<&str> = changes(&again, &later).iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(changed, ["Ready", "WebhookRegistered"]);
    }
}

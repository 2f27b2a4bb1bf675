//! advice: what a condition's reason means and what to do about it, in
//! plain words (the README's table of conditions, for the terminal).

/// What to do about `reason` on condition `kind` (`None`: nothing to do).
pub fn what_to_do(kind: &str, reason: &str) -> Option<&'static str> {
    let advice = match (kind, reason) {
        (_, "Reconciled" | "Resolved" | "Available" | "Registered" | "Enabled" | "InSync") => return None,
        (_, "InvalidSpec") => "the message names the field; fix the resource (kubectl explain faw.spec --recursive)",
        (_, "SecretNotFound" | "SecretKeyMissing") => {
            "create the Secret or add the key the message names; the operator watches Secrets and continues on its own"
        }
        (_, "KubernetesApiFailed") => "a call to the Kubernetes API failed; it is retried with backoff (see the operator's log)",
        (_, "Progressing") => "the receiver is rolling out: kubectl get deploy,sts,pods -l app.kubernetes.io/instance=NAME; wait",
        (_, "RolloutStuck") => {
            "new receiver pods do not become ready: the message carries the pod's reason; kubectl logs / describe pods -l app.kubernetes.io/instance=NAME"
        }
        (_, "StoreUnavailable") => {
            "the receivers' store cannot commit (PostgreSQL down, a full volume): fix it; they recover without a restart"
        }
        (_, "StoreFull") => {
            "the store's disk is full: raise spec.receiver.store.size (the claims grow where their StorageClass allows) or give PostgreSQL room; the receivers recover without a restart"
        }
        (_, "StoreCannotGrow") => {
            "the claims' StorageClass does not allow volume expansion: set spec.receiver.store.size back, or have the cluster's admin set allowVolumeExpansion: true on it"
        }
        (_, "Growing") => "the store's volume claims grow to spec.receiver.store.size: the message says which still wait, and why",
        (_, "StoreCannotShrink") => "a volume cannot shrink: set spec.receiver.store.size back to the size the message names, or more",
        (_, "ScaledToZero") => "spec.receiver.replicas is 0: FusionAuth is not told about a receiver that cannot answer; scale it up",
        (_, "ApiKeyRejected") => {
            "FusionAuth answered 401: use a global API key (not tenant-scoped) with the Webhook, Key and Tenant permissions"
        }
        (_, "FusionAuthUnreachable") => "FusionAuth did not answer (down, timeout, 5xx): check spec.fusionAuth.url; retried with backoff",
        (_, "FusionAuthRefused") => "FusionAuth answered 400; the message carries its field errors",
        (_, "NotFoundInFusionAuth") => "something the spec names is not in FusionAuth (a tenant, a key): create it or fix the id",
        (_, "FusionAuthTlsFailed") => "TLS to FusionAuth failed: add its CA bundle as spec.fusionAuth.caSecretRef",
        (_, "InvalidFusionAuthConnection") => "fix spec.fusionAuth.url or the API key's characters",
        (_, "NotChecked") => "an earlier step stopped this reconcile: see the first condition that is not True",
        (_, "OldStoreKept") => {
            "an embedded store no longer used still holds deliveries: replay or discard them (the message has the commands)"
        }
        (_, "EventLogOff") => {
            "turn FusionAuth's Webhook Event Log on (System > Webhook Log, systemConfiguration.webhookEventLogConfiguration.enabled)"
        }
        (_, "EventLogForbidden") => "give the API key GET /api/system-configuration and POST /api/system/webhook-event-log/search",
        (_, "EventLogUnsupported") => "FusionAuth has no Webhook Event Log before 1.53.0: upgrade it, or turn spec.backfill off",
        (_, "RetentionShorterThanLookback") => "raise the Event Log's numberOfDaysToRetain or lower spec.backfill.lookbackSeconds",
        (_, "HandOverFailed") => "the receiver did not take a missed event; the next pass tries again (see the receiver's log)",
        _ => "see the message",
    };
    Some(advice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_reason_the_operator_sets_has_advice() {
        // The operator's own list: an unknown reason would get "see the message".
        use fusionhook_api::conditions::Reason;
        assert!(Reason::ALL.len() > 20);
        for reason in Reason::ALL {
            assert_ne!(what_to_do("Any", reason.as_str()), Some("see the message"), "{} has no advice", reason.as_str());
        }
    }
}

//! Condition types and reasons: one list each, both the Rust values the
//! operator sets and the PascalCase strings Kubernetes shows and the
//! plugin reads (`status.conditions[].type` and `.reason`).

/// Names that are both Rust values and the PascalCase strings Kubernetes
/// shows: one list, so the two cannot drift apart.
macro_rules! named {
    ($(#[$meta:meta])* $name:ident { $($(#[doc = $doc:literal])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[doc = $doc])* $variant),+ }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            /// The name as Kubernetes shows it.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant)),+ }
            }

            /// What it means: its doc comment (for the generated reference).
            pub fn doc(self) -> &'static str {
                match self { $(Self::$variant => concat!($($doc, "\n"),*)),+ }
            }
        }
    };
}

named!(
    /// Condition types: `Ready`, then one per step in pipeline order.
    Kind {
        /// Every step's condition is in place and true.
        Ready,
        /// The referenced Secrets exist and hold the keys.
        SecretsResolved,
        /// The receiver's current template is rolled out and available.
        ReceiverAvailable,
        /// FusionAuth has the webhook under our id.
        WebhookRegistered,
        /// The tenant switches are on (only when `tenantEvents` is set).
        TenantEventsEnabled,
        /// The FusionAuth webhook matches the spec (no drift left).
        InSync,
        /// Present only while an embedded store the resource no longer
        /// uses is kept until it is drained (`old_store`); not part of `Ready`.
        OldStoreDrained,
        /// Present only while an embedded store's volumes are not the size
        /// the spec asks for: growing, or refused (`store_growth`); not part of `Ready`.
        StoreGrown,
        /// Present only with `spec.backfill.enabled`: whether FusionAuth's
        /// Webhook Event Log can be read and missed events handed over
        /// (`backfill`); not part of `Ready`.
        BackfillAvailable,
    }
);

named!(
    /// Condition reasons a user can act on (the book's conditions page).
    Reason {
        /// Ready: every step done.
        Reconciled,
        /// SecretsResolved.
        Resolved,
        /// ReceiverAvailable.
        Available,
        /// WebhookRegistered.
        Registered,
        /// TenantEventsEnabled.
        Enabled,
        /// InSync.
        InSync,
        /// A step not reached because an earlier one stopped.
        NotChecked,
        /// The spec cannot work; the message names the field.
        InvalidSpec,
        /// A referenced Secret does not exist.
        SecretNotFound,
        /// A referenced Secret lacks the key.
        SecretKeyMissing,
        /// A Kubernetes API call failed.
        KubernetesApiFailed,
        /// The receiver is rolling out.
        Progressing,
        /// The receiver's rollout passed its progress deadline.
        RolloutStuck,
        /// `receiver.replicas: 0`.
        ScaledToZero,
        /// FusionAuth refused the API key.
        ApiKeyRejected,
        /// FusionAuth refused a request (validation).
        FusionAuthRefused,
        /// Something FusionAuth should have is not there (a tenant, a key).
        NotFoundInFusionAuth,
        /// TLS to FusionAuth failed.
        FusionAuthTlsFailed,
        /// The FusionAuth connection settings cannot work.
        InvalidFusionAuthConnection,
        /// FusionAuth did not answer usefully (down, timeout, 5xx).
        FusionAuthUnreachable,
        /// An old embedded store still holds deliveries and is kept.
        OldStoreKept,
        /// Receiver pods are not ready because their store cannot commit.
        StoreUnavailable,
        /// ... because their store's volume (or the database's disk) is full.
        StoreFull,
        /// StoreGrown: the claims grow to the spec's size (or wait to be bound).
        Growing,
        /// StoreGrown: the embedded store's volume claims cannot grow to the
        /// spec's size: their StorageClass does not allow volume expansion.
        StoreCannotGrow,
        /// StoreGrown: the spec asks for smaller volumes than the store has.
        StoreCannotShrink,
        /// BackfillAvailable: FusionAuth's Webhook Event Log is switched off.
        EventLogOff,
        /// BackfillAvailable: the API key may not read the Webhook Event Log
        /// or the system configuration.
        EventLogForbidden,
        /// BackfillAvailable: FusionAuth has no Webhook Event Log (before 1.53.0).
        EventLogUnsupported,
        /// BackfillAvailable: FusionAuth deletes logged events sooner than
        /// the backfill looks back (it runs, over what is kept).
        RetentionShorterThanLookback,
        /// BackfillAvailable: the receiver did not take a missed event; the
        /// next pass tries again.
        HandOverFailed,
    }
);

impl Kind {
    /// Conditions beside the steps, which `Ready` does not summarise.
    pub fn beside_ready(self) -> bool {
        matches!(self, Kind::OldStoreDrained | Kind::StoreGrown | Kind::BackfillAvailable)
    }

    /// The steps of a resource, in pipeline order (`tenant_events`: whether
    /// the tenant switches are managed).
    pub fn steps(tenant_events: bool) -> Vec<Kind> {
        let mut all = vec![Kind::SecretsResolved, Kind::ReceiverAvailable, Kind::WebhookRegistered];
        if tenant_events {
            all.push(Kind::TenantEventsEnabled);
        }
        all.push(Kind::InSync);
        all
    }
}

impl Reason {
    /// What to do about a condition with this reason, in plain words (the
    /// plugin's `status` and the book's reference); `None`: nothing to do.
    pub fn advice(self) -> Option<&'static str> {
        let advice = match self {
            Reason::Reconciled | Reason::Resolved | Reason::Available | Reason::Registered | Reason::Enabled | Reason::InSync => {
                return None;
            }
            Reason::InvalidSpec => "the message names the field; fix the resource (kubectl explain faw.spec --recursive)",
            Reason::SecretNotFound | Reason::SecretKeyMissing => {
                "create the Secret or add the key the message names; the operator watches Secrets and continues on its own"
            }
            Reason::KubernetesApiFailed => "a call to the Kubernetes API failed; it is retried with backoff (see the operator's log)",
            Reason::Progressing => "the receiver is rolling out: kubectl get deploy,sts,pods -l app.kubernetes.io/instance=NAME; wait",
            Reason::RolloutStuck => {
                "new receiver pods do not become ready: the message carries the pod's reason; kubectl logs / describe pods -l app.kubernetes.io/instance=NAME"
            }
            Reason::StoreUnavailable => {
                "the receivers' store cannot commit (PostgreSQL down, a full volume): fix it; they recover without a restart"
            }
            Reason::StoreFull => {
                "the store's disk is full: raise spec.receiver.store.size (the claims grow where their StorageClass allows) or give PostgreSQL room; the receivers recover without a restart"
            }
            Reason::StoreCannotGrow => {
                "the claims' StorageClass does not allow volume expansion: set spec.receiver.store.size back, or have the cluster's admin set allowVolumeExpansion: true on it"
            }
            Reason::Growing => "the store's volume claims grow to spec.receiver.store.size: the message says which still wait, and why",
            Reason::StoreCannotShrink => "a volume cannot shrink: set spec.receiver.store.size back to the size the message names, or more",
            Reason::ScaledToZero => "spec.receiver.replicas is 0: FusionAuth is not told about a receiver that cannot answer; scale it up",
            Reason::ApiKeyRejected => {
                "FusionAuth answered 401: use a global API key (not tenant-scoped) with the Webhook, Key and Tenant permissions"
            }
            Reason::FusionAuthUnreachable => {
                "FusionAuth did not answer (down, timeout, 5xx): check spec.fusionAuth.url; retried with backoff"
            }
            Reason::FusionAuthRefused => "FusionAuth answered 400; the message carries its field errors",
            Reason::NotFoundInFusionAuth => "something the spec names is not in FusionAuth (a tenant, a key): create it or fix the id",
            Reason::FusionAuthTlsFailed => "TLS to FusionAuth failed: add its CA bundle as spec.fusionAuth.caSecretRef",
            Reason::InvalidFusionAuthConnection => "fix spec.fusionAuth.url or the API key's characters",
            Reason::NotChecked => "an earlier step stopped this reconcile: see the first condition that is not True",
            Reason::OldStoreKept => {
                "an embedded store no longer used still holds deliveries: replay or discard them (the message has the commands)"
            }
            Reason::EventLogOff => {
                "turn FusionAuth's Webhook Event Log on (System > Webhook Log, systemConfiguration.webhookEventLogConfiguration.enabled)"
            }
            Reason::EventLogForbidden => "give the API key GET /api/system-configuration and POST /api/system/webhook-event-log/search",
            Reason::EventLogUnsupported => "FusionAuth has no Webhook Event Log before 1.53.0: upgrade it, or turn spec.backfill off",
            Reason::RetentionShorterThanLookback => "raise the Event Log's numberOfDaysToRetain or lower spec.backfill.lookbackSeconds",
            Reason::HandOverFailed => "the receiver did not take a missed event; the next pass tries again (see the receiver's log)",
        };
        Some(advice)
    }

    /// The reason named `text`, as Kubernetes shows it.
    pub fn named(text: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_and_says_what_it_means() {
        for reason in Reason::ALL {
            assert_eq!(Reason::named(reason.as_str()), Some(*reason));
            assert!(!reason.doc().trim().is_empty(), "{}", reason.as_str());
        }
        assert!(Kind::ALL.iter().all(|k| !k.doc().trim().is_empty()));
        assert_eq!(Reason::named("SomethingNewer"), None);
        assert_eq!(Reason::Reconciled.advice(), None);
        assert!(Reason::StoreFull.advice().is_some_and(|a| a.contains("spec.receiver.store.size")));
    }
}

named!(
    /// Reasons of the Events the operator publishes beside those of
    /// condition changes (which carry the condition's reason).
    EventReason {
        /// Normal: a backfill pass handed events FusionAuth failed to deliver
        /// to the receiver (how many, the oldest's age). Nothing to do; many
        /// in a row mean the receivers keep missing deliveries: see why they
        /// were down.
        BackfillHandedOver,
        /// Warning: backfill gave up on an event (the receiver refuses it, it
        /// failed in the receiver pass after pass, or it is larger than the
        /// operator reads). Look it up in FusionAuth (System > Webhook Log) and
        /// send it yourself once fixed (`kubectl fusionhook send --from-file`).
        BackfillGaveUp,
        /// Warning: an embedded store the resource no longer uses (or a deleted
        /// resource's) still holds deliveries and is kept. Let it drain, or
        /// replay or discard what it holds (the message has the commands).
        OldStoreKept,
        /// Normal: an old embedded store was drained and removed with its claims.
        OldStoreDrained,
        /// Warning: an old embedded store was removed with what it held, as a
        /// person confirmed with the discard annotation.
        OldStoreDiscarded,
        /// Warning: the resource moved to another FusionAuth and its
        /// `Authorization` value is one you gave: rotate it, the previous
        /// FusionAuth still knows it.
        RotateAuthorization,
        /// Warning: `status.fusionAuthUrl` names a FusionAuth the resource
        /// never registered with (someone wrote the status): nothing is sent
        /// there. Find who writes the status; restrict `fusionauthwebhooks/status`.
        StatusUrlNotOurs,
        /// Normal: `spec.receiver.store.size` rose: the claims were asked to grow
        /// and the StatefulSet is replaced without its pods.
        StoreGrowing,
        /// Normal: every volume claim of the store has the spec's size.
        StoreGrown,
        /// Normal: the resource was deleted and its FusionAuth webhook with it.
        WebhookDeleted,
        /// Normal: the webhook was removed from the previous FusionAuth after
        /// `spec.fusionAuth.url` changed.
        WebhookMoved,
        /// Normal: `deletionPolicy: Orphan` left the webhook in FusionAuth (on
        /// delete, or in the previous FusionAuth on a move).
        WebhookOrphaned,
        /// Normal: FusionAuth's webhook had drifted from the spec (an edit in
        /// its admin UI) and was written back. Repeated repairs mean someone or
        /// something keeps editing it.
        WebhookRepaired,
    }
);

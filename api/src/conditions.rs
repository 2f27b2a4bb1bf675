//! Condition types and reasons: one list each, both the Rust values the
//! operator sets and the PascalCase strings Kubernetes shows and the
//! plugin reads (`status.conditions[].type` and `.reason`).

/// Names that are both Rust values and the PascalCase strings Kubernetes
/// shows: one list, so the two cannot drift apart.
macro_rules! named {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            /// The name as Kubernetes shows it.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant)),+ }
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
    /// Condition reasons a user can act on (the README's table).
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

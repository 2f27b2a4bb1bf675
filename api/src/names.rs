//! Names and identities derived from a resource, in one place: one field
//! manager, one finalizer, the deterministic FusionAuth ids, the names and
//! labels of the objects the operator owns (which the plugin looks up).

use sha2::Digest;
use uuid::Uuid;

/// Server-side apply field manager for every object the operator writes.
pub const FIELD_MANAGER: &str = "fusionhook-operator";
/// Finalizer that holds deletion until the FusionAuth webhook is gone.
pub const FINALIZER: &str = "fusionhook.dev/cleanup";
/// Annotation asking for a reconcile now (`kubectl fusionhook reconcile`):
/// any new value; the operator copies the value it handled to
/// `status.handledReconcileRequest`.
pub const RECONCILE_ANNOTATION: &str = "fusionhook.dev/reconcile-requested-at";
/// Annotation asking for one backfill pass now over a window
/// (`kubectl fusionhook backfill`): `<since RFC 3339>/<requested-at RFC 3339>`;
/// the outcome goes to `status.backfill.handledRequest` and `lastRequestResult`.
pub const BACKFILL_ANNOTATION: &str = "fusionhook.dev/backfill-requested";
/// `data` key on the FusionAuth webhook naming the owning resource.
pub const OWNER_DATA_KEY: &str = "fusionhook.dev/owner";
/// `data` key with the owning resource's uid.
pub const OWNER_UID_DATA_KEY: &str = "fusionhook.dev/uid";
/// `data` key listing the tenant switches (`tenantId/event`) this webhook's
/// resource turned on because they were off: kept in FusionAuth, where every
/// operator (any namespace, any cluster) and every clean-up sees it.
pub const TENANT_SWITCHES_DATA_KEY: &str = "fusionhook.dev/tenant-switches";

/// Namespace for the operator's UUIDv5 ids (a fixed random UUID).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_2c43_9b7e_4f0a_8c55_0e3a_7b91_d204);

/// The FusionAuth webhook id of a resource: UUIDv5 of its uid, so a crash
/// between "create" and "record in status" can never leave a duplicate.
pub fn webhook_id(resource_uid: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("webhook/{resource_uid}").as_bytes())
}

/// The Key Master id under which an HMAC secret of the resource is
/// imported: derived from the uid, the algorithm and the secret, so a
/// changed secret or algorithm is a new key. The secret enters only through
/// [`keyed_digest`] with `pepper` (the resource's FusionAuth API key), so
/// someone who reads the id (status, FusionAuth) cannot test guesses of a
/// weak secret against it.
pub fn signing_key_id(resource_uid: &str, algorithm: &str, secret: &str, pepper: &str) -> Uuid {
    let hex = keyed_digest(pepper, &[resource_uid, algorithm, secret]);
    Uuid::new_v5(&ID_NAMESPACE, format!("signing-key/{resource_uid}/{hex}").as_bytes())
}

/// Hex SHA-256 of `parts`, each length-prefixed, after a secret `pepper`:
/// equal inputs give equal digests, and without the pepper a digest tells
/// nothing about a low-entropy part.
pub fn keyed_digest(pepper: &str, parts: &[&str]) -> String {
    let mut hash = sha2::Sha256::new();
    for part in std::iter::once(pepper).chain(parts.iter().copied()) {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The Key Master id versions before 0.2 imported every HMAC secret under
/// (the uid alone): kept so an upgraded operator can delete that key.
pub fn legacy_signing_key_id(resource_uid: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("signing-key/{resource_uid}").as_bytes())
}

/// Name of the receiver's Deployment, Service and config Secret.
pub fn receiver_name(resource_name: &str) -> String {
    format!("{resource_name}-receiver")
}

/// Keys of the operator's own Secret ([`authorization_secret_name`]).
pub mod kept {
    /// The generated `Authorization` value.
    pub const AUTHORIZATION: &str = "authorization";
    /// The `Authorization` value FusionAuth still sends while a rotation is under way.
    pub const PREVIOUS_AUTHORIZATION: &str = "previous-authorization";
    /// The HMAC secret FusionAuth signs with (a copy: after the user's
    /// Secret changed, receivers still need the old one until FusionAuth is
    /// switched to the new key).
    pub const HMAC_SECRET: &str = "hmac-secret";
    /// Its algorithm.
    pub const HMAC_ALGORITHM: &str = "hmac-algorithm";
    /// The one admin token of receivers from before scoped tokens: kept
    /// only while such receivers may still run (an old store draining, a
    /// rollout under way), so they stay reachable after an upgrade.
    pub const LEGACY_ADMIN_TOKEN: &str = "admin-token";
}

/// What a token of the receiver's admin API may do. Each scope's token
/// lives in its own Secret ([`admin_secret_name`]), so RBAC can grant one
/// by name: someone who may look at deliveries need not be able to replay
/// them or run a made-up event through the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdminScope {
    /// Stats, deliveries, events.
    Read,
    /// Read, replay and discard.
    Replay,
    /// Read and ingest: backfill (the operator) and `kubectl fusionhook send`.
    Ingest,
}

impl AdminScope {
    /// Every scope.
    pub const ALL: [AdminScope; 3] = [AdminScope::Read, AdminScope::Replay, AdminScope::Ingest];

    /// Its name in the receiver's admin API and in the Secret's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminScope::Read => "read",
            AdminScope::Replay => "replay",
            AdminScope::Ingest => "ingest",
        }
    }
}

/// Keys of an admin token Secret ([`admin_secret_name`]).
pub mod admin_token {
    /// The token clients use.
    pub const TOKEN: &str = "token";
    /// The token it replaced, for a short while after a rotation: a client
    /// that gets 401 with `token` (the receiver has not read the new one
    /// yet) tries this one.
    pub const PREVIOUS: &str = "previous";
    /// When `token` was made (RFC 3339).
    pub const ROTATED_AT: &str = "rotated-at";
}

/// Name of the Secret with resource `resource_name`'s admin token of `scope`.
pub fn admin_secret_name(resource_name: &str, scope: AdminScope) -> String {
    format!("{resource_name}-receiver-admin-{}", scope.as_str())
}

/// Name of the operator's own Secret: the generated `Authorization` value,
/// and the previous value during a rotation.
pub fn authorization_secret_name(resource_name: &str) -> String {
    format!("{resource_name}-receiver-auth")
}

/// The label on a receiver pod that says which store it runs on (its value
/// is the store type), so calls about one store reach only its pods.
pub const STORE_LABEL: &str = "fusionhook.dev/store";

/// The label selector of resource `resource_name`'s receiver pods.
pub fn receiver_selector(resource_name: &str) -> String {
    format!("app.kubernetes.io/instance={resource_name},app.kubernetes.io/managed-by={FIELD_MANAGER}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let uid = "0b1e9b4e-6a3e-4c1a-9d9f-1f2e3d4c5b6a";
        assert_eq!(webhook_id(uid), webhook_id(uid));
        assert_ne!(webhook_id(uid), webhook_id("another-uid"));
        let key = |uid: &str, alg: &str, secret: &str| signing_key_id(uid, alg, secret, "api-key");
        assert_ne!(webhook_id(uid), key(uid, "HS256", "s"));
        assert_eq!(key(uid, "HS256", "s"), key(uid, "HS256", "s"));
        assert_ne!(key(uid, "HS256", "s"), key(uid, "HS256", "t"), "a new secret is a new key");
        assert_ne!(key(uid, "HS256", "s"), key(uid, "HS512", "s"), "a new algorithm is a new key");
        assert_ne!(key(uid, "HS256", "s"), key("another-uid", "HS256", "s"));
        assert_ne!(key(uid, "HS256", "s"), signing_key_id(uid, "HS256", "s", "another-api-key"), "no id without the pepper");
        assert_ne!(keyed_digest("p", &["ab", "c"]), keyed_digest("p", &["a", "bc"]), "parts are delimited");
        assert_eq!(webhook_id(uid).get_version_num(), 5);
    }
}

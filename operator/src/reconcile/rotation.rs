//! rotation: changing a credential FusionAuth uses without refusing one
//! delivery. Pure.
//!
//! When the `Authorization` value or the HMAC signing secret (or its
//! algorithm) changes, switching FusionAuth at once would fail every
//! delivery until each receiver reads the new value. So, for both:
//! 1. the receivers are rolled out accepting the value FusionAuth uses now
//!    *and* the new one (`previous*` in their config);
//! 2. once that rollout is done (the pipeline reaches FusionAuth only when
//!    `ReceiverAvailable` is true), FusionAuth is switched: the new header,
//!    or a new key imported and the webhook pointed at it;
//! 3. the next pass sees FusionAuth on the new value, stops keeping the old
//!    one (receivers roll again, harmlessly), and deletes the old key.
//!
//! What FusionAuth uses now is read from FusionAuth each pass (its webhook's
//! header and signing key id). FusionAuth never returns a key's secret, so
//! the operator keeps a copy of the HMAC secret FusionAuth signs with in its
//! own Secret ([`names::kept`]): after the user's Secret changed, that copy
//! is the only place the old secret still exists.

use base64::Engine;
use fusionhook_fusionauth::model::Webhook;
use rand::RngCore;
use uuid::Uuid;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::names::{self, AdminScope, admin_token, kept};
use crate::reconcile::validate::{HmacKey, SecretData, SecretString, Validated};

/// What the operator's own Secret holds from earlier passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// The generated `Authorization` value.
    pub generated: Option<SecretString>,
    /// The `Authorization` value receivers also accept during a rotation.
    pub previous_authorization: Option<SecretString>,
    /// The HMAC key FusionAuth was last known to sign with.
    pub hmac: Option<HmacKey>,
    /// The receiver's admin API tokens, by scope.
    pub admin: AdminTokens,
    /// The admin token of receivers from before scoped tokens.
    pub legacy_admin_token: Option<SecretString>,
}

impl Kept {
    /// Reads the operator's Secret from what dereference read.
    pub fn read(v: &Validated, secrets: &SecretData) -> Self {
        let data = secrets.get(&names::authorization_secret_name(&v.name));
        let value = |key: &str| {
            data.and_then(|d| d.get(key)).and_then(|b| String::from_utf8(b.clone()).ok()).filter(|s| !s.is_empty()).map(SecretString)
        };
        let hmac = match (value(kept::HMAC_ALGORITHM), value(kept::HMAC_SECRET)) {
            (Some(algorithm), Some(secret)) => Some(HmacKey { algorithm: algorithm.0, secret }),
            _ => None,
        };
        Self {
            generated: value(kept::AUTHORIZATION),
            previous_authorization: value(kept::PREVIOUS_AUTHORIZATION),
            hmac,
            admin: AdminScope::ALL.into_iter().filter_map(|scope| Some((scope, AdminToken::read(secrets, &v.name, scope)?))).collect(),
            legacy_admin_token: value(kept::LEGACY_ADMIN_TOKEN),
        }
    }
}

/// What FusionAuth was seen to use this pass.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// FusionAuth could not be read: keep whatever is kept.
    Unknown,
    /// Its webhook (`None`: there is none yet).
    Webhook(Option<&'a Webhook>),
}

/// Credentials the receivers accept besides the spec's current ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Previous {
    /// A second `Authorization` value.
    pub authorization: Option<SecretString>,
    /// A second HMAC key (used only while the spec signs with HMAC).
    pub hmac: Option<HmacKey>,
    /// FusionAuth does not sign yet: receivers accept unsigned deliveries
    /// until it does (a signature was just added to the spec).
    pub unsigned: bool,
}

/// The credentials of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The `Authorization` value FusionAuth must send (empty with Basic).
    pub authorization: SecretString,
    /// The generated value to keep (when the spec gives no credential).
    pub generated: Option<SecretString>,
    /// What receivers also accept while FusionAuth is being switched.
    pub previous: Previous,
    /// The HMAC key to keep as "what FusionAuth signs with".
    pub hmac_in_use: Option<HmacKey>,
    /// The admin token of receivers from before scoped tokens, while kept.
    pub legacy_admin_token: Option<SecretString>,
}

/// The credentials for this pass. `fresh_generated`: make a new generated
/// `Authorization` value even if one is kept (the resource moved to another
/// FusionAuth, which must not share the old instance's value).
pub fn credentials(v: &Validated, kept: &Kept, seen: Seen<'_>, fresh_generated: bool) -> Credentials {
    let generated = (v.authorization.is_none() && v.basic.is_none())
        .then(|| kept.generated.clone().filter(|_| !fresh_generated).unwrap_or_else(generate));
    let authorization = match (&v.basic, &v.authorization, &generated) {
        (Some(_), _, _) | (None, None, None) => SecretString(String::new()),
        (None, Some(given), _) | (None, None, Some(given)) => given.clone(),
    };
    let previous_authorization = match (&v.basic, seen) {
        (Some(_), _) => None,
        (None, Seen::Unknown) => kept.previous_authorization.clone(),
        (None, Seen::Webhook(webhook)) => webhook
            .and_then(|w| w.headers.get("Authorization"))
            .filter(|sent| !sent.is_empty() && **sent != authorization.0)
            .map(|sent| SecretString(sent.clone())),
    };
    let (previous_hmac, hmac_in_use) = hmac(v, kept.hmac.as_ref(), seen);
    let unsigned = v.signing.is_some() && matches!(seen, Seen::Webhook(Some(webhook)) if signing_key_of(Some(webhook)).is_none());
    let previous = Previous { authorization: previous_authorization, hmac: previous_hmac, unsigned };
    Credentials { authorization, generated, previous, hmac_in_use, legacy_admin_token: kept.legacy_admin_token.clone() }
}

/// (the HMAC key receivers also accept, the HMAC key to keep as in use).
fn hmac(v: &Validated, kept: Option<&HmacKey>, seen: Seen<'_>) -> (Option<HmacKey>, Option<HmacKey>) {
    let desired = v.hmac().map(|(key, _)| key);
    let still_signing_with_kept = |k: &HmacKey| match seen {
        Seen::Unknown => true,
        Seen::Webhook(webhook) => signing_key_of(webhook) == Some(k.key_id(&v.uid, &v.api_key)),
    };
    match kept {
        Some(k) if Some(k) != desired && still_signing_with_kept(k) => (desired.map(|_| k.clone()), Some(k.clone())),
        _ => (None, desired.cloned()),
    }
}

/// The key FusionAuth signs this webhook's requests with.
pub fn signing_key_of(webhook: Option<&Webhook>) -> Option<Uuid> {
    webhook.and_then(|w| w.signature_configuration.as_ref()).filter(|s| s.enabled).and_then(|s| s.signing_key_id)
}

/// The receiver's admin API tokens, one per scope.
pub type AdminTokens = BTreeMap<AdminScope, AdminToken>;

/// One admin token as its Secret ([`names::admin_secret_name`]) keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// What clients use.
    pub token: SecretString,
    /// What it replaced, for [`ADMIN_TOKEN_OVERLAP_SECONDS`] after a rotation.
    pub previous: Option<SecretString>,
    /// When `token` was made, seconds since the epoch.
    pub rotated_at: i64,
}

impl AdminToken {
    /// The token of `scope` from what dereference read (`None`: none yet).
    fn read(secrets: &SecretData, resource: &str, scope: AdminScope) -> Option<Self> {
        let data = secrets.get(&names::admin_secret_name(resource, scope))?;
        let value = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.clone()).ok()).filter(|s| !s.is_empty());
        let token = SecretString(value(admin_token::TOKEN)?);
        // Unreadable: as if made long ago, so it is replaced now.
        let rotated_at =
            value(admin_token::ROTATED_AT).and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok()).map_or(0, |t| t.as_second());
        Some(Self { token, previous: value(admin_token::PREVIOUS).map(SecretString), rotated_at })
    }
}

/// How long a replaced admin token stays in its Secret: longer than the
/// kubelet takes to update the receivers' mounted copy (about a minute)
/// plus their re-read, so a client that got 401 with the new token (the
/// receiver still has the old one) gets in with `previous`. The receivers
/// accept a replaced token for five minutes after their file changed.
pub const ADMIN_TOKEN_OVERLAP_SECONDS: i64 = 600;

/// The admin tokens for this pass: a missing one made, one older than
/// `period` replaced (its old value kept as `previous` for a while), at
/// time `now` (seconds since the epoch). `period` `None`: never replaced.
/// Deleting a token's Secret makes a new one at once (what to do when one
/// leaked).
pub fn admin_tokens(kept: &AdminTokens, now: i64, period: Option<Duration>) -> AdminTokens {
    let period = period.map(|p| i64::try_from(p.as_secs()).unwrap_or(i64::MAX));
    AdminScope::ALL
        .into_iter()
        .map(|scope| {
            let token = match kept.get(&scope) {
                None => AdminToken { token: generate(), previous: None, rotated_at: now },
                // Made in the future (a clock far off, an edited Secret): replaced too.
                Some(k) if period.is_some_and(|p| now - k.rotated_at >= p) || k.rotated_at > now + 3600 => {
                    AdminToken { token: generate(), previous: Some(k.token.clone()), rotated_at: now }
                }
                Some(k) => AdminToken {
                    token: k.token.clone(),
                    previous: k.previous.clone().filter(|_| now - k.rotated_at < ADMIN_TOKEN_OVERLAP_SECONDS),
                    rotated_at: k.rotated_at,
                },
            };
            (scope, token)
        })
        .collect()
}

/// A fresh `Authorization` value or admin token: 32 bytes from the CSPRNG, base64url.
fn generate() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use fusionhook_fusionauth::model::SignatureConfiguration;
    use serde_json::json;

    use super::*;
    use crate::reconcile::validate::validate;
    use crate::resource::FusionAuthWebhook;

    fn validated(signature: Option<(&str, &str)>) -> Validated {
        let mut spec = json!({
            "fusionAuth": {"url": "http://fa", "apiKeySecretRef": {"name": "fa", "key": "k"}},
            "events": ["user.delete"],
        });
        let mut secrets = SecretData::new();
        secrets.entry("fa".into()).or_default().insert("k".into(), b"key".to_vec());
        if let Some((algorithm, secret)) = signature {
            spec["auth"] = json!({"signature": {"algorithm": algorithm, "hmacSecretRef": {"name": "sig", "key": "s"}}});
            secrets.entry("sig".into()).or_default().insert("s".into(), secret.as_bytes().to_vec());
        }
        let mut r = FusionAuthWebhook::new("x", serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}")));
        r.metadata.namespace = Some("ns".into());
        r.metadata.uid = Some("uid".into());
        validate(&r, &secrets).unwrap_or_else(|e| panic!("{e}"))
    }

    fn kept_authorization(generated: &str, previous: Option<&str>) -> Kept {
        Kept {
            generated: Some(SecretString(generated.into())),
            previous_authorization: previous.map(|p| SecretString(p.into())),
            hmac: None,
            admin: AdminTokens::new(),
            legacy_admin_token: None,
        }
    }

    fn sending(value: &str) -> Webhook {
        Webhook { headers: [("Authorization".to_owned(), value.to_owned())].into(), ..Webhook::default() }
    }

    fn signing_with(key_id: Uuid) -> Webhook {
        Webhook {
            signature_configuration: Some(SignatureConfiguration { enabled: true, signing_key_id: Some(key_id) }),
            ..Webhook::default()
        }
    }

    fn key(algorithm: &str, secret: &str) -> HmacKey {
        HmacKey { algorithm: algorithm.into(), secret: SecretString(secret.into()) }
    }

    #[test]
    fn the_authorization_value_fusionauth_still_sends_is_accepted_until_it_sends_the_new_one() {
        let v = validated(None);
        let kept = kept_authorization("new", None);
        fn previous_of(v: &Validated, kept: &Kept, seen: Seen<'_>) -> Option<String> {
            credentials(v, kept, seen, false).previous.authorization.map(|p| p.0)
        }
        let previous = |kept: &Kept, seen: Seen<'_>| previous_of(&v, kept, seen);
        // Steady state, or no webhook yet: nothing kept.
        assert_eq!(previous(&kept, Seen::Webhook(Some(&sending("new")))), None);
        assert_eq!(previous(&kept, Seen::Webhook(None)), None);
        // The value changed: what FusionAuth sends stays accepted...
        assert_eq!(previous(&kept, Seen::Webhook(Some(&sending("old")))), Some("old".into()));
        // ...also when FusionAuth cannot be read this pass...
        let rotating = kept_authorization("new", Some("old"));
        assert_eq!(previous(&rotating, Seen::Unknown), Some("old".into()));
        // ...until FusionAuth sends the new one.
        assert_eq!(previous(&rotating, Seen::Webhook(Some(&sending("new")))), None);
        // The generated value is kept across passes, and replaced when asked.
        assert_eq!(credentials(&v, &kept, Seen::Unknown, false).authorization.0, "new");
        let fresh = credentials(&v, &kept, Seen::Unknown, true).authorization.0;
        assert!(fresh != "new" && fresh.len() == 43, "{fresh}");
    }

    #[test]
    fn a_changed_hmac_secret_or_algorithm_keeps_the_old_key_until_fusionauth_signs_with_the_new() {
        let old = key("HS256", "old-secret");
        let old_id = old.key_id("uid", &SecretString("key".into()));
        for v in [validated(Some(("HS256", "new-secret"))), validated(Some(("HS512", "old-secret")))] {
            let Some((new, new_id)) = v.hmac().map(|(k, id)| (k.clone(), id)) else { panic!("hmac") };
            assert_ne!(new_id, old_id, "a new secret or algorithm is a new key id");
            let kept = Kept { hmac: Some(old.clone()), ..Kept::default() };
            fn plan_of(v: &Validated, kept: &Kept, seen: Seen<'_>) -> (Option<HmacKey>, Option<HmacKey>) {
                let c = credentials(v, kept, seen, false);
                (c.previous.hmac, c.hmac_in_use)
            }
            let plan = |seen: Seen<'_>| plan_of(&v, &kept, seen);
            // FusionAuth signs with the old key: receivers accept both, the copy stays.
            assert_eq!(plan(Seen::Webhook(Some(&signing_with(old_id)))), (Some(old.clone()), Some(old.clone())));
            assert_eq!(plan(Seen::Unknown), (Some(old.clone()), Some(old.clone())));
            // Switched: the old key is forgotten and the copy follows.
            assert_eq!(plan(Seen::Webhook(Some(&signing_with(new_id)))), (None, Some(new.clone())));
            // A first registration (or an upgrade from a uid-only key id) has nothing to keep.
            let fresh = Kept::default();
            assert_eq!(credentials(&v, &fresh, Seen::Webhook(None), false).previous.hmac, None);
        }
        // A signature added to a webhook FusionAuth does not sign yet: unsigned deliveries stay accepted until it does.
        let v = validated(Some(("HS256", "new-secret")));
        assert!(credentials(&v, &Kept::default(), Seen::Webhook(Some(&Webhook::default())), false).previous.unsigned);
        assert!(!credentials(&v, &Kept::default(), Seen::Webhook(None), false).previous.unsigned, "nothing to deliver yet");
        let Some((_, key_id)) = v.hmac() else { panic!("hmac") };
        assert!(!credentials(&v, &Kept::default(), Seen::Webhook(Some(&signing_with(key_id))), false).previous.unsigned);
        // Signature removed: nothing to accept besides, the copy goes once FusionAuth stopped signing.
        let v = validated(None);
        let kept = Kept { hmac: Some(old.clone()), ..Kept::default() };
        assert_eq!(credentials(&v, &kept, Seen::Webhook(Some(&signing_with(old_id))), false).previous.hmac, None);
        assert_eq!(credentials(&v, &kept, Seen::Webhook(Some(&Webhook::default())), false).hmac_in_use, None);
    }

    #[test]
    fn admin_tokens_are_made_replaced_after_their_period_and_the_old_one_kept_for_a_while() {
        let day = Duration::from_secs(86_400);
        let made = admin_tokens(&AdminTokens::new(), 1_000, Some(day));
        assert_eq!(made.len(), 3, "one per scope");
        let tokens: std::collections::BTreeSet<_> = made.values().map(|t| t.token.0.clone()).collect();
        assert_eq!(tokens.len(), 3, "each scope its own token");
        assert!(made.values().all(|t| t.previous.is_none() && t.rotated_at == 1_000 && t.token.0.len() >= 43));
        // Within the period: kept as is.
        assert_eq!(admin_tokens(&made, 1_000 + 86_399, Some(day)), made);
        assert_eq!(admin_tokens(&made, 1_000 + 10 * 86_400, None), made, "no period: never replaced");
        // Past it: a new token, the old one as `previous`...
        let rotated = admin_tokens(&made, 1_000 + 86_400, Some(day));
        for scope in AdminScope::ALL {
            assert_ne!(rotated[&scope].token, made[&scope].token);
            assert_eq!(rotated[&scope].previous.as_ref(), Some(&made[&scope].token));
        }
        // ...until the overlap is over.
        let later = 1_000 + 86_400 + ADMIN_TOKEN_OVERLAP_SECONDS - 1;
        assert!(admin_tokens(&rotated, later, Some(day)).values().all(|t| t.previous.is_some()));
        assert!(
            admin_tokens(&rotated, later + 1, Some(day)).values().all(|t| t.previous.is_none() && t.token != made[&AdminScope::Read].token)
        );
        // Made "in the future": not trusted to be fresh.
        let future: AdminTokens = made.iter().map(|(s, t)| (*s, AdminToken { rotated_at: 10_000_000, ..t.clone() })).collect();
        assert!(admin_tokens(&future, 1_000, None).values().zip(made.values()).all(|(new, old)| new.token != old.token));
    }
}

//! Authentication of FusionAuth's POST: the `Authorization` value or Basic
//! credentials, then the signature over the raw body. Every failure answers
//! the same 401; the reason goes to metrics and logs only.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fusionhook_fusionauth::jwks::{HttpJwksSource, JwksCache, JwksError};
use fusionhook_fusionauth::signature::DecodingKey;
use fusionhook_fusionauth::signature::{self, SIGNATURE_HEADER, SignatureError, is_hmac};
use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::config::{AuthConfig, SignatureConfig};
use crate::secret::Secret;

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    MissingAuthorization,
    /// `Authorization` does not match.
    #[error("wrong Authorization header")]
    WrongAuthorization,
    /// Basic credentials absent, malformed or wrong.
    #[error("wrong Basic credentials")]
    WrongBasic,
    /// The signature failed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

impl AuthFailure {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingAuthorization => "authorization_missing",
            Self::WrongAuthorization => "authorization_wrong",
            Self::WrongBasic => "basic_wrong",
            Self::Signature(e) => e.label(),
        }
    }
}

/// The signature's verification keys could not be fetched: not the
/// sender's fault, so this is a 500 (FusionAuth may retry), not a 401.
#[derive(Debug, thiserror::Error)]
#[error("signature keys unavailable: {0}")]
pub struct KeysUnavailable(pub String);

/// Everything that can stop a request at this stage.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// 401.
    #[error(transparent)]
    Unauthorized(#[from] AuthFailure),
    /// 500.
    #[error(transparent)]
    KeysUnavailable(#[from] KeysUnavailable),
}

struct SignatureVerifier {
    config: SignatureConfig,
    jwks: Option<JwksCache<HttpJwksSource>>,
}

/// The authentication stage.
pub struct Verifier {
    authorization: Option<Arc<Secret>>,
    previous_authorization: Option<Arc<Secret>>,
    basic: Option<(Arc<Secret>, Arc<Secret>)>,
    signature: Option<SignatureVerifier>,
    grace: std::time::Duration,
}

impl Verifier {
    /// Builds the stage; `client` fetches the JWKS when one is configured.
    pub fn new(auth: AuthConfig, client: &reqwest::Client) -> Self {
        let signature = auth.signature.map(|config| {
            let jwks = config.jwks_url.clone().map(|url| JwksCache::new(HttpJwksSource::new(client.clone(), url), config.jwks_min_refetch));
            SignatureVerifier { config, jwks }
        });
        Self {
            authorization: auth.authorization,
            previous_authorization: auth.previous_authorization,
            basic: auth.basic,
            signature,
            grace: auth.rotation_grace,
        }
    }

    /// Fetches the JWKS once at start, so the first signed event does not
    /// wait for it. Failure is logged, not fatal: FusionAuth may start later.
    pub async fn warm_up(&self) {
        if let Some(jwks) = self.signature.as_ref().and_then(|s| s.jwks.as_ref()) {
            match jwks.refresh().await {
                Ok(n) => tracing::info!(keys = n, "fetched FusionAuth's JWKS"),
                Err(e) => tracing::warn!(error = %e, "could not fetch FusionAuth's JWKS yet; will retry on the first signed event"),
            }
        }
    }

    /// Checks one request.
    pub async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        if let Some(expected) = &self.authorization {
            let given = headers.get(AUTHORIZATION).ok_or(AuthFailure::MissingAuthorization)?;
            let previous = self.previous_authorization.as_ref().is_some_and(|p| p.accepts(given.as_bytes(), self.grace));
            if !(expected.accepts(given.as_bytes(), self.grace) | previous) {
                return Err(AuthFailure::WrongAuthorization.into());
            }
        }
        if let Some((user, pass)) = &self.basic {
            check_basic(headers, user, pass, self.grace)?;
        }
        if let Some(sig) = &self.signature {
            sig.verify(headers, body).await?;
        }
        Ok(())
    }
}

fn check_basic(headers: &HeaderMap, user: &Secret, pass: &Secret, grace: std::time::Duration) -> Result<(), AuthFailure> {
    let given = headers.get(AUTHORIZATION).ok_or(AuthFailure::WrongBasic)?.as_bytes();
    let encoded = given
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
        .map(|_| given[6..].trim_ascii())
        .ok_or(AuthFailure::WrongBasic)?;
    let decoded = STANDARD.decode(encoded).map_err(|_| AuthFailure::WrongBasic)?;
    let colon = decoded.iter().position(|&b| b == b':').ok_or(AuthFailure::WrongBasic)?;
    // Both halves are always compared, so timing does not tell which was wrong.
    let user_ok = user.accepts(&decoded[..colon], grace);
    let pass_ok = pass.accepts(&decoded[colon + 1..], grace);
    if user_ok & pass_ok { Ok(()) } else { Err(AuthFailure::WrongBasic) }
}

impl SignatureVerifier {
    async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        let token = match headers.get(SIGNATURE_HEADER) {
            Some(value) => value.to_str().map_err(|_| AuthFailure::Signature(SignatureError::Malformed("not text".into())))?,
            None if self.config.required => return Err(AuthFailure::Signature(SignatureError::Missing).into()),
            None => return Ok(()),
        };
        let allowed = &self.config.algorithms;
        let header = signature::inspect(token, allowed).map_err(AuthFailure::from)?;
        if !self.config.key_ids.is_empty() && !header.kid.as_ref().is_some_and(|kid| self.config.key_ids.contains(kid)) {
            return Err(AuthFailure::Signature(SignatureError::UnknownKid).into());
        }
        if is_hmac(header.alg) {
            // Config guarantees the secret exists when an HS* algorithm is allowed.
            let Some(secret) = &self.config.hmac_secret else {
                return Err(AuthFailure::Signature(SignatureError::UnknownKid).into());
            };
            // FusionAuth's HMAC signer uses the UTF-8 bytes of the key's secret.
            let key = DecodingKey::from_secret(secret.get().expose().as_bytes());
            signature::verify(token, body, &key, allowed).map_err(AuthFailure::from)?;
            return Ok(());
        }
        let (Some(jwks), Some(kid)) = (&self.jwks, header.kid.as_deref()) else {
            return Err(AuthFailure::Signature(SignatureError::UnknownKid).into());
        };
        let published = match jwks.key(kid, header.alg).await {
            Ok(key) => key,
            Err(JwksError::UnknownKid | JwksError::AlgorithmMismatch) => {
                return Err(AuthFailure::Signature(SignatureError::UnknownKid).into());
            }
            Err(e @ (JwksError::Fetch(_) | JwksError::Parse(_))) => return Err(KeysUnavailable(e.to_string()).into()),
        };
        signature::verify(token, body, &published.key, allowed).map_err(AuthFailure::from)?;
        Ok(())
    }
}

//! Authentication of FusionAuth's POST: the `Authorization` value or Basic
//! credentials and the signature token, all from the headers before the
//! body is read; then the body against the signed hash. Every failure
//! answers the same 401; the reason goes to metrics and logs only.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fusionhook_fusionauth::jwks::{HttpJwksSource, JwksCache, JwksError};
use fusionhook_fusionauth::signature::DecodingKey;
use fusionhook_fusionauth::signature::{self, SIGNATURE_HEADER, SignatureError, SignedBodyHash, is_hmac};
use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::secret::{Secret, SecretValue};
use fusionhook_fusionauth::signature::Algorithm;

/// How FusionAuth must authenticate. At least one mechanism, unless
/// `allowUnauthenticated` says otherwise.
#[derive(Debug, Default)]
pub struct AuthConfig {
    /// Exact value of the `Authorization` header.
    pub authorization: Option<Arc<Secret>>,
    /// A second accepted value, while a rotation is under way (the operator
    /// sets it to what FusionAuth still sends until FusionAuth is switched).
    pub previous_authorization: Option<Arc<Secret>>,
    /// How long a secret file's replaced value is still accepted (default 5 min).
    pub rotation_grace: Duration,
    /// HTTP Basic credentials (username, password).
    pub basic: Option<(Arc<Secret>, Arc<Secret>)>,
    /// `X-FusionAuth-Signature-JWT` checks.
    pub signature: Option<SignatureConfig>,
}

/// Signature settings.
#[derive(Debug)]
pub struct SignatureConfig {
    /// The only algorithms accepted; the token's `alg` must be one of them.
    pub algorithms: Vec<Algorithm>,
    /// Shared secret for HS256/384/512 (FusionAuth's HMAC key secret).
    pub hmac_secret: Option<Arc<Secret>>,
    /// A second accepted HMAC secret, while a rotation is under way (the
    /// operator sets it to the secret FusionAuth still signs with until
    /// FusionAuth is switched to the new key).
    pub previous_hmac_secret: Option<Arc<Secret>>,
    /// FusionAuth's JWKS, for RS/ES/EdDSA keys.
    pub jwks_url: Option<reqwest::Url>,
    /// When not empty, only these `kid`s are accepted.
    pub key_ids: Vec<String>,
    /// Minimum time between two JWKS fetches caused by unknown `kid`s.
    pub jwks_min_refetch: Duration,
    /// Reject requests without a signature (default true).
    pub required: bool,
}

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
    /// How long a request waits for a JWKS fetch its unknown `kid` needs.
    key_wait: Duration,
}

/// The total time a JWKS fetch may take (it runs on its own; requests wait
/// for it at most their key wait).
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The authentication stage. It runs in two steps: [`Verifier::check_headers`]
/// before a byte of the body is read (the `Authorization` value, Basic
/// credentials and the signature token all travel in headers), then
/// [`Authenticated::check_body`] holds the body against the signed hash.
pub struct Verifier {
    authorization: Option<Arc<Secret>>,
    previous_authorization: Option<Arc<Secret>>,
    basic: Option<(Arc<Secret>, Arc<Secret>)>,
    signature: Option<SignatureVerifier>,
    grace: Duration,
}

/// What the headers proved; the body is checked against it once read.
#[derive(Debug)]
#[must_use = "the body must still be checked against the signature"]
pub struct Authenticated {
    by_credential: bool,
    body_hash: Option<SignedBodyHash>,
}

impl Authenticated {
    /// Whether a header credential (`Authorization` or Basic) matched. When
    /// none did, the body comes from someone unproven (a signature token can
    /// be captured and replayed), so its bytes count against the receiver's
    /// budget for unauthenticated bodies.
    pub fn by_credential(&self) -> bool {
        self.by_credential
    }

    /// Holds the body against the signed hash, when the request was signed.
    pub fn check_body(&self, body: &[u8]) -> Result<(), AuthFailure> {
        match &self.body_hash {
            Some(hash) => hash.check(body).map_err(AuthFailure::from),
            None => Ok(()),
        }
    }
}

impl Verifier {
    /// Builds the stage; `client` fetches the JWKS when one is configured,
    /// and a request waits at most `key_wait` for such a fetch.
    pub fn new(auth: AuthConfig, client: &reqwest::Client, key_wait: Duration) -> Self {
        let signature = auth.signature.map(|config| {
            let jwks = config
                .jwks_url
                .clone()
                .map(|url| JwksCache::new(HttpJwksSource::new(client.clone(), url, JWKS_FETCH_TIMEOUT), config.jwks_min_refetch));
            SignatureVerifier { config, jwks, key_wait }
        });
        Self {
            authorization: auth.authorization,
            previous_authorization: auth.previous_authorization,
            basic: auth.basic,
            signature,
            grace: auth.rotation_grace,
        }
    }

    /// Fetches the JWKS once, so the first signed event does not wait for
    /// it. Run it beside serving, never before: failure is logged, not
    /// fatal (FusionAuth may start later), and a hung JWKS endpoint must
    /// not keep the receiver from listening.
    pub async fn warm_up(&self) {
        if let Some(jwks) = self.signature.as_ref().and_then(|s| s.jwks.as_ref()) {
            match jwks.refresh().await {
                Ok(n) => tracing::info!(keys = n, "fetched FusionAuth's JWKS"),
                Err(e) => tracing::warn!(error = %e, "could not fetch FusionAuth's JWKS yet; will retry on the first signed event"),
            }
        }
    }

    /// Checks everything the headers carry: the `Authorization` value or
    /// Basic credentials, and the signature token (its signature and
    /// algorithm; the body hash it vouches for is checked later).
    pub async fn check_headers(&self, headers: &HeaderMap) -> Result<Authenticated, VerifyError> {
        let mut by_credential = false;
        if let Some(expected) = &self.authorization {
            let given = headers.get(AUTHORIZATION).ok_or(AuthFailure::MissingAuthorization)?;
            let previous = self.previous_authorization.as_ref().is_some_and(|p| p.accepts(given.as_bytes(), self.grace));
            if !(expected.accepts(given.as_bytes(), self.grace) | previous) {
                return Err(AuthFailure::WrongAuthorization.into());
            }
            by_credential = true;
        }
        if let Some((user, pass)) = &self.basic {
            check_basic(headers, user, pass, self.grace)?;
            by_credential = true;
        }
        let body_hash = match &self.signature {
            Some(sig) => sig.check_token(headers, self.grace).await?,
            None => None,
        };
        Ok(Authenticated { by_credential, body_hash })
    }
}

fn check_basic(headers: &HeaderMap, user: &Secret, pass: &Secret, grace: Duration) -> Result<(), AuthFailure> {
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
    /// The token's signature, checked with the token's own algorithm once
    /// it passed the allow-list. `None` when the token is absent and not
    /// required.
    async fn check_token(&self, headers: &HeaderMap, grace: Duration) -> Result<Option<SignedBodyHash>, VerifyError> {
        let token = match headers.get(SIGNATURE_HEADER) {
            Some(value) => value.to_str().map_err(|_| AuthFailure::Signature(SignatureError::Malformed("not text".into())))?,
            None if self.config.required => return Err(AuthFailure::Signature(SignatureError::Missing).into()),
            None => return Ok(None),
        };
        let header = signature::inspect(token, &self.config.algorithms).map_err(AuthFailure::from)?;
        if !self.config.key_ids.is_empty() && !header.kid.as_ref().is_some_and(|kid| self.config.key_ids.contains(kid)) {
            return Err(AuthFailure::Signature(SignatureError::UnknownKid).into());
        }
        if is_hmac(header.alg) {
            // Config guarantees the secret exists when an HS* algorithm is allowed.
            let Some(secret) = &self.config.hmac_secret else {
                return Err(AuthFailure::Signature(SignatureError::UnknownKid).into());
            };
            // FusionAuth's HMAC signer uses the UTF-8 bytes of the key's secret.
            let verify =
                |value: &SecretValue| signature::verify_token(token, &DecodingKey::from_secret(value.expose().as_bytes()), header.alg);
            // FusionAuth may still sign with the secret a file change
            // replaced (auth.rotationGraceMs), or with the previous secret
            // the operator keeps until FusionAuth is switched to the new key.
            let bad = |hash: &Result<SignedBodyHash, SignatureError>| matches!(hash, Err(SignatureError::BadSignature));
            let mut hash = verify(&secret.get());
            if bad(&hash)
                && let Some(replaced) = secret.replaced_within(grace)
            {
                hash = verify(&replaced);
            }
            if bad(&hash)
                && let Some(previous) = &self.config.previous_hmac_secret
            {
                hash = verify(&previous.get());
            }
            return Ok(Some(hash.map_err(AuthFailure::from)?));
        }
        let (Some(jwks), Some(kid)) = (&self.jwks, header.kid.as_deref()) else {
            return Err(AuthFailure::Signature(SignatureError::UnknownKid).into());
        };
        let published = match jwks.key(kid, header.alg, self.key_wait).await {
            Ok(key) => key,
            Err(JwksError::UnknownKid | JwksError::AlgorithmMismatch) => {
                return Err(AuthFailure::Signature(SignatureError::UnknownKid).into());
            }
            Err(e @ (JwksError::Fetch(_) | JwksError::Parse(_))) => return Err(KeysUnavailable(e.to_string()).into()),
        };
        Ok(Some(signature::verify_token(token, &published.key, header.alg).map_err(AuthFailure::from)?))
    }
}

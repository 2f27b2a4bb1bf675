//! `X-FusionAuth-Signature-JWT` (FACTS.md §d): a compact JWS whose only claim,
//! `request_body_sha256`, is the standard padded Base64 of the SHA-256 of the
//! exact body bytes.
//!
//! Pure functions, no I/O: [`inspect`] reads the token header and checks the
//! algorithm against the configured list (the token never chooses it),
//! the caller finds the key (a shared HMAC secret or a JWKS entry by `kid`),
//! and [`verify`] checks the signature and the body hash. [`sign`] is
//! FusionAuth's side, used by the emulator and the tests.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// The request header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-fusionauth-signature-jwt";

/// Why a signature was not accepted. Messages never contain the token or keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is absent and signatures are required.
    #[error("the request carries no X-FusionAuth-Signature-JWT header")]
    Missing,
    /// Not a well-formed JWS, or `alg` is one we do not know (including `none`).
    #[error("the signature is not a well-formed JWT: {0}")]
    Malformed(String),
    /// The token's `alg` is not one the configuration allows.
    #[error("the signature algorithm {0:?} is not allowed by the configuration")]
    AlgorithmNotAllowed(Algorithm),
    /// An asymmetric token without `kid`.
    #[error("the signature has no key id (kid)")]
    MissingKid,
    /// `kid` is not in the configured allow-list, or no key with it exists.
    #[error("no key is configured or published for the signature's key id")]
    UnknownKid,
    /// The key exists but the signature does not match (or key and `alg` disagree).
    #[error("the signature does not verify")]
    BadSignature,
    /// The token lacks `request_body_sha256`.
    #[error("the signature has no request_body_sha256 claim")]
    MissingBodyHash,
    /// The signed hash is not the hash of the body received.
    #[error("request_body_sha256 does not match the body")]
    BodyHashMismatch,
}

impl SignatureError {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::Malformed(_) => "signature_malformed",
            Self::AlgorithmNotAllowed(_) => "signature_algorithm",
            Self::MissingKid | Self::UnknownKid => "signature_unknown_key",
            Self::BadSignature => "signature_invalid",
            Self::MissingBodyHash | Self::BodyHashMismatch => "signature_body_mismatch",
        }
    }
}

/// What the token header says, once its algorithm passed the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// The algorithm, guaranteed to be one of the allowed ones.
    pub alg: Algorithm,
    /// The key id, if any.
    pub kid: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    request_body_sha256: Option<String>,
}

/// Whether an algorithm uses a shared secret (HS*) rather than a key pair.
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Standard padded Base64 of SHA-256 over `body`: the value FusionAuth puts in
/// `request_body_sha256`.
pub fn body_sha256(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

/// Reads the token header and checks `alg` against `allowed`. Asymmetric
/// tokens must name their key.
pub fn inspect(token: &str, allowed: &[Algorithm]) -> Result<TokenHeader, SignatureError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if !allowed.contains(&header.alg) {
        return Err(SignatureError::AlgorithmNotAllowed(header.alg));
    }
    if header.kid.is_none() && !is_hmac(header.alg) {
        return Err(SignatureError::MissingKid);
    }
    Ok(TokenHeader { alg: header.alg, kid: header.kid })
}

/// What a token whose signature verified vouches for: the hash of the body
/// it was made for. Checking the token needs only the request's headers, so
/// a forged token is refused before a byte of the body is read; the body is
/// then held against this hash with [`SignedBodyHash::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBodyHash(String);

impl SignedBodyHash {
    /// Whether `body` is the body the token was made for (constant time).
    pub fn check(&self, body: &[u8]) -> Result<(), SignatureError> {
        let actual = body_sha256(body);
        if bool::from(self.0.as_bytes().ct_eq(actual.as_bytes())) { Ok(()) } else { Err(SignatureError::BodyHashMismatch) }
    }
}

/// Verifies the token's signature with `key` for the algorithm `alg` (the
/// one [`inspect`] checked against the allow-list: the token is verified
/// with its own algorithm, so an allow-list that mixes key families works)
/// and returns the body hash it carries.
pub fn verify_token(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<SignedBodyHash, SignatureError> {
    // The signature and the one claim are checked directly rather than with
    // `jsonwebtoken::decode`, which parses the header twice more and the
    // claims twice, and has no registered claims to validate here: FusionAuth
    // puts exactly one claim in the token, no exp, aud or iss (FACTS.md §d).
    let malformed = |what: &str| SignatureError::Malformed(what.to_owned());
    let (message, signature) = token.rsplit_once('.').ok_or_else(|| malformed("not three dot-separated parts"))?;
    let (_, payload) = message.split_once('.').ok_or_else(|| malformed("not three dot-separated parts"))?;
    match jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, alg) {
        Ok(true) => {}
        Ok(false) => return Err(SignatureError::BadSignature),
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind;
            return Err(match e.kind() {
                // A key of another family than `alg` (e.g. an RSA key for HS256).
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => SignatureError::BadSignature,
                _ => SignatureError::Malformed(e.to_string()),
            });
        }
    }
    let claims = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed("the claims are not base64url"))?;
    let claims: Claims =
        serde_json::from_slice(&claims).map_err(|e| SignatureError::Malformed(format!("the claims are not a JSON object: {e}")))?;
    claims.request_body_sha256.map(SignedBodyHash).ok_or(SignatureError::MissingBodyHash)
}

/// Verifies the signature with `key` and the body hash against `body`:
/// [`inspect`], [`verify_token`] and [`SignedBodyHash::check`] in one call.
pub fn verify(token: &str, body: &[u8], key: &DecodingKey, allowed: &[Algorithm]) -> Result<(), SignatureError> {
    let header = inspect(token, allowed)?;
    verify_token(token, key, header.alg)?.check(body)
}

/// Signs `body` the way FusionAuth does: header `{alg, typ: JWT, kid}`, one
/// claim `request_body_sha256`.
pub fn sign(body: &[u8], alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &Claims { request_body_sha256: Some(body_sha256(body)) }, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PRIVATE: &str = include_str!("../tests/fixtures/keys/rsa-private.pem");
    const RSA_PUBLIC: &str = include_str!("../tests/fixtures/keys/rsa-public.pem");
    const RSA2_PRIVATE: &str = include_str!("../tests/fixtures/keys/rsa2-private.pem");
    const EC_PRIVATE: &str = include_str!("../tests/fixtures/keys/ec-private.pem");
    const EC_PUBLIC: &str = include_str!("../tests/fixtures/keys/ec-public.pem");
    const ED_PRIVATE: &str = include_str!("../tests/fixtures/keys/ed25519-private.pem");
    const ED_PUBLIC: &str = include_str!("../tests/fixtures/keys/ed25519-public.pem");
    const BODY: &[u8] = br#"{"event":{"id":"e1","type":"user.delete","user":{"id":"u1"}}}"#;

    fn b64url(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_token(body: &[u8]) -> String {
        sign(body, Algorithm::RS256, Some("rsa-1"), &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()).unwrap()
    }

    fn rsa_public() -> DecodingKey {
        DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap()
    }

    #[test]
    fn body_hash_is_standard_padded_base64() {
        // The empty string's SHA-256, in standard Base64 with padding (44 chars).
        assert_eq!(body_sha256(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(body_sha256(BODY).len(), 44);
    }

    #[test]
    fn hmac_round_trip_for_every_hs_algorithm() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(BODY, alg, Some("hmac-1"), &EncodingKey::from_secret(b"s3cret")).unwrap();
            let header = inspect(&token, &[alg]).unwrap();
            assert_eq!(header.kid.as_deref(), Some("hmac-1"));
            verify(&token, BODY, &DecodingKey::from_secret(b"s3cret"), &[alg]).unwrap();
            assert_eq!(verify(&token, BODY, &DecodingKey::from_secret(b"other"), &[alg]), Err(SignatureError::BadSignature));
        }
    }

    #[test]
    fn asymmetric_round_trips() {
        let token = rsa_token(BODY);
        assert_eq!(inspect(&token, &[Algorithm::RS256]).unwrap().kid.as_deref(), Some("rsa-1"));
        verify(&token, BODY, &rsa_public(), &[Algorithm::RS256]).unwrap();

        let ec = sign(BODY, Algorithm::ES256, Some("ec-1"), &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()).unwrap();
        verify(&ec, BODY, &DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap(), &[Algorithm::ES256]).unwrap();

        let ed = sign(BODY, Algorithm::EdDSA, Some("ed-1"), &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap()).unwrap();
        verify(&ed, BODY, &DecodingKey::from_ed_pem(ED_PUBLIC.as_bytes()).unwrap(), &[Algorithm::EdDSA]).unwrap();
    }

    #[test]
    fn a_body_altered_by_one_byte_is_rejected() {
        let token = rsa_token(BODY);
        let mut altered = BODY.to_vec();
        let pos = altered.iter().position(|&b| b == b'u').unwrap();
        altered[pos] = b'v';
        assert_eq!(verify(&token, &altered, &rsa_public(), &[Algorithm::RS256]), Err(SignatureError::BodyHashMismatch));
    }

    #[test]
    fn a_token_signed_by_another_key_is_rejected() {
        let other = sign(BODY, Algorithm::RS256, Some("rsa-1"), &EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap()).unwrap();
        assert_eq!(verify(&other, BODY, &rsa_public(), &[Algorithm::RS256]), Err(SignatureError::BadSignature));
    }

    #[test]
    fn alg_none_is_rejected() {
        let header = b64url(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
        let claims = b64url(format!(r#"{{"request_body_sha256":"{}"}}"#, body_sha256(BODY)).as_bytes());
        let token = format!("{header}.{claims}.");
        assert!(matches!(inspect(&token, &[Algorithm::RS256]), Err(SignatureError::Malformed(_))));
        assert!(verify(&token, BODY, &rsa_public(), &[Algorithm::RS256]).is_err());
    }

    #[test]
    fn hs256_signed_with_the_rsa_public_key_is_rejected() {
        // The classic key-confusion attack: the attacker knows the public key
        // and uses its PEM bytes as an HMAC secret.
        let forged = sign(BODY, Algorithm::HS256, Some("rsa-1"), &EncodingKey::from_secret(RSA_PUBLIC.as_bytes())).unwrap();
        assert_eq!(inspect(&forged, &[Algorithm::RS256]), Err(SignatureError::AlgorithmNotAllowed(Algorithm::HS256)));
        assert_eq!(verify(&forged, BODY, &rsa_public(), &[Algorithm::RS256]), Err(SignatureError::AlgorithmNotAllowed(Algorithm::HS256)));
        // Even when HS256 is allowed too, the public key is no HMAC secret here.
        assert_eq!(verify(&forged, BODY, &rsa_public(), &[Algorithm::RS256, Algorithm::HS256]), Err(SignatureError::BadSignature));
    }

    #[test]
    fn garbage_and_missing_claims_are_rejected() {
        for garbage in ["", "abc", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30"] {
            assert!(matches!(inspect(garbage, &[Algorithm::RS256]), Err(SignatureError::Malformed(_))), "{garbage}");
        }
        let mut header = Header::new(Algorithm::HS256);
        header.kid = None;
        let no_claim = jsonwebtoken::encode(&header, &serde_json::json!({"x": 1}), &EncodingKey::from_secret(b"k")).unwrap();
        assert_eq!(verify(&no_claim, BODY, &DecodingKey::from_secret(b"k"), &[Algorithm::HS256]), Err(SignatureError::MissingBodyHash));
    }

    #[test]
    fn an_allow_list_that_mixes_key_families_accepts_each_family() {
        let rsa = rsa_token(BODY);
        let hmac = sign(BODY, Algorithm::HS256, Some("hmac-1"), &EncodingKey::from_secret(b"s3cret")).unwrap();
        let ed = sign(BODY, Algorithm::EdDSA, Some("ed-1"), &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap()).unwrap();
        let ed_public = DecodingKey::from_ed_pem(ED_PUBLIC.as_bytes()).unwrap();
        let ec_public = DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap();
        let mixes: [&[Algorithm]; 3] = [
            &[Algorithm::HS256, Algorithm::RS256],
            &[Algorithm::RS256, Algorithm::HS256, Algorithm::EdDSA],
            &[Algorithm::ES256, Algorithm::EdDSA, Algorithm::HS256, Algorithm::RS256],
        ];
        for allowed in mixes {
            verify(&hmac, BODY, &DecodingKey::from_secret(b"s3cret"), allowed).unwrap();
            verify(&rsa, BODY, &rsa_public(), allowed).unwrap();
            if allowed.contains(&Algorithm::EdDSA) {
                verify(&ed, BODY, &ed_public, allowed).unwrap();
                // A token checked with a key of another family is refused, never accepted.
                assert_eq!(verify(&ed, BODY, &ec_public, allowed), Err(SignatureError::BadSignature));
            }
        }
    }

    #[test]
    fn the_token_is_checked_before_the_body_is_known() {
        let token = rsa_token(BODY);
        let hash = verify_token(&token, &rsa_public(), Algorithm::RS256).unwrap();
        hash.check(BODY).unwrap();
        assert_eq!(hash.check(b"other"), Err(SignatureError::BodyHashMismatch));
        let forged = sign(BODY, Algorithm::RS256, Some("rsa-1"), &EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap()).unwrap();
        assert_eq!(verify_token(&forged, &rsa_public(), Algorithm::RS256), Err(SignatureError::BadSignature));
    }

    #[test]
    fn asymmetric_tokens_must_name_their_key() {
        let token = sign(BODY, Algorithm::RS256, None, &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()).unwrap();
        assert_eq!(inspect(&token, &[Algorithm::RS256]), Err(SignatureError::MissingKid));
    }

    #[test]
    fn hex_or_base64url_hashes_are_not_accepted() {
        use sha2::Digest;
        let digest = Sha256::digest(BODY);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        for wrong in [hex, b64url(&digest)] {
            let token = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &Claims { request_body_sha256: Some(wrong) },
                &EncodingKey::from_secret(b"k"),
            )
            .unwrap();
            assert_eq!(verify(&token, BODY, &DecodingKey::from_secret(b"k"), &[Algorithm::HS256]), Err(SignatureError::BodyHashMismatch));
        }
    }
}

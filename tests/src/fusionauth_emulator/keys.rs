//! Key Master, as far as webhook signing needs it (FACTS.md §d): HMAC
//! secrets and RSA key pairs, imported with a chosen id, published in the
//! JWKS (key pairs only; HMAC keys never are).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fusionhook_fusionauth::model::Errors;
use fusionhook_fusionauth::signature::{Algorithm, EncodingKey, is_hmac};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use uuid::Uuid;

/// A stored key. `secret` and `private_pem` never leave the emulator.
#[derive(Clone)]
pub struct KeyRecord {
    /// Id.
    pub id: Uuid,
    /// e.g. HS256, RS256.
    pub algorithm: Algorithm,
    /// Display name.
    pub name: String,
    /// JWT `kid`.
    pub kid: String,
    /// HMAC secret.
    pub secret: Option<String>,
    /// RSA private key (PKCS#8 PEM).
    pub private_pem: Option<String>,
    /// RSA public key (SPKI PEM).
    pub public_pem: Option<String>,
    /// RSA modulus and exponent, base64url, for the JWKS.
    pub n_e: Option<(String, String)>,
    /// Creation time.
    pub insert_instant: i64,
}

impl KeyRecord {
    /// Whether it can sign (HMAC, or a key pair with its private key).
    pub fn can_sign(&self) -> bool {
        self.secret.is_some() || self.private_pem.is_some()
    }

    /// What `GET /api/key/{id}` shows: no secret, no private key (FACTS.md §d, S25).
    pub fn to_response(&self) -> Value {
        let kind = if is_hmac(self.algorithm) { "HMAC" } else { "RSA" };
        let mut key = json!({
            "algorithm": format!("{:?}", self.algorithm),
            "id": self.id,
            "insertInstant": self.insert_instant,
            "kid": self.kid,
            "lastUpdateInstant": self.insert_instant,
            "name": self.name,
            "type": kind,
        });
        if let Some(public) = &self.public_pem {
            key["publicKey"] = Value::String(public.clone());
            key["hasPrivateKey"] = Value::Bool(self.private_pem.is_some());
        }
        key
    }

    /// The JWKS entry (key pairs only).
    pub fn to_jwk(&self) -> Option<Value> {
        let (n, e) = self.n_e.as_ref()?;
        Some(json!({"alg": format!("{:?}", self.algorithm), "e": e, "kid": self.kid, "kty": "RSA", "n": n, "use": "sig"}))
    }

    /// The signing key.
    pub fn encoding_key(&self) -> Option<EncodingKey> {
        match (&self.secret, &self.private_pem) {
            // FusionAuth's HMAC signer uses the secret string's UTF-8 bytes.
            (Some(secret), _) => Some(EncodingKey::from_secret(secret.as_bytes())),
            (None, Some(pem)) => EncodingKey::from_rsa_pem(pem.as_bytes()).ok(),
            _ => None,
        }
    }
}

/// Parses `POST /api/key/import[/{id}]`.
pub fn import(body: &Value, id: Uuid, now: i64) -> Result<KeyRecord, Errors> {
    let Some(key) = body.get("key").and_then(Value::as_object) else {
        return Err(Errors::field("key", "[missing]key", "You must specify the [key] property."));
    };
    let text = |f: &str| key.get(f).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let mut errors = Errors::default();
    let name = text("name");
    if name.is_none() {
        errors.add_field("key.name", "[missing]key.name", "You must specify the [name] property.");
    }
    let algorithm = match text("algorithm") {
        None => {
            errors.add_field("key.algorithm", "[missing]key.algorithm", "You must specify the [algorithm] property.");
            None
        }
        Some(a) => match a.parse::<Algorithm>() {
            Ok(alg @ (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 | Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512)) => {
                Some(alg)
            }
            _ => {
                // The emulator supports HMAC and RSA; FusionAuth also has EC and EdDSA.
                errors.add_field(
                    "key.algorithm",
                    "[invalid]key.algorithm",
                    format!("The algorithm [{a}] is not supported by this emulator."),
                );
                None
            }
        },
    };
    let mut record = None;
    if let (Some(name), Some(algorithm)) = (name, algorithm) {
        let kid = text("kid").unwrap_or_else(|| URL_SAFE_NO_PAD.encode(&Uuid::new_v4().as_bytes()[..15]));
        if is_hmac(algorithm) {
            match text("secret") {
                Some(secret) => {
                    record = Some(KeyRecord {
                        id,
                        algorithm,
                        name,
                        kid,
                        secret: Some(secret),
                        private_pem: None,
                        public_pem: None,
                        n_e: None,
                        insert_instant: now,
                    })
                }
                None => errors.add_field("key.secret", "[missing]key.secret", "You must specify the [secret] property for an HMAC key."),
            }
        } else {
            match text("privateKey").map(|pem| (rsa::RsaPrivateKey::from_pkcs8_pem(&pem), pem)) {
                Some((Ok(private), pem)) => {
                    let public = private.to_public_key();
                    let public_pem = public.to_public_key_pem(LineEnding::LF).ok();
                    let n_e = (URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()), URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()));
                    record = Some(KeyRecord {
                        id,
                        algorithm,
                        name,
                        kid,
                        secret: None,
                        private_pem: Some(pem),
                        public_pem,
                        n_e: Some(n_e),
                        insert_instant: now,
                    });
                }
                Some((Err(_), _)) => {
                    errors.add_field("key.privateKey", "[invalid]key.privateKey", "The [privateKey] is not a PKCS#8 PEM RSA key.")
                }
                None => {
                    errors.add_field("key.privateKey", "[missing]key.privateKey", "This emulator imports RSA keys with their [privateKey].")
                }
            }
        }
    }
    match record {
        Some(record) if errors.is_empty() => Ok(record),
        _ => Err(errors),
    }
}

//! The receiver's admin API, as both sides speak it: it listens on its own
//! port ([`PORT`], never FusionAuth's), takes a scoped token (one Secret
//! per [`AdminScope`](crate::names::AdminScope)) in [`TOKEN_HEADER`]
//! (the API server's proxy drops `Authorization`), and answers
//! `POST /v1/prove` ([`Challenge`] in, [`Proofs`] out) so that a client can
//! tell a real receiver from a pod that only carries its labels before it
//! shows it a token ([`proof`]). [`client`] (feature `kube`) is the one
//! client of it, for the operator and the plugin.

use serde::{Deserialize, Serialize};

#[cfg(feature = "kube")]
pub mod client;

/// The admin API's port in a receiver pod.
pub const PORT: u16 = 8081;

/// The header that carries the token through the API server's service and
/// pod proxy, which removes `Authorization` before proxying.
pub const TOKEN_HEADER: &str = "x-fusionhook-token";

/// The body of `POST /v1/prove`: a fresh nonce, and the scope whose token
/// the pod is to prove it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// 16 to 128 characters, fresh for each challenge.
    pub nonce: String,
    /// `read`, `replay` or `ingest`.
    pub scope: String,
}

/// The answer to `POST /v1/prove`: the pod's own name and a [`proof`] for
/// each value of the scope's token it accepts (two, shortly after a rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proofs {
    /// The pod's name, as it knows it.
    pub pod: String,
    /// Hex HMAC-SHA256 proofs.
    pub proofs: Vec<String>,
}

/// The proof that the holder of `token` is pod `pod`, for a client's
/// `nonce`: hex HMAC-SHA256 under the token of a fixed label, the pod's
/// name and the nonce. The pod's name is bound in so a pod that relays a
/// challenge to a real receiver gets a proof for that receiver's name,
/// not its own.
pub fn proof(token: &[u8], pod: &str, nonce: &str) -> String {
    use hmac::Mac;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(token) else { return String::new() };
    mac.update(format!("fusionhook admin proof v1\n{pod}\n{nonce}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_binds_the_token_the_pod_and_the_nonce() {
        let p = proof(b"token", "hook-receiver-0", "0123456789abcdef");
        assert_eq!(p.len(), 64);
        assert_ne!(p, proof(b"other", "hook-receiver-0", "0123456789abcdef"));
        assert_ne!(p, proof(b"token", "hook-receiver-1", "0123456789abcdef"));
        assert_ne!(p, proof(b"token", "hook-receiver-0", "0123456789abcdeF"));
        let wire = serde_json::json!({"nonce": "n", "scope": "read", "extra": 1});
        assert!(serde_json::from_value::<Challenge>(wire).is_err(), "unknown fields are refused");
    }
}

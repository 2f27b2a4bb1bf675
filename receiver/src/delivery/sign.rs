//! Standard Webhooks signatures on outbound calls
//! (<https://www.standardwebhooks.com/>): `webhook-id`, `webhook-timestamp`
//! and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! with the secret written `whsec_<base64>` as the official libraries take it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Decodes a secret written `whsec_<base64>` (the prefix may be left out).
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let encoded = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
    let key = STANDARD.decode(encoded).map_err(|_| "the signing secret must be whsec_ followed by base64".to_owned())?;
    if key.len() < 16 {
        return Err("the signing secret must hold at least 16 bytes".into());
    }
    Ok(key)
}

/// The `webhook-signature` value for a message.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return String::new() };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(decode_secret("whsec_!!!").is_err());
        assert!(decode_secret("whsec_c2hvcnQ=").is_err());
    }
}

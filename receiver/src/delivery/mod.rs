//! Durable delivery: the workers that take due deliveries from the
//! [store](crate::store), run the route's action, and record the outcome:
//! delivered, retry later ([`retry`]), or dead. Outbound calls carry an
//! idempotency key and, optionally, a Standard Webhooks signature ([`sign`]).

pub mod dispatch;
pub mod retry;
pub mod sign;

use sha2::{Digest, Sha256};

/// The idempotency key of one route's delivery of one event: the same on
/// every attempt (and on a replay), different between routes. Sent as
/// `Idempotency-Key` and the Standard Webhooks `webhook-id`.
pub fn idempotency_key(event_id: &str, route: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(event_id.as_bytes());
    hash.update([0]);
    hash.update(route.as_bytes());
    let digest = hash.finalize();
    let mut key = String::with_capacity(3 + 32);
    key.push_str("fh_");
    hex(&digest[..16], &mut key);
    key
}

/// Appends `bytes` as lowercase hex, without an allocation per byte.
pub fn hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_per_event_and_route() {
        let a = idempotency_key("e1", "todo");
        assert_eq!(a, idempotency_key("e1", "todo"));
        assert_ne!(a, idempotency_key("e1", "audit"));
        assert_ne!(a, idempotency_key("e2", "todo"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(idempotency_key("ab", "c"), idempotency_key("a", "bc"));
        assert_eq!(a.len(), 35);
        let mut out = String::new();
        hex(&[0x00, 0x0f, 0xa0, 0xff], &mut out);
        assert_eq!(out, "000fa0ff");
    }
}

//! verify: a captured FusionAuth request (raw HTTP/1.1) checked the way the
//! receiver checks a signed one (FACTS.md §d): the JWT in
//! `X-FusionAuth-Signature-JWT`, its algorithm against the allowed ones, the
//! key (an HMAC secret, or the JWKS key of its `kid`), then the claim
//! `request_body_sha256` against the exact body bytes. Pure but for
//! fetching the JWKS.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use fusionhook_fusionauth::jwks::{PublishedKey, parse_jwks};
use fusionhook_fusionauth::signature::{self, Algorithm, DecodingKey, SignatureError};
use serde_json::{Value, json};

/// What the signature is checked with.
pub enum Key {
    /// An HMAC secret (a file's bytes, trailing line end removed).
    Hmac(Vec<u8>),
    /// FusionAuth's published keys by `kid`.
    Jwks(HashMap<String, Arc<PublishedKey>>),
}

/// Fetches and parses a JWKS document.
pub async fn fetch_jwks(url: &str) -> anyhow::Result<HashMap<String, Arc<PublishedKey>>> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
    let response = client.get(url).send().await.map_err(|e| anyhow::anyhow!("cannot fetch the JWKS from {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("fetching the JWKS from {url} answered {status}");
    }
    Ok(parse_jwks(&response.bytes().await?)?)
}

/// The outcome: valid or not, what was checked, and why not.
#[derive(Debug)]
pub struct Verdict {
    /// Whether the request is what FusionAuth signed.
    pub valid: bool,
    /// What was checked, in order.
    pub checked: Vec<String>,
    /// Why it is not valid.
    pub reason: Option<String>,
}

impl Verdict {
    fn fail(checked: Vec<String>, reason: impl Into<String>) -> Self {
        Self { valid: false, checked, reason: Some(reason.into()) }
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({"valid": self.valid, "checked": self.checked, "reason": self.reason})
    }

    /// In words.
    pub fn to_text(&self) -> String {
        let mut out: String = self.checked.iter().map(|c| format!("ok  {c}\n")).collect();
        match &self.reason {
            None => out.push_str("VALID: this is the request FusionAuth signed\n"),
            Some(reason) => out.push_str(&format!("INVALID: {reason}\n")),
        }
        out
    }
}

/// A raw request split into headers (lower-case names) and body.
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The Content-Length, when given.
    length: Option<usize>,
}

/// Parses the request line, headers, blank line and body (CRLF or LF).
/// A `Content-Length` shorter than what follows trims the body (an editor's
/// final newline); a longer one means the capture is cut.
fn parse(raw: &[u8]) -> Result<Request, String> {
    let (head, body) = match (find(raw, b"\r\n\r\n"), find(raw, b"\n\n")) {
        (Some(crlf), Some(lf)) if lf < crlf => (&raw[..lf], &raw[lf + 2..]),
        (Some(crlf), _) => (&raw[..crlf], &raw[crlf + 4..]),
        (None, Some(lf)) => (&raw[..lf], &raw[lf + 2..]),
        (None, None) => {
            return Err("no blank line after the headers: give the whole raw request (request line, headers, blank line, body)".into());
        }
    };
    let head = std::str::from_utf8(head).map_err(|_| "the request line and headers are not text".to_owned())?;
    let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
    let request_line = lines.next().unwrap_or_default();
    if !request_line.starts_with("POST ") {
        return Err(format!("the request line is `{request_line}`, not a POST: FusionAuth POSTs events"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("not a header line: `{line}`"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut body = body.to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        return Err("the body is chunked (Transfer-Encoding: chunked): capture it decoded; FusionAuth sends a Content-Length".into());
    }
    let mut declared = None;
    if let Some((_, length)) = headers.iter().find(|(n, _)| n == "content-length") {
        let length: usize = length.parse().map_err(|_| format!("Content-Length `{length}` is not a number"))?;
        if body.len() < length {
            return Err(format!("the body is {} bytes, Content-Length says {length}: the capture is cut", body.len()));
        }
        body.truncate(length);
        declared = Some(length);
    }
    Ok(Request { headers, body, length: declared })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The default algorithms for a key kind.
fn defaults(key: &Key) -> Vec<Algorithm> {
    match key {
        Key::Hmac(_) => vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        Key::Jwks(_) => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA],
    }
}

/// Checks `raw` with `key`, allowing `algorithms` (names like `HS256`; empty: the key kind's defaults).
pub fn verify(raw: &[u8], key: &Key, algorithms: &[String]) -> Verdict {
    let mut checked = Vec::new();
    let request = match parse(raw) {
        Ok(r) => r,
        Err(e) => return Verdict::fail(checked, e),
    };
    checked.push(format!("a POST with a {}-byte body", request.body.len()));
    let allowed: Vec<Algorithm> = if algorithms.is_empty() {
        defaults(key)
    } else {
        let mut parsed = Vec::new();
        for name in algorithms {
            match Algorithm::from_str(name) {
                Ok(a) => parsed.push(a),
                Err(_) => return Verdict::fail(checked, format!("--algorithm {name}: not an algorithm (HS256, RS256, ES256, EdDSA, …)")),
            }
        }
        parsed
    };
    let Some((_, token)) = request.headers.iter().find(|(n, _)| n == signature::SIGNATURE_HEADER) else {
        return Verdict::fail(
            checked,
            "no X-FusionAuth-Signature-JWT header: FusionAuth signs only when the webhook's signatureConfiguration is enabled (spec.auth.signature)",
        );
    };
    let header = match signature::inspect(token, &allowed) {
        Ok(h) => h,
        Err(SignatureError::AlgorithmNotAllowed(alg)) => {
            let hint = match key {
                Key::Jwks(_) if signature::is_hmac(alg) => {
                    ": an HMAC signature is checked with --hmac-secret-file (HMAC keys are never in the JWKS)"
                }
                Key::Hmac(_) if !signature::is_hmac(alg) => ": an asymmetric signature is checked with --jwks-url",
                _ => "",
            };
            return Verdict::fail(checked, format!("the signature uses {alg:?}, which is not allowed here (allowed: {allowed:?}){hint}"));
        }
        Err(e) => return Verdict::fail(checked, e.to_string()),
    };
    checked.push(format!("algorithm {:?} is allowed", header.alg));
    let decoding = match key {
        Key::Hmac(secret) => {
            let mut secret = secret.as_slice();
            while let [rest @ .., b'\n' | b'\r'] = secret {
                secret = rest;
            }
            if secret.is_empty() {
                return Verdict::fail(checked, "the HMAC secret file is empty (the receiver refuses an empty secret too)");
            }
            DecodingKey::from_secret(secret)
        }
        Key::Jwks(keys) => {
            let Some(kid) = header.kid.as_deref() else { return Verdict::fail(checked, "the signature has no key id (kid)") };
            let Some(published) = keys.get(kid) else {
                let known: Vec<&String> = keys.keys().collect();
                return Verdict::fail(
                    checked,
                    format!("unknown kid `{kid}`: the JWKS publishes {known:?} (a rotated key, or another FusionAuth)"),
                );
            };
            if published.alg.is_some_and(|a| a != header.alg) {
                return Verdict::fail(
                    checked,
                    format!("key `{kid}` is published for {:?}, the signature says {:?}", published.alg, header.alg),
                );
            }
            checked.push(format!("kid `{kid}` is published"));
            published.key.clone()
        }
    };
    let hash = match signature::verify_token(token, &decoding, header.alg) {
        Ok(hash) => hash,
        Err(SignatureError::BadSignature) => {
            let what = match key {
                Key::Hmac(_) => "wrong secret: the signature was made with another HMAC secret",
                Key::Jwks(_) => "the signature does not verify with the published key",
            };
            return Verdict::fail(checked, what);
        }
        Err(e) => return Verdict::fail(checked, e.to_string()),
    };
    checked.push("the signature verifies".to_owned());
    // Without a Content-Length, a final line end may be the editor's, not the body's.
    let trimmed = request.body.strip_suffix(b"\r\n").or_else(|| request.body.strip_suffix(b"\n"));
    let untrimmed_fails = hash.check(&request.body).is_err();
    let editor_newline = untrimmed_fails && request.length.is_none() && trimmed.is_some_and(|t| hash.check(t).is_ok());
    match hash.check(&request.body) {
        Ok(()) => {
            checked.push("request_body_sha256 matches the body".to_owned());
            Verdict { valid: true, checked, reason: None }
        }
        Err(_) if editor_newline => {
            checked
                .push("request_body_sha256 matches the body without its final line end (no Content-Length said where it ends)".to_owned());
            Verdict { valid: true, checked, reason: None }
        }
        Err(_) => Verdict::fail(
            checked,
            format!(
                "body changed: the signed request_body_sha256 does not match this body (it hashes to {}); a proxy that re-encodes JSON, or an edited capture",
                signature::body_sha256(&request.body)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use fusionhook_fusionauth::signature::EncodingKey;

    use super::*;

    fn captured(body: &str, secret: &[u8], line_end: &str) -> Vec<u8> {
        let token = signature::sign(body.as_bytes(), Algorithm::HS256, Some("k1"), &EncodingKey::from_secret(secret)).unwrap_or_default();
        let head = [
            "POST /events HTTP/1.1",
            "Host: r",
            "Content-Type: application/json",
            &format!("Content-Length: {}", body.len()),
            &format!("X-FusionAuth-Signature-JWT: {token}"),
        ];
        format!("{}{line_end}{line_end}{body}", head.join(line_end)).into_bytes()
    }

    #[test]
    fn a_captured_request_passes_with_crlf_or_lf_and_says_why_it_fails_otherwise() {
        let body = r#"{"event":{"type":"user.delete","id":"x"}}"#;
        for end in ["\r\n", "\n"] {
            let raw = captured(body, b"s3cret", end);
            let v = verify(&raw, &Key::Hmac(b"s3cret\n".to_vec()), &[]);
            assert!(v.valid, "{end:?}: {v:?}");
            let mut with_newline = raw.clone();
            with_newline.push(b'\n');
            assert!(verify(&with_newline, &Key::Hmac(b"s3cret".to_vec()), &[]).valid, "an editor's final newline is not the body");
        }
        let raw = captured(body, b"s3cret", "\r\n");
        let wrong = verify(&raw, &Key::Hmac(b"other".to_vec()), &[]);
        assert!(wrong.reason.unwrap_or_default().contains("wrong secret"));
        let not_allowed = verify(&raw, &Key::Hmac(b"s3cret".to_vec()), &["HS512".into()]);
        assert!(not_allowed.reason.unwrap_or_default().contains("not allowed"));
        let changed = String::from_utf8(raw).unwrap_or_default().replace("user.delete", "user.create");
        let v = verify(changed.as_bytes(), &Key::Hmac(b"s3cret".to_vec()), &[]);
        assert!(v.reason.unwrap_or_default().starts_with("body changed"));
        let unsigned = b"POST /events HTTP/1.1\nContent-Length: 2\n\n{}";
        assert!(verify(unsigned, &Key::Hmac(b"s".to_vec()), &[]).reason.unwrap_or_default().contains("no X-FusionAuth-Signature-JWT"));
        assert!(!verify(b"garbage", &Key::Hmac(b"s".to_vec()), &[]).valid);
        let cut = b"POST /events HTTP/1.1\nContent-Length: 20\n\n{}";
        assert!(verify(cut, &Key::Hmac(b"s".to_vec()), &[]).reason.unwrap_or_default().contains("cut"));
    }
}

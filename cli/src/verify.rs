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

/// Parses the request line, headers, blank line and body (CRLF or LF) as
/// strictly as an HTTP/1.1 server reads one request: a capture a server would
/// refuse, or read as something else than this one event, is no proof that
/// FusionAuth sent it.
fn parse(raw: &[u8]) -> Result<Request, String> {
    let (head, body) = split_head(raw)?;
    let head = std::str::from_utf8(head).map_err(|_| "the request line and headers are not text".to_owned())?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    check_request_line(lines.next().unwrap_or_default())?;
    let headers = lines.map(parse_header).collect::<Result<Vec<_>, _>>()?;
    let (body, length) = frame_body(&headers, body)?;
    Ok(Request { headers, body, length })
}

/// The head (request line and headers) and what follows the blank line.
fn split_head(raw: &[u8]) -> Result<(&[u8], &[u8]), String> {
    match (find(raw, b"\r\n\r\n"), find(raw, b"\n\n")) {
        (Some(crlf), Some(lf)) if lf < crlf => Ok((&raw[..lf], &raw[lf + 2..])),
        (Some(crlf), _) => Ok((&raw[..crlf], &raw[crlf + 4..])),
        (None, Some(lf)) => Ok((&raw[..lf], &raw[lf + 2..])),
        (None, None) => Err("no blank line after the headers: give the whole raw request (request line, headers, blank line, body)".into()),
    }
}

/// Checks `METHOD SP request-target SP HTTP-version` (RFC 9112 §3): servers
/// refuse other shapes, or read them as another method or protocol.
fn check_request_line(line: &str) -> Result<(), String> {
    if line.is_empty() {
        return Err("the request line is empty: the capture starts with `POST /path HTTP/1.1`".into());
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let line = printable(line);
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("the request line `{line}` has extra spaces: exactly one space goes between method, target and version"));
    }
    let [method, target, version] = parts.as_slice() else {
        return Err(match parts.len() {
            ..3 => format!("the request line `{line}` has no HTTP version (HTTP/0.9 style): it reads `POST /path HTTP/1.1`"),
            n => format!("the request line `{line}` has {n} parts, not three (method, target, version): a space in the target?"),
        });
    };
    if *method != "POST" {
        return Err(if method.eq_ignore_ascii_case("POST") {
            format!("the method is `{method}`: methods are case-sensitive, a server does not read it as POST")
        } else if !is_token(method) {
            format!("the method `{}` is not an HTTP method (a token of letters, digits and !#$%&'*+-.^_`|~)", printable(method))
        } else {
            format!("the request line is `{line}`, not a POST: FusionAuth POSTs events")
        });
    }
    let lower = target.to_ascii_lowercase();
    let form = target.starts_with('/') || lower.starts_with("http://") || lower.starts_with("https://");
    if !form || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("the request target `{}` is not a path (`/…`) or an absolute http(s) URL", printable(target)));
    }
    if !matches!(*version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(format!(
            "the HTTP version is `{}`, not HTTP/1.1 or HTTP/1.0 (case-sensitive; an HTTP/2 request has no such text form: capture HTTP/1.1, as FusionAuth sends it)",
            printable(version)
        ));
    }
    Ok(())
}

/// A `name: value` line, the name lower-case and the value without its
/// surrounding spaces.
fn parse_header(line: &str) -> Result<(String, String), String> {
    let (name, value) = line.split_once(':').ok_or_else(|| format!("not a header line: `{}`", printable(line)))?;
    // Servers refuse whitespace before the colon and folded lines (RFC 9112
    // §5.1, §5.2); trimming them would count a header no server reads.
    if !is_token(name) {
        return Err(format!(
            "header line `{}`: the name `{}` is not a token (a space before the colon, or a folded line), which a server refuses",
            printable(line),
            printable(name)
        ));
    }
    Ok((name.to_ascii_lowercase(), value.trim_matches([' ', '\t']).to_owned()))
}

/// An RFC 9110 §5.6.2 token, as method and header names are.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The body a server reads (RFC 9112 §6), and its Content-Length if given.
/// Any framing servers may read differently is refused rather than guessed.
fn frame_body(headers: &[(String, String)], body: &[u8]) -> Result<(Vec<u8>, Option<usize>), String> {
    let values = |name: &str| headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    let lengths = values("content-length");
    let codings = values("transfer-encoding");
    if !codings.is_empty() {
        return Err(transfer_encoding_refusal(&codings, !lengths.is_empty()));
    }
    match lengths.as_slice() {
        // Without a Content-Length the rest of the file is the body: hand-made
        // captures often lack one (verify then allows an editor's final newline).
        [] => Ok((body.to_vec(), None)),
        [length] => {
            let length = content_length(length)?;
            Ok((declared_body(body, length)?.to_vec(), Some(length)))
        }
        // Even equal values: RFC 9112 §6.3 lets a recipient refuse them, and
        // proxies that merge or pick one disagree on the body.
        _ => Err(format!(
            "Content-Length is given {} times ({}): a repeated Content-Length is refused, even with equal values",
            lengths.len(),
            lengths.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Why a request with Transfer-Encoding is refused. FusionAuth sends a
/// Content-Length, so any Transfer-Encoding means the capture is not its request
/// as sent; only a lone `chunked` gets the hint to capture it decoded.
fn transfer_encoding_refusal(values: &[&str], with_length: bool) -> String {
    let joined = values.join(", ");
    if with_length {
        // RFC 9112 §6.1: the classic request smuggling shape.
        return format!(
            "both Transfer-Encoding (`{joined}`) and Content-Length: a request with both is refused, servers disagree on where its body ends"
        );
    }
    let codings: Vec<&str> = joined.split(',').map(|c| c.trim_matches([' ', '\t'])).collect();
    if let [only] = codings.as_slice()
        && only.eq_ignore_ascii_case("chunked")
    {
        return "the body is chunked (Transfer-Encoding: chunked): capture it decoded; FusionAuth sends a Content-Length".into();
    }
    format!(
        "Transfer-Encoding is `{joined}`: anything but `chunked` as the only coding is refused (another coding changes the signed bytes)"
    )
}

/// A Content-Length value: digits only (RFC 9112 §6.2), as Rust's own
/// parsing also takes a leading `+`, which servers refuse.
fn content_length(value: &str) -> Result<usize, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("Content-Length `{value}` is not a number (digits only)"));
    }
    value.parse().map_err(|_| format!("Content-Length `{value}` is too large"))
}

/// The `length` bytes a server reads as the body.
fn declared_body(body: &[u8], length: usize) -> Result<&[u8], String> {
    let Some((declared, rest)) = body.split_at_checked(length) else {
        return Err(format!("the body is {} bytes, Content-Length says {length}: the capture is cut", body.len()));
    };
    // A lone "\n" or "\r\n" after the body is tolerated: editors add one on
    // saving, and a server skips an empty line before a request line (RFC 9112
    // §2.2). Anything else is what a server reads as a further request, which
    // the signature does not cover, so it is refused rather than dropped.
    if matches!(rest, b"" | b"\n" | b"\r\n") {
        return Ok(declared);
    }
    let shown = printable(&String::from_utf8_lossy(&rest[..rest.len().min(40)]));
    let more = if rest.len() > 40 { "…" } else { "" };
    Err(format!(
        "{} bytes follow the {length}-byte body Content-Length declares (`{shown}{more}`): a server reads them as another request, which this signature does not cover; capture only the one request",
        rest.len()
    ))
}

/// `text` for a message: control characters (a stray CR, a tab) escaped so
/// they show, quotes left alone so a JSON fragment stays readable.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() }).collect()
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
    match check(raw, key, algorithms, &mut checked) {
        Ok(()) => Verdict { valid: true, checked, reason: None },
        Err(reason) => Verdict::fail(checked, reason),
    }
}

/// The checks in order, each passed one said in `checked`; the first that
/// fails says why.
fn check(raw: &[u8], key: &Key, algorithms: &[String], checked: &mut Vec<String>) -> Result<(), String> {
    let request = parse(raw)?;
    checked.push(format!("a POST with a {}-byte body", request.body.len()));
    let allowed = allowed(key, algorithms)?;
    let Some((_, token)) = request.headers.iter().find(|(n, _)| n == signature::SIGNATURE_HEADER) else {
        return Err("no X-FusionAuth-Signature-JWT header: FusionAuth signs only when the webhook's signatureConfiguration is enabled (spec.auth.signature)".to_owned());
    };
    let header = inspected(token, key, &allowed)?;
    checked.push(format!("algorithm {:?} is allowed", header.alg));
    let decoding = decoding_key(key, &header, checked)?;
    let hash = match signature::verify_token(token, &decoding, header.alg) {
        Ok(hash) => hash,
        Err(SignatureError::BadSignature) => {
            return Err(match key {
                Key::Hmac(_) => "wrong secret: the signature was made with another HMAC secret",
                Key::Jwks(_) => "the signature does not verify with the published key",
            }
            .to_owned());
        }
        Err(e) => return Err(e.to_string()),
    };
    checked.push("the signature verifies".to_owned());
    checked.push(body_matches(&request, &hash)?.to_owned());
    Ok(())
}

/// The algorithms allowed: those named, or the key kind's.
fn allowed(key: &Key, algorithms: &[String]) -> Result<Vec<Algorithm>, String> {
    if algorithms.is_empty() {
        return Ok(defaults(key));
    }
    algorithms
        .iter()
        .map(|name| Algorithm::from_str(name).map_err(|_| format!("--algorithm {name}: not an algorithm (HS256, RS256, ES256, EdDSA, …)")))
        .collect()
}

/// The token's header, its algorithm allowed (with a hint when the key kind
/// cannot check that algorithm).
fn inspected(token: &str, key: &Key, allowed: &[Algorithm]) -> Result<signature::TokenHeader, String> {
    match signature::inspect(token, allowed) {
        Ok(h) => Ok(h),
        Err(SignatureError::AlgorithmNotAllowed(alg)) => {
            let hint = match key {
                Key::Jwks(_) if signature::is_hmac(alg) => {
                    ": an HMAC signature is checked with --hmac-secret-file (HMAC keys are never in the JWKS)"
                }
                Key::Hmac(_) if !signature::is_hmac(alg) => ": an asymmetric signature is checked with --jwks-url",
                _ => "",
            };
            Err(format!("the signature uses {alg:?}, which is not allowed here (allowed: {allowed:?}){hint}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The key to verify with: the HMAC secret (line ends trimmed), or the
/// JWKS key the token's `kid` names, published for its algorithm.
fn decoding_key(key: &Key, header: &signature::TokenHeader, checked: &mut Vec<String>) -> Result<DecodingKey, String> {
    match key {
        Key::Hmac(secret) => {
            let mut secret = secret.as_slice();
            while let [rest @ .., b'\n' | b'\r'] = secret {
                secret = rest;
            }
            if secret.is_empty() {
                return Err("the HMAC secret file is empty (the receiver refuses an empty secret too)".to_owned());
            }
            Ok(DecodingKey::from_secret(secret))
        }
        Key::Jwks(keys) => {
            let Some(kid) = header.kid.as_deref() else { return Err("the signature has no key id (kid)".to_owned()) };
            let Some(published) = keys.get(kid) else {
                let known: Vec<&String> = keys.keys().collect();
                return Err(format!("unknown kid `{kid}`: the JWKS publishes {known:?} (a rotated key, or another FusionAuth)"));
            };
            if published.alg.is_some_and(|a| a != header.alg) {
                return Err(format!("key `{kid}` is published for {:?}, the signature says {:?}", published.alg, header.alg));
            }
            checked.push(format!("kid `{kid}` is published"));
            Ok(published.key.clone())
        }
    }
}

/// Whether the signed body hash is the body's: as captured, or (without a
/// Content-Length) without a final line end an editor may have added.
fn body_matches(request: &Request, hash: &signature::SignedBodyHash) -> Result<&'static str, String> {
    if hash.check(&request.body).is_ok() {
        return Ok("request_body_sha256 matches the body");
    }
    let trimmed = request.body.strip_suffix(b"\r\n").or_else(|| request.body.strip_suffix(b"\n"));
    if request.length.is_none() && trimmed.is_some_and(|t| hash.check(t).is_ok()) {
        return Ok("request_body_sha256 matches the body without its final line end (no Content-Length said where it ends)");
    }
    Err(format!(
        "body changed: the signed request_body_sha256 does not match this body (it hashes to {}); a proxy that re-encodes JSON, or an edited capture",
        signature::body_sha256(&request.body)
    ))
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

    const BODY: &str = r#"{"event":{"type":"user.delete","id":"x"}}"#;

    /// A CRLF capture of BODY signed with `s3cret`: `request_line`, `headers`
    /// and the signature header, blank line, BODY, then `after`.
    fn capture(request_line: &str, headers: &[&str], after: &str) -> Vec<u8> {
        let token = signature::sign(BODY.as_bytes(), Algorithm::HS256, None, &EncodingKey::from_secret(b"s3cret")).unwrap_or_default();
        let signature = format!("X-FusionAuth-Signature-JWT: {token}");
        let head: Vec<&str> = [request_line].into_iter().chain(headers.iter().copied()).chain([signature.as_str()]).collect();
        format!("{}\r\n\r\n{BODY}{after}", head.join("\r\n")).into_bytes()
    }

    fn with_length(request_line: &str) -> Vec<u8> {
        capture(request_line, &["Host: r", &format!("Content-Length: {}", BODY.len())], "")
    }

    /// The reason `raw` is refused; fails the test when it verifies.
    fn refused(raw: &[u8]) -> String {
        let v = verify(raw, &Key::Hmac(b"s3cret".to_vec()), &[]);
        assert!(!v.valid, "verified: {}", String::from_utf8_lossy(raw));
        v.reason.unwrap_or_default()
    }

    fn valid(raw: &[u8]) -> bool {
        verify(raw, &Key::Hmac(b"s3cret".to_vec()), &[]).valid
    }

    #[test]
    fn a_well_formed_capture_still_verifies_with_or_without_a_final_line_end() {
        let length = format!("Content-Length: {}", BODY.len());
        for line in ["POST /events HTTP/1.1", "POST /events?x=1 HTTP/1.0", "POST http://r/events HTTP/1.1"] {
            assert!(valid(&with_length(line)), "{line}");
        }
        for after in ["\n", "\r\n"] {
            assert!(valid(&capture("POST /events HTTP/1.1", &[&length], after)), "Content-Length and {after:?}");
            assert!(valid(&capture("POST /events HTTP/1.1", &["Host: r"], after)), "no Content-Length and {after:?}");
        }
        assert!(valid(&capture("POST /events HTTP/1.1", &["Host:r", "X-Empty:", "Accept:\t*/*\t"], "")));
    }

    #[test]
    fn an_event_after_the_content_length_bytes_is_refused() {
        let length = format!("Content-Length: {}", BODY.len());
        let appended = r#"{"event":{"type":"user.create","id":"y"}}"#;
        let reason = refused(&capture("POST /events HTTP/1.1", &[&length], appended));
        assert!(
            reason.contains(&format!("{} bytes follow the {}-byte body Content-Length declares", appended.len(), BODY.len())),
            "{reason}"
        );
        assert!(reason.contains("user.create") && reason.contains("another request"), "{reason}");
        for after in ["\n\n", "\r\n\r\n", " ", "\r", "\nPOST /events HTTP/1.1"] {
            assert!(refused(&capture("POST /events HTTP/1.1", &[&length], after)).contains("bytes follow"), "{after:?}");
        }
    }

    #[test]
    fn a_repeated_content_length_is_refused_even_with_equal_values() {
        let length = format!("Content-Length: {}", BODY.len());
        let reason = refused(&capture("POST /events HTTP/1.1", &[&length, &length], ""));
        let n = BODY.len();
        assert!(
            reason.contains(&format!("Content-Length is given 2 times (`{n}`, `{n}`)")) && reason.contains("even with equal values"),
            "{reason}"
        );
        let other = refused(&capture("POST /events HTTP/1.1", &[&length, "content-length: 2"], ""));
        assert!(other.contains("given 2 times"), "{other}");
    }

    #[test]
    fn a_content_length_of_more_than_digits_is_refused() {
        for value in [format!("+{}", BODY.len()), format!("{0}, {0}", BODY.len()), String::new(), "-1".into()] {
            let reason = refused(&capture("POST /events HTTP/1.1", &[&format!("Content-Length: {value}")], ""));
            assert!(reason.contains(&format!("Content-Length `{value}` is not a number")), "{reason}");
        }
        let huge = refused(&capture("POST /events HTTP/1.1", &["Content-Length: 99999999999999999999999"], ""));
        assert!(huge.contains("too large"), "{huge}");
    }

    #[test]
    fn transfer_encoding_other_than_a_lone_chunked_is_refused() {
        for (headers, shown) in [
            (&["Transfer-Encoding: gzip, chunked"][..], "gzip, chunked"),
            (&["Transfer-Encoding: chunked, chunked"][..], "chunked, chunked"),
            (&["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"][..], "gzip, chunked"),
            (&["Transfer-Encoding: identity"][..], "identity"),
        ] {
            let reason = refused(&capture("POST /events HTTP/1.1", headers, ""));
            assert!(
                reason.contains(&format!("Transfer-Encoding is `{shown}`: anything but `chunked` as the only coding is refused")),
                "{reason}"
            );
        }
    }

    #[test]
    fn transfer_encoding_with_a_content_length_is_refused() {
        let length = format!("Content-Length: {}", BODY.len());
        for coding in ["chunked", "gzip, chunked"] {
            let reason = refused(&capture("POST /events HTTP/1.1", &[&format!("Transfer-Encoding: {coding}"), &length], ""));
            assert!(reason.contains(&format!("both Transfer-Encoding (`{coding}`) and Content-Length")), "{reason}");
        }
    }

    #[test]
    fn a_chunked_body_is_still_refused_with_the_hint_to_capture_it_decoded() {
        let reason = refused(&capture("POST /events HTTP/1.1", &["Transfer-Encoding: Chunked"], ""));
        assert!(reason.contains("the body is chunked") && reason.contains("capture it decoded"), "{reason}");
    }

    #[test]
    fn a_request_line_without_a_version_is_refused() {
        for line in ["POST /events", "POST"] {
            assert!(refused(&with_length(line)).contains(&format!("the request line `{line}` has no HTTP version")), "{line}");
        }
        assert!(refused(&with_length("")).contains("the request line is empty"));
    }

    #[test]
    fn a_request_line_with_extra_spaces_or_parts_is_refused() {
        for line in ["POST  /events HTTP/1.1", " POST /events HTTP/1.1", "POST /events HTTP/1.1 ", "POST /events  HTTP/1.1"] {
            assert!(refused(&with_length(line)).contains(&format!("the request line `{line}` has extra spaces")), "{line:?}");
        }
        let reason = refused(&with_length("POST /my events HTTP/1.1"));
        assert!(reason.contains("has 4 parts, not three"), "{reason}");
    }

    #[test]
    fn a_lowercase_or_garbage_method_is_refused() {
        assert!(refused(&with_length("post /events HTTP/1.1")).contains("the method is `post`: methods are case-sensitive"));
        assert!(refused(&with_length("P(ST /events HTTP/1.1")).contains("the method `P(ST` is not an HTTP method"));
        assert!(refused(&with_length("GET /events HTTP/1.1")).contains("not a POST"));
    }

    #[test]
    fn an_http2_or_unknown_version_is_refused() {
        for version in ["HTTP/2", "HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.1\r", "HTTP/0.9"] {
            let reason = refused(&with_length(&format!("POST /events {version}")));
            assert!(reason.contains(&format!("the HTTP version is `{}`, not HTTP/1.1 or HTTP/1.0", printable(version))), "{reason}");
        }
    }

    #[test]
    fn a_request_target_that_is_not_a_path_or_url_is_refused() {
        for target in ["events", "*", "r:80", "/ev\tents"] {
            let reason = refused(&with_length(&format!("POST {target} HTTP/1.1")));
            assert!(reason.contains(&format!("the request target `{}` is not a path", printable(target))), "{reason}");
        }
    }

    #[test]
    fn a_header_name_with_whitespace_or_a_folded_line_is_refused() {
        let length = format!("Content-Length : {}", BODY.len());
        assert!(refused(&capture("POST /events HTTP/1.1", &[&length], "")).contains("the name `Content-Length ` is not a token"));
        let folded = refused(&capture("POST /events HTTP/1.1", &["Accept: text/plain,", " application/json: x"], ""));
        assert!(folded.contains("is not a token (a space before the colon, or a folded line)"), "{folded}");
    }
}

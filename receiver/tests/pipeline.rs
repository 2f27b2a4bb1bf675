//! The receiver's pipeline driven in process (`tower::ServiceExt::oneshot`),
//! against real sinks on loopback: the bad-input table, signatures, routing,
//! deduplication, metrics and the log action.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use base64::Engine;
use fusionhook_fusionauth::signature::{self, Algorithm, EncodingKey, body_sha256};
use fusionhook_receiver::{AppState, Config, app};
use fusionhook_tests::events::{self, sign_hmac};
use fusionhook_tests::todo::{TodoService, TodoStore};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "API-KEY";
const HMAC: &str = "hmac-shared-secret";
const ALICE: &str = "00000000-0000-0001-0000-00000000a11c";
const BOB: &str = "00000000-0000-0001-0000-000000000b0b";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fusionauth/tests/fixtures/keys");
const SIG: &str = "x-fusionauth-signature-jwt";

struct Harness {
    app: Router,
    todos: Arc<TodoStore>,
    lines: Arc<Mutex<Vec<String>>>,
    _service: TodoService,
}

impl Harness {
    /// `yaml` may say `TODO` for the todo service's base URL.
    async fn new(yaml: &str) -> Self {
        Self::with_vars(yaml, &[]).await
    }

    async fn with_vars(yaml: &str, vars: &[(&str, String)]) -> Self {
        let todos = TodoStore::with(&[(ALICE, &["buy milk", "call mom"]), (BOB, &["fix bike"])]);
        let service = TodoService::start(todos.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut yaml = yaml.replace("TODO", &format!("http://{}", service.addr));
        for (name, value) in vars {
            yaml = yaml.replace(name, value);
        }
        let config = Config::from_yaml(&yaml).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink_lines = lines.clone();
        let state = AppState::new(config, Arc::new(move |line: &str| sink_lines.lock().unwrap().push(line.to_owned())), None).unwrap();
        Self { app: app(Arc::new(state)), todos, lines, _service: service }
    }

    async fn send(&self, request: Post) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request.build()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self.app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn log_lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// A request under construction; starts as FusionAuth would send `body`.
struct Post {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    streamed: bool,
}

impl Post {
    /// Right key, JSON, HS256 signature over `body`.
    fn fusionauth(body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        let sig = sign_hmac(&body, Algorithm::HS256, "hmac-1", HMAC);
        Self {
            headers: vec![("content-type", "application/json".into()), ("authorization", KEY.into()), (SIG, sig)],
            body,
            streamed: false,
        }
    }

    fn set(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self = self.without(name);
        self.headers.push((name, value.into()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    /// Sends other bytes than the ones the headers were made for.
    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// Sends the body as a stream without Content-Length.
    fn streamed(mut self) -> Self {
        self.streamed = true;
        self
    }

    fn build(self) -> Request<Body> {
        let mut builder = Request::post("/events");
        for (name, value) in &self.headers {
            builder = builder.header(*name, value);
        }
        let body = if self.streamed {
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
                self.body.chunks(1000).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
            Body::from_stream(futures::stream::iter(chunks))
        } else {
            Body::from(self.body)
        };
        builder.body(body).unwrap()
    }
}

fn code(answer: &Value) -> &str {
    answer["errors"][0]["code"].as_str().unwrap_or("")
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn alg_none_token(body: &[u8], kid: &str) -> String {
    let header = b64url(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#).as_bytes());
    let claims = b64url(format!(r#"{{"request_body_sha256":"{}"}}"#, body_sha256(body)).as_bytes());
    format!("{header}.{claims}.")
}

fn read_key(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}/{name}")).unwrap()
}

const STANDARD: &str = r#"
auth:
  authorization: API-KEY
  signature:
    algorithms: [HS256]
    hmacSecret: hmac-shared-secret
maxBodyBytes: 4096
routes:
  - name: todo-cleanup
    events: ["user.delete"]
    http:
      method: DELETE
      url: "TODO/users/{{event.user.id}}/todos"
      timeoutMs: 1000
"#;

#[tokio::test]
async fn bad_input_table() {
    let h = Harness::new(STANDARD).await;
    let good = events::user_delete("11111111-1111-4111-8111-111111111111", ALICE);
    let huge = events::event("user.delete", "22222222-2222-4222-8222-222222222222", json!({"pad": "x".repeat(5000)}));
    let mut altered = good.clone();
    let at = altered.len() - 5;
    altered[at] ^= 1;
    let fa = || Post::fusionauth(good.clone());

    let cases: Vec<(&str, Post, StatusCode, &str)> = vec![
        ("empty body", Post::fusionauth(Vec::new()), StatusCode::BAD_REQUEST, "[emptyBody]"),
        ("invalid JSON", Post::fusionauth(&b"{\"event\": {"[..]), StatusCode::BAD_REQUEST, "[invalidJson]"),
        ("JSON array", Post::fusionauth(&b"[1]"[..]), StatusCode::BAD_REQUEST, "[invalidJson]"),
        ("no event", Post::fusionauth(&br#"{"evnt":{}}"#[..]), StatusCode::BAD_REQUEST, "[missing]event"),
        ("event is a string", Post::fusionauth(&br#"{"event":"user.delete"}"#[..]), StatusCode::BAD_REQUEST, "[invalid]event"),
        ("event without type", Post::fusionauth(&br#"{"event":{"id":"x"}}"#[..]), StatusCode::BAD_REQUEST, "[invalid]event"),
        (
            "event.id not a string",
            Post::fusionauth(&br#"{"event":{"id":7,"type":"user.delete"}}"#[..]),
            StatusCode::BAD_REQUEST,
            "[invalid]event",
        ),
        ("huge body, declared", Post::fusionauth(huge.clone()), StatusCode::PAYLOAD_TOO_LARGE, "[tooLarge]"),
        ("huge body, streamed", Post::fusionauth(huge.clone()).streamed(), StatusCode::PAYLOAD_TOO_LARGE, "[tooLarge]"),
        ("wrong content type", fa().set("content-type", "text/plain"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "[unsupportedMediaType]"),
        ("no content type", fa().without("content-type"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "[unsupportedMediaType]"),
        ("wrong Authorization", fa().set("authorization", "API-KEY-2"), StatusCode::UNAUTHORIZED, "[notAuthorized]"),
        ("Authorization prefix only", fa().set("authorization", "API-KE"), StatusCode::UNAUTHORIZED, "[notAuthorized]"),
        ("missing Authorization", fa().without("authorization"), StatusCode::UNAUTHORIZED, "[notAuthorized]"),
        ("signature missing", fa().without(SIG), StatusCode::UNAUTHORIZED, "[notAuthorized]"),
        ("signature garbled", fa().set(SIG, "eyJhbGciOi.garbled.!!"), StatusCode::UNAUTHORIZED, "[notAuthorized]"),
        (
            "signature by the wrong key",
            fa().set(SIG, sign_hmac(&good, Algorithm::HS256, "hmac-1", "not-the-secret")),
            StatusCode::UNAUTHORIZED,
            "[notAuthorized]",
        ),
        ("body altered by one byte", fa().body(altered), StatusCode::UNAUTHORIZED, "[notAuthorized]"),
        ("alg none", fa().set(SIG, alg_none_token(&good, "hmac-1")), StatusCode::UNAUTHORIZED, "[notAuthorized]"),
        (
            "HS384 when HS256 is pinned",
            fa().set(SIG, sign_hmac(&good, Algorithm::HS384, "hmac-1", HMAC)),
            StatusCode::UNAUTHORIZED,
            "[notAuthorized]",
        ),
    ];

    let n_cases = cases.len();
    for (name, request, status, expected_code) in cases {
        let (got, answer) = h.send(request).await;
        assert_eq!(got, status, "{name}: {answer}");
        assert_eq!(code(&answer), expected_code, "{name}: {answer}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(answer, json!({"errors":[{"code":"[notAuthorized]"}]}), "{name}: the 401 body is exactly FusionAuth's example");
        } else {
            assert!(answer["errors"][0]["message"].is_string(), "{name}: a message says what is wrong");
        }
    }
    // Nothing above reached the todo service, and the receiver is healthy.
    assert!(h.todos.received().is_empty());
    assert_eq!(h.todos.todos(ALICE).len(), 2);
    assert_eq!(h.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(h.get("/readyz").await.0, StatusCode::OK);

    // And FusionAuth's request still works.
    let (status, _) = h.send(fa()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.todos.todos(ALICE).is_empty());
    assert_eq!(h.todos.todos(BOB).len(), 1);

    let (_, metrics) = h.get("/metrics").await;
    for expected in [
        r#"fusionhook_receiver_requests_total{outcome="handled"} 1"#.to_owned(),
        r#"fusionhook_receiver_requests_total{outcome="bad_request"} 7"#.to_owned(),
        r#"fusionhook_receiver_requests_total{outcome="unauthorized"} 9"#.to_owned(),
        r#"fusionhook_receiver_auth_failures_total{reason="signature_body_mismatch"} 1"#.to_owned(),
        r#"fusionhook_receiver_auth_failures_total{reason="authorization_wrong"} 2"#.to_owned(),
        r#"fusionhook_receiver_events_total{type="user.delete",outcome="handled"} 1"#.to_owned(),
        r#"fusionhook_receiver_action_duration_seconds_count{route="todo-cleanup",action="http",outcome="success"} 1"#.to_owned(),
    ] {
        assert!(metrics.contains(&expected), "missing {expected} in\n{metrics}");
    }
    assert_eq!(n_cases, 7 + 2 + 2 + 9, "every case is counted in the metrics above");
}

#[tokio::test]
async fn events_without_id_are_handled_but_not_deduplicated() {
    let h = Harness::new(STANDARD).await;
    let body = br#"{"event":{"type":"user.delete","user":{"id":"00000000-0000-0001-0000-00000000a11c"}}}"#.to_vec();
    assert_eq!(h.send(Post::fusionauth(body.clone())).await.0, StatusCode::OK);
    assert_eq!(h.send(Post::fusionauth(body)).await.0, StatusCode::OK);
    assert_eq!(h.todos.count(&Method::DELETE), 2, "no id: each delivery runs the actions");
}

#[tokio::test]
async fn duplicates_run_once_even_when_concurrent() {
    let h = Harness::new(STANDARD).await;
    h.todos.delay_by(Some(Duration::from_millis(300)));
    let body = events::user_delete("33333333-3333-4333-8333-333333333333", ALICE);
    // FusionAuth retrying while the first delivery is still running.
    let (first, second) = tokio::join!(h.send(Post::fusionauth(body.clone())), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.send(Post::fusionauth(body.clone())).await
    });
    assert_eq!(first.0, StatusCode::OK);
    assert_eq!(second.0, StatusCode::OK);
    // And a later retry.
    assert_eq!(h.send(Post::fusionauth(body)).await.0, StatusCode::OK);
    assert_eq!(h.todos.count(&Method::DELETE), 1);
    let (_, metrics) = h.get("/metrics").await;
    assert!(metrics.contains("fusionhook_receiver_duplicates_total 2"), "{metrics}");
}

#[tokio::test]
async fn a_failed_action_answers_500_and_a_retry_after_recovery_succeeds() {
    let h = Harness::new(STANDARD).await;
    let body = events::user_delete("44444444-4444-4444-8444-444444444444", BOB);
    h.todos.fail_with(Some(StatusCode::SERVICE_UNAVAILABLE));
    let (status, answer) = h.send(Post::fusionauth(body.clone())).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer["errors"][0]["code"], "[actionFailed]");
    assert_eq!(answer["errors"][0]["route"], "todo-cleanup");
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("DELETE") && message.contains("503"), "{message}");
    assert!(!message.contains(BOB), "no event data in the answer: {message}");
    assert!(!message.contains("127.0.0.1"), "no internal host names in the answer (FusionAuth's event log shows it): {message}");
    assert_eq!(h.todos.todos(BOB).len(), 1);

    h.todos.fail_with(None);
    assert_eq!(h.send(Post::fusionauth(body)).await.0, StatusCode::OK);
    assert!(h.todos.todos(BOB).is_empty());
}

#[tokio::test]
async fn a_placeholder_without_value_fails_the_action_with_a_clear_message() {
    let h = Harness::new(STANDARD).await;
    let body = events::event("user.delete", "55555555-5555-4555-8555-555555555555", json!({"user": {"email": "x@example.test"}}));
    let (status, answer) = h.send(Post::fusionauth(body)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer["errors"][0]["message"], "route todo-cleanup: placeholder {{event.user.id}} is missing from the event");
    assert!(h.todos.received().is_empty(), "no request with an empty path segment was sent");
}

#[tokio::test]
async fn several_routes_run_and_a_retry_runs_only_the_failed_ones() {
    let yaml = r#"
auth: {authorization: API-KEY}
routes:
  - name: audit
    events: ["*"]
    log: {}
  - name: forward
    events: ["user.*"]
    http:
      url: "TODO/hooks/{{event.type}}?tenant={{event.tenantId}}"
      headers:
        X-Event-Id: "{{event.id}}"
        X-Api-Token: {valueFile: TOKEN_FILE}
  - name: groups-only
    events: ["group.*"]
    log: {}
"#;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sink-token\n").unwrap();
    let h = Harness::with_vars(yaml, &[("TOKEN_FILE", token.display().to_string())]).await;
    let body = events::user_delete("66666666-6666-4666-8666-666666666666", ALICE);

    h.todos.fail_with(Some(StatusCode::BAD_GATEWAY));
    let (status, answer) = h.send(Post::fusionauth(body.clone())).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer["errors"].as_array().unwrap().len(), 1, "only the failed route is reported: {answer}");
    assert_eq!(h.log_lines().len(), 1);

    h.todos.fail_with(None);
    assert_eq!(h.send(Post::fusionauth(body.clone())).await.0, StatusCode::OK);
    assert_eq!(h.log_lines().len(), 1, "the log route succeeded before and is not run again");

    let received = h.todos.received();
    let last = received.last().unwrap();
    assert_eq!(last.method, Method::POST);
    assert_eq!(last.uri, format!("/hooks/user.delete?tenant={}", events::TENANT_ID));
    assert_eq!(last.body.as_ref(), body.as_slice(), "the original bytes are forwarded");
    assert_eq!(last.headers["content-type"], "application/json");
    assert_eq!(last.headers["x-event-id"], "66666666-6666-4666-8666-666666666666");
    assert_eq!(last.headers["x-api-token"], "sink-token");
    assert!(last.headers.get("authorization").is_none(), "FusionAuth's credentials are not forwarded");

    let line = &h.log_lines()[0];
    assert_eq!(line["type"], "user.delete");
    assert_eq!(line["id"], "66666666-6666-4666-8666-666666666666");
    assert_eq!(line["route"], "audit");
    assert!(!line.to_string().contains("example.test"), "no personal data by default: {line}");
}

#[tokio::test]
async fn log_fields_are_included_only_when_configured() {
    let yaml = "auth: {authorization: API-KEY}\nroutes: [{name: who, events: [user.delete], log: {fields: [event.user.email, event.user.missing]}}]";
    let h = Harness::new(yaml).await;
    let post = Post::fusionauth(events::user_delete("77777777-7777-4777-8777-777777777777", ALICE)).without(SIG);
    assert_eq!(h.send(post).await.0, StatusCode::OK);
    let line = &h.log_lines()[0];
    assert_eq!(line["fields"]["event.user.email"], format!("{ALICE}@example.test"));
    assert_eq!(line["fields"]["event.user.missing"], Value::Null);
}

#[tokio::test]
async fn unmatched_events_follow_the_config() {
    let accept = Harness::new(STANDARD).await;
    let body = events::event("user.create", "88888888-8888-4888-8888-888888888888", json!({"user": {"id": ALICE}}));
    assert_eq!(accept.send(Post::fusionauth(body.clone())).await.0, StatusCode::OK);
    let unknown = events::event("user.teleport", "99999999-9999-4999-8999-999999999999", json!({"destination": "mars"}));
    assert_eq!(accept.send(Post::fusionauth(unknown)).await.0, StatusCode::OK, "unknown types are accepted, not rejected");

    let reject = Harness::new(&format!("{STANDARD}\nunmatched: reject\n")).await;
    let (status, answer) = reject.send(Post::fusionauth(body)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&answer), "[noRoute]");
}

#[tokio::test]
async fn basic_credentials() {
    let yaml = "auth: {basic: {username: fusionauth, password: 'p@ss:word'}}\nroutes: [{name: l, events: ['*'], log: {}}]";
    let h = Harness::new(yaml).await;
    let body = events::user_delete("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", ALICE);
    let basic = |user: &str, pass: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")));
    let cases = [
        (basic("fusionauth", "p@ss:word"), StatusCode::OK),
        (basic("fusionauth", "p@ss:wore"), StatusCode::UNAUTHORIZED),
        (basic("fusionautH", "p@ss:word"), StatusCode::UNAUTHORIZED),
        ("Basic !!!not-base64".to_owned(), StatusCode::UNAUTHORIZED),
        ("Bearer abc".to_owned(), StatusCode::UNAUTHORIZED),
        (basic("fusionauth", "").replace("Basic ", "basic "), StatusCode::UNAUTHORIZED),
    ];
    for (header, expected) in cases {
        let post = Post::fusionauth(body.clone()).without(SIG).set("authorization", header.clone());
        assert_eq!(h.send(post).await.0, expected, "{header}");
    }
    let post = Post::fusionauth(body).without(SIG).without("authorization");
    assert_eq!(h.send(post).await.0, StatusCode::UNAUTHORIZED);
}

/// A JWKS endpoint like FusionAuth's `/.well-known/jwks.json`, counting fetches.
async fn jwks_server(document: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let document = document.clone();
            async move { ([("content-type", "application/json")], document) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fetches)
}

#[tokio::test]
async fn rsa_signatures_verified_with_fusionauths_jwks() {
    use std::sync::atomic::Ordering;
    let (url, fetches) = jwks_server(read_key("jwks.json")).await;
    let yaml = format!(
        "auth:\n  signature: {{algorithms: [RS256], jwksUrl: '{url}', jwksMinRefetchSeconds: 3600}}\nroutes: [{{name: l, events: ['*'], log: {{}}}}]"
    );
    let h = Harness::new(&yaml).await;
    let body = events::user_delete("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", ALICE);
    let rsa = EncodingKey::from_rsa_pem(read_key("rsa-private.pem").as_bytes()).unwrap();
    let rsa2 = EncodingKey::from_rsa_pem(read_key("rsa2-private.pem").as_bytes()).unwrap();
    let sign = |body: &[u8], kid: &str, key: &EncodingKey| signature::sign(body, Algorithm::RS256, Some(kid), key).unwrap();
    let post = |sig: String| Post::fusionauth(body.clone()).without("authorization").set(SIG, sig);

    assert_eq!(h.send(post(sign(&body, "rsa-1", &rsa))).await.0, StatusCode::OK);
    let cases = [
        ("signed by another RSA key", sign(&body, "rsa-1", &rsa2)),
        (
            "HS256 with the RSA public key as secret",
            signature::sign(&body, Algorithm::HS256, Some("rsa-1"), &EncodingKey::from_secret(read_key("rsa-public.pem").as_bytes()))
                .unwrap(),
        ),
        ("alg none", alg_none_token(&body, "rsa-1")),
        ("unknown kid", sign(&body, "rsa-unknown", &rsa)),
        ("a kid of another algorithm", sign(&body, "ec-1", &rsa)),
    ];
    for (name, sig) in cases {
        let (status, answer) = h.send(post(sig)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {answer}");
    }
    let mut altered = body.clone();
    altered[20] ^= 1;
    let (status, _) = h.send(post(sign(&body, "rsa-1", &rsa)).body(altered)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The unknown kid caused at most one refetch within the interval.
    assert!(fetches.load(Ordering::SeqCst) <= 2, "fetches: {}", fetches.load(Ordering::SeqCst));
    for _ in 0..20 {
        h.send(post(sign(&body, "forged-kid", &rsa))).await;
    }
    assert!(fetches.load(Ordering::SeqCst) <= 2, "a flood of unknown kids does not hit FusionAuth");
}

#[tokio::test]
async fn jwks_unreachable_is_a_500_so_fusionauth_retries() {
    let yaml = "auth:\n  signature: {algorithms: [ES256], jwksUrl: 'http://127.0.0.1:9/.well-known/jwks.json'}\nroutes: [{name: l, events: ['*'], log: {}}]";
    let h = Harness::new(yaml).await;
    let body = events::user_delete("cccccccc-cccc-4ccc-8ccc-cccccccccccc", ALICE);
    let ec = EncodingKey::from_ec_pem(read_key("ec-private.pem").as_bytes()).unwrap();
    let sig = signature::sign(&body, Algorithm::ES256, Some("ec-1"), &ec).unwrap();
    let (status, answer) = h.send(Post::fusionauth(body).without("authorization").set(SIG, sig)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&answer), "[signatureKeysUnavailable]");
}

#[tokio::test]
async fn optional_signatures_are_checked_when_present() {
    let yaml = "auth:\n  authorization: API-KEY\n  signature: {algorithms: [HS512], hmacSecret: hmac-shared-secret, required: false}\nroutes: [{name: l, events: ['*'], log: {}}]";
    let h = Harness::new(yaml).await;
    let body = events::user_delete("dddddddd-dddd-4ddd-8ddd-dddddddddddd", ALICE);
    assert_eq!(h.send(Post::fusionauth(body.clone()).without(SIG)).await.0, StatusCode::OK);
    let bad = Post::fusionauth(body.clone()).set(SIG, sign_hmac(&body, Algorithm::HS512, "k", "wrong"));
    assert_eq!(h.send(bad).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn during_a_rotation_the_previous_authorization_value_is_also_accepted() {
    let yaml = "auth: {authorization: new-value, previousAuthorization: old-value}\nroutes: [{name: l, events: ['*'], log: {}}]";
    let h = Harness::new(yaml).await;
    let body = |n: u8| events::user_delete(&format!("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbb{n:02x}"), ALICE);
    let send = |value: &str, n: u8| Post::fusionauth(body(n)).without(SIG).set("authorization", value);
    assert_eq!(h.send(send("new-value", 1)).await.0, StatusCode::OK);
    assert_eq!(h.send(send("old-value", 2)).await.0, StatusCode::OK);
    assert_eq!(h.send(send("other-value", 3)).await.0, StatusCode::UNAUTHORIZED);
    assert!(Config::from_yaml("auth: {previousAuthorization: x}").unwrap_err().to_string().contains("auth.previousAuthorization"));
}

#[tokio::test]
async fn during_a_key_rotation_the_previous_hmac_secret_and_its_algorithm_are_also_accepted() {
    let yaml = "auth:\n  authorization: API-KEY\n  signature: {algorithms: [HS512, HS256], hmacSecret: new-secret, previousHmacSecret: old-secret}\nroutes: [{name: l, events: ['*'], log: {}}]";
    let h = Harness::new(yaml).await;
    let body = |n: u8| events::user_delete(&format!("cccccccc-cccc-4ccc-8ccc-cccccccccc{n:02x}"), ALICE);
    let signed = |n: u8, alg: Algorithm, secret: &str| Post::fusionauth(body(n)).set(SIG, sign_hmac(&body(n), alg, "k", secret));
    assert_eq!(h.send(signed(1, Algorithm::HS512, "new-secret")).await.0, StatusCode::OK, "the new key");
    assert_eq!(h.send(signed(2, Algorithm::HS256, "old-secret")).await.0, StatusCode::OK, "the key FusionAuth still signs with");
    assert_eq!(h.send(signed(3, Algorithm::HS256, "other-secret")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.send(signed(4, Algorithm::HS384, "old-secret")).await.0, StatusCode::UNAUTHORIZED, "an algorithm not listed");
    let lone =
        "auth:\n  authorization: A\n  signature: {algorithms: [RS256], jwksUrl: 'http://fa/.well-known/jwks.json', previousHmacSecret: x}";
    assert!(Config::from_yaml(lone).unwrap_err().to_string().contains("auth.signature.previousHmacSecret"));
}

#[tokio::test]
async fn a_placeholder_value_never_leaves_its_path_segment() {
    let yaml = r#"
auth: {authorization: API-KEY}
routes:
  - name: todo-cleanup
    events: ["user.delete"]
    http:
      method: DELETE
      url: "TODO/users/{{event.user.username}}/todos"
"#;
    let h = Harness::new(yaml).await;
    // (username, the request line the service must see, or None: no request is sent and FusionAuth hears 500)
    let cases: [(&str, Option<&str>); 12] = [
        ("..", None),
        (".", None),
        ("", None),
        ("%2e%2e", Some("/users/%252e%252e/todos")),
        ("%2E.", Some("/users/%252E./todos")),
        ("a/../b", Some("/users/a%2F..%2Fb/todos")),
        ("\\..\\", Some("/users/%5C..%5C/todos")),
        ("\t..", Some("/users/%09../todos")),
        ("\u{FF0E}\u{FF0E}", Some("/users/%EF%BC%8E%EF%BC%8E/todos")),
        ("\u{3002}", Some("/users/%E3%80%82/todos")),
        ("...", Some("/users/.../todos")),
        ("alice.smith", Some("/users/alice.smith/todos")),
    ];
    for (n, (username, expected)) in cases.into_iter().enumerate() {
        let before = h.todos.received().len();
        let body =
            events::event("user.delete", &format!("00000000-0000-4000-8000-{n:012}"), json!({"user": {"id": ALICE, "username": username}}));
        let (status, answer) = h.send(Post::fusionauth(body).without(SIG)).await;
        let sent: Vec<String> = h.todos.received()[before..].iter().map(|r| format!("{} {}", r.method, r.uri)).collect();
        match expected {
            Some(path) => {
                assert_eq!(status, StatusCode::OK, "{username:?}: {answer}");
                assert_eq!(sent, vec![format!("DELETE {path}")], "{username:?}");
            }
            None => {
                assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{username:?}");
                assert!(sent.is_empty(), "{username:?} sent {sent:?}");
                let message = answer["errors"][0]["message"].as_str().unwrap();
                assert!(message.starts_with("route todo-cleanup: placeholder {{event.user.username}} "), "{message}");
            }
        }
    }
    assert_eq!(h.todos.todos(ALICE).len(), 2, "no request reached /todos or /users/todos");
}

#[tokio::test]
async fn an_allow_list_that_mixes_key_families_accepts_each_of_them() {
    let (url, _) = jwks_server(read_key("jwks.json")).await;
    let yaml = format!(
        "auth:\n  signature: {{algorithms: [HS256, RS256, ES256], hmacSecret: {HMAC}, jwksUrl: '{url}'}}\nroutes: [{{name: l, events: ['*'], log: {{}}}}]"
    );
    let h = Harness::new(&yaml).await;
    let body = |n: u8| events::user_delete(&format!("eeeeeeee-eeee-4eee-8eee-eeeeeeeeee{n:02x}"), ALICE);
    let rsa = EncodingKey::from_rsa_pem(read_key("rsa-private.pem").as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(read_key("ec-private.pem").as_bytes()).unwrap();
    let sign = |alg: Algorithm, b: &[u8]| match alg {
        Algorithm::HS256 => sign_hmac(b, alg, "hmac-1", HMAC),
        Algorithm::RS256 => signature::sign(b, alg, Some("rsa-1"), &rsa).unwrap(),
        _ => signature::sign(b, alg, Some("ec-1"), &ec).unwrap(),
    };
    for (n, name) in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256].into_iter().enumerate() {
        let body = body(n as u8);
        let post = Post::fusionauth(body.clone()).without("authorization").set(SIG, sign(name, &body));
        let (status, answer) = h.send(post).await;
        assert_eq!(status, StatusCode::OK, "{name:?}: {answer}");
    }
    // Still pinned: an algorithm outside the list is refused.
    let other = body(9);
    let post = Post::fusionauth(other.clone()).without("authorization").set(SIG, sign_hmac(&other, Algorithm::HS512, "hmac-1", HMAC));
    assert_eq!(h.send(post).await.0, StatusCode::UNAUTHORIZED);
}

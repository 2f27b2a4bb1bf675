//! The `http` action: one request per event to a service, 2xx = success.
//! The answer's body is read up to [`ANSWER_LIMIT`] (so the connection can
//! be reused) and never further; a failure's log line carries at most
//! [`ANSWER_EXCERPT`] bytes of it.

use fusionhook_fusionauth::EventRequest;
use fusionhook_fusionauth::limited::read_body;
use http::{HeaderValue, Method};
use serde_json::Value;

use crate::delivery::sign;

use super::{ActionError, BodyMode, HeaderValueSource, HttpAction};

/// The most of a route's answer body that is read.
pub const ANSWER_LIMIT: usize = 4096;

/// The most of a failed route's answer body that is logged.
pub const ANSWER_EXCERPT: usize = 200;

impl HttpAction {
    fn needs_event_json(&self) -> bool {
        self.method.has_placeholders()
            || self.url.has_placeholders()
            || self.headers.iter().any(|(_, v)| matches!(v, HeaderValueSource::Template(t) if t.has_placeholders()))
    }

    /// The route's headers, rendered for `event` (Secret values marked sensitive).
    fn with_headers(&self, mut builder: reqwest::RequestBuilder, event: &Value) -> Result<reqwest::RequestBuilder, ActionError> {
        for (name, source) in &self.headers {
            let value = match source {
                HeaderValueSource::Template(t) => HeaderValue::from_str(&t.render(event)?),
                HeaderValueSource::Secret(secret) => HeaderValue::from_str(secret.get().expose()).map(|mut v| {
                    v.set_sensitive(true);
                    v
                }),
            }
            .map_err(|_| ActionError::InvalidRequest(format!("header {name}: the value is not a valid header value")))?;
            builder = builder.header(name, value);
        }
        Ok(builder)
    }

    /// The service's answer: a success (2xx or one of the route's
    /// `successStatuses`), or the failure with an excerpt and `Retry-After`.
    async fn answered(&self, response: reqwest::Response, method: Method, host: String) -> Result<(), ActionError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        // Read so the connection can be reused (within the request's
        // timeout). The status decides: a 2xx whose body then breaks off is
        // still a success, or the action would run again on FusionAuth's retry.
        let answer = read_body(response, ANSWER_LIMIT).await;
        if status.is_success() || self.success_statuses.contains(&status) {
            return Ok(());
        }
        let bytes = answer.map(|a| a.bytes).unwrap_or_default();
        let excerpt = String::from_utf8_lossy(&bytes[..bytes.len().min(ANSWER_EXCERPT)]).into_owned();
        Err(ActionError::Status { method: method.to_string(), host, status, excerpt, retry_after })
    }

    /// Builds and sends the request.
    pub async fn run(&self, client: &reqwest::Client, request: &EventRequest, idempotency_key: &str) -> Result<(), ActionError> {
        // Plain-text routes never pay for the JSON tree.
        static EMPTY: Value = Value::Null;
        let event = if self.needs_event_json() { request.event_json() } else { &EMPTY };

        let method_text = self.method.render(event)?;
        let method = Method::from_bytes(method_text.as_bytes())
            .map_err(|_| ActionError::InvalidRequest(format!("`{method_text}` is not an HTTP method")))?;
        let url_text = self.url.render_url(event)?;
        let url = reqwest::Url::parse(&url_text).map_err(|e| ActionError::InvalidRequest(format!("the rendered URL is not valid: {e}")))?;
        let host = url.host_str().unwrap_or_default().to_owned();

        let builder = self.with_headers(client.request(method.clone(), url).timeout(self.timeout), event)?;
        let mut builder = builder.header("idempotency-key", idempotency_key).header("webhook-id", idempotency_key);
        // The service's own trace continues this one (W3C traceparent).
        let mut trace_headers = http::HeaderMap::new();
        crate::telemetry::inject(&mut trace_headers);
        builder = builder.headers(trace_headers);
        let body: &[u8] = if self.body == BodyMode::Event { request.body() } else { b"" };
        if let Some(secret) = &self.sign {
            let key = sign::decode_secret(secret.get().expose()).map_err(ActionError::InvalidRequest)?;
            let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            builder = builder
                .header("webhook-timestamp", timestamp)
                .header("webhook-signature", sign::signature(&key, idempotency_key, timestamp, body));
        }
        if self.body == BodyMode::Event {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json").body(request.body().clone());
        }

        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                ActionError::Timeout { method: method.to_string(), host: host.clone(), timeout_ms: self.timeout.as_millis() }
            } else {
                let reason = if e.is_connect() { "connection failed".to_owned() } else { e.without_url().to_string() };
                ActionError::Unreachable { method: method.to_string(), host: host.clone(), reason }
            }
        };
        let response = builder.send().await.map_err(failed)?;
        self.answered(response, method, host).await
    }
}

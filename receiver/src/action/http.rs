//! The `http` action: one request per event to a service, 2xx = success.

use http::{HeaderValue, Method};
use serde_json::Value;

use super::{ActionError, BodyMode, HeaderValueSource, HttpAction};
use crate::template::Escape;
use fusionhook_fusionauth::EventRequest;

impl HttpAction {
    fn needs_event_json(&self) -> bool {
        self.method.has_placeholders()
            || self.url.has_placeholders()
            || self.headers.iter().any(|(_, v)| matches!(v, HeaderValueSource::Template(t) if t.has_placeholders()))
    }

    /// Builds and sends the request.
    pub async fn run(&self, client: &reqwest::Client, request: &EventRequest) -> Result<(), ActionError> {
        // Plain-text routes never pay for the JSON tree.
        static EMPTY: Value = Value::Null;
        let event = if self.needs_event_json() { request.event_json() } else { &EMPTY };

        let method_text = self.method.render(event, Escape::None)?;
        let method = Method::from_bytes(method_text.as_bytes())
            .map_err(|_| ActionError::InvalidRequest(format!("`{method_text}` is not an HTTP method")))?;
        let url_text = self.url.render(event, Escape::UrlComponent)?;
        let url = reqwest::Url::parse(&url_text).map_err(|e| ActionError::InvalidRequest(format!("the rendered URL is not valid: {e}")))?;
        let host = url.host_str().unwrap_or_default().to_owned();

        let mut builder = client.request(method.clone(), url).timeout(self.timeout);
        for (name, source) in &self.headers {
            let value = match source {
                HeaderValueSource::Template(t) => HeaderValue::from_str(&t.render(event, Escape::None)?),
                HeaderValueSource::Secret(secret) => HeaderValue::from_str(secret.get().expose()).map(|mut v| {
                    v.set_sensitive(true);
                    v
                }),
            }
            .map_err(|_| ActionError::InvalidRequest(format!("header {name}: the value is not a valid header value")))?;
            builder = builder.header(name, value);
        }
        if self.body == BodyMode::Event {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json").body(request.body().clone());
        }

        let method = method.to_string();
        let response = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                ActionError::Timeout { method: method.clone(), host: host.clone(), timeout_ms: self.timeout.as_millis() }
            } else {
                let reason = if e.is_connect() { "connection failed".to_owned() } else { e.without_url().to_string() };
                ActionError::Unreachable { method: method.clone(), host: host.clone(), reason }
            }
        })?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(ActionError::Status { method, host, status }) }
    }
}

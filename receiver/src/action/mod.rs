//! What a route does with an event. Each action reports success or a
//! failure: in full for the receiver's log, and as a short public message
//! for the answer FusionAuth stores in its event log, where more people can
//! read it (no host names, no library error text, no event data).

mod http;
mod log;

use std::sync::Arc;
use std::time::Duration;

use fusionhook_fusionauth::EventRequest;
use serde::Deserialize;

use crate::delivery::retry::Failure;
use crate::secret::Secret;
use crate::template::{FieldPath, RenderError, Template};

pub use self::log::{LogSink, stdout_sink};

/// One route's action.
#[derive(Debug)]
pub enum Action {
    /// Call an HTTP service.
    Http(HttpAction),
    /// Write one JSON log line.
    Log(LogAction),
}

/// What an `http` action sends as its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BodyMode {
    /// The request body exactly as FusionAuth sent it (`{"event": {...}}`),
    /// so services written for FusionAuth webhooks work unchanged.
    Event,
    /// No body.
    None,
}

/// A header value: text with placeholders, or a secret file's content.
#[derive(Debug)]
pub enum HeaderValueSource {
    /// Rendered from the event, sent verbatim.
    Template(Template),
    /// A secret (mounted file), re-read when it changes.
    Secret(Arc<Secret>),
}

/// `http` action settings.
#[derive(Debug)]
pub struct HttpAction {
    /// Method (may contain placeholders).
    pub method: Template,
    /// URL; placeholders are percent-encoded.
    pub url: Template,
    /// Whole-call timeout, below FusionAuth's read timeout.
    pub timeout: Duration,
    /// Extra headers.
    pub headers: Vec<(::http::HeaderName, HeaderValueSource)>,
    /// Body to send.
    pub body: BodyMode,
    /// Statuses besides 2xx that count as success.
    pub success_statuses: Vec<::http::StatusCode>,
    /// The Standard Webhooks signing secret (`whsec_...`), if calls are signed.
    pub sign: Option<Arc<Secret>>,
}

/// `log` action settings.
#[derive(Debug)]
pub struct LogAction {
    /// Event fields to add to the line; none by default, so no personal data
    /// is logged unless configured.
    pub fields: Vec<FieldPath>,
}

/// What an action needs from the process.
#[derive(Clone)]
pub struct ActionContext {
    /// Shared HTTP client (connection reuse across events).
    pub client: reqwest::Client,
    /// Where `log` actions write.
    pub log: LogSink,
}

/// Why an action failed. Display is the full story, for the log;
/// [`ActionError::public`] is what the 500 answer says.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A placeholder had no value in this event.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The rendered request is unusable (bad method, URL or header value);
    /// the message may quote rendered event data, so it stays in the log.
    #[error("{0}")]
    InvalidRequest(String),
    /// No answer within the route's timeout.
    #[error("{method} {host}: no answer within {timeout_ms} ms")]
    Timeout {
        /// Method used.
        method: String,
        /// Target host.
        host: String,
        /// The timeout.
        timeout_ms: u128,
    },
    /// Could not connect or the connection broke.
    #[error("{method} {host}: {reason}")]
    Unreachable {
        /// Method used.
        method: String,
        /// Target host.
        host: String,
        /// What went wrong (no URL, no headers).
        reason: String,
    },
    /// The service answered something other than 2xx.
    #[error("{method} {host}: answered {status}: {excerpt:?}")]
    Status {
        /// Method used.
        method: String,
        /// Target host.
        host: String,
        /// The status.
        status: ::http::StatusCode,
        /// The start of the answer's body (at most 200 bytes), for the log.
        excerpt: String,
        /// The service's `Retry-After` (seconds form), if it sent one.
        retry_after: Option<Duration>,
    },
}

impl ActionError {
    /// The message for the answer to FusionAuth: the method and what went
    /// wrong (HTTP status, timeout), never the host, a library's error text
    /// or event data.
    pub fn public(&self) -> String {
        match self {
            // Names the placeholder (`event.user.id`), never its value.
            Self::Render(e) => e.to_string(),
            Self::InvalidRequest(_) => "the rendered request is not valid (the receiver's log says why)".to_owned(),
            Self::Timeout { method, timeout_ms, .. } => format!("{method}: no answer within {timeout_ms} ms"),
            Self::Unreachable { method, .. } => format!("{method}: the service could not be reached"),
            Self::Status { method, status, .. } => format!("{method}: answered {status}"),
        }
    }
}

impl ActionError {
    /// Whether another attempt could succeed: timeouts, connection errors,
    /// 408, 425, 429 and 5xx are retried; any other status (a 4xx, or a
    /// redirect, which is never followed) and a request that cannot be
    /// built are not.
    pub fn failure(&self) -> Failure {
        match self {
            Self::Timeout { .. } | Self::Unreachable { .. } => Failure::Retryable { after: None },
            Self::Status { status, retry_after, .. } => {
                if status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429) {
                    Failure::Retryable { after: *retry_after }
                } else {
                    Failure::Permanent
                }
            }
            Self::Render(_) | Self::InvalidRequest(_) => Failure::Permanent,
        }
    }
}

impl Action {
    /// Runs the action for one event. `idempotency_key` is the same on every
    /// attempt of this route's delivery of this event.
    pub async fn run(&self, ctx: &ActionContext, route: &str, request: &EventRequest, idempotency_key: &str) -> Result<(), ActionError> {
        match self {
            Self::Http(http) => http.run(&ctx.client, request, idempotency_key).await,
            Self::Log(log) => {
                log.run(&ctx.log, route, request);
                Ok(())
            }
        }
    }

    /// The call's timeout (`http`); `None` for actions that do not wait.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            Self::Http(http) => Some(http.timeout),
            Self::Log(_) => None,
        }
    }

    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Log(_) => "log",
        }
    }
}

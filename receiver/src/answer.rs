//! The receiver's answers. Every error becomes an HTTP answer here and only
//! here; bodies follow FusionAuth's error shape and never carry secrets,
//! tokens or event data.

use axum::Json;
use axum::response::{IntoResponse, Response};
use fusionhook_fusionauth::EnvelopeError;
use http::StatusCode;
use serde_json::{Value, json};

use crate::action::ActionError;
use crate::verify::{AuthFailure, KeysUnavailable, VerifyError};

/// A request that was handled: 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Every matching route's action succeeded.
    Done,
    /// Every sync route succeeded and the durable deliveries are committed.
    Stored,
    /// Already handled within the dedupe window; nothing ran.
    Duplicate,
    /// No route takes this event type and `unmatched: accept`.
    Unmatched,
}

impl Handled {
    /// Metric label.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Done => "handled",
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Unmatched => "unmatched",
        }
    }
}

impl IntoResponse for Handled {
    fn into_response(self) -> Response {
        StatusCode::OK.into_response()
    }
}

/// A request that was not handled.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// 415.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// 413.
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// 408: the body did not arrive in time.
    #[error("the body did not arrive within {timeout_ms} ms")]
    BodyTimeout {
        /// The configured body timeout.
        timeout_ms: u128,
    },
    /// 503: the budget for bodies not vouched for by a header credential
    /// is spent (many unauthenticated bodies in flight at once).
    #[error("too many unauthenticated bodies are being read; try again")]
    Overloaded,
    /// 400: the connection broke while reading.
    #[error("the body could not be read")]
    BodyRead,
    /// 401.
    #[error(transparent)]
    Unauthorized(AuthFailure),
    /// 500: the JWKS could not be fetched.
    #[error(transparent)]
    KeysUnavailable(KeysUnavailable),
    /// 400.
    #[error(transparent)]
    BadRequest(#[from] EnvelopeError),
    /// 500: one or more actions failed; FusionAuth may retry.
    #[error("{} action(s) failed", .0.len())]
    ActionsFailed(Vec<(String, ActionError)>),
    /// 500: a previous delivery of this id is still running.
    #[error("an earlier delivery of this event is still being handled")]
    InProgress,
    /// 500: the store could not commit (or read); FusionAuth may retry.
    #[error("the event could not be stored; it was not accepted")]
    StoreUnavailable,
    /// 500: no route takes the event and `unmatched: reject`.
    #[error("no route takes events of this type")]
    Unmatched,
}

impl From<VerifyError> for ReceiverError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Unauthorized(f) => Self::Unauthorized(f),
            VerifyError::KeysUnavailable(k) => Self::KeysUnavailable(k),
        }
    }
}

impl ReceiverError {
    /// Metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooLarge { .. } => "too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::Overloaded => "overloaded",
            Self::BodyRead => "body_read_error",
            Self::Unauthorized(_) => "unauthorized",
            Self::KeysUnavailable(_) => "keys_unavailable",
            Self::BadRequest(_) => "bad_request",
            Self::ActionsFailed(_) => "action_failed",
            Self::InProgress => "in_progress",
            Self::Unmatched => "unmatched_rejected",
            Self::StoreUnavailable => "store_unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyRead | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::KeysUnavailable(_) | Self::ActionsFailed(_) | Self::InProgress | Self::Unmatched | Self::StoreUnavailable => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn errors(&self) -> Vec<Value> {
        let one = |code: &str| vec![json!({"code": code, "message": self.to_string()})];
        match self {
            // Exactly FusionAuth's own example; the reason stays in metrics and logs.
            Self::Unauthorized(_) => vec![json!({"code": "[notAuthorized]"})],
            Self::UnsupportedMediaType => one("[unsupportedMediaType]"),
            Self::TooLarge { .. } => one("[tooLarge]"),
            Self::BodyTimeout { .. } => one("[timeout]"),
            Self::Overloaded => one("[overloaded]"),
            Self::BodyRead => one("[invalidBody]"),
            Self::BadRequest(e) => vec![json!({"code": e.code(), "message": e.to_string()})],
            Self::KeysUnavailable(_) => {
                vec![json!({"code": "[signatureKeysUnavailable]", "message": "the signature could not be checked now"})]
            }
            Self::ActionsFailed(failures) => failures
                .iter()
                .map(|(route, e)| json!({"code": "[actionFailed]", "route": route, "message": format!("route {route}: {}", e.public())}))
                .collect(),
            Self::InProgress => one("[inProgress]"),
            Self::Unmatched => one("[noRoute]"),
            Self::StoreUnavailable => one("[storeUnavailable]"),
        }
    }
}

impl IntoResponse for ReceiverError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "errors": self.errors() }))).into_response()
    }
}

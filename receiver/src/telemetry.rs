//! telemetry: OpenTelemetry traces, off unless the standard `OTEL_*`
//! environment names an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_TRACES_EXPORTER=none` and
//! `OTEL_SDK_DISABLED=true` turn them off). OTLP over HTTP/protobuf
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default; another
//! protocol is refused with a warning and no traces), sent with the
//! workspace's reqwest on a thread of their own. The exporter reads
//! the rest itself (`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`);
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the service.
//!
//! Spans meant for traces use the target [`TARGET`]: the log never shows
//! them, and while traces are off no subscriber wants them, so they cost
//! the hot path nothing (`Span::none()`). Their attributes name routes,
//! event types, ids and outcomes: never a header, a token or the event body.
//! Outbound calls carry the W3C `traceparent` of the span they run in
//! ([`inject`]), so a service's own trace continues FusionAuth's request.
//! An inbound `traceparent` is ignored (FusionAuth sends none, and an
//! unauthenticated caller must not choose the trace or its sampling).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every span meant for traces.
pub const TARGET: &str = "otel";

/// Traces while they are on: flushed and stopped by [`Traces::shutdown`].
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Traces as the environment asks (`Ok(None)`: off). `service`: the
    /// name when `OTEL_SERVICE_NAME` gives none.
    pub fn from_env(service: &'static str) -> Result<Option<Self>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let off = var("OTEL_TRACES_EXPORTER").is_some_and(|e| e == "none") || var("OTEL_SDK_DISABLED").is_some_and(|d| d == "true");
        if endpoint.is_none() || off {
            return Ok(None);
        }
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(protocol) = protocol.filter(|p| p != "http/protobuf") {
            return Err(format!("OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is supported; traces are off"));
        }
        let runtime = export_runtime().map_err(|e| format!("traces: cannot start their thread: {e}"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("fusionhook/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("traces: {e}"))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Exporting { client, runtime })
            .build()
            .map_err(|e| format!("traces: {e}"))?;
        let resource = match var("OTEL_SERVICE_NAME") {
            Some(_) => Resource::builder().build(),
            None => Resource::builder().with_service_name(service).build(),
        };
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        Ok(Some(Self { provider }))
    }

    /// The tracer the `tracing` layer records into.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("fusionhook")
    }

    /// Sends what is buffered and stops (at most 5 s). Blocks: call it
    /// outside async code, e.g. after the runtime's `block_on` returned.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "traces: the last spans could not be sent");
        }
    }
}

/// A runtime of its own for the exports, on one thread: they never take a
/// worker of the runtime that serves FusionAuth, and work from whatever
/// thread the batch exporter calls.
fn export_runtime() -> std::io::Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new().name("otel-export".into()).spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// The OTLP exporter's HTTP client: the workspace's reqwest, run on the
/// export runtime (the batch exporter calls from a thread of its own).
#[derive(Debug, Clone)]
struct Exporting {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// The most of a collector's answer that is read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[async_trait::async_trait]
impl HttpClient for Exporting {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let call = async move {
            let response = client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
            let mut builder = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let mut body = Vec::new();
            let mut response = response;
            while let Some(chunk) = response.chunk().await? {
                body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER_BYTES.saturating_sub(body.len()))]);
            }
            Ok::<_, HttpError>(builder.body(Bytes::from(body))?)
        };
        let answer = self.runtime.spawn(call).await?;
        let failure = match &answer {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the collector answered {}", response.status())),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failure {
            warn_at_most_once_a_minute(&why);
        }
        answer
    }
}

/// The SDK's own diagnostics are compiled out: a collector that cannot be
/// reached is said here, once a minute at most.
fn warn_at_most_once_a_minute(why: &str) {
    static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
        *last = Some(std::time::Instant::now());
        tracing::warn!(reason = why, "traces: an export failed; spans are dropped until the collector takes them");
    }
}

/// Sets the W3C `traceparent` (and `tracestate`) of the current span on an
/// outbound call's headers; nothing while traces are off.
pub fn inject(headers: &mut http::HeaderMap) {
    let span = tracing::Span::current();
    if span.is_none() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers)));
}

/// `text` cut to at most 128 bytes (at a character boundary): what a span
/// keeps of a value the sender chose, such as an event type.
pub fn bounded(text: &str) -> &str {
    let mut end = text.len().min(128);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The traces of recently stored events, by event id, so a durable
/// delivery's attempts (later, on a worker) join the trace of the request
/// that stored it. Bounded (the oldest goes first); in memory only: an
/// attempt after a restart starts a trace of its own.
pub struct Remembered {
    inner: Mutex<(HashMap<String, opentelemetry::Context>, VecDeque<String>)>,
}

/// How many event traces are remembered.
const REMEMBERED: usize = 10_000;

impl Default for Remembered {
    fn default() -> Self {
        Self { inner: Mutex::new((HashMap::new(), VecDeque::new())) }
    }
}

impl Remembered {
    /// Remembers the current span's trace for event `id` (nothing while
    /// traces are off); the first one wins, so FusionAuth's retry of an
    /// event does not take over the original's deliveries.
    pub fn remember(&self, id: &str) {
        let span = tracing::Span::current();
        if span.is_none() {
            return;
        }
        let context = span.context();
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, order) = &mut *inner;
        if map.contains_key(id) {
            return;
        }
        map.insert(id.to_owned(), context);
        order.push_back(id.to_owned());
        while order.len() > REMEMBERED {
            if let Some(oldest) = order.pop_front() {
                map.remove(&oldest);
            }
        }
    }

    /// Makes `span` a child of event `id`'s trace, if remembered.
    pub fn parent(&self, span: &tracing::Span, id: &str) {
        if span.is_none() {
            return;
        }
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(context) = inner.0.get(id) {
            let _ = span.set_parent(context.clone());
        }
    }
}

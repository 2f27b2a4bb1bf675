//! An OTLP/HTTP receiver for the trace tests: `POST /v1/traces` with
//! protobuf, decoded with the official OTLP definitions
//! (`opentelemetry-proto`), every span kept.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// A span as exported: ids in hex, attributes as text.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The span's name.
    pub name: String,
    /// Its trace id.
    pub trace: String,
    /// Its id.
    pub id: String,
    /// Its parent's id (zeros: a root).
    pub parent: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// The `service.name` of its resource.
    pub service: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Starts the receiver: (its base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`,
/// the spans so far, each export's Content-Type).
pub async fn collector() -> (String, Arc<Mutex<Vec<Exported>>>, Arc<Mutex<Vec<String>>>) {
    let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
    let content_types: Arc<Mutex<Vec<String>>> = Arc::default();
    let (keep, types) = (spans.clone(), content_types.clone());
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let (keep, types) = (keep.clone(), types.clone());
            async move {
                types
                    .lock()
                    .expect("OTLP test receiver")
                    .push(headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned());
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP test receiver");
                for resource_spans in request.resource_spans {
                    let resource = resource_spans.resource.unwrap_or_default();
                    let service =
                        resource.attributes.iter().find(|a| a.key == "service.name").map(|a| text(a.value.as_ref())).unwrap_or_default();
                    for scope in resource_spans.scope_spans {
                        for span in scope.spans {
                            keep.lock().expect("OTLP test receiver").push(Exported {
                                name: span.name,
                                trace: hex(&span.trace_id),
                                id: hex(&span.span_id),
                                parent: hex(&span.parent_span_id),
                                attributes: span.attributes.iter().map(|a| (a.key.clone(), text(a.value.as_ref()))).collect(),
                                service: service.clone(),
                            });
                        }
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("OTLP test receiver");
    let addr = listener.local_addr().expect("OTLP test receiver");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("OTLP test receiver") });
    (format!("http://{addr}"), spans, content_types)
}

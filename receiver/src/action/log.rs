//! The `log` action: one JSON line per event with its type and id, plus the
//! fields the route names (none by default: no personal data unless asked).

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::LogAction;
use fusionhook_fusionauth::EventRequest;

/// Where log lines go: one call per complete line (without the newline).
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Writes each line to stdout in one `write_all`, so lines never interleave.
pub fn stdout_sink() -> LogSink {
    Arc::new(|line: &str| {
        let mut out = std::io::stdout().lock();
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        // A closed stdout must not fail the event.
        let _ = out.write_all(&buf);
    })
}

impl LogAction {
    /// Writes the line.
    pub fn run(&self, sink: &LogSink, route: &str, request: &EventRequest) {
        let event = request.event();
        let mut line = json!({
            "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "level": "INFO",
            "target": "fusionhook::event",
            "route": route,
            "type": event.kind,
            "id": event.id,
            "tenantId": event.tenant_id,
            "createInstant": event.create_instant,
        });
        if !self.fields.is_empty() {
            let json = request.event_json();
            let fields: Map<String, Value> =
                self.fields.iter().map(|f| (f.as_str().to_owned(), f.lookup(json).cloned().unwrap_or(Value::Null))).collect();
            line["fields"] = Value::Object(fields);
        }
        sink(&line.to_string());
    }
}

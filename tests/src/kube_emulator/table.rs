//! `Table` answers for `kubectl get`: Name, then a CRD's printer columns
//! (evaluated with the JSONPath subset they use: `.a.b`, `[n]`, `[*]`,
//! `[?(@.k=="v")]`), or Age for built-in kinds.

use serde_json::{Value, json};

use super::registry::{Column, ResourceType};

/// Evaluates a JSONPath of the subset above.
pub fn json_path(object: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![object.clone()];
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            current = current.iter().filter_map(|v| v.get(field).cloned()).collect();
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else { return Vec::new() };
            let selector = &after[..end];
            rest = &after[end + 1..];
            current = if selector == "*" {
                current.iter().flat_map(|v| v.as_array().cloned().unwrap_or_default()).collect()
            } else if let Ok(i) = selector.parse::<usize>() {
                current.iter().filter_map(|v| v.get(i).cloned()).collect()
            } else if let Some(filter) = selector.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let Some((key, value)) = filter.split_once("==") else { return Vec::new() };
                let value = value.trim().trim_matches('"').trim_matches('\'');
                current
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|e| e.get(key.trim()).and_then(Value::as_str) == Some(value))
                    .collect()
            } else {
                return Vec::new();
            };
        } else {
            return Vec::new();
        }
    }
    current
}

/// kubectl's short age: `42s`, `5m`, `3h`, `2d`.
fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<k8s_openapi::jiff::Timestamp>() else { return "<invalid>".into() };
    let seconds = (super::store::epoch_seconds() - then.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn cell(object: &Value, column: &Column) -> Value {
    let values = json_path(object, &column.json_path);
    match (column.kind.as_str(), values.as_slice()) {
        (_, []) => json!(null),
        ("date", [Value::String(s)]) => json!(age(s)),
        ("integer" | "number" | "boolean", [v]) => v.clone(),
        (_, [Value::String(s)]) => json!(s),
        (_, [v]) => json!(v.to_string()),
        (_, many) => json!(many.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join(",")),
    }
}

/// The `Table` for `items`.
pub fn table(t: &ResourceType, items: &[Value], rv: u64) -> Value {
    let age_column = Column { name: "Age".into(), kind: "date".into(), json_path: ".metadata.creationTimestamp".into(), priority: 0 };
    let columns: Vec<Column> = if t.columns.is_empty() { vec![age_column] } else { t.columns.clone() };
    let mut definitions =
        vec![json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0})];
    definitions.extend(columns.iter().map(|c| json!({"name": c.name, "type": if c.kind == "date" { "string" } else { c.kind.as_str() }, "format": "", "description": "", "priority": c.priority})));
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(columns.iter().map(|c| cell(o, c)));
            json!({"cells": cells, "object": {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": definitions, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths_evaluate() {
        let o = json!({"status": {"conditions": [{"type": "InSync", "status": "False"}, {"type": "Ready", "status": "True"}]}, "spec": {"events": ["a", "b"]}});
        assert_eq!(json_path(&o, r#".status.conditions[?(@.type=="Ready")].status"#), [json!("True")]);
        assert_eq!(json_path(&o, ".spec.events"), [json!(["a", "b"])]);
        assert_eq!(json_path(&o, ".spec.events[1]"), [json!("b")]);
        assert_eq!(json_path(&o, ".spec.events[*]"), [json!("a"), json!("b")]);
        assert!(json_path(&o, ".status.webhookId").is_empty());
    }
}

//! The three PATCH flavours FusionAuth accepts (FACTS.md §a.6).

use serde_json::Value;

/// Which PATCH, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json`: FusionAuth's legacy merge; arrays are appended.
    Legacy,
    /// `application/merge-patch+json`: RFC 7396; arrays are replaced.
    MergePatch,
    /// `application/json-patch+json`: RFC 6902 operations.
    JsonPatch,
}

impl PatchKind {
    /// From a Content-Type header.
    pub fn from_content_type(value: &str) -> Option<Self> {
        match value.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "application/json" => Some(Self::Legacy),
            "application/merge-patch+json" => Some(Self::MergePatch),
            "application/json-patch+json" => Some(Self::JsonPatch),
            _ => None,
        }
    }
}

/// FusionAuth's legacy merge: objects merge, `null` removes, arrays append.
pub fn legacy_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    t.remove(key);
                } else if let Some(existing) = t.get_mut(key) {
                    legacy_merge(existing, value);
                } else {
                    t.insert(key.clone(), value.clone());
                }
            }
        }
        (Value::Array(t), Value::Array(p)) => t.extend(p.iter().cloned()),
        (t, p) => *t = p.clone(),
    }
}

/// Applies a patch of `kind` to `document`; the error text is for a 400.
pub fn apply(kind: PatchKind, document: &mut Value, patch: &Value) -> Result<(), String> {
    match kind {
        PatchKind::Legacy => {
            legacy_merge(document, patch);
            Ok(())
        }
        PatchKind::MergePatch => {
            json_patch::merge(document, patch);
            Ok(())
        }
        PatchKind::JsonPatch => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| format!("not a JSON Patch: {e}"))?;
            json_patch::patch(document, &ops).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_flavours_treat_arrays_as_fusionauth_does() {
        let original = json!({"webhook": {"tenantIds": ["a"], "url": "http://x", "description": "d"}});
        let mut legacy = original.clone();
        apply(PatchKind::Legacy, &mut legacy, &json!({"webhook": {"tenantIds": ["b"], "description": null}})).unwrap();
        assert_eq!(legacy["webhook"]["tenantIds"], json!(["a", "b"]), "legacy PATCH appends");
        assert!(legacy["webhook"].get("description").is_none());

        let mut merge = original.clone();
        apply(PatchKind::MergePatch, &mut merge, &json!({"webhook": {"tenantIds": ["b"]}})).unwrap();
        assert_eq!(merge["webhook"]["tenantIds"], json!(["b"]), "merge-patch replaces");

        let mut ops = original;
        apply(PatchKind::JsonPatch, &mut ops, &json!([{"op": "replace", "path": "/webhook/url", "value": "http://y"}])).unwrap();
        assert_eq!(ops["webhook"]["url"], "http://y");
        assert!(apply(PatchKind::JsonPatch, &mut ops, &json!([{"op": "test", "path": "/webhook/url", "value": "nope"}])).is_err());
    }
}

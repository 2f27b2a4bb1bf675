//! The book's reference pages (`docs/reference/`), generated from the code
//! and what it generates, and checked like the CRD: [`check`] compares a
//! generated page with the committed one, or writes it when
//! `FUSIONHOOK_BLESS=1` is set (then review the diff).

use serde_json::Value;

use crate::tools::workspace_root;

/// Compares `generated` with `docs/reference/<page>` (or writes it).
pub fn check(page: &str, generated: &str) -> Result<(), String> {
    let path = workspace_root().join("docs/reference").join(page);
    if std::env::var_os("FUSIONHOOK_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap_or(&path)).map_err(|e| e.to_string())?;
        return std::fs::write(&path, generated).map_err(|e| e.to_string());
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == generated {
        return Ok(());
    }
    let first = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(committed.lines().count().min(generated.lines().count()));
    Err(format!(
        "docs/reference/{page} is not what the code generates (first difference at line {}): run `FUSIONHOOK_BLESS=1 cargo test -p fusionhook-tests --test reference` (metrics: `--test alerts`) and review the diff",
        first + 1
    ))
}

/// A table cell: one line, pipes escaped.
pub fn cell(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

/// The resource's fields from the CRD (`crds/fusionauthwebhooks.yaml`):
/// every field with its type, whether it is required, and its description
/// (what `kubectl explain` shows), then the CEL rules by where they apply.
pub fn resource(crd: &Value) -> String {
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut out = String::from(
        "# Resource fields\n\n<!-- Generated from crds/fusionauthwebhooks.yaml by tests/tests/reference.rs: do not edit. -->\n\n`FusionAuthWebhook` (`fusionhook.dev/v1alpha1`, short name `faw`). The same text is what `kubectl explain faw.spec --recursive` shows.\n",
    );
    let mut rules = Vec::new();
    for part in ["spec", "status"] {
        out.push_str(&format!("\n## {part}\n\n| field | type | description |\n|---|---|---|\n"));
        fields(&schema[part], part, &mut out, &mut rules);
    }
    out.push_str("\n## Rules the API server enforces\n\n| where | rule's message |\n|---|---|\n");
    let root_rules =
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"].as_array().cloned().unwrap_or_default();
    for rule in root_rules {
        rules.push(("(the resource)".to_owned(), rule["message"].as_str().unwrap_or_default().to_owned()));
    }
    for (path, message) in rules {
        out.push_str(&format!("| `{path}` | {} |\n", cell(&message)));
    }
    out
}

fn kind(prop: &Value) -> String {
    if prop["x-kubernetes-int-or-string"] == true {
        return "int or string".to_owned();
    }
    match prop["type"].as_str() {
        Some("array") => format!("list of {}", kind(&prop["items"])),
        Some("object") if prop["additionalProperties"].is_object() => format!("map of {}", kind(&prop["additionalProperties"])),
        Some(t) => t.to_owned(),
        None => "any".to_owned(),
    }
}

fn fields(schema: &Value, path: &str, out: &mut String, rules: &mut Vec<(String, String)>) {
    for rule in schema["x-kubernetes-validations"].as_array().into_iter().flatten() {
        rules.push((path.to_owned(), rule["message"].as_str().unwrap_or_default().to_owned()));
    }
    let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(properties) = schema["properties"].as_object() else { return };
    for (name, prop) in properties {
        let full = format!("{path}.{name}");
        let mut facts = vec![kind(prop)];
        if required.contains(&name.as_str()) {
            facts.push("required".to_owned());
        }
        if let Some(values) = prop["enum"].as_array() {
            facts.push(format!(
                "one of {}",
                values.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
            ));
        }
        out.push_str(&format!("| `{full}` | {} | {} |\n", cell(&facts.join(", ")), cell(prop["description"].as_str().unwrap_or_default())));
        let nested = if prop["type"] == "array" { (&prop["items"], format!("{full}[]")) } else { (prop, full) };
        fields(nested.0, &nested.1, out, rules);
    }
}

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

/// The receiver's config file from its JSON Schema
/// (`fusionhook-receiver --config-schema`): every key with its type and
/// description, a tagged choice (`store.type`) with each variant's keys.
pub fn receiver_config(schema: &Value) -> String {
    let mut out = String::from(
        "# Receiver config file\n\n<!-- Generated from the receiver's config types (fusionhook-receiver --config-schema) by tests/tests/reference.rs: do not edit. -->\n\nThe YAML file `fusionhook-receiver --config FILE` reads; the operator renders it from a `FusionAuthWebhook`, and a receiver run by hand reads one written by hand ([The receiver](../receiver.md)). Unknown keys are refused; `fusionhook-receiver --check --config FILE` checks a file; `fusionhook-receiver --config-schema` prints its JSON Schema, for an editor's completion (`# yaml-language-server: $schema=...`).\n\n| key | type | description |\n|---|---|---|\n",
    );
    config_fields(schema, schema, "", "", &mut out);
    out
}

/// `value` itself, or the definition it refers to.
fn resolved<'a>(root: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => &root["$defs"][name],
        None => value,
    }
}

/// The members of `anyOf`/`oneOf` that are not `null` (an `Option`'s
/// `anyOf: [T, null]` is `T`), or `value` alone.
fn choices<'a>(root: &'a Value, value: &'a Value) -> Vec<&'a Value> {
    let value = resolved(root, value);
    let members = value["anyOf"].as_array().or_else(|| value["oneOf"].as_array());
    match members {
        Some(members) => members.iter().map(|m| resolved(root, m)).filter(|m| m["type"] != "null").collect(),
        None => vec![value],
    }
}

fn config_kind(root: &Value, value: &Value) -> String {
    let members = choices(root, value);
    if members.len() > 1 && members.iter().all(|m| m["const"].is_string()) {
        let values: Vec<String> = members.iter().map(|m| format!("`{}`", m["const"].as_str().unwrap_or_default())).collect();
        return format!("one of {}", values.join(", "));
    }
    if let [only] = members.as_slice()
        && let Some(value) = only["const"].as_str()
    {
        return format!("`{value}`");
    }
    let kinds: Vec<String> = members
        .iter()
        .map(|m| {
            let t = m["type"].as_array().and_then(|t| t.iter().find(|t| *t != "null")).unwrap_or(&m["type"]);
            match t.as_str() {
                Some("array") => format!("list of {}", config_kind(root, &m["items"])),
                Some("object") if m["additionalProperties"].is_object() => {
                    format!("map of {}", config_kind(root, &m["additionalProperties"]))
                }
                Some(t) => t.to_owned(),
                None if m["oneOf"].is_array() || m["anyOf"].is_array() => config_kind(root, m),
                None => "any".to_owned(),
            }
        })
        .collect();
    let mut unique = kinds.clone();
    unique.dedup();
    unique.join(" or ")
}

/// The rows of `value`'s keys under `path`; `when`: the variant they belong to.
fn config_fields(root: &Value, value: &Value, path: &str, when: &str, out: &mut String) {
    let members = choices(root, value);
    let tagged: Vec<&Value> = members.iter().copied().filter(|m| m["properties"]["type"]["const"].is_string()).collect();
    if tagged.len() > 1 {
        let tags: Vec<String> =
            tagged.iter().map(|m| format!("`{}`", m["properties"]["type"]["const"].as_str().unwrap_or_default())).collect();
        let variants: Vec<String> = tagged
            .iter()
            .map(|m| {
                format!(
                    "`{}`: {}",
                    m["properties"]["type"]["const"].as_str().unwrap_or_default(),
                    m["description"].as_str().unwrap_or_default()
                )
            })
            .collect();
        out.push_str(&format!("| `{path}.type` | one of {} | {} |\n", tags.join(", "), cell(&variants.join(" "))));
        for member in tagged {
            let tag = format!("with `type: {}`", member["properties"]["type"]["const"].as_str().unwrap_or_default());
            config_fields(root, member, path, &tag, out);
        }
        return;
    }
    for member in members {
        let required: Vec<&str> = member["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let Some(properties) = member["properties"].as_object() else {
            continue;
        };
        for (name, prop) in properties.iter().filter(|(name, _)| !when.starts_with("with `type") || *name != "type") {
            let full = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            let mut facts = vec![config_kind(root, prop)];
            if required.contains(&name.as_str()) {
                facts.push("required".to_owned());
            }
            if !when.is_empty() {
                facts.push(when.to_owned());
            }
            let description = prop["description"].as_str().or_else(|| resolved(root, prop)["description"].as_str()).unwrap_or_default();
            out.push_str(&format!("| `{full}` | {} | {} |\n", cell(&facts.join(", ")), cell(description)));
            let target = choices(root, prop);
            if target.iter().filter(|m| m["properties"]["type"]["const"].is_string()).count() > 1 {
                config_fields(root, prop, &full, "", out);
                continue;
            }
            for nested in target {
                match nested["type"].as_str() {
                    Some("array") => config_fields(root, &nested["items"], &format!("{full}[]"), "", out),
                    Some("object") if nested["additionalProperties"].is_object() => {
                        config_fields(root, &nested["additionalProperties"], &format!("{full}.NAME"), "", out)
                    }
                    _ => config_fields(root, nested, &full, "", out),
                }
            }
        }
    }
}

//! The committed CRD equals the generator's output, and it is a CRD a user
//! can read with `kubectl explain`: every field of ours has a description.

#![allow(clippy::unwrap_used, missing_docs)]

use serde_json::Value;

const COMMITTED: &str = include_str!("../../crds/fusionauthwebhooks.yaml");

#[test]
fn committed_crd_matches_the_generator() {
    let generated = fusionhook_operator::crd_yaml().unwrap();
    assert!(
        generated == COMMITTED,
        "crds/fusionauthwebhooks.yaml is stale; run: cargo run -p fusionhook-operator -- crd > crds/fusionauthwebhooks.yaml"
    );
}

fn crd() -> Value {
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(COMMITTED).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
    assert_eq!(docs.len(), 1);
    docs.into_iter().next().unwrap()
}

fn schema() -> Value {
    crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Walks our own properties (not the embedded Kubernetes types).
fn undocumented(node: &Value, path: &str, out: &mut Vec<String>) {
    if path.ends_with(".resources") || path.contains(".conditions") {
        return;
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            let child_path = format!("{path}.{name}");
            if child.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
                out.push(child_path.clone());
            }
            undocumented(child, &child_path, out);
        }
    }
    if let Some(items) = node.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = node.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(extra, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_field_has_a_description() {
    let schema = schema();
    let mut missing = Vec::new();
    undocumented(&schema["properties"]["spec"], "spec", &mut missing);
    undocumented(&schema["properties"]["status"], "status", &mut missing);
    assert!(missing.is_empty(), "fields without description: {missing:#?}");
}

#[test]
fn the_crd_has_what_kubectl_users_rely_on() {
    let docs = crd();
    assert_eq!(docs["spec"]["names"]["shortNames"][0], "faw");
    assert_eq!(docs["spec"]["group"], "fusionhook.dev");
    let version = &docs["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["Ready", "Webhook ID", "Events", "Age"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let required: Vec<&str> = spec["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(required.contains(&"fusionAuth") && required.contains(&"events"));
    assert_eq!(spec["properties"]["events"]["minItems"], 1);
    let rules = spec["x-kubernetes-validations"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["message"].as_str().unwrap().contains("not both")));
}

fn validate_against_crd(document: &Value) -> Vec<String> {
    let validator = jsonschema::draft4::new(&schema()).unwrap();
    validator.iter_errors(document).map(|e| format!("{e} at {}", e.instance_path())).collect()
}

#[test]
fn the_example_is_a_valid_resource() {
    let text = include_str!("../../examples/todo-cleanup.yaml");
    let value: Value = serde_yaml::from_str(text).unwrap();
    assert_eq!(validate_against_crd(&value), Vec::<String>::new());
    let resource: fusionhook_operator::FusionAuthWebhook = serde_yaml::from_str(text).unwrap();
    assert_eq!(resource.spec.events, ["user.delete"]);
    assert_eq!(resource.spec.routes[0].http.as_ref().unwrap().url, "http://todo-api.todo.svc/users/{{event.user.id}}/todos");
}

#[test]
fn the_schema_refuses_what_users_get_wrong() {
    let base: Value = serde_yaml::from_str(include_str!("../../examples/todo-cleanup.yaml")).unwrap();
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        edit(&mut v);
        validate_against_crd(&v)
    };
    assert!(!broken(&|v| v["spec"]["events"] = serde_json::json!([])).is_empty(), "no events");
    assert!(!broken(&|v| v["spec"]["events"] = serde_json::json!(["user delete"])).is_empty(), "bad event name");
    assert!(!broken(&|v| v["spec"]["delivery"]["readTimeoutMs"] = 0.into()).is_empty(), "timeout 0");
    assert!(!broken(&|v| v["spec"]["fusionAuth"].as_object_mut().unwrap().retain(|k, _| k != "apiKeySecretRef")).is_empty(), "no API key");
    assert!(!broken(&|v| v["spec"]["tenants"]["tenantIds"] = serde_json::json!(["not-a-uuid"])).is_empty(), "tenant id");
    assert!(!broken(&|v| v["spec"]["routes"][0]["events"] = serde_json::json!(["user.**"])).is_empty(), "bad filter");
    assert!(!broken(&|v| v["spec"]["deletionPolicy"] = "Keep".into()).is_empty(), "unknown policy");
}

//! The four ways to change an object: JSON merge patch, JSON patch (with
//! kube-apiserver's `test` semantics), strategic merge patch (built-in
//! kinds' keyed lists), and server-side apply.
//!
//! How far field ownership goes in server-side apply: each manager's last
//! applied configuration is remembered; a new apply removes the fields that
//! manager applied before and no longer applies, then merges the new
//! configuration (maps merged, lists replaced as a whole, keyed lists of the
//! built-in kinds merged by key). A field another manager applied with a
//! different value is a 409 Conflict unless `force=true`, which takes the
//! field over. Fields set by non-apply writes (create, update, patch) are
//! not tracked, so they never conflict; status written through `/status` is
//! untouched by applies to the main resource.

use serde_json::{Map, Value};

/// Lists of built-in kinds merged by a key (strategic merge and apply).
fn list_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "volumeMounts" | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

/// RFC 7386 merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch as kube-apiserver applies it: a `test` of `null`
/// passes on a missing path (evanphx/json-patch), which the json-patch
/// crate would refuse.
pub fn json(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops: Vec<Value> = ops
        .as_array()
        .ok_or("a JSON patch is an array of operations")?
        .iter()
        .filter(|op| {
            let missing = op["path"].as_str().is_none_or(|p| target.pointer(p).is_none());
            !(op["op"] == "test" && op["value"].is_null() && missing)
        })
        .cloned()
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).map_err(|e| e.to_string())?;
    json_patch::patch(target, &patch).map_err(|e| e.to_string())
}

/// Strategic merge patch: maps merged, `null` deletes, keyed lists merged
/// by key (an element `{"$patch": "delete", name: …}` removes one), other
/// lists replaced; directives (`$setElementOrder/…`, `$retainKeys`) ignored.
pub fn strategic(target: &mut Value, patch: &Value) {
    strategic_at(target, patch, "");
}

fn strategic_at(target: &mut Value, patch: &Value, field: &str) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                if key.starts_with('$') {
                    continue;
                }
                if value.is_null() {
                    t.remove(key);
                    continue;
                }
                match t.get_mut(key) {
                    Some(existing) => strategic_at(existing, value, key),
                    None => {
                        let mut fresh = Value::Null;
                        strategic_at(&mut fresh, value, key);
                        t.insert(key.clone(), fresh);
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if list_key(field).is_some() => {
            let key = list_key(field).unwrap_or("name");
            for item in p {
                let position = t.iter().position(|e| e.get(key).is_some() && e.get(key) == item.get(key));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(i), true) => {
                        t.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic_at(&mut t[i], item, ""),
                    (None, false) => {
                        let mut fresh = Value::Null;
                        strategic_at(&mut fresh, item, "");
                        t.push(fresh);
                    }
                }
            }
        }
        (target, patch) => *target = strip_directives(patch),
    }
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Leaf paths of `value` (a list counts as one leaf).
fn leaves(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                prefix.push(k.clone());
                leaves(v, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cursor = value;
    for k in parents {
        match cursor.get_mut(k) {
            Some(next) => cursor = next,
            None => return,
        }
    }
    if let Some(map) = cursor.as_object_mut() {
        map.remove(last);
    }
}

/// Paths that `ours` sets and `theirs` (another manager's applied config)
/// sets to a different value.
pub fn conflicts(ours: &Value, theirs: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    leaves(ours, &mut Vec::new(), &mut paths);
    paths
        .into_iter()
        .filter(|p| p.first().is_none_or(|k| k != "metadata" || p.get(1).is_some_and(|k| k == "labels" || k == "annotations")))
        .filter(|p| get(theirs, p).is_some_and(|v| Some(v) != get(ours, p)))
        .map(|p| format!(".{}", p.join(".")))
        .collect()
}

/// Removes from `config` the fields at `paths` (`.a.b` form), for a manager
/// that lost them to a forced apply.
pub fn without(config: &Value, paths: &[String]) -> Value {
    let mut out = config.clone();
    for p in paths {
        let path: Vec<String> = p.trim_start_matches('.').split('.').map(str::to_owned).collect();
        remove(&mut out, &path);
    }
    out
}

/// The object after a manager applies `config`, given what it applied
/// before (`previous`): fields it no longer applies are removed, then the
/// config is merged in.
pub fn apply(existing: &Value, previous: &Value, config: &Value) -> Value {
    let mut out = existing.clone();
    let mut dropped = Vec::new();
    leaves(previous, &mut Vec::new(), &mut dropped);
    for path in dropped.iter().filter(|p| !p.is_empty() && get(config, p).is_none()) {
        if path.first().is_some_and(|k| k == "metadata") && !path.get(1).is_some_and(|k| k == "labels" || k == "annotations") {
            continue;
        }
        remove(&mut out, path);
    }
    apply_merge(&mut out, config, "");
    out
}

fn apply_merge(target: &mut Value, config: &Value, field: &str) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (key, value) in c {
                match t.get_mut(key) {
                    Some(existing) => apply_merge(existing, value, key),
                    None => {
                        t.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(c)) if list_key(field).is_some() => {
            // The applier lists the whole set: keep existing elements'
            // fields others set, in the applier's order.
            let key = list_key(field).unwrap_or("name");
            let mut merged = Vec::with_capacity(c.len());
            for item in c {
                match t.iter().find(|e| e.get(key).is_some() && e.get(key) == item.get(key)) {
                    Some(existing) => {
                        let mut e = existing.clone();
                        apply_merge(&mut e, item, "");
                        merged.push(e);
                    }
                    None => merged.push(item.clone()),
                }
            }
            *t = merged;
        }
        (target, config) => *target = config.clone(),
    }
}

/// An empty JSON object.
pub fn empty() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_and_env_by_name() {
        let mut d = json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}});
        strategic(
            &mut d,
            &json!({"$setElementOrder/containers": [{"name": "a"}], "spec": {"containers": [
                {"name": "a", "env": [{"name": "B", "value": "3"}, {"name": "A", "$patch": "delete"}]},
                {"name": "b", "image": "y"}
            ]}}),
        );
        assert_eq!(
            d,
            json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "B", "value": "3"}]}, {"name": "b", "image": "y"}]}})
        );
    }

    #[test]
    fn json_patch_test_of_null_passes_on_a_missing_path_like_kube_apiserver() {
        let mut o = json!({"metadata": {}});
        json(&mut o, &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]))
            .unwrap();
        assert_eq!(o["metadata"]["finalizers"], json!(["f"]));
        assert!(json(&mut o, &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}])).is_err());
    }

    #[test]
    fn apply_removes_what_the_manager_stopped_applying_and_keeps_the_rest() {
        let existing =
            json!({"metadata": {"labels": {"a": "1", "b": "2", "other": "x"}}, "spec": {"replicas": 2, "x": 1}, "status": {"ready": true}});
        let previous = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 2, "x": 1}});
        let config = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 3}});
        let out = apply(&existing, &previous, &config);
        assert_eq!(out, json!({"metadata": {"labels": {"a": "1", "other": "x"}}, "spec": {"replicas": 3}, "status": {"ready": true}}));
        assert_eq!(conflicts(&config, &json!({"spec": {"replicas": 5}})), [".spec.replicas"]);
        assert!(conflicts(&config, &json!({"spec": {"replicas": 3}})).is_empty());
    }
}

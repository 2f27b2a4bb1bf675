//! send: a synthetic event of a type, built from FusionAuth's published
//! example of it (`cli/events/`, copied from FusionAuth's docs) with a fresh
//! `id` and `createInstant` and the fields a person sets, for testing routes
//! without FusionAuth.

use anyhow::{anyhow, bail};
use fusionhook_fusionauth::event_types;
use serde_json::{Map, Value, json};

/// FusionAuth's published examples, by file name (the type is inside: the
/// docs' file for `user.two-factor.failed.attempt` is named with a dash;
/// `identity.verified`, an obsolete pre-release name, is left out).
const EXAMPLES: &[(&str, &str)] = &[
    ("audit-log.create", include_str!("../events/audit-log.create.json")),
    ("entity.create", include_str!("../events/entity.create.json")),
    ("entity.create.complete", include_str!("../events/entity.create.complete.json")),
    ("entity.delete", include_str!("../events/entity.delete.json")),
    ("entity.delete.complete", include_str!("../events/entity.delete.complete.json")),
    ("entity.update", include_str!("../events/entity.update.json")),
    ("entity.update.complete", include_str!("../events/entity.update.complete.json")),
    ("event-log.create", include_str!("../events/event-log.create.json")),
    ("group.create", include_str!("../events/group.create.json")),
    ("group.delete", include_str!("../events/group.delete.json")),
    ("group.member.add.complete", include_str!("../events/group.member.add.complete.json")),
    ("group.member.update.complete", include_str!("../events/group.member.update.complete.json")),
    ("group.update.complete", include_str!("../events/group.update.complete.json")),
    ("jwt.refresh", include_str!("../events/jwt.refresh.json")),
    ("jwt.refresh-token.revoke", include_str!("../events/jwt.refresh-token.revoke.json")),
    ("kickstart.success", include_str!("../events/kickstart.success.json")),
    ("user.action", include_str!("../events/user.action.json")),
    ("user.deactivate", include_str!("../events/user.deactivate.json")),
    ("user.delete", include_str!("../events/user.delete.json")),
    ("user.delete.complete", include_str!("../events/user.delete.complete.json")),
    ("user.email.verified", include_str!("../events/user.email.verified.json")),
    ("user.identity.verified", include_str!("../events/user.identity.verified.json")),
    ("user.login.failed", include_str!("../events/user.login.failed.json")),
    ("user.login.new-device", include_str!("../events/user.login.new-device.json")),
    ("user.login.success", include_str!("../events/user.login.success.json")),
    ("user.password.reset.start", include_str!("../events/user.password.reset.start.json")),
    ("user.password.reset.success", include_str!("../events/user.password.reset.success.json")),
    ("user.password.update", include_str!("../events/user.password.update.json")),
    ("user.registration.verified", include_str!("../events/user.registration.verified.json")),
    ("user.two-factor.challenge", include_str!("../events/user.two-factor.challenge.json")),
    ("user.two-factor.failed-attempt", include_str!("../events/user.two-factor.failed-attempt.json")),
    ("user.two-factor.method.remove", include_str!("../events/user.two-factor.method.remove.json")),
    ("user.two-factor.success", include_str!("../events/user.two-factor.success.json")),
];

/// The `{"event": …}` body to send: from `base` (a file's event, wrapped or
/// not) or the published example of `kind`, with a fresh id and
/// createInstant and `sets` (`path=value`, the value as JSON when it parses,
/// else a string) applied.
pub fn build(kind: Option<&str>, base: Option<Value>, sets: &[String]) -> anyhow::Result<Value> {
    let mut event = match (base, kind) {
        (Some(v), _) => unwrap(v),
        (None, Some(kind)) => example(kind)?,
        (None, None) => bail!("give --event TYPE or --from-file FILE"),
    };
    if let Some(kind) = kind {
        event["type"] = json!(kind);
    }
    let Some(kind) = event["type"].as_str().map(str::to_owned) else { bail!("the event has no `type`") };
    if event_types::lookup(&kind).is_none() {
        bail!("FusionAuth does not raise events of type `{kind}` (e.g. user.delete, user.create, user.login.success)");
    }
    event["id"] = json!(uuid::Uuid::new_v4());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    event["createInstant"] = json!(u64::try_from(now).unwrap_or(u64::MAX));
    for set in sets {
        let (path, value) = set.split_once('=').ok_or_else(|| anyhow!("--set {set}: give PATH=VALUE, e.g. user.email=a@b.c"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        put(&mut event, path, value)?;
    }
    Ok(json!({ "event": event }))
}

fn unwrap(value: Value) -> Value {
    match value {
        Value::Object(mut o) if o.len() == 1 && o.get("event").is_some_and(Value::is_object) => o.remove("event").unwrap_or_default(),
        other => other,
    }
}

/// The published example of `kind`; for a type without one here (e.g.
/// `user.create`), its family's (`user.registration.verified` for
/// registrations, `user.delete` for other user events, `group.create`,
/// `entity.create`) with the type changed; else the bare fields.
fn example(kind: &str) -> anyhow::Result<Value> {
    let published = |wanted: &str| {
        EXAMPLES.iter().filter_map(|(_, text)| serde_json::from_str::<Value>(text).ok()).map(unwrap).find(|e| e["type"] == wanted)
    };
    if let Some(event) = published(kind) {
        return Ok(event);
    }
    let family = [
        ("user.registration.", "user.registration.verified"),
        ("user.", "user.delete"),
        ("group.", "group.create"),
        ("entity.", "entity.create"),
    ];
    let mut event =
        family.iter().find(|(prefix, _)| kind.starts_with(prefix)).and_then(|(_, example)| published(example)).unwrap_or_else(|| json!({}));
    event["type"] = json!(kind);
    Ok(event)
}

/// Sets `path` (`user.data.plan`) in `event`, creating objects on the way.
fn put(event: &mut Value, path: &str, value: Value) -> anyhow::Result<()> {
    let mut at = event;
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set {path}: an empty path segment");
    }
    for (i, part) in parts.iter().enumerate() {
        if !at.is_object() {
            bail!("--set {path}: `{}` is not an object", parts[..i].join("."));
        }
        let object = at.as_object_mut().ok_or_else(|| anyhow!("not an object"))?;
        if i + 1 == parts.len() {
            object.insert((*part).to_owned(), value);
            return Ok(());
        }
        at = object.entry((*part).to_owned()).or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// The outcome of `send` in words.
pub fn render(outcome: &Value) -> String {
    let mut out = format!(
        "sent {} {}: the receiver answered {} ({})\n",
        outcome["type"].as_str().unwrap_or("?"),
        outcome["eventId"].as_str().unwrap_or("?"),
        outcome["status"],
        outcome["answer"]["outcome"].as_str().or_else(|| outcome["answer"]["errors"][0]["message"].as_str()).unwrap_or("no outcome"),
    );
    for d in outcome["deliveries"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  route {}: {} after {} attempt(s){}\n",
            d["route"].as_str().unwrap_or("?"),
            d["state"].as_str().unwrap_or("?"),
            d["totalAttempts"],
            d["lastError"].as_str().map(|e| format!(" ({e})")).unwrap_or_default()
        ));
    }
    if outcome["settled"] == false {
        out.push_str("  (still pending when the wait ended: kubectl fusionhook deliveries NAME)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_example_gets_a_fresh_id_and_the_fields_set() {
        let a = build(Some("user.delete"), None, &["user.id=u-1".into(), "user.active=false".into(), "user.data.plan=\"pro\"".into()])
            .unwrap_or_default();
        let b = build(Some("user.delete"), None, &[]).unwrap_or_default();
        assert_ne!(a["event"]["id"], b["event"]["id"]);
        assert_ne!(a["event"]["id"], "e502168a-b469-45d9-a079-fd45f83e0406", "not the example's id");
        assert_eq!(a["event"]["type"], "user.delete");
        assert_eq!((&a["event"]["user"]["id"], &a["event"]["user"]["active"]), (&json!("u-1"), &json!(false)));
        assert_eq!(a["event"]["user"]["data"]["plan"], "pro");
        assert!(a["event"]["user"]["email"].is_string(), "the rest of the published example stays");
    }

    #[test]
    fn a_type_without_a_published_example_borrows_its_familys() {
        let created = build(Some("user.create"), None, &[]).unwrap_or_default();
        assert_eq!(created["event"]["type"], "user.create");
        assert!(created["event"]["user"]["email"].is_string() && created["event"]["tenantId"].is_string(), "{created}");
        let registered = build(Some("user.registration.create"), None, &[]).unwrap_or_default();
        assert!(registered["event"]["registration"]["applicationId"].is_string(), "{registered}");
    }

    #[test]
    fn bad_input_is_refused_with_what_to_do() {
        assert!(build(Some("user.nonsense"), None, &[]).is_err());
        assert!(build(Some("user.delete"), None, &["user.id".into()]).is_err());
        assert!(build(Some("user.delete"), None, &["user.id.x=1".into()]).is_err(), "user.id is a string");
        assert!(build(None, Some(json!({"event": {"user": {}}})), &[]).is_err(), "no type");
        let wrapped = build(None, Some(json!({"event": {"type": "user.create", "user": {"id": "u"}}})), &[]).unwrap_or_default();
        assert_eq!(wrapped["event"]["type"], "user.create");
    }

    #[test]
    fn every_published_example_parses() {
        for (file, text) in EXAMPLES {
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            let kind = unwrap(v)["type"].as_str().unwrap_or_default().to_owned();
            assert!(event_types::lookup(&kind).is_some(), "{file}: type {kind:?}");
            assert_eq!(build(Some(&kind), None, &[]).unwrap_or_default()["event"]["type"], kind.as_str());
        }
    }
}

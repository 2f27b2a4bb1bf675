//! Label selectors (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`)
//! and field selectors (`metadata.name=x`, `metadata.namespace!=y`, any
//! dotted path with `=`, `==` or `!=`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on commas outside parentheses.
fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect()
}

fn set(values: &str) -> Option<Vec<String>> {
    let inner = values.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect())
}

impl LabelSelector {
    /// Parses `labelSelector`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in terms(text) {
            let requirement = if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(v).ok_or_else(|| format!("bad set in {term}"))?)
            } else if let Some((k, v)) = term.split_once(" in ") {
                Requirement::In(k.trim().into(), set(v).ok_or_else(|| format!("bad set in {term}"))?)
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if term.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(term.clone())
            } else {
                return Err(format!("unable to parse requirement: {term}"));
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    /// Whether the object's labels match.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v),
            Requirement::NotEquals(k, v) => label(k) != Some(v),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        })
    }
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    /// Parses `fieldSelector`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for term in terms(text) {
            let (path, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!("invalid field selector: {term}"));
            };
            out.push((path.trim().split('.').map(str::to_owned).collect(), equal, value.trim().to_owned()));
        }
        Ok(Self(out))
    }

    /// Whether the object matches (a missing field compares as `""`).
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let found = path.iter().try_fold(object, |v, k| v.get(k));
            let text = match found {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (text == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors_match_like_kubernetes() {
        let o = json!({"metadata": {"name": "n", "namespace": "ns", "labels": {"app": "x", "tier": "web"}}});
        for (selector, expected) in [
            ("app=x", true),
            ("app==x,tier=web", true),
            ("app!=x", false),
            ("tier in (web, db)", true),
            ("tier notin (web)", false),
            ("app", true),
            ("!missing", true),
            ("missing", false),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(selector).unwrap().matches(&o), expected, "{selector}");
        }
        assert!(FieldSelector::parse("metadata.name=n,metadata.namespace!=other").unwrap().matches(&o));
        assert!(!FieldSelector::parse("metadata.name=m").unwrap().matches(&o));
        assert!(LabelSelector::parse("a=(").is_ok() && LabelSelector::parse("a b").is_err());
    }
}

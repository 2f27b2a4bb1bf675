//! `{{event.some.path}}` placeholders, resolved from the event's JSON.
//!
//! Pure: templates are parsed once at start (a typo fails the config, not a
//! delivery) and rendered per event. A placeholder that resolves to nothing
//! (missing, null, empty string, object, array) is an error, never an empty
//! string: `DELETE /users//todos` must not happen. In a URL, a value always
//! stays inside its path segment or query value: everything but RFC 3986's
//! unreserved characters is percent-encoded, and a path segment that would
//! read as `.` or `..` (which URL parsers remove together with the segment
//! before it: `/users/../todos` is `/todos`) is an error.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// Characters left as they are when a value goes into a URL: RFC 3986
/// unreserved ones. Everything else (`/`, `\\`, `?`, `#`, `%`, spaces, …)
/// is percent-encoded, so a value never adds a segment or a query; `.` is
/// left as it is, and dot segments are refused by [`Template::render_url`].
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(FieldPath),
}

/// A path into the event object, e.g. `event.user.id` -> `["user", "id"]`.
/// Numeric segments index arrays (`event.user.registrations.0.applicationId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

/// A template that does not parse. The message names the problem; the caller
/// adds the config field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A placeholder that resolved to nothing usable, or to a value that
/// would change the request's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placeholder {{{{{path}}}}} {problem}")]
pub struct RenderError {
    /// The placeholder as written, e.g. `event.user.id`.
    pub path: String,
    /// What was found instead of a value.
    pub problem: &'static str,
}

impl FieldPath {
    /// Parses `event.a.b`. The `event.` root is required so templates read
    /// the same as FusionAuth's documentation (`event.user.id`).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let text = text.trim();
        let rest =
            text.strip_prefix("event.").ok_or_else(|| TemplateError(format!("placeholder {{{{{text}}}}} must start with `event.`")))?;
        let segments: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if segments.iter().any(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '{' || c == '}')) {
            return Err(TemplateError(format!("placeholder {{{{{text}}}}} is not a dotted path like event.user.id")));
        }
        Ok(Self { text: text.to_owned(), segments })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Looks the path up in the event object.
    pub fn lookup<'v>(&self, event: &'v Value) -> Option<&'v Value> {
        self.segments.iter().try_fold(event, |node, segment| match node {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }

    /// The value as text, or why there is none.
    pub fn resolve(&self, event: &Value) -> Result<String, RenderError> {
        let problem = match self.lookup(event) {
            None => "is missing from the event",
            Some(Value::Null) => "is null in the event",
            Some(Value::String(s)) if s.is_empty() => "is an empty string in the event",
            Some(Value::String(s)) => return Ok(s.clone()),
            Some(Value::Number(n)) => return Ok(n.to_string()),
            Some(Value::Bool(b)) => return Ok(b.to_string()),
            Some(Value::Object(_)) => "is an object, not a value",
            Some(Value::Array(_)) => "is an array, not a value",
        };
        Err(RenderError { path: self.text.clone(), problem })
    }
}

impl Template {
    /// Parses text with `{{event.path}}` placeholders.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| TemplateError("`{{` without a closing `}}`".to_owned()))?;
            parts.push(Part::Field(FieldPath::parse(&after[..close])?));
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(TemplateError("`}}` without an opening `{{`".to_owned()));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Whether rendering needs the event (false for plain text).
    pub fn has_placeholders(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The text before the first placeholder.
    pub fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(s)) => s,
            _ => "",
        }
    }

    /// Renders with every placeholder replaced by `sample` (config checks).
    pub fn render_sample(&self, sample: &str) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.as_str(),
                Part::Field(_) => sample,
            })
            .collect()
    }

    /// Renders against the event object, values verbatim (header values,
    /// methods).
    pub fn render(&self, event: &Value) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(path) => out.push_str(&path.resolve(event)?),
            }
        }
        Ok(out)
    }

    /// Renders a URL against the event object: values percent-encoded as
    /// one component, and no path segment that a URL parser would take as
    /// `.` or `..`.
    pub fn render_url(&self, event: &Value) -> Result<String, RenderError> {
        let mut out = String::new();
        let mut values = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(path) => {
                    let start = out.len();
                    out.extend(utf8_percent_encode(&path.resolve(event)?, URL_COMPONENT));
                    values.push((start..out.len(), path));
                }
            }
        }
        if let Some(segment) = dot_segment(&out) {
            // Values are never empty, so a dot segment a value touches overlaps it.
            let culprit = values.iter().find(|(value, _)| value.start < segment.end && segment.start < value.end);
            return Err(RenderError {
                path: culprit.map_or_else(String::new, |(_, path)| path.text.clone()),
                problem: "makes a `.` or `..` path segment, which would send the request to another path",
            });
        }
        Ok(out)
    }
}

/// The byte range of the first path segment of `url` that a URL parser
/// folds to `.` or `..` (also when written `%2e`, as WHATWG and the `url`
/// crate read it), if any. The path runs from the first `/` after `://` to
/// the first `?` or `#`; segments end at `/` or at `\\`, which WHATWG
/// reads as `/` in http(s) URLs (a value's `\\` is percent-encoded, but a
/// template's own may not be).
pub fn dot_segment(url: &str) -> Option<std::ops::Range<usize>> {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[authority..].find(['/', '\\']).map_or(url.len(), |i| authority + i);
    let path_end = url[path_start..].find(['?', '#']).map_or(url.len(), |i| path_start + i);
    let mut start = path_start;
    for segment in url[path_start..path_end].split(['/', '\\']) {
        let end = start + segment.len();
        let lower = segment.to_ascii_lowercase();
        if matches!(lower.as_str(), "." | "%2e" | ".." | ".%2e" | "%2e." | "%2e%2e") {
            return Some(start..end);
        }
        start = end + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"type":"user.delete","user":{"id":"u-1","email":"a b/c?d#e%f","age":42,"active":true,"none":null,"empty":"","registrations":[{"applicationId":"app-1"}]}})
    }

    #[test]
    fn renders_placeholders_from_the_event() {
        let t = Template::parse("http://todo/users/{{event.user.id}}/todos?app={{ event.user.registrations.0.applicationId }}").unwrap();
        assert!(t.has_placeholders());
        assert_eq!(t.render_url(&event()).unwrap(), "http://todo/users/u-1/todos?app=app-1");
        let n = Template::parse("{{event.user.age}}-{{event.user.active}}").unwrap();
        assert_eq!(n.render(&event()).unwrap(), "42-true");
    }

    #[test]
    fn url_values_are_percent_encoded_as_one_component() {
        let t = Template::parse("http://h/x/{{event.user.email}}").unwrap();
        assert_eq!(t.render_url(&event()).unwrap(), "http://h/x/a%20b%2Fc%3Fd%23e%25f");
        assert_eq!(t.render(&event()).unwrap(), "http://h/x/a b/c?d#e%f");
    }

    #[test]
    fn a_value_that_makes_a_dot_segment_is_an_error() {
        let event = |name: &str| json!({"user": {"username": name}});
        let t = Template::parse("http://h/users/{{event.user.username}}/todos?q={{event.user.username}}").unwrap();
        for hostile in [".", "..", "%2e", "%2E%2e"] {
            let rendered = t.render_url(&event(hostile));
            if hostile.starts_with('%') {
                // `%` itself is encoded: the segment is `%252e`, not a dot.
                assert!(rendered.unwrap().starts_with("http://h/users/%252"), "{hostile}");
            } else {
                let err = rendered.unwrap_err();
                assert_eq!(err.path, "event.user.username", "{hostile}");
            }
        }
        // A literal next to the value can complete a dot segment too.
        let glued = Template::parse("http://h/users/.{{event.user.username}}/x").unwrap();
        assert!(glued.render_url(&event(".")).is_err());
        assert_eq!(glued.render_url(&event("a")).unwrap(), "http://h/users/.a/x");
        let encoded = Template::parse("http://h/users/%2E{{event.user.username}}/x").unwrap();
        assert!(encoded.render_url(&event(".")).is_err());
        // Dots in the query are only text.
        let query = Template::parse("http://h/users?name={{event.user.username}}").unwrap();
        assert_eq!(query.render_url(&event("..")).unwrap(), "http://h/users?name=..");
    }

    #[test]
    fn dot_segments_are_found_in_any_spelling_the_parser_folds() {
        for url in [
            "http://h/.",
            "http://h/a/../b",
            "http://h/a/..\\b",
            "http://h/a\\.",
            "http://h\\..\\x",
            "http://h/%2E/b",
            "http://h/.%2e/b",
            "http://h/%2e./b",
            "http://h/%2E%2E?x",
            "/a/./b",
        ] {
            assert!(dot_segment(url).is_some(), "{url}");
        }
        for url in [
            "http://h/",
            "http://h/a.b/c",
            "http://h/...",
            "http://h/a?x=/../",
            "http://h/a#/../",
            "http://h.example/x",
            "http://h/%2e%2e%2e",
        ] {
            assert_eq!(dot_segment(url), None, "{url}");
        }
    }

    #[test]
    fn a_placeholder_that_resolves_to_nothing_is_an_error() {
        for (path, problem) in [
            ("event.user.missing", "is missing from the event"),
            ("event.user.none", "is null in the event"),
            ("event.user.empty", "is an empty string in the event"),
            ("event.user", "is an object, not a value"),
            ("event.user.registrations", "is an array, not a value"),
            ("event.user.registrations.5.applicationId", "is missing from the event"),
            ("event.type.deeper", "is missing from the event"),
        ] {
            let t = Template::parse(&format!("/u/{{{{{path}}}}}/todos")).unwrap();
            let err = t.render_url(&event()).unwrap_err();
            assert_eq!(err.problem, problem, "{path}");
            assert_eq!(err.to_string(), format!("placeholder {{{{{path}}}}} {problem}"));
        }
    }

    #[test]
    fn bad_templates_fail_to_parse() {
        assert!(Template::parse("x {{event.user.id").is_err());
        assert!(Template::parse("x }} y").is_err());
        assert!(Template::parse("{{user.id}}").is_err());
        assert!(Template::parse("{{event.}}").is_err());
        assert!(Template::parse("{{event.a..b}}").is_err());
        assert!(!Template::parse("plain").unwrap().has_placeholders());
        assert_eq!(Template::parse("").unwrap().render(&event()).unwrap(), "");
    }
}

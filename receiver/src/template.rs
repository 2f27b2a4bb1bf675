//! `{{event.some.path}}` placeholders, resolved from the event's JSON.
//!
//! Pure: templates are parsed once at start (a typo fails the config, not a
//! delivery) and rendered per event. A placeholder that resolves to nothing
//! (missing, null, empty string, object, array) is an error, never an empty
//! string: `DELETE /users//todos` must not happen.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// Characters left as they are when a value goes into a URL: RFC 3986
/// unreserved ones. Everything else (`/`, `?`, `#`, `%`, spaces, …) is
/// percent-encoded, so a value always stays one path segment or query value.
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

/// How rendered values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Verbatim (header values, methods).
    None,
    /// Percent-encoded as one URL component.
    UrlComponent,
}

/// A template that does not parse. The message names the problem; the caller
/// adds the config field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A placeholder that resolved to nothing usable.
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

    /// Renders against the event object.
    pub fn render(&self, event: &Value, escape: Escape) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(path) => {
                    let value = path.resolve(event)?;
                    match escape {
                        Escape::None => out.push_str(&value),
                        Escape::UrlComponent => out.extend(utf8_percent_encode(&value, URL_COMPONENT)),
                    }
                }
            }
        }
        Ok(out)
    }
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
        assert_eq!(t.render(&event(), Escape::UrlComponent).unwrap(), "http://todo/users/u-1/todos?app=app-1");
        let n = Template::parse("{{event.user.age}}-{{event.user.active}}").unwrap();
        assert_eq!(n.render(&event(), Escape::None).unwrap(), "42-true");
    }

    #[test]
    fn url_values_are_percent_encoded_as_one_component() {
        let t = Template::parse("http://h/x/{{event.user.email}}").unwrap();
        assert_eq!(t.render(&event(), Escape::UrlComponent).unwrap(), "http://h/x/a%20b%2Fc%3Fd%23e%25f");
        assert_eq!(t.render(&event(), Escape::None).unwrap(), "http://h/x/a b/c?d#e%f");
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
            let err = t.render(&event(), Escape::UrlComponent).unwrap_err();
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
        assert_eq!(Template::parse("").unwrap().render(&event(), Escape::None).unwrap(), "");
    }
}

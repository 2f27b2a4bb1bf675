//! The webhook request body FusionAuth sends: `{"event": {...}}` (FACTS.md §e).
//!
//! Parsing is one pass over the bytes as received: the common fields become
//! typed Rust, the original bytes are kept untouched for forwarding, and the
//! full JSON tree is built only when something asks for it (templating). Unknown fields and unknown event types are preserved,
//! never rejected; only the fields the pipeline relies on are checked.

use std::sync::OnceLock;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

/// The common fields of every FusionAuth event (FACTS.md §e).
///
/// `type` is the only field this crate requires: without it an event cannot be
/// routed. `id` is optional here because the receiver decides what to do with
/// an event it cannot deduplicate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique id of the event; FusionAuth reuses it when it retries a delivery.
    pub id: Option<String>,
    /// Wire event type, e.g. `user.delete`. Unknown values are kept as they are.
    #[serde(rename = "type")]
    pub kind: String,
    /// When FusionAuth generated the event, epoch milliseconds.
    pub create_instant: Option<i64>,
    /// Tenant the event belongs to; absent for instance events and in some examples.
    pub tenant_id: Option<String>,
    /// Application, on application-related events only (login, registration, jwt, …).
    pub application_id: Option<String>,
    /// Id of the primary object (user, group, entity), FusionAuth 1.53.0 and later.
    pub linked_object_id: Option<String>,
    /// Request context (IP address, device, location); may be absent.
    pub info: Option<EventInfo>,
}

/// `event.info`: where the action that raised the event came from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventInfo {
    /// Free-form data attached by FusionAuth.
    pub data: Option<Value>,
    /// Human-readable device description.
    pub device_description: Option<String>,
    /// Device name.
    pub device_name: Option<String>,
    /// Device type, e.g. `BROWSER`.
    pub device_type: Option<String>,
    /// Client IP address.
    pub ip_address: Option<String>,
    /// Geolocation (paid FusionAuth plans only).
    pub location: Option<EventLocation>,
    /// Operating system.
    pub os: Option<String>,
    /// User agent string.
    pub user_agent: Option<String>,
}

/// `event.info.location`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLocation {
    /// City name.
    pub city: Option<String>,
    /// Country code.
    pub country: Option<String>,
    /// Display form, e.g. `Denver, CO, US`.
    pub display_string: Option<String>,
    /// Latitude in degrees.
    pub latitude: Option<f64>,
    /// Longitude in degrees.
    pub longitude: Option<f64>,
    /// Region code.
    pub region: Option<String>,
    /// Postal code.
    pub zipcode: Option<String>,
}

/// Why a body is not a FusionAuth event request. Messages name the field and
/// never echo the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Zero bytes (or only whitespace).
    #[error("the request body is empty")]
    Empty,
    /// Not JSON at all.
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not an object.
    #[error("the request body must be a JSON object with an `event` field")]
    NotAnObject,
    /// An object without `event` (or with `"event": null`).
    #[error("the request body has no `event` field")]
    MissingEvent,
    /// `event` is a string, number, array or boolean.
    #[error("`event` must be a JSON object")]
    EventNotAnObject,
    /// A common field is missing or has the wrong type.
    #[error("{0}")]
    InvalidField(String),
}

impl EnvelopeError {
    /// Short machine-readable code, FusionAuth style (`[invalidJson]`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "[emptyBody]",
            Self::InvalidJson(_) => "[invalidJson]",
            Self::NotAnObject => "[invalidJson]",
            Self::MissingEvent => "[missing]event",
            Self::EventNotAnObject => "[invalid]event",
            Self::InvalidField(_) => "[invalid]event",
        }
    }
}

/// A parsed webhook request: typed common fields, the original bytes, and
/// the event's JSON tree on demand.
#[derive(Debug)]
pub struct EventRequest {
    body: Bytes,
    event: Event,
    json: OnceLock<Value>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default, deserialize_with = "object_or_null")]
    event: Option<Event>,
}

/// Reads `T` only from a JSON object (or `null`): serde's derive would also
/// accept an array, reading the fields by position.
fn object_or_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    use serde::de::{MapAccess, Visitor, value::MapAccessDeserializer};
    use std::marker::PhantomData;

    struct ObjectOrNull<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOrNull<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_any(ObjectOrNull(PhantomData))
}

impl EventRequest {
    /// Parses a request body in one pass. Unknown fields anywhere are
    /// accepted (and kept in [`EventRequest::body`]).
    pub fn parse(body: Bytes) -> Result<Self, EnvelopeError> {
        // serde would read a struct from a JSON array too; an envelope is an object.
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return Err(EnvelopeError::Empty),
            Some(b'{') => {}
            Some(_) => return Err(classify_non_object(&body)),
        }
        match serde_json::from_slice::<Envelope>(&body) {
            Ok(Envelope { event: Some(event) }) => Ok(Self { body, event, json: OnceLock::new() }),
            Ok(Envelope { event: None }) => Err(EnvelopeError::MissingEvent),
            Err(err) => Err(classify(&body, &err)),
        }
    }

    /// The typed common fields.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The request body exactly as received (`{"event": {...}}`).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The whole `event` object as JSON, unknown fields included. Built on
    /// first use and cached; routes that need no placeholders never build it.
    pub fn event_json(&self) -> &Value {
        self.json.get_or_init(|| {
            #[derive(Deserialize)]
            struct Tree {
                event: Value,
            }
            // Already parsed once as valid JSON, so this cannot fail; Null is
            // a harmless fallback that makes every lookup come back empty.
            serde_json::from_slice::<Tree>(&self.body).map(|t| t.event).unwrap_or(Value::Null)
        })
    }
}

fn classify_non_object(body: &[u8]) -> EnvelopeError {
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) => EnvelopeError::NotAnObject,
        Err(err) => EnvelopeError::InvalidJson(err.to_string()),
    }
}

/// Turns a parse failure into a precise error. Runs only on the error path:
/// it parses again to learn which field failed, and names it, e.g.
/// `event.id: invalid type: integer `5`, expected a string`.
fn classify(body: &[u8], err: &serde_json::Error) -> EnvelopeError {
    if !matches!(err.classify(), serde_json::error::Category::Data) {
        return EnvelopeError::InvalidJson(err.to_string());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let Err(err) = serde_path_to_error::deserialize::<_, Envelope>(&mut de) else {
        return EnvelopeError::InvalidField("the event could not be read".to_owned());
    };
    let path = err.path().to_string();
    let mut message = err.into_inner().to_string();
    // serde's message without its " at line L column C" tail.
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    match path.as_str() {
        "event" if message.starts_with("invalid type") => EnvelopeError::EventNotAnObject,
        "event" | "." => EnvelopeError::InvalidField(format!("event: {message}")),
        _ => EnvelopeError::InvalidField(format!("{path}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<EventRequest, EnvelopeError> {
        EventRequest::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn parses_common_fields_and_keeps_everything_else() {
        let body = r#"{"event":{"createInstant":1505762615056,"id":"e502168a-b469-45d9-a079-fd45f83e0406","info":{"ipAddress":"42.42.42.42","location":{"city":"Denver","latitude":39.7}},"tenantId":"t1","type":"user.delete","user":{"id":"u1","futureField":[1,2]}},"extra":true}"#;
        let req = parse(body).unwrap();
        let e = req.event();
        assert_eq!(e.id.as_deref(), Some("e502168a-b469-45d9-a079-fd45f83e0406"));
        assert_eq!(e.kind, "user.delete");
        assert_eq!(e.create_instant, Some(1505762615056));
        assert_eq!(e.tenant_id.as_deref(), Some("t1"));
        let info = e.info.as_ref().unwrap();
        assert_eq!(info.ip_address.as_deref(), Some("42.42.42.42"));
        assert_eq!(info.location.as_ref().unwrap().city.as_deref(), Some("Denver"));
        assert_eq!(req.event_json()["user"]["futureField"][1], 2);
        assert_eq!(req.body().as_ref(), body.as_bytes());
        assert_eq!(req.event_json()["info"]["location"]["latitude"], 39.7);
    }

    #[test]
    fn unknown_type_and_missing_optional_fields_are_fine() {
        let req = parse(r#"{"event":{"type":"user.teleport"}}"#).unwrap();
        assert_eq!(req.event().kind, "user.teleport");
        assert_eq!(req.event().id, None);
        assert_eq!(req.event().tenant_id, None);
    }

    #[test]
    fn every_published_example_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let req = EventRequest::parse(bytes.into()).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert!(req.event().id.is_some(), "{path:?}");
            n += 1;
        }
        assert!(n >= 5);
    }

    #[test]
    fn bad_bodies_get_precise_errors() {
        assert_eq!(parse("").unwrap_err(), EnvelopeError::Empty);
        assert_eq!(parse("  \n").unwrap_err(), EnvelopeError::Empty);
        assert!(matches!(parse("{\"event\":").unwrap_err(), EnvelopeError::InvalidJson(_)));
        assert!(matches!(parse("not json").unwrap_err(), EnvelopeError::InvalidJson(_)));
        assert_eq!(parse("[1,2]").unwrap_err(), EnvelopeError::NotAnObject);
        assert_eq!(parse("42").unwrap_err(), EnvelopeError::NotAnObject);
        assert_eq!(parse("{}").unwrap_err(), EnvelopeError::MissingEvent);
        assert_eq!(parse(r#"{"event":null}"#).unwrap_err(), EnvelopeError::MissingEvent);
        assert_eq!(parse(r#"{"event":"x"}"#).unwrap_err(), EnvelopeError::EventNotAnObject);
        assert_eq!(parse(r#"{"event":[1]}"#).unwrap_err(), EnvelopeError::EventNotAnObject);
        match parse(r#"{"event":{"id":5,"type":"user.delete"}}"#).unwrap_err() {
            EnvelopeError::InvalidField(m) => assert!(m.starts_with("event.id: invalid type"), "{m}"),
            other => panic!("{other:?}"),
        }
        match parse(r#"{"event":{"id":"x"}}"#).unwrap_err() {
            EnvelopeError::InvalidField(m) => assert_eq!(m, "event: missing field `type`"),
            other => panic!("{other:?}"),
        }
    }
}

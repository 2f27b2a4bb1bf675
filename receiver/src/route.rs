//! Which routes an event goes to. Pure: filters are parsed at start and
//! matched against `event.type` per event.

use crate::action::Action;

/// One entry of a route's `events` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// `*`: every event.
    All,
    /// `user.*`: every type starting with `user.` (the dot is kept).
    Prefix(String),
    /// `user.delete`: that type only.
    Exact(String),
}

impl EventFilter {
    /// Parses a filter. Names are FusionAuth wire names: letters, digits, `-`,
    /// separated by dots; a final `.*` makes a prefix filter.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::All);
        }
        let (name, prefix) = match text.strip_suffix(".*") {
            Some(name) => (name, true),
            None => (text, false),
        };
        let valid =
            !name.is_empty() && name.split('.').all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !valid {
            return Err(format!("`{text}` is not an event type (like user.delete), a prefix (like user.*) or *"));
        }
        Ok(if prefix { Self::Prefix(format!("{name}.")) } else { Self::Exact(name.to_owned()) })
    }

    /// Whether an event of type `kind` passes this filter.
    pub fn matches(&self, kind: &str) -> bool {
        match self {
            Self::All => true,
            Self::Prefix(prefix) => kind.starts_with(prefix.as_str()),
            Self::Exact(name) => kind == name,
        }
    }
}

/// A named route: filters and the action to run.
#[derive(Debug)]
pub struct Route {
    /// Name from the config; appears in logs, metrics and error answers.
    pub name: String,
    /// The event must pass at least one.
    pub filters: Vec<EventFilter>,
    /// What to do with a matching event.
    pub action: Action,
    /// Before the answer, or durably after it.
    pub ack: Ack,
    /// How a durable route is delivered (unused for `ack: sync`).
    pub durable: Durable,
}

/// A durable route's delivery settings.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    /// Retries.
    pub retry: crate::delivery::retry::RetryPolicy,
    /// Events about one object are delivered in order.
    pub ordered: bool,
    /// Delivered no earlier than this long after `createInstant`.
    pub delay: std::time::Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Route {
    /// Whether this route takes events of type `kind`.
    pub fn matches(&self, kind: &str) -> bool {
        self.filters.iter().any(|f| f.matches(kind))
    }
}

/// Indexes of the routes that take `kind`, in config order.
pub fn matching(routes: &[Route], kind: &str) -> Vec<usize> {
    routes.iter().enumerate().filter(|(_, r)| r.matches(kind)).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_exact_prefix_and_all() {
        let exact = EventFilter::parse("user.delete").unwrap();
        assert!(exact.matches("user.delete"));
        assert!(!exact.matches("user.delete.complete"));
        let prefix = EventFilter::parse("user.*").unwrap();
        assert!(prefix.matches("user.delete"));
        assert!(prefix.matches("user.registration.create.complete"));
        assert!(!prefix.matches("user"));
        assert!(!prefix.matches("users.delete"));
        let nested = EventFilter::parse("user.login.*").unwrap();
        assert!(nested.matches("user.login.success"));
        assert!(!nested.matches("user.loginId.duplicate.create"));
        assert!(EventFilter::parse("*").unwrap().matches("anything.at.all"));
        assert!(EventFilter::parse("user.loginId.duplicate.create").is_ok());
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in ["", "user.", ".delete", "user..delete", "user.*.x", "user delete", "user/*", "**", "user.**"] {
            assert!(EventFilter::parse(bad).is_err(), "{bad:?}");
        }
    }
}

/// What to answer when no route takes an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Unmatched {
    /// 200: nothing to do is a success (default).
    #[default]
    Accept,
    /// 500: FusionAuth should record a failure (and, for a transactional
    /// event under a strict transaction level, veto the action).
    Reject,
}

/// When a route's action runs relative to the answer to FusionAuth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Ack {
    /// Before answering: a failure answers 500 (FusionAuth's veto for
    /// transactional events).
    Sync,
    /// Committed to the store before answering, delivered after, with retries.
    Durable,
}

/// Delivery order of a durable route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Ordering {
    /// An event about an object (`linkedObjectId`, else the user id) waits
    /// while an earlier event about it is pending on this route.
    PerObject,
}

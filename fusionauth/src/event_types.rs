//! The FusionAuth event types known to this release, as data.
//!
//! Source: FACTS.md §b (the 1.69.0 SDK enum, the documentation pages and the
//! Java `NonTransactionalEvent` / `InstanceEvent` markers). The receiver never
//! rejects a type that is missing here: FusionAuth adds types over time, so the
//! table answers questions ("is this transactional?", "is this a typo?") and
//! nothing more.

/// Where an event comes from, which decides how FusionAuth routes it (FACTS.md §c.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScope {
    /// Raised in a tenant; needs the tenant switch and the webhook's tenant selection.
    Tenant,
    /// Instance ("system") event: sent to every webhook that enables it, no tenant switch.
    Instance,
}

/// One known wire event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    /// The wire name, as in `event.type` and as the key of `eventsEnabled`.
    pub name: &'static str,
    /// Whether the event is sent before FusionAuth commits, so that a failed
    /// delivery can veto the action under the tenant's transaction level.
    pub transactional: bool,
    /// Tenant or instance event.
    pub scope: EventScope,
}

const fn tx(name: &'static str) -> EventType {
    EventType { name, transactional: true, scope: EventScope::Tenant }
}
const fn non_tx(name: &'static str) -> EventType {
    EventType { name, transactional: false, scope: EventScope::Tenant }
}
const fn instance(name: &'static str) -> EventType {
    EventType { name, transactional: false, scope: EventScope::Instance }
}

/// Every wire type in FACTS.md §b, sorted by name (the lookup relies on it).
///
/// `test` is left out: it is the Kafka integration's test message, never a
/// webhook event (FACTS.md §c.8). `identity.verified` is left out: it is an
/// obsolete pre-release name (FACTS.md §b notes).
pub const KNOWN_EVENT_TYPES: &[EventType] = &[
    instance("audit-log.create"),
    tx("entity.create"),
    non_tx("entity.create.complete"),
    tx("entity.delete"),
    non_tx("entity.delete.complete"),
    tx("entity.update"),
    non_tx("entity.update.complete"),
    instance("event-log.create"),
    tx("group.create"),
    non_tx("group.create.complete"),
    tx("group.delete"),
    non_tx("group.delete.complete"),
    tx("group.member.add"),
    non_tx("group.member.add.complete"),
    tx("group.member.remove"),
    non_tx("group.member.remove.complete"),
    tx("group.member.update"),
    non_tx("group.member.update.complete"),
    tx("group.update"),
    non_tx("group.update.complete"),
    tx("jwt.public-key.update"),
    tx("jwt.refresh"),
    tx("jwt.refresh-token.revoke"),
    instance("kickstart.success"),
    tx("user.action"),
    tx("user.bulk.create"),
    tx("user.create"),
    non_tx("user.create.complete"),
    tx("user.deactivate"),
    tx("user.delete"),
    non_tx("user.delete.complete"),
    non_tx("user.email.update"),
    tx("user.email.verified"),
    non_tx("user.identity-provider.link"),
    non_tx("user.identity-provider.unlink"),
    // Transactional per the Java marker; undocumented (FACTS.md §b).
    tx("user.identity.update"),
    tx("user.identity.verified"),
    tx("user.login.failed"),
    tx("user.login.new-device"),
    tx("user.login.success"),
    tx("user.login.suspicious"),
    non_tx("user.loginId.duplicate.create"),
    non_tx("user.loginId.duplicate.update"),
    tx("user.password.breach"),
    non_tx("user.password.reset.send"),
    non_tx("user.password.reset.start"),
    non_tx("user.password.reset.success"),
    non_tx("user.password.update"),
    tx("user.reactivate"),
    tx("user.registration.create"),
    non_tx("user.registration.create.complete"),
    tx("user.registration.delete"),
    non_tx("user.registration.delete.complete"),
    tx("user.registration.update"),
    non_tx("user.registration.update.complete"),
    tx("user.registration.verified"),
    non_tx("user.two-factor.challenge"),
    // The SDK name; the docs and their example spell it
    // `user.two-factor.failed.attempt` (FACTS.md §b). Both are listed so a
    // filter with either spelling is not reported as a typo.
    non_tx("user.two-factor.failed-attempt"),
    non_tx("user.two-factor.failed.attempt"),
    non_tx("user.two-factor.method.add"),
    non_tx("user.two-factor.method.remove"),
    non_tx("user.two-factor.success"),
    tx("user.update"),
    non_tx("user.update.complete"),
];

/// Looks a wire name up in [`KNOWN_EVENT_TYPES`].
pub fn lookup(name: &str) -> Option<&'static EventType> {
    KNOWN_EVENT_TYPES.binary_search_by(|t| t.name.cmp(name)).ok().map(|i| &KNOWN_EVENT_TYPES[i])
}

/// Whether FusionAuth's Webhook and Tenant APIs accept `name` as an
/// `eventsEnabled` / `events` key: the SDK enum (58 names with `test`), plus
/// the `entity.*` types documented for 1.69.0. The docs-only spelling
/// `user.two-factor.failed.attempt` is refused: the SDK enum would not
/// deserialize it (FACTS.md §b; inferred, the one place to change it).
pub fn accepted_as_event_key(name: &str) -> bool {
    name == "test" || (name != "user.two-factor.failed.attempt" && lookup(name).is_some())
}

/// Whether `name` is a known transactional event type. Unknown types answer
/// `None`: the caller decides what an unknown type means.
pub fn is_transactional(name: &str) -> Option<bool> {
    lookup(name).map(|t| t.transactional)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique_so_lookup_works() {
        for pair in KNOWN_EVENT_TYPES.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} before {}", pair[0].name, pair[1].name);
        }
        for t in KNOWN_EVENT_TYPES {
            assert_eq!(lookup(t.name), Some(t));
        }
    }

    #[test]
    fn answers_match_facts() {
        assert_eq!(is_transactional("user.delete"), Some(true));
        assert_eq!(is_transactional("user.delete.complete"), Some(false));
        assert_eq!(is_transactional("user.password.update"), Some(false));
        assert_eq!(lookup("kickstart.success").map(|t| t.scope), Some(EventScope::Instance));
        assert_eq!(lookup("user.create").map(|t| t.scope), Some(EventScope::Tenant));
        assert_eq!(is_transactional("user.teleport"), None);
        assert_eq!(lookup("test"), None);
    }

    #[test]
    fn every_complete_variant_is_non_transactional() {
        for t in KNOWN_EVENT_TYPES.iter().filter(|t| t.name.ends_with(".complete")) {
            assert!(!t.transactional, "{}", t.name);
        }
    }
}

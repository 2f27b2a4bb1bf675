//! Prometheus metrics (`/metrics`), all prefixed `fusionhook_receiver_`.
//! Label values come from fixed sets or the config (route names); event types
//! outside FusionAuth's known list are counted as `other`, so a sender cannot
//! grow the label space.

use std::time::Duration;

use fusionhook_fusionauth::event_types;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    r#type: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    route: String,
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStateLabels {
    route: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOutcomeLabels {
    route: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type HistogramFamily = Family<ActionLabels, Histogram, fn() -> Histogram>;

/// The receiver's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    events: Family<EventLabels, Counter>,
    action_duration: HistogramFamily,
    duplicates: Counter,
    auth_failures: Family<ReasonLabels, Counter>,
    in_flight: Gauge,
    deliveries: Family<RouteStateLabels, Gauge>,
    oldest_pending: Gauge,
    attempts: Family<RouteOutcomeLabels, Counter>,
    dead_lettered: Family<RouteLabels, Counter>,
    /// The store's own figures: commits (latency, failures), its size and
    /// its volume's. Handed to the store when it opens.
    pub store_commit: StoreMetrics,
    /// The public listener's connections.
    pub connections: ConnectionMetrics,
    /// The admin listener's connections.
    pub admin_connections: ConnectionMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

/// One listener's connections: open, and what the limit did.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    open: Gauge,
    closed_idle: Counter,
    refused: Counter,
}

impl ConnectionMetrics {
    fn register(
        listener: &'static str,
        open: &Family<ListenerLabels, Gauge>,
        closed_idle: &Family<ListenerLabels, Counter>,
        refused: &Family<ListenerLabels, Counter>,
    ) -> Self {
        let labels = ListenerLabels { listener };
        Self {
            open: open.get_or_create(&labels).clone(),
            closed_idle: closed_idle.get_or_create(&labels).clone(),
            refused: refused.get_or_create(&labels).clone(),
        }
    }

    /// A connection opened; counted until the guard drops.
    pub fn open(&self) -> OpenConnection {
        self.open.inc();
        OpenConnection(self.open.clone())
    }

    /// An idle connection was closed to make room at the limit.
    pub fn closed_idle(&self) {
        self.closed_idle.inc();
    }

    /// A new connection was closed: every slot had a request in service.
    pub fn refused(&self) {
        self.refused.inc();
    }
}

/// Decrements the open-connections gauge when dropped.
pub struct OpenConnection(Gauge);

/// What the store reports about itself. The store holds a clone (a handle
/// on the same series), so it needs no other part of the metrics.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    commit: Histogram,
    commit_failures: Counter,
    size: Gauge,
    volume_capacity: Gauge,
    volume_available: Gauge,
}

impl Default for StoreMetrics {
    /// Not registered anywhere: for a store opened without a `/metrics`
    /// (tests, tools).
    fn default() -> Self {
        Self {
            commit: commit_histogram(),
            commit_failures: Counter::default(),
            size: Gauge::default(),
            volume_capacity: Gauge::default(),
            volume_available: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register("store_commit_seconds", "Time taken by each store commit (one per group of requests)", self.commit.clone());
        registry.register(
            "store_commit_failures",
            "Store commits that failed; while they fail the receiver is not ready and answers 500 to events that need the store",
            self.commit_failures.clone(),
        );
        registry.register(
            "store_size_bytes",
            "Bytes the store takes: the embedded store's file, or the PostgreSQL store's tables with their indexes",
            self.size.clone(),
        );
        registry.register(
            "store_volume_capacity_bytes",
            "Size of the filesystem holding the embedded store (0 for other stores)",
            self.volume_capacity.clone(),
        );
        registry.register(
            "store_volume_available_bytes",
            "Bytes of that filesystem the receiver may still use (free space for unprivileged users; 0 for other stores)",
            self.volume_available.clone(),
        );
    }

    /// Records one commit (of a group of operations): its latency, and
    /// whether it failed.
    pub fn commit(&self, took: Duration, ok: bool) {
        self.commit.observe(took.as_secs_f64());
        if !ok {
            self.commit_failures.inc();
        }
    }

    /// Sets the store's size.
    pub fn size(&self, bytes: u64) {
        self.size.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Sets the store's filesystem figures.
    pub fn volume(&self, capacity_bytes: u64, available_bytes: u64) {
        self.volume_capacity.set(i64::try_from(capacity_bytes).unwrap_or(i64::MAX));
        self.volume_available.set(i64::try_from(available_bytes).unwrap_or(i64::MAX));
    }
}

fn commit_histogram() -> Histogram {
    // 0.1 ms .. ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn action_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fusionhook_receiver");
        let requests = Family::default();
        registry.register("requests", "Webhook requests by outcome", requests.clone());
        let events = Family::default();
        registry.register("events", "Events by type and outcome", events.clone());
        let action_duration = HistogramFamily::new_with_constructor(action_histogram);
        registry.register("action_duration_seconds", "Time taken by each route's action", action_duration.clone());
        let duplicates = Counter::default();
        registry.register("duplicates", "Deliveries of an already handled event id", duplicates.clone());
        let auth_failures = Family::default();
        registry.register("auth_failures", "Requests that failed authentication, by reason", auth_failures.clone());
        let in_flight = Gauge::default();
        registry.register("in_flight_requests", "Webhook requests being handled", in_flight.clone());
        let deliveries = Family::default();
        registry.register("deliveries", "Durable deliveries by route and state (pending, dead, delivered)", deliveries.clone());
        let oldest_pending = Gauge::default();
        registry.register("oldest_pending_seconds", "Age of the oldest pending durable delivery", oldest_pending.clone());
        let attempts = Family::default();
        registry.register("delivery_attempts", "Durable delivery attempts by route and outcome (delivered, retry, dead)", attempts.clone());
        let dead_lettered = Family::default();
        registry.register("dead_lettered", "Deliveries that became dead, by route", dead_lettered.clone());
        let store_commit = StoreMetrics::default();
        store_commit.register(&mut registry);
        let open = Family::<ListenerLabels, Gauge>::default();
        registry.register("connections_open", "Open connections, by listener (public, admin)", open.clone());
        let closed_idle = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connections_closed_idle",
            "Idle connections closed to make room at maxConnections, by listener",
            closed_idle.clone(),
        );
        let refused = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "New connections closed at maxConnections because every connection had a request in service, by listener",
            refused.clone(),
        );
        let connections = ConnectionMetrics::register("public", &open, &closed_idle, &refused);
        let admin_connections = ConnectionMetrics::register("admin", &open, &closed_idle, &refused);
        Self {
            registry,
            requests,
            events,
            action_duration,
            duplicates,
            auth_failures,
            in_flight,
            deliveries,
            oldest_pending,
            attempts,
            dead_lettered,
            store_commit,
            connections,
            admin_connections,
        }
    }

    /// Counts one answered webhook request.
    pub fn request(&self, outcome: &'static str) {
        self.requests.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts one event by type and outcome.
    pub fn event(&self, kind: &str, outcome: &'static str) {
        let r#type = event_types::lookup(kind).map_or("other", |t| t.name);
        self.events.get_or_create(&EventLabels { r#type, outcome }).inc();
    }

    /// Records an action's duration.
    pub fn action(&self, route: &str, action: &'static str, ok: bool, took: Duration) {
        let labels = ActionLabels { route: route.to_owned(), action, outcome: if ok { "success" } else { "failure" } };
        self.action_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Makes the per-route counters alerts take `increase()` of exist at 0
    /// from the start, so a route's first dead delivery is an increase.
    pub fn routes_known<'a>(&self, routes: impl IntoIterator<Item = &'a str>) {
        for route in routes {
            let _ = self.dead_lettered.get_or_create(&RouteLabels { route: route.to_owned() });
        }
    }

    /// Counts a durable delivery attempt by outcome.
    pub fn attempt(&self, route: &str, outcome: &'static str) {
        self.attempts.get_or_create(&RouteOutcomeLabels { route: route.to_owned(), outcome }).inc();
        if outcome == "dead" {
            self.dead_lettered.get_or_create(&RouteLabels { route: route.to_owned() }).inc();
        }
    }

    /// Sets a durable route's delivery counts by state (refreshed
    /// periodically from the store).
    pub fn route_deliveries(&self, route: &str, pending: u64, dead: u64, delivered: u64) {
        for (state, n) in [("pending", pending), ("dead", dead), ("delivered", delivered)] {
            self.deliveries.get_or_create(&RouteStateLabels { route: route.to_owned(), state }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Sets the age of the oldest pending delivery.
    pub fn oldest_pending(&self, seconds: u64) {
        self.oldest_pending.set(i64::try_from(seconds).unwrap_or(i64::MAX));
    }

    /// Counts a duplicate delivery.
    pub fn duplicate(&self) {
        self.duplicates.inc();
    }

    /// Counts an authentication failure.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Tracks requests in flight; the guard decrements on drop.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

//! Prometheus metrics (`/metrics`), all prefixed `fusionhook_operator_`.
//! Label values come from fixed sets (results, kinds, FusionAuth operation
//! names and status codes), never from resource names, so the label space
//! stays small however many resources there are.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    duration: Histogram,
    fusionauth_calls: Family<CallLabels, Counter>,
    fusionauth_writes: Counter,
    kubernetes_writes: Family<KindLabels, Counter>,
    leader: Gauge,
    backfill_events: Family<OutcomeLabels, Counter>,
    backfill_calls: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fusionhook_operator");
        let reconciles = Family::default();
        registry.register("reconciles", "Reconciles by result (ok, invalid, waiting, error)", reconciles.clone());
        // 1 ms .. ~33 s.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register("reconcile_duration_seconds", "Time taken by one reconcile", duration.clone());
        let fusionauth_calls = Family::default();
        registry.register(
            "fusionauth_requests",
            "FusionAuth API calls (each attempt) by operation and HTTP status or failure",
            fusionauth_calls.clone(),
        );
        let fusionauth_writes = Counter::default();
        registry.register(
            "fusionauth_writes",
            "FusionAuth API calls that change something (POST, PUT, PATCH, DELETE)",
            fusionauth_writes.clone(),
        );
        let kubernetes_writes = Family::default();
        registry.register(
            "kubernetes_writes",
            "Kubernetes writes by kind (apply, patch, delete, status, finalizer, event)",
            kubernetes_writes.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the Lease and reconciles", leader.clone());
        let backfill_events = Family::default();
        registry.register(
            "backfill_events",
            "Webhook Event Log entries a backfill pass looked at, by outcome (scanned, handed_over, delivered, not_ours, rolled_back, running, abandoned, refused, gave_up)",
            backfill_events.clone(),
        );
        // Every series an alert takes `increase()` of exists from the start
        // at 0, so the first give-up or error is an increase, not a new series.
        for result in ["ok", "invalid", "waiting", "error"] {
            let _ = reconciles.get_or_create(&ResultLabels { result });
        }
        for outcome in ["handed_over", "refused", "gave_up"] {
            let _ = backfill_events.get_or_create(&OutcomeLabels { outcome });
        }
        // 1 .. 1024 calls.
        let backfill_calls = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register("backfill_fusionauth_calls_per_pass", "FusionAuth calls made by one backfill pass", backfill_calls.clone());
        Self {
            registry,
            reconciles,
            duration,
            fusionauth_calls,
            fusionauth_writes,
            kubernetes_writes,
            leader,
            backfill_events,
            backfill_calls,
        }
    }

    /// Counts one reconcile and its duration.
    pub fn reconciled(&self, result: &'static str, took: Duration) {
        self.reconciles.get_or_create(&ResultLabels { result }).inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Counts one FusionAuth call attempt.
    pub fn fusionauth_call(&self, operation: &'static str, status: &str) {
        self.fusionauth_calls.get_or_create(&CallLabels { operation, status: status.to_owned() }).inc();
        let reads = ["retrieve", "search", "fetch"];
        if !reads.iter().any(|r| operation.starts_with(r)) {
            self.fusionauth_writes.inc();
        }
    }

    /// Counts one Kubernetes write.
    pub fn kubernetes_write(&self, kind: &'static str) {
        self.kubernetes_writes.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts one backfill pass: entries by outcome, and its FusionAuth calls.
    pub fn backfill_pass(&self, counts: &[(&'static str, u64)], calls: u32) {
        for (outcome, n) in counts {
            self.backfill_events.get_or_create(&OutcomeLabels { outcome }).inc_by(*n);
        }
        self.backfill_calls.observe(f64::from(calls));
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

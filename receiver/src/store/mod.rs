//! Where accepted events and their deliveries are kept, so that an event
//! answered 200 is acted on even if the process dies right after.
//!
//! One interface, two engines: [`embedded`] (redb, a file on a local volume,
//! one replica) and [`postgres`] (shared by every replica). Writes are group
//! committed: requests arriving together share one transaction and one
//! flush (fsync or COMMIT), and nobody is told "committed" before it.
//!
//! The model: an *event* (its id, type and the body exactly as received) and
//! one *delivery* per durable route that took it. A delivery is `pending`
//! (due at `nextAttemptMs`), `dead` (out of attempts, or refused for good;
//! waits for a person to replay or discard it) or `delivered`. Event ids are
//! remembered for the dedupe window; delivered deliveries for the retention.

pub mod embedded;
pub mod postgres;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Waiting for its next attempt.
    Pending,
    /// Given up on; waits for replay or discard.
    Dead,
    /// Done.
    Delivered,
}

impl State {
    /// Every state, in display order.
    pub const ALL: [State; 3] = [State::Pending, State::Dead, State::Delivered];

    /// The name used in the API and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dead => "dead",
            Self::Delivered => "delivered",
        }
    }

    /// Parses [`State::name`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == text)
    }

    fn code(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Dead => 1,
            Self::Delivered => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// An event to store, with the deliveries it owes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `event.id` (generated when FusionAuth sent none).
    pub id: String,
    /// `event.type`.
    pub kind: String,
    /// When it was accepted.
    pub received_ms: u64,
    /// The request body exactly as received.
    pub body: Bytes,
    /// One per durable route that takes it (may be empty: the event is then
    /// only remembered for deduplication).
    pub deliveries: Vec<NewDelivery>,
}

/// A delivery to create.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The route's name.
    pub route: String,
    /// The first attempt's time.
    pub due_ms: u64,
    /// For `ordering: perObject` routes: the object this event is about.
    pub ordered_by: Option<String>,
}

/// What [`Store::accept`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Committed.
    Stored,
    /// The event id was already stored (within the dedupe window); nothing changed.
    Duplicate,
}

/// One attempt, as kept in a delivery's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// When it ended.
    pub at_ms: u64,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
    /// What happened (the public failure message), if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The most attempts kept in a delivery's history (the count is kept in full).
pub const HISTORY: usize = 10;

/// What an attempt decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Delivered,
    /// Try again at this time.
    Retry {
        /// Next attempt.
        at_ms: u64,
    },
    /// Give up.
    Dead,
}

impl Outcome {
    /// The name kept in the history.
    pub fn name(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry { .. } => "retry",
            Self::Dead => "dead",
        }
    }
}

/// A delivery as stored and as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The delivery's id (unique in the store).
    pub id: u64,
    /// `event.id`.
    pub event_id: String,
    /// `event.type`.
    pub event_type: String,
    /// The route.
    pub route: String,
    /// Its state.
    pub state: State,
    /// Attempts made since it was created or last replayed.
    pub attempts: u32,
    /// Attempts made in all.
    pub total_attempts: u32,
    /// When the event was accepted.
    pub created_ms: u64,
    /// When the current round of attempts began (creation or the last replay);
    /// `retry.maxAgeSeconds` counts from here.
    pub round_started_ms: u64,
    /// When it is next due (pending only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<u64>,
    /// When its state last changed.
    pub updated_ms: u64,
    /// The last failure, in public words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For ordered routes: the object it is ordered by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered_by: Option<String>,
    /// The last [`HISTORY`] attempts.
    #[serde(default)]
    pub history: Vec<Attempt>,
    /// The token of the claim that handed it out (PostgreSQL): an outcome
    /// is recorded only while that claim still holds it.
    #[serde(skip)]
    pub claim: i64,
}

impl Delivery {
    /// Applies an attempt's outcome.
    fn record(&mut self, outcome: Outcome, error: Option<String>, now: u64) {
        self.attempts = self.attempts.saturating_add(1);
        self.total_attempts = self.total_attempts.saturating_add(1);
        self.updated_ms = now;
        if error.is_some() {
            self.last_error.clone_from(&error);
        }
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(Attempt { at_ms: now, outcome: outcome.name().to_owned(), error });
        match outcome {
            Outcome::Delivered => {
                self.state = State::Delivered;
                self.next_attempt_ms = None;
            }
            Outcome::Retry { at_ms } => self.next_attempt_ms = Some(at_ms),
            Outcome::Dead => {
                self.state = State::Dead;
                self.next_attempt_ms = None;
            }
        }
    }

    /// Makes it pending again, due now, with a fresh round of attempts.
    fn replay(&mut self, now: u64) {
        self.state = State::Pending;
        self.attempts = 0;
        self.round_started_ms = now;
        self.next_attempt_ms = Some(now);
        self.updated_ms = now;
    }
}

/// A stored event with its deliveries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// `event.id`.
    pub id: String,
    /// `event.type`.
    pub r#type: String,
    /// When it was accepted.
    pub received_ms: u64,
    /// The body as received.
    pub body: serde_json::Value,
    /// Its deliveries.
    pub deliveries: Vec<Delivery>,
}

/// A delivery handed to a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery.
    pub delivery: Delivery,
    /// The event body.
    pub body: Bytes,
}

/// One page of a listing, replay or discard: what it took, and where the
/// next page starts (`after`) when it stopped before the end: at its limit,
/// or (embedded) after reading as many records as one call may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The deliveries (or their ids).
    pub items: Vec<T>,
    /// `after` for the next page; `None` at the end.
    pub next: Option<u64>,
}

/// Which deliveries a listing, replay or discard takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    /// These ids (the other filters apply too).
    #[serde(default)]
    pub ids: Vec<u64>,
    /// In this state.
    #[serde(default)]
    pub state: Option<State>,
    /// Of this route.
    #[serde(default)]
    pub route: Option<String>,
    /// Of this event type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Of this event id.
    #[serde(default)]
    pub event_id: Option<String>,
    /// Updated at or after this time.
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Only ids above this one (paging).
    #[serde(default)]
    pub after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The most deliveries one listing, replay or discard call takes.
pub const MAX_PAGE: usize = 1000;

impl Filter {
    /// The page size.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, MAX_PAGE)
    }

    /// Whether `d` passes every filter but paging (ids, state, route, type, event, since).
    pub fn admits(&self, d: &Delivery) -> bool {
        (self.ids.is_empty() || self.ids.contains(&d.id))
            && self.state.is_none_or(|s| s == d.state)
            && self.route.as_ref().is_none_or(|r| *r == d.route)
            && self.event_type.as_ref().is_none_or(|t| *t == d.event_type)
            && self.event_id.as_ref().is_none_or(|e| *e == d.event_id)
            && self.since_ms.is_none_or(|s| d.updated_ms >= s)
    }
}

/// Counts for `GET /v1/stats` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Pending deliveries.
    pub pending: u64,
    /// Dead deliveries.
    pub dead: u64,
    /// Delivered deliveries still retained.
    pub delivered: u64,
    /// Age of the oldest pending delivery, seconds (0 when none).
    pub oldest_pending_seconds: u64,
    /// The same counts per route.
    pub routes: std::collections::BTreeMap<String, RouteStats>,
}

impl Stats {
    /// Adds a route's count of deliveries in one state.
    pub fn add(&mut self, route: &str, state: State, count: u64) {
        let route_stats = self.routes.entry(route.to_owned()).or_default();
        let (per_route, total) = match state {
            State::Pending => (&mut route_stats.pending, &mut self.pending),
            State::Dead => (&mut route_stats.dead, &mut self.dead),
            State::Delivered => (&mut route_stats.delivered, &mut self.delivered),
        };
        *per_route += count;
        *total += count;
    }
}

/// Per-route counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStats {
    /// Pending deliveries.
    pub pending: u64,
    /// Dead deliveries.
    pub dead: u64,
    /// Delivered deliveries still retained.
    pub delivered: u64,
}

/// A store failure. The message never carries event data or credentials.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl StoreError {
    fn from(context: &str, e: impl std::fmt::Display) -> Self {
        Self(format!("{context}: {e}"))
    }
}

/// Whether the store could commit when last asked: by an accepted event,
/// or by the dispatcher's probe every few seconds. `/readyz` follows it.
#[derive(Debug, Default)]
pub struct Health {
    /// Mirrors `problem.is_some()`, so an accepted event (the hot path)
    /// reads one atomic instead of taking the lock.
    failing: std::sync::atomic::AtomicBool,
    problem: std::sync::Mutex<Option<String>>,
}

impl Health {
    /// Not ready until the first commit succeeds (the dispatcher probes at once).
    pub fn pending() -> Self {
        Self { failing: std::sync::atomic::AtomicBool::new(true), problem: std::sync::Mutex::new(Some("no commit yet".to_owned())) }
    }

    /// Takes a commit's result.
    pub fn record<T>(&self, result: &Result<T, StoreError>) {
        use std::sync::atomic::Ordering;
        if result.is_ok() && !self.failing.load(Ordering::Relaxed) {
            return;
        }
        let mut problem = self.problem.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(_) => {
                if problem.take().is_some() {
                    tracing::info!("the store commits; ready");
                }
            }
            Err(e) => {
                if problem.is_none() {
                    tracing::warn!(error = %e, "the store cannot commit; not ready until it can");
                }
                *problem = Some(e.0.clone());
            }
        }
        self.failing.store(problem.is_some(), Ordering::Relaxed);
    }

    /// Whether the last commit failed (one atomic read).
    pub fn failing(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why the last commit failed, while it is the last word.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// How long things are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Event ids are remembered this long (the dedupe window).
    pub dedupe_window: Duration,
    /// Delivered deliveries stay visible this long.
    pub delivered: Duration,
}

/// Where a store reports its commits, its size and its volume's.
pub use crate::metrics::StoreMetrics;

/// Opens the configured store (none: `None`).
pub async fn open(config: &crate::config::StoreConfig, retention: Retention, metrics: StoreMetrics) -> Result<Option<Store>, StoreError> {
    match config {
        crate::config::StoreConfig::None => Ok(None),
        crate::config::StoreConfig::Embedded(path) => Ok(Some(Store::Embedded(embedded::Embedded::open(path, retention, metrics)?))),
        crate::config::StoreConfig::Postgres(url) => {
            Ok(Some(Store::Postgres(postgres::Postgres::open(url.clone(), retention, metrics).await?)))
        }
    }
}

/// The store in use.
pub enum Store {
    /// redb on a local volume.
    Embedded(embedded::Embedded),
    /// PostgreSQL, shared by every replica.
    Postgres(postgres::Postgres),
}

macro_rules! each {
    ($self:ident, $s:ident => $body:expr) => {
        match $self {
            Store::Embedded($s) => $body,
            Store::Postgres($s) => $body,
        }
    };
}

impl Store {
    /// `embedded` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Whether an event id is stored (a duplicate if so).
    pub async fn seen(&self, event_id: &str) -> Result<bool, StoreError> {
        each!(self, s => s.seen(event_id).await)
    }

    /// Stores an event and its deliveries, unless its id is already stored.
    /// Returns once the commit is durable.
    pub async fn accept(&self, event: NewEvent) -> Result<Accepted, StoreError> {
        each!(self, s => s.accept(event).await)
    }

    /// Takes up to `limit` deliveries of `route` that are due, for this
    /// process alone until [`Store::record`] reports their outcome (with
    /// PostgreSQL, or until `lease` runs out, after which any replica may
    /// take them again). For an ordered route, a delivery waits while an
    /// earlier one about the same object is pending.
    pub async fn claim(&self, route: &str, limit: usize, now: u64, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
        match self {
            Store::Embedded(s) => s.claim(route, limit, now).await,
            Store::Postgres(s) => s.claim(route, limit, now, lease).await,
        }
    }

    /// Records an attempt's outcome for a claimed delivery. Queued for the
    /// next group commit; the delivery stays claimed until it is committed.
    pub async fn record(&self, delivery: &Delivery, outcome: Outcome, error: Option<String>) -> Result<(), StoreError> {
        each!(self, s => s.record(delivery, outcome, error).await)
    }

    /// Waits until every outcome recorded so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        each!(self, s => s.flush().await)
    }

    /// Counts. Also samples the store's size (and, embedded, its volume's
    /// figures, before the counts: a store that cannot be read still says
    /// how full its disk is) into the metrics; the housekeeping asks every
    /// few seconds.
    pub async fn stats(&self, now: u64) -> Result<Stats, StoreError> {
        each!(self, s => s.stats(now).await)
    }

    /// Deliveries matching `filter`, by id.
    pub async fn list(&self, filter: &Filter) -> Result<Page<Delivery>, StoreError> {
        each!(self, s => s.list(filter).await)
    }

    /// One event with its deliveries.
    pub async fn event(&self, event_id: &str) -> Result<Option<EventView>, StoreError> {
        each!(self, s => s.event(event_id).await)
    }

    /// Makes the matching dead (or delivered) deliveries pending again;
    /// with `dry_run`, only says which.
    pub async fn replay(&self, filter: &Filter, dry_run: bool) -> Result<Page<u64>, StoreError> {
        each!(self, s => s.replay(filter, dry_run).await)
    }

    /// Deletes the matching pending or dead deliveries; with `dry_run`, only says which.
    pub async fn discard(&self, filter: &Filter, dry_run: bool) -> Result<Page<u64>, StoreError> {
        each!(self, s => s.discard(filter, dry_run).await)
    }

    /// Forgets event ids past the dedupe window and delivered deliveries
    /// past the retention. Returns how many records went (or, embedded,
    /// were put back for later): 0 when there was nothing to do.
    pub async fn compact(&self, now: u64) -> Result<u64, StoreError> {
        each!(self, s => s.compact(now).await)
    }
}

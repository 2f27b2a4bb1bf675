//! The PostgreSQL store: shared by every replica, so deduplication is
//! cluster-wide and any replica delivers what another accepted.
//!
//! Schema migrations are embedded and applied at start under an advisory
//! lock (replicas starting together apply them once). Accepts and outcomes
//! go through `WRITERS` batching tasks, each with its own connection:
//! whichever is free takes everything queued at that moment and runs it,
//! pipelined, in one transaction and one COMMIT (group commit); nobody is
//! answered before the COMMIT. Other calls are single statements on one
//! more connection. A broken or hung connection is dropped and opened
//! again on the next call, so the receiver recovers by itself when
//! PostgreSQL returns; until then, accepts fail (500). A group PostgreSQL
//! refuses a statement of (say, a value its index cannot hold) is run again
//! op by op, each alone, so only that op fails; the others get their own
//! answer. A statement that finds the tables gone (the database emptied or
//! created again while this process runs) makes the next connection apply
//! the migrations again, so the receiver recovers without a restart.
//!
//! Deliveries are claimed with `FOR UPDATE SKIP LOCKED`, a lease and a
//! claim token: a replica that dies mid-delivery leaves a lease that runs
//! out, and any replica then tries again; an outcome is recorded only if
//! its claim still holds the delivery, so a late one cannot overwrite a
//! newer claim's. An outcome whose group failed is kept in memory and goes
//! with the next group (an accept or the readiness probe's flush), not
//! dropped: its delivery is not claimed again sooner than it says while
//! this process lives. The connection string comes from the secret file (re-read
//! like every secret file) and is never logged. TLS to PostgreSQL is not
//! supported yet (`sslmode=disable`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::TryFutureExt;
use tokio::sync::{RwLock, mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::{Accepted, Claimed, Delivery, EventView, Filter, NewEvent, Outcome, Page, Retention, State, Stats, StoreError, StoreMetrics};
use crate::secret::Secret;

/// Connecting gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Any statement or group commit gives up after this long (a hung server
/// must not hold an answer to FusionAuth).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Operations queued at once go into one transaction, up to this many.
const BATCH: usize = 1024;
/// Connections committing groups at once.
const WRITERS: usize = 4;
/// A compaction statement removes at most this many rows.
const COMPACT_BATCH: i64 = 10_000;

/// The migrations, in order; each runs once per database.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE fusionhook_events (
    id text PRIMARY KEY,
    type text NOT NULL,
    received_ms bigint NOT NULL,
    body bytea NOT NULL
);
CREATE INDEX fusionhook_events_received ON fusionhook_events (received_ms);
CREATE TABLE fusionhook_deliveries (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    event_type text NOT NULL,
    route text NOT NULL,
    state smallint NOT NULL,
    attempts integer NOT NULL,
    total_attempts integer NOT NULL,
    created_ms bigint NOT NULL,
    round_started_ms bigint NOT NULL,
    next_attempt_ms bigint,
    updated_ms bigint NOT NULL,
    last_error text,
    ordered_by text,
    history text NOT NULL,
    lease_until_ms bigint,
    claim_token bigint
);
CREATE INDEX fusionhook_deliveries_due ON fusionhook_deliveries (route, next_attempt_ms) WHERE state = 0;
CREATE INDEX fusionhook_deliveries_ordered ON fusionhook_deliveries (route, ordered_by, id) WHERE state = 0 AND ordered_by IS NOT NULL;
CREATE INDEX fusionhook_deliveries_state ON fusionhook_deliveries (state, id);
CREATE INDEX fusionhook_deliveries_event ON fusionhook_deliveries (event_id);
CREATE INDEX fusionhook_deliveries_delivered ON fusionhook_deliveries (updated_ms) WHERE state = 2;
"#];

const ACCEPT: &str = r#"
WITH e AS (
    INSERT INTO fusionhook_events (id, type, received_ms, body) VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO NOTHING RETURNING id
), d AS (
    INSERT INTO fusionhook_deliveries (event_id, event_type, route, state, attempts, total_attempts, created_ms,
        round_started_ms, next_attempt_ms, updated_ms, ordered_by, history)
    SELECT e.id, $2, r.route, 0, 0, 0, $3, $3, r.due, $3, r.ordered_by, '[]'
    FROM e, unnest($5::text[], $6::bigint[], $7::text[]) AS r(route, due, ordered_by)
    RETURNING 1
)
SELECT count(*)::bigint FROM e"#;

const RECORD: &str = r#"
UPDATE fusionhook_deliveries SET state = $2, attempts = $3, total_attempts = $4, next_attempt_ms = $5, updated_ms = $6,
    last_error = $7, history = $8, lease_until_ms = NULL, claim_token = NULL
WHERE id = $1 AND state = 0 AND claim_token = $9"#;

/// Bytes the store's tables take, with their indexes and TOAST (0 before the migrations ran).
const SIZE: &str = "SELECT coalesce(sum(pg_total_relation_size(t)), 0)::bigint FROM unnest(ARRAY[to_regclass('fusionhook_events'), \
    to_regclass('fusionhook_deliveries'), to_regclass('fusionhook_schema')]) AS t WHERE t IS NOT NULL";

const COLUMNS: &str = "d.id, d.event_id, d.event_type, d.route, d.state, d.attempts, d.total_attempts, d.created_ms, \
    d.round_started_ms, d.next_attempt_ms, d.updated_ms, d.last_error, d.ordered_by, d.history";

/// The PostgreSQL store.
pub struct Postgres {
    url: Arc<Secret>,
    /// Set once this process has seen the schema migrated.
    migrated: Arc<AtomicBool>,
    shared: RwLock<Option<Arc<Client>>>,
    ops: mpsc::UnboundedSender<Op>,
    retention: Retention,
    failed_groups: Arc<std::sync::atomic::AtomicU64>,
    metrics: StoreMetrics,
}

enum Op {
    Accept(NewEvent, oneshot::Sender<Result<Accepted, StoreError>>),
    Record(Box<Delivery>),
    /// Answered once every group taken before it committed; an error if any
    /// group failed since the flush was asked for (the count then).
    Flush(oneshot::Sender<Result<(), StoreError>>, u64),
}

fn pg(context: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    // The kind of error, and for a server error its code and message (never
    // its DETAIL, which can quote a key's value); never the connection string.
    move |e| match e.as_db_error() {
        Some(db) => StoreError(format!("{context}: {e}: {} ({})", db.message(), db.code().code())),
        // The cause (e.g. "Connection refused"), which Display leaves out.
        None => match std::error::Error::source(&e) {
            Some(cause) => StoreError(format!("{context}: {e}: {cause}")),
            None => StoreError::from(context, e),
        },
    }
}

/// What a failed statement says about what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// PostgreSQL refused this statement on a working connection (e.g. a
    /// value its index cannot hold): other statements may well succeed.
    Refused,
    /// The tables are gone (SQLSTATE 42P01): the next connection migrates.
    SchemaGone,
    /// The connection broke or hung, or the server cannot work now.
    Unusable,
}

fn failure(e: &tokio_postgres::Error) -> Failure {
    match e.code() {
        None => Failure::Unusable,
        Some(code) if *code == SqlState::UNDEFINED_TABLE => Failure::SchemaGone,
        // Connection, resources, operator intervention (shutdown, cancel),
        // system and internal errors: about the server, not the statement.
        Some(code) if ["08", "53", "57", "58", "XX"].iter().any(|class| code.code().starts_with(class)) => Failure::Unusable,
        Some(_) => Failure::Refused,
    }
}

/// A group (or one op of it) that did not commit, and why.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
struct GroupError {
    kind: Failure,
    error: StoreError,
}

fn group_error(context: &str) -> impl Fn(tokio_postgres::Error) -> GroupError + '_ {
    move |e| GroupError { kind: failure(&e), error: pg(context)(e) }
}

fn timed_out(context: &str) -> GroupError {
    GroupError {
        kind: Failure::Unusable,
        error: StoreError(format!("{context}: PostgreSQL did not answer within {} s", QUERY_TIMEOUT.as_secs())),
    }
}

/// The tables are gone while this process runs (dropped, or the database
/// created again): the next connection applies the migrations again
/// (under the advisory lock, so replicas noticing together apply them once).
fn forget_schema(migrated: &AtomicBool) {
    if migrated.swap(false, Ordering::SeqCst) {
        tracing::warn!("the fusionhook tables are gone from the database; the next connection creates them again");
    }
}

/// Passes a statement's error on; one that finds the tables gone first
/// marks the schema for migration ([`forget_schema`]).
fn watch(migrated: &AtomicBool) -> impl Fn(tokio_postgres::Error) -> tokio_postgres::Error + '_ {
    move |e| {
        if failure(&e) == Failure::SchemaGone {
            forget_schema(migrated);
        }
        e
    }
}

/// PostgreSQL refuses NUL in `text`; an id or type holding one (never
/// FusionAuth's) is stored with U+FFFD instead, the same way every time, so
/// deduplication still works and one odd event cannot fail its whole group.
fn text(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\0') { std::borrow::Cow::Owned(value.replace('\0', "\u{fffd}")) } else { std::borrow::Cow::Borrowed(value) }
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

async fn connect(url: &Secret) -> Result<Client, StoreError> {
    let mut config: tokio_postgres::Config = url
        .get()
        .expose()
        .parse()
        // The parser's message could quote the string; it is not repeated.
        .map_err(|_| {
            StoreError("store.urlFile does not hold a PostgreSQL connection string (postgres://user:password@host:5432/db)".into())
        })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| StoreError("cannot connect to PostgreSQL: no answer within 3 s".into()))?
        .map_err(pg("cannot connect to PostgreSQL"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

async fn within<T>(what: &str, f: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, StoreError> {
    match tokio::time::timeout(QUERY_TIMEOUT, f).await {
        Ok(result) => result.map_err(pg(what)),
        Err(_) => Err(StoreError(format!("{what}: PostgreSQL did not answer within {} s", QUERY_TIMEOUT.as_secs()))),
    }
}

/// A connection to a migrated database: the first one this process makes
/// applies the migrations.
async fn usable(url: &Secret, migrated: &AtomicBool) -> Result<Client, StoreError> {
    let mut client = connect(url).await?;
    if !migrated.load(Ordering::SeqCst) {
        migrate(&mut client).await?;
        migrated.store(true, Ordering::SeqCst);
    }
    Ok(client)
}

impl Postgres {
    /// Starts the batching tasks and tries to connect and migrate. A
    /// database that cannot be used yet is not fatal: every commit fails
    /// (500, not ready) and the next one tries again, so the receiver
    /// recovers by itself instead of restarting in a loop.
    pub async fn open(url: Arc<Secret>, retention: Retention, metrics: StoreMetrics) -> Result<Self, StoreError> {
        let migrated = Arc::new(AtomicBool::new(false));
        let client = match usable(&url, &migrated).await {
            Ok(client) => Some(Arc::new(client)),
            Err(e) => {
                tracing::error!(error = %e, "PostgreSQL cannot be used yet; events are answered 500 and the receiver is not ready until it can");
                None
            }
        };
        let (ops, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let commits = Arc::new(RwLock::new(()));
        let failed_groups = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        for _ in 0..WRITERS {
            let shared = Shared { commits: commits.clone(), failed_groups: failed_groups.clone(), held: held.clone() };
            tokio::spawn(batcher(url.clone(), migrated.clone(), rx.clone(), shared, metrics.clone()));
        }
        Ok(Self { url, migrated, shared: RwLock::new(client), ops, retention, failed_groups, metrics })
    }

    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        if let Some(client) = self.shared.read().await.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let mut slot = self.shared.write().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        *slot = None;
        let client = Arc::new(usable(&self.url, &self.migrated).await?);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs one statement; a failure drops the connection (it may be hung),
    /// and one that finds the tables gone has the next connection migrate.
    async fn query(&self, what: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let result = within(what, client.query(sql, params).map_err(watch(&self.migrated))).await;
        if result.is_err() {
            let mut slot = self.shared.write().await;
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &client)) {
                *slot = None;
            }
        }
        result
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        self.ops.send(op).map_err(|_| StoreError("the store's batching task stopped".into()))
    }

    pub(super) async fn seen(&self, event_id: &str) -> Result<bool, StoreError> {
        let rows = self.query("read", "SELECT 1 FROM fusionhook_events WHERE id = $1", &[&text(event_id)]).await?;
        Ok(!rows.is_empty())
    }

    pub(super) async fn accept(&self, event: NewEvent) -> Result<Accepted, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Accept(event, tx))?;
        rx.await.map_err(|_| StoreError("the store's batching task stopped before the commit".into()))?
    }

    pub(super) async fn claim(&self, route: &str, limit: usize, now: u64, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
        let sql = format!(
            "UPDATE fusionhook_deliveries d SET lease_until_ms = $3 + $4, claim_token = $5
             FROM (
                 SELECT c.id FROM fusionhook_deliveries c
                 WHERE c.state = 0 AND c.route = $1 AND c.next_attempt_ms <= $3
                   AND (c.lease_until_ms IS NULL OR c.lease_until_ms < $3)
                   AND (c.ordered_by IS NULL OR NOT EXISTS (
                       SELECT 1 FROM fusionhook_deliveries o
                       WHERE o.state = 0 AND o.route = c.route AND o.ordered_by = c.ordered_by AND o.id < c.id))
                 ORDER BY c.next_attempt_ms LIMIT $2 FOR UPDATE SKIP LOCKED
             ) picked
             WHERE d.id = picked.id
             RETURNING {COLUMNS}, (SELECT body FROM fusionhook_events e WHERE e.id = d.event_id), d.claim_token"
        );
        let limit = i64_of(limit as u64);
        let lease = i64_of(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
        let token: i64 = rand::random();
        let rows = self.query("claim", &sql, &[&route, &limit, &i64_of(now), &lease, &token]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut delivery = delivery(&row)?;
            delivery.claim = row.try_get(15).map_err(pg("read"))?;
            let body: Option<Vec<u8>> = row.try_get(14).map_err(pg("read"))?;
            match body {
                Some(body) => out.push(Claimed { delivery, body: Bytes::from(body) }),
                // Its event is gone: nothing to send; a person sees it dead.
                None => self.send(Op::Record(Box::new(dead(delivery, "the stored event is gone"))))?,
            }
        }
        Ok(out)
    }

    pub(super) async fn record(&self, delivery: &Delivery, outcome: Outcome, error: Option<String>) -> Result<(), StoreError> {
        let mut updated = delivery.clone();
        updated.record(outcome, error, super::now_ms());
        self.send(Op::Record(Box::new(updated)))
    }

    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx, self.failed_groups.load(std::sync::atomic::Ordering::SeqCst)))?;
        rx.await.map_err(|_| StoreError("the store's batching task stopped".into()))?
    }

    pub(super) async fn stats(&self, now: u64) -> Result<Stats, StoreError> {
        let rows = self.query("stats", "SELECT route, state, count(*) FROM fusionhook_deliveries GROUP BY route, state", &[]).await?;
        let mut stats = Stats::default();
        for row in rows {
            let route: String = row.try_get(0).map_err(pg("read"))?;
            let state: i16 = row.try_get(1).map_err(pg("read"))?;
            let count = u64_of(row.try_get(2).map_err(pg("read"))?);
            if let Some(state) = state_of(state) {
                stats.add(&route, state, count);
            }
        }
        let oldest = self.query("stats", "SELECT min(created_ms) FROM fusionhook_deliveries WHERE state = 0", &[]).await?;
        if let Some(created) = oldest.first().and_then(|r| r.try_get::<_, Option<i64>>(0).ok().flatten()) {
            stats.oldest_pending_seconds = now.saturating_sub(u64_of(created)) / 1000;
        }
        // The store's size for the metrics: what its tables take in the
        // database, indexes and TOAST included. The database's disk is
        // PostgreSQL's to watch (its own exporter), not a client's.
        match self.query("stats", SIZE, &[]).await {
            Ok(rows) => {
                if let Some(bytes) = rows.first().and_then(|r| r.try_get::<_, i64>(0).ok()) {
                    self.metrics.size(u64_of(bytes));
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the store's size"),
        }
        Ok(stats)
    }

    pub(super) async fn list(&self, filter: &Filter) -> Result<Page<Delivery>, StoreError> {
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let condition = where_clause(filter, &mut params, None);
        let sql = format!("SELECT {COLUMNS} FROM fusionhook_deliveries d WHERE {condition} ORDER BY d.id LIMIT {}", filter.limit());
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let items: Vec<Delivery> = self.query("list", &sql, &refs).await?.iter().map(delivery).collect::<Result<_, _>>()?;
        let next = page_end(filter, items.last().map(|d| d.id), items.len());
        Ok(Page { items, next })
    }

    pub(super) async fn event(&self, event_id: &str) -> Result<Option<EventView>, StoreError> {
        let event_id = text(event_id);
        let rows = self.query("read", "SELECT id, type, received_ms, body FROM fusionhook_events WHERE id = $1", &[&event_id]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let body: Vec<u8> = row.try_get(3).map_err(pg("read"))?;
        let sql = format!("SELECT {COLUMNS} FROM fusionhook_deliveries d WHERE d.event_id = $1 ORDER BY d.id");
        let deliveries = self.query("read", &sql, &[&event_id]).await?.iter().map(delivery).collect::<Result<_, _>>()?;
        Ok(Some(EventView {
            id: row.try_get(0).map_err(pg("read"))?,
            r#type: row.try_get(1).map_err(pg("read"))?,
            received_ms: u64_of(row.try_get(2).map_err(pg("read"))?),
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            deliveries,
        }))
    }

    pub(super) async fn replay(&self, filter: &Filter, dry_run: bool) -> Result<Page<u64>, StoreError> {
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let condition = where_clause(filter, &mut params, Some("d.state IN (1, 2)"));
        let select = format!(
            "SELECT d.id FROM fusionhook_deliveries d WHERE {condition}
             AND EXISTS (SELECT 1 FROM fusionhook_events e WHERE e.id = d.event_id) ORDER BY d.id LIMIT {}",
            filter.limit()
        );
        let sql = if dry_run {
            select
        } else {
            params.push(Box::new(i64_of(super::now_ms())));
            let now = params.len();
            format!(
                "UPDATE fusionhook_deliveries SET state = 0, attempts = 0, round_started_ms = ${now}, next_attempt_ms = ${now},
                 updated_ms = ${now}, lease_until_ms = NULL, claim_token = NULL
                 WHERE id IN ({select}) AND state IN (1, 2) RETURNING id"
            )
        };
        self.ids("replay", &sql, &params, filter).await
    }

    pub(super) async fn discard(&self, filter: &Filter, dry_run: bool) -> Result<Page<u64>, StoreError> {
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let condition = where_clause(filter, &mut params, Some("d.state IN (0, 1)"));
        let select = format!("SELECT d.id FROM fusionhook_deliveries d WHERE {condition} ORDER BY d.id LIMIT {}", filter.limit());
        let sql = if dry_run { select } else { format!("DELETE FROM fusionhook_deliveries WHERE id IN ({select}) RETURNING id") };
        self.ids("discard", &sql, &params, filter).await
    }

    async fn ids(&self, what: &str, sql: &str, params: &[Box<dyn ToSql + Sync + Send>], filter: &Filter) -> Result<Page<u64>, StoreError> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let mut ids: Vec<u64> = self
            .query(what, sql, &refs)
            .await?
            .iter()
            .map(|r| r.try_get::<_, i64>(0).map(u64_of).map_err(pg("read")))
            .collect::<Result<_, _>>()?;
        ids.sort_unstable();
        let next = page_end(filter, ids.last().copied(), ids.len());
        Ok(Page { items: ids, next })
    }

    pub(super) async fn compact(&self, now: u64) -> Result<u64, StoreError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let delivered_before = i64_of(now.saturating_sub(millis(self.retention.delivered)));
        let forget_before = i64_of(now.saturating_sub(millis(self.retention.dedupe_window)));
        let deliveries = self
            .query(
                "compact",
                "WITH gone AS (DELETE FROM fusionhook_deliveries WHERE id IN (
                     SELECT id FROM fusionhook_deliveries WHERE state = 2 AND updated_ms < $1 LIMIT $2) RETURNING 1)
                 SELECT count(*)::bigint FROM gone",
                &[&delivered_before, &COMPACT_BATCH],
            )
            .await?;
        let events = self
            .query(
                "compact",
                "WITH gone AS (DELETE FROM fusionhook_events WHERE id IN (
                     SELECT e.id FROM fusionhook_events e WHERE e.received_ms < $1
                     AND NOT EXISTS (SELECT 1 FROM fusionhook_deliveries d WHERE d.event_id = e.id AND d.state IN (0, 1))
                     LIMIT $2) RETURNING 1)
                 SELECT count(*)::bigint FROM gone",
                &[&forget_before, &COMPACT_BATCH],
            )
            .await?;
        let count = |rows: &[Row]| rows.first().and_then(|r| r.try_get::<_, i64>(0).ok()).map_or(0, u64_of);
        Ok(count(&deliveries) + count(&events))
    }
}

fn state_of(code: i16) -> Option<State> {
    u8::try_from(code).ok().and_then(State::from_code)
}

fn dead(mut delivery: Delivery, why: &str) -> Delivery {
    delivery.record(Outcome::Dead, Some(why.to_owned()), super::now_ms());
    delivery
}

fn delivery(row: &Row) -> Result<Delivery, StoreError> {
    let get = pg("a stored delivery is unreadable");
    let history: String = row.try_get(13).map_err(&get)?;
    let state: i16 = row.try_get(4).map_err(&get)?;
    Ok(Delivery {
        id: u64_of(row.try_get(0).map_err(&get)?),
        event_id: row.try_get(1).map_err(&get)?,
        event_type: row.try_get(2).map_err(&get)?,
        route: row.try_get(3).map_err(&get)?,
        state: state_of(state).ok_or_else(|| StoreError(format!("a stored delivery has an unknown state {state}")))?,
        attempts: u32::try_from(row.try_get::<_, i32>(5).map_err(&get)?).unwrap_or(0),
        total_attempts: u32::try_from(row.try_get::<_, i32>(6).map_err(&get)?).unwrap_or(0),
        created_ms: u64_of(row.try_get(7).map_err(&get)?),
        round_started_ms: u64_of(row.try_get(8).map_err(&get)?),
        next_attempt_ms: row.try_get::<_, Option<i64>>(9).map_err(&get)?.map(u64_of),
        updated_ms: u64_of(row.try_get(10).map_err(&get)?),
        last_error: row.try_get(11).map_err(&get)?,
        ordered_by: row.try_get(12).map_err(&get)?,
        history: serde_json::from_str(&history).unwrap_or_default(),
        claim: 0,
    })
}

/// `after` for the next page: a full page may have more behind it.
fn page_end(filter: &Filter, last: Option<u64>, taken: usize) -> Option<u64> {
    (taken >= filter.limit()).then_some(last).flatten()
}

/// The SQL condition for a filter (every filter given, ids included);
/// parameters are appended to `params`.
fn where_clause(filter: &Filter, params: &mut Vec<Box<dyn ToSql + Sync + Send>>, states: Option<&str>) -> String {
    let mut conditions: Vec<String> = states.map(str::to_owned).into_iter().collect();
    let mut param = |value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        format!("${}", params.len())
    };
    if !filter.ids.is_empty() {
        let ids: Vec<i64> = filter.ids.iter().take(super::MAX_PAGE).map(|&id| i64_of(id)).collect();
        conditions.push(format!("d.id = ANY({})", param(Box::new(ids))));
    }
    if let Some(state) = filter.state {
        conditions.push(format!("d.state = {}", param(Box::new(i16::from(state.code())))));
    }
    if let Some(route) = &filter.route {
        conditions.push(format!("d.route = {}", param(Box::new(route.clone()))));
    }
    if let Some(kind) = &filter.event_type {
        conditions.push(format!("d.event_type = {}", param(Box::new(kind.clone()))));
    }
    if let Some(event_id) = &filter.event_id {
        conditions.push(format!("d.event_id = {}", param(Box::new(event_id.clone()))));
    }
    if let Some(since) = filter.since_ms {
        conditions.push(format!("d.updated_ms >= {}", param(Box::new(i64_of(since)))));
    }
    if let Some(after) = filter.after {
        conditions.push(format!("d.id > {}", param(Box::new(i64_of(after)))));
    }
    if conditions.is_empty() { "TRUE".to_owned() } else { conditions.join(" AND ") }
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let txn = within("migrate", client.transaction()).await?;
    // Replicas starting together: one applies, the others wait and find it done.
    within("migrate", txn.execute("SELECT pg_advisory_xact_lock(7305011)", &[])).await?;
    within("migrate", txn.batch_execute("CREATE TABLE IF NOT EXISTS fusionhook_schema (version integer NOT NULL)")).await?;
    let applied: i32 = within("migrate", txn.query_one("SELECT coalesce(max(version), 0) FROM fusionhook_schema", &[])).await?.get(0);
    for (i, migration) in MIGRATIONS.iter().enumerate() {
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        if version <= applied {
            continue;
        }
        within("migrate", txn.batch_execute(migration)).await?;
        within("migrate", txn.execute("INSERT INTO fusionhook_schema (version) VALUES ($1)", &[&version])).await?;
        tracing::info!(version, "PostgreSQL schema migrated");
    }
    if usize::try_from(applied).unwrap_or(0) > MIGRATIONS.len() {
        return Err(StoreError(format!(
            "the database's fusionhook schema is version {applied}, newer than this receiver knows ({}); run a newer receiver",
            MIGRATIONS.len()
        )));
    }
    within("migrate", txn.commit()).await
}

struct Prepared {
    accept: Statement,
    record: Statement,
}

/// What the [`WRITERS`] share.
struct Shared {
    /// Held for reading while a group commits; a flush takes the write side.
    commits: Arc<RwLock<()>>,
    /// Groups that failed, or lost an outcome, so far.
    failed_groups: Arc<std::sync::atomic::AtomicU64>,
    /// Outcomes of failed groups, for the next group.
    held: Arc<std::sync::Mutex<Vec<Delivery>>>,
}

/// One of the [`WRITERS`]: whichever is free takes everything queued at
/// that moment, so groups commit in parallel while PostgreSQL flushes.
/// A group being committed holds `commits` for reading; a flush waits for
/// the write side, so it answers only after every group taken before it.
async fn batcher(
    url: Arc<Secret>,
    migrated: Arc<AtomicBool>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Op>>>,
    shared: Shared,
    metrics: StoreMetrics,
) {
    let Shared { commits, failed_groups, held } = shared;
    let mut writer = Writer { url, migrated, connection: None };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let committing = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            batch.extend(held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..).map(|d| Op::Record(Box::new(d))));
            batch.push(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            commits.clone().read_owned().await
        };
        let started = std::time::Instant::now();
        let group = writer.run(&batch).await;
        // Counted before the flushes waiting for this group can look.
        if group.lost_outcomes(&batch) {
            failed_groups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        metrics.commit(started.elapsed(), !matches!(group, Group::Failed(_)));
        drop(committing);
        let mut flushes = Vec::new();
        let mut rest = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            match op {
                Op::Flush(tx, failures) => flushes.push((tx, failures)),
                op => rest.push(op),
            }
        }
        // A flush in a failed group says why (readiness shows it).
        let group_failure = match &group {
            Group::Failed(e) => Some(e.0.clone()),
            _ => None,
        };
        let unrecorded = answer(rest.into_iter(), group);
        held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(unrecorded);
        if !flushes.is_empty() {
            let _all_committed = commits.write().await;
            answer_flushes(flushes, group_failure.as_deref(), failed_groups.load(std::sync::atomic::Ordering::SeqCst));
        }
    }
}

/// Answers flushes once every group taken before them committed: an error
/// when their own group failed (`group_failure`: why), or when a group
/// failed since each was asked for (`failed`: how many so far).
fn answer_flushes(flushes: Vec<(oneshot::Sender<Result<(), StoreError>>, u64)>, group_failure: Option<&str>, failed: u64) {
    for (tx, failures) in flushes {
        let _ = tx.send(match group_failure {
            Some(why) => Err(StoreError(why.to_owned())),
            None if failed > failures => {
                Err(StoreError("a group of outcomes could not be committed to PostgreSQL; those deliveries will be tried again".into()))
            }
            None => Ok(()),
        });
    }
}

/// How a group went.
enum Group {
    /// Committed in one transaction; per accept, in order, whether its event was new.
    Committed(Vec<bool>),
    /// Nothing committed, and for the same reason for everyone in it: no
    /// connection, a broken or hung one, or the tables gone.
    Failed(StoreError),
    /// PostgreSQL refused a statement of it, so each op ran alone: per op
    /// but the flushes, in order, its own result (for an accept, whether
    /// its event was new).
    Alone(Vec<Result<bool, StoreError>>),
}

impl Group {
    /// Whether an outcome of it was not committed (or, failed as a whole,
    /// anything): flushes asked for before then answer an error.
    fn lost_outcomes(&self, batch: &[Op]) -> bool {
        match self {
            Self::Committed(_) => false,
            Self::Failed(_) => true,
            Self::Alone(results) => {
                batch.iter().filter(|op| !matches!(op, Op::Flush(..))).zip(results).any(|(op, r)| matches!(op, Op::Record(_)) && r.is_err())
            }
        }
    }
}

/// A writer's connection, opened (and the schema migrated, when needed)
/// by the first group that finds none.
struct Writer {
    url: Arc<Secret>,
    migrated: Arc<AtomicBool>,
    connection: Option<(Client, Prepared)>,
}

impl Writer {
    /// Commits a group in one transaction. When PostgreSQL refuses a
    /// statement of it, runs each op alone, so only that op fails; any
    /// other failure fails the group and drops the connection (it may be
    /// broken or hung: the next group opens a new one).
    async fn run(&mut self, batch: &[Op]) -> Group {
        if self.connection.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            self.connection = match open_writer(&self.url, &self.migrated).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot reach PostgreSQL; the events of this group are refused (500)");
                    None
                }
            };
        }
        let Some((client, prepared)) = self.connection.as_mut() else {
            return Group::Failed(StoreError("PostgreSQL cannot be reached".into()));
        };
        let failed = match tokio::time::timeout(QUERY_TIMEOUT, commit(client, prepared, batch)).await {
            Ok(Ok(fresh)) => return Group::Committed(fresh),
            Ok(Err(e)) => e,
            Err(_) => timed_out("commit"),
        };
        tracing::error!(error = %failed, ops = batch.len(), "store commit failed");
        if failed.kind != Failure::Refused || client.is_closed() {
            self.lost(failed.kind);
            return Group::Failed(failed.error);
        }
        tracing::warn!(ops = batch.len(), "PostgreSQL refused a statement of the group; each op is run alone");
        let results = alone(client, prepared, batch).await;
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            tracing::error!(error = %e, "an op run alone failed; only it is refused");
        }
        // Checked on every op: one may have found the tables gone or the connection broken.
        if let Some(kind) = results.iter().filter_map(|r| r.as_ref().err()).map(|e| e.kind).find(|k| *k != Failure::Refused) {
            self.lost(kind);
        }
        let ops = batch.iter().filter(|op| !matches!(op, Op::Flush(..)));
        let results = results.into_iter().zip(ops).map(|(result, op)| match (result, op) {
            // Refused even alone: kept, it would fail every later group
            // (and readiness with it). Dropped, the delivery stays pending
            // and is tried again when its lease runs out.
            (Err(e), Op::Record(d)) if e.kind == Failure::Refused => {
                tracing::error!(delivery = d.id, error = %e.error, "PostgreSQL refuses this delivery outcome even alone; it is dropped and the delivery tried again when its lease runs out");
                Ok(false)
            }
            (result, _) => result.map_err(|e| e.error),
        });
        Group::Alone(results.collect())
    }

    /// Drops the connection after a failure not about one statement; tables
    /// found gone are created again by the next connection.
    fn lost(&mut self, kind: Failure) {
        if kind == Failure::SchemaGone {
            forget_schema(&self.migrated);
        }
        self.connection = None;
    }
}

async fn open_writer(url: &Secret, migrated: &AtomicBool) -> Result<(Client, Prepared), StoreError> {
    let client = usable(url, migrated).await?;
    // Preparing reads the tables: it is where a writer finds them gone first.
    let accept = within("prepare", client.prepare(ACCEPT).map_err(watch(migrated))).await?;
    let record = within("prepare", client.prepare(RECORD).map_err(watch(migrated))).await?;
    Ok((client, Prepared { accept, record }))
}

/// An accept's parameters, in [`ACCEPT`]'s order.
struct AcceptArgs<'a> {
    id: std::borrow::Cow<'a, str>,
    kind: std::borrow::Cow<'a, str>,
    received_ms: i64,
    body: &'a [u8],
    routes: Vec<&'a str>,
    due: Vec<i64>,
    ordered: Vec<Option<std::borrow::Cow<'a, str>>>,
}

impl<'a> AcceptArgs<'a> {
    fn of(event: &'a NewEvent) -> Self {
        Self {
            id: text(&event.id),
            kind: text(&event.kind),
            received_ms: i64_of(event.received_ms),
            body: event.body.as_ref(),
            routes: event.deliveries.iter().map(|d| d.route.as_str()).collect(),
            due: event.deliveries.iter().map(|d| i64_of(d.due_ms)).collect(),
            ordered: event.deliveries.iter().map(|d| d.ordered_by.as_deref().map(text)).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [&self.id, &self.kind, &self.received_ms, &self.body, &self.routes, &self.due, &self.ordered]
    }
}

/// An outcome's parameters, in [`RECORD`]'s order.
struct RecordArgs<'a> {
    id: i64,
    state: i16,
    attempts: i32,
    total: i32,
    next_attempt_ms: Option<i64>,
    updated_ms: i64,
    last_error: Option<std::borrow::Cow<'a, str>>,
    history: String,
    claim: i64,
}

impl<'a> RecordArgs<'a> {
    fn of(d: &'a Delivery) -> Self {
        Self {
            id: i64_of(d.id),
            state: i16::from(d.state.code()),
            attempts: i32::try_from(d.attempts).unwrap_or(i32::MAX),
            total: i32::try_from(d.total_attempts).unwrap_or(i32::MAX),
            next_attempt_ms: d.next_attempt_ms.map(i64_of),
            updated_ms: i64_of(d.updated_ms),
            // A service's error text may hold NUL, which PostgreSQL's text refuses.
            last_error: d.last_error.as_deref().map(text),
            history: serde_json::to_string(&d.history).unwrap_or_else(|_| "[]".into()),
            claim: d.claim,
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        [
            &self.id,
            &self.state,
            &self.attempts,
            &self.total,
            &self.next_attempt_ms,
            &self.updated_ms,
            &self.last_error,
            &self.history,
            &self.claim,
        ]
    }
}

/// [`ACCEPT`]'s answer: whether the event was new.
fn fresh(row: &Row) -> Result<bool, tokio_postgres::Error> {
    row.try_get::<_, i64>(0).map(|n| n == 1)
}

/// Runs the group in one transaction; the statements are pipelined. The
/// result holds, per accept, whether the event was new.
async fn commit(client: &mut Client, prepared: &Prepared, batch: &[Op]) -> Result<Vec<bool>, GroupError> {
    let txn = client.transaction().await.map_err(group_error("begin"))?;
    let accepts = batch.iter().filter_map(|op| match op {
        Op::Accept(event, _) => Some(event),
        _ => None,
    });
    let accept_futures = accepts.map(|event| {
        let (txn, accept) = (&txn, &prepared.accept);
        async move {
            let args = AcceptArgs::of(event);
            fresh(&txn.query_one(accept, &args.params()).await?)
        }
    });
    let records = batch.iter().filter_map(|op| match op {
        Op::Record(d) => Some(d),
        _ => None,
    });
    let record_futures = records.map(|d| {
        let (txn, record) = (&txn, &prepared.record);
        async move {
            let args = RecordArgs::of(d);
            txn.execute(record, &args.params()).await
        }
    });
    let (fresh, _) =
        futures::future::try_join(futures::future::try_join_all(accept_futures), futures::future::try_join_all(record_futures))
            .await
            .map_err(group_error("write"))?;
    txn.commit().await.map_err(group_error("commit"))?;
    Ok(fresh)
}

/// Runs each op of a group but the flushes alone, each statement its own
/// transaction (pipelined, outside any transaction), so a statement
/// PostgreSQL refuses fails only its op. Results in the ops' order; the
/// whole is bounded like one commit.
async fn alone(client: &Client, prepared: &Prepared, batch: &[Op]) -> Vec<Result<bool, GroupError>> {
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
    let each = batch.iter().filter(|op| !matches!(op, Op::Flush(..))).map(|op| async move {
        let run = async {
            match op {
                Op::Accept(event, _) => {
                    let args = AcceptArgs::of(event);
                    fresh(&client.query_one(&prepared.accept, &args.params()).await?)
                }
                Op::Record(d) => {
                    let args = RecordArgs::of(d);
                    client.execute(&prepared.record, &args.params()).await.map(|_| true)
                }
                Op::Flush(..) => Ok(true),
            }
        };
        match tokio::time::timeout_at(deadline, run).await {
            Ok(result) => result.map_err(group_error("write alone")),
            Err(_) => Err(timed_out("write alone")),
        }
    });
    futures::future::join_all(each).await
}

/// Answers a group's ops (the flushes taken out); gives back the outcomes
/// that were not committed, for the next group.
fn answer(batch: impl Iterator<Item = Op>, group: Group) -> Vec<Delivery> {
    match group {
        Group::Committed(fresh) => {
            let mut fresh = fresh.into_iter();
            batch
                .filter_map(|op| {
                    let new = matches!(op, Op::Accept(..)).then(|| fresh.next().unwrap_or(false)).unwrap_or(true);
                    answer_one(op, Ok(new))
                })
                .collect()
        }
        Group::Failed(e) => batch.filter_map(|op| answer_one(op, Err(StoreError(e.0.clone())))).collect(),
        Group::Alone(results) => batch.zip(results).filter_map(|(op, result)| answer_one(op, result)).collect(),
    }
}

/// Answers one op with its result (for an accept, whether its event was
/// new); gives back an outcome that was not committed.
fn answer_one(op: Op, result: Result<bool, StoreError>) -> Option<Delivery> {
    match (op, result) {
        (Op::Accept(_, tx), result) => {
            let _ = tx.send(result.map(|new| if new { Accepted::Stored } else { Accepted::Duplicate }));
            None
        }
        (Op::Flush(tx, _), result) => {
            let _ = tx.send(result.map(|_| ()));
            None
        }
        (Op::Record(_), Ok(_)) => None,
        (Op::Record(d), Err(_)) => {
            tracing::warn!(delivery = d.id, "a delivery outcome was not committed; it goes with the next group");
            Some(*d)
        }
    }
}

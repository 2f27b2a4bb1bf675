//! The embedded store: one redb file (`<path>/fusionhook.redb`) on a local
//! volume. redb is pure Rust, crash-safe (copy-on-write B-trees, checksummed
//! commits) and has a stable file format.
//!
//! Writes go through one writer thread that takes every operation queued
//! at that moment into one write transaction and commits it with
//! `Durability::Immediate` (an fsync): concurrent requests share a flush
//! (group commit), and each is answered only after the flush. Reads
//! (claims, listings, stats) run on snapshots beside the writer.
//!
//! A delivery handed to a worker stays in `claimed` (memory) until its
//! outcome is committed, so no snapshot can hand it out twice: a claim
//! holds that set's lock from before its snapshot until it has checked
//! every entry, and the writer removes ids only after their commit.
//!
//! A commit that fails (a full disk, an I/O error) fails every operation of
//! its batch, and redb then refuses every later write until the database is
//! closed and opened again. So the writer reopens it (at most once a
//! second, behind the next operation; the readiness probe sends one every
//! few seconds) until it can write again: the store recovers by itself
//! once space is freed. An outcome that could not be committed is kept in
//! memory and committed with the next batch that succeeds; its delivery
//! stays claimed meanwhile, so it is never sent again sooner than its
//! outcome says (a restart before then sends it again: at least once).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::{Accepted, Claimed, Delivery, EventView, Filter, NewEvent, Outcome, Page, Retention, State, Stats, StoreError, StoreMetrics};
use crate::dedupe::event_key;

/// `event sequence number -> id, type and body`. Keyed in arrival order, so
/// a group commit appends to the table's last pages instead of dirtying one
/// page per event, as a key by event id (random UUIDs) would (measured:
/// `bench/engines`).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// `event key -> (received ms, first delivery id, number of deliveries,
/// event sequence number)`: the dedupe index, the only table keyed by event
/// id, written once per event (an outcome writes nothing here); an event's
/// deliveries have consecutive ids.
const EVENT_IDS: TableDefinition<u128, (u64, u64, u32, u64)> = TableDefinition::new("event_ids");
/// `(ms, event key)`: events in the order compaction looks at them again,
/// from when they were received (see [`compact`]).
const EVENT_TIMES: TableDefinition<(u64, u128), ()> = TableDefinition::new("event_times");
/// `delivery id -> its event's sequence number (8 bytes, little endian) and
/// the Delivery (JSON)`.
const DELIVERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("deliveries");
/// `(route, next attempt ms, delivery id)`: pending deliveries by due time.
const DUE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("due");
/// `delivery id -> created ms`: pending deliveries, oldest first.
const PENDING: TableDefinition<u64, u64> = TableDefinition::new("pending");
/// `delivery id -> dead since ms`.
const DEAD: TableDefinition<u64, u64> = TableDefinition::new("dead");
/// `(delivered ms, delivery id)`: delivered deliveries in the order they expire.
const DELIVERED: TableDefinition<(u64, u64), ()> = TableDefinition::new("delivered");
/// `(route, object, delivery id)`: pending deliveries of ordered routes.
const ORDERED: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("ordered");
/// `(route, state code) -> count`.
const COUNTS: TableDefinition<(&str, u8), u64> = TableDefinition::new("counts");
/// `name -> value`: `next_id`, `next_event`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// redb's page cache (its default is 1 GiB, which a large backlog fills).
const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Operations queued at once go into one transaction, up to this many.
const BATCH: usize = 4096;
/// A claim looks at most this many due entries (ordered routes skip blocked ones).
const CLAIM_SCAN: usize = 10_000;
/// A compaction pass removes at most this many records of each kind.
const COMPACT_BATCH: usize = 10_000;
/// A listing reads at most this many records looking for matches.
const LIST_SCAN: usize = 200_000;
/// After a failed commit, the database is reopened at most this often.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// A reopen waits at most this long for reads under way to let go of the
/// database (a read takes milliseconds).
const READERS_GONE: Duration = Duration::from_secs(2);
/// The file's name in the store's directory.
const FILE_NAME: &str = "fusionhook.redb";

/// The embedded store.
pub struct Embedded {
    /// Empty while the writer reopens the database after a failed commit.
    db: Arc<ArcSwapOption<Database>>,
    ops: mpsc::UnboundedSender<Op>,
    claimed: Arc<Mutex<HashSet<u64>>>,
    /// The file, for its size and its filesystem's figures.
    file: PathBuf,
    metrics: StoreMetrics,
}

enum Op {
    Accept(NewEvent, oneshot::Sender<Result<Accepted, StoreError>>),
    Record(Record),
    Replay(Filter, bool, u64, oneshot::Sender<Result<Page<u64>, StoreError>>),
    Discard(Filter, bool, oneshot::Sender<Result<Page<u64>, StoreError>>),
    Compact(u64, oneshot::Sender<Result<u64, StoreError>>),
    Flush(oneshot::Sender<Result<u64, StoreError>>),
}

macro_rules! r {
    ($e:expr, $ctx:literal) => {
        $e.map_err(|e| StoreError::from($ctx, redb::Error::from(e)))
    };
}

/// An attempt's outcome, to be committed.
struct Record {
    id: u64,
    outcome: Outcome,
    error: Option<String>,
    now: u64,
}

fn lock(claimed: &Mutex<HashSet<u64>>) -> MutexGuard<'_, HashSet<u64>> {
    claimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn encode_event(id: &str, kind: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + id.len() + kind.len() + body.len());
    for text in [id, kind] {
        // Ids and types are short; the config's body limit keeps either below 64 KiB in practice,
        // and a longer one is cut (it is only shown, never used to route).
        let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(body);
    out
}

fn decode_event(bytes: &[u8]) -> Option<(String, String, Bytes)> {
    let mut rest = bytes;
    let mut texts = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
        let text = rest.get(2..2 + len)?;
        texts.push(String::from_utf8_lossy(text).into_owned());
        rest = &rest[2 + len..];
    }
    let kind = texts.pop()?;
    let id = texts.pop()?;
    Some((id, kind, Bytes::copy_from_slice(rest)))
}

/// A stored delivery and its event's sequence number.
fn decode_delivery(bytes: &[u8]) -> Result<(u64, Delivery), StoreError> {
    let (seq, json) = bytes.split_at_checked(8).ok_or_else(|| StoreError("a stored delivery is truncated".into()))?;
    let seq = u64::from_le_bytes(seq.try_into().unwrap_or_default());
    let d = serde_json::from_slice(json).map_err(|e| StoreError::from("a stored delivery is unreadable", e))?;
    Ok((seq, d))
}

fn encode_delivery(seq: u64, d: &Delivery) -> Result<Vec<u8>, StoreError> {
    let mut out = seq.to_le_bytes().to_vec();
    serde_json::to_writer(&mut out, d).map_err(|e| StoreError::from("encode delivery", e))?;
    Ok(out)
}

impl Embedded {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, retention: Retention, metrics: StoreMetrics) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::from(&format!("cannot create {}", dir.display()), e))?;
        let file = dir.join(FILE_NAME);
        let db = Arc::new(ArcSwapOption::from_pointee(open_database(&file, true)?));
        let (ops, rx) = mpsc::unbounded_channel();
        let claimed = Arc::new(Mutex::new(HashSet::new()));
        let writer = Writer { file: file.clone(), db: db.clone(), claimed: claimed.clone(), retention, held: Vec::new(), broken: None };
        let commits = metrics.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx, &commits))
            .map_err(|e| StoreError::from("cannot start the store writer", e))?;
        let store = Self { db, ops, claimed, file, metrics };
        store.sample_usage();
        Ok(store)
    }

    /// Sets the file's size and its filesystem's capacity and the space
    /// still available to this (unprivileged) process: what fills up first
    /// when deliveries pile up. Two system calls; a figure that cannot be
    /// read keeps its last value.
    fn sample_usage(&self) {
        if let Ok(meta) = std::fs::metadata(&self.file) {
            self.metrics.size(meta.len());
        }
        let dir = self.file.parent().unwrap_or_else(|| Path::new("."));
        if let Ok(fs) = rustix::fs::statvfs(dir) {
            self.metrics.volume(fs.f_blocks.saturating_mul(fs.f_frsize), fs.f_bavail.saturating_mul(fs.f_frsize));
        }
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        self.ops.send(op).map_err(|_| StoreError("the store writer stopped".into()))
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
        let db = self.db.load_full().ok_or_else(|| StoreError("the store is being reopened after a failed commit".into()))?;
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StoreError::from("store read", e))?
    }

    pub(super) async fn seen(&self, event_id: &str) -> Result<bool, StoreError> {
        let key = event_key(event_id);
        self.read(move |db| {
            let txn = r!(db.begin_read(), "begin read")?;
            let events = r!(txn.open_table(EVENT_IDS), "open")?;
            Ok(r!(events.get(key), "read")?.is_some())
        })
        .await
    }

    pub(super) async fn accept(&self, event: NewEvent) -> Result<Accepted, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Accept(event, tx))?;
        rx.await.map_err(|_| StoreError("the store writer stopped before the commit".into()))?
    }

    pub(super) async fn claim(&self, route: &str, limit: usize, now: u64) -> Result<Vec<Claimed>, StoreError> {
        let route = route.to_owned();
        let claimed = self.claimed.clone();
        self.read(move |db| {
            let mut held = lock(&claimed);
            let txn = r!(db.begin_read(), "begin read")?;
            let due = r!(txn.open_table(DUE), "open")?;
            let deliveries = r!(txn.open_table(DELIVERIES), "open")?;
            let ordered = r!(txn.open_table(ORDERED), "open")?;
            let events = r!(txn.open_table(EVENTS), "open")?;
            let mut out = Vec::new();
            let range = r!(due.range((route.as_str(), 0, 0)..=(route.as_str(), now, u64::MAX)), "read")?;
            for entry in range.take(CLAIM_SCAN) {
                let (key, _) = r!(entry, "read")?;
                let (_, _, id) = key.value();
                if held.contains(&id) {
                    continue;
                }
                let Some(record) = r!(deliveries.get(id), "read")? else { continue };
                let (seq, delivery) = decode_delivery(record.value())?;
                if let Some(object) = &delivery.ordered_by {
                    let mut earlier =
                        r!(ordered.range((route.as_str(), object.as_str(), 0)..=(route.as_str(), object.as_str(), u64::MAX)), "read")?;
                    let first = earlier.next().transpose().map_err(|e| StoreError::from("read", e))?.map(|(k, _)| k.value().2);
                    if first.is_some_and(|first| first != id) {
                        continue;
                    }
                }
                let Some(event) = r!(events.get(seq), "read")? else { continue };
                let Some((_, _, body)) = decode_event(event.value()) else { continue };
                out.push(Claimed { delivery, body });
                if out.len() >= limit {
                    break;
                }
            }
            // Held only once the whole claim succeeded: an error above leaves nothing held.
            held.extend(out.iter().map(|c| c.delivery.id));
            Ok(out)
        })
        .await
    }

    pub(super) async fn record(&self, delivery: &Delivery, outcome: Outcome, error: Option<String>) -> Result<(), StoreError> {
        self.send(Op::Record(Record { id: delivery.id, outcome, error, now: super::now_ms() }))
    }

    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx))?;
        rx.await.map_err(|_| StoreError("the store writer stopped".into()))?.map(drop)
    }

    pub(super) async fn stats(&self, now: u64) -> Result<Stats, StoreError> {
        self.sample_usage();
        self.read(move |db| {
            let txn = r!(db.begin_read(), "begin read")?;
            let counts = r!(txn.open_table(COUNTS), "open")?;
            let pending = r!(txn.open_table(PENDING), "open")?;
            let mut stats = Stats::default();
            for entry in r!(counts.iter(), "read")? {
                let (key, count) = r!(entry, "read")?;
                let (route, code) = key.value();
                let count = count.value();
                if let Some(state) = State::from_code(code) {
                    stats.add(route, state, count);
                }
            }
            if let Some(first) = r!(pending.first(), "read")? {
                stats.oldest_pending_seconds = now.saturating_sub(first.1.value()) / 1000;
            }
            Ok(stats)
        })
        .await
    }

    pub(super) async fn list(&self, filter: &Filter) -> Result<Page<Delivery>, StoreError> {
        let filter = filter.clone();
        self.read(move |db| {
            let txn = r!(db.begin_read(), "begin read")?;
            let t = ReadTables {
                deliveries: r!(txn.open_table(DELIVERIES), "open")?,
                pending: r!(txn.open_table(PENDING), "open")?,
                dead: r!(txn.open_table(DEAD), "open")?,
            };
            let page = select(&t.deliveries, &t.pending, &t.dead, &filter, LIST_SCAN)?;
            Ok(Page { items: page.items.into_iter().map(|(_, d)| d).collect(), next: page.next })
        })
        .await
    }

    pub(super) async fn event(&self, event_id: &str) -> Result<Option<EventView>, StoreError> {
        let key = event_key(event_id);
        self.read(move |db| {
            let txn = r!(db.begin_read(), "begin read")?;
            let events = r!(txn.open_table(EVENTS), "open")?;
            let ids = r!(txn.open_table(EVENT_IDS), "open")?;
            let deliveries = r!(txn.open_table(DELIVERIES), "open")?;
            let Some((received_ms, first, count, seq)) = r!(ids.get(key), "read")?.map(|v| v.value()) else { return Ok(None) };
            let Some(stored) = r!(events.get(seq), "read")? else { return Ok(None) };
            let Some((id, kind, body)) = decode_event(stored.value()) else { return Ok(None) };
            let mut list = Vec::new();
            for delivery_id in first..first.saturating_add(u64::from(count)) {
                if let Some(record) = r!(deliveries.get(delivery_id), "read")? {
                    list.push(decode_delivery(record.value())?.1);
                }
            }
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            Ok(Some(EventView { id, r#type: kind, received_ms, body, deliveries: list }))
        })
        .await
    }

    pub(super) async fn replay(&self, filter: &Filter, dry_run: bool) -> Result<Page<u64>, StoreError> {
        chosen(filter)?;
        let (tx, rx) = oneshot::channel();
        self.send(Op::Replay(filter.clone(), dry_run, super::now_ms(), tx))?;
        rx.await.map_err(|_| StoreError("the store writer stopped".into()))?
    }

    pub(super) async fn discard(&self, filter: &Filter, dry_run: bool) -> Result<Page<u64>, StoreError> {
        chosen(filter)?;
        let (tx, rx) = oneshot::channel();
        self.send(Op::Discard(filter.clone(), dry_run, tx))?;
        rx.await.map_err(|_| StoreError("the store writer stopped".into()))?
    }

    pub(super) async fn compact(&self, now: u64) -> Result<u64, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Compact(now, tx))?;
        rx.await.map_err(|_| StoreError("the store writer stopped".into()))?
    }
}

struct ReadTables {
    deliveries: redb::ReadOnlyTable<u64, &'static [u8]>,
    pending: redb::ReadOnlyTable<u64, u64>,
    dead: redb::ReadOnlyTable<u64, u64>,
}

/// The deliveries `filter` takes, by id, and where the next page starts
/// when this one stopped early: at the filter's limit, or after reading
/// `scan` records (a filter that matches little must not read the whole
/// store in one call).
fn select(
    deliveries: &impl ReadableTable<u64, &'static [u8]>,
    pending: &impl ReadableTable<u64, u64>,
    dead: &impl ReadableTable<u64, u64>,
    filter: &Filter,
    scan: usize,
) -> Result<Page<(u64, Delivery)>, StoreError> {
    let limit = filter.limit();
    let start = filter.after.map_or(0, |a| a.saturating_add(1));
    let ids: Box<dyn Iterator<Item = Result<u64, StoreError>>> = if !filter.ids.is_empty() {
        let mut ids: Vec<u64> = filter.ids.iter().copied().filter(|id| *id >= start).collect();
        ids.sort_unstable();
        ids.dedup();
        Box::new(ids.into_iter().map(Ok))
    } else {
        match filter.state {
            Some(State::Pending) => Box::new(r!(pending.range(start..), "read")?.map(|e| r!(e.map(|(k, _)| k.value()), "read"))),
            Some(State::Dead) => Box::new(r!(dead.range(start..), "read")?.map(|e| r!(e.map(|(k, _)| k.value()), "read"))),
            _ => Box::new(r!(deliveries.range(start..), "read")?.map(|e| r!(e.map(|(k, _)| k.value()), "read"))),
        }
    };
    let mut items = Vec::new();
    let mut last = None;
    for (read, id) in ids.enumerate() {
        let id = id?;
        if read == scan {
            // More to look at: the next page goes on after the last one read.
            return Ok(Page { items, next: last });
        }
        last = Some(id);
        let Some(record) = r!(deliveries.get(id), "read")? else { continue };
        let (seq, delivery) = decode_delivery(record.value())?;
        if filter.admits(&delivery) {
            items.push((seq, delivery));
            if items.len() >= limit {
                return Ok(Page { items, next: last });
            }
        }
    }
    Ok(Page { items, next: None })
}

/// Opens the database file, creating it (and every table) when it does not
/// exist. A new file is made under another name and moved into place once
/// initialised, so a file at the store's path is never legitimately empty:
/// an empty or damaged one is refused, never started over.
fn open_database(file: &Path, check: bool) -> Result<Database, StoreError> {
    let builder = || {
        let mut builder = redb::Builder::new();
        // redb's page cache is its memory: bounded here, whatever the backlog.
        builder.set_cache_size(CACHE_BYTES);
        builder
    };
    match std::fs::metadata(file) {
        Ok(meta) if meta.len() == 0 => return Err(StoreError(damaged(file, "it is empty (0 bytes)"))),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let fresh = file.with_extension("redb.new");
            // A leftover of a start that died half-way holds nothing.
            let _ = std::fs::remove_file(&fresh);
            let db = builder().create(&fresh).map_err(|e| StoreError::from(&format!("cannot create {}", fresh.display()), e))?;
            create_tables(&db, file)?;
            drop(db);
            std::fs::rename(&fresh, file).map_err(|e| StoreError::from(&format!("cannot move {} into place", fresh.display()), e))?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| StoreError::from("cannot sync the store's directory", e))?;
            }
        }
        Err(e) => return Err(StoreError::from(&format!("cannot read {}", file.display()), e)),
    }
    // At start, every page's checksum is checked: a damaged file is
    // refused here with a message, instead of failing (or panicking) later.
    // (It reads the whole file, once per start.) A reopen after
    // a failed write does not: the file was sound when this process opened it.
    let mut builder = builder();
    builder.set_check_integrity_on_open(check);
    let db = match builder.open(file) {
        Ok(db) => db,
        Err(e @ (redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) | redb::DatabaseError::UpgradeRequired(_))) => {
            return Err(StoreError(damaged(file, &e.to_string())));
        }
        Err(e) => return Err(StoreError::from(&format!("cannot open {}", file.display()), e)),
    };
    create_tables(&db, file)?;
    Ok(db)
}

/// What [`salvage`] read out of a store file.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// Events read.
    pub events: u64,
    /// Events written out (owed a delivery, or every one read when the
    /// deliveries could not all be read).
    pub written: u64,
    /// What could not be read, in words.
    pub damage: Vec<String>,
}

/// Reads what can still be read out of the store in `dir`, damaged or not,
/// without writing to it (a copy is opened when redb must repair it): the
/// events still owed a delivery (pending or dead), one JSON line each, the
/// body exactly as received, which is what the admin API's `/v1/ingest`
/// takes. A damaged region is passed by: reading goes on after it.
pub fn salvage(dir: &Path, out: &mut dyn std::io::Write) -> Result<Salvaged, StoreError> {
    let file = dir.join(FILE_NAME);
    let read_only = std::panic::catch_unwind(|| redb::Builder::new().open_read_only(&file));
    let db: Box<dyn ReadableDatabase> = match read_only {
        Ok(Ok(db)) => Box::new(db),
        _ => {
            // Repaired on a copy: the file itself is never written.
            let copy = tempfile_path("fusionhook-salvage");
            if let Err(e) = std::fs::copy(&file, &copy) {
                let _ = std::fs::remove_file(&copy);
                return scan_bytes(&file, &format!("no room to repair a copy: {e}"), out);
            }
            let opened = std::panic::catch_unwind(|| redb::Builder::new().open(&copy));
            let _ = std::fs::remove_file(&copy);
            match opened {
                Ok(Ok(db)) => Box::new(db),
                Ok(Err(e)) => return scan_bytes(&file, &e.to_string(), out),
                Err(_) => return scan_bytes(&file, "redb failed on it", out),
            }
        }
    };
    let mut report = Salvaged::default();
    let txn = r!(db.begin_read(), "begin read")?;
    // Which events are owed a delivery; all of them when that cannot be told.
    let mut owed = Some(HashSet::new());
    let deliveries = r!(txn.open_table(DELIVERIES), "open deliveries")?;
    read_past_damage(&deliveries, "deliveries", &mut report.damage, |_, value| {
        match decode_delivery(value) {
            Ok((seq, d)) if d.state != State::Delivered => drop(owed.as_mut().map(|o| o.insert(seq))),
            Ok(_) => {}
            Err(_) => owed = None,
        }
        Ok(())
    })?;
    if !report.damage.is_empty() {
        owed = None;
    }
    let events = r!(txn.open_table(EVENTS), "open events")?;
    read_past_damage(&events, "events", &mut report.damage, |seq, value| {
        report.events += 1;
        let Some((_, _, body)) = decode_event(value) else { return Ok(()) };
        if owed.as_ref().is_none_or(|o| o.contains(&seq)) {
            write_line(out, &body)?;
            report.written += 1;
        }
        Ok(())
    })?;
    Ok(report)
}

/// One event body as one JSON line (a body with line breaks is written compact).
fn write_line(out: &mut dyn std::io::Write, body: &[u8]) -> Result<(), StoreError> {
    let compact;
    let line = match body.contains(&b'\n') {
        false => body,
        true => {
            compact = serde_json::from_slice::<serde_json::Value>(body).and_then(|v| serde_json::to_vec(&v)).unwrap_or_default();
            &compact
        }
    };
    out.write_all(line).and_then(|()| out.write_all(b"\n")).map_err(|e| StoreError::from("cannot write", e))
}

/// The last resort when redb cannot open the file at all (its roots are
/// damaged): every event body found in the file's bytes, once per
/// `event.id`. Which were delivered cannot be told then, so every one found
/// is written (a route acting again sends the same idempotency key).
fn scan_bytes(file: &Path, why: &str, out: &mut dyn std::io::Write) -> Result<Salvaged, StoreError> {
    let bytes = std::fs::read(file).map_err(|e| StoreError::from(&format!("cannot read {}", file.display()), e))?;
    let mut report = Salvaged {
        damage: vec![format!(
            "the file's structure ({why}): every event found in its bytes is written, delivered ones too (they cannot be told apart)"
        )],
        ..Salvaged::default()
    };
    let mut seen = HashSet::new();
    let mut at = 0;
    let start = b"{\"event\":";
    while let Some(found) = bytes[at..].windows(start.len()).position(|w| w == start) {
        let from = at + found;
        let mut values = serde_json::Deserializer::from_slice(&bytes[from..]).into_iter::<serde_json::Value>();
        at = from + 1;
        let Some(Ok(value)) = values.next() else { continue };
        let end = from + values.byte_offset();
        let Some(id) = value["event"]["id"].as_str() else { continue };
        report.events += 1;
        if seen.insert(id.to_owned()) {
            write_line(out, &bytes[from..end])?;
            report.written += 1;
        }
        at = end;
    }
    Ok(report)
}

/// A path in the temporary directory, unique to this process.
fn tempfile_path(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}-{}-{}.redb", std::process::id(), super::now_ms()))
}

/// Calls `each` for every entry of `table` that can be read, in key order.
/// Where an entry cannot be read (an error or a panic of redb's on a damaged
/// page), the damage is noted and reading starts again further on, probing
/// ever larger steps for the next key that reads.
fn read_past_damage(
    table: &impl ReadableTable<u64, &'static [u8]>,
    name: &str,
    damage: &mut Vec<String>,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut from = 0_u64;
    let mut step = 1_u64;
    loop {
        let mut last = None;
        // `Err(Ok(e))`: `each` failed (final); `Err(Err(text))`: damage.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(), Result<StoreError, String>> {
            for entry in table.range(from..).map_err(|e| Err(e.to_string()))? {
                let (key, value) = entry.map_err(|e| Err(e.to_string()))?;
                each(key.value(), value.value()).map_err(Ok)?;
                last = Some(key.value());
            }
            Ok(())
        }));
        let problem = match read {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(Ok(fatal))) => return Err(fatal),
            Ok(Err(Err(damage))) => damage,
            Err(_) => "redb failed on a damaged page".to_owned(),
        };
        let resume = last.map_or(from, |l| l.saturating_add(1));
        if last.is_some() {
            step = 1;
        }
        if damage.last().is_none_or(|d| !d.starts_with(&format!("{name} from key {resume}"))) {
            damage.push(format!("{name} from key {resume}: {problem}"));
        }
        step = step.saturating_mul(2);
        if step > 1 << 40 {
            return Ok(());
        }
        from = resume.saturating_add(step);
    }
}

/// What a refused store file says: what is wrong and the way out.
fn damaged(file: &Path, what: &str) -> String {
    format!(
        "the store file {} is damaged: {what}. The receiver will not start over it with an empty store (that would forget \
         every pending delivery). Keep a copy, run `fusionhook-receiver --salvage {} > owed.jsonl` to read out what can \
         still be read (events owed a delivery, one JSON line each, to hand to the admin API's /v1/ingest), then move the \
         file away to start an empty store",
        file.display(),
        file.parent().map_or_else(|| ".".into(), |p| p.display().to_string())
    )
}

/// Creates every table up front, so readers never meet a missing one.
fn create_tables(db: &Database, file: &Path) -> Result<(), StoreError> {
    let txn = r!(db.begin_write(), "begin")?;
    for layout in [txn.open_table(EVENTS).map(drop), txn.open_table(EVENT_IDS).map(drop)] {
        if let Err(e @ redb::TableError::TableTypeMismatch { .. }) = layout {
            return Err(StoreError(format!(
                "{} was written by a development build of fusionhook with another layout ({e}); move it away",
                file.display()
            )));
        }
        r!(layout, "open")?;
    }
    r!(txn.open_table(EVENT_TIMES), "open")?;
    r!(txn.open_table(DELIVERIES), "open")?;
    r!(txn.open_table(DUE), "open")?;
    r!(txn.open_table(PENDING), "open")?;
    r!(txn.open_table(DEAD), "open")?;
    r!(txn.open_table(DELIVERED), "open")?;
    r!(txn.open_table(ORDERED), "open")?;
    r!(txn.open_table(COUNTS), "open")?;
    r!(txn.open_table(META), "open")?;
    r!(txn.commit(), "commit")
}

/// The writer thread's state.
struct Writer {
    file: PathBuf,
    db: Arc<ArcSwapOption<Database>>,
    claimed: Arc<Mutex<HashSet<u64>>>,
    retention: Retention,
    /// Outcomes whose commit failed, committed with the next batch; their
    /// deliveries stay claimed until then.
    held: Vec<Record>,
    /// Since when, and why, the database needs reopening.
    broken: Option<(Instant, String)>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>, metrics: &StoreMetrics) {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(first) = rx.blocking_recv() {
            let started = Instant::now();
            // Outcomes still owed go first, in the order they happened.
            batch.extend(self.held.drain(..).map(Op::Record));
            batch.push(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let ok = match self.database() {
                Ok(db) => match commit(&db, &mut batch, &self.claimed, self.retention, &mut self.held) {
                    Ok(()) => true,
                    Err(e) => {
                        // redb refuses every write after an I/O error until it is reopened.
                        self.broken = Some((Instant::now(), e.0));
                        false
                    }
                },
                Err(e) => {
                    for op in batch.drain(..) {
                        fail(op, &e, &mut self.held);
                    }
                    false
                }
            };
            metrics.commit(started.elapsed(), ok);
        }
    }

    /// The database to write to; after a failed commit, reopened first (at
    /// most once every [`REOPEN_EVERY`]).
    fn database(&mut self) -> Result<Arc<Database>, StoreError> {
        let Some((since, why)) = &self.broken else {
            return self.db.load_full().ok_or_else(|| StoreError("the store is closed".into()));
        };
        if since.elapsed() < REOPEN_EVERY {
            return Err(StoreError(why.clone()));
        }
        if let Some(old) = self.db.swap(None) {
            let deadline = Instant::now() + READERS_GONE;
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            match Arc::try_unwrap(old) {
                // Closing a database that failed may fail too: it is gone either way.
                Ok(db) => drop(db.close()),
                Err(old) => {
                    self.db.store(Some(old));
                    self.broken = Some((Instant::now(), "the store cannot be reopened while reads hold it".into()));
                    return Err(StoreError("the store cannot be reopened while reads hold it".into()));
                }
            }
        }
        match open_database(&self.file, false) {
            Ok(db) => {
                let db = Arc::new(db);
                self.db.store(Some(db.clone()));
                self.broken = None;
                tracing::info!(file = %self.file.display(), "the store was reopened after a failed commit");
                Ok(db)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the store cannot be reopened yet; trying again with the next commit");
                self.broken = Some((Instant::now(), e.0.clone()));
                Err(e)
            }
        }
    }
}

/// What each op of a batch gets told once the batch is committed (or not).
enum Reply {
    Accept(oneshot::Sender<Result<Accepted, StoreError>>, Accepted),
    Ids(oneshot::Sender<Result<Page<u64>, StoreError>>, Page<u64>),
    Count(oneshot::Sender<Result<u64, StoreError>>, u64),
    /// An outcome in this batch: committed, its delivery is released.
    Recorded(Record),
}

/// Commits the batch in one transaction. On failure every op is answered
/// with the error and the outcomes go back to `held`.
fn commit(
    db: &Database,
    batch: &mut Vec<Op>,
    claimed: &Mutex<HashSet<u64>>,
    retention: Retention,
    held: &mut Vec<Record>,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let count = batch.len();
    let mut replies = Vec::with_capacity(batch.len());
    let mut ops = std::mem::take(batch).into_iter();
    let result = (|| -> Result<(), StoreError> {
        let mut txn = r!(db.begin_write(), "begin write")?;
        r!(txn.set_durability(Durability::Immediate), "durability")?;
        {
            let mut t = Tables::open(&txn, retention)?;
            for op in ops.by_ref() {
                apply(&mut t, op, &mut replies).map_err(|(e, op)| {
                    // The op that failed is answered; the rest of the batch
                    // fails with it (the transaction is not committed).
                    fail(*op, &e, held);
                    e
                })?;
            }
            t.finish()?;
        }
        r!(txn.commit(), "commit")
    })();
    match result {
        Ok(()) => {
            answer(replies, claimed);
            tracing::trace!(ops = count, took_us = started.elapsed().as_micros() as u64, "store commit");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, ops = count, "store commit failed");
            for op in ops {
                fail(op, &e, held);
            }
            for reply in replies {
                match reply {
                    Reply::Accept(tx, _) => drop(tx.send(Err(StoreError(e.0.clone())))),
                    Reply::Ids(tx, _) => drop(tx.send(Err(StoreError(e.0.clone())))),
                    Reply::Count(tx, _) => drop(tx.send(Err(StoreError(e.0.clone())))),
                    Reply::Recorded(record) => held.push(record),
                }
            }
            Err(e)
        }
    }
}

/// Answers the ops of a committed batch; a recorded outcome releases its
/// delivery's claim.
fn answer(replies: Vec<Reply>, claimed: &Mutex<HashSet<u64>>) {
    let mut claims = None;
    for reply in replies {
        match reply {
            Reply::Accept(tx, accepted) => drop(tx.send(Ok(accepted))),
            Reply::Ids(tx, ids) => drop(tx.send(Ok(ids))),
            Reply::Count(tx, n) => drop(tx.send(Ok(n))),
            Reply::Recorded(record) => {
                claims.get_or_insert_with(|| lock(claimed)).remove(&record.id);
            }
        }
    }
}

/// Answers an op of a batch that was not committed; an outcome is kept for
/// the next batch (its delivery stays claimed).
fn fail(op: Op, e: &StoreError, held: &mut Vec<Record>) {
    let e = StoreError(e.0.clone());
    match op {
        Op::Accept(_, tx) => drop(tx.send(Err(e))),
        Op::Record(record) => held.push(record),
        Op::Replay(_, _, _, tx) | Op::Discard(_, _, tx) => drop(tx.send(Err(e))),
        Op::Compact(_, tx) | Op::Flush(tx) => drop(tx.send(Err(e))),
    }
}

struct Tables<'t> {
    events: redb::Table<'t, u64, &'static [u8]>,
    ids: redb::Table<'t, u128, (u64, u64, u32, u64)>,
    times: redb::Table<'t, (u64, u128), ()>,
    deliveries: redb::Table<'t, u64, &'static [u8]>,
    due: redb::Table<'t, (&'static str, u64, u64), ()>,
    pending: redb::Table<'t, u64, u64>,
    dead: redb::Table<'t, u64, u64>,
    delivered: redb::Table<'t, (u64, u64), ()>,
    ordered: redb::Table<'t, (&'static str, &'static str, u64), ()>,
    counts: redb::Table<'t, (&'static str, u8), u64>,
    meta: redb::Table<'t, &'static str, u64>,
    retention: Retention,
    count_changes: Vec<(String, State, i64)>,
    next_id: Option<u64>,
    next_event: Option<u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction, retention: Retention) -> Result<Self, StoreError> {
        Ok(Self {
            events: r!(txn.open_table(EVENTS), "open")?,
            ids: r!(txn.open_table(EVENT_IDS), "open")?,
            times: r!(txn.open_table(EVENT_TIMES), "open")?,
            deliveries: r!(txn.open_table(DELIVERIES), "open")?,
            due: r!(txn.open_table(DUE), "open")?,
            pending: r!(txn.open_table(PENDING), "open")?,
            dead: r!(txn.open_table(DEAD), "open")?,
            delivered: r!(txn.open_table(DELIVERED), "open")?,
            ordered: r!(txn.open_table(ORDERED), "open")?,
            counts: r!(txn.open_table(COUNTS), "open")?,
            meta: r!(txn.open_table(META), "open")?,
            retention,
            count_changes: Vec::new(),
            next_id: None,
            next_event: None,
        })
    }

    /// Counts change in memory during a batch and are written once per
    /// batch (see [`Tables::finish`]).
    fn bump(&mut self, route: &str, state: State, delta: i64) {
        match self.count_changes.iter_mut().find(|(r, s, _)| r == route && *s == state) {
            Some((_, _, d)) => *d += delta,
            None => self.count_changes.push((route.to_owned(), state, delta)),
        }
    }

    /// The next delivery id (read once per batch).
    fn next_id(&mut self) -> Result<u64, StoreError> {
        sequence(&self.meta, &mut self.next_id, "next_id")
    }

    /// The next event sequence number (read once per batch).
    fn next_event(&mut self) -> Result<u64, StoreError> {
        sequence(&self.meta, &mut self.next_event, "next_event")
    }

    /// Writes what the batch kept in memory: counts and the next id.
    fn finish(&mut self) -> Result<(), StoreError> {
        for (route, state, delta) in std::mem::take(&mut self.count_changes) {
            if delta == 0 {
                continue;
            }
            let current = r!(self.counts.get((route.as_str(), state.code())), "read")?.map_or(0, |v| v.value());
            let next = current.saturating_add_signed(delta);
            if next == 0 {
                r!(self.counts.remove((route.as_str(), state.code())), "write")?;
            } else {
                r!(self.counts.insert((route.as_str(), state.code()), next), "write")?;
            }
        }
        for (name, next) in [("next_id", self.next_id), ("next_event", self.next_event)] {
            if let Some(next) = next {
                r!(self.meta.insert(name, next), "write")?;
            }
        }
        Ok(())
    }

    /// A delivery and its event's sequence number.
    fn get(&self, id: u64) -> Result<Option<(u64, Delivery)>, StoreError> {
        match r!(self.deliveries.get(id), "read")? {
            Some(record) => decode_delivery(record.value()).map(Some),
            None => Ok(None),
        }
    }

    fn put(&mut self, seq: u64, d: &Delivery) -> Result<(), StoreError> {
        r!(self.deliveries.insert(d.id, encode_delivery(seq, d)?.as_slice()), "write")?;
        Ok(())
    }

    /// Leaves the pending state's indexes. For an ordered route, the next
    /// pending delivery about the same object becomes due.
    fn unpend(&mut self, d: &Delivery, next_attempt_ms: Option<u64>) -> Result<(), StoreError> {
        if let Some(next) = next_attempt_ms {
            r!(self.due.remove((d.route.as_str(), next, d.id)), "write")?;
        }
        r!(self.pending.remove(d.id), "write")?;
        if let Some(object) = &d.ordered_by {
            r!(self.ordered.remove((d.route.as_str(), object.as_str(), d.id)), "write")?;
            if let Some(next) = self.first_ordered(&d.route, object)?
                && let Some((_, waiting)) = self.get(next)?
            {
                r!(self.due.insert((waiting.route.as_str(), waiting.next_attempt_ms.unwrap_or(0), waiting.id), ()), "write")?;
            }
        }
        Ok(())
    }

    /// Enters the pending state's indexes. A delivery of an ordered route
    /// enters the due index only when it is the first pending one about its
    /// object: the ones waiting behind it cost claims nothing.
    fn pend(&mut self, d: &Delivery) -> Result<(), StoreError> {
        r!(self.pending.insert(d.id, d.created_ms), "write")?;
        if let Some(object) = &d.ordered_by {
            r!(self.ordered.insert((d.route.as_str(), object.as_str(), d.id), ()), "write")?;
            if self.first_ordered(&d.route, object)? != Some(d.id) {
                return Ok(());
            }
        }
        r!(self.due.insert((d.route.as_str(), d.next_attempt_ms.unwrap_or(0), d.id), ()), "write")?;
        Ok(())
    }

    fn first_ordered(&self, route: &str, object: &str) -> Result<Option<u64>, StoreError> {
        let mut range = r!(self.ordered.range((route, object, 0)..=(route, object, u64::MAX)), "read")?;
        match range.next() {
            Some(entry) => Ok(Some(r!(entry, "read")?.0.value().2)),
            None => Ok(None),
        }
    }

    /// Whether any delivery of an event is still pending or dead (could
    /// still be sent, so the event's body must stay).
    fn owed(&self, first: u64, count: u32) -> Result<bool, StoreError> {
        for id in first..first.saturating_add(u64::from(count)) {
            if r!(self.pending.get(id), "read")?.is_some() || r!(self.dead.get(id), "read")?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn forget_event(&mut self, key: u128, received: u64, seq: u64) -> Result<(), StoreError> {
        r!(self.events.remove(seq), "write")?;
        r!(self.ids.remove(key), "write")?;
        r!(self.times.remove((received, key)), "write")?;
        Ok(())
    }

    fn delete_delivery(&mut self, d: &Delivery) -> Result<(), StoreError> {
        r!(self.deliveries.remove(d.id), "write")?;
        Ok(())
    }
}

/// The next value of the sequence `name` in `meta`, read from the table
/// once per batch and kept in `cache` until [`Tables::finish`] writes it.
fn sequence(meta: &redb::Table<'_, &'static str, u64>, cache: &mut Option<u64>, name: &str) -> Result<u64, StoreError> {
    let next = match *cache {
        Some(next) => next,
        None => r!(meta.get(name), "read")?.map_or(1, |v| v.value()),
    };
    *cache = Some(next + 1);
    Ok(next)
}

fn apply(t: &mut Tables<'_>, op: Op, replies: &mut Vec<Reply>) -> Result<(), (StoreError, Box<Op>)> {
    match op {
        Op::Accept(event, tx) => match accept(t, &event) {
            Ok(accepted) => replies.push(Reply::Accept(tx, accepted)),
            Err(e) => return Err((e, Box::new(Op::Accept(event, tx)))),
        },
        Op::Record(record) => match self::record(t, &record) {
            Ok(true) => replies.push(Reply::Recorded(record)),
            Ok(false) => {
                tracing::error!(
                    delivery = record.id,
                    "a delivery's record is unreadable; its outcome cannot be kept, and it is not sent again until the receiver restarts"
                );
                // Its delivery stays claimed (not sent again) until the process restarts.
            }
            Err(e) => return Err((e, Box::new(Op::Record(record)))),
        },
        Op::Replay(filter, dry_run, now, tx) => match replay(t, &filter, dry_run, now) {
            Ok(ids) => replies.push(Reply::Ids(tx, ids)),
            Err(e) => return Err((e, Box::new(Op::Replay(filter, dry_run, now, tx)))),
        },
        Op::Discard(filter, dry_run, tx) => match discard(t, &filter, dry_run) {
            Ok(ids) => replies.push(Reply::Ids(tx, ids)),
            Err(e) => return Err((e, Box::new(Op::Discard(filter, dry_run, tx)))),
        },
        Op::Flush(tx) => replies.push(Reply::Count(tx, 0)),
        Op::Compact(now, tx) => match compact(t, now) {
            Ok(n) => replies.push(Reply::Count(tx, n)),
            Err(e) => return Err((e, Box::new(Op::Compact(now, tx)))),
        },
    }
    Ok(())
}

fn accept(t: &mut Tables<'_>, event: &NewEvent) -> Result<Accepted, StoreError> {
    let key = event_key(&event.id);
    if r!(t.ids.get(key), "read")?.is_some() {
        return Ok(Accepted::Duplicate);
    }
    let seq = t.next_event()?;
    r!(t.events.insert(seq, encode_event(&event.id, &event.kind, &event.body).as_slice()), "write")?;
    let count = u32::try_from(event.deliveries.len()).unwrap_or(u32::MAX);
    let mut first = None;
    r!(t.times.insert((event.received_ms, key), ()), "write")?;
    for new in &event.deliveries {
        let delivery = Delivery {
            id: t.next_id()?,
            event_id: event.id.clone(),
            event_type: event.kind.clone(),
            route: new.route.clone(),
            state: State::Pending,
            attempts: 0,
            total_attempts: 0,
            created_ms: event.received_ms,
            round_started_ms: event.received_ms,
            next_attempt_ms: Some(new.due_ms),
            updated_ms: event.received_ms,
            last_error: None,
            ordered_by: new.ordered_by.clone(),
            history: Vec::new(),
            claim: 0,
        };
        first.get_or_insert(delivery.id);
        t.put(seq, &delivery)?;
        t.pend(&delivery)?;
        t.bump(&delivery.route, State::Pending, 1);
    }
    r!(t.ids.insert(key, (event.received_ms, first.unwrap_or(0), count, seq)), "write")?;
    Ok(Accepted::Stored)
}

/// Applies an outcome; `false` when the delivery's record cannot be read
/// (the outcome can then never be kept). A write that fails fails the batch.
fn record(t: &mut Tables<'_>, record: &Record) -> Result<bool, StoreError> {
    let Some(stored) = r!(t.deliveries.get(record.id), "read")? else { return Ok(true) };
    let Ok((seq, mut d)) = decode_delivery(stored.value()) else { return Ok(false) };
    drop(stored);
    if d.state != State::Pending {
        // Discarded or changed by a person meanwhile.
        return Ok(true);
    }
    let (outcome, now) = (record.outcome, record.now);
    let error = record.error.clone();
    let next_before = d.next_attempt_ms;
    d.record(outcome, error, now);
    match d.state {
        State::Pending => {
            if let Some(next) = next_before {
                r!(t.due.remove((d.route.as_str(), next, d.id)), "write")?;
            }
            r!(t.due.insert((d.route.as_str(), d.next_attempt_ms.unwrap_or(now), d.id), ()), "write")?;
        }
        State::Delivered => {
            t.unpend(&d, next_before)?;
            r!(t.delivered.insert((now, d.id), ()), "write")?;
            t.bump(&d.route, State::Pending, -1);
            t.bump(&d.route, State::Delivered, 1);
        }
        State::Dead => {
            t.unpend(&d, next_before)?;
            r!(t.dead.insert(d.id, now), "write")?;
            t.bump(&d.route, State::Pending, -1);
            t.bump(&d.route, State::Dead, 1);
        }
    }
    t.put(seq, &d)?;
    Ok(true)
}

/// Refused before it reaches the writer: a refusal must not fail the
/// batch it would share with other requests.
fn chosen(filter: &Filter) -> Result<(), StoreError> {
    if filter.ids.is_empty() && filter.state.is_none() {
        return Err(StoreError("give ids or a state".into()));
    }
    Ok(())
}

fn selected(t: &Tables<'_>, filter: &Filter) -> Result<Page<(u64, Delivery)>, StoreError> {
    select(&t.deliveries, &t.pending, &t.dead, filter, LIST_SCAN)
}

fn replay(t: &mut Tables<'_>, filter: &Filter, dry_run: bool, now: u64) -> Result<Page<u64>, StoreError> {
    let mut ids = Vec::new();
    let Page { items: found, next } = selected(t, filter)?;
    for (seq, mut d) in found {
        let was = d.state;
        if was == State::Pending {
            continue;
        }
        // A delivered delivery whose event was already forgotten cannot be sent again.
        if r!(t.events.get(seq), "read")?.is_none() {
            continue;
        }
        ids.push(d.id);
        if dry_run {
            continue;
        }
        match was {
            State::Dead => {
                r!(t.dead.remove(d.id), "write")?;
            }
            State::Delivered => {
                r!(t.delivered.remove((d.updated_ms, d.id)), "write")?;
            }
            State::Pending => {}
        }
        t.bump(&d.route, was, -1);
        t.bump(&d.route, State::Pending, 1);
        d.replay(now);
        t.pend(&d)?;
        t.put(seq, &d)?;
    }
    Ok(Page { items: ids, next })
}

fn discard(t: &mut Tables<'_>, filter: &Filter, dry_run: bool) -> Result<Page<u64>, StoreError> {
    let mut ids = Vec::new();
    let Page { items: found, next } = selected(t, filter)?;
    for (_, d) in found {
        if d.state == State::Delivered {
            continue;
        }
        ids.push(d.id);
        if dry_run {
            continue;
        }
        match d.state {
            State::Pending => t.unpend(&d, d.next_attempt_ms)?,
            State::Dead => {
                r!(t.dead.remove(d.id), "write")?;
            }
            State::Delivered => {}
        }
        t.bump(&d.route, d.state, -1);
        t.delete_delivery(&d)?;
    }
    Ok(Page { items: ids, next })
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn compact(t: &mut Tables<'_>, now: u64) -> Result<u64, StoreError> {
    let mut removed = 0;
    let delivered_before = now.saturating_sub(millis(t.retention.delivered));
    let expired: Vec<(u64, u64)> = r!(t.delivered.range(..(delivered_before, 0)), "read")?
        .take(COMPACT_BATCH)
        .map(|e| r!(e.map(|(k, _)| k.value()), "read"))
        .collect::<Result<_, _>>()?;
    for (at, id) in expired {
        r!(t.delivered.remove((at, id)), "write")?;
        if let Some((_, d)) = t.get(id)? {
            t.bump(&d.route, State::Delivered, -1);
            t.delete_delivery(&d)?;
        }
        removed += 1;
    }
    let forget_before = now.saturating_sub(millis(t.retention.dedupe_window));
    let old: Vec<(u64, u128)> = r!(t.times.range(..(forget_before, 0)), "read")?
        .take(COMPACT_BATCH)
        .map(|e| r!(e.map(|(k, _)| k.value()), "read"))
        .collect::<Result<_, _>>()?;
    for (at, key) in old {
        let Some((_, first, count, seq)) = r!(t.ids.get(key), "read")?.map(|v| v.value()) else {
            r!(t.times.remove((at, key)), "write")?;
            continue;
        };
        if t.owed(first, count)? {
            // A delivery could still be sent: the event stays, and is
            // looked at again one window from now.
            r!(t.times.remove((at, key)), "write")?;
            r!(t.times.insert((now, key), ()), "write")?;
            // Counted, so compaction goes on while a full batch was looked at.
            removed += 1;
        } else {
            t.forget_event(key, at, seq)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewDelivery, Store};

    const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

    const RETENTION: Retention =
        Retention { dedupe_window: std::time::Duration::from_secs(1), delivered: std::time::Duration::from_secs(1) };

    fn event(id: &str, routes: &[&str]) -> NewEvent {
        NewEvent {
            id: id.into(),
            kind: "user.delete".into(),
            received_ms: 1_000,
            body: Bytes::from_static(br#"{"event":{"type":"user.delete"}}"#),
            deliveries: routes.iter().map(|r| NewDelivery { route: (*r).into(), due_ms: 1_000, ordered_by: None }).collect(),
        }
    }

    // What both stores must do is tested once for both:
    // receiver/tests/store_contract.rs. Here: what only this one has.

    /// Issue 24, item 8: a listing that reads its whole scan budget without
    /// filling a page says where to go on (it used to answer `next: null`,
    /// hiding every later match).
    #[tokio::test]
    async fn a_scan_that_stops_early_returns_a_cursor_and_paging_finds_every_match() {
        let dir = tempfile::tempdir().unwrap();
        let embedded = Embedded::open(dir.path(), RETENTION, StoreMetrics::default()).unwrap();
        let store = Store::Embedded(embedded);
        for i in 0..30 {
            let route = if i % 10 == 7 { "rare" } else { "common" };
            store.accept(event(&format!("e{i}"), &[route])).await.unwrap();
        }
        let Store::Embedded(embedded) = &store else { unreachable!() };
        let db = embedded.db.load_full().unwrap();
        let txn = db.begin_read().unwrap();
        let (deliveries, pending, dead) =
            (txn.open_table(DELIVERIES).unwrap(), txn.open_table(PENDING).unwrap(), txn.open_table(DEAD).unwrap());
        let mut filter = Filter { route: Some("rare".into()), limit: Some(100), ..Filter::default() };
        let (mut found, mut pages) = (Vec::new(), 0);
        loop {
            pages += 1;
            let page = select(&deliveries, &pending, &dead, &filter, 4).unwrap();
            found.extend(page.items.into_iter().map(|(_, d)| d.event_id));
            match page.next {
                Some(after) => filter.after = Some(after),
                None => break,
            }
        }
        assert_eq!(found, ["e7", "e17", "e27"], "every match, across pages of at most 4 records read");
        assert!(pages >= 8, "{pages} pages");
    }

    #[tokio::test]
    async fn deliveries_waiting_behind_others_cost_a_claim_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Embedded(Embedded::open(dir.path(), RETENTION, StoreMetrics::default()).unwrap());
        // More waiting deliveries about one object than a claim looks at.
        // Accepted together (one group commit), queued in this order.
        let accepts = (0..(CLAIM_SCAN + 5)).map(|i| {
            let mut e = event(&format!("a{i}"), &["a"]);
            e.deliveries[0].ordered_by = Some("busy-user".into());
            store.accept(e)
        });
        for accepted in futures::future::join_all(accepts).await {
            assert_eq!(accepted.unwrap(), Accepted::Stored);
        }
        let mut other = event("b0", &["a"]);
        other.deliveries[0].ordered_by = Some("other-user".into());
        store.accept(other).await.unwrap();
        let claimed = store.claim("a", 10, 2_000, LEASE).await.unwrap();
        let ids: Vec<&str> = claimed.iter().map(|c| c.delivery.event_id.as_str()).collect();
        assert_eq!(ids, ["a0", "b0"], "the first about each object, however many wait");
        store.record(&claimed[0].delivery, Outcome::Dead, Some("410".into())).await.unwrap();
        store.flush().await.unwrap();
        let next = store.claim("a", 10, 2_000, LEASE).await.unwrap();
        assert_eq!(next.iter().map(|c| c.delivery.event_id.as_str()).collect::<Vec<_>>(), ["a1"], "a dead one lets the next go");
    }
}

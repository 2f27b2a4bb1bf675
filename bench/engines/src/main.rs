//! Embedded engines under the write shape of the receiver's durable ack,
//! without HTTP: each engine commits groups of `--batch` accepted events
//! (32 connections give groups of at most 32), each durable before the
//! next, beside a floor that appends the same bodies to one file with one
//! `fdatasync` per group. Then a drain: claim 64 due deliveries from the
//! due index, record them delivered, commit, until none is due.
//!
//! Per accepted event: an id index entry (random key: FusionAuth's event
//! ids are random UUIDs), the event body (~700 bytes), a delivery record,
//! its due, pending and expiry index entries.
//!
//! `bench/engines.sh [events] [batch]`

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use fjall::Readable;
use rand::RngCore;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const ROUTE: &str = "forward";
const CLAIM: usize = 64;

fn body() -> Vec<u8> {
    let mut b = br#"{"event":{"type":"user.create.complete","user":{"email":"#.to_vec();
    b.resize(700, b'x');
    b
}

fn delivery(id: u64) -> Vec<u8> {
    format!(
        r#"{{"id":{id},"eventId":"0f0e3c0e-1c6d-4b3a-9d3e-9a3b0e0d0c0b","eventType":"user.create.complete","route":"{ROUTE}","state":"pending","attempts":0,"totalAttempts":0,"createdMs":1700000000000,"nextAttemptMs":1700000000000,"history":[]}}"#
    )
    .into_bytes()
}

fn random_key(rng: &mut impl RngCore) -> u128 {
    (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())
}

fn floor(dir: &Path, n: usize, batch: usize) -> f64 {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("floor")).unwrap();
    let b = body();
    let t = Instant::now();
    for _ in 0..n / batch {
        for _ in 0..batch {
            f.write_all(&b).unwrap();
        }
        f.sync_data().unwrap();
    }
    (n / batch * batch) as f64 / t.elapsed().as_secs_f64()
}

const IDS: TableDefinition<u128, u64> = TableDefinition::new("ids");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const EVENTS_BY_ID: TableDefinition<u128, &[u8]> = TableDefinition::new("events_by_id");
const DELIVERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("deliveries");
const DUE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("due");
const PENDING: TableDefinition<u64, u64> = TableDefinition::new("pending");
const TIMES: TableDefinition<(u64, u128), ()> = TableDefinition::new("times");
const DELIVERED: TableDefinition<(u64, u64), ()> = TableDefinition::new("delivered");

/// `by_id`: the event body keyed by event id (the receiver's first layout)
/// instead of by arrival (its layout now). `ids`: with the id index (without
/// it, no deduplication: what redb costs with sequential keys alone).
fn redb_accept(dir: &Path, n: usize, batch: usize, by_id: bool, ids_too: bool) -> f64 {
    let db = redb::Builder::new().set_cache_size(16 << 20).create(dir.join("store.redb")).unwrap();
    let b = body();
    let mut rng = rand::rng();
    let mut id = 0u64;
    let t = Instant::now();
    for _ in 0..n / batch {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        {
            let mut ids = txn.open_table(IDS).unwrap();
            let mut events = txn.open_table(EVENTS).unwrap();
            let mut events_by_id = txn.open_table(EVENTS_BY_ID).unwrap();
            let mut deliveries = txn.open_table(DELIVERIES).unwrap();
            let mut due = txn.open_table(DUE).unwrap();
            let mut pending = txn.open_table(PENDING).unwrap();
            let mut times = txn.open_table(TIMES).unwrap();
            for _ in 0..batch {
                id += 1;
                let key = random_key(&mut rng);
                if ids_too {
                    if ids.get(key).unwrap().is_some() {
                        continue;
                    }
                    ids.insert(key, id).unwrap();
                }
                if by_id {
                    events_by_id.insert(key, b.as_slice()).unwrap();
                } else {
                    events.insert(id, b.as_slice()).unwrap();
                }
                times.insert((id, key), ()).unwrap();
                deliveries.insert(id, delivery(id).as_slice()).unwrap();
                due.insert((ROUTE, id, id), ()).unwrap();
                pending.insert(id, id).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    (n / batch * batch) as f64 / t.elapsed().as_secs_f64()
}

fn redb_drain(dir: &Path) -> (usize, f64) {
    let db = redb::Builder::new().set_cache_size(16 << 20).create(dir.join("store.redb")).unwrap();
    let t = Instant::now();
    let mut done = 0;
    loop {
        let claimed: Vec<(u64, Vec<u8>)> = {
            let r = db.begin_read().unwrap();
            let due = r.open_table(DUE).unwrap();
            let deliveries = r.open_table(DELIVERIES).unwrap();
            due.range((ROUTE, 0, 0)..=(ROUTE, u64::MAX, u64::MAX))
                .unwrap()
                .take(CLAIM)
                .map(|e| {
                    let id = e.unwrap().0.value().2;
                    (id, deliveries.get(id).unwrap().unwrap().value().to_vec())
                })
                .collect()
        };
        if claimed.is_empty() {
            break;
        }
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        {
            let mut due = txn.open_table(DUE).unwrap();
            let mut pending = txn.open_table(PENDING).unwrap();
            let mut deliveries = txn.open_table(DELIVERIES).unwrap();
            let mut delivered = txn.open_table(DELIVERED).unwrap();
            for (id, mut record) in claimed {
                due.remove((ROUTE, id, id)).unwrap();
                pending.remove(id).unwrap();
                record.extend_from_slice(b" delivered");
                deliveries.insert(id, record.as_slice()).unwrap();
                delivered.insert((id, id), ()).unwrap();
                done += 1;
            }
        }
        txn.commit().unwrap();
    }
    (done, done as f64 / t.elapsed().as_secs_f64())
}

struct Fjall {
    db: fjall::Database,
    ids: fjall::Keyspace,
    events: fjall::Keyspace,
    deliveries: fjall::Keyspace,
    due: fjall::Keyspace,
    pending: fjall::Keyspace,
    times: fjall::Keyspace,
    delivered: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir.join("fjall")).cache_size(16 << 20).open().unwrap();
        let ks = |name: &str| db.keyspace(name, fjall::KeyspaceCreateOptions::default).unwrap();
        Self {
            ids: ks("ids"),
            events: ks("events"),
            deliveries: ks("deliveries"),
            due: ks("due"),
            pending: ks("pending"),
            times: ks("times"),
            delivered: ks("delivered"),
            db,
        }
    }
}

fn due_key(id: u64) -> Vec<u8> {
    let mut k = format!("{ROUTE}\0").into_bytes();
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn fjall_accept(dir: &Path, n: usize, batch: usize) -> f64 {
    let f = Fjall::open(dir);
    let b = body();
    let mut rng = rand::rng();
    let mut id = 0u64;
    let t = Instant::now();
    for _ in 0..n / batch {
        let mut w = f.db.batch().durability(Some(fjall::PersistMode::SyncData));
        for _ in 0..batch {
            id += 1;
            let key = random_key(&mut rng).to_be_bytes();
            if f.ids.get(key).unwrap().is_some() {
                continue;
            }
            w.insert(&f.ids, key, id.to_be_bytes());
            w.insert(&f.events, id.to_be_bytes(), b.as_slice());
            let mut time_key = id.to_be_bytes().to_vec();
            time_key.extend_from_slice(&key);
            w.insert(&f.times, time_key, []);
            w.insert(&f.deliveries, id.to_be_bytes(), delivery(id));
            w.insert(&f.due, due_key(id), []);
            w.insert(&f.pending, id.to_be_bytes(), id.to_be_bytes());
        }
        w.commit().unwrap();
    }
    (n / batch * batch) as f64 / t.elapsed().as_secs_f64()
}

fn fjall_drain(dir: &Path, limit: std::time::Duration) -> (usize, f64) {
    let f = Fjall::open(dir);
    let t = Instant::now();
    let mut done = 0;
    while t.elapsed() < limit {
        let snapshot = f.db.snapshot();
        let claimed: Vec<(Vec<u8>, u64, Vec<u8>)> = snapshot
            .prefix(&f.due, format!("{ROUTE}\0"))
            .take(CLAIM)
            .map(|g| {
                let k = g.key().unwrap().to_vec();
                let id = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap());
                let record = snapshot.get(&f.deliveries, id.to_be_bytes()).unwrap().unwrap().to_vec();
                (k, id, record)
            })
            .collect();
        if claimed.is_empty() {
            break;
        }
        let mut w = f.db.batch().durability(Some(fjall::PersistMode::SyncData));
        for (k, id, mut record) in claimed {
            w.remove(&f.due, k);
            w.remove(&f.pending, id.to_be_bytes());
            record.extend_from_slice(b" delivered");
            w.insert(&f.deliveries, id.to_be_bytes(), record);
            let mut delivered_key = id.to_be_bytes().to_vec();
            delivered_key.extend_from_slice(&id.to_be_bytes());
            w.insert(&f.delivered, delivered_key, []);
            done += 1;
        }
        w.commit().unwrap();
    }
    (done, done as f64 / t.elapsed().as_secs_f64())
}

fn sqlite_accept(dir: &Path, n: usize, batch: usize) -> f64 {
    let mut c = rusqlite::Connection::open(dir.join("store.sqlite")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE events (seq INTEGER PRIMARY KEY, key BLOB UNIQUE, body BLOB, received INTEGER);
         CREATE INDEX events_times ON events(received);
         CREATE TABLE deliveries (id INTEGER PRIMARY KEY, event INTEGER, route TEXT, state INTEGER, next INTEGER, created INTEGER, record BLOB);
         CREATE INDEX due ON deliveries(route, next) WHERE state = 0;",
    )
    .unwrap();
    let b = body();
    let mut rng = rand::rng();
    let mut id = 0i64;
    let t = Instant::now();
    for _ in 0..n / batch {
        let tx = c.transaction().unwrap();
        {
            let mut event = tx
                .prepare_cached("INSERT INTO events (seq, key, body, received) VALUES (?1, ?2, ?3, ?1) ON CONFLICT(key) DO NOTHING")
                .unwrap();
            let mut d = tx.prepare_cached("INSERT INTO deliveries VALUES (?1, ?1, ?2, 0, ?1, ?1, ?3)").unwrap();
            for _ in 0..batch {
                id += 1;
                let key = random_key(&mut rng).to_be_bytes();
                event.execute(rusqlite::params![id, key.as_slice(), b.as_slice()]).unwrap();
                d.execute(rusqlite::params![id, ROUTE, delivery(id as u64)]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    (n / batch * batch) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(300_000);
    let batch: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let root = std::env::var_os("ENGINES_DIR").map_or_else(|| std::env::current_dir().unwrap().join("target/engines-data"), Into::into);
    let fresh = |name: &str| {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    println!("{n} accepted events in groups of {batch}, durable per group; the data under {}\n", root.display());
    let f = floor(&fresh("floor"), n, batch);
    println!("| engine | accepted events/s | × floor | drain deliveries/s |");
    println!("|---|---|---|---|");
    println!("| floor: append + fdatasync per group | {f:.0} | 1.00 | - |");
    let row = |name: &str, v: f64, drain: &str| println!("| {name} | {v:.0} | {:.2} | {drain} |", v / f);
    let dir = fresh("redb-by-id");
    row("redb 4, body keyed by event id (the first layout)", redb_accept(&dir, n, batch, true, true), "-");
    let dir = fresh("redb");
    let accept = redb_accept(&dir, n, batch, false, true);
    let (done, rate) = redb_drain(&dir);
    assert_eq!(done, n / batch * batch, "redb drained everything");
    row("redb 4, body keyed by arrival (the receiver's layout)", accept, &format!("{rate:.0}"));
    let dir = fresh("redb-no-ids");
    row("redb 4, the same without the id index (sequential keys only)", redb_accept(&dir, n, batch, false, false), "-");
    let dir = fresh("fjall");
    let accept = fjall_accept(&dir, n, batch);
    let (done, rate) = fjall_drain(&dir, std::time::Duration::from_secs(20));
    row("fjall 3 (LSM: journal + memtables)", accept, &format!("{rate:.0} ({done} in the 20 s allowed)"));
    row("SQLite 3, WAL, synchronous=FULL (C, for reference)", sqlite_accept(&fresh("sqlite"), n, batch), "-");
    let again = floor(&fresh("floor"), n, batch);
    println!("\nfloor again at the end: {again:.0} events/s");
    let _ = std::fs::remove_dir_all(&root);
}

//! Deduplication by `event.id`.
//!
//! FusionAuth reuses the event id when it retries a delivery (FACTS.md §e),
//! and retries back-to-back, possibly while the first delivery is still
//! running here. This store makes sure that:
//! - an id handled successfully within the window answers 200 and runs nothing;
//! - a second delivery of an id that is still running waits for the first
//!   one's outcome instead of running the actions again;
//! - a failed event is not remembered as handled, but the routes that did
//!   succeed are, so a retry runs only the ones that failed.
//!
//! Memory is bounded by `max_entries`; the oldest finished ids go first.
//! No I/O; time is passed in so tests control it.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Event-id deduplication settings.
#[derive(Debug, Clone, Copy)]
pub struct DedupeConfig {
    /// How long a handled event id is remembered. Zero: only concurrent
    /// duplicates are caught.
    pub window: Duration,
    /// Upper bound on remembered ids; the oldest are forgotten first.
    pub max_entries: usize,
}

/// Ids are stored as 16 bytes: FusionAuth ids are UUIDs; anything else is
/// reduced to the first 16 bytes of its SHA-256 (a collision needs about
/// 2^64 ids).
pub type Key = u128;

/// The 16-byte key of an event id (also the stores' key).
pub fn event_key(id: &str) -> Key {
    match uuid::Uuid::try_parse(id) {
        Ok(uuid) => uuid.as_u128(),
        Err(_) => {
            let digest = Sha256::digest(id.as_bytes());
            let mut first = [0u8; 16];
            first.copy_from_slice(&digest[..16]);
            u128::from_be_bytes(first)
        }
    }
}

/// Routes are numbered 0..64 (the config refuses more), so a set of routes is a bit mask.
pub const MAX_ROUTES: usize = 64;

fn mask(routes: &[usize]) -> u64 {
    routes.iter().filter(|&&r| r < MAX_ROUTES).fold(0, |m, &r| m | (1 << r))
}

enum State {
    /// A delivery is running it. The sender exists once a duplicate waits
    /// (most events never see one, and then cost no channel); it is dropped
    /// when the delivery finishes, which wakes every waiting duplicate.
    Running(Option<watch::Sender<()>>),
    /// Handled: later deliveries are duplicates.
    Handled,
    /// Failed; the `completed` routes succeeded and are not run again.
    Failed,
}

struct Entry {
    state: State,
    /// Milliseconds since the store was created, when it finished.
    at: u64,
    /// Routes that succeeded, as a bit mask.
    completed: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Finished entries in the order they finished, for expiry and the bound.
    order: VecDeque<(u64, Key)>,
}

/// The deduplication store.
pub struct Dedupe {
    inner: Mutex<Inner>,
    window_ms: u64,
    max_entries: usize,
    epoch: Instant,
}

/// What to do with an event.
pub enum Claim<'a> {
    /// Run it, skipping the routes [`Ticket::already_done`] names.
    Run(Ticket<'a>),
    /// Handled within the window: answer 200, run nothing.
    Duplicate,
    /// Another delivery of the same id is running; wait on this, then claim again.
    Running(watch::Receiver<()>),
}

/// The right to run an event. Finish it with [`Ticket::finish`]; dropping it
/// unfinished (a cancelled request) counts as a failure.
pub struct Ticket<'a> {
    store: &'a Dedupe,
    key: Option<Key>,
    completed: u64,
    finished: bool,
}

impl Dedupe {
    /// An empty store.
    pub fn new(config: DedupeConfig) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            window_ms: u64::try_from(config.window.as_millis()).unwrap_or(u64::MAX),
            max_entries: config.max_entries,
            epoch: Instant::now(),
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; recover anyway.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims an event id. `None` (an event without id) cannot be
    /// deduplicated: it is always run.
    pub fn claim(&self, id: Option<&str>) -> Claim<'_> {
        self.claim_at(id, Instant::now())
    }

    /// [`Dedupe::claim`] at a given time.
    pub fn claim_at(&self, id: Option<&str>, now: Instant) -> Claim<'_> {
        let Some(id) = id else {
            return Claim::Run(Ticket { store: self, key: None, completed: 0, finished: false });
        };
        let key = event_key(id);
        let now = self.millis(now);
        let mut inner = self.lock();
        // One hash lookup per claim: the map is large and mostly out of cache.
        let running = Entry { state: State::Running(None), at: now, completed: 0 };
        let completed = match inner.entries.entry(key) {
            Slot::Vacant(slot) => {
                slot.insert(running);
                0
            }
            Slot::Occupied(mut slot) => {
                let entry = slot.get_mut();
                let completed = match &mut entry.state {
                    State::Running(waker) => return Claim::Running(waker.get_or_insert_with(|| watch::channel(()).0).subscribe()),
                    _ if now.saturating_sub(entry.at) >= self.window_ms => 0,
                    State::Handled => return Claim::Duplicate,
                    State::Failed => entry.completed,
                };
                *entry = Entry { completed, ..running };
                completed
            }
        };
        Claim::Run(Ticket { store: self, key: Some(key), completed, finished: false })
    }

    fn finish(&self, key: Key, state: State, completed: u64, now: Instant) {
        let at = self.millis(now);
        let mut inner = self.lock();
        inner.entries.insert(key, Entry { state, at, completed });
        inner.order.push_back((at, key));
        self.evict(&mut inner, at);
    }

    fn evict(&self, inner: &mut Inner, now: u64) {
        while let Some(&(at, key)) = inner.order.front() {
            let expired = now.saturating_sub(at) >= self.window_ms;
            if !expired && inner.entries.len() <= self.max_entries {
                break;
            }
            inner.order.pop_front();
            // The queue may hold stale positions of ids that ran again since;
            // only remove the entry this position describes.
            if let Slot::Occupied(slot) = inner.entries.entry(key)
                && !matches!(slot.get().state, State::Running(_))
                && slot.get().at == at
            {
                slot.remove();
            }
        }
    }

    /// Number of remembered ids (running ones included).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ticket<'_> {
    /// Whether `route` succeeded in an earlier delivery of this event.
    pub fn already_done(&self, route: usize) -> bool {
        route < MAX_ROUTES && self.completed & (1 << route) != 0
    }

    /// Records the outcome: `succeeded` lists the routes that succeeded in
    /// this run; `all_ok` says whether the event as a whole was handled.
    pub fn finish(mut self, all_ok: bool, succeeded: &[usize]) {
        self.finish_at(all_ok, succeeded, Instant::now());
    }

    /// [`Ticket::finish`] at a given time.
    pub fn finish_at(&mut self, all_ok: bool, succeeded: &[usize], now: Instant) {
        self.finished = true;
        let Some(key) = self.key else { return };
        let completed = self.completed | mask(succeeded);
        let state = if all_ok { State::Handled } else { State::Failed };
        self.store.finish(key, state, completed, now);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish_at(false, &[], Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ID: &str = "e502168a-b469-45d9-a079-fd45f83e0406";

    fn store(window_secs: u64, max: usize) -> Dedupe {
        Dedupe::new(DedupeConfig { window: Duration::from_secs(window_secs), max_entries: max })
    }

    fn run(claim: Claim<'_>) -> Ticket<'_> {
        match claim {
            Claim::Run(t) => t,
            Claim::Duplicate => panic!("duplicate"),
            Claim::Running(_) => panic!("running"),
        }
    }

    #[test]
    fn handled_ids_are_duplicates_within_the_window_only() {
        let d = store(60, 100);
        let t0 = Instant::now();
        run(d.claim_at(Some(ID), t0)).finish_at(true, &[0], t0);
        assert!(matches!(d.claim_at(Some(ID), t0 + Duration::from_secs(59)), Claim::Duplicate));
        let t = run(d.claim_at(Some(ID), t0 + Duration::from_secs(61)));
        assert!(!t.already_done(0));
    }

    #[test]
    fn failed_events_are_not_remembered_as_handled_but_their_successful_routes_are() {
        let d = store(60, 100);
        let t0 = Instant::now();
        run(d.claim_at(Some(ID), t0)).finish_at(false, &[0, 2], t0);
        let mut retry = run(d.claim_at(Some(ID), t0 + Duration::from_secs(1)));
        assert!(retry.already_done(0) && retry.already_done(2) && !retry.already_done(1));
        retry.finish_at(true, &[1], t0 + Duration::from_secs(1));
        assert!(matches!(d.claim_at(Some(ID), t0 + Duration::from_secs(2)), Claim::Duplicate));
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_waits_for_the_first_delivery() {
        let d = store(60, 100);
        let first = run(d.claim(Some(ID)));
        let Claim::Running(mut rx) = d.claim(Some(ID)) else { panic!("expected running") };
        first.finish(true, &[0]);
        assert!(rx.changed().await.is_err(), "woken when the first delivery finished");
        assert!(matches!(d.claim(Some(ID)), Claim::Duplicate));
    }

    #[test]
    fn a_dropped_ticket_counts_as_failed() {
        let d = store(60, 100);
        drop(run(d.claim(Some(ID))));
        assert!(matches!(d.claim(Some(ID)), Claim::Run(_)));
    }

    #[test]
    fn non_uuid_ids_are_deduplicated_too() {
        let d = store(60, 100);
        run(d.claim(Some("not-a-uuid"))).finish(true, &[]);
        assert!(matches!(d.claim(Some("not-a-uuid")), Claim::Duplicate));
        assert!(matches!(d.claim(Some("not-a-uuid-2")), Claim::Run(_)));
    }

    #[test]
    fn events_without_id_always_run_and_are_not_stored() {
        let d = store(60, 100);
        run(d.claim(None)).finish(true, &[]);
        run(d.claim(None)).finish(true, &[]);
        assert!(d.is_empty());
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let d = store(3600, 3);
        let t0 = Instant::now();
        for i in 0..5u32 {
            let id = format!("id-{i}");
            run(d.claim_at(Some(&id), t0)).finish_at(true, &[], t0 + Duration::from_millis(i.into()));
        }
        assert_eq!(d.len(), 3);
        assert!(matches!(d.claim_at(Some("id-4"), t0), Claim::Duplicate));
        assert!(matches!(d.claim_at(Some("id-0"), t0), Claim::Run(_)));
    }

    #[test]
    fn expired_entries_are_dropped() {
        let d = store(10, 100);
        let t0 = Instant::now();
        run(d.claim_at(Some("a"), t0)).finish_at(true, &[], t0);
        run(d.claim_at(Some("b"), t0 + Duration::from_secs(11))).finish_at(true, &[], t0 + Duration::from_secs(11));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn zero_window_still_catches_concurrent_duplicates() {
        let d = store(0, 100);
        let first = run(d.claim(Some(ID)));
        assert!(matches!(d.claim(Some(ID)), Claim::Running(_)));
        first.finish(true, &[]);
        assert!(matches!(d.claim(Some(ID)), Claim::Run(_)));
    }
}

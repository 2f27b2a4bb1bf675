//! The workers. Each durable route has a loop that claims due deliveries up
//! to its `concurrency`, runs each in its own task, and records the
//! outcome. A loop sleeps until a commit of its route wakes it, a delivery
//! finishes, or `delivery.pollIntervalMs` passes (retries come due, or
//! another replica committed). Memory is bounded by the routes'
//! concurrency, never by the backlog: the backlog stays in the store.
//!
//! While the store cannot commit (readiness says so), nothing is claimed:
//! an outcome that could not be recorded must not make its delivery due
//! again, and a service is not called for deliveries whose outcome could
//! not be kept. Claims resume with the first commit that succeeds (the
//! housekeeping probe tries every few seconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

use fusionhook_fusionauth::EventRequest;
use tokio::sync::{Semaphore, watch};

use crate::app::Shared;
use crate::store::{Claimed, Outcome, Store, now_ms};

/// How often the store is probed with an empty commit (readiness), its
/// figures read for the metrics, and expired records compacted.
const HOUSEKEEPING: Duration = Duration::from_secs(5);
/// A probe not answered within this counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const COMPACT_EVERY: u32 = 12;
/// A claim's lease: twice the route's timeout plus this, which covers an
/// outcome's wait for its group commit and a reconnect (PostgreSQL's
/// statement and connect timeouts). A claim token keeps a late outcome from
/// overwriting a newer claim's, but a delivery whose lease ran out may run
/// twice.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Compaction passes at most per round (each removes up to 10,000 records of each kind).
const COMPACT_PASSES: usize = 100;

/// The running workers.
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    in_flight: Arc<AtomicUsize>,
}

impl Dispatcher {
    /// Starts a loop per durable route, and housekeeping (figures for the
    /// metrics, compaction). Nothing to do without a store.
    pub fn start(state: &Arc<Shared>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let in_flight = Arc::new(AtomicUsize::new(0));
        if let Some(store) = &state.store {
            for (i, route) in state.routes.iter().enumerate() {
                if route.ack == crate::route::Ack::Durable {
                    tokio::spawn(route_loop(state.clone(), store.clone(), i, stopped.clone(), in_flight.clone()));
                }
            }
            tokio::spawn(housekeeping(state.clone(), store.clone(), stopped));
        }
        Self { stop, in_flight }
    }

    /// Stops claiming, then waits (at most `timeout`) for deliveries in
    /// flight to finish. Whatever is cut off stays pending and is delivered
    /// again after the restart (at least once).
    pub async fn stop(&self, timeout: Duration) {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + timeout;
        while self.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Starts an attempt at a claimed delivery in its own task, holding a
/// slot of the route; a panic records a retry in a minute rather than
/// leaving the delivery claimed.
fn start_attempt(
    state: &Arc<Shared>,
    store: &Arc<Store>,
    index: usize,
    delivery: crate::store::Claimed,
    permit: tokio::sync::OwnedSemaphorePermit,
    in_flight: &Arc<AtomicUsize>,
) {
    in_flight.fetch_add(1, Ordering::SeqCst);
    let (state, store, in_flight) = (state.clone(), store.clone(), in_flight.clone());
    tokio::spawn(async move {
        let claimed_delivery = delivery.delivery.clone();
        let id = claimed_delivery.id;
        let attempt = std::panic::AssertUnwindSafe(deliver(&state, &store, index, delivery));
        if futures::FutureExt::catch_unwind(attempt).await.is_err() {
            tracing::error!(delivery = id, "a delivery attempt panicked; it will be tried again");
            let _ = store.record(&claimed_delivery, Outcome::Retry { at_ms: now_ms() + 60_000 }, Some("internal error".into())).await;
        }
        drop(permit);
        in_flight.fetch_sub(1, Ordering::SeqCst);
        state.wake[index].notify_one();
    });
}

async fn route_loop(state: Arc<Shared>, store: Arc<Store>, index: usize, mut stop: watch::Receiver<bool>, in_flight: Arc<AtomicUsize>) {
    let route = &state.routes[index];
    let slots = Arc::new(Semaphore::new(route.durable.concurrency));
    // With PostgreSQL, another replica may take a delivery again once its
    // lease runs out: comfortably longer than an attempt can take.
    let lease = route.action.timeout().unwrap_or_default() * 2 + LEASE_MARGIN;
    loop {
        if *stop.borrow() {
            return;
        }
        let free = slots.available_permits();
        let mut more = false;
        if free > 0 && !state.store_health.failing() {
            // Counted as in flight from before the claim, so a stop cannot
            // see zero between a claim and the tasks it starts.
            in_flight.fetch_add(1, Ordering::SeqCst);
            let claimed = store.claim(&route.name, free, now_ms(), lease).await;
            if *stop.borrow() {
                // Stopping: what was just claimed stays pending in the store.
                in_flight.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            match claimed {
                Ok(claimed) => {
                    more = claimed.len() == free;
                    for delivery in claimed {
                        // Free permits were counted above and only this loop takes them.
                        let Ok(permit) = slots.clone().try_acquire_owned() else { break };
                        start_attempt(&state, &store, index, delivery, permit, &in_flight);
                    }
                }
                Err(e) => {
                    tracing::error!(route = %route.name, error = %e, "cannot read due deliveries");
                }
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        if more {
            continue;
        }
        tokio::select! {
            () = state.wake[index].notified() => {}
            () = tokio::time::sleep(state.delivery.poll_interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One attempt of one delivery.
async fn deliver(state: &Shared, store: &Store, index: usize, claimed: Claimed) {
    let route = &state.routes[index];
    let delivery = &claimed.delivery;
    // One span per attempt, in the trace of the request that stored the
    // event (while this process remembers it).
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET, "delivery.attempt", route = %route.name,
        event.type = crate::telemetry::bounded(&delivery.event_type),
        event.id = %delivery.event_id, delivery.id = delivery.id, attempt = delivery.total_attempts.saturating_add(1),
        outcome = tracing::field::Empty, otel.status_code = tracing::field::Empty,
    );
    state.traces.parent(&span, &delivery.event_id);
    attempt(state, store, route, claimed).instrument(span).await;
}

async fn attempt(state: &Shared, store: &Store, route: &crate::route::Route, claimed: Claimed) {
    let delivery = &claimed.delivery;
    let (outcome, error) = match EventRequest::parse(claimed.body) {
        Err(e) => (Outcome::Dead, Some(format!("the stored event cannot be read: {e}"))),
        Ok(request) => {
            let key = super::idempotency_key(&delivery.event_id, &route.name);
            let started = Instant::now();
            let result = route.action.run(&state.actions, &route.name, &request, &key).await;
            state.metrics.action(&route.name, route.action.kind(), result.is_ok(), started.elapsed());
            match result {
                Ok(()) => (Outcome::Delivered, None),
                Err(e) => {
                    let attempts = delivery.attempts.saturating_add(1);
                    let verdict = route.durable.retry.next(e.failure(), attempts, delivery.round_started_ms, now_ms(), rand::random());
                    tracing::warn!(
                        route = %route.name, r#type = %delivery.event_type, id = %delivery.event_id, delivery = delivery.id,
                        attempts, error = %e, dead = verdict.is_err(), "delivery attempt failed"
                    );
                    match verdict {
                        Ok(at_ms) => (Outcome::Retry { at_ms }, Some(e.public())),
                        Err(why) => (Outcome::Dead, Some(format!("{}; {why}", e.public()))),
                    }
                }
            }
        }
    };
    state.metrics.attempt(&route.name, outcome.name());
    let span = tracing::Span::current();
    if !span.is_none() {
        span.record("outcome", outcome.name());
        if outcome != Outcome::Delivered {
            span.record("otel.status_code", "error");
        }
    }
    if let Err(e) = store.record(delivery, outcome, error).await {
        tracing::error!(delivery = delivery.id, error = %e, "cannot record a delivery outcome; it will be tried again");
    }
}

async fn housekeeping(state: Arc<Shared>, store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    let names: Vec<String> = state.routes.iter().filter(|r| r.ack == crate::route::Ack::Durable).map(|r| r.name.clone()).collect();
    let mut round = 0u32;
    loop {
        // A commit of nothing: an fsync (embedded), a transaction (PostgreSQL,
        // reconnecting if need be), behind every write queued before it.
        let probe = tokio::time::timeout(PROBE_TIMEOUT, store.flush()).await;
        state
            .store_health
            .record(&probe.unwrap_or_else(|_| {
                Err(crate::store::StoreError(format!("a commit did not finish within {} s", PROBE_TIMEOUT.as_secs())))
            }));
        match store.stats(now_ms()).await {
            Ok(stats) => {
                for route in &names {
                    let counts = stats.routes.get(route).cloned().unwrap_or_default();
                    state.metrics.route_deliveries(route, counts.pending, counts.dead, counts.delivered);
                }
                state.metrics.oldest_pending(stats.oldest_pending_seconds);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the store's figures"),
        }
        if round.is_multiple_of(COMPACT_EVERY) {
            // A pass removes a bounded number of records; passes repeat
            // while there is more, so compaction keeps up with any rate.
            for _ in 0..COMPACT_PASSES {
                match store.compact(now_ms()).await {
                    Ok(0) => break,
                    Ok(removed) => tracing::debug!(removed, "store compacted"),
                    Err(e) => {
                        tracing::warn!(error = %e, "store compaction failed");
                        break;
                    }
                }
            }
        }
        round = round.wrapping_add(1);
        tokio::select! {
            () = tokio::time::sleep(HOUSEKEEPING) => {}
            _ = stop.changed() => return,
        }
    }
}

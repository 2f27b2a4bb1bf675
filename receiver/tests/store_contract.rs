//! One suite, two stores: the same cases run against the embedded store
//! (redb in a temporary directory) and against a real PostgreSQL (a
//! throwaway cluster per case), so the two cannot drift apart on what the
//! delivery worker and the admin API rely on: deduplication, claims and
//! leases, outcomes and history, replay and discard with every filter,
//! per-object ordering, compaction and retention.

#![allow(clippy::unwrap_used, missing_docs)]

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use fusionhook_receiver::metrics::StoreMetrics;
use fusionhook_receiver::secret::{Secret, SecretSource};
use fusionhook_receiver::store::{Accepted, Filter, NewDelivery, NewEvent, Outcome, Retention, State, Store};
use fusionhook_tests::postgres::Postgres;

const LEASE: Duration = Duration::from_secs(60);
/// Far in the future (year 2286), for "whatever is due".
const FAR: u64 = 10_000_000_000_000;
const RETENTION: Retention = Retention { dedupe_window: Duration::from_secs(1), delivered: Duration::from_secs(1) };

fn event(id: &str, routes: &[&str]) -> NewEvent {
    NewEvent {
        id: id.into(),
        kind: "user.delete".into(),
        received_ms: 1_000,
        body: Bytes::from_static(br#"{"event":{"type":"user.delete"}}"#),
        deliveries: routes.iter().map(|r| NewDelivery { route: (*r).into(), due_ms: 1_000, ordered_by: None }).collect(),
    }
}

fn about(id: &str, object: &str) -> NewEvent {
    let mut e = event(id, &["a"]);
    e.deliveries[0].ordered_by = Some(object.into());
    e
}

/// Runs `case` on a fresh embedded store, then on a fresh PostgreSQL one.
async fn on_both<F, Fut>(case: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let embedded = fusionhook_receiver::store::embedded::Embedded::open(dir.path(), RETENTION, StoreMetrics::default()).unwrap();
    case(Store::Embedded(embedded)).await;
    let pg = Postgres::start();
    let url = Secret::load(SecretSource::Inline(pg.url())).unwrap();
    let postgres = fusionhook_receiver::store::postgres::Postgres::open(url, RETENTION, StoreMetrics::default()).await.unwrap();
    case(Store::Postgres(postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_stored_once_claimed_once_and_its_outcomes_kept_with_their_history() {
    on_both(|store| async move {
        let kind = store.kind();
        assert_eq!(store.accept(event("e1", &["a", "b"])).await.unwrap(), Accepted::Stored, "{kind}");
        assert_eq!(store.accept(event("e1", &["a", "b"])).await.unwrap(), Accepted::Duplicate, "{kind}");
        assert!(store.seen("e1").await.unwrap(), "{kind}");
        assert!(!store.seen("e2").await.unwrap(), "{kind}");
        let claimed = store.claim("a", 10, 2_000, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 1, "{kind}");
        assert_eq!(claimed[0].body, Bytes::from_static(br#"{"event":{"type":"user.delete"}}"#), "{kind}: the body as received");
        assert!(store.claim("a", 10, 2_000, LEASE).await.unwrap().is_empty(), "{kind}: claimed once while its lease runs");
        let id = claimed[0].delivery.id;
        store.record(&claimed[0].delivery, Outcome::Dead, Some("answered 400".into())).await.unwrap();
        store.flush().await.unwrap();
        let dead = store.list(&Filter { state: Some(State::Dead), ..Filter::default() }).await.unwrap();
        assert_eq!(dead.items.iter().map(|d| d.id).collect::<Vec<_>>(), [id], "{kind}");
        assert_eq!(dead.items[0].last_error.as_deref().map(|e| e.contains("answered 400")), Some(true), "{kind}");
        let replayed = store.replay(&Filter { state: Some(State::Dead), ..Filter::default() }, false).await.unwrap();
        assert_eq!(replayed.items, [id], "{kind}");
        let stats = store.stats(2_000).await.unwrap();
        assert_eq!((stats.pending, stats.dead, stats.delivered), (2, 0, 0), "{kind}");
        assert_eq!(stats.routes["a"].pending, 1, "{kind}");
        let again = store.claim("a", 10, FAR, LEASE).await.unwrap();
        assert_eq!(again.len(), 1, "{kind}: a replayed delivery is due at once");
        store.record(&again[0].delivery, Outcome::Delivered, None).await.unwrap();
        store.flush().await.unwrap();
        let view = store.event("e1").await.unwrap().unwrap();
        let a = view.deliveries.iter().find(|d| d.route == "a").unwrap();
        assert_eq!((a.state, a.total_attempts, a.history.len()), (State::Delivered, 2, 2), "{kind}");
        assert_eq!(a.history[0].outcome, "dead", "{kind}");
        assert!(store.event("nope").await.unwrap().is_none(), "{kind}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_due_at_its_time_and_a_lease_that_ran_out_is_claimed_again() {
    on_both(|store| async move {
        let kind = store.kind();
        store.accept(event("e1", &["a"])).await.unwrap();
        let claimed = store.claim("a", 10, 2_000, LEASE).await.unwrap();
        store.record(&claimed[0].delivery, Outcome::Retry { at_ms: 5_000 }, Some("503".into())).await.unwrap();
        store.flush().await.unwrap();
        assert!(store.claim("a", 10, 4_999, LEASE).await.unwrap().is_empty(), "{kind}: not before its time");
        let retried = store.claim("a", 10, 5_000, LEASE).await.unwrap();
        assert_eq!(retried.len(), 1, "{kind}");
        assert!(store.claim("a", 10, 5_000 + 59_000, LEASE).await.unwrap().is_empty(), "{kind}: claimed until its outcome");
        // A replica that died holding it: with PostgreSQL (several replicas
        // claim from one table) another claims it once the lease ran out.
        // An embedded store has one process; its claims end with their
        // outcome (a panicking attempt records a retry) or with the process.
        let after_lease = store.claim("a", 10, 5_000 + 61_000, LEASE).await.unwrap().len();
        assert_eq!(after_lease, usize::from(kind == "postgres"), "{kind}");
        assert!(store.claim("b", 10, FAR, LEASE).await.unwrap().is_empty(), "{kind}: another route's");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_a_state_or_route_take_only_what_passes_every_filter() {
    on_both(|store| async move {
        let kind = store.kind();
        store.accept(event("dead-one", &["a"])).await.unwrap();
        store.accept(event("pending-one", &["a"])).await.unwrap();
        let claimed = store.claim("a", 1, 2_000, LEASE).await.unwrap();
        store.record(&claimed[0].delivery, Outcome::Dead, Some("410".into())).await.unwrap();
        store.flush().await.unwrap();
        let all: Vec<u64> = store.list(&Filter::default()).await.unwrap().items.iter().map(|d| d.id).collect();
        assert_eq!(all.len(), 2, "{kind}");
        let dead_id = claimed[0].delivery.id;
        let wrong_route = Filter { ids: all.clone(), route: Some("b".into()), ..Filter::default() };
        assert!(store.discard(&wrong_route, false).await.unwrap().items.is_empty(), "{kind}: another route's filter takes nothing");
        let only_dead = Filter { ids: all.clone(), state: Some(State::Dead), ..Filter::default() };
        assert_eq!(store.discard(&only_dead, true).await.unwrap().items, [dead_id], "{kind}: a dry run lists");
        assert_eq!(store.stats(2_000).await.unwrap().dead, 1, "{kind}: ...and changes nothing");
        assert_eq!(store.discard(&only_dead, false).await.unwrap().items, [dead_id], "{kind}");
        let stats = store.stats(2_000).await.unwrap();
        assert_eq!((stats.pending, stats.dead), (1, 0), "{kind}: the pending one stays");
        // Pages: at most `limit`, and `next` says where to go on.
        for i in 0..5 {
            store.accept(event(&format!("more-{i}"), &["a"])).await.unwrap();
        }
        let (mut seen, mut filter) = (Vec::new(), Filter { state: Some(State::Pending), limit: Some(2), ..Filter::default() });
        loop {
            let page = store.list(&filter).await.unwrap();
            assert!(page.items.len() <= 2, "{kind}");
            seen.extend(page.items.iter().map(|d| d.id));
            match page.next {
                Some(after) => filter.after = Some(after),
                None => break,
            }
        }
        assert_eq!(seen.len(), 6, "{kind}: every pending delivery, once: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{kind}: in id order");
        // The event's own filters.
        let by_event = Filter { event_id: Some("more-3".into()), ..Filter::default() };
        assert_eq!(
            store.list(&by_event).await.unwrap().items.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(),
            ["more-3"],
            "{kind}"
        );
        let by_type = Filter { event_type: Some("user.create".into()), ..Filter::default() };
        assert!(store.list(&by_type).await.unwrap().items.is_empty(), "{kind}: every event here is a user.delete");
        let since = Filter { since_ms: Some(fusionhook_receiver::store::now_ms() + 60_000), ..Filter::default() };
        assert!(store.list(&since).await.unwrap().items.is_empty(), "{kind}: none accepted after a minute from now");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_about_one_object_go_in_order_and_wait_without_blocking_others() {
    on_both(|store| async move {
        let kind = store.kind();
        for i in 0..50 {
            store.accept(about(&format!("a{i}"), "busy-user")).await.unwrap();
        }
        store.accept(about("b0", "other-user")).await.unwrap();
        let claimed = store.claim("a", 10, 2_000, LEASE).await.unwrap();
        let mut ids: Vec<&str> = claimed.iter().map(|c| c.delivery.event_id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a0", "b0"], "{kind}: the first about each object, however many wait");
        let claimed: Vec<_> = claimed.into_iter().filter(|c| c.delivery.event_id == "a0").collect();
        // Retrying: the next about the same object still waits.
        store.record(&claimed[0].delivery, Outcome::Retry { at_ms: 1_500 }, Some("503".into())).await.unwrap();
        store.flush().await.unwrap();
        let next = store.claim("a", 10, 2_000, LEASE).await.unwrap();
        assert_eq!(next.iter().map(|c| c.delivery.event_id.as_str()).collect::<Vec<_>>(), ["a0"], "{kind}");
        // Dead or delivered: the next goes.
        store.record(&next[0].delivery, Outcome::Dead, Some("410".into())).await.unwrap();
        store.flush().await.unwrap();
        let after_dead = store.claim("a", 10, 2_000, LEASE).await.unwrap();
        assert_eq!(after_dead.iter().map(|c| c.delivery.event_id.as_str()).collect::<Vec<_>>(), ["a1"], "{kind}");
        store.record(&after_dead[0].delivery, Outcome::Delivered, None).await.unwrap();
        store.flush().await.unwrap();
        let after_delivered = store.claim("a", 10, 2_000, LEASE).await.unwrap();
        assert_eq!(after_delivered.iter().map(|c| c.delivery.event_id.as_str()).collect::<Vec<_>>(), ["a2"], "{kind}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_forgets_old_ids_and_delivered_deliveries_but_never_what_is_owed() {
    on_both(|store| async move {
        let kind = store.kind();
        store.accept(event("done", &[])).await.unwrap();
        store.accept(event("owed", &["a"])).await.unwrap();
        store.compact(10_000).await.unwrap();
        assert!(!store.seen("done").await.unwrap(), "{kind}: past the dedupe window, nothing owed");
        assert!(store.seen("owed").await.unwrap(), "{kind}: a pending delivery keeps its event");
        let claimed = store.claim("a", 1, 10_000, LEASE).await.unwrap();
        store.record(&claimed[0].delivery, Outcome::Dead, Some("410".into())).await.unwrap();
        store.flush().await.unwrap();
        store.compact(20_000).await.unwrap();
        assert!(store.seen("owed").await.unwrap(), "{kind}: a dead delivery is owed too (it waits for a person)");
        let replayed = store.replay(&Filter { state: Some(State::Dead), ..Filter::default() }, false).await.unwrap();
        assert_eq!(replayed.items.len(), 1, "{kind}");
        let claimed = store.claim("a", 1, FAR, LEASE).await.unwrap();
        store.record(&claimed[0].delivery, Outcome::Delivered, None).await.unwrap();
        store.flush().await.unwrap();
        let now = fusionhook_receiver::store::now_ms();
        store.compact(now).await.unwrap();
        assert_eq!(store.stats(now).await.unwrap().delivered, 1, "{kind}: a delivered delivery stays for the retention");
        store.compact(now + 60_000).await.unwrap();
        store.compact(now + 120_000).await.unwrap();
        let stats = store.stats(now + 120_000).await.unwrap();
        assert_eq!((stats.pending, stats.dead, stats.delivered), (0, 0, 0), "{kind}: then it goes");
        assert!(!store.seen("owed").await.unwrap(), "{kind}: and its event once nothing is owed");
    })
    .await;
}

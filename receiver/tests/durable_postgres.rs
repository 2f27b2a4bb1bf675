//! Durable delivery on a real PostgreSQL (started by the test, installed by
//! `scripts/install-postgres.sh` when missing): two receivers share one
//! database and run a route once for an event both received; PostgreSQL
//! stopped under load makes the receiver answer 500, never 200, and it
//! recovers by itself when PostgreSQL is back, losing nothing accepted;
//! meanwhile it is not ready. A receiver started while PostgreSQL is down
//! runs (no crash loop), answers 500 and recovers the same way. An event
//! id too long to index is refused alone (400) before it reaches a commit
//! group, and a statement that fails in a group fails only its own op; a
//! schema dropped while the receiver runs is migrated again without a
//! restart.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use fusionhook_receiver::store::{Accepted, NewDelivery, NewEvent, Outcome, Retention, Store};
use fusionhook_tests::events;
use fusionhook_tests::postgres::Postgres;

mod common;

use common::Receiver;
use common::sink::{OK, Sink, admin, config_with, id, wait_for};

fn store_line(dir: &std::path::Path, pg: &Postgres) -> String {
    std::fs::write(dir.join("pg-url"), pg.url()).unwrap();
    format!("store: {{type: postgres, urlFile: \"{}\"}}", dir.join("pg-url").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_on_one_postgres_run_a_route_once_for_an_event_both_received() {
    let pg = Postgres::start();
    let (sink, sink_addr) = Sink::start().await;
    sink.set(OK);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let yaml_a = config_with(dir_a.path(), &store_line(dir_a.path(), &pg), sink_addr, "");
    let yaml_b = config_with(dir_b.path(), &store_line(dir_b.path(), &pg), sink_addr, "");
    let a = Receiver::start_in(dir_a, &yaml_a);
    let b = Receiver::start_in(dir_b, &yaml_b);
    let client = reqwest::Client::new();
    let key = [("authorization", "API-KEY".to_owned())];

    // 200 events, each delivered to both replicas at once (a FusionAuth
    // retry landing on the other replica), and once more to each after.
    for i in 0..200 {
        let body = events::user_delete(&id(i), "u-1");
        let (ra, rb) = tokio::join!(a.post(&client, &key, body.clone()), b.post(&client, &key, body.clone()));
        assert_eq!((ra.0, rb.0), (StatusCode::OK, StatusCode::OK));
    }
    for i in 0..200 {
        let body = events::user_delete(&id(i), "u-1");
        assert_eq!(a.post(&client, &key, body.clone()).await.0, StatusCode::OK);
        assert_eq!(b.post(&client, &key, body).await.0, StatusCode::OK);
    }
    // An id PostgreSQL cannot store as text (a NUL byte; never FusionAuth's)
    // is accepted and deduplicated like any other, and fails nobody else.
    let odd = events::user_delete("odd\u{0}id", "u-1");
    assert_eq!(a.post(&client, &key, odd.clone()).await.0, StatusCode::OK);
    assert_eq!(b.post(&client, &key, odd).await.0, StatusCode::OK);
    wait_for("every event delivered", Duration::from_secs(60), async || sink.delivered().len() == 201).await;
    wait_for("an empty backlog", Duration::from_secs(60), async || {
        admin(&client, &a, reqwest::Method::GET, "/v1/stats", None).await.1["pending"] == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = sink.delivered();
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "two replicas, one PostgreSQL: 200 events x 4 deliveries each, 1 odd id x 2; the route ran for {} events, {} of them more than once",
        delivered.len(),
        twice.len()
    );
    assert!(twice.is_empty(), "ran more than once: {twice:?}");
    // Both replicas see the same store.
    let (_, stats_b) = admin(&client, &b, reqwest::Method::GET, "/v1/stats", None).await;
    assert_eq!(stats_b["delivered"], 201);
}

async fn readyz(client: &reqwest::Client, receiver: &Receiver) -> (StatusCode, String) {
    let response = client.get(receiver.url("/readyz")).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// A sink that answers 200 and one receiver on `pg` delivering to it
/// (`route_extra`: more keys of its route).
async fn receiver_on(pg: &Postgres, route_extra: &str) -> (Arc<Sink>, Receiver) {
    let (sink, sink_addr) = Sink::start().await;
    sink.set(OK);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_with(dir.path(), &store_line(dir.path(), pg), sink_addr, route_extra);
    (sink, Receiver::start_in(dir, &yaml))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_started_while_postgres_is_down_answers_500_unready_and_recovers_without_a_restart() {
    let mut pg = Postgres::start();
    pg.stop();
    // Starts and listens (no crash loop), but cannot commit.
    let (sink, receiver) = receiver_on(&pg, "").await;
    let client = reqwest::Client::new();
    let key = [("authorization", "API-KEY".to_owned())];
    let (status, answer) = receiver.post(&client, &key, events::user_delete(&id(1), "u-1")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    let (status, text) = readyz(&client, &receiver).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.starts_with("the store cannot commit"), "{text}");
    // The reason, behind the admin token; never the connection string.
    // 200 with unknown figures: through the API server's proxy a 503 would
    // be retried by the caller's client.
    let (status, stats) = admin(&client, &receiver, reqwest::Method::GET, "/v1/stats", None).await;
    let why = stats.to_string();
    assert_eq!(status, StatusCode::OK, "{why}");
    assert!(stats["pending"].is_null() && stats["storeProblem"].as_str().is_some_and(|p| p.contains("PostgreSQL")), "{why}");
    assert!(!why.contains(&pg.url()) && !why.contains("postgres://"), "{why}");

    // PostgreSQL comes up (fresh: the schema is created now) and the same
    // event, retried, is taken and delivered; readiness follows.
    pg.resume();
    wait_for("200 once PostgreSQL is up", Duration::from_secs(30), async || {
        receiver.post(&client, &key, events::user_delete(&id(1), "u-1")).await.0 == StatusCode::OK
    })
    .await;
    wait_for("ready again", Duration::from_secs(15), async || readyz(&client, &receiver).await.0 == StatusCode::OK).await;
    wait_for("the event delivered", Duration::from_secs(30), async || sink.delivered().get(&id(1)) == Some(&1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_means_500_never_200_and_the_receiver_recovers_by_itself() {
    let mut pg = Postgres::start();
    let (sink, receiver) = receiver_on(&pg, "    retry: {scheduleMs: [100]}").await;
    let client = reqwest::Client::new();

    // Senders run throughout; each answer is kept with the times its
    // request was sent and answered.
    type Answers = Arc<Mutex<Vec<(Instant, Instant, String, StatusCode)>>>;
    let answers: Answers = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let url = receiver.url("/events");
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (client, answers, next, stop, url) = (client.clone(), answers.clone(), next.clone(), stop.clone(), url.clone());
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let sent_at = Instant::now();
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("authorization", "API-KEY")
                    .body(events::user_delete(&id(i), "u-1"))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let status = sent.map(|r| r.status()).unwrap_or(StatusCode::BAD_GATEWAY);
                answers.lock().unwrap().push((sent_at, Instant::now(), id(i), status));
                if status != StatusCode::OK {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let ok_count = |answers: &Answers| answers.lock().unwrap().iter().filter(|a| a.3 == StatusCode::OK).count();
    wait_for("answers before the stop", Duration::from_secs(30), async || ok_count(&answers) >= 300).await;

    pg.stop();
    let stopped = Instant::now();
    // Not ready while it cannot commit (Kubernetes stops sending it traffic).
    wait_for("not ready while PostgreSQL is down", Duration::from_secs(3), async || {
        readyz(&client, &receiver).await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed())).await;
    let resuming = Instant::now();
    pg.resume();
    let resumed = Instant::now();
    let before_resume = ok_count(&answers);
    wait_for("200s again after PostgreSQL came back", Duration::from_secs(60), async || ok_count(&answers) >= before_resume + 200).await;
    assert_eq!(readyz(&client, &receiver).await, (StatusCode::OK, "ready".to_owned()));
    stop.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.await.unwrap();
    }

    let answers = answers.lock().unwrap().clone();
    // Sent after PostgreSQL had stopped and answered before it was being
    // started again: nothing could have committed them.
    let while_down: Vec<_> = answers.iter().filter(|(sent, answered, _, _)| *sent > stopped && *answered < resuming).collect();
    let ok_while_down = while_down.iter().filter(|a| a.3 == StatusCode::OK).count();
    let refused = while_down.iter().filter(|a| a.3 == StatusCode::INTERNAL_SERVER_ERROR).count();
    let answered_200: HashSet<String> = answers.iter().filter(|a| a.3 == StatusCode::OK).map(|a| a.2.clone()).collect();
    wait_for("every event answered 200 delivered", Duration::from_secs(60), async || {
        let delivered = sink.delivered();
        answered_200.iter().all(|id| delivered.contains_key(id))
    })
    .await;
    let recovered_after = answers
        .iter()
        .filter(|(sent, _, _, s)| *sent > resumed && *s == StatusCode::OK)
        .map(|(sent, _, _, _)| sent.duration_since(resumed))
        .min();
    println!(
        "postgres stopped 3 s under load: {} requests sent and answered while it was down ({refused} answered 500, {ok_while_down} answered 200); \
         the first request sent after it was back and answered 200 was sent {recovered_after:?} after; answered 200 in all {}, all delivered",
        while_down.len(),
        answered_200.len()
    );
    assert!(refused > 0, "the load never met the outage");
    assert_eq!(ok_while_down, 0, "200 while PostgreSQL was down");
    assert!(while_down.iter().all(|a| a.3 == StatusCode::INTERNAL_SERVER_ERROR), "only 500 while down");
}

/// `len` characters that look random (letters and digits from a fixed
/// seed): PostgreSQL compresses a long value before indexing it, so a
/// repeated character would fit the index and prove nothing.
fn random_looking(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = seed;
    (0..len)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            char::from(ALPHABET[usize::try_from(z % ALPHABET.len() as u64).unwrap()])
        })
        .collect()
}

async fn wait_ready(client: &reqwest::Client, receiver: &Receiver) {
    wait_for("ready", Duration::from_secs(15), async || readyz(client, receiver).await.0 == StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_too_long_to_index_is_refused_alone_with_400_and_36_events_sent_with_it_are_stored() {
    let pg = Postgres::start();
    let (sink, receiver) = receiver_on(&pg, "").await;
    let client = reqwest::Client::new();
    let key = [("authorization", "API-KEY".to_owned())];
    wait_ready(&client, &receiver).await;

    // 36 events and one whose id (3000 bytes, random-looking) PostgreSQL's
    // index cannot hold, all at once: they would share a commit group.
    let long = random_looking(3000, 7);
    let bodies: Vec<Vec<u8>> = (0..36).map(|i| events::user_delete(&id(i), "u-1")).chain([events::user_delete(&long, "u-1")]).collect();
    let answers = futures::future::join_all(bodies.into_iter().map(|body| receiver.post(&client, &key, body))).await;
    let (long_status, long_answer) = answers.last().unwrap().clone();
    let others: Vec<StatusCode> = answers[..36].iter().map(|a| a.0).collect();
    let ready = readyz(&client, &receiver).await;
    println!(
        "36 events and one with a 3000-byte id sent together: the long one {long_status} {long_answer}; the others {others:?}; readiness {ready:?}"
    );
    assert_eq!(long_status, StatusCode::BAD_REQUEST, "{long_answer}");
    // The receiver's 400 shape, naming the field and the limit; the id is not echoed.
    let error = &long_answer["errors"][0];
    assert_eq!(error["code"], "[invalid]event", "{long_answer}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("event.id") && m.contains("512")), "{long_answer}");
    assert!(!long_answer.to_string().contains(&long[..64]), "{long_answer}");
    assert!(others.iter().all(|s| *s == StatusCode::OK), "{others:?}");
    assert_eq!(ready, (StatusCode::OK, "ready".to_owned()));

    // At the limit (512 bytes, random-looking) it is stored; one byte over is not.
    let at_limit = random_looking(512, 8);
    assert_eq!(receiver.post(&client, &key, events::user_delete(&at_limit, "u-1")).await.0, StatusCode::OK);
    let over = random_looking(513, 9);
    assert_eq!(receiver.post(&client, &key, events::user_delete(&over, "u-1")).await.0, StatusCode::BAD_REQUEST);
    // The admin API's ingest refuses it the same way.
    let response = client
        .post(format!("http://{}/v1/ingest", receiver.admin.unwrap()))
        .bearer_auth("admin-secret-token")
        .header("content-type", "application/json")
        .body(events::user_delete(&long, "u-1"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["errors"][0]["code"], "[invalid]event", "{answer}");

    wait_for("the 37 stored events delivered", Duration::from_secs(30), async || sink.delivered().len() == 37).await;
    assert_eq!(readyz(&client, &receiver).await.0, StatusCode::OK);
}

/// The PostgreSQL store on `pg`, opened in the test's own process.
async fn open_store(pg: &Postgres) -> Store {
    let url = fusionhook_receiver::secret::Secret::load(fusionhook_receiver::secret::SecretSource::Inline(pg.url())).unwrap();
    let retention = Retention { dedupe_window: Duration::from_secs(3600), delivered: Duration::from_secs(3600) };
    let latency = fusionhook_receiver::metrics::Metrics::new().store_commit.clone();
    Store::Postgres(fusionhook_receiver::store::postgres::Postgres::open(url, retention, latency).await.unwrap())
}

fn new_event(id: &str, route: &str) -> NewEvent {
    let body = events::user_delete(id, "u-1");
    let deliveries = vec![NewDelivery { route: route.to_owned(), due_ms: 0, ordered_by: None }];
    NewEvent {
        id: id.to_owned(),
        kind: "user.delete".to_owned(),
        received_ms: fusionhook_receiver::store::now_ms(),
        body: body.into(),
        deliveries,
    }
}

/// The store itself (HTTP refuses such an id before it gets here): every
/// op is queued before a writer runs (one thread), so they share a group.
#[tokio::test(flavor = "current_thread")]
async fn a_statement_failing_in_a_commit_group_fails_only_its_own_op() {
    let pg = Postgres::start();
    let store = open_store(&pg).await;
    // Stored before: one event to see again (Duplicate), one delivery to record.
    assert_eq!(store.accept(new_event("seen-before", "other")).await.unwrap(), Accepted::Stored);
    assert_eq!(store.accept(new_event("to-record", "r")).await.unwrap(), Accepted::Stored);
    let claimed = store.claim("r", 10, fusionhook_receiver::store::now_ms(), Duration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 1);

    // 10,000 random-looking characters: over what a btree index row holds
    // (about 2700 bytes), even compressed.
    let long = random_looking(10_000, 11);
    let mut accepts: Vec<_> = (0..36).map(|i| store.accept(new_event(&id(i), "other"))).collect();
    accepts.push(store.accept(new_event("seen-before", "other")));
    accepts.push(store.accept(new_event(&long, "other")));
    let record = store.record(&claimed[0].delivery, Outcome::Delivered, None);
    let (results, recorded) = tokio::join!(futures::future::join_all(accepts), record);
    recorded.unwrap();
    let flushed = store.flush().await;

    let summary: Vec<String> =
        results.iter().map(|r| format!("{:?}", r.as_ref().map_err(|e| e.0.chars().take(120).collect::<String>()))).collect();
    println!("one group of 36 new events, 1 duplicate, 1 id of 10,000 bytes and 1 outcome: {summary:?}; flush: {flushed:?}");
    for (i, result) in results[..36].iter().enumerate() {
        assert_eq!(result.as_ref().ok(), Some(&Accepted::Stored), "event {i}: {result:?}");
    }
    assert_eq!(results[36].as_ref().ok(), Some(&Accepted::Duplicate), "{:?}", results[36]);
    let error = results[37].as_ref().expect_err("the long id was stored");
    assert!(error.0.contains("index row"), "{error}");
    assert!(!error.0.contains(&long[..64]), "the error quotes the id");
    // The outcome in that group was committed, not held back.
    flushed.unwrap();
    let delivered =
        store.list(&fusionhook_receiver::store::Filter { ids: vec![claimed[0].delivery.id], ..Default::default() }).await.unwrap().items;
    assert_eq!(delivered[0].state, fusionhook_receiver::store::State::Delivered);
    // The store still commits.
    assert_eq!(store.accept(new_event("after", "other")).await.unwrap(), Accepted::Stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_dropped_while_the_receiver_runs_are_created_again_without_a_restart() {
    let pg = Postgres::start();
    let (sink, receiver) = receiver_on(&pg, "").await;
    let client = reqwest::Client::new();
    let key = [("authorization", "API-KEY".to_owned())];
    wait_ready(&client, &receiver).await;
    assert_eq!(receiver.post(&client, &key, events::user_delete(&id(0), "u-1")).await.0, StatusCode::OK);
    wait_for("the first event delivered", Duration::from_secs(30), async || sink.delivered().get(&id(0)) == Some(&1)).await;

    // Someone empties the database (as if it were dropped and created again).
    let (sql, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    sql.batch_execute("DROP TABLE fusionhook_deliveries, fusionhook_events, fusionhook_schema").await.unwrap();
    let dropped = Instant::now();

    // Events are answered 200 again (the first ones may get 500) and readiness follows.
    let mut statuses = Vec::new();
    let mut i = 1;
    loop {
        let status = receiver.post(&client, &key, events::user_delete(&id(i), "u-1")).await.0;
        statuses.push(status.as_u16());
        if status == StatusCode::OK {
            break;
        }
        assert!(dropped.elapsed() < Duration::from_secs(15), "no 200 within 15 s of the drop: {statuses:?}");
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("tables dropped under a running receiver: answers {statuses:?}, 200 again after {:?}", dropped.elapsed());
    wait_ready(&client, &receiver).await;
    let accepted = id(i);
    wait_for("the event accepted after the drop delivered", Duration::from_secs(30), async || sink.delivered().get(&accepted) == Some(&1))
        .await;
    let tables: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('fusionhook_deliveries', 'fusionhook_events', 'fusionhook_schema')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 3);
}

/// The store itself, with nothing else using it (no dispatcher): the
/// writer that finds the tables gone has the next group create them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_dropped_under_the_store_are_created_again_by_its_next_commit() {
    let pg = Postgres::start();
    let store = open_store(&pg).await;
    assert_eq!(store.accept(new_event("before", "r")).await.unwrap(), Accepted::Stored);
    let (sql, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    sql.batch_execute("DROP TABLE fusionhook_deliveries, fusionhook_events, fusionhook_schema").await.unwrap();

    let mut answers = Vec::new();
    for i in 0..20 {
        let accepted = store.accept(new_event(&id(i), "r")).await;
        answers.push(accepted.as_ref().map_err(|e| e.0.chars().take(100).collect::<String>()).map(|a| format!("{a:?}")));
        if accepted.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("accepts after the tables were dropped: {answers:?}");
    assert!(answers.last().unwrap().is_ok(), "{answers:?}");
    assert!(answers.len() <= 2, "more than one accept refused: {answers:?}");
    // The schema is whole again: the same id is a duplicate, an outcome can be recorded.
    assert_eq!(store.accept(new_event(&id(answers.len() - 1), "r")).await.unwrap(), Accepted::Duplicate);
    let claimed = store.claim("r", 10, fusionhook_receiver::store::now_ms(), Duration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.record(&claimed[0].delivery, Outcome::Delivered, None).await.unwrap();
    store.flush().await.unwrap();
}

/// Issue 23: the PostgreSQL store's size (its tables, indexes included)
/// reaches the metrics with each stats read; the volume figures are the
/// embedded store's only. A commit that cannot reach the database counts as
/// a failed commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_reports_its_size_and_its_failed_commits() {
    let mut pg = Postgres::start();
    let metrics = fusionhook_receiver::metrics::Metrics::new();
    let url = fusionhook_receiver::secret::Secret::load(fusionhook_receiver::secret::SecretSource::Inline(pg.url())).unwrap();
    let retention = Retention { dedupe_window: Duration::from_secs(3600), delivered: Duration::from_secs(3600) };
    let store =
        Store::Postgres(fusionhook_receiver::store::postgres::Postgres::open(url, retention, metrics.store_commit.clone()).await.unwrap());
    store.accept(new_event("sized", "a")).await.unwrap();
    store.stats(fusionhook_receiver::store::now_ms()).await.unwrap();
    let value = |page: &str, name: &str| -> f64 {
        page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or_else(|| panic!("{name}: {page}"))
    };
    let page = metrics.render();
    assert!(value(&page, "fusionhook_receiver_store_size_bytes") >= 16_384.0, "two tables and their indexes: {page}");
    assert_eq!(value(&page, "fusionhook_receiver_store_volume_capacity_bytes"), 0.0);
    assert_eq!(value(&page, "fusionhook_receiver_store_commit_failures_total"), 0.0);
    pg.stop();
    assert!(store.flush().await.is_err(), "no database, no commit");
    assert!(value(&metrics.render(), "fusionhook_receiver_store_commit_failures_total") >= 1.0);
}

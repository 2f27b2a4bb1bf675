//! Leader election against a mock API server that keeps one Lease with
//! resourceVersion conflicts: a free Lease is created, a live holder is
//! left alone, a silent one is taken over, a lost race (409) means standby,
//! and shutdown releases the Lease.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusionhook_operator::leader::{self, LeaseSettings};
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

#[derive(Default)]
struct LeaseServer {
    lease: Option<Value>,
    version: u64,
    /// Answer the next write with 409 (another replica won the race).
    conflict_next_write: bool,
    /// Stop answering (a half-open connection): requests are held, never answered.
    hang: bool,
    writes: Vec<String>,
}

async fn serve(mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>, server: Arc<Mutex<LeaseServer>>) {
    let mut unanswered = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        if server.lock().unwrap().hang {
            unanswered.push(send);
            continue;
        }
        let method = request.method().to_string();
        let (path, query) = (request.uri().path().to_owned(), request.uri().query().unwrap_or_default().to_owned());
        assert!(fusionhook_operator::rbac::granted(&method, &path, &query), "not granted by rbac::PERMISSIONS: {method} {path}");
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let (status, body) = {
            let mut s = server.lock().unwrap();
            match method.as_str() {
                "GET" => s.lease.clone().map_or((404, json!({"kind": "Status", "code": 404, "reason": "NotFound"})), |l| (200, l)),
                _ => {
                    let mut lease: Value = serde_json::from_slice(&bytes).unwrap();
                    let current = s.lease.as_ref().map(|l| l["metadata"]["resourceVersion"].clone());
                    let stale = method == "PUT" && current != Some(lease["metadata"]["resourceVersion"].clone());
                    let exists = method == "POST" && s.lease.is_some();
                    if std::mem::take(&mut s.conflict_next_write) || stale || exists {
                        (409, json!({"kind": "Status", "code": 409, "reason": "Conflict"}))
                    } else {
                        s.version += 1;
                        lease["metadata"]["resourceVersion"] = json!(s.version.to_string());
                        s.writes.push(format!("{method} {}", lease["spec"]["holderIdentity"]));
                        s.lease = Some(lease.clone());
                        (if method == "POST" { 201 } else { 200 }, lease)
                    }
                }
            }
        };
        send.send_response(Response::builder().status(status).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap());
    }
}

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "fusionhook-operator".into(),
        namespace: "fusionhook".into(),
        identity: identity.into(),
        lease_duration: Duration::from_millis(400),
        renew_every: Duration::from_millis(100),
    }
}

fn start(identity: &str, server: &Arc<Mutex<LeaseServer>>) -> (watch::Receiver<bool>, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(serve(handle, Arc::clone(server)));
    let (leader_tx, leader_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(leader::run(Client::new(service, "default"), settings(identity), leader_tx, stop_rx));
    (leader_rx, stop_tx, task)
}

async fn becomes(rx: &mut watch::Receiver<bool>, value: bool) {
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|l| *l == value)).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_free_lease_is_taken_renewed_and_released_on_shutdown() {
    let server = Arc::new(Mutex::new(LeaseServer::default()));
    let (mut leader, stop, task) = start("pod-a", &server);
    becomes(&mut leader, true).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(*leader.borrow(), "still leading while renewing");
    stop.send_replace(true);
    task.await.unwrap();
    let s = server.lock().unwrap();
    assert_eq!(s.writes.first().unwrap(), "POST \"pod-a\"");
    assert!(s.writes.iter().filter(|w| *w == "PUT \"pod-a\"").count() >= 2, "renewals: {:?}", s.writes);
    assert_eq!(s.writes.last().unwrap(), "PUT null", "released on shutdown");
}

#[tokio::test]
async fn a_live_holder_is_left_alone_and_a_silent_one_is_taken_over() {
    let server = Arc::new(Mutex::new(LeaseServer::default()));
    // pod-b holds the Lease and keeps renewing it (a new resourceVersion each time).
    server.lock().unwrap().lease = Some(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "fusionhook-operator", "namespace": "fusionhook", "resourceVersion": "100"},
        "spec": {"holderIdentity": "pod-b", "leaseDurationSeconds": 1},
    }));
    let renewing = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            for i in 0..10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut s = server.lock().unwrap();
                s.lease.as_mut().unwrap()["metadata"]["resourceVersion"] = json!(format!("r{i}"));
            }
        })
    };
    let (mut leader, stop, task) = start("pod-a", &server);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!*leader.borrow(), "pod-b renews: pod-a stands by");
    renewing.await.unwrap();

    // pod-b went silent; after its lease duration (1 s, as written in the
    // Lease) pod-a takes over, unless it loses the race once first.
    server.lock().unwrap().conflict_next_write = true;
    becomes(&mut leader, true).await;
    stop.send_replace(true);
    task.await.unwrap();
    let s = server.lock().unwrap();
    assert_eq!(s.writes.first().unwrap(), "PUT \"pod-a\"", "{:?}", s.writes);
    assert_eq!(s.lease.as_ref().unwrap()["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn a_leader_whose_api_server_stops_answering_steps_down_before_a_standby_may_take_over() {
    let server = Arc::new(Mutex::new(LeaseServer::default()));
    let (mut leader, stop, task) = start("pod-a", &server);
    becomes(&mut leader, true).await;
    let hung_at = std::time::Instant::now();
    server.lock().unwrap().hang = true;
    becomes(&mut leader, false).await;
    // A standby takes over once the record stayed unchanged for the lease
    // duration (400 ms) after the last renewal, which was before `hung_at`.
    let took = hung_at.elapsed();
    assert!(took < Duration::from_millis(400), "still leading {took:?} after the API server went silent");
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(2), task).await.expect("shutdown does not wait for the silent API server").unwrap();
}

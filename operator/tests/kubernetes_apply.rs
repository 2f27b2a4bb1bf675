//! The Kubernetes half of apply against a mock API server (tower-test): the
//! exact calls (paths, field manager, force, content types), a second pass
//! over unchanged objects that writes nothing, and the status patch.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use fusionhook_operator::FusionAuthWebhook;
use fusionhook_operator::reconcile::apply::kubernetes::{Observed, Rollout, apply_receiver, patch_status};
use fusionhook_operator::reconcile::build::{ReceiverDefaults, ReceiverObjects, desired, owner_reference};
use fusionhook_operator::reconcile::dereference;
use fusionhook_operator::reconcile::rotation::{AdminTokens, Kept, Seen, admin_tokens, credentials};
use fusionhook_operator::reconcile::validate::{SecretData, Validated, validate};
use fusionhook_operator::resource::FusionAuthWebhookStatus;
use http::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::client::Body;
use kube::{Api, Client};
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn resource() -> FusionAuthWebhook {
    serde_json::from_value(json!({
        "apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook",
        "metadata": {"name": "todo-cleanup", "namespace": "todo", "uid": "9c1d2e3f-0000-4000-8000-000000000001", "generation": 2},
        "spec": {
            "fusionAuth": {"url": "http://fusionauth:9011", "apiKeySecretRef": {"name": "fa", "key": "api-key"}},
            "events": ["user.delete"],
            "routes": [{"name": "todo-cleanup", "events": ["user.delete"], "http": {"method": "DELETE", "url": "http://todo/users/{{event.user.id}}/todos"}}]
        }
    }))
    .unwrap()
}

/// Serves `n` requests: answers each with `answer(request, body)`, returns what it saw.
async fn serve(
    mut handle: Handle,
    n: usize,
    answer: impl Fn(&Request<Body>, &Value) -> (u16, Value) + Send + 'static,
) -> Vec<(String, String, Option<String>, Value)> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let (request, send) =
            tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await.expect("a request").expect("a request");
        let method = request.method().to_string();
        let uri = request.uri().to_string();
        let content_type = request.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).or_else(|_| serde_yaml::from_slice(&bytes)).unwrap()
        };
        let (status, reply) = answer(&Request::from_parts(parts, Body::empty()), &body);
        send.send_response(Response::builder().status(status).body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap());
        seen.push((method, uri, content_type, body));
    }
    seen
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

#[tokio::test]
async fn dereference_reads_exactly_the_referenced_secrets() {
    let (client, handle) = mock();
    let server = tokio::spawn(serve(handle, 5, |request, _| {
        if request.uri().path().ends_with("/secrets/fa") {
            (
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fa", "namespace": "todo"}, "data": {"api-key": "Z2xvYmFsLWtleQ=="}}),
            )
        } else {
            (404, not_found())
        }
    }));
    let data = dereference::secrets(&client, &resource()).await.unwrap();
    let seen = server.await.unwrap();
    let paths: Vec<&str> = seen
        .iter()
        .map(|(m, u, _, _)| {
            assert_eq!(m, "GET");
            u.as_str()
        })
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/todo/secrets/fa",
            "/api/v1/namespaces/todo/secrets/todo-cleanup-receiver-admin-ingest",
            "/api/v1/namespaces/todo/secrets/todo-cleanup-receiver-admin-read",
            "/api/v1/namespaces/todo/secrets/todo-cleanup-receiver-admin-replay",
            "/api/v1/namespaces/todo/secrets/todo-cleanup-receiver-auth"
        ]
    );
    assert_eq!(data["fa"]["api-key"], b"global-key");
    assert!(!data.contains_key("todo-cleanup-receiver-auth"), "not generated yet");

    let v = validate(&resource(), &data).unwrap();
    let generated = |data: &SecretData| credentials(&v, &Kept::read(&v, data), Seen::Unknown, false).authorization.0;
    let first = generated(&data);
    assert_eq!(first.len(), 43, "32 random bytes, base64url");
    assert_ne!(first, generated(&data), "fresh each time until stored");
    let mut stored = data.clone();
    stored.entry("todo-cleanup-receiver-auth".into()).or_default().insert("authorization".into(), first.clone().into_bytes());
    assert_eq!(generated(&stored), first, "kept across reconciles");
}

#[tokio::test]
async fn receiver_objects_are_server_side_applied_once() {
    let r = resource();
    let mut secrets = SecretData::new();
    secrets.entry("fa".into()).or_default().insert("api-key".into(), b"k".to_vec());
    let v = validate(&r, &secrets).unwrap();
    let owner = owner_reference(&r).unwrap();
    // As read back from their Secrets each pass: made once, kept within their period.
    let admin = admin_tokens(&AdminTokens::new(), 1_000, None);
    let objects = |v: &Validated, image: &str| -> ReceiverObjects {
        // As read back from the operator's Secret each pass: the generated values stay.
        let kept = Kept { generated: Some(fusionhook_operator::reconcile::validate::SecretString("generated".into())), ..Kept::default() };
        let defaults = ReceiverDefaults { image: image.to_owned(), otlp_endpoint: None };
        desired(v, &credentials(v, &kept, Seen::Webhook(None), false), &admin, &defaults, &owner).receiver
    };

    let (client, handle) = mock();
    // The API server answers an apply with the object, plus a status for the Deployment.
    let server = tokio::spawn(serve(handle, 7, |_, body| {
        let mut object = body.clone();
        if object["kind"] == "Deployment" {
            object["status"] = json!({"availableReplicas": 2, "updatedReplicas": 2, "replicas": 2});
        }
        (200, object)
    }));
    let applied = apply_receiver(&client, "todo", &objects(&v, "fusionhook:test"), &Observed::default()).await.unwrap();
    assert_eq!(applied.written, ["Secret", "Secret", "Secret", "Secret", "ConfigMap", "Service", "Deployment"]);
    let seen = server.await.unwrap();
    let calls: Vec<String> = seen
        .iter()
        .map(|(m, u, _, _)| {
            let path = u.split('?').next().unwrap();
            let (head, hash) = path.rsplit_once("-receiver-").unwrap_or((path, ""));
            if hash.len() == 10 && path.contains("/configmaps/") { format!("{m} {head}-receiver-<hash>") } else { format!("{m} {path}") }
        })
        .collect();
    assert_eq!(
        calls,
        [
            "PATCH /api/v1/namespaces/todo/secrets/todo-cleanup-receiver-auth",
            "PATCH /api/v1/namespaces/todo/secrets/todo-cleanup-receiver-admin-read",
            "PATCH /api/v1/namespaces/todo/secrets/todo-cleanup-receiver-admin-replay",
            "PATCH /api/v1/namespaces/todo/secrets/todo-cleanup-receiver-admin-ingest",
            "PATCH /api/v1/namespaces/todo/configmaps/todo-cleanup-receiver-<hash>",
            "PATCH /api/v1/namespaces/todo/services/todo-cleanup-receiver",
            "PATCH /apis/apps/v1/namespaces/todo/deployments/todo-cleanup-receiver",
        ]
    );
    for (_, uri, content_type, body) in &seen {
        assert!(uri.contains("fieldManager=fusionhook-operator") && uri.contains("force=true"), "{uri}");
        assert_eq!(content_type.as_deref(), Some("application/apply-patch+yaml"));
        assert_eq!(body["metadata"]["ownerReferences"][0]["kind"], "FusionAuthWebhook");
        assert!(body["metadata"]["annotations"]["fusionhook.dev/applied-hash"].is_string());
    }
    assert_eq!(applied.rollout, Some(Rollout::Done));

    // Second pass: the caches hold what was applied; nothing is written.
    let as_applied = |i: usize| seen[i].3.clone();
    let observed = Observed {
        secret: Some(serde_json::from_value::<Secret>(as_applied(0)).unwrap()),
        admin_secrets: (1..4)
            .map(|i| {
                let secret = serde_json::from_value::<Secret>(as_applied(i)).unwrap();
                (secret.metadata.name.clone().unwrap(), secret)
            })
            .collect(),
        config_map: Some(serde_json::from_value::<ConfigMap>(as_applied(4)).unwrap()),
        service: Some(serde_json::from_value::<Service>(as_applied(5)).unwrap()),
        deployment: Some(serde_json::from_value::<Deployment>(as_applied(6)).unwrap()),
        ..Observed::default()
    };
    let (client, mut handle) = mock();
    let again = apply_receiver(&client, "todo", &objects(&v, "fusionhook:test"), &observed).await.unwrap();
    assert!(again.rollout.is_some() && again.written.is_empty());
    assert!(tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await.is_err(), "steady state: no Kubernetes write");

    // A spec change (new image) re-applies the Deployment, and with a new pod
    // template the config version it names (the cache may lag behind a delete).
    let (client, handle) = mock();
    let server = tokio::spawn(serve(handle, 2, |_, body| (200, body.clone())));
    let newer = apply_receiver(&client, "todo", &objects(&v, "fusionhook:newer"), &observed).await.unwrap();
    assert_eq!(newer.written, ["ConfigMap", "Deployment"]);
    let seen = server.await.unwrap();
    assert!(seen[0].1.starts_with("/api/v1/namespaces/todo/configmaps/todo-cleanup-receiver-"));
    assert!(seen[1].1.starts_with("/apis/apps/v1/namespaces/todo/deployments/todo-cleanup-receiver?"));
}

#[tokio::test]
async fn status_is_patched_once_and_only_when_it_changed() {
    let r = resource();
    let status = FusionAuthWebhookStatus { observed_generation: Some(2), webhook_id: Some("id".into()), ..Default::default() };
    let (client, handle) = mock();
    let server = tokio::spawn(serve(handle, 1, |_, _| (200, serde_json::to_value(resource()).unwrap())));
    let api: Api<FusionAuthWebhook> = Api::namespaced(client, "todo");
    assert!(patch_status(&api, &r, &status).await.unwrap());
    let seen = server.await.unwrap();
    assert_eq!(seen[0].0, "PATCH");
    assert!(seen[0].1.starts_with("/apis/fusionhook.dev/v1alpha1/namespaces/todo/fusionauthwebhooks/todo-cleanup/status"));
    assert_eq!(seen[0].2.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(seen[0].3["status"]["observedGeneration"], 2);

    let mut current = r.clone();
    current.status = Some(status.clone());
    let (client, mut handle) = mock();
    let api: Api<FusionAuthWebhook> = Api::namespaced(client, "todo");
    assert!(!patch_status(&api, &current, &status).await.unwrap());
    assert!(tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await.is_err());
}

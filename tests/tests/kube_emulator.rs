//! The Kubernetes API emulator's conformance, through kube-rs (the client
//! the operator uses): discovery, CRDs, metadata rules, CRUD with the real
//! error reasons, selectors, optimistic concurrency, finalizers, garbage
//! collection, the four patch kinds, watches (order, resume, bookmarks,
//! timeout, 410 Gone) and kube-runtime's watcher without relists.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use fusionhook_tests::kube_emulator::{KubeEmulator, RunningKube};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{ApiResource, Discovery};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, Resource};
use serde_json::{Value, json};

async fn start() -> (KubeEmulator, RunningKube, Client) {
    let emulator = KubeEmulator::new();
    let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let config = Config::new(running.url().parse().unwrap());
    let client = Client::try_from(config).unwrap();
    (emulator, running, client)
}

fn crd() -> CustomResourceDefinition {
    serde_yaml::from_str(&fusionhook_operator::crd_yaml().unwrap()).unwrap()
}

fn faw_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("fusionhook.dev", "v1alpha1", "FusionAuthWebhook");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, "fusionauthwebhooks"))
}

fn faw(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook",
        "metadata": {"name": name},
        "spec": {"fusionAuth": {"url": "http://fa:9011", "apiKeySecretRef": {"name": "fa", "key": "k"}}, "events": ["user.delete"]}
    }))
    .unwrap()
}

fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason),
        other => format!("{other}"),
    }
}

#[tokio::test]
async fn discovery_lists_builtins_and_a_crd_once_created() {
    let (_e, _r, client) = start().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds.create(&PostParams::default(), &crd()).await.unwrap();
    let established = created.status.unwrap().conditions.unwrap();
    assert!(established.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_owned()).collect();
    for g in ["", "apps", "coordination.k8s.io", "events.k8s.io", "fusionhook.dev", "rbac.authorization.k8s.io"] {
        assert!(groups.iter().any(|n| n == g), "{g} in {groups:?}");
    }
    let (resource, caps) = discovery.get("fusionhook.dev").unwrap().recommended_kind("FusionAuthWebhook").unwrap();
    assert_eq!(resource.plural, "fusionauthwebhooks");
    assert!(caps.subresources.iter().any(|(r, _)| r.plural.ends_with("status")), "{:?}", caps.subresources);
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
}

#[tokio::test]
async fn objects_get_metadata_and_errors_carry_the_real_reasons() {
    let (_e, _r, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a", "labels": {"app": "x"}}, "data": {"k": "v"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let meta = created.meta();
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some());
    assert_eq!(reason(&cms.create(&PostParams::default(), &cm).await.unwrap_err()), "409 AlreadyExists");
    assert_eq!(reason(&cms.get("missing").await.unwrap_err()), "404 NotFound");
    assert!(cms.get_opt("missing").await.unwrap().is_none());

    // Optimistic concurrency: a replace with a stale resourceVersion is a Conflict.
    let mut fresh = cms.get("a").await.unwrap();
    fresh.data = Some([("k".to_owned(), "w".to_owned())].into());
    let replaced = cms.replace("a", &PostParams::default(), &fresh).await.unwrap();
    assert_ne!(replaced.metadata.resource_version, created.metadata.resource_version);
    assert_eq!(reason(&cms.replace("a", &PostParams::default(), &fresh).await.unwrap_err()), "409 Conflict");

    // generateName, a missing namespace, selectors.
    let named: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-", "labels": {"app": "y"}}})).unwrap();
    let generated = cms.create(&PostParams::default(), &named).await.unwrap();
    assert!(generated.metadata.name.unwrap().starts_with("gen-"));
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    assert_eq!(reason(&nowhere.create(&PostParams::default(), &cm).await.unwrap_err()), "404 NotFound");
    let by_label = cms.list(&ListParams::default().labels("app=x")).await.unwrap();
    assert_eq!(by_label.items.len(), 1);
    let by_field = cms.list(&ListParams::default().fields("metadata.name!=a")).await.unwrap();
    assert_eq!(by_field.items.len(), 1);
    assert!(by_label.metadata.resource_version.is_some());
}

#[tokio::test]
async fn generation_moves_on_spec_changes_and_status_only_through_its_subresource() {
    let (_e, _r, client) = start().await;
    Api::<CustomResourceDefinition>::all(client.clone()).create(&PostParams::default(), &crd()).await.unwrap();
    let api = faw_api(&client, "default");
    let created = api.create(&PostParams::default(), &faw("w")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // A status write through the main resource is ignored; through /status it lands without a generation bump.
    let patch = json!({"status": {"webhookId": "x"}});
    let main = api.patch("w", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert!(main.data.get("status").is_none());
    let status = api.patch_status("w", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(status.data["status"]["webhookId"], "x");
    assert_eq!(status.metadata.generation, Some(1));

    // A label change is not a spec change; an events change is.
    let labelled = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let changed = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"events": ["user.create"]}}))).await.unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(changed.data["status"]["webhookId"], "x", "status survives spec writes");

    // The CRD's schema is enforced: an event name with a space is Invalid.
    let bad = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"events": ["user delete"]}}))).await.unwrap_err();
    assert_eq!(reason(&bad), "422 Invalid");
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_take_their_dependents_along() {
    let (emulator, _r, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner", "finalizers": ["x/y"]}})).unwrap();
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
    let reference = owner.controller_owner_ref(&()).unwrap();
    let dependent: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dependent", "ownerReferences": [reference]}})).unwrap();
    cms.create(&PostParams::default(), &dependent).await.unwrap();

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    let held = cms.get("owner").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some(), "a finalizer keeps the object, marked");
    assert!(cms.get_opt("dependent").await.unwrap().is_some());

    let ops = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "x/y"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
    cms.patch("owner", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(ops).unwrap())).await.unwrap();
    assert!(cms.get_opt("owner").await.unwrap().is_none(), "last finalizer gone: deleted");
    assert!(cms.get_opt("dependent").await.unwrap().is_none(), "garbage collected with its owner");

    // Deleting a namespace deletes what is in it.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "temp"}})).unwrap()).await.unwrap();
    let temp: Api<ConfigMap> = Api::namespaced(client.clone(), "temp");
    temp.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap()).await.unwrap();
    nss.delete("temp", &DeleteParams::default()).await.unwrap();
    assert!(nss.get_opt("temp").await.unwrap().is_none());
    assert!(emulator.list("", "v1", "configmaps", Some("temp")).is_empty());
}

#[tokio::test]
async fn server_side_apply_creates_owns_fields_and_conflicts_without_force() {
    let (_e, _r, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"a": "1", "b": "2"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    });
    let first = deployments.patch("d", &PatchParams::apply("one"), &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(first.metadata.managed_fields.unwrap()[0].manager.as_deref(), Some("one"));

    // Re-applying the same config writes nothing.
    let again = deployments.patch("d", &PatchParams::apply("one"), &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(again.metadata.resource_version, first.metadata.resource_version);

    // Another manager setting the same field: Conflict, unless forced.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 5}});
    let conflict = deployments.patch("d", &PatchParams::apply("two"), &Patch::Apply(&other)).await.unwrap_err();
    assert_eq!(reason(&conflict), "409 Conflict");
    let forced = deployments.patch("d", &PatchParams::apply("two").force(), &Patch::Apply(&other)).await.unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(5));

    // A manager dropping a field it applied removes it.
    let mut fewer = applied.clone();
    fewer["metadata"]["labels"] = json!({"a": "1"});
    let dropped = deployments.patch("d", &PatchParams::apply("one").force(), &Patch::Apply(&fewer)).await.unwrap();
    assert_eq!(dropped.metadata.labels.unwrap().len(), 1);

    // Strategic merge keys containers by name.
    let strategic =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "y"}, {"name": "sidecar", "image": "z"}]}}}});
    let merged = deployments.patch("d", &PatchParams::default(), &Patch::Strategic(&strategic)).await.unwrap();
    let containers = merged.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.iter().map(|c| c.image.clone().unwrap()).collect::<Vec<_>>(), ["y", "z"]);

    // Secrets: stringData is stored as data.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}});
    let stored = secrets.patch("s", &PatchParams::apply("one"), &Patch::Apply(&s)).await.unwrap();
    assert_eq!(stored.data.unwrap()["k"].0, b"v");
}

#[tokio::test]
async fn leases_are_won_by_one_writer() {
    let (_e, _r, client) = start().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}})).unwrap();
    let stored = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut mine = stored.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let mut theirs = stored.clone();
    theirs.spec.as_mut().unwrap().holder_identity = Some("c".into());
    leases.replace("l", &PostParams::default(), &mine).await.unwrap();
    assert_eq!(reason(&leases.replace("l", &PostParams::default(), &theirs).await.unwrap_err()), "409 Conflict");
}

#[tokio::test]
async fn watches_stream_in_order_resume_bookmark_time_out_and_expire() {
    let (emulator, _r, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let from = list.metadata.resource_version.unwrap();
    for name in ["a", "b"] {
        cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()).await.unwrap();
    }
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    // Resume from a resourceVersion: every change after it, in order.
    let params = WatchParams::default().timeout(2);
    let events: Vec<WatchEvent<ConfigMap>> = cms.watch(&params, &from).await.unwrap().take(3).try_collect().await.unwrap();
    let seen: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.clone().unwrap()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.clone().unwrap()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, ["ADDED a", "ADDED b", "DELETED a"]);

    // Bookmarks arrive when asked for; the stream ends at timeoutSeconds.
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let started = std::time::Instant::now();
    let rest: Vec<WatchEvent<ConfigMap>> = cms.watch(&WatchParams::default().timeout(3), &rv).await.unwrap().try_collect().await.unwrap();
    assert!(rest.iter().any(|e| matches!(e, WatchEvent::Bookmark(_))), "{rest:?}");
    assert!(started.elapsed() >= Duration::from_secs(2) && started.elapsed() < Duration::from_secs(10));

    // A resourceVersion older than what is retained: 410 Gone (reason Expired).
    emulator.store().compact();
    let expired: Vec<WatchEvent<ConfigMap>> =
        cms.watch(&WatchParams::default().timeout(2), &from).await.unwrap().try_collect().await.unwrap();
    match &expired[..] {
        [WatchEvent::Error(e)] => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected one 410 error, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_runtime_watchers_run_without_relisting() {
    let (emulator, _r, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let metadata: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "default");
    let (store, writer) = kube::runtime::reflector::store();
    let full = tokio::spawn(
        kube::runtime::reflector(writer, watcher(cms.clone(), watcher::Config::default()))
            .applied_objects()
            .take(3)
            .try_collect::<Vec<_>>(),
    );
    let meta = tokio::spawn(watcher(metadata, watcher::Config::default()).applied_objects().take(3).try_collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for name in ["x", "y", "z"] {
        cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()).await.unwrap();
    }
    let full = tokio::time::timeout(Duration::from_secs(10), full).await.unwrap().unwrap().unwrap();
    let meta = tokio::time::timeout(Duration::from_secs(10), meta).await.unwrap().unwrap().unwrap();
    assert_eq!(full.len(), 3);
    assert_eq!(meta.iter().map(|m| m.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["x", "y", "z"]);
    assert_eq!(store.state().len(), 3);
    let lists =
        emulator.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with("/configmaps") && !r.query.contains("watch=")).count();
    assert_eq!(lists, 2, "one initial list per watcher, no relist loop");
}

#[tokio::test]
async fn events_are_served_by_both_apis() {
    let (_e, _r, client) = start().await;
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"), "events"),
    );
    let event: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
        "reason": "Reconciled", "note": "ok", "type": "Normal", "action": "Reconcile", "reportingController": "x", "reportingInstance": "y",
        "eventTime": "2026-11-27T00:00:00.000000Z", "regarding": {"kind": "ConfigMap", "name": "a", "namespace": "default"}
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    core.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "e2"}, "involvedObject": {"name": "a"}, "reason": "R"})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(events.list(&ListParams::default()).await.unwrap().items.len(), 1);
    let core_list: Value =
        serde_json::to_value(core.list(&ListParams::default().fields("involvedObject.name=a")).await.unwrap().items).unwrap();
    assert_eq!(core_list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_crds_cel_rules_refuse_what_cannot_work_with_their_messages() {
    let (_e, _r, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd()).await.unwrap();
    let api = faw_api(&client, "default");
    let with = |name: &str, extra: Value| {
        let mut object = serde_json::to_value(faw(name)).unwrap();
        object["spec"].as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value::<DynamicObject>(object).unwrap()
    };
    let message = |e: kube::Error| match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => format!("{other}"),
    };
    let postgres = json!({"type": "postgres", "urlSecretRef": {"name": "pg", "key": "url"}});
    let route = |extra: Value| {
        let mut r = json!({"name": "r", "events": ["user.delete"], "http": {"url": "http://todo/"}});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    };
    let refused = [
        (json!({"routes": [route(json!({"ack": "durable"}))]}), "a route with ack: durable needs receiver.store"),
        (
            json!({"routes": [route(json!({"retry": {"maxAttempts": 3}}))]}),
            "retry, ordering, delayMs and concurrency are for durable routes",
        ),
        (
            json!({"receiver": {"store": postgres.clone()}, "routes": [route(json!({"ack": "sync", "ordering": "perObject"}))]}),
            "retry, ordering, delayMs and concurrency are for durable routes",
        ),
        (json!({"receiver": {"store": {"type": "postgres"}}}), "urlSecretRef goes with type: postgres"),
        (json!({"receiver": {"store": {"type": "none", "size": "1Gi"}}}), "size and storageClassName are for type: embedded"),
        (json!({"routes": [{"name": "r", "events": ["*"], "http": {"url": "http://x/"}, "log": {}}]}), "exactly one action"),
    ];
    for (i, (extra, expected)) in refused.into_iter().enumerate() {
        let error = api.create(&PostParams::default(), &with(&format!("bad-{i}"), extra.clone())).await.unwrap_err();
        let text = message(error);
        assert!(text.starts_with("422 ") && text.contains(expected), "{extra}: expected {expected:?} in {text}");
    }
    let accepted = json!({"receiver": {"store": postgres}, "routes": [route(json!({"retry": {"maxAttempts": 3}, "ordering": "perObject"})),
        {"name": "audit", "events": ["*"], "ack": "sync", "log": {}}]});
    api.create(&PostParams::default(), &with("good", accepted)).await.unwrap();

    // A transition rule: an embedded store's volume size is fixed once set.
    let embedded = with("sized", json!({"receiver": {"store": {"type": "embedded", "size": "1Gi"}}}));
    api.create(&PostParams::default(), &embedded).await.unwrap();
    let grow = json!({"spec": {"receiver": {"store": {"type": "embedded", "size": "5Gi"}}}});
    let error = api.patch("sized", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&grow)).await.unwrap_err();
    let text = message(error);
    assert!(text.starts_with("422 ") && text.contains("cannot change"), "{text}");
    let to_postgres =
        json!({"spec": {"receiver": {"store": {"type": "postgres", "size": null, "urlSecretRef": {"name": "pg", "key": "url"}}}}});
    api.patch("sized", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&to_postgres)).await.unwrap();

    // Every example in examples/ passes the schema and the rules.
    let examples = fusionhook_tests::tools::workspace_root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "yaml")) {
        let mut object: Value = serde_yaml::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
        if object["kind"] != "FusionAuthWebhook" {
            continue;
        }
        object["metadata"]["namespace"] = json!("default");
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        api.create(&PostParams::default(), &object).await.unwrap_or_else(|e| panic!("{}: {}", entry.path().display(), message(e)));
        checked += 1;
    }
    assert!(checked >= 2, "the todo example and its durable variant");
}

//! What fusionhook claims about Kubernetes, on a real API server (etcd,
//! kube-apiserver and kube-controller-manager built from Kubernetes' Go
//! modules: `fusionhook_tests::control_plane`), with the real `kubectl`
//! and `helm` 4: the CRD's schema and CEL rules, every example, the chart
//! installed by helm, its ValidatingAdmissionPolicy as the server evaluates
//! it, and RBAC. One control plane for this binary, one namespace per test.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use fusionhook_tests::control_plane::ControlPlane;
use fusionhook_tests::release::OperatorProcess;
use fusionhook_tests::tools::{tools, workspace_root};
use serde_json::{Value, json};

/// One operator process at a time: each watches every namespace.
static OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn plane() -> &'static ControlPlane {
    ControlPlane::shared()
}

/// The chart installed as the README says (`helm install fusionhook
/// charts/fusionhook --namespace fusionhook`, the operator's replicas at 0:
/// no kubelet runs its pods here), once per control plane: the CRD comes
/// with it. Then the README's upgrade step for the CRD.
fn crd() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        fusionhook_tests::release::install(plane(), "fusionhook", "fusionhook").unwrap();
        let upgraded = plane().kubectl(&["apply", "-f", "crds/"]).unwrap();
        assert!(upgraded.contains("fusionauthwebhooks.fusionhook.dev"), "{upgraded}");
    });
}

/// `examples/<name>` with its namespace replaced by `namespace`, in a file.
fn example_in(name: &str, namespace: &str, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(workspace_root().join("examples").join(name)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text.replace("namespace: todo", &format!("namespace: {namespace}"))).unwrap();
    path
}

/// examples/todo-cleanup.yaml applied with `spec` patched in; the server's refusal, if any.
fn apply_variant(namespace: &str, name: &str, change: impl FnOnce(&mut Value)) -> Result<String, String> {
    apply_example("todo-cleanup.yaml", namespace, name, change)
}

/// `examples/<example>` applied as `namespace/name` with `change` made; the server's refusal, if any.
fn apply_example(example: &str, namespace: &str, name: &str, change: impl FnOnce(&mut Value)) -> Result<String, String> {
    let mut object: Value =
        serde_yaml::from_str(&std::fs::read_to_string(workspace_root().join("examples").join(example)).unwrap()).unwrap();
    object["metadata"] = json!({"name": name, "namespace": namespace});
    change(&mut object);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("variant.json");
    std::fs::write(&file, serde_json::to_vec(&object).unwrap()).unwrap();
    plane().kubectl(&["apply", "-f", file.to_str().unwrap()]).map_err(|e| e.to_string())
}

/// A change to a resource, named, and the refusal it must get.
type Change = Box<dyn FnOnce(&mut Value)>;

#[test]
fn every_example_applies_and_the_schema_and_cel_rules_refuse_what_the_readme_says() {
    crd();
    let ns = plane().namespace("examples").unwrap();
    plane().kubectl(&["-n", &ns, "create", "secret", "generic", "fusionauth-api-key", "--from-literal=api-key=k"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["todo-cleanup.yaml", "todo-cleanup-durable.yaml"] {
        let file = example_in(name, &ns, dir.path());
        // Client-side validation on: the server's OpenAPI documents include the CRD's schema.
        let applied = plane().kubectl(&["apply", "-f", file.to_str().unwrap()]).unwrap();
        assert!(applied.contains("created") || applied.contains("configured"), "{applied}");
    }
    let table = plane().kubectl(&["-n", &ns, "get", "faw"]).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "WEBHOOK", "ID", "EVENTS", "AGE"], "{table}");

    // The README's list of what the schema and CEL refuse at apply time,
    // each with the message the server gives.
    let cases: Vec<(&str, Change, &str)> = vec![
        ("no-events", Box::new(|o: &mut Value| o["spec"]["events"] = json!([])), "spec.events"),
        ("bad-event-name", Box::new(|o: &mut Value| o["spec"]["events"] = json!(["user_delete!"])), "spec.events"),
        ("zero-timeout", Box::new(|o: &mut Value| o["spec"]["delivery"]["connectTimeoutMs"] = json!(0)), "connectTimeoutMs"),
        (
            "global-and-tenants",
            Box::new(|o: &mut Value| o["spec"]["tenants"] = json!({"global": true, "tenantIds": ["e872a880-b14f-6d62-c312-cb40f22af465"]})),
            "tenants: set global: true or list tenantIds, not both",
        ),
        ("two-actions", Box::new(|o: &mut Value| o["spec"]["routes"][0]["log"] = json!({})), "a route has exactly one action: http or log"),
        (
            "url-secret-without-postgres",
            Box::new(|o: &mut Value| {
                o["spec"]["receiver"] = json!({"store": {"type": "embedded", "urlSecretRef": {"name": "pg", "key": "url"}}})
            }),
            "store: urlSecretRef goes with type: postgres, and postgres needs it",
        ),
    ];
    for (name, change, message) in cases {
        let refused = apply_variant(&ns, name, change).expect_err(name);
        assert!(refused.contains(message), "{name}: the server said {refused}");
    }
}

/// `helm …` as the admin; its stdout, or its stderr as the error.
fn helm(args: &[&str]) -> Result<String, String> {
    fusionhook_tests::release::helm(plane(), args).map_err(|e| e.to_string())
}

#[test]
fn the_chart_installs_with_helm_and_the_server_enforces_its_fusionauth_url_policy() {
    crd();
    let release_ns = plane().namespace("chart").unwrap();
    let ns = plane().namespace("policed").unwrap();
    let allowed = "http://fusionauth.allowed.svc:9011";
    // A second release in the cluster: the CRD is there already.
    let installed = helm(&[
        "install",
        &format!("fh-{release_ns}"),
        "charts/fusionhook",
        "--skip-crds",
        "--namespace",
        &release_ns,
        "--set",
        "operator.replicas=0",
        "--set",
        &format!("operator.watchNamespaces[0]={ns}"),
        "--set",
        "fusionAuthUrlPolicy.enabled=true",
        "--set",
        &format!("fusionAuthUrlPolicy.allowedUrls[0]={allowed}"),
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(installed.is_ok(), "{installed:?}");
    let status = helm(&["status", &format!("fh-{release_ns}"), "--namespace", &release_ns]).unwrap();
    assert!(status.contains("STATUS: deployed"), "{status}");

    // The policy takes a moment to be loaded by the API server (a new name
    // each try: kubectl sends nothing for an object it finds unchanged).
    let mut attempt = 0;
    let refused = wait_refused(|| {
        attempt += 1;
        apply_variant(&ns, &format!("elsewhere-{attempt}"), |o| o["spec"]["fusionAuth"]["url"] = json!("http://attacker.example:9011"))
    });
    assert!(
        refused.contains("spec.fusionAuth.url http://attacker.example:9011 is not a FusionAuth instance this cluster allows"),
        "{refused}"
    );
    apply_variant(&ns, "allowed", |o| o["spec"]["fusionAuth"]["url"] = json!(allowed)).unwrap();
    apply_variant(&ns, "allowed-path", |o| o["spec"]["fusionAuth"]["url"] = json!(format!("{allowed}/"))).unwrap();
    // Issue 24, item 13: the status subresource is covered too (the
    // operator removes the webhook from status.fusionAuthUrl after a move).
    let patch = json!({"status": {"fusionAuthUrl": "http://attacker.example:9011"}}).to_string();
    let refused =
        plane().kubectl(&["-n", &ns, "patch", "faw", "allowed", "--subresource=status", "--type=merge", "-p", &patch]).unwrap_err();
    assert!(refused.to_string().contains("status.fusionAuthUrl http://attacker.example:9011 is not a FusionAuth instance"), "{refused}");
    let patch = json!({"status": {"fusionAuthUrl": allowed}}).to_string();
    plane().kubectl(&["-n", &ns, "patch", "faw", "allowed", "--subresource=status", "--type=merge", "-p", &patch]).unwrap();
    // Namespaces the release's operator does not watch are not its to police.
    let other = plane().namespace("unpoliced").unwrap();
    apply_variant(&other, "elsewhere", |o| o["spec"]["fusionAuth"]["url"] = json!("http://fusionauth.other.svc:9011")).unwrap();
    let uninstalled = helm(&["uninstall", &format!("fh-{release_ns}"), "--namespace", &release_ns, "--wait"]);
    assert!(uninstalled.is_ok(), "{uninstalled:?}");
}

/// Tries `apply` until the server refuses it (an admission policy is
/// enforced a moment after it is created); the refusal.
fn wait_refused(mut apply: impl FnMut() -> Result<String, String>) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match apply() {
            Err(refused) => return refused,
            Ok(accepted) => {
                assert!(std::time::Instant::now() < deadline, "never refused: {accepted}");
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
    }
}

/// A server that records every request it gets (method, path and the
/// Authorization header): where an API key must never go.
async fn recorder() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = calls.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            let auth = request.headers().get("authorization").map(|v| v.to_str().unwrap_or("?").to_owned()).unwrap_or_default();
            seen.lock().unwrap().push(format!("{} {} {auth}", request.method(), request.uri()));
            "{}"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls)
}

/// The Role for plugin users docs/plugin.md gives (its YAML block), for `name`.
fn readme_plugin_rules(name: &str) -> Value {
    let readme = std::fs::read_to_string(workspace_root().join("docs/plugin.md")).unwrap();
    let start = readme.find("What a user of the plugin needs in the namespace:").unwrap();
    let block = &readme[start..];
    let yaml = &block[block.find("```yaml\n").unwrap() + 8..];
    let yaml = &yaml[..yaml.find("```").unwrap()];
    let rules: Value = serde_yaml::from_str(&yaml.replace("NAME", name)).unwrap();
    rules["rules"].clone()
}

/// `kubectl fusionhook ARGS` as user `alice`; (success, stdout, stderr).
fn plugin_as(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let plugin = fusionhook_tests::binaries::built("fusionhook-cli", "kubectl-fusionhook").unwrap();
    let output = Command::new(plugin).args(args).env("KUBECONFIG", kubeconfig).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// User `alice`, bound in `ns` to the Role docs/plugin.md gives for `name`;
/// her kubeconfig.
fn plugin_user(ns: &str, name: &str) -> std::path::PathBuf {
    bind_alice(ns, readme_plugin_rules(name).as_array().unwrap().clone())
}

/// User `alice`, bound in `ns` to a Role of `rules`; her kubeconfig.
fn bind_alice(ns: &str, rules: Vec<Value>) -> std::path::PathBuf {
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "plugin-user", "namespace": ns}, "rules": rules});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "plugin-user", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "plugin-user"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rbac.json");
    std::fs::write(&file, serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": [role, binding]})).unwrap()).unwrap();
    plane().kubectl(&["apply", "-f", file.to_str().unwrap()]).unwrap();
    plane().kubeconfig_for_user("alice").unwrap()
}

fn plugin_user_without_the_proxy_rule(ns: &str, name: &str) {
    let rules: Vec<Value> = readme_plugin_rules(name)
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["resources"].as_array().unwrap().iter().any(|x| x.as_str().unwrap().ends_with("/proxy")))
        .cloned()
        .collect();
    let alice = bind_alice(ns, rules);
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = plugin_as(&alice, &["status", name, "-n", ns]);
    assert!(ok && out.contains("ReceiverAvailable"), "status with the README's Role: {out}{err}");
    assert!(out.contains("switches: not read (add --fusionauth"), "status reads no API key Secret by default: {out}");
    // No kubelet runs pods here: a Pod object with the receiver's labels,
    // made Ready by hand, is what the plugin finds and asks to prove itself.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{name}-receiver-fake"), "namespace": ns, "labels": {
        "app.kubernetes.io/name": "fusionhook-receiver", "app.kubernetes.io/instance": name, "app.kubernetes.io/managed-by": "fusionhook-operator"}},
        "spec": {"containers": [{"name": "receiver", "image": "fusionhook:test"}]}});
    let file = dir.path().join("pod.json");
    std::fs::write(&file, serde_json::to_vec(&pod).unwrap()).unwrap();
    plane().kubectl(&["apply", "-f", file.to_str().unwrap()]).unwrap();
    let ready = r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#;
    plane()
        .kubectl(&["-n", ns, "patch", "pod", &format!("{name}-receiver-fake"), "--subresource=status", "--type=merge", "-p", ready])
        .unwrap();
    let (ok, out, err) = plugin_as(&alice, &["deliveries", name, "-n", ns]);
    assert!(!ok, "{out}");
    assert!(err.contains("you need RBAC `get` and `create` on `pods/proxy`"), "the README's message: {err}");
    // The README's Role lets a person read, not inject events or replay:
    // those tokens are in Secrets it does not grant.
    for (command, secret) in
        [(vec!["send", name, "--event", "user.delete"], "admin-ingest"), (vec!["replay", name, "--dead"], "admin-replay")]
    {
        let (ok, out, err) = plugin_as(&alice, &[command.as_slice(), &["-n", ns]].concat());
        assert!(!ok, "{out}");
        assert!(err.contains(&format!("cannot read Secret {name}-receiver-{secret}: forbidden")), "{err}");
    }
    for scope in ["ingest", "replay"] {
        let denied = Command::new(&tools().kubectl)
            .args(["-n", ns, "get", "secret", &format!("{name}-receiver-admin-{scope}")])
            .env("KUBECONFIG", &alice)
            .output()
            .unwrap();
        assert!(!denied.status.success() && String::from_utf8_lossy(&denied.stderr).contains("Forbidden"));
    }
}

/// `status.conditions[type]` as (status, reason, message).
fn condition(namespace: &str, name: &str, kind: &str) -> Option<(String, String, String)> {
    let object: Value = serde_json::from_str(&plane().kubectl(&["-n", namespace, "get", "faw", name, "-o", "json"]).ok()?).ok()?;
    let c = object["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)?.clone();
    Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned(), c["message"].as_str().unwrap_or_default().to_owned()))
}

fn eventually(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_under_the_charts_service_account_works_and_names_a_permission_it_lacks() {
    let _one_operator = OPERATOR.lock().await;
    crd();
    let fusionauth = fusionhook_tests::fusionauth_emulator::Emulator::new(fusionhook_tests::fusionauth_emulator::Settings {
        api_key: "rbac-key".into(),
        retry_delay: std::time::Duration::ZERO,
    });
    let running = fusionauth.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let ns = plane().namespace("rbac").unwrap();
    plane().kubectl(&["-n", &ns, "create", "secret", "generic", "fusionauth-api-key", "--from-literal=api-key=rbac-key"]).unwrap();
    let kubeconfig = plane().kubeconfig_for_service_account("fusionhook", "fusionhook").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let operator = OperatorProcess::start(plane(), "fusionhook", "fusionhook", &kubeconfig, dir.path(), &[]).unwrap();
    let url = format!("http://{}", running.addr);
    apply_variant(&ns, "hook", |o| o["spec"]["fusionAuth"]["url"] = json!(url)).unwrap();

    // Everything it builds, it may build: the receiver's objects appear and
    // the status says it waits for the receiver (no kubelet runs pods here).
    let objects = || plane().kubectl(&["-n", &ns, "get", "deployment,service,configmap,secret", "-o", "name"]).unwrap_or_default();
    assert!(
        tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(60), || {
            let o = objects();
            o.contains("deployment.apps/hook-receiver") && o.contains("service/hook-receiver") && o.contains("secret/hook-receiver-auth")
        })),
        "{}\n{}",
        objects(),
        operator.log()
    );
    let waiting = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(30), || condition(&ns, "hook", "ReceiverAvailable").is_some_and(|c| c.0 == "False"))
    });
    assert!(waiting, "{:?}\n{}", condition(&ns, "hook", "ReceiverAvailable"), operator.log());

    // Issue 24, item 13: a person with status rights (and no admission
    // policy in the way) points status.fusionAuthUrl elsewhere: the
    // operator does not send the API key there.
    let (attacker, calls) = recorder().await;
    let patch = json!({"status": {"fusionAuthUrl": format!("http://{attacker}")}}).to_string();
    plane().kubectl(&["-n", &ns, "patch", "faw", "hook", "--subresource=status", "--type=merge", "-p", &patch]).unwrap();
    let warned = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(30), || {
            plane().kubectl(&["-n", &ns, "get", "events.events.k8s.io", "-o", "json"]).is_ok_and(|e| e.contains("StatusUrlNotOurs"))
        })
    });
    assert!(warned, "a Warning says why the status URL is not used\n{}", operator.log());
    assert_eq!(calls.lock().unwrap().clone(), Vec::<String>::new(), "nothing reached the URL someone else wrote");
    assert!(!operator.log().contains("rbac-key"));

    // A person bound to the README's least-privilege Role for plugin users,
    // less the proxy rule: status works, send is refused with what to grant.
    plugin_user_without_the_proxy_rule(&ns, "hook");

    // One rule less: creating Services is refused by the API server.
    let role: Value = serde_json::from_str(&plane().kubectl(&["get", "clusterrole", "fusionhook", "-o", "json"]).unwrap()).unwrap();
    let rules: Vec<Value> = role["rules"].as_array().unwrap().iter().filter(|r| r["resources"] != json!(["services"])).cloned().collect();
    let patch = json!({"rules": rules}).to_string();
    plane().kubectl(&["patch", "clusterrole", "fusionhook", "--type=merge", "-p", &patch]).unwrap();
    plane().kubectl(&["-n", &ns, "delete", "service", "hook-receiver"]).unwrap();
    let named = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            condition(&ns, "hook", "Ready").is_some_and(|c| c.2.contains("services") && c.2.contains("forbidden"))
        })
    });
    let ready = condition(&ns, "hook", "Ready");
    // Put the rule back for whoever runs next.
    plane().kubectl(&["patch", "clusterrole", "fusionhook", "--type=merge", "-p", &json!({"rules": role["rules"]}).to_string()]).unwrap();
    assert!(named, "the condition names the refused permission: {ready:?}\n{}", operator.log());
}

/// The API key Secret in `namespace` (`key`, which the FusionAuth emulator
/// accepts) and the operator under the chart's ServiceAccount, watching
/// only `namespace` (what other tests left is not its business), with `env`
/// besides the chart Deployment's.
fn operator_in(namespace: &str, key: &str, dir: &Path, env: &[(&str, &str)]) -> OperatorProcess {
    plane()
        .kubectl(&["-n", namespace, "create", "secret", "generic", "fusionauth-api-key", &format!("--from-literal=api-key={key}")])
        .unwrap();
    let kubeconfig = plane().kubeconfig_for_service_account("fusionhook", "fusionhook").unwrap();
    let env: Vec<(&str, &str)> = env.iter().copied().chain([("FUSIONHOOK_NAMESPACES", namespace)]).collect();
    OperatorProcess::start(plane(), "fusionhook", "fusionhook", &kubeconfig, dir, &env).unwrap()
}

/// A FusionAuth admin turns on the tenants' switch for `event`
/// (transaction level None).
fn switch_on(fusionauth: &fusionhook_tests::fusionauth_emulator::Emulator, event: &str) {
    fusionauth.state().tenants.values_mut().for_each(|t| {
        t["eventConfiguration"]["events"][event] = json!({"enabled": true, "transactionType": "None"});
    });
}

/// Waits until FusionAuth reaches Service `service` of `namespace` through
/// a ready endpoint of its EndpointSlice (the operator's `Ready` says the
/// Deployment is available; the EndpointSlice controller and the node's
/// resolver follow within moments).
fn wait_reachable(fusionauth: &fusionhook_tests::fusionauth_emulator::Emulator, namespace: &str, service: &str) -> bool {
    let host = format!("{service}.{namespace}.svc");
    tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(30), || fusionauth.state().resolve.get(&host).is_some_and(|a| !a.is_empty()))
    })
}

/// `kubectl get -o json` of one object.
fn get(namespace: &str, what: &str) -> Value {
    plane().kubectl(&["-n", namespace, "get", what, "-o", "json"]).map_or(Value::Null, |o| serde_json::from_str(&o).unwrap())
}

/// Issue 23: an embedded store grows in place. Its claims are bound
/// through a StorageClass with `allowVolumeExpansion` (the stand-in storage
/// driver provisions and resizes, as no CSI driver runs here); raising
/// `spec.receiver.store.size` grows every claim and replaces the
/// StatefulSet without deleting its pods or rolling them; a size below the
/// volumes' is refused by the API server; a class that cannot expand
/// becomes `StoreGrown` `StoreCannotGrow` while everything else is still
/// applied, and the size can go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_grows_in_place_and_never_shrinks() {
    let _one_operator = OPERATOR.lock().await;
    crd();
    let fusionauth = fusionhook_tests::fusionauth_emulator::Emulator::new(fusionhook_tests::fusionauth_emulator::Settings {
        api_key: "growth-key".into(),
        retry_delay: std::time::Duration::ZERO,
    });
    let running = fusionauth.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let ns = plane().namespace("growth").unwrap();
    plane().kubectl(&["-n", &ns, "create", "secret", "generic", "fusionauth-api-key", "--from-literal=api-key=growth-key"]).unwrap();
    let client = plane().client().await.unwrap();
    fusionhook_tests::volumes::storage_class(&client, "stand-in-expandable", true).await.unwrap();
    fusionhook_tests::volumes::storage_class(&client, "stand-in-fixed", false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _driver = fusionhook_tests::volumes::StorageDriver::start(client, &ns, dir.path().to_owned());
    let kubeconfig = plane().kubeconfig_for_service_account("fusionhook", "fusionhook").unwrap();
    let operator = OperatorProcess::start(plane(), "fusionhook", "fusionhook", &kubeconfig, dir.path(), &[]).unwrap();
    let url = format!("http://{}", running.addr);
    let store = |name: &str, class: &str, size: &str, timeout_ms: u32| {
        let (class, size, url) = (class.to_owned(), size.to_owned(), url.clone());
        apply_variant(&ns, name, move |o| {
            o["spec"]["fusionAuth"]["url"] = json!(url);
            o["spec"]["receiver"] = json!({"replicas": 2, "store": {"type": "embedded", "size": size, "storageClassName": class}});
            o["spec"]["routes"][0]["http"]["timeoutMs"] = json!(timeout_ms);
        })
    };
    let wait = |what: &str, limit: u64, done: &mut dyn FnMut() -> bool| {
        let ok = tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(limit), done));
        assert!(ok, "{what}\n{}\n{}", get(&ns, "faw"), operator.log());
    };
    store("grows", "stand-in-expandable", "1Gi", 1500).unwrap();
    store("fixed", "stand-in-fixed", "1Gi", 1500).unwrap();
    let claim = |name: &str, n: u32| get(&ns, &format!("pvc/store-{name}-receiver-{n}"));
    let bound = |name: &str, size: &str| {
        (0..2).all(|n| {
            let c = claim(name, n);
            c["status"]["phase"] == "Bound"
                && c["status"]["capacity"]["storage"] == size
                && c["spec"]["resources"]["requests"]["storage"] == size
        })
    };
    let store_size = |name: &str| get(&ns, &format!("faw/{name}"))["status"]["storeSize"].clone();
    wait("claims bound, status.storeSize 1Gi", 90, &mut || {
        bound("grows", "1Gi") && bound("fixed", "1Gi") && store_size("grows") == "1Gi" && store_size("fixed") == "1Gi"
    });
    let set = get(&ns, "statefulset/grows-receiver");
    let pods_of = |prefix: &str| -> Vec<Value> {
        let pods = get(&ns, "pods");
        let mut ours: Vec<Value> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["name"].as_str().unwrap().starts_with(prefix))
            .cloned()
            .collect();
        ours.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap().to_owned());
        ours
    };
    let uids = |pods: &[Value]| pods.iter().map(|p| p["metadata"]["uid"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let before = uids(&pods_of("grows-receiver-"));
    assert_eq!(before.len(), 2);
    let revision = set["status"]["updateRevision"].clone();
    assert!(revision.is_string(), "{set}");

    // Below the volumes' size is refused at the door, with what it means.
    let refused = store("grows", "stand-in-expandable", "512Mi", 1500).unwrap_err();
    assert!(refused.contains("an embedded store can grow, not shrink below the size its volumes have"), "{refused}");
    let refused = store("grows", "stand-in-fixed", "1Gi", 1500).unwrap_err();
    assert!(refused.contains("storageClassName of an embedded store cannot change"), "{refused}");

    // Growing: both claims grow (the driver resizes them), the StatefulSet
    // is a new object with the new claim template and the same revision,
    // and the pods are the same ones, adopted by it.
    store("grows", "stand-in-expandable", "2Gi", 1500).unwrap();
    wait("claims and claim template at 2Gi, a new StatefulSet", 90, &mut || {
        let now = get(&ns, "statefulset/grows-receiver");
        bound("grows", "2Gi")
            && now["metadata"]["uid"] != set["metadata"]["uid"]
            && now["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    });
    let set = get(&ns, "statefulset/grows-receiver");
    wait("the same pods, owned by the new StatefulSet, at its revision", 30, &mut || {
        let now = get(&ns, "statefulset/grows-receiver");
        let pods = pods_of("grows-receiver-");
        now["status"]["updateRevision"] == revision
            && now["status"]["currentRevision"] == revision
            && uids(&pods) == before
            && pods.iter().all(|p| p["metadata"]["ownerReferences"][0]["uid"] == set["metadata"]["uid"])
    });
    wait("status.storeSize 2Gi, StoreGrown gone", 60, &mut || {
        store_size("grows") == "2Gi" && condition(&ns, "grows", "StoreGrown").is_none()
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(uids(&pods_of("grows-receiver-")), before, "no pod was replaced afterwards");
    let events = get(&ns, "events.events.k8s.io");
    let note = |reason: &str| events["items"].as_array().unwrap().iter().find(|e| e["reason"] == reason).map(|e| e["note"].to_string());
    let growing = note("StoreGrowing");
    assert!(
        growing.as_ref().is_some_and(
            |n| n.contains("store size 1Gi -> 2Gi: volume claims store-grows-receiver-0, store-grows-receiver-1 asked to grow")
        ),
        "{growing:?}"
    );
    let grown = note("StoreGrown");
    assert!(grown.as_ref().is_some_and(|n| n.contains("every volume claim of the store has 2Gi")), "{grown:?}");

    // A StorageClass that cannot expand: a condition that says so and what
    // to do, nothing replaced, and the rest of the spec still applied.
    let fixed = get(&ns, "statefulset/fixed-receiver");
    store("fixed", "stand-in-fixed", "2Gi", 1400).unwrap();
    wait("StoreGrown: StoreCannotGrow", 60, &mut || condition(&ns, "fixed", "StoreGrown").is_some_and(|c| c.1 == "StoreCannotGrow"));
    let message = condition(&ns, "fixed", "StoreGrown").unwrap().2;
    assert!(
        message.contains("StorageClass stand-in-fixed does not allow volume expansion")
            && message.contains("set spec.receiver.store.size back to 1Gi"),
        "{message}"
    );
    wait("the route change applied meanwhile", 60, &mut || {
        let now = get(&ns, "statefulset/fixed-receiver");
        now["metadata"]["generation"].as_i64() > fixed["metadata"]["generation"].as_i64()
    });
    let now = get(&ns, "statefulset/fixed-receiver");
    assert_eq!(now["metadata"]["uid"], fixed["metadata"]["uid"]);
    assert_eq!(now["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert!(bound("fixed", "1Gi") && store_size("fixed") == "1Gi");
    // The way back the message gives: accepted, and the condition goes.
    store("fixed", "stand-in-fixed", "1Gi", 1400).unwrap();
    wait("StoreGrown gone after going back", 60, &mut || condition(&ns, "fixed", "StoreGrown").is_none());
    assert!(!operator.log().contains("growth-key"));
}

/// Issue 21: the whole path on the real control plane. The real Deployment,
/// ReplicaSet and EndpointSlice controllers make the receiver's pod and
/// list it; the stand-in node binds and runs it in a network namespace of
/// its own (a real pod IP); the operator, under the chart's ServiceAccount,
/// sees it available through the real pod status and registers the
/// Service's URL; FusionAuth reaches the pod through the Service's
/// EndpointSlice, and the receiver reaches the todo service on the node's
/// address. Deleting the resource removes the pod (its process stopped by
/// the node) and the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_users_todos_go_through_a_receiver_pod_that_the_real_controllers_run() {
    use fusionhook_tests::fusionauth_emulator::{Emulator, Settings};
    use fusionhook_tests::todo::{TodoService, TodoStore};
    let _one_operator = OPERATOR.lock().await;
    crd();
    let ns = plane().namespace("e2e").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let receiver = fusionhook_tests::binaries::built("fusionhook-receiver", "fusionhook-receiver").unwrap();
    let node = fusionhook_tests::node::Node::start(plane().client().await.unwrap(), &ns, receiver, dir.path()).await.unwrap();
    let fusionauth = Emulator::new(Settings { api_key: "e2e-key".into(), retry_delay: std::time::Duration::ZERO });
    node.resolve_for(&fusionauth);
    let running = fusionauth.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let todos = TodoStore::with(&[("alice", &["buy milk"]), ("bob", &["fix bike"])]);
    let todo = TodoService::start(todos.clone(), std::net::SocketAddr::from((node.host_ip(), 0))).await.unwrap();
    let operator = operator_in(&ns, "e2e-key", dir.path(), &[]);
    let url = format!("http://{}", running.addr);
    let sink = format!("http://{}/users/{{{{event.user.id}}}}/todos", todo.addr);
    apply_variant(&ns, "todo-cleanup", |o| {
        o["spec"]["fusionAuth"]["url"] = json!(url);
        o["spec"]["routes"][0]["http"]["url"] = json!(sink);
    })
    .unwrap();

    // The README's wait, and describe, with the real kubectl.
    let waited = tokio::task::block_in_place(|| {
        plane().kubectl(&["-n", &ns, "wait", "--for=condition=Ready", "faw/todo-cleanup", "--timeout=120s"])
    });
    let ready = waited.as_ref().is_ok_and(|w| w.contains("condition met"));
    let pods = get(&ns, "pods");
    assert!(
        ready,
        "{waited:?} {:?}\npods: {pods}\nnode: {:?}\n{}",
        condition(&ns, "todo-cleanup", "Ready"),
        node.running(),
        operator.log()
    );
    let described = plane().kubectl(&["-n", &ns, "describe", "faw", "todo-cleanup"]).unwrap();
    assert!(described.contains("Reconciled") && described.contains("user.delete"), "{described}");
    let pod = &pods["items"][0];
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(pod["spec"]["nodeName"], node.name, "bound to the stand-in node");
    let ip = node.pod_ip(&name).unwrap().to_string();
    assert_eq!(pod["status"]["podIP"], ip, "a real pod IP, not loopback");
    let slices = get(&ns, "endpointslices");
    let listed = slices["items"].as_array().unwrap().iter().any(|s| {
        s["metadata"]["labels"]["kubernetes.io/service-name"] == "todo-cleanup-receiver"
            && s["endpoints"].as_array().into_iter().flatten().any(|e| e["addresses"][0] == ip.as_str() && e["conditions"]["ready"] == true)
    });
    assert!(listed, "the EndpointSlice controller lists the ready pod: {slices}");

    assert!(wait_reachable(&fusionauth, &ns, "todo-cleanup-receiver"), "no ready endpoint for FusionAuth");
    // A FusionAuth admin turns the tenant's switch on; alice is deleted.
    switch_on(&fusionauth, "user.delete");
    let report = fusionauth.raise(None, json!({"type": "user.delete", "user": {"id": "alice"}})).await.unwrap();
    let delivery = &report.webhooks[0];
    assert!(delivery.succeeded, "{:?}\n{}", delivery.attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), node.log(&name));
    assert_eq!(delivery.url, format!("http://todo-cleanup-receiver.{ns}.svc:8080/events"));
    assert!(todos.todos("alice").is_empty(), "alice's todos are gone");
    assert_eq!(todos.todos("bob"), vec!["fix bike".to_owned()]);

    // The plugin reaches the receiver through the API server's pod proxy
    // (the pod proves it holds the token first): an administrator sends
    // an event through the routes; a person bound to the docs' Role gets
    // the receiver's own answer to a listing (this one keeps no store).
    let (ok, out, err) = plugin_as(
        &plane().kubeconfig,
        &["send", "todo-cleanup", "-n", &ns, "--event", "user.delete", "--set", "user.id=bob", "-o", "json"],
    );
    assert!(ok, "send through the pod proxy: {out}{err}");
    let sent: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((sent["status"].as_u64(), sent["answer"]["outcome"].as_str()), (Some(200), Some("handled")), "{sent}");
    assert!(todos.todos("bob").is_empty(), "bob's todos are gone: the plugin's event ran the route");
    let alice = plugin_user(&ns, "todo-cleanup");
    let (ok, out, err) = plugin_as(&alice, &["deliveries", "todo-cleanup", "-n", &ns]);
    assert!(!ok && err.contains("has no store"), "the receiver's 409, through the proxy: {out}{err}");

    plane().kubectl(&["-n", &ns, "delete", "faw", "todo-cleanup", "--timeout=60s"]).unwrap();
    let gone = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            node.running().is_empty() && get(&ns, "pods")["items"].as_array().is_some_and(Vec::is_empty)
        })
    });
    assert!(gone, "the pod and its process are gone: {:?}", node.running());
    assert!(fusionauth.state().webhooks.is_empty(), "the webhook is removed from FusionAuth");
}

/// Issue 21: durable delivery on the real control plane. The real
/// StatefulSet controller makes the receiver's pod and its claim (bound by
/// the stand-in storage driver, mounted by the stand-in node); FusionAuth
/// gets 200 while the todo service is down; the pod is deleted with the
/// delivery pending, the StatefulSet controller makes it again on the same
/// claim, and the new process delivers once the service is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_survives_its_pod_being_deleted_and_made_again_on_its_claim() {
    use fusionhook_tests::fusionauth_emulator::{Emulator, Settings};
    use fusionhook_tests::todo::{TodoService, TodoStore};
    let _one_operator = OPERATOR.lock().await;
    crd();
    let ns = plane().namespace("durable").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = plane().client().await.unwrap();
    fusionhook_tests::volumes::storage_class(&client, "stand-in-durable", true).await.unwrap();
    let _driver = fusionhook_tests::volumes::StorageDriver::start(client.clone(), &ns, dir.path().join("volumes"));
    let receiver = fusionhook_tests::binaries::built("fusionhook-receiver", "fusionhook-receiver").unwrap();
    let node = fusionhook_tests::node::Node::start(client, &ns, receiver, &dir.path().join("node")).await.unwrap();
    let fusionauth = Emulator::new(Settings { api_key: "durable-key".into(), retry_delay: std::time::Duration::ZERO });
    node.resolve_for(&fusionauth);
    let running = fusionauth.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let todos = TodoStore::with(&[("alice", &["buy milk"])]);
    todos.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let todo = TodoService::start(todos.clone(), std::net::SocketAddr::from((node.host_ip(), 0))).await.unwrap();
    let operator = operator_in(&ns, "durable-key", dir.path(), &[]);
    let url = format!("http://{}", running.addr);
    let sink = format!("http://{}/users/{{{{event.user.id}}}}/todos", todo.addr);
    apply_example("todo-cleanup-durable.yaml", &ns, "hook", |o| {
        o["spec"]["fusionAuth"]["url"] = json!(url);
        o["spec"]["routes"][0]["http"]["url"] = json!(sink);
        o["spec"]["routes"][0]["retry"] = json!({"maxAgeSeconds": 600, "scheduleMs": [300]});
        o["spec"]["receiver"]["store"]["storageClassName"] = json!("stand-in-durable");
    })
    .unwrap();
    let ready = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(120), || condition(&ns, "hook", "Ready").is_some_and(|c| c.0 == "True"))
    });
    assert!(ready, "{:?}\npods: {}\n{}", condition(&ns, "hook", "Ready"), get(&ns, "pods"), operator.log());
    let claim = get(&ns, "pvc/store-hook-receiver-0");
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    assert!(wait_reachable(&fusionauth, &ns, "hook-receiver"), "no ready endpoint for FusionAuth");

    switch_on(&fusionauth, "user.delete");
    let report = fusionauth.raise(None, json!({"type": "user.delete", "user": {"id": "alice"}})).await.unwrap();
    let attempts: Vec<_> = report.webhooks[0].attempts.iter().map(|a| a.status_code).collect();
    assert!(
        report.webhooks[0].succeeded,
        "committed to the store: FusionAuth gets 200 while the todo service is down: {attempts:?}\n{}",
        node.log("hook-receiver-0")
    );
    let first = get(&ns, "pod/hook-receiver-0")["metadata"]["uid"].clone();
    plane().kubectl(&["-n", &ns, "delete", "pod", "hook-receiver-0", "--timeout=60s"]).unwrap();
    let again = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            let pod = get(&ns, "pod/hook-receiver-0");
            pod["metadata"]["uid"] != first
                && pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    });
    assert!(again, "the StatefulSet controller made the pod again and it is ready: {}", get(&ns, "pod/hook-receiver-0"));
    assert_eq!(todos.todos("alice"), vec!["buy milk".to_owned()], "not delivered while the service is down");

    todos.fail_with(None);
    let delivered = tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(30), || todos.todos("alice").is_empty()));
    assert!(delivered, "the new pod delivers what the old one committed: {}", node.log("hook-receiver-0"));
}

/// Issue 21: the operator at scale on the real API server (the figures in
/// docs/benchmarks.md come from `bench/operator.sh`, which runs this for
/// each count it is given, 1,000 and 5,000 by default). The stand-in node reports every receiver pod running
/// and ready without starting it (hundreds of receivers would measure the
/// two cores, not the operator); the real controllers make every
/// Deployment's ReplicaSet, pods and EndpointSlices. All Ready, then one
/// full periodic resync writes nothing to FusionAuth or Kubernetes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_at_scale_on_the_real_api_server_and_a_resync_writes_nothing() {
    use fusionhook_tests::fusionauth_emulator::{Emulator, Settings};
    let n: usize = std::env::var("FUSIONHOOK_SCALE_RESOURCES").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let _one_operator = OPERATOR.lock().await;
    crd();
    let ns = plane().namespace("scale").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _node = fusionhook_tests::node::Node::start_simulated(plane().client().await.unwrap(), &ns, dir.path()).await.unwrap();
    let fusionauth = Emulator::new(Settings { api_key: "scale-key".into(), retry_delay: std::time::Duration::ZERO });
    let running = fusionauth.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let operator = operator_in(&ns, "scale-key", dir.path(), &[("FUSIONHOOK_REQUEUE_INTERVAL", "20s")]);
    let template: Value =
        serde_yaml::from_str(&std::fs::read_to_string(workspace_root().join("examples/todo-cleanup.yaml")).unwrap()).unwrap();
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let mut o = template.clone();
            o["metadata"] = json!({"name": format!("hook-{i}"), "namespace": ns});
            o["spec"]["fusionAuth"]["url"] = json!(format!("http://{}", running.addr));
            o["spec"]["receiver"] = json!({"externalUrl": format!("http://127.0.0.1:9/hook-{i}")});
            o
        })
        .collect();
    let file = dir.path().join("resources.json");
    std::fs::write(&file, serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap()).unwrap();
    let started = std::time::Instant::now();
    plane().kubectl(&["apply", "-f", file.to_str().unwrap()]).unwrap();
    // Counted every 2 s with one list (a kubectl every 300 ms would load
    // the API server that is measured).
    let resources: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        plane().client().await.unwrap(),
        &ns,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("fusionhook.dev", "v1alpha1", "FusionAuthWebhook")),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300.max(n as u64 / 3));
    let mut ready = false;
    while !ready && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let listed = resources.list(&kube::api::ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        let is_ready = |o: &kube::api::DynamicObject| {
            o.data["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
        };
        ready = listed.iter().filter(|o| is_ready(o)).count() == n;
    }
    let elapsed = started.elapsed();
    assert!(ready, "not all {n} resources became Ready\n{}", operator.log().lines().rev().take(20).collect::<Vec<_>>().join("\n"));
    assert_eq!(fusionauth.state().webhooks.len(), n);

    // Let the last writes settle, then watch one full periodic resync.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let before = [
        operator.metric("fusionhook_operator_fusionauth_writes_total").await,
        operator.metric("fusionhook_operator_fusionauth_requests_total").await,
        operator.metric("fusionhook_operator_kubernetes_writes_total").await,
        operator.metric("fusionhook_operator_reconciles_total").await,
    ];
    let resync_started = std::time::Instant::now();
    let mut resynced = 0.0;
    while resync_started.elapsed() < std::time::Duration::from_secs(25 + n as u64 / 20) {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        resynced = operator.metric("fusionhook_operator_reconciles_total").await - before[3];
        if resynced >= n as f64 && resync_started.elapsed() >= std::time::Duration::from_secs(23) {
            break;
        }
    }
    let fa_writes = operator.metric("fusionhook_operator_fusionauth_writes_total").await - before[0];
    let fa_calls = operator.metric("fusionhook_operator_fusionauth_requests_total").await - before[1];
    let kube_writes = operator.metric("fusionhook_operator_kubernetes_writes_total").await - before[2];
    println!(
        "operator at scale (real API server): {n} resources Ready in {:.1} s; resync: {resynced} reconciles, {fa_calls} FusionAuth calls, {fa_writes} FusionAuth writes, {kube_writes} Kubernetes writes; operator peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        operator.peak_rss_mib()
    );
    assert!(resynced >= n as f64, "a full resync happened ({resynced} reconciles)");
    assert_eq!(fa_writes, 0.0, "the resync made FusionAuth writes");
    assert!(fa_calls * 2.0 <= resynced, "{fa_calls} FusionAuth calls for {resynced} reconciles");
    assert_eq!(kube_writes, 0.0, "the resync made Kubernetes writes");
}

/// Issue 21: backfill on the real control plane. Every receiver is down
/// (the node stops them; their pods stay, not ready, and leave the
/// Service's EndpointSlice) while FusionAuth raises events it commits and
/// cannot deliver; once they are back, the operator finds them in the
/// Webhook Event Log and hands each to the receiver through the API
/// server's pod proxy (the pod proves it holds the ingest token first),
/// and each reaches the sink once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_missed_while_every_receiver_was_down_are_handed_over_through_the_pod_proxy_once() {
    use fusionhook_tests::fusionauth_emulator::{Emulator, Settings};
    use fusionhook_tests::todo::{TodoService, TodoStore};
    let _one_operator = OPERATOR.lock().await;
    crd();
    let ns = plane().namespace("backfill").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let receiver = fusionhook_tests::binaries::built("fusionhook-receiver", "fusionhook-receiver").unwrap();
    let node = fusionhook_tests::node::Node::start(plane().client().await.unwrap(), &ns, receiver, dir.path()).await.unwrap();
    let fusionauth = Emulator::new(Settings { api_key: "backfill-key".into(), retry_delay: std::time::Duration::ZERO });
    fusionauth.configure_event_log(true, None);
    node.resolve_for(&fusionauth);
    let running = fusionauth.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let sink = TodoStore::with(&[]);
    let service = TodoService::start(sink.clone(), std::net::SocketAddr::from((node.host_ip(), 0))).await.unwrap();
    let operator = operator_in(&ns, "backfill-key", dir.path(), &[]);
    let (url, sink_url) = (format!("http://{}", running.addr), format!("http://{}/sink", service.addr));
    apply_variant(&ns, "hook", |o| {
        o["spec"]["fusionAuth"]["url"] = json!(url);
        o["spec"]["events"] = json!(["user.create"]);
        o["spec"]["routes"] = json!([{"name": "sink", "events": ["*"], "http": {"method": "POST", "url": sink_url, "body": "event"}}]);
        o["spec"]["backfill"] = json!({"enabled": true, "intervalSeconds": 10});
    })
    .unwrap();
    let available = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(120), || {
            condition(&ns, "hook", "Ready").is_some_and(|c| c.0 == "True")
                && condition(&ns, "hook", "BackfillAvailable").is_some_and(|c| c.0 == "True")
        })
    });
    assert!(available, "{:?} {:?}\n{}", condition(&ns, "hook", "Ready"), condition(&ns, "hook", "BackfillAvailable"), operator.log());
    switch_on(&fusionauth, "user.create");
    let (rogue, impostor) = rogue_pod(&ns, node.host_ip()).await;

    node.pause();
    let down = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            let slices = get(&ns, "endpointslices");
            // The slices of port `http`: the rogue pod has only `admin`.
            let http = slices["items"].as_array().into_iter().flatten().filter(|s| s["ports"].to_string().contains("\"http\""));
            http.flat_map(|s| s["endpoints"].as_array().into_iter().flatten()).all(|e| e["conditions"]["ready"] != true)
        })
    });
    assert!(down, "no ready endpoint left: {}", get(&ns, "endpointslices"));
    let mut committed = Vec::new();
    for i in 0..30 {
        let report = fusionauth.raise(None, json!({"type": "user.create", "user": {"id": format!("user-{i}")}})).await.unwrap();
        assert!(report.webhooks.iter().all(|d| !d.succeeded), "FusionAuth could not deliver while every receiver was down");
        committed.push(report.event["id"].as_str().unwrap().to_owned());
    }
    node.resume();

    let received = || sink.event_counts();
    let all = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(90), || committed.iter().all(|id| received().contains_key(id)))
    });
    assert!(all, "{} of {} handed over\n{}", received().len(), committed.len(), get(&ns, "faw/hook")["status"]["backfill"]);
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    let counts = received();
    assert!(counts.values().all(|n| *n == 1), "each once, a later pass repeats none: {counts:?}");
    assert_eq!(get(&ns, "faw/hook")["status"]["backfill"]["handedOver"].as_u64(), Some(30));

    // The impostor was asked to prove itself through the pod proxy, and
    // shown nothing: no token, no event; `send` from the plugin neither.
    let check = || {
        let seen = impostor.lock().unwrap().clone();
        assert!(!seen.is_empty(), "the impostor {rogue} was asked to prove itself");
        for (path, token, body) in &seen {
            assert_eq!(path, "/v1/prove", "{seen:?}");
            assert!(!token, "no token was sent to it: {seen:?}");
            assert!(committed.iter().all(|id| !body.contains(id.as_str())), "no event was sent to it: {body}");
        }
    };
    check();
    assert!(!get(&ns, &format!("pod/{rogue}")).is_null(), "the impostor is still there");
    let asked = impostor.lock().unwrap().len();
    let (ok, out, err) = plugin_as(&plane().kubeconfig, &["send", "hook", "-n", &ns, "--event", "user.create", "-o", "json"]);
    assert!(ok && out.contains("\"status\": 200"), "send reaches a pod that proved itself: {out}{err}");
    assert!(impostor.lock().unwrap().len() > asked, "the plugin asked the impostor too, first by name");
    check();
    plane().kubectl(&["delete", "node", &format!("rogue-{ns}"), "--wait=false"]).unwrap();
}

/// Every request an impostor pod got: (path, whether it carried an admin token, body).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, bool, String)>>>;

/// A pod in `namespace` that carries the receiver pods' labels and a port
/// named `admin`, ready, first by name, but no workload's: it is bound to
/// a Node no kubelet serves and its status, written as a kubelet would,
/// points at a server on `host` that records what it gets and claims to
/// hold the token with a made-up proof. Its name and what it saw.
async fn rogue_pod(namespace: &str, host: std::net::Ipv4Addr) -> (String, Seen) {
    let seen: Seen = std::sync::Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let record = record.clone();
        async move {
            let path = request.uri().path().to_owned();
            let token = request.headers().contains_key("x-fusionhook-token") || request.headers().contains_key("authorization");
            let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
            record.lock().unwrap().push((path, token, String::from_utf8_lossy(&body).into_owned()));
            axum::Json(json!({"pod": "aaa-rogue", "proofs": ["00", "ab".repeat(32)], "outcome": "handled"}))
        }
    });
    // The receiver's admin port, which the operator and the plugin ask
    // through the pod proxy.
    let port = 8081;
    let listener = tokio::net::TcpListener::bind((host, port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let labels = get(namespace, "deployment/hook-receiver")["spec"]["template"]["metadata"]["labels"].clone();
    // A Node of its own: the pod garbage collector deletes pods bound to a
    // node that does not exist.
    let node = format!("rogue-{namespace}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.json");
    std::fs::write(&file, json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}).to_string()).unwrap();
    plane().kubectl(&["create", "-f", file.to_str().unwrap()]).unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "aaa-rogue", "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "rogue", "ports": [{"name": "admin", "containerPort": port}]}]}});
    let file = dir.path().join("rogue.json");
    std::fs::write(&file, pod.to_string()).unwrap();
    plane().kubectl(&["create", "-f", file.to_str().unwrap()]).unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Running", "podIP": host.to_string(), "podIPs": [{"ip": host.to_string()}], "hostIP": host.to_string(), "startTime": now,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "c", "image": "rogue", "imageID": "", "ready": true, "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}}]}});
    plane()
        .kubectl(&["-n", namespace, "patch", "pod", "aaa-rogue", "--subresource=status", "--type=merge", "-p", &status.to_string()])
        .unwrap();
    ("aaa-rogue".to_owned(), seen)
}

/// One test's world on the real server: a namespace, the stand-in node
/// running the receiver pods of it (FusionAuth resolving its Services
/// through their EndpointSlices), the FusionAuth emulator accepting `key`
/// on a loopback address of its own (served from the start or not), and a
/// todo service on the node's address.
struct Scene {
    ns: String,
    dir: tempfile::TempDir,
    node: fusionhook_tests::node::Node,
    fusionauth: fusionhook_tests::fusionauth_emulator::Emulator,
    serving: Option<fusionhook_tests::fusionauth_emulator::RunningEmulator>,
    fusionauth_addr: std::net::SocketAddr,
    todos: std::sync::Arc<fusionhook_tests::todo::TodoStore>,
    todo: fusionhook_tests::todo::TodoService,
    _volumes: fusionhook_tests::volumes::StorageDriver,
}

/// The StorageClass of the scenes' stand-in storage driver.
const SCENE_CLASS: &str = "stand-in-scenes";

impl Scene {
    async fn start(prefix: &str, key: &str, serving: bool, todos: &[(&str, &[&str])]) -> Self {
        use fusionhook_tests::fusionauth_emulator::{Emulator, Settings};
        use fusionhook_tests::todo::{TodoService, TodoStore};
        crd();
        let ns = plane().namespace(prefix).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let receiver = fusionhook_tests::binaries::built("fusionhook-receiver", "fusionhook-receiver").unwrap();
        let client = plane().client().await.unwrap();
        fusionhook_tests::volumes::storage_class(&client, SCENE_CLASS, true).await.unwrap();
        let volumes = fusionhook_tests::volumes::StorageDriver::start(client.clone(), &ns, dir.path().join("volumes"));
        let node = fusionhook_tests::node::Node::start(client, &ns, receiver, &dir.path().join("node")).await.unwrap();
        let fusionauth = Emulator::new(Settings { api_key: key.into(), retry_delay: std::time::Duration::ZERO });
        node.resolve_for(&fusionauth);
        let fusionauth_addr = std::net::SocketAddr::from(([127, 0, 0, 1], fusionhook_tests::control_plane::free_port().unwrap()));
        let serving = if serving { Some(fusionauth.serve(fusionauth_addr).await.unwrap()) } else { None };
        let todos = TodoStore::with(todos);
        let todo = TodoService::start(todos.clone(), std::net::SocketAddr::from((node.host_ip(), 0))).await.unwrap();
        Self { ns, dir, node, fusionauth, serving, fusionauth_addr, todos, todo, _volumes: volumes }
    }

    /// examples/todo-cleanup.yaml applied as `name`, pointed at this
    /// scene's FusionAuth and todo service, with `change` made.
    fn apply(&self, name: &str, change: impl FnOnce(&mut Value)) {
        let url = format!("http://{}", self.fusionauth_addr);
        let sink = format!("http://{}/users/{{{{event.user.id}}}}/todos", self.todo.addr);
        apply_variant(&self.ns, name, |o| {
            o["spec"]["fusionAuth"]["url"] = json!(url);
            o["spec"]["routes"][0]["http"]["url"] = json!(sink);
            change(o);
        })
        .unwrap();
    }

    /// Waits (`secs` at most) until condition `kind` of `name` is `status`.
    fn wait_condition(&self, name: &str, kind: &str, status: &str, secs: u64) -> bool {
        tokio::task::block_in_place(|| {
            eventually(std::time::Duration::from_secs(secs), || condition(&self.ns, name, kind).is_some_and(|c| c.0 == status))
        })
    }

    /// Raises `user.delete` for `user` until FusionAuth's delivery is
    /// answered 200 (a new pod's endpoint may lag behind its readiness).
    async fn delete_until_answered(&self, user: &str) -> bool {
        for _ in 0..50 {
            let report = self.fusionauth.raise(None, json!({"type": "user.delete", "user": {"id": user}})).await.unwrap();
            if report.webhooks.iter().all(|d| d.succeeded) && !report.webhooks.is_empty() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        false
    }

    /// The reasons of the Events of this scene's namespace.
    fn event_reasons(&self) -> Vec<String> {
        let events = get(&self.ns, "events.events.k8s.io");
        events["items"].as_array().into_iter().flatten().filter_map(|e| e["reason"].as_str().map(str::to_owned)).collect()
    }

    /// Whether an Event with `reason` shows in this scene's namespace
    /// within 30 s (Events are published after the status, best effort).
    fn eventually_event(&self, reason: &str) -> bool {
        tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(30), || self.event_reasons().iter().any(|r| r == reason)))
    }

    /// The Lease `name` of the chart's namespace: its holder.
    fn lease_holder(name: &str) -> Option<String> {
        let lease = get("fusionhook", &format!("lease/{name}"));
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    }
}

/// Issue 21, the emulator's scenarios 2, 4 and 5 on the real control plane:
/// FusionAuth down at the start is a condition and the resource recovers
/// on its own once it is back; a spec edit reaches FusionAuth and an edit
/// there is repaired; a receiver process killed (as by the OOM
/// killer) is restarted by the node, its pod's `restartCount` says so and
/// deliveries go on; deleting a resource removes its webhook from
/// FusionAuth (`deletionPolicy: Delete`) or leaves it (`Orphan`), and the
/// real garbage collector takes every receiver object and pod along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fusionauth_down_at_first_a_killed_receiver_and_deletion_that_removes_or_orphans_the_webhook() {
    let _one_operator = OPERATOR.lock().await;
    let mut scene = Scene::start("lifecycle", "lifecycle-key", false, &[("alice", &["buy milk"])]).await;
    let ns = scene.ns.clone();
    let operator = operator_in(&ns, "lifecycle-key", scene.dir.path(), &[("FUSIONHOOK_REQUEUE_INTERVAL", "2s")]);
    scene.apply("gone", |_| {});
    let unreachable = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            condition(&ns, "gone", "WebhookRegistered").is_some_and(|c| c.0 == "False" && c.1 == "FusionAuthUnreachable")
        })
    });
    assert!(unreachable, "{:?}\n{}", condition(&ns, "gone", "WebhookRegistered"), operator.log());
    assert_eq!(condition(&ns, "gone", "Ready").map(|c| c.1), Some("FusionAuthUnreachable".to_owned()));

    scene.serving = Some(scene.fusionauth.serve(scene.fusionauth_addr).await.unwrap());
    assert!(scene.wait_condition("gone", "Ready", "True", 60), "recovers on its own: {:?}", condition(&ns, "gone", "Ready"));

    // The emulator's scenario 2: a spec edit with kubectl reaches FusionAuth;
    // an edit of the webhook in FusionAuth, or its deletion, is repaired
    // (the periodic check, every 2 s here), under the same id.
    let patch = json!({"spec": {"events": ["user.delete", "user.create"]}}).to_string();
    plane().kubectl(&["-n", &ns, "patch", "faw", "gone", "--type=merge", "-p", &patch]).unwrap();
    let id: uuid::Uuid = get(&ns, "faw/gone")["status"]["webhookId"].as_str().unwrap().parse().unwrap();
    let webhook = || scene.fusionauth.state().webhooks.get(&id).cloned().unwrap_or_default();
    let wait =
        |done: &dyn Fn(&Value) -> bool| tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(30), || done(&webhook())));
    assert!(wait(&|w| w["eventsEnabled"] == json!({"user.create": true, "user.delete": true})), "{}", webhook());
    let url = webhook()["url"].clone();
    scene.fusionauth.state().webhooks.get_mut(&id).unwrap()["url"] = json!("http://attacker.example/events");
    assert!(wait(&|w| w["url"] == url), "repaired: {}", webhook());
    scene.fusionauth.state().webhooks.remove(&id);
    assert!(wait(&|w| w["url"] == url), "made again under the same id: {}", webhook());

    // The OOM killer takes the receiver; the node restarts it.
    let pod = scene.node.running().into_iter().find(|p| p.starts_with("gone-receiver-")).unwrap();
    assert!(scene.node.kill(&pod));
    let restarted = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            let status = get(&ns, &format!("pod/{pod}"))["status"].clone();
            status["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)
                && status["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    });
    assert!(restarted, "{}", get(&ns, &format!("pod/{pod}"))["status"]);
    assert!(wait_reachable(&scene.fusionauth, &ns, "gone-receiver"));
    switch_on(&scene.fusionauth, "user.delete");
    let report = scene.fusionauth.raise(None, json!({"type": "user.delete", "user": {"id": "alice"}})).await.unwrap();
    assert!(report.webhooks[0].succeeded && scene.todos.todos("alice").is_empty(), "delivery goes on: {:?}", report.webhooks[0].attempts);

    scene.apply("kept", |o| o["spec"]["deletionPolicy"] = json!("Orphan"));
    assert!(scene.wait_condition("kept", "Ready", "True", 120), "{:?}", condition(&ns, "kept", "Ready"));
    let id = |name: &str| get(&ns, &format!("faw/{name}"))["status"]["webhookId"].as_str().unwrap().parse::<uuid::Uuid>().unwrap();
    let (gone_id, kept_id) = (id("gone"), id("kept"));
    plane().kubectl(&["-n", &ns, "delete", "faw", "gone", "kept", "--timeout=60s"]).unwrap();
    assert!(!scene.fusionauth.state().webhooks.contains_key(&gone_id), "Delete: the webhook is gone from FusionAuth");
    assert!(scene.fusionauth.state().webhooks.contains_key(&kept_id), "Orphan: the webhook stays");
    let ours = |kinds: &str| -> Vec<String> {
        let names = plane().kubectl(&["-n", &ns, "get", kinds, "-o", "name"]).unwrap_or_default();
        names.lines().filter(|n| n.contains("/gone-") || n.contains("/kept-")).map(str::to_owned).collect()
    };
    let collected = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            ours("deployments,replicasets,services,configmaps,secrets,pods").is_empty() && scene.node.running().is_empty()
        })
    });
    assert!(
        collected,
        "the garbage collector takes every receiver object: {:?}",
        ours("deployments,replicasets,services,configmaps,secrets,pods")
    );
}

/// Issue 21, the emulator's scenario 6 on the real control plane: two
/// operators under the chart's ServiceAccount share the chart's Lease (its
/// Role lets them get and update only that one; the real API server's
/// optimistic concurrency decides); only the holder calls FusionAuth or
/// writes to Kubernetes; the holder killed without releasing it, the
/// standby takes over once the Lease expires and reconciles; stopped as a
/// pod is (SIGTERM), an operator gives the Lease up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_writes_and_a_standby_takes_over_on_the_real_api_server() {
    let _one_operator = OPERATOR.lock().await;
    let scene = Scene::start("election", "election-key", true, &[]).await;
    let ns = scene.ns.clone();
    let (a_dir, b_dir) = (scene.dir.path().join("a"), scene.dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    // The previous test's operator was killed: its hold on the Lease runs
    // out within the chart's 15 s.
    let mut a = Some(operator_in(&ns, "election-key", &a_dir, &[("POD_NAME", "op-a")]));
    let held = || Scene::lease_holder("fusionhook");
    assert!(
        tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(60), || held().as_deref() == Some("op-a"))),
        "{:?}\n{}",
        held(),
        a.as_ref().unwrap().log()
    );
    let kubeconfig = plane().kubeconfig_for_service_account("fusionhook", "fusionhook").unwrap();
    let env = [("FUSIONHOOK_NAMESPACES", ns.as_str()), ("POD_NAME", "op-b")];
    let b = OperatorProcess::start(plane(), "fusionhook", "fusionhook", &kubeconfig, &b_dir, &env).unwrap();
    scene.apply("first", |_| {});
    assert!(scene.wait_condition("first", "Ready", "True", 120), "{:?}", condition(&ns, "first", "Ready"));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let leader = a.as_ref().unwrap();
    assert_eq!(leader.metric("fusionhook_operator_leader ").await, 1.0, "{}", leader.log());
    let b_up = tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(30), || b.metrics_addr().is_some()));
    assert!(b_up, "the standby serves its metrics: {}", b.log());
    assert_eq!(b.metric("fusionhook_operator_leader ").await, 0.0, "{}", b.log());
    assert_eq!(b.metric("fusionhook_operator_fusionauth_requests_total").await, 0.0, "the standby never calls FusionAuth");
    assert_eq!(b.metric("fusionhook_operator_kubernetes_writes_total").await, 0.0, "nor writes to Kubernetes");

    // Killed without a chance to release: the standby takes over once the
    // Lease (the chart's 15 s) expires.
    let killed = std::time::Instant::now();
    drop(a.take());
    assert!(tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(60), || held().as_deref() == Some("op-b"))));
    let takeover = killed.elapsed();
    println!("takeover after {takeover:?}");
    assert!(takeover < std::time::Duration::from_secs(30), "{takeover:?}");
    scene.apply("second", |_| {});
    assert!(
        scene.wait_condition("second", "Ready", "True", 120),
        "the new leader reconciles: {:?}\n{}",
        condition(&ns, "second", "Ready"),
        b.log()
    );
    assert!(b.metric("fusionhook_operator_fusionauth_requests_total").await > 0.0, "{}", b.log());

    let log = b.log.clone();
    assert!(tokio::task::block_in_place(|| b.terminate(std::time::Duration::from_secs(20))), "stops within the grace period");
    let released = held();
    assert!(
        released.is_none(),
        "a stopped operator gives the Lease up: {released:?}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Issue 21, the emulator's scenario 3 on the real control plane: the
/// Authorization Secret rotated while FusionAuth delivers every 20 ms. The
/// operator rolls the receiver Deployment out (the real Deployment
/// controller: a new pod first, then the old one terminated, the
/// EndpointSlice following) with both values accepted meanwhile, then
/// FusionAuth's header, then only the new value; not one delivery fails,
/// and the config versions no pod runs any more are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_authorization_secret_rolls_out_through_the_real_controllers_without_a_failed_delivery() {
    let _one_operator = OPERATOR.lock().await;
    let auth = json!({"authorizationSecretRef": {"name": "hook-auth", "key": "value"}});
    let header = |w: &Value| w["headers"]["Authorization"] == "second-value";
    rotation("rotation", auth, &header).await;
}

/// The emulator's scenario 3b on the real control plane: the HMAC
/// signing secret rotated the same way; FusionAuth signs with a new key
/// once every pod accepts both, and the old key is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_hmac_secret_moves_fusionauth_to_a_new_key_through_the_real_controllers_without_a_failed_delivery() {
    let _one_operator = OPERATOR.lock().await;
    let auth = json!({"signature": {"algorithm": "HS256", "hmacSecretRef": {"name": "hook-auth", "key": "value"}}});
    let first = std::sync::Mutex::new(Value::Null);
    let new_key = |w: &Value| {
        let key = w["signatureConfiguration"]["signingKeyId"].clone();
        let mut first = first.lock().unwrap();
        if first.is_null() {
            *first = key.clone();
        }
        key.is_string() && key != *first
    };
    let scene = rotation("hmac", auth, &new_key).await;
    let first: uuid::Uuid = first.lock().unwrap().as_str().unwrap().parse().unwrap();
    assert!(!scene.fusionauth.state().keys.contains_key(&first), "the old key is deleted from FusionAuth");
}

/// A credential in Secret `hook-auth` (`value`), used as `auth` says,
/// rotated while FusionAuth delivers every 20 ms: `switched` tells when
/// FusionAuth's webhook uses the new one (it is called once before the
/// rotation). Asserts that no delivery failed through both rollouts.
/// The caller holds [`OPERATOR`].
async fn rotation(prefix: &str, auth: Value, switched: &(dyn Fn(&Value) -> bool + Sync)) -> Scene {
    let scene = Scene::start(prefix, "rotation-key", true, &[]).await;
    let ns = scene.ns.clone();
    plane().kubectl(&["-n", &ns, "create", "secret", "generic", "hook-auth", "--from-literal=value=first-value"]).unwrap();
    let operator = operator_in(&ns, "rotation-key", scene.dir.path(), &[]);
    let sink = format!("http://{}/events", scene.todo.addr);
    scene.apply("hook", |o| {
        o["spec"]["auth"] = auth;
        o["spec"]["events"] = json!(["user.update"]);
        o["spec"]["routes"][0]["events"] = json!(["user.update"]);
        o["spec"]["routes"][0]["http"]["method"] = json!("POST");
        o["spec"]["routes"][0]["http"]["url"] = json!(sink);
    });
    assert!(scene.wait_condition("hook", "Ready", "True", 120), "{:?}\n{}", condition(&ns, "hook", "Ready"), operator.log());
    assert!(wait_reachable(&scene.fusionauth, &ns, "hook-receiver"));
    switch_on(&scene.fusionauth, "user.update");
    let first_pod = scene.node.running();
    let id: uuid::Uuid = get(&ns, "faw/hook")["status"]["webhookId"].as_str().unwrap().parse().unwrap();
    let webhook = || scene.fusionauth.state().webhooks.get(&id).cloned().unwrap_or_default();
    assert!(!switched(&webhook()), "FusionAuth starts on the first value");

    let fusionauth = scene.fusionauth.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    let raiser = tokio::spawn(async move {
        let (mut sent, mut failed) = (0, Vec::new());
        while !stopper.load(std::sync::atomic::Ordering::Relaxed) {
            let report = fusionauth.raise(None, json!({"type": "user.update", "user": {"id": "alice"}})).await.unwrap();
            sent += 1;
            for d in report.webhooks.iter().filter(|d| !d.succeeded) {
                failed.push(format!("{:?}", d.attempts.iter().map(|a| (a.status_code, a.exception.clone())).collect::<Vec<_>>()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        (sent, failed)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let patch = json!({"stringData": {"value": "second-value"}}).to_string();
    plane().kubectl(&["-n", &ns, "patch", "secret", "hook-auth", "--type=merge", "-p", &patch]).unwrap();
    let moved = tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(120), || switched(&webhook())));
    assert!(moved, "FusionAuth follows the Secret: {}\n{}", webhook(), operator.log());
    // Deliveries go on until the second rollout (the new value only) is
    // over: one config version is left, it keeps no earlier value, and no
    // pod of an earlier one runs.
    let configs = || -> Vec<String> {
        let maps = get(&ns, "configmaps");
        let ours =
            maps["items"].as_array().into_iter().flatten().filter(|m| m["metadata"]["labels"]["app.kubernetes.io/instance"] == "hook");
        ours.map(|m| m["data"].to_string()).collect()
    };
    let over = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(120), || {
            let running = scene.node.running();
            let configs = configs();
            configs.len() == 1
                && !configs[0].contains("previous")
                && !running.is_empty()
                && running.iter().all(|p| !first_pod.contains(p))
                && get(&ns, "pods")["items"].as_array().is_some_and(|p| p.len() == running.len())
        })
    });
    assert!(over, "both rollouts over: configs {:?}, pods {:?} (first {first_pod:?})", configs(), scene.node.running());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = raiser.await.unwrap();
    assert!(sent > 20, "{sent} deliveries during the rotation");
    assert!(failed.is_empty(), "{} of {sent} deliveries failed during the rotation: {failed:?}", failed.len());
    assert_eq!(condition(&ns, "hook", "Ready").map(|c| c.0), Some("True".to_owned()));
    assert!(scene.todos.received().len() >= sent);
    scene
}

/// Issue 21, the emulator's scenario 12 on the real control plane: two
/// receiver pods of a Deployment share a PostgreSQL store (on the node's
/// address, as a database outside the cluster would be). A delivery whose
/// answer is lost is retried by FusionAuth (a transaction level that
/// commits with one of two webhooks) and the Service's EndpointSlice leads
/// the retry to the other pod, which knows the event: each action happens
/// once. PostgreSQL down: the pods turn not ready and the resource says
/// why, without the connection string; back: Ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receiver_pods_on_one_postgres_store_act_once_when_a_retry_lands_on_the_other_pod() {
    let _one_operator = OPERATOR.lock().await;
    let people = ["ann", "ben", "cid", "dot", "eve"];
    let todos: Vec<(&str, &[&str])> = people.iter().map(|p| (*p, &["a todo"][..])).collect();
    let scene = Scene::start("postgres", "postgres-key", true, &todos).await;
    let ns = scene.ns.clone();
    let host = scene.node.host_ip();
    let mut pg = tokio::task::block_in_place(|| fusionhook_tests::postgres::Postgres::start_for_pods(host));
    plane().kubectl(&["-n", &ns, "create", "secret", "generic", "pg", &format!("--from-literal=url={}", pg.url_at(host))]).unwrap();
    let operator = operator_in(&ns, "postgres-key", scene.dir.path(), &[]);
    scene.apply("hook", |o| {
        o["spec"]["receiver"] = json!({"replicas": 2, "store": {"type": "postgres", "urlSecretRef": {"name": "pg", "key": "url"}}});
    });
    assert!(scene.wait_condition("hook", "Ready", "True", 120), "{:?}\n{}", condition(&ns, "hook", "Ready"), operator.log());
    let both = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            scene.fusionauth.state().resolve.get(&format!("hook-receiver.{ns}.svc")).is_some_and(|a| a.len() == 2)
        })
    });
    assert!(both, "the EndpointSlice lists both pods: {}", get(&ns, "endpointslices"));

    // Another webhook that always answers 200, and a transaction level that
    // commits with one of two: FusionAuth then retries a failed delivery
    // (FACTS.md §c.4); the Service sends the retry to the other pod.
    let ok = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ok_url = format!("http://{}/", ok.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(ok, axum::Router::new().fallback(async || "ok")).await });
    let other = uuid::Uuid::new_v4();
    let webhook = json!({"id": other, "url": ok_url, "eventsEnabled": {"user.delete": true}, "global": true, "connectTimeout": 1000, "readTimeout": 2000});
    scene.fusionauth.state().webhooks.insert(other, webhook);
    scene.fusionauth.state().tenants.values_mut().for_each(|t| {
        t["eventConfiguration"]["events"]["user.delete"] = json!({"enabled": true, "transactionType": "SimpleMajority"});
    });
    for user in people {
        // The pod handles the delivery; its answer is lost on the way back.
        scene.fusionauth.lose_answers(1);
        let report = scene.fusionauth.raise(None, json!({"type": "user.delete", "user": {"id": user}})).await.unwrap();
        let ours = report.webhooks.iter().find(|d| d.webhook_id != other).unwrap();
        assert!(ours.succeeded && ours.attempts.len() == 2, "{report:?}");
        assert!(ours.attempts[0].exception.as_deref().is_some_and(|e| e.contains("lost")), "{report:?}");
        assert_ne!(ours.attempts[0].address, ours.attempts[1].address, "the retry went to the other pod: {report:?}");
    }
    let done = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(30), || people.iter().all(|u| scene.todos.todos(u).is_empty()))
    });
    assert!(done, "every action happened");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(scene.todos.count(&axum::http::Method::DELETE), people.len(), "each once: the other pod knew the event");

    tokio::task::block_in_place(|| pg.stop());
    let unavailable = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            condition(&ns, "hook", "ReceiverAvailable").is_some_and(|c| c.1 == "StoreUnavailable")
        })
    });
    let said = condition(&ns, "hook", "ReceiverAvailable");
    assert!(unavailable, "{said:?}\n{}", get(&ns, "pods")["items"][0]["status"]);
    let message = said.unwrap().2;
    assert!(message.contains("its store cannot commit"), "{message}");
    assert!(!message.contains(&pg.url_at(host)) && !message.contains("postgres://"), "no connection string in status: {message}");
    tokio::task::block_in_place(|| pg.resume());
    assert!(scene.wait_condition("hook", "Ready", "True", 60), "ready again: {:?}", condition(&ns, "hook", "Ready"));
}

/// Issue 21, the emulator's scenario 11 on the real control plane: a
/// resource deleted while its embedded store holds dead deliveries keeps
/// its finalizer (the real API server holds the deletion), FusionAuth's
/// webhook and the Service go, and `Ready` says what to do; the README's
/// command, run with the real `kubectl`, confirms with the StatefulSet's
/// uid, and everything goes, the claim with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_resource_waits_for_its_embedded_store_until_a_person_discards_what_is_dead() {
    let _one_operator = OPERATOR.lock().await;
    let people = ["ann", "ben", "cid"];
    let todos: Vec<(&str, &[&str])> = people.iter().map(|p| (*p, &["a todo"][..])).collect();
    let scene = Scene::start("discard", "discard-key", true, &todos).await;
    let ns = scene.ns.clone();
    scene.todos.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let operator = operator_in(&ns, "discard-key", scene.dir.path(), &[]);
    scene.apply("hook", |o| {
        o["spec"]["receiver"] = json!({"store": {"type": "embedded", "size": "64Mi", "storageClassName": SCENE_CLASS}});
        o["spec"]["routes"][0]["retry"] = json!({"maxAttempts": 2, "scheduleMs": [100]});
    });
    assert!(scene.wait_condition("hook", "Ready", "True", 120), "{:?}\n{}", condition(&ns, "hook", "Ready"), operator.log());
    assert!(wait_reachable(&scene.fusionauth, &ns, "hook-receiver"));
    switch_on(&scene.fusionauth, "user.delete");
    for user in people {
        assert!(scene.delete_until_answered(user).await, "answered 200 while the service is down");
    }

    plane().kubectl(&["-n", &ns, "delete", "faw", "hook", "--wait=false"]).unwrap();
    let kept = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            condition(&ns, "hook", "Ready").is_some_and(|c| c.1 == "OldStoreKept" && c.2.contains("3 dead"))
        })
    });
    assert!(kept, "{:?}\n{}", condition(&ns, "hook", "Ready"), operator.log());
    let message = condition(&ns, "hook", "Ready").unwrap().2;
    assert!(message.contains(&format!("kubectl -n {ns} port-forward pod/hook-receiver-0 8081")), "{message}");
    let forgotten = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(30), || {
            scene.fusionauth.state().webhooks.is_empty() && get(&ns, "service/hook-receiver").is_null()
        })
    });
    assert!(forgotten, "FusionAuth no longer calls it, nothing routes to it");
    assert!(scene.eventually_event("OldStoreKept"), "{:?}", scene.event_reasons());
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(!get(&ns, "faw/hook").is_null(), "still there: the finalizer holds it");

    // The README's command, as a person runs it.
    let readme = "kubectl -n NS annotate fusionauthwebhook NAME fusionhook.dev/discard-store=$(kubectl -n NS get sts NAME-receiver -o jsonpath='{.metadata.uid}') --overwrite";
    let kubectl_dir = tools().kubectl.parent().unwrap().to_owned();
    let path = format!("{}:{}", kubectl_dir.display(), std::env::var("PATH").unwrap_or_default());
    let confirmed = Command::new("sh")
        .args(["-c", &readme.replace("NS", &ns).replace("NAME", "hook")])
        .env("KUBECONFIG", &plane().kubeconfig)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(confirmed.status.success(), "{}", String::from_utf8_lossy(&confirmed.stderr));
    let gone = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            get(&ns, "faw/hook").is_null() && get(&ns, "pvc/store-hook-receiver-0").is_null() && scene.node.running().is_empty()
        })
    });
    assert!(gone, "the resource, its claim and its pod go: {} {:?}", get(&ns, "pvc/store-hook-receiver-0"), scene.node.running());
    assert!(scene.eventually_event("OldStoreDiscarded"), "{:?}", scene.event_reasons());
}

/// Issue 21, the emulator's scenario 10 on the real control plane: an
/// embedded store switched to PostgreSQL while it holds pending
/// deliveries. A Deployment on PostgreSQL takes FusionAuth's deliveries
/// (the Service's selector narrowed to it, the real EndpointSlice
/// controller following); the old StatefulSet, its pod and its claim stay
/// and say why until the store has delivered everything, then go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_switched_to_postgres_is_kept_until_it_has_delivered_everything() {
    let _one_operator = OPERATOR.lock().await;
    let people = ["ann", "ben", "cid", "dot", "eve", "fay"];
    let todos: Vec<(&str, &[&str])> = people.iter().map(|p| (*p, &["a todo"][..])).collect();
    let scene = Scene::start("switch", "switch-key", true, &todos).await;
    let ns = scene.ns.clone();
    scene.todos.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let host = scene.node.host_ip();
    let pg = tokio::task::block_in_place(|| fusionhook_tests::postgres::Postgres::start_for_pods(host));
    plane().kubectl(&["-n", &ns, "create", "secret", "generic", "pg", &format!("--from-literal=url={}", pg.url_at(host))]).unwrap();
    let operator = operator_in(&ns, "switch-key", scene.dir.path(), &[]);
    scene.apply("hook", |o| {
        o["spec"]["receiver"] = json!({"replicas": 1, "store": {"type": "embedded", "size": "64Mi", "storageClassName": SCENE_CLASS}});
        o["spec"]["routes"][0]["retry"] = json!({"scheduleMs": [300]});
    });
    assert!(scene.wait_condition("hook", "Ready", "True", 120), "{:?}\n{}", condition(&ns, "hook", "Ready"), operator.log());
    assert!(wait_reachable(&scene.fusionauth, &ns, "hook-receiver"));
    switch_on(&scene.fusionauth, "user.delete");
    let (before, after) = people.split_at(people.len() / 2);
    for user in before {
        assert!(scene.delete_until_answered(user).await, "answered 200 while the service is down");
    }

    let patch = json!({"spec": {"receiver": {"store": {"type": "postgres", "urlSecretRef": {"name": "pg", "key": "url"}, "size": null, "storageClassName": null}}}});
    plane().kubectl(&["-n", &ns, "patch", "faw", "hook", "--type=merge", "-p", &patch.to_string()]).unwrap();
    let kept = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(120), || {
            condition(&ns, "hook", "OldStoreDrained").is_some_and(|c| c.1 == "OldStoreKept")
                && condition(&ns, "hook", "Ready").is_some_and(|c| c.0 == "True")
        })
    });
    assert!(kept, "{:?} {:?}\n{}", condition(&ns, "hook", "OldStoreDrained"), condition(&ns, "hook", "Ready"), operator.log());
    let message = condition(&ns, "hook", "OldStoreDrained").unwrap().2;
    assert!(message.contains(&format!("holds {} pending and 0 dead deliveries", before.len())), "{message}");
    let uid = get(&ns, "sts/hook-receiver")["metadata"]["uid"].as_str().unwrap().to_owned();
    assert!(message.contains(&format!("fusionhook.dev/discard-store={uid}")), "{message}");
    assert!(scene.eventually_event("OldStoreKept"), "{:?}", scene.event_reasons());
    assert_eq!(get(&ns, "service/hook-receiver")["spec"]["selector"]["fusionhook.dev/store"], "postgres");
    assert!(scene.node.running().contains(&"hook-receiver-0".to_owned()), "the old store's pod still runs");
    // The EndpointSlice follows the narrowed selector: FusionAuth reaches
    // the Deployment's pod only.
    let old_ip = scene.node.pod_ip("hook-receiver-0").unwrap();
    let host_name = format!("hook-receiver.{ns}.svc");
    let narrowed = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            scene.fusionauth.state().resolve.get(&host_name).is_some_and(|a| !a.is_empty() && a.iter().all(|a| a.ip() != old_ip))
        })
    });
    assert!(narrowed, "{:?}", scene.fusionauth.state().resolve.get(&host_name));
    for user in after {
        assert!(scene.delete_until_answered(user).await, "the PostgreSQL receiver answers");
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(people.iter().all(|u| !scene.todos.todos(u).is_empty()), "nothing could be deleted yet");
    assert!(!get(&ns, "sts/hook-receiver").is_null(), "kept while it holds deliveries");

    scene.todos.fail_with(None);
    let all = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || people.iter().all(|u| scene.todos.todos(u).is_empty()))
    });
    assert!(all, "every user's todos deleted; left: {:?}", people.iter().filter(|u| !scene.todos.todos(u).is_empty()).collect::<Vec<_>>());
    // Once no event reached it for 30 s (old_store::QUIET_SECONDS).
    let drained = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(120), || {
            get(&ns, "sts/hook-receiver").is_null()
                && get(&ns, "pvc/store-hook-receiver-0").is_null()
                && condition(&ns, "hook", "OldStoreDrained").is_none()
        })
    });
    assert!(drained, "the drained StatefulSet and its claim go: {:?}\n{}", condition(&ns, "hook", "OldStoreDrained"), operator.log());
    assert!(scene.eventually_event("OldStoreDrained"), "{:?}", scene.event_reasons());
    assert_eq!(condition(&ns, "hook", "Ready").map(|c| c.0), Some("True".to_owned()));
    // The Service's selector is widened again by the pass after the one that removed the StatefulSet.
    let widened = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            get(&ns, "service/hook-receiver")["spec"]["selector"].get("fusionhook.dev/store").is_none()
        })
    });
    assert!(widened, "{}", get(&ns, "service/hook-receiver")["spec"]["selector"]);
    drop(pg);
}

/// Issue 21, the plugin's store commands (tests/tests/cli.rs on the
/// emulator) on the real control plane, as an administrator: every call to
/// the receiver goes through the real API server's pod proxy. status (with
/// FusionAuth's switches), reconcile --wait, send (a dead delivery),
/// deliveries, replay (dry run, then for real), discard, a backfill pass;
/// no admin token is ever printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_store_commands_through_the_real_pod_proxy() {
    let _one_operator = OPERATOR.lock().await;
    let scene = Scene::start("plugin", "plugin-key", true, &[]).await;
    let ns = scene.ns.clone();
    let operator = operator_in(&ns, "plugin-key", scene.dir.path(), &[]);
    let sink = format!("http://{}/sink", scene.todo.addr);
    scene.apply("hook", |o| {
        o["spec"]["receiver"] = json!({"replicas": 1, "store": {"type": "embedded", "size": "64Mi", "storageClassName": SCENE_CLASS}});
        o["spec"]["routes"] = json!([{"name": "sink", "events": ["user.delete"], "http": {"method": "POST", "url": sink, "body": "event"}, "retry": {"maxAttempts": 1}}]);
    });
    assert!(scene.wait_condition("hook", "Ready", "True", 120), "{:?}\n{}", condition(&ns, "hook", "Ready"), operator.log());
    switch_on(&scene.fusionauth, "user.delete");
    let admin = plane().kubeconfig.clone();
    let ok = |args: &[&str]| {
        let (ok, out, err) = plugin_as(&admin, args);
        assert!(ok, "kubectl fusionhook {args:?}: {out}{err}");
        out
    };

    let status = ok(&["status", "hook", "-n", &ns, "--fusionauth"]);
    for expected in ["ok  Ready", "hook-receiver-0", "ready", "user.delete", "on / on / on", "Store: embedded: 0 pending"] {
        assert!(status.contains(expected), "status lacks {expected:?}:\n{status}");
    }
    let reconciled = ok(&["reconcile", "hook", "-n", &ns, "--wait", "--timeout", "30s"]);
    assert!(reconciled.contains("reconciled: Ready True"), "{reconciled}");

    scene.todos.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let (sent_ok, out, err) =
        plugin_as(&admin, &["send", "hook", "-n", &ns, "--event", "user.delete", "--set", "user.id=u-42", "-o", "json"]);
    assert!(!sent_ok, "a dead delivery exits 1: {out}{err}");
    let sent: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((sent["answer"]["outcome"].as_str(), sent["deliveries"][0]["state"].as_str()), (Some("stored"), Some("dead")), "{sent}");
    let event_id = sent["eventId"].as_str().unwrap().to_owned();
    let received = || scene.todos.received().iter().filter(|r| r.body.windows(event_id.len()).any(|w| w == event_id.as_bytes())).count();
    assert_eq!(received(), 1, "one failed attempt");

    let table = ok(&["deliveries", "hook", "-n", &ns, "--state", "dead"]);
    assert!(table.contains(&event_id), "{table}");
    let dry = ok(&["replay", "hook", "-n", &ns, "--dead", "--dry-run"]);
    assert!(dry.contains("would be replayed"), "{dry}");
    scene.todos.fail_with(None);
    let replayed = ok(&["replay", "hook", "-n", &ns, "--dead"]);
    assert!(replayed.contains("1 delivery replayed"), "{replayed}");
    assert!(
        tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(30), || received() == 2)),
        "the replay reached the sink"
    );

    scene.todos.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let (_, out, _) = plugin_as(&admin, &["send", "hook", "-n", &ns, "--event", "user.delete", "-o", "json"]);
    let id = serde_json::from_str::<Value>(&out).unwrap()["deliveries"][0]["id"].as_u64().unwrap().to_string();
    let discarded = ok(&["discard", "hook", "-n", &ns, "--id", &id]);
    assert!(discarded.contains("1 delivery discarded"), "{discarded}");
    assert!(ok(&["deliveries", "hook", "-n", &ns, "--state", "dead"]).contains("no deliveries match"));
    let backfill = ok(&["backfill", "hook", "-n", &ns, "--since", "1h"]);
    assert!(backfill.contains("handed 0 event(s)") && backfill.contains("scanned"), "{backfill}");

    let everything = format!("{status}{reconciled}{table}{dry}{replayed}{discarded}{backfill}");
    for scope in ["read", "replay", "ingest"] {
        let secret = get(&ns, &format!("secret/hook-receiver-admin-{scope}"));
        let token = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, secret["data"]["token"].as_str().unwrap()).unwrap();
        assert!(!everything.contains(String::from_utf8(token).unwrap().trim()), "the {scope} token is never printed");
    }
}

/// Issue 21, a backfill scenario of tests/tests/backfill.rs on the real
/// control plane: the leader is killed in the middle of a hand-over pass
/// (500 events missed while every receiver was down). The standby takes
/// the chart's Lease once it expires and goes on from the cursor in the
/// resource's status: every committed event reaches the sink once (what
/// was handed over twice, the receiver deduplicated by event id). No
/// store: each hand-over waits for the sink's answer, which the sink slows
/// to 20 ms, so the pass lasts long enough to be cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_in_the_middle_of_a_backfill_pass_skips_nothing_and_repeats_nothing() {
    let _one_operator = OPERATOR.lock().await;
    let scene = Scene::start("handover", "handover-key", true, &[]).await;
    let ns = scene.ns.clone();
    scene.fusionauth.configure_event_log(true, None);
    let (a_dir, b_dir) = (scene.dir.path().join("a"), scene.dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = operator_in(&ns, "handover-key", &a_dir, &[("POD_NAME", "op-a")]);
    let held = || Scene::lease_holder("fusionhook");
    assert!(tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(60), || held().as_deref() == Some("op-a"))));
    let kubeconfig = plane().kubeconfig_for_service_account("fusionhook", "fusionhook").unwrap();
    let env = [("FUSIONHOOK_NAMESPACES", ns.as_str()), ("POD_NAME", "op-b")];
    let b = OperatorProcess::start(plane(), "fusionhook", "fusionhook", &kubeconfig, &b_dir, &env).unwrap();
    let mut operators = [Some(a), Some(b)];
    let sink = format!("http://{}/sink", scene.todo.addr);
    scene.apply("hook", |o| {
        o["spec"]["events"] = json!(["user.create", "user.delete"]);
        o["spec"]["receiver"] = json!({"replicas": 1});
        o["spec"]["routes"] = json!([{"name": "sink", "events": ["*"], "http": {"method": "POST", "url": sink, "body": "event"}}]);
        o["spec"]["backfill"] = json!({"enabled": true, "intervalSeconds": 10});
    });
    let available = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(120), || {
            condition(&ns, "hook", "Ready").is_some_and(|c| c.0 == "True")
                && condition(&ns, "hook", "BackfillAvailable").is_some_and(|c| c.0 == "True")
        })
    });
    assert!(available, "{:?} {:?}", condition(&ns, "hook", "Ready"), condition(&ns, "hook", "BackfillAvailable"));
    switch_on(&scene.fusionauth, "user.create");
    switch_on(&scene.fusionauth, "user.delete");

    scene.node.pause();
    let down = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(60), || {
            scene.fusionauth.state().resolve.get(&format!("hook-receiver.{ns}.svc")).is_none_or(Vec::is_empty)
        })
    });
    assert!(down, "no ready endpoint left");
    let mut committed = Vec::new();
    for i in 0..250 {
        for kind in ["user.create", "user.delete"] {
            let report = scene.fusionauth.raise(None, json!({"type": kind, "user": {"id": format!("user-{i}")}})).await.unwrap();
            assert!(report.webhooks.iter().all(|d| !d.succeeded), "FusionAuth could not deliver while every receiver was down");
            committed.push(report.event["id"].as_str().unwrap().to_owned());
        }
    }
    scene.todos.delay_by(Some(std::time::Duration::from_millis(20)));
    let received = || scene.todos.event_counts();
    scene.node.resume();
    let leader = held().unwrap();
    let index = usize::from(leader != "op-a");
    // Past the first page of the Event Log (100 entries): in a pass, not
    // between two.
    let started = tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(120), || received().len() >= 150));
    let at_kill = received().len();
    drop(operators[index].take());
    assert!(started && at_kill < committed.len(), "killed in the middle of a pass ({at_kill} handed over)");
    scene.todos.delay_by(None);
    let taken = tokio::task::block_in_place(|| eventually(std::time::Duration::from_secs(60), || held().is_some_and(|h| h != leader)));
    assert!(taken, "the standby takes over: {:?}", held());

    let all = tokio::task::block_in_place(|| {
        eventually(std::time::Duration::from_secs(240), || committed.iter().all(|id| received().contains_key(id)))
    });
    let standby = operators[1 - index].as_ref().unwrap();
    assert!(all, "{} of {} reached the sink\n{}", received().len(), committed.len(), standby.log());
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    let counts = received();
    // At most the one hand-over the kill cut short: the receiver may have
    // run its action while the operator's request through the proxy was
    // cancelled, and so not count the event as handled (at least once).
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.len() <= 1, "events the sink got more than once: {twice:?}");
    let again = standby.metric("fusionhook_operator_backfill_events_total{outcome=\"handed_over\"}").await;
    assert!(again >= (committed.len() - at_kill) as f64, "the standby handed over at least what was left: {again}");
    println!(
        "backfill with a leader change on the real server: {} committed, leader killed after {at_kill} hand-overs, the new leader handed over {again}",
        committed.len()
    );
}

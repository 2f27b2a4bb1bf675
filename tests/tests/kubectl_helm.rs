//! The Kubernetes API emulator's acceptance test: the real `kubectl` and
//! the real `helm` 4 (from PyPI, see scripts/install-tools.sh) against it,
//! with the commands the README shows. Both need client-side OpenAPI
//! validation off (`--validate=false`, `--disable-openapi-validation`): the
//! emulator serves no OpenAPI documents.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Output};
use std::time::Duration;

use fusionhook_tests::kube_emulator::{KubeEmulator, RunningKube};
use fusionhook_tests::tools::{tools, workspace_root};
use serde_json::json;

struct Cluster {
    emulator: KubeEmulator,
    _running: RunningKube,
    home: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let emulator = KubeEmulator::new();
        let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let home = tempfile::tempdir().unwrap();
        running.write_kubeconfig(&home.path().join("kubeconfig"), "default").unwrap();
        Self { emulator, _running: running, home }
    }

    /// Runs a README-style command line (`kubectl …` or `helm …`) in the
    /// workspace root, with this cluster's kubeconfig and a private HOME.
    async fn run(&self, line: &str) -> Output {
        let mut words = line.split_whitespace();
        let program = match words.next().unwrap() {
            "kubectl" => tools().kubectl.clone(),
            "helm" => tools().helm.clone(),
            other => panic!("unexpected program {other}"),
        };
        let args: Vec<String> = words.map(str::to_owned).collect();
        let home = self.home.path().to_owned();
        tokio::task::spawn_blocking(move || {
            Command::new(program)
                .args(&args)
                .current_dir(workspace_root())
                .env("KUBECONFIG", home.join("kubeconfig"))
                .env("HOME", &home)
                .env("HELM_CACHE_HOME", home.join("helm-cache"))
                .env("HELM_CONFIG_HOME", home.join("helm-config"))
                .env("HELM_DATA_HOME", home.join("helm-data"))
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    async fn ok(&self, line: &str) -> String {
        let output = self.run(line).await;
        assert!(
            output.status.success(),
            "`{line}` failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

#[tokio::test]
async fn kubectl_applies_gets_waits_for_and_deletes_a_resource() {
    let cluster = Cluster::start().await;
    cluster.ok("kubectl apply --validate=false -f crds/").await;
    cluster.ok("kubectl create namespace todo").await;
    // Applying the CRD again is how an upgrade updates it.
    cluster.ok("kubectl apply --validate=false -f crds/").await;
    cluster.ok("kubectl -n todo create secret generic fusionauth-api-key --from-literal=api-key=YOUR-GLOBAL-API-KEY").await;
    let applied = cluster.ok("kubectl apply --validate=false -f examples/todo-cleanup.yaml").await;
    assert!(applied.contains("fusionauthwebhook.fusionhook.dev/todo-cleanup created"), "{applied}");
    // The whole examples/ folder applies too (the receiver config lives in a subfolder).
    let again = cluster.ok("kubectl apply --validate=false -f examples/").await;
    assert!(again.contains("fusionauthwebhook.fusionhook.dev/todo-cleanup unchanged"), "{again}");
    let stored = cluster.emulator.get("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "todo", "todo-cleanup").unwrap();
    assert_eq!(stored["spec"]["events"], json!(["user.delete"]));
    let secret = cluster.emulator.get("", "v1", "secrets", "todo", "fusionauth-api-key").unwrap();
    assert_eq!(secret["data"]["api-key"], "WU9VUi1HTE9CQUwtQVBJLUtFWQ==");

    // What an operator would report, then `get` shows it in the printer columns.
    let status = json!({"webhookId": "9f1c0c44-5d2a-5d6e-8f1b-3c2d1e0f9a8b", "conditions": [
        {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok", "lastTransitionTime": "2026-11-27T00:00:00Z"}]});
    cluster.emulator.set_status("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "todo", "todo-cleanup", status).unwrap();
    let table = cluster.ok("kubectl -n todo get faw").await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "WEBHOOK", "ID", "EVENTS", "AGE"], "{table}");
    let row = table.lines().nth(1).unwrap();
    assert!(row.starts_with("todo-cleanup") && row.contains("True") && row.contains("9f1c0c44") && row.contains("user.delete"), "{row}");

    let waited = cluster.ok("kubectl -n todo wait --for=condition=Ready faw/todo-cleanup --timeout=120s").await;
    assert!(waited.contains("condition met"), "{waited}");
    let described = cluster.ok("kubectl -n todo describe faw todo-cleanup").await;
    assert!(described.contains("Reconciled") && described.contains("user.delete"), "{described}");

    // A spec the CRD schema refuses is refused with the field named.
    let bad = cluster.run("kubectl -n todo patch faw todo-cleanup --type=merge -p {\"spec\":{\"events\":[\"user_delete!\"]}}").await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("events"), "{}", String::from_utf8_lossy(&bad.stderr));

    let deleted = cluster.ok("kubectl delete faw --all -A").await;
    assert!(deleted.contains("deleted"), "{deleted}");
    assert!(cluster.emulator.get("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "todo", "todo-cleanup").is_none());
}

#[tokio::test]
async fn helm_installs_and_uninstalls_the_chart() {
    let cluster = Cluster::start().await;
    // (helm's --create-namespace validates the Namespace against OpenAPI
    // even with --disable-openapi-validation, so the namespace comes first.)
    cluster.ok("kubectl create namespace fusionhook").await;
    let installed = cluster.ok("helm install fusionhook charts/fusionhook --namespace fusionhook --disable-openapi-validation").await;
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert!(installed.contains("kubectl apply -f examples/todo-cleanup.yaml"), "NOTES shown: {installed}");
    let deployment = cluster.emulator.get("apps", "v1", "deployments", "fusionhook", "fusionhook").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(cluster.emulator.get("rbac.authorization.k8s.io", "v1", "clusterroles", "", "fusionhook").is_some());
    assert!(
        cluster.emulator.get("apiextensions.k8s.io", "v1", "customresourcedefinitions", "", "fusionauthwebhooks.fusionhook.dev").is_some()
    );
    let listed = cluster.ok("helm list --namespace fusionhook").await;
    assert!(listed.contains("fusionhook-0.1.0"), "{listed}");

    let upgraded = cluster
        .ok("helm upgrade fusionhook charts/fusionhook --namespace fusionhook --disable-openapi-validation --set operator.replicas=3")
        .await;
    assert!(upgraded.contains("REVISION: 2"), "{upgraded}");
    assert_eq!(cluster.emulator.get("apps", "v1", "deployments", "fusionhook", "fusionhook").unwrap()["spec"]["replicas"], 3);

    cluster.ok("helm uninstall fusionhook --namespace fusionhook").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(cluster.emulator.get("apps", "v1", "deployments", "fusionhook", "fusionhook").is_none());
    assert!(cluster.emulator.get("rbac.authorization.k8s.io", "v1", "clusterroles", "", "fusionhook").is_none());
    assert!(
        cluster.emulator.get("apiextensions.k8s.io", "v1", "customresourcedefinitions", "", "fusionauthwebhooks.fusionhook.dev").is_some(),
        "helm never deletes CRDs"
    );
}

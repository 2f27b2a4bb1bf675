//! The chart's alerts and dashboard (issue 23): the PrometheusRule rendered
//! with `ci/monitoring-values.yaml` passes `promtool check rules` and the
//! unit tests in `charts/fusionhook/tests/alerts.test.yaml` (each alert
//! fires on a series that should fire it and stays silent on one that
//! should not); every alert has its runbook page; and every metric a rule
//! or a dashboard query names is one that the real receiver (with an
//! embedded store) or the real operator exposes on `/metrics`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fusionhook_tests::promtool::promtool;
use fusionhook_tests::tools::{tools, workspace_root};
use serde_yaml::Value;

fn chart() -> PathBuf {
    workspace_root().join("charts/fusionhook")
}

/// The chart rendered with `values` (release `fusionhook` in `fusionhook-system`), as documents.
fn rendered(values: &str) -> Vec<Value> {
    let output = Command::new(&tools().helm)
        .args(["template", "fusionhook"])
        .arg(chart())
        .args(["--namespace", "fusionhook-system", "--values"])
        .arg(chart().join("ci").join(values))
        .output()
        .unwrap();
    assert!(output.status.success(), "helm template: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|v| v.get("kind").is_some())
        .collect()
}

fn monitoring() -> Vec<Value> {
    rendered("monitoring-values.yaml")
}

fn only<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// Every rule of the rendered PrometheusRule.
fn rules(docs: &[Value]) -> Vec<Value> {
    let rule = only(docs, "PrometheusRule");
    rule["spec"]["groups"].as_sequence().unwrap().iter().flat_map(|g| g["rules"].as_sequence().unwrap().clone()).collect()
}

fn alert_names(docs: &[Value]) -> BTreeSet<String> {
    rules(docs).iter().map(|r| r["alert"].as_str().unwrap().to_owned()).collect()
}

fn promtool_run(args: &[&str], dir: &Path) -> String {
    let output = Command::new(promtool()).args(args).current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_rendered_rules_pass_promtool_check_and_every_alert_fires_and_stays_silent_as_tested() {
    let docs = monitoring();
    let dir = tempfile::tempdir().unwrap();
    // The PrometheusRule's spec is a Prometheus rule file as it stands.
    let spec = &only(&docs, "PrometheusRule")["spec"];
    std::fs::write(dir.path().join("rules.yaml"), serde_yaml::to_string(spec).unwrap()).unwrap();
    let tests = chart().join("tests/alerts.test.yaml");
    std::fs::copy(&tests, dir.path().join("alerts.test.yaml")).unwrap();

    let checked = promtool_run(&["check", "rules", "rules.yaml"], dir.path());
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool_run(&["test", "rules", "alerts.test.yaml"], dir.path());
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The unit tests cover every alert both ways: an evaluation where it
    // fires and one where it must stay silent.
    let file: Value = serde_yaml::from_str(&std::fs::read_to_string(&tests).unwrap()).unwrap();
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for test in file["tests"].as_sequence().unwrap() {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            match case["exp_alerts"].as_sequence() {
                Some(expected) if !expected.is_empty() => fires.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    let alerts = alert_names(&docs);
    assert_eq!(alerts.len(), 11, "{alerts:?}");
    for alert in &alerts {
        assert!(fires.contains(alert), "{alert}: no unit test where it fires");
        assert!(silent.contains(alert), "{alert}: no unit test where it stays silent");
    }
    assert!(fires.is_subset(&alerts) && silent.is_subset(&alerts), "tests of alerts the chart does not have: {fires:?} {silent:?}");
}

#[test]
fn every_alert_links_its_runbook_page_and_the_index_lists_it() {
    let runbooks = workspace_root().join("docs/runbooks");
    let index = std::fs::read_to_string(runbooks.join("README.md")).unwrap();
    for rule in rules(&monitoring()) {
        let alert = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        assert_eq!(url, format!("https://github.com/fusionhook/fusionhook/blob/main/docs/runbooks/{alert}.md"));
        let page = std::fs::read_to_string(runbooks.join(format!("{alert}.md"))).unwrap_or_else(|_| panic!("docs/runbooks/{alert}.md"));
        assert!(page.starts_with(&format!("# {alert}\n")), "{alert}.md starts with its name");
        for section in ["## What it means", "## How to confirm", "## What to do"] {
            assert!(page.contains(section), "{alert}.md: {section}");
        }
        assert!(index.contains(&format!("[{alert}]({alert}.md)")), "docs/runbooks/README.md lists {alert}");
        assert!(rule["annotations"]["summary"].is_string() && rule["annotations"]["description"].is_string(), "{alert}");
    }
}

#[test]
fn alerts_monitors_and_the_dashboard_are_off_by_default_and_on_in_the_monitoring_values() {
    let default = rendered("default-values.yaml");
    for kind in ["PrometheusRule", "PodMonitor", "ServiceMonitor", "ConfigMap"] {
        assert!(default.iter().all(|d| d["kind"] != kind), "{kind} rendered by default");
    }
    let docs = monitoring();
    let dashboard = only(&docs, "ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1", "the Grafana sidecar's label");
    let json: serde_json::Value = serde_json::from_str(dashboard["data"]["fusionhook.json"].as_str().unwrap()).unwrap();
    let variables: Vec<&str> = json["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(variables.contains(&"datasource"));
    for panel in json["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
    }
    let monitor = only(&docs, "PodMonitor");
    assert_eq!(monitor["spec"]["jobLabel"], "app.kubernetes.io/name", "job=\"fusionhook-receiver\", as the rules expect");
}

/// `helm template` with `--set`s; (success, stdout, stderr).
fn template_with(sets: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(&tools().helm);
    command.args(["template", "fusionhook"]).arg(chart());
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn alerts_are_rendered_only_over_series_something_scrapes() {
    // Nothing scraped: refused, saying what to turn on (else the no-leader
    // alert, over absent series, would fire for ever and the rest never).
    let (ok, _, err) = template_with(&["prometheusRule.enabled=true"]);
    assert!(!ok && err.contains("needs the metrics scraped: set metrics.serviceMonitor.enabled"), "{err}");
    // The operator scraped only: its group, not the receivers'.
    let (ok, out, err) = template_with(&["prometheusRule.enabled=true", "metrics.serviceMonitor.enabled=true"]);
    assert!(ok, "{err}");
    assert!(out.contains("FusionhookOperatorNoLeader") && !out.contains("FusionhookReceiverDown"), "{out}");
    // A scrape of one's own, named by a selector.
    let (ok, out, err) = template_with(&["prometheusRule.enabled=true", "prometheusRule.receiverSelector=job=\"receivers\""]);
    assert!(ok, "{err}");
    assert!(out.contains("FusionhookReceiverDown") && !out.contains("FusionhookOperatorNoLeader"), "{out}");
}

/// The metric names (`fusionhook_…`) in a PromQL expression: a plain scan
/// for identifiers, enough for the expressions we write.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while let Some(at) = expr[i..].find("fusionhook_").map(|at| at + i) {
        let mut end = at;
        while end < bytes.len() && ident(bytes[end]) {
            end += 1;
        }
        if at == 0 || !ident(bytes[at - 1]) {
            out.insert(expr[at..end].to_owned());
        }
        i = end;
    }
    out
}

/// The PromQL of a Grafana dashboard: panel targets and variable queries.
fn dashboard_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(q)) => out.push(q.clone()),
                    ("query", serde_json::Value::Object(q)) => {
                        out.extend(q.get("query").and_then(|q| q.as_str()).map(str::to_owned));
                    }
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The series names a `/metrics` page offers to PromQL, from its `# TYPE`
/// lines (a counter `x` is queried as `x_total`, a histogram as `x_bucket`,
/// `x_sum`, `x_count`) and its samples. prometheus-client writes a labelled
/// family only once it has a series, so the test first makes the binaries
/// do what creates one.
fn exposed(text: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
            let queried: Vec<String> = match kind {
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{name}{s}")).collect(),
                _ => vec![name.to_owned()],
            };
            for q in queried {
                names.insert(q, kind.to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            names.entry(name.to_owned()).or_insert_with(|| "sample".to_owned());
        }
    }
    names
}

/// The book's metrics reference: every family the receiver and the
/// operator expose, with its type and help text.
fn metrics_page(receiver: &str, operator: &str) -> String {
    let mut out = String::from(
        "# Metrics\n\n<!-- Generated from the real receiver's and operator's /metrics by tests/tests/alerts.rs: do not edit. -->\n\nWhat the receiver (port 8080, `/metrics`) and the operator (`--metrics-addr`, `/metrics`) expose, in the OpenMetrics text format. The chart's alerts and dashboard use only these ([Alerts and runbooks](../runbooks/README.md)).\n",
    );
    for (who, page) in [("receiver", receiver), ("operator", operator)] {
        out.push_str(&format!("\n## {who}\n\n| metric | type | help |\n|---|---|---|\n"));
        let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                families.entry(name.to_owned()).or_default().0 = kind.to_owned();
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                families.entry(name.to_owned()).or_default().1 = help.trim_end_matches('.').to_owned();
            }
        }
        for (name, (kind, help)) in families {
            let shown = if kind == "counter" { format!("{name}_total") } else { name };
            out.push_str(&format!("| `{shown}` | {kind} | {} |\n", fusionhook_tests::reference::cell(&help)));
        }
    }
    out
}

/// The value of the unlabelled sample `name` on a `/metrics` page.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A receiver process with an embedded store and one durable route to a
/// service that answers 404 (so its deliveries turn dead at once); killed
/// on drop.
struct Receiver {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    async fn start() -> Self {
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone_addr = gone.local_addr().unwrap();
        tokio::spawn(async move {
            let app = axum::Router::new().fallback(|| async { (http::StatusCode::NOT_FOUND, "no such user") });
            axum::serve(gone, app).await.unwrap();
        });
        let bin = fusionhook_tests::binaries::built("fusionhook-receiver", "fusionhook-receiver").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("receiver.yaml");
        let yaml = format!(
            r#"listen: 127.0.0.1:0
auth: {{authorization: "{AUTHORIZATION}"}}
store: {{type: embedded, path: "{}"}}
routes:
  - name: todo
    events: ["user.delete"]
    http: {{method: DELETE, url: "http://{gone_addr}/users/{{{{event.user.id}}}}", timeoutMs: 1000}}
"#,
            dir.path().join("store").display()
        );
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(bin).arg("--config").arg(&config).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let rx = fusionhook_tests::logs::announced(stdout, "fusionhook-receiver listening", "address", |_| {});
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the receiver did not start");
        Self { child, addr, _dir: dir }
    }

    async fn post(&self, authorization: &str, body: Vec<u8>) -> http::StatusCode {
        let client = reqwest::Client::new();
        let request = client.post(format!("http://{}/events", self.addr)).header("content-type", "application/json");
        request.header("authorization", authorization).body(body).send().await.unwrap().status()
    }
}

const AUTHORIZATION: &str = "alerts-test-authorization";

async fn scrape(addr: &str) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert!(response.status().is_success(), "/metrics of {addr}: {}", response.status());
    response.text().await.unwrap()
}

/// Scrapes `addr` until its page has a sample of `name` (a family shows
/// only once it has a series).
async fn scrape_until(addr: &str, name: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let page = scrape(addr).await;
        if page.lines().any(|l| l.starts_with(name)) || std::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A FusionAuthWebhook on the stack, routed to a sink, with backfill every
/// 10 s; Ready, with one user.delete through FusionAuth and a backfill pass
/// that looked at it: every operator metric then has a series.
async fn operator_at_work(stack: &mut fusionhook_tests::stack::Stack) -> String {
    let sink = fusionhook_tests::todo::TodoStore::with(&[]);
    let service = fusionhook_tests::todo::TodoService::start(sink.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    stack.namespace_with_api_key("team").unwrap();
    stack.start_operator("alerts", "5m").unwrap();
    let spec = serde_json::json!({
        "fusionAuth": {"url": stack.fusionauth_url(), "apiKeySecretRef": {"name": "fusionauth-api-key", "key": "api-key"}},
        "events": ["user.delete"],
        "receiver": {"replicas": 1},
        "routes": [{"name": "sink", "events": ["*"], "http": {"method": "POST", "url": format!("http://{}/sink", service.addr), "body": "event"}}],
        "backfill": {"enabled": true, "intervalSeconds": 10},
    });
    let object = serde_json::json!({"apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook", "metadata": {"name": "hook"}, "spec": spec});
    stack.create("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "team", object).unwrap();
    let ready = fusionhook_tests::stack::eventually(Duration::from_secs(60), || {
        stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert!(ready, "{:?}", stack.kube.get("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "team", "hook"));
    {
        let tenant = uuid::Uuid::parse_str(fusionhook_tests::fusionauth_emulator::DEFAULT_TENANT_ID).unwrap();
        let mut state = stack.fusionauth.state();
        state.tenants.get_mut(&tenant).unwrap()["eventConfiguration"]["events"]["user.delete"] =
            serde_json::json!({"enabled": true, "transactionType": "None"});
    }
    let tenant = uuid::Uuid::parse_str(fusionhook_tests::fusionauth_emulator::DEFAULT_TENANT_ID).unwrap();
    let user = serde_json::json!({"type": "user.delete", "user": {"id": "6c0e5b2a-0000-4000-8000-0000000a1e27"}});
    let report = stack.fusionauth.raise(Some(tenant), user).await.unwrap();
    assert!(report.webhooks.iter().all(|d| d.succeeded), "{report:?}");
    scrape_until(&stack.operators[0].metrics.to_string(), "fusionhook_operator_backfill_events_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_on_the_real_metrics_pages() {
    // What the chart ships, as rendered.
    let docs = monitoring();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in rules(&docs) {
        for name in metric_names(rule["expr"].as_str().unwrap()) {
            used.entry(name).or_default().insert(format!("alert {}", rule["alert"].as_str().unwrap()));
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(only(&docs, "ConfigMap")["data"]["fusionhook.json"].as_str().unwrap()).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 20, "{queries:?}");
    for query in &queries {
        for name in metric_names(query) {
            used.entry(name).or_default().insert("the dashboard".to_owned());
        }
    }
    assert!(used.len() >= 20, "the scan found too few metric names: {:?}", used.keys());

    // The real receiver with an embedded store: a request it refuses, an
    // event it stores, and its delivery, refused by the service (dead).
    let receiver = Receiver::start().await;
    assert_eq!(receiver.post("wrong", fusionhook_tests::events::user_delete("e-1", "u-1")).await, http::StatusCode::UNAUTHORIZED);
    let event = fusionhook_tests::events::user_delete("0b9a3a5e-0001-4000-8000-000000000001", "6c0e5b2a-0000-4000-8000-0000000000aa");
    assert_eq!(receiver.post(AUTHORIZATION, event).await, http::StatusCode::OK);
    // (The dead-letter counter exists at 0 from the start: wait for the attempt.)
    let receiver_page = scrape_until(&receiver.addr, "fusionhook_receiver_delivery_attempts_total").await;
    // The real operator, against the Kubernetes API emulator and the
    // FusionAuth emulator, with a resource to reconcile.
    let mut stack = fusionhook_tests::stack::Stack::start("alerts-key").await.unwrap();
    let operator_page = operator_at_work(&mut stack).await;

    let mut offered = exposed(&receiver_page);
    offered.extend(exposed(&operator_page));
    fusionhook_tests::reference::check("metrics.md", &metrics_page(&receiver_page, &operator_page)).unwrap();
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !offered.contains_key(*name))
        .map(|(name, by)| format!("{name} (used by {})", by.iter().cloned().collect::<Vec<_>>().join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics named but exposed by neither /metrics:\n{}\n\nreceiver:\n{receiver_page}\noperator:\n{operator_page}",
        missing.join("\n")
    );

    // The store's volume figures are real numbers, sampled at open.
    let capacity = sample(&receiver_page, "fusionhook_receiver_store_volume_capacity_bytes").unwrap();
    let available = sample(&receiver_page, "fusionhook_receiver_store_volume_available_bytes").unwrap();
    assert!(capacity > 0.0 && available > 0.0 && available <= capacity, "capacity {capacity}, available {available}");
    assert!(sample(&receiver_page, "fusionhook_receiver_store_size_bytes").unwrap() > 0.0, "the redb file's size");
    assert_eq!(sample(&receiver_page, "fusionhook_receiver_store_commit_failures_total"), Some(0.0));
    stack.operators.clear();
}

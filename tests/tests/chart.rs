//! The Helm chart, checked with the real helm 4 binary: strict lint and
//! offline schema validation (Kubernetes 1.33 to 1.37) for every documented
//! values file in `charts/fusionhook/ci/`, the rendered chart against its
//! committed snapshots (`FUSIONHOOK_BLESS=1` rewrites them), RBAC equal to
//! what the operator uses, the "restricted" Pod Security Standard, the CRD
//! equal to the generated one, a values typo refused by the schema, and a
//! NetworkPolicy that admits metrics scrapes only from the namespaces a
//! selector names (none by default).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fusionhook_operator::rbac::{PERMISSIONS, Place};
use fusionhook_tests::tools::{tools, workspace_root};
use serde_yaml::Value;

const KUBERNETES_VERSIONS: [&str; 5] = ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"];
const RELEASE: &str = "fusionhook";
const NAMESPACE: &str = "fusionhook-system";

fn chart() -> PathBuf {
    workspace_root().join("charts/fusionhook")
}

/// Every documented values file, by name (`default`, `namespaced`, …).
fn values_files() -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.strip_suffix("-values.yaml")?.to_owned();
            Some((name, p))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 6, "documented values files: {files:?}");
    files
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn helm_template(values: &Path, extra: &[&str]) -> String {
    let output = run(Command::new(&tools().helm)
        .args(["template", RELEASE])
        .arg(chart())
        .args(["--namespace", NAMESPACE, "--include-crds", "--values"])
        .arg(values)
        .args(extra));
    assert!(output.status.success(), "helm template {}: {}", values.display(), String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn documents(rendered: &str) -> Vec<Value> {
    rendered.split("\n---").filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok()).filter(|v| v.get("kind").is_some()).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_chart_lints_strictly_with_every_documented_values_file() {
    for (name, values) in values_files() {
        let output = run(Command::new(&tools().helm).args(["lint", "--strict", "--values"]).arg(&values).arg(chart()));
        assert!(output.status.success(), "helm lint --strict ({name}): {}", String::from_utf8_lossy(&output.stdout));
    }
}

#[test]
fn every_rendered_manifest_is_valid_for_kubernetes_1_33_to_1_37() {
    let dir = tempfile::tempdir().unwrap();
    for (name, values) in values_files() {
        let docs = documents(&helm_template(&values, &[]));
        // ServiceMonitor, PodMonitor and PrometheusRule are the Prometheus
        // Operator's CRDs, outside the Kubernetes schemas: their shape is
        // checked by hand below (the rules themselves by promtool in alerts.rs).
        let prometheus_operator = ["ServiceMonitor", "PodMonitor", "PrometheusRule"];
        let (monitors, builtin): (Vec<&Value>, Vec<&Value>) =
            docs.iter().partition(|d| prometheus_operator.iter().any(|kind| d["kind"] == *kind));
        for monitor in monitors {
            assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1", "{name}");
            let spec = &monitor["spec"];
            match monitor["kind"].as_str().unwrap() {
                "ServiceMonitor" => assert_eq!(spec["endpoints"][0]["port"], "metrics"),
                "PodMonitor" => {
                    assert_eq!(spec["podMetricsEndpoints"][0]["port"], "http", "the receiver container's port with /metrics");
                    assert_eq!(spec["selector"]["matchLabels"]["app.kubernetes.io/name"], "fusionhook-receiver");
                }
                _ => {
                    let rules: Vec<&Value> =
                        spec["groups"].as_sequence().unwrap().iter().flat_map(|g| g["rules"].as_sequence().unwrap()).collect();
                    assert!(!rules.is_empty(), "{name}");
                    for rule in rules {
                        assert!(rule["alert"].is_string() && rule["expr"].is_string(), "{name}: {rule:?}");
                        assert!(rule["labels"]["severity"].is_string(), "{name}: {rule:?}");
                        let runbook = rule["annotations"]["runbook_url"].as_str().unwrap();
                        assert!(runbook.ends_with(&format!("/{}.md", rule["alert"].as_str().unwrap())), "{runbook}");
                    }
                }
            }
        }
        let file = dir.path().join(format!("{name}.yaml"));
        let yaml: Vec<String> = builtin.iter().map(|d| serde_yaml::to_string(d).unwrap()).collect();
        std::fs::write(&file, yaml.join("---\n")).unwrap();
        for version in KUBERNETES_VERSIONS {
            let output = run(Command::new(&tools().kubernetes_validate).args(["--strict", "--quiet", "-k", version]).arg(&file));
            assert!(
                output.status.success(),
                "{name} is not valid for Kubernetes {version}:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn the_rendered_chart_matches_the_committed_snapshots() {
    let snapshots = workspace_root().join("charts/snapshots");
    let bless = std::env::var_os("FUSIONHOOK_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, values) in values_files() {
        let rendered = helm_template(&values, &[]);
        let path = snapshots.join(format!("{name}.yaml"));
        if bless {
            std::fs::create_dir_all(&snapshots).unwrap();
            std::fs::write(&path, &rendered).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(rendered.as_str()) {
            stale.push(name);
        }
    }
    assert!(stale.is_empty(), "the rendered chart differs from charts/snapshots for {stale:?}; review and rerun with FUSIONHOOK_BLESS=1");
}

type Grant = (String, String, String, Option<String>);

/// (apiGroup, resource, verb, resourceName) for every rule of `role`.
fn grants(role: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let names: Vec<Option<String>> = match rule.get("resourceNames").and_then(Value::as_sequence) {
            Some(names) => names.iter().map(|n| Some(n.as_str().unwrap().to_owned())).collect(),
            None => vec![None],
        };
        for group in rule["apiGroups"].as_sequence().unwrap() {
            for resource in rule["resources"].as_sequence().unwrap() {
                for verb in rule["verbs"].as_sequence().unwrap() {
                    for name in &names {
                        out.insert((
                            group.as_str().unwrap().to_owned(),
                            resource.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                            name.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn wanted(place: Place) -> BTreeSet<(String, String, String)> {
    PERMISSIONS
        .iter()
        .filter(|(p, _)| *p == place)
        .flat_map(|(_, p)| p.verbs.iter().map(|v| (p.group.to_owned(), p.resource.to_owned(), (*v).to_owned())))
        .collect()
}

fn unnamed(grants: &BTreeSet<Grant>) -> BTreeSet<(String, String, String)> {
    grants.iter().map(|(g, r, v, _)| (g.clone(), r.clone(), v.clone())).collect()
}

#[test]
fn rbac_grants_exactly_what_the_operator_uses() {
    let files = values_files();
    let file = |name: &str| files.iter().find(|(n, _)| n == name).unwrap().1.clone();

    // All namespaces: one ClusterRole with exactly the watched permissions.
    let docs = documents(&helm_template(&file("default"), &[]));
    let cluster_roles = of_kind(&docs, "ClusterRole");
    assert_eq!(cluster_roles.len(), 1);
    let granted = grants(cluster_roles[0]);
    assert!(granted.iter().all(|g| g.3.is_none()));
    assert_eq!(unnamed(&granted), wanted(Place::Watched), "ClusterRole vs operator/src/rbac.rs");
    // The Lease Role: exactly the leader permissions, get/update only on the Lease's name.
    let roles = of_kind(&docs, "Role");
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["metadata"]["namespace"], NAMESPACE);
    let lease = grants(roles[0]);
    assert_eq!(unnamed(&lease), wanted(Place::Own));
    for (_, _, verb, name) in &lease {
        let expected = if verb == "create" { None } else { Some(RELEASE.to_owned()) };
        assert_eq!(name, &expected, "{verb}");
    }
    let deployment = of_kind(&docs, "Deployment")[0];
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_sequence().unwrap();
    let lease_name = env.iter().find(|e| e["name"] == "FUSIONHOOK_LEASE_NAME").unwrap();
    assert_eq!(lease_name["value"], RELEASE, "the Role names the Lease the operator uses");

    // Some namespaces: a Role per namespace, no cluster-wide grant at all.
    let docs = documents(&helm_template(&file("namespaced"), &[]));
    assert!(of_kind(&docs, "ClusterRole").is_empty() && of_kind(&docs, "ClusterRoleBinding").is_empty());
    let watched: Vec<&Value> = of_kind(&docs, "Role").into_iter().filter(|r| r["metadata"]["namespace"] != NAMESPACE).collect();
    let namespaces: BTreeSet<&str> = watched.iter().map(|r| r["metadata"]["namespace"].as_str().unwrap()).collect();
    assert_eq!(namespaces, BTreeSet::from(["billing", "todo"]));
    for role in watched {
        assert_eq!(unnamed(&grants(role)), wanted(Place::Watched));
    }
    let bindings = of_kind(&docs, "RoleBinding");
    assert_eq!(bindings.len(), 3);
    for binding in bindings {
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    }
    let env = of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"].as_sequence().unwrap().clone();
    assert_eq!(env.iter().find(|e| e["name"] == "FUSIONHOOK_NAMESPACES").unwrap()["value"], "todo,billing");

    // Without leader election: no Lease permissions.
    let docs = documents(&helm_template(&file("single-replica"), &[]));
    assert!(of_kind(&docs, "Role").is_empty());
    assert!(of_kind(&docs, "PodDisruptionBudget").is_empty(), "one replica: a PDB would block node drains");
}

#[test]
fn operator_pods_meet_the_restricted_pod_security_standard() {
    for (name, values) in values_files() {
        let docs = documents(&helm_template(&values, &[]));
        for deployment in of_kind(&docs, "Deployment") {
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{name}");
            for key in ["hostNetwork", "hostPID", "hostIPC"] {
                assert!(pod.get(key).is_none() || pod[key] == false, "{name}: {key}");
            }
            assert!(pod.get("volumes").is_none_or(|v| v.as_sequence().unwrap().iter().all(|v| v.get("hostPath").is_none())));
            for container in pod["containers"].as_sequence().unwrap() {
                let sc = &container["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
                assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{name}");
                assert!(sc.get("privileged").is_none_or(|p| *p == false));
                assert!(sc["capabilities"].get("add").is_none());
                assert!(
                    container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                        && container["readinessProbe"]["httpGet"]["path"] == "/readyz"
                );
                assert!(container["resources"]["requests"]["memory"].is_string(), "{name}: resources");
            }
        }
    }
}

#[test]
fn the_chart_installs_the_generated_crd() {
    let in_chart = std::fs::read_to_string(chart().join("crds/fusionauthwebhooks.yaml")).unwrap();
    assert_eq!(in_chart, fusionhook_operator::crd_yaml().unwrap(), "charts/fusionhook/crds/ differs from `fusionhook-operator crd`");
}

#[test]
fn a_typo_in_values_is_refused_naming_the_key() {
    let output = run(Command::new(&tools().helm).args(["template", RELEASE]).arg(chart()).args(["--set", "operator.replicaz=3"]));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("replicaz"), "{stderr}");
    let output = run(Command::new(&tools().helm).args(["template", RELEASE]).arg(chart()).args(["--set", "operator.requeueInterval=soon"]));
    assert!(!output.status.success(), "a duration that is not one is refused");
}

#[test]
fn the_fusionauth_url_allow_list_is_an_admission_policy_off_by_default() {
    let default = documents(&helm_template(&chart().join("ci/default-values.yaml"), &[]));
    assert!(of_kind(&default, "ValidatingAdmissionPolicy").is_empty());
    let docs = documents(&helm_template(&chart().join("ci/url-policy-values.yaml"), &[]));
    let policy = of_kind(&docs, "ValidatingAdmissionPolicy")[0];
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    assert_eq!(policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"][0], "fusionauthwebhooks");
    // The list reaches CEL as a list literal of exactly the configured URLs.
    let allowed: Vec<String> = serde_json::from_str(policy["spec"]["variables"][0]["expression"].as_str().unwrap()).unwrap();
    assert_eq!(allowed, ["https://auth.example.com", "http://fusionauth.identity.svc:9011"]);
    let check = policy["spec"]["validations"][0]["expression"].as_str().unwrap();
    assert!(
        check.contains("== base || object.spec.fusionAuth.url.startsWith(base + '/')"),
        "a prefix alone would admit https://auth.example.com.evil.test: {check}"
    );
    let binding = of_kind(&docs, "ValidatingAdmissionPolicyBinding")[0];
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");

    let output =
        run(Command::new(&tools().helm).args(["template", RELEASE]).arg(chart()).args(["--set", "fusionAuthUrlPolicy.enabled=true"]));
    assert!(!output.status.success(), "on without a list would refuse every resource");
    assert!(String::from_utf8_lossy(&output.stderr).contains("allowedUrls"));
}

#[test]
fn two_operator_replicas_need_leader_election() {
    let template = |sets: &[&str]| {
        let mut command = Command::new(&tools().helm);
        command.args(["template", RELEASE]).arg(chart());
        for set in sets {
            command.args(["--set", set]);
        }
        run(&mut command)
    };
    let output = template(&["operator.replicas=2", "operator.leaderElection.enabled=false"]);
    assert!(!output.status.success(), "two replicas without leader election would both write to FusionAuth");
    assert!(String::from_utf8_lossy(&output.stderr).contains("replicas"), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(template(&["operator.replicas=1", "operator.leaderElection.enabled=false"]).status.success());
    assert!(template(&["operator.replicas=2"]).status.success());
}

#[test]
fn install_notes_tell_the_user_what_to_apply_next() {
    let output = run(Command::new(&tools().helm).args(["install", RELEASE]).arg(chart()).args([
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        "--set",
        "operator.watchNamespaces={todo}",
    ]));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let notes = stdout.split("NOTES:").nth(1).unwrap();
    assert!(notes.contains("kubectl apply -f examples/todo-cleanup.yaml"), "{notes}");
    assert!(notes.contains("GLOBAL FusionAuth API key"));
    assert!(notes.contains("namespaces todo"));
}

#[test]
fn the_image_recipe_holds_what_the_chart_and_the_operator_run() {
    let dockerfile = std::fs::read_to_string(workspace_root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("-p fusionhook-operator -p fusionhook-receiver"), "both binaries are built");
    assert!(dockerfile.contains("COPY --from=build /out/ /usr/local/bin/"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/fusionhook-operator"]"#), "the operator is the default command");
    assert!(dockerfile.contains("USER 65532:65532") && dockerfile.contains("distroless/cc-debian12:nonroot"));
    for label in ["title", "version", "source", "licenses"] {
        assert!(dockerfile.contains(&format!("org.opencontainers.image.{label}=")), "OCI label {label}");
    }
    // The chart runs the image's entrypoint with `run`; the operator runs the
    // receiver from the same image by its path.
    let docs = documents(&helm_template(&chart().join("ci/default-values.yaml"), &[]));
    let container = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    assert!(container.get("command").is_none());
    assert_eq!(container["args"][0], "run");
    let receiver = std::fs::read_to_string(workspace_root().join("operator/src/reconcile/build/receiver.rs")).unwrap();
    assert!(receiver.contains(r#"command: Some(vec!["/usr/local/bin/fusionhook-receiver".to_owned()])"#));
}

/// The ingress rules of every rendered NetworkPolicy that admit `port`, with
/// the policy's namespace and name.
fn ingress_rules_for_port(docs: &[Value], port: u64) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for policy in of_kind(docs, "NetworkPolicy") {
        let name = format!("{}/{}", policy["metadata"]["namespace"].as_str().unwrap(), policy["metadata"]["name"].as_str().unwrap());
        let rules = policy["spec"].get("ingress").and_then(Value::as_sequence).cloned().unwrap_or_default();
        for rule in rules {
            // A rule without ports admits every port.
            let ports = rule.get("ports").and_then(Value::as_sequence);
            if ports.is_none_or(|ports| ports.iter().any(|p| p["port"].as_u64() == Some(port))) {
                out.push((name.clone(), rule));
            }
        }
    }
    out
}

/// The peers (`from`) of a rule that admit pods of every namespace: an
/// empty or absent `from` (anyone), or a `namespaceSelector` that selects
/// every namespace (empty, or only `{}` parts).
fn admits_every_namespace(rule: &Value) -> bool {
    let Some(from) = rule.get("from").and_then(Value::as_sequence) else { return true };
    from.is_empty()
        || from.iter().any(|peer| {
            peer.get("namespaceSelector").is_some_and(|selector| {
                let empty = |key: &str| {
                    selector.get(key).is_none_or(|v| {
                        v.is_null() || v.as_mapping().is_some_and(|m| m.is_empty()) || v.as_sequence().is_some_and(|s| s.is_empty())
                    })
                };
                selector.is_null() || (empty("matchLabels") && empty("matchExpressions"))
            })
        })
}

#[test]
fn the_default_network_policy_admits_no_metrics_scrapes_from_other_namespaces() {
    let template = |sets: &[&str], set_json: &[&str]| {
        let mut command = Command::new(&tools().helm);
        command.args(["template", RELEASE]).arg(chart()).args(["--namespace", NAMESPACE]);
        for set in sets {
            command.args(["--set", set]);
        }
        for set in set_json {
            command.args(["--set-json", set]);
        }
        let output = run(&mut command);
        assert!(output.status.success(), "helm template {sets:?} {set_json:?}: {}", String::from_utf8_lossy(&output.stderr));
        documents(&String::from_utf8(output.stdout).unwrap())
    };

    // The chart's defaults with only the policy switched on: the operator's
    // policy exists and no rule admits the metrics port at all.
    let docs = template(&["networkPolicy.enabled=true"], &[]);
    let policies = of_kind(&docs, "NetworkPolicy");
    assert_eq!(policies.len(), 1, "the operator's policy, no receiver namespaces by default");
    assert_eq!(policies[0]["spec"]["policyTypes"][0], "Ingress", "ingress is restricted, not left open");
    let rules = ingress_rules_for_port(&docs, 8080);
    assert!(rules.iter().all(|(_, rule)| !admits_every_namespace(rule)), "metrics open to every namespace by default: {rules:?}");
    assert!(rules.is_empty(), "no metrics selector given, yet a rule admits the metrics port: {rules:?}");

    // The receivers' policy with FusionAuth's CIDRs but no selector: port
    // 8080 only from those CIDRs, no namespace peer beside them.
    let receivers = [
        "networkPolicy.enabled=true",
        "operator.watchNamespaces={todo}",
        "networkPolicy.apiServerCIDRs={10.0.0.1/32}",
        "networkPolicy.fusionAuthCIDRs={10.20.0.0/16}",
    ];
    let docs = template(&receivers, &[]);
    let rules = ingress_rules_for_port(&docs, 8080);
    assert_eq!(rules.len(), 1, "{rules:?}");
    let (name, rule) = &rules[0];
    assert_eq!(name, "todo/fusionhook-receivers");
    let from = rule["from"].as_sequence().unwrap();
    assert_eq!(from.len(), 1, "only FusionAuth's CIDRs: {from:?}");
    assert_eq!(from[0]["ipBlock"]["cidr"], "10.20.0.0/16");

    // A selector given: the metrics rule of both policies has exactly it.
    let selector: Value = serde_yaml::from_str("matchLabels:\n  kubernetes.io/metadata.name: monitoring\n").unwrap();
    let json = format!("networkPolicy.metricsNamespaceSelector={}", serde_json::to_string(&selector).unwrap());
    let docs = template(&receivers, &[&json]);
    let rules = ingress_rules_for_port(&docs, 8080);
    assert_eq!(rules.len(), 2, "{rules:?}");
    for (name, rule) in &rules {
        let selectors: Vec<&Value> = rule["from"].as_sequence().unwrap().iter().filter_map(|peer| peer.get("namespaceSelector")).collect();
        assert_eq!(selectors, [&selector], "{name}");
        assert!(!admits_every_namespace(rule), "{name}");
    }

    // An explicit {} still opens it, as the user wrote.
    let docs = template(&["networkPolicy.enabled=true"], &["networkPolicy.metricsNamespaceSelector={}"]);
    let rules = ingress_rules_for_port(&docs, 8080);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(admits_every_namespace(&rules[0].1));

    // The install notes say why scrapes fail without a selector.
    let output = run(Command::new(&tools().helm).args(["install", RELEASE]).arg(chart()).args([
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        "--set",
        "networkPolicy.enabled=true",
    ]));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let notes = stdout.split("NOTES:").nth(1).unwrap();
    assert!(notes.contains("networkPolicy.metricsNamespaceSelector is unset"), "{notes}");
}

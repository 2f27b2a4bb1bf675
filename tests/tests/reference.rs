//! The book's reference pages are what the code says (generated, then
//! compared with the committed pages, as the CRD is), and the hand-written
//! pages name only what exists: every condition reason, every field.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;

use fusionhook_api::admin::{ENDPOINTS, PORT, TOKEN_HEADER};
use fusionhook_api::conditions::{EventReason, Kind, Reason};
use fusionhook_tests::reference::{cell, check};
use fusionhook_tests::tools::workspace_root;
use serde_json::Value;

fn crd() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(workspace_root().join("crds/fusionauthwebhooks.yaml")).unwrap()).unwrap()
}

fn page(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("docs").join(name)).unwrap()
}

#[test]
fn the_resource_fields_page_is_the_crds() {
    check("resource.md", &fusionhook_tests::reference::resource(&crd())).unwrap();
}

fn conditions() -> String {
    let mut out = String::from(
        "# Conditions and reasons\n\n<!-- Generated from fusionhook-api's conditions by tests/tests/reference.rs: do not edit. -->\n\nEach resource's `status.conditions`: `Ready`, one condition per step in pipeline order, and conditions beside them. The plugin's `status` prints the same advice. What each case looks like in practice: [Status and what to do](../conditions.md).\n\n## Condition types\n\n| type | part of `Ready` | meaning |\n|---|---|---|\n",
    );
    for kind in Kind::ALL {
        let part = if *kind == Kind::Ready {
            "(it is the summary)"
        } else if kind.beside_ready() {
            "no"
        } else {
            "yes"
        };
        out.push_str(&format!("| `{}` | {part} | {} |\n", kind.as_str(), cell(kind.doc())));
    }
    out.push_str("\n## Reasons\n\n| reason | meaning | what to do |\n|---|---|---|\n");
    for reason in Reason::ALL {
        let advice = reason.advice().unwrap_or("nothing: all is well");
        out.push_str(&format!("| `{}` | {} | {} |\n", reason.as_str(), cell(reason.doc()), cell(advice)));
    }
    out.push_str("\n## Events\n\nBeside one Event per condition that turns True (Normal) or False (Warning, `Ready` only when it turns True), with the condition's reason:\n\n| reason | type | meaning and what to do |\n|---|---|---|\n");
    for reason in EventReason::ALL {
        let (kind, text) = reason.doc().trim().split_once(": ").unwrap();
        out.push_str(&format!("| `{}` | {kind} | {} |\n", reason.as_str(), cell(text)));
    }
    out
}

#[test]
fn the_conditions_page_is_the_codes() {
    check("conditions.md", &conditions()).unwrap();
}

fn plugin() -> String {
    let bin = fusionhook_tests::binaries::built("fusionhook-cli", "kubectl-fusionhook").unwrap();
    let help = |args: &[&str]| {
        let output = std::process::Command::new(&bin).args(args).env_remove("KUBECONFIG").output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let top = help(&["--help"]);
    let mut out = format!(
        "# Plugin commands\n\n<!-- Generated from kubectl-fusionhook --help by tests/tests/reference.rs: do not edit. -->\n\n`kubectl fusionhook` (the binary `kubectl-fusionhook`, installed with `cargo install --path cli`). A guide with examples: [kubectl fusionhook](../plugin.md).\n\n```text\n{}```\n",
        top
    );
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 8, "{top}");
    for command in commands {
        out.push_str(&format!("\n## `{command}`\n\n```text\n{}```\n", help(&[&command, "--help"])));
    }
    out
}

#[test]
fn the_plugin_page_is_its_help() {
    check("plugin.md", &plugin()).unwrap();
}

/// The receiver's admin API from the contract's endpoint table.
fn admin_api() -> String {
    let mut out = format!(
        "# Receiver admin API\n\n<!-- Generated from fusionhook_api::admin::ENDPOINTS by tests/tests/reference.rs: do not edit. -->\n\nEach receiver serves it on its own port ({PORT} in a pod, `admin.listen` in the config; never on the port FusionAuth reaches). A call carries a token as `Authorization: Bearer TOKEN` or, through the API server's pod proxy (which drops `Authorization`), as `{TOKEN_HEADER}: TOKEN`. The operator keeps one token per scope in a Secret (`NAME-receiver-admin-SCOPE`); every scope may read, and a token of `admin.tokenFile` may do everything. JSON in and out; every refusal is `{{\"errors\": [{{\"code\", \"message\"}}]}}`: 401 (no or an unknown token), 403 (a token of another scope), 400 (a bad request), 404 (no such path or event), 405 (another method), 413 (a body over `maxBodyBytes`), 409 (`store.type: none`: nothing is kept), 503 (the store cannot be reached), and for an ingested event the public port's answers (500 when an action failed). `kubectl fusionhook` is its client ([Plugin commands](plugin.md)).\n\n| call | token scope | takes | answers |\n|---|---|---|---|\n"
    );
    for endpoint in ENDPOINTS {
        let scope = endpoint.scope.map_or("none".to_owned(), |s| format!("`{}`", s.as_str()));
        out.push_str(&format!(
            "| `{} {}` | {scope} | {} | {} |\n",
            endpoint.method.as_str(),
            endpoint.path,
            cell(endpoint.request),
            cell(endpoint.answer)
        ));
    }
    out
}

#[test]
fn the_admin_api_page_is_the_contracts() {
    check("admin-api.md", &admin_api()).unwrap();
}

#[test]
fn the_hand_written_admin_api_table_names_every_endpoint_and_only_real_ones() {
    let text = page("durable-delivery.md");
    let named: BTreeSet<String> =
        words(&text, 0, true).into_iter().filter(|w| w.contains(" /v1/")).map(|w| w.split('?').next().unwrap().to_owned()).collect();
    let served: BTreeSet<String> = ENDPOINTS.iter().map(|e| format!("{} {}", e.method.as_str(), e.path)).collect();
    assert_eq!(named, served, "docs/durable-delivery.md's admin API table and the endpoints the receiver serves");
}

#[test]
fn the_receiver_config_page_is_its_schema() {
    let schema = fusionhook_receiver::config::file::schema();
    let page = fusionhook_tests::reference::receiver_config(&schema);
    for key in
        ["listen", "auth.signature.algorithms", "routes[].http.url", "routes[].http.headers.NAME.valueFile", "store.path", "store.urlFile"]
    {
        assert!(page.contains(&format!("| `{key}` |")), "the page has `{key}`:\n{page}");
    }
    check("receiver-config.md", &page).unwrap();
}

/// The backticked words of column `n` of the Markdown tables in `text`
/// (`first`: only a cell's first one; the rest qualifies it).
fn words(text: &str, n: usize, first: bool) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .filter_map(|l| l.split(" | ").nth(n).map(str::to_owned))
        .flat_map(|c| c.split('`').skip(1).step_by(2).take(if first { 1 } else { usize::MAX }).map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

fn column(text: &str, n: usize) -> Vec<String> {
    words(text, n, false)
}

#[test]
fn the_hand_written_conditions_page_names_every_reason_and_only_real_ones() {
    let text = page("conditions.md");
    let named: BTreeSet<String> = words(&text, 1, true).into_iter().collect();
    let known: BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    let unknown: Vec<&String> = named.iter().filter(|r| !known.contains(*r)).collect();
    assert!(unknown.is_empty(), "docs/conditions.md names reasons the code does not have: {unknown:?}");
    let missing: Vec<&String> = known.iter().filter(|r| !text.contains(&format!("`{r}`"))).collect();
    assert!(missing.is_empty(), "docs/conditions.md does not explain: {missing:?}");
    let kinds: BTreeSet<String> = column(&text, 0).into_iter().collect();
    for kind in &kinds {
        assert!(Kind::ALL.iter().any(|k| k.as_str() == kind), "docs/conditions.md names condition type {kind}");
    }
}

#[test]
fn the_spec_overview_names_only_fields_the_crd_has() {
    let generated = fusionhook_tests::reference::resource(&crd());
    let paths: Vec<String> = column(&generated, 0).into_iter().filter_map(|p| p.strip_prefix("spec.").map(str::to_owned)).collect();
    let text = page("resource.md");
    let start = text.find("| field | default | meaning |").unwrap();
    let table = &text[start..text[start..].find("\n\n").map_or(text.len(), |e| start + e)];
    let named = column(table, 0);
    assert!(named.len() >= 15, "{named:?}");
    for field in named {
        let exists =
            if field.contains('.') { paths.contains(&field) } else { paths.iter().any(|p| p.rsplit('.').next() == Some(field.as_str())) };
        assert!(exists, "docs/resource.md's overview names `{field}`, which the CRD does not have");
    }
}

/// GitHub's (and mdBook's) anchor of a heading.
fn slug(heading: &str) -> String {
    let text = heading.trim_start_matches('#').trim().to_lowercase();
    text.chars().filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_').collect::<String>().replace(' ', "-")
}

#[test]
fn every_link_in_the_readme_and_the_book_resolves() {
    let root = workspace_root();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if entry.is_dir() {
                dirs.push(entry);
            } else if entry.extension().is_some_and(|e| e == "md") {
                files.push(entry);
            }
        }
    }
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut in_code = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
            }
            if in_code {
                continue;
            }
            for link in line.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
                if link.starts_with("http") || link.starts_with("mailto:") || link.contains(' ') {
                    continue;
                }
                let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
                let target = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
                if !target.exists() {
                    broken.push(format!("{}: {link} (no such file)", file.strip_prefix(root).unwrap().display()));
                    continue;
                }
                if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                    let headings = std::fs::read_to_string(&target).unwrap();
                    if !headings.lines().filter(|l| l.starts_with('#')).any(|h| slug(h) == anchor) {
                        broken.push(format!("{}: {link} (no such heading)", file.strip_prefix(root).unwrap().display()));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

//! status: everything about one resource a person needs when events do
//! not arrive, gathered into one JSON value ([`gather`]) and rendered in
//! plain words ([`render`]). FusionAuth is read with the resource's own API
//! key Secret, which is never printed.

use std::fmt::Write as _;

use fusionhook_api::admin;
use fusionhook_api::resource::{FusionAuthWebhook, StoreType};
use fusionhook_fusionauth::client::{ApiKey, ClientConfig, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::event_types::{self, EventScope};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::advice;
use crate::cluster::{Cluster, explain};

/// How many recent Events are shown.
const EVENTS: usize = 10;

/// Reads the resource, its Events and pods, FusionAuth's side and the store.
pub async fn gather(cluster: &Cluster, name: &str, fusionauth: bool) -> anyhow::Result<Value> {
    let r = cluster.resource(name).await?;
    let status = r.status.clone().unwrap_or_default();
    let conditions: Vec<Value> = status
        .conditions
        .iter()
        .map(|c| {
            json!({
                "type": c.type_, "status": c.status, "reason": c.reason, "message": c.message,
                "since": c.last_transition_time.0.to_string(),
                "whatToDo": if c.status == "True" { None } else { advice::what_to_do(&c.reason) },
            })
        })
        .collect();
    let store = r.spec.receiver.store.as_ref().map_or(StoreType::None, |s| s.kind);
    let store_figures = match store {
        StoreType::None => Value::Null,
        _ => figures(cluster, &r).await.unwrap_or_else(|e| json!({"error": format!("{e:#}")})),
    };
    Ok(json!({
        "name": name,
        "namespace": cluster.namespace,
        "conditions": conditions,
        "events": events(cluster, &r).await.unwrap_or_else(|e| vec![json!({"error": format!("{e:#}")})]),
        "pods": pods(cluster, name).await.unwrap_or_else(|e| vec![json!({"error": format!("{e:#}")})]),
        "webhook": {"id": status.webhook_id, "url": status.url, "fusionAuthUrl": status.fusion_auth_url},
        "switches": if fusionauth {
            switches(cluster, &r).await.unwrap_or_else(|e| json!({"error": format!("{e:#}")}))
        } else {
            json!({"skipped": "add --fusionauth to read them with the resource's API key Secret"})
        },
        "store": {"type": format!("{store:?}").to_lowercase(), "figures": store_figures},
        "backfill": {
            "enabled": r.spec.backfill.as_ref().is_some_and(|b| b.enabled),
            "status": status.backfill,
        },
    }))
}

/// The store's figures: with an embedded store, each pod's (pod proxy,
/// ready or not) and their sum; with PostgreSQL, the shared store's.
async fn figures(cluster: &Cluster, r: &FusionAuthWebhook) -> anyhow::Result<Value> {
    let name = r.name_any();
    let mut total = json!({"pending": 0, "dead": 0, "delivered": 0, "oldestPendingSeconds": null, "pods": []});
    for target in cluster.targets(r).await? {
        let stats = match cluster.admin(&name, &target, &admin::STATS.route(), &[], None).await {
            Ok(stats) => stats,
            Err(e) => json!({"error": format!("{e:#}")}),
        };
        for key in ["pending", "dead", "delivered"] {
            match (stats[key].as_u64(), total[key].as_u64()) {
                (Some(n), Some(sum)) => total[key] = json!(sum + n),
                // A store that cannot be read makes the sum unknown.
                _ => total[key] = Value::Null,
            }
        }
        if let Some(age) = stats["oldestPendingSeconds"].as_u64() {
            total["oldestPendingSeconds"] = json!(total["oldestPendingSeconds"].as_u64().map_or(age, |a| a.max(age)));
        }
        if let Some(problem) = stats["storeProblem"].as_str().or_else(|| stats["error"].as_str()) {
            let previous = total["storeProblem"].as_str().map(|p| format!("{p}; ")).unwrap_or_default();
            total["storeProblem"] = json!(format!("{previous}{}{problem}", target.pod().map(|p| format!("{p}: ")).unwrap_or_default()));
        }
        if let (Some(pod), Some(pods)) = (target.pod(), total["pods"].as_array_mut()) {
            pods.push(json!({"pod": pod, "stats": stats}));
        }
    }
    Ok(total)
}

async fn events(cluster: &Cluster, r: &FusionAuthWebhook) -> anyhow::Result<Vec<Value>> {
    let (name, uid) = (r.name_any(), r.metadata.uid.clone());
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let list = api.list(&ListParams::default()).await.map_err(|e| explain(e, "list Events", "list events.events.k8s.io"))?;
    let mut mine: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            // This resource's, not those of a deleted one of the same name.
            e.regarding.as_ref().is_some_and(|o| {
                o.name.as_deref() == Some(name.as_str())
                    && o.kind.as_deref() == Some("FusionAuthWebhook")
                    && (o.uid.is_none() || o.uid == uid)
            })
        })
        .collect();
    let when = |e: &Event| {
        e.event_time.as_ref().map(|t| t.0.to_string()).or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()))
    };
    mine.sort_by_key(when);
    Ok(mine
        .iter()
        .rev()
        .take(EVENTS)
        .rev()
        .map(|e| json!({"time": when(e), "type": e.type_, "reason": e.reason, "note": e.note}))
        .collect())
}

async fn pods(cluster: &Cluster, name: &str) -> anyhow::Result<Vec<Value>> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/managed-by=fusionhook-operator");
    let list = api.list(&ListParams::default().labels(&selector)).await.map_err(|e| explain(e, "list Pods", "list pods"))?;
    Ok(list
        .items
        .iter()
        .map(|p| {
            let status = p.status.as_ref();
            let ready = status.and_then(|s| s.conditions.as_ref()).into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            let restarts: i32 = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten().map(|c| c.restart_count).sum();
            json!({"name": p.name_any(), "ready": ready, "restarts": restarts, "phase": status.and_then(|s| s.phase.clone())})
        })
        .collect())
}

/// FusionAuth's three switches for each of the resource's events (FACTS.md
/// §c.5): the webhook's event, the webhook's tenant scope, the tenant's switch.
async fn switches(cluster: &Cluster, r: &FusionAuthWebhook) -> anyhow::Result<Value> {
    let Some(id) = r.status.as_ref().and_then(|s| s.webhook_id.as_deref()).and_then(|i| Uuid::parse_str(i).ok()) else {
        return Ok(json!({"error": "not registered yet"}));
    };
    let key_ref = &r.spec.fusion_auth.api_key_secret_ref;
    let key = cluster
        .secret_key(&key_ref.name, &key_ref.key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("Secret {} has no key {}", key_ref.name, key_ref.key))?;
    let mut config = ClientConfig::new(r.spec.fusion_auth.url.parse()?, ApiKey::new(String::from_utf8(key)?.trim()));
    if let Some(ca) = &r.spec.fusion_auth.ca_secret_ref {
        config.ca_pem = cluster.secret_key(&ca.name, &ca.key).await?;
    }
    config.retry = RetryPolicy::none();
    config.timeout = std::time::Duration::from_secs(10);
    let fa = FusionAuthClient::new(config)?;
    let Some(webhook) = fa.retrieve_webhook(id).await? else { return Ok(json!({"error": format!("FusionAuth has no webhook {id}")})) };
    let tenants = fa.retrieve_tenants().await?;
    let mut rows = Vec::new();
    for event in &r.spec.events {
        let on_webhook = webhook.events_enabled.get(event).copied().unwrap_or(false);
        // Instance events (audit-log.create, kickstart.success, …) skip the tenant switches (FACTS.md §c.5).
        let instance = event_types::lookup(event).is_some_and(|t| t.scope == EventScope::Instance);
        if instance {
            rows.push(json!({"event": event, "tenant": "(instance event)", "webhookEvent": on_webhook, "tenantScope": true, "tenantSwitch": true, "on": on_webhook}));
            continue;
        }
        // Every tenant the webhook covers, and those the spec names that it does not.
        let named: Vec<String> = r.spec.tenants.as_ref().map(|t| t.tenant_ids.clone()).unwrap_or_default();
        for (tenant, tenant_name, configuration) in &tenants {
            let in_scope = webhook.global || webhook.tenant_ids.contains(tenant);
            if !in_scope && !named.contains(&tenant.to_string()) {
                continue;
            }
            let tenant_switch = configuration.events.get(event).is_some_and(|e| e.enabled);
            rows.push(json!({
                "event": event, "tenant": tenant_name, "tenantId": tenant,
                "webhookEvent": on_webhook, "tenantScope": in_scope, "tenantSwitch": tenant_switch,
                "on": on_webhook && in_scope && tenant_switch,
            }));
        }
    }
    Ok(json!({"global": webhook.global, "rows": rows}))
}

/// The status in plain words.
pub fn render(report: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "FusionAuthWebhook {}/{}", text(&report["namespace"]), text(&report["name"]));
    render_conditions(&mut out, report);
    render_webhook(&mut out, report);
    render_pods(&mut out, report);
    render_store(&mut out, &report["store"]);
    let backfill = &report["backfill"];
    if backfill["enabled"] == true {
        let b = &backfill["status"];
        let _ = writeln!(
            out,
            "\nBackfill: on; checkpoint {}, {} handed over in all (last {})",
            text(&b["checkpoint"]),
            b["handedOver"].as_u64().unwrap_or(0),
            text(&b["lastHandOver"])
        );
    } else {
        let _ = writeln!(out, "\nBackfill: off");
    }
    let _ = writeln!(out, "\nRecent Events:");
    for e in report["events"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {} {:<8} {:<24} {}", text(&e["time"]), text(&e["type"]), text(&e["reason"]), text(&e["note"]));
    }
    out
}

/// A value as text (`-` for none).
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| if v.is_null() { "-".to_owned() } else { v.to_string() }, str::to_owned)
}

/// The conditions, each with what to do when it is not True.
fn render_conditions(out: &mut String, report: &Value) {
    let _ = writeln!(out, "\nConditions:");
    for c in report["conditions"].as_array().into_iter().flatten() {
        let mark = match c["status"].as_str() {
            Some("True") => "ok ",
            Some("False") => "NO ",
            _ => "?  ",
        };
        let _ = writeln!(out, "  {mark} {:<20} {:<28} {}", text(&c["type"]), text(&c["reason"]), text(&c["message"]));
        if let Some(todo) = c["whatToDo"].as_str() {
            let _ = writeln!(out, "      what to do: {todo}");
        }
    }
}

/// FusionAuth's webhook and its three switches per event and tenant.
fn render_webhook(out: &mut String, report: &Value) {
    let webhook = &report["webhook"];
    let _ = writeln!(out, "\nFusionAuth webhook: {} (FusionAuth {})", text(&webhook["id"]), text(&webhook["fusionAuthUrl"]));
    let _ = writeln!(out, "  calls: {}", text(&webhook["url"]));
    let switches = &report["switches"];
    if let Some(why) = switches["skipped"].as_str() {
        let _ = writeln!(out, "  switches: not read ({why})");
        return;
    }
    if let Some(e) = switches["error"].as_str() {
        let _ = writeln!(out, "  switches: cannot read ({e})");
        return;
    }
    let _ = writeln!(out, "  switches (webhook event, tenant scope, tenant switch):");
    for row in switches["rows"].as_array().into_iter().flatten() {
        let flag = |k: &str| if row[k] == true { "on" } else { "OFF" };
        let _ = writeln!(
            out,
            "    {:<28} tenant {:<20} {} / {} / {}{}",
            text(&row["event"]),
            text(&row["tenant"]),
            flag("webhookEvent"),
            flag("tenantScope"),
            flag("tenantSwitch"),
            if row["on"] == true { "" } else { "  <- FusionAuth does not send it" }
        );
    }
}

/// The receiver pods: ready or not, restarts.
fn render_pods(out: &mut String, report: &Value) {
    let _ = writeln!(out, "\nReceiver pods:");
    for p in report["pods"].as_array().into_iter().flatten() {
        match p["error"].as_str() {
            Some(e) => {
                let _ = writeln!(out, "  cannot list: {e}");
            }
            None => {
                let ready = if p["ready"] == true { "ready" } else { "NOT READY" };
                let _ = writeln!(out, "  {:<40} {:<10} restarts {}", text(&p["name"]), ready, text(&p["restarts"]));
            }
        }
    }
}

/// The store's type and figures (summed over an embedded store's pods).
fn render_store(out: &mut String, store: &Value) {
    let _ = write!(out, "\nStore: {}", text(&store["type"]));
    let figures = &store["figures"];
    if let Some(e) = figures["error"].as_str() {
        let _ = writeln!(out, " (cannot read: {e})");
    } else if figures.is_object() {
        let pods = figures["pods"].as_array().cloned().unwrap_or_default();
        if pods.len() > 1 {
            let _ = write!(out, " (the sum of {} pods' stores)", pods.len());
        }
        let _ = writeln!(
            out,
            ": {} pending (oldest {} s), {} dead, {} delivered{}",
            text(&figures["pending"]),
            text(&figures["oldestPendingSeconds"]),
            text(&figures["dead"]),
            text(&figures["delivered"]),
            figures["storeProblem"].as_str().map(|p| format!("; PROBLEM: {p}")).unwrap_or_default()
        );
    } else {
        let _ = writeln!(out);
    }
}

/// The outcome of `reconcile`.
pub fn render_reconcile(outcome: &Value) -> String {
    if outcome["handled"] != true {
        return format!("reconcile requested ({}); the operator picks it up at once (--wait to see the outcome)\n", outcome["requested"]);
    }
    format!(
        "reconciled: Ready {} ({}) {}\n",
        outcome["ready"].as_str().unwrap_or("-"),
        outcome["reason"].as_str().unwrap_or("-"),
        outcome["message"].as_str().unwrap_or_default()
    )
}

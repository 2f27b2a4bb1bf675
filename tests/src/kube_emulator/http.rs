//! The HTTP face of the emulator: discovery, the REST paths of every
//! served type (namespaced, cluster-scoped, `/status`), content negotiation
//! (plain JSON, `Table` for kubectl's printer columns, metadata-only
//! `PartialObjectMetadata`), and streaming watches.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::registry::{self, ResourceType};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{ApiError, Change, PatchKind};
use super::table;
use super::{KubeEmulator, protobuf};

/// One request, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// `User-Agent`.
    pub user_agent: String,
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error(e: &ApiError) -> Response {
    let (code, body) = e.status();
    json_response(code, &body)
}

fn query_map(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (decode(k), decode(v))
        })
        .collect()
}

/// Where a REST path points.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// Splits `/api/v1/...` and `/apis/{g}/{v}/...`; `Err` carries a discovery path.
fn parse(path: &str, emulator: &KubeEmulator) -> Option<Result<Target, (String, String)>> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (String::new(), (*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => ((*group).to_owned(), (*version).to_owned(), rest),
        _ => return None,
    };
    if rest.is_empty() {
        return Some(Err((group, version)));
    }
    let namespaced_type = |resource: &str| emulator.store().find(&group, &version, resource).is_some_and(|t| t.namespaced);
    let target = match rest {
        ["namespaces", ns, resource, more @ ..] if namespaced_type(resource) => Target {
            group: group.clone(),
            version: version.clone(),
            resource: (*resource).to_owned(),
            namespace: Some((*ns).to_owned()),
            name: more.first().map(|s| (*s).to_owned()),
            subresource: more.get(1).map(|s| (*s).to_owned()),
        },
        [resource, more @ ..] => Target {
            group: group.clone(),
            version: version.clone(),
            resource: (*resource).to_owned(),
            namespace: None,
            name: more.first().map(|s| (*s).to_owned()),
            subresource: more.get(1).map(|s| (*s).to_owned()),
        },
        [] => return Some(Err((group, version))),
    };
    Some(Ok(target))
}

/// The router's single handler.
pub async fn handle(State(emulator): State<KubeEmulator>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    emulator.audit(Audit { method: method.to_string(), path: path.clone(), query: query.clone(), user_agent });
    let body = match axum::body::to_bytes(request.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(e) => return error(&ApiError::BadRequest(format!("cannot read the body: {e}"))),
    };
    match (method.as_str(), path.as_str()) {
        ("GET", "/version") => {
            return json_response(
                200,
                &json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0-fusionhook-emulator", "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-11-01T00:00:00Z", "goVersion": "go", "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        ("GET", "/api") => return json_response(200, &registry::core_versions(&emulator.address())),
        ("GET", "/apis") => return json_response(200, &registry::group_list(&emulator.store().types)),
        ("GET", "/healthz" | "/readyz" | "/livez") => return (StatusCode::OK, "ok").into_response(),
        ("POST", "/emulator/compact") => {
            emulator.store().compact();
            return json_response(200, &json!({"compacted": true}));
        }
        _ => {}
    }
    if let Some(group) = path.strip_prefix("/apis/").filter(|g| !g.contains('/')) {
        return match registry::group(&emulator.store().types, group) {
            Some(g) => json_response(200, &g),
            None => error(&ApiError::NotFound(format!("the server could not find the requested resource (group {group})"))),
        };
    }
    if let Some(proxied) = super::proxy::parse(&path) {
        return match super::proxy::forward(&emulator, &method, proxied, &query, &headers, body).await {
            Ok(response) => response,
            Err(e) => error(&e),
        };
    }
    let target = match parse(&path, &emulator) {
        None => return error(&ApiError::NotFound("the server could not find the requested resource".into())),
        Some(Err((group, version))) => {
            return match registry::resource_list(&emulator.store().types, &group, &version) {
                Some(list) => json_response(200, &list),
                None => error(&ApiError::NotFound("the server could not find the requested resource".into())),
            };
        }
        Some(Ok(t)) => t,
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let body = if method == Method::DELETE {
        // DeleteOptions: propagation is always background here.
        Bytes::new()
    } else if content_type.contains("protobuf") {
        match protobuf::decode(&body) {
            Ok(object) => Bytes::from(object.to_string()),
            Err(e) => return error(&ApiError::UnsupportedMediaType(e)),
        }
    } else if content_type.contains("cbor") {
        return error(&ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type})"
        )));
    } else {
        body
    };
    serve(&emulator, &method, &target, &query_map(&query), &headers, &body).await
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice::<Value>(body))
        .map_err(|e| ApiError::BadRequest(format!("the body is neither JSON nor YAML: {e}")))
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// What the client asked to get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Full,
    Table,
    Metadata,
}

fn shape(headers: &HeaderMap) -> Shape {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // The first acceptable form wins, as in kube-apiserver's negotiation.
    for option in accept.split(',') {
        if option.contains("as=Table") {
            return Shape::Table;
        }
        if option.contains("as=PartialObjectMetadata") {
            return Shape::Metadata;
        }
        if option.trim().starts_with("application/json") || option.trim() == "*/*" {
            return Shape::Full;
        }
    }
    Shape::Full
}

fn partial(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
}

fn shaped_list(t: &ResourceType, items: Vec<Value>, rv: u64, shape: Shape) -> Value {
    match shape {
        Shape::Table => table::table(t, &items, rv),
        Shape::Metadata => json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items.iter().map(partial).collect::<Vec<_>>(),
        }),
        Shape::Full => json!({
            "apiVersion": t.api_version(), "kind": format!("{}List", t.kind),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    }
}

fn shaped(t: &ResourceType, object: Value, rv: u64, shape: Shape) -> Value {
    match shape {
        Shape::Table => table::table(t, std::slice::from_ref(&object), rv),
        Shape::Metadata => partial(&object),
        Shape::Full => object,
    }
}

async fn serve(
    emulator: &KubeEmulator,
    method: &Method,
    target: &Target,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some(t) = emulator.store().find(&target.group, &target.version, &target.resource).cloned() else {
        return error(&ApiError::NotFound(format!("the server could not find the requested resource ({})", target.resource)));
    };
    if t.namespaced != target.namespace.is_some() && (target.name.is_some() || method != Method::GET) {
        return error(&ApiError::NotFound(format!("{} is {}", t.resource, if t.namespaced { "namespaced" } else { "cluster-scoped" })));
    }
    let namespace = target.namespace.clone().unwrap_or_default();
    let status = match target.subresource.as_deref() {
        None => false,
        Some("status") if t.status => true,
        Some(other) => return error(&ApiError::NotFound(format!("{}/{other} is not served", t.resource))),
    };
    let shape = shape(headers);
    let manager = param(query, "fieldManager").unwrap_or_default().to_owned();
    let dry_run = param(query, "dryRun").is_some();
    let labels = match LabelSelector::parse(param(query, "labelSelector").unwrap_or_default()) {
        Ok(l) => l,
        Err(e) => return error(&ApiError::BadRequest(e)),
    };
    let fields = match FieldSelector::parse(param(query, "fieldSelector").unwrap_or_default()) {
        Ok(f) => f,
        Err(e) => return error(&ApiError::BadRequest(e)),
    };
    let mut store = emulator.store();
    let rv = store.resource_version();
    let result = match (method.as_str(), &target.name) {
        ("GET", None) if matches!(param(query, "watch"), Some("true" | "1")) => {
            drop(store);
            return watch(emulator, t, target.namespace.clone(), labels, fields, query, shape);
        }
        ("GET", None) => Ok((200, shaped_list(&t, store.list(&t, target.namespace.as_deref(), &labels, &fields), rv, shape))),
        ("GET", Some(name)) => store.get(&t, &namespace, name).map(|o| (200, shaped(&t, o, rv, shape))),
        ("POST", None) if dry_run => parse_body(body).map(|o| (201, o)),
        ("POST", None) => parse_body(body).and_then(|o| store.create(&t, &namespace, o, &manager)).map(|o| (201, o)),
        ("PUT", Some(name)) => parse_body(body).and_then(|o| store.replace(&t, &namespace, name, o, status, &manager)).map(|o| (200, o)),
        ("PATCH", Some(name)) => {
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let kind = match content_type.split(';').next().unwrap_or_default().trim() {
                "application/merge-patch+json" => Ok(PatchKind::Merge),
                "application/json-patch+json" => Ok(PatchKind::Json),
                "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
                other => Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
                ))),
            };
            let force = matches!(param(query, "force"), Some("true" | "1"));
            kind.and_then(|kind| parse_body(body).map(|b| (kind, b)))
                .and_then(|(kind, b)| store.patch(&t, &namespace, name, kind, &b, status, &manager, force))
                .map(|o| (200, o))
        }
        ("DELETE", Some(name)) => store.delete(&t, &namespace, name).map(|o| (200, o)),
        ("DELETE", None) => {
            let names: Vec<(String, String)> = store
                .list(&t, target.namespace.as_deref(), &labels, &fields)
                .iter()
                .map(|o| {
                    (
                        o["metadata"]["namespace"].as_str().unwrap_or_default().to_owned(),
                        o["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            for (ns, name) in &names {
                let _ = store.delete(&t, ns, name);
            }
            Ok((200, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})))
        }
        _ => Err(ApiError::MethodNotAllowed(format!("{method} is not supported here"))),
    };
    match result {
        Ok((code, body)) => json_response(code, &body),
        Err(e) => error(&e),
    }
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn matches(change: &Change, t: &ResourceType, namespace: Option<&str>, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    change.group == t.group
        && change.resource == t.resource
        && namespace.is_none_or(|ns| ns == change.namespace)
        && labels.matches(&change.object)
        && fields.matches(&change.object)
}

fn bookmark(t: &ResourceType, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": t.kind, "apiVersion": t.api_version(), "metadata": meta})
}

/// A streaming watch: events after the given resourceVersion in order
/// (all current objects as ADDED first when none is given), BOOKMARKs when
/// asked, closed after `timeoutSeconds`; a resourceVersion older than the
/// retained log gets an ERROR event with 410 Expired.
fn watch(
    emulator: &KubeEmulator,
    t: ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &[(String, String)],
    shape: Shape,
) -> Response {
    let bookmarks = matches!(param(query, "allowWatchBookmarks"), Some("true" | "1"));
    let send_initial = matches!(param(query, "sendInitialEvents"), Some("true" | "1"));
    let timeout = param(query, "timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).unwrap_or(1800);
    let start = param(query, "resourceVersion").filter(|v| !v.is_empty() && *v != "0").map(str::parse::<u64>);
    let (first, mut changes, rv, failed) = {
        let store = emulator.store();
        let rv = store.resource_version();
        let mut first: Vec<Bytes> = Vec::new();
        let mut failed = false;
        match start {
            Some(Err(_)) => {
                let (_, status) = ApiError::BadRequest("resourceVersion is not a number".into()).status();
                first.push(watch_line("ERROR", &status));
                failed = true;
            }
            Some(Ok(from)) if from < store.oldest_watchable() && !send_initial => {
                let (_, status) = ApiError::Gone(format!("too old resource version: {from} ({})", store.oldest_watchable())).status();
                first.push(watch_line("ERROR", &status));
                failed = true;
            }
            Some(Ok(from)) if !send_initial => {
                for change in store.changes_since(from).iter().filter(|c| matches(c, &t, namespace.as_deref(), &labels, &fields)) {
                    let object = if shape == Shape::Metadata { partial(&change.object) } else { change.object.clone() };
                    first.push(watch_line(change.kind, &object));
                }
            }
            _ => {
                for object in store.list(&t, namespace.as_deref(), &labels, &fields) {
                    let object = if shape == Shape::Metadata { partial(&object) } else { object };
                    first.push(watch_line("ADDED", &object));
                }
                if send_initial {
                    first.push(watch_line("BOOKMARK", &bookmark(&t, rv, true)));
                }
            }
        }
        (first, store.changes.subscribe(), rv, failed)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        for line in first {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if failed {
            return;
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.tick().await;
        let mut last_rv = rv;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(watch_line("BOOKMARK", &bookmark(&t, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                change = changes.recv() => match change {
                    Ok(change) => {
                        if change.rv <= rv {
                            continue;
                        }
                        last_rv = change.rv;
                        if matches(&change, &t, namespace.as_deref(), &labels, &fields) {
                            let object = if shape == Shape::Metadata { partial(&change.object) } else { change.object.clone() };
                            if tx.send(watch_line(change.kind, &object)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let (_, status) = ApiError::Gone("the watch fell behind; relist".into()).status();
                        let _ = tx.send(watch_line("ERROR", &status)).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx)) });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

//! The emulator's storage and its rules: one resourceVersion counter for
//! everything, uid/creationTimestamp/generation, optimistic concurrency,
//! finalizers, namespaces, ownerReference garbage collection (background),
//! CRDs that register new types, and the event log watches read from.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::patch;
use super::registry::{self, ResourceType};
use super::selectors::{FieldSelector, LabelSelector};

/// A change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// API group.
    pub group: String,
    /// Resource.
    pub resource: String,
    /// Namespace (`""` for cluster-scoped).
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The object after the change (before it, for `DELETED`).
    pub object: Value,
}

/// An API error with kube-apiserver's reason.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 404.
    NotFound(String),
    /// 409, create of an existing name.
    AlreadyExists(String),
    /// 409, stale resourceVersion or an apply conflict.
    Conflict(String),
    /// 422.
    Invalid(String),
    /// 400.
    BadRequest(String),
    /// 405.
    MethodNotAllowed(String),
    /// 415.
    UnsupportedMediaType(String),
    /// 410.
    Gone(String),
    /// 503 (a proxy with no endpoint to reach).
    ServiceUnavailable(String),
}

impl ApiError {
    /// HTTP status and the `Status` body.
    pub fn status(&self) -> (u16, Value) {
        let (code, reason, message) = match self {
            Self::NotFound(m) => (404, "NotFound", m),
            Self::AlreadyExists(m) => (409, "AlreadyExists", m),
            Self::Conflict(m) => (409, "Conflict", m),
            Self::Invalid(m) => (422, "Invalid", m),
            Self::BadRequest(m) => (400, "BadRequest", m),
            Self::MethodNotAllowed(m) => (405, "MethodNotAllowed", m),
            Self::UnsupportedMediaType(m) => (415, "UnsupportedMediaType", m),
            Self::Gone(m) => (410, "Expired", m),
            Self::ServiceUnavailable(m) => (503, "ServiceUnavailable", m),
        };
        (
            code,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}),
        )
    }
}

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

type ObjectKey = (String, String);
type TypeKey = (String, String);

/// Events kept for watches; older resourceVersions get 410 Gone.
const RETAINED_CHANGES: usize = 50_000;

/// Everything the API server holds.
pub struct Store {
    /// Served types (built-ins and CRDs).
    pub types: Vec<ResourceType>,
    objects: BTreeMap<TypeKey, BTreeMap<ObjectKey, Value>>,
    applied: BTreeMap<(TypeKey, ObjectKey, String), Value>,
    rv: u64,
    log: VecDeque<Arc<Change>>,
    /// Wakes watches.
    pub changes: broadcast::Sender<Arc<Change>>,
    services: u32,
    names: u64,
}

/// Seconds since the Unix epoch.
pub fn epoch_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::from_second(epoch_seconds())
        .map_or_else(|_| String::new(), |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn without_meta_and_status(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// A store with the built-in types and the namespaces every cluster has.
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(65_536);
        let mut store = Self {
            types: registry::builtins(),
            objects: BTreeMap::new(),
            applied: BTreeMap::new(),
            rv: 0,
            log: VecDeque::new(),
            changes,
            services: 0,
            names: 0,
        };
        let ns = store.find("", "v1", "namespaces").cloned();
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if let Some(t) = &ns {
                let _ = store.create(t, "", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}), "kube-apiserver");
            }
        }
        store
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch can start from.
    pub fn oldest_watchable(&self) -> u64 {
        self.log.front().map_or(self.rv, |c| c.rv - 1)
    }

    /// Drops the change log (so older resourceVersions get 410 Gone).
    pub fn compact(&mut self) {
        self.log.clear();
    }

    /// Changes after `rv`.
    pub fn changes_since(&self, rv: u64) -> Vec<Arc<Change>> {
        self.log.iter().filter(|c| c.rv > rv).cloned().collect()
    }

    /// The type served at group/version/resource.
    pub fn find(&self, group: &str, version: &str, resource: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.group == group && t.version == version && t.resource == resource)
    }

    fn type_key(t: &ResourceType) -> TypeKey {
        (t.group.clone(), t.resource.clone())
    }

    fn emit(&mut self, t: &ResourceType, namespace: &str, kind: &'static str, object: Value) {
        let change = Arc::new(Change {
            rv: self.rv,
            group: t.group.clone(),
            resource: t.resource.clone(),
            namespace: namespace.to_owned(),
            kind,
            object,
        });
        self.log.push_back(Arc::clone(&change));
        while self.log.len() > RETAINED_CHANGES {
            self.log.pop_front();
        }
        let _ = self.changes.send(change);
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn display(t: &ResourceType, name: &str) -> String {
        if t.group.is_empty() { format!("{} \"{name}\"", t.resource) } else { format!("{}.{} \"{name}\"", t.resource, t.group) }
    }

    /// Every object of a type (in `namespace`, or all), matching the selectors.
    pub fn list(&self, t: &ResourceType, namespace: Option<&str>, labels: &LabelSelector, fields: &FieldSelector) -> Vec<Value> {
        self.objects
            .get(&Self::type_key(t))
            .into_iter()
            .flat_map(|objects| objects.iter())
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, o)| o)
            .filter(|o| labels.matches(o) && fields.matches(o))
            .cloned()
            .collect()
    }

    /// One object.
    pub fn get(&self, t: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::type_key(t))
            .and_then(|objects| objects.get(&(namespace.to_owned(), name.to_owned())))
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("{} not found", Self::display(t, name))))
    }

    fn check_namespace(&self, t: &ResourceType, namespace: &str) -> Result<(), ApiError> {
        if !t.namespaced {
            return Ok(());
        }
        let Some(ns_type) = self.find("", "v1", "namespaces") else { return Ok(()) };
        let ns = self.get(ns_type, "", namespace).map_err(|_| ApiError::NotFound(format!("namespaces \"{namespace}\" not found")))?;
        if ns["metadata"].get("deletionTimestamp").is_some() {
            return Err(ApiError::Invalid(format!("unable to create new content in namespace {namespace} because it is being terminated")));
        }
        Ok(())
    }

    /// `old`: the object before an update (transition rules compare with it).
    fn validate(t: &ResourceType, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        let Some(schema) = &t.schema else { return Ok(()) };
        // The CRD's structural schema minus what jsonschema does not know;
        // x-kubernetes-* keywords are ignored as unknown keywords there. CEL
        // rules (x-kubernetes-validations) are evaluated after it, as the API
        // server does (kube-cel; a rule that does not compile refuses every
        // object, where the API server would refuse the CRD itself).
        let mut body = object.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("metadata");
            m.remove("apiVersion");
            m.remove("kind");
        }
        let mut schema = schema.clone();
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.remove("metadata");
            props.remove("apiVersion");
            props.remove("kind");
        }
        let validator = jsonschema::draft4::new(&schema).map_err(|e| ApiError::Invalid(format!("the CRD schema does not compile: {e}")))?;
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| {
                let path = e.instance_path().to_string();
                let field = path.trim_start_matches('/').replace('/', ".");
                format!("{field}: {e}")
            })
            .collect();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if !errors.is_empty() {
            return Err(ApiError::Invalid(format!("{}.{} \"{name}\" is invalid: {}", t.kind, t.group, errors.join(", "))));
        }
        let old_body = old.map(|o| {
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("metadata");
                m.remove("apiVersion");
                m.remove("kind");
            }
            o
        });
        match kube_cel::Validator::new().validate(&schema, &body, old_body.as_ref()) {
            Ok(()) => Ok(()),
            Err(failed) => {
                let errors: Vec<String> =
                    failed.iter().map(|e| format!("{}: Invalid value: \"object\": {}", e.field_path, e.message)).collect();
                Err(ApiError::Invalid(format!("{}.{} \"{name}\" is invalid: {}", t.kind, t.group, errors.join(", "))))
            }
        }
    }

    fn managed(object: &mut Value, manager: &str, operation: &str, t: &ResourceType, subresource: Option<&str>) {
        if manager.is_empty() {
            return;
        }
        let entry = {
            let mut e = json!({"manager": manager, "operation": operation, "apiVersion": t.api_version(), "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}});
            if let Some(sub) = subresource {
                e["subresource"] = json!(sub);
            }
            e
        };
        let list = object["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
        let mut list: Vec<Value> = list
            .into_iter()
            .filter(|m| {
                !(m["manager"] == manager && m["operation"] == operation && m.get("subresource").and_then(Value::as_str) == subresource)
            })
            .collect();
        list.push(entry);
        object["metadata"]["managedFields"] = Value::Array(list);
    }

    /// Type-specific work of the API server on write.
    fn on_write(&mut self, t: &ResourceType, object: &mut Value, created: bool) {
        match (t.group.as_str(), t.resource.as_str()) {
            ("", "secrets") => {
                if let Some(string_data) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
                    use base64::Engine;
                    for (k, v) in string_data.as_object().into_iter().flatten() {
                        object["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default()));
                    }
                }
                if object.get("type").is_none() {
                    object["type"] = json!("Opaque");
                }
            }
            ("", "services") if created && object["spec"].get("clusterIP").is_none() => {
                self.services += 1;
                object["spec"]["clusterIP"] = json!(format!("10.96.{}.{}", self.services / 250, self.services % 250 + 1));
                object["spec"]["type"] = object["spec"].get("type").cloned().unwrap_or(json!("ClusterIP"));
            }
            ("", "namespaces") if created => object["status"] = json!({"phase": "Active"}),
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let names = object["spec"]["names"].clone();
                let time = now();
                object["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": object["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>(),
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": time},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": time},
                    ],
                });
                let defined = registry::from_crd(object);
                self.types.retain(|existing| !defined.iter().any(|d| d.group == existing.group && d.resource == existing.resource));
                self.types.extend(defined);
            }
            _ => {}
        }
    }

    /// Create (`POST`).
    pub fn create(&mut self, t: &ResourceType, namespace: &str, mut object: Value, manager: &str) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::BadRequest("the body is not an object".into()));
        }
        let name = match object["metadata"]["name"].as_str().filter(|n| !n.is_empty()) {
            Some(n) => n.to_owned(),
            None => match object["metadata"]["generateName"].as_str() {
                Some(prefix) => {
                    self.names += 1;
                    let suffix: String = format!("{:05x}", (self.names * 7919) % 0xfffff).chars().rev().collect();
                    format!("{prefix}{suffix}")
                }
                None => {
                    return Err(ApiError::Invalid(format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        t.kind
                    )));
                }
            },
        };
        self.check_namespace(t, namespace)?;
        if let Some(body_ns) = object["metadata"]["namespace"].as_str()
            && t.namespaced
            && !body_ns.is_empty()
            && body_ns != namespace
        {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        let key = (namespace.to_owned(), name.clone());
        if self.objects.get(&Self::type_key(t)).is_some_and(|o| o.contains_key(&key)) {
            return Err(ApiError::AlreadyExists(format!("{} already exists", Self::display(t, &name))));
        }
        Self::validate(t, &object, None)?;
        object["apiVersion"] = json!(t.api_version());
        object["kind"] = json!(t.kind);
        let meta = &mut object["metadata"];
        meta["name"] = json!(name);
        if t.namespaced {
            meta["namespace"] = json!(namespace);
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
            m.remove("resourceVersion");
        }
        if t.status && t.schema.is_some() {
            // A CR's status is written only through /status.
            if let Some(o) = object.as_object_mut() {
                o.remove("status");
            }
        }
        self.on_write(t, &mut object, true);
        Self::managed(&mut object, manager, "Update", t, None);
        object["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.objects.entry(Self::type_key(t)).or_default().insert(key, object.clone());
        self.emit(t, namespace, "ADDED", object.clone());
        Ok(object)
    }

    /// Stores `new` over the current object, bumping generation on spec
    /// changes, and removes the object when it is being deleted and its last
    /// finalizer is gone.
    fn store(&mut self, t: &ResourceType, namespace: &str, name: &str, current: &Value, mut new: Value) -> Result<Value, ApiError> {
        for field in ["uid", "creationTimestamp", "deletionTimestamp", "generation"] {
            match current["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        new["metadata"]["name"] = json!(name);
        new["apiVersion"] = json!(t.api_version());
        new["kind"] = json!(t.kind);
        if t.namespaced {
            new["metadata"]["namespace"] = json!(namespace);
        }
        self.on_write(t, &mut new, false);
        if without_meta_and_status(&new) != without_meta_and_status(current) {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        let unmanaged = |o: &Value| {
            let mut o = o.clone();
            if let Some(m) = o["metadata"].as_object_mut() {
                m.remove("managedFields");
                m.remove("resourceVersion");
            }
            o
        };
        if unmanaged(&new) == unmanaged(current) {
            // A no-op write changes nothing, not even the resourceVersion.
            return Ok(current.clone());
        }
        new["metadata"]["resourceVersion"] = json!(self.next_rv());
        let deleting = new["metadata"].get("deletionTimestamp").is_some();
        let finalizers = new["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if deleting && !finalizers {
            self.remove(t, namespace, name);
            return Ok(new);
        }
        self.objects.entry(Self::type_key(t)).or_default().insert((namespace.to_owned(), name.to_owned()), new.clone());
        self.emit(t, namespace, "MODIFIED", new.clone());
        Ok(new)
    }

    fn check_version(t: &ResourceType, name: &str, current: &Value, new: &Value) -> Result<(), ApiError> {
        match new["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() && Some(rv) != current["metadata"]["resourceVersion"].as_str() => Err(ApiError::Conflict(format!(
                "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
                Self::display(t, name)
            ))),
            _ => Ok(()),
        }
    }

    /// Replace (`PUT`), of the object or its `status` subresource.
    pub fn replace(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        new: Value,
        status: bool,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let current = self.get(t, namespace, name)?;
        Self::check_version(t, name, &current, &new)?;
        let mut next = self.compose(t, &current, new, status)?;
        Self::managed(&mut next, manager, "Update", t, status.then_some("status"));
        self.store(t, namespace, name, &current, next)
    }

    /// What a write to the object (or to `/status`) leaves: the status
    /// subresource changes only status; the main resource keeps status.
    fn compose(&self, t: &ResourceType, current: &Value, new: Value, status: bool) -> Result<Value, ApiError> {
        if status {
            let mut next = current.clone();
            next["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            return Ok(next);
        }
        let mut next = new;
        if t.status {
            match current.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    if let Some(o) = next.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        if let Some(mf) = current["metadata"].get("managedFields") {
            next["metadata"]["managedFields"] = mf.clone();
        }
        Self::validate(t, &next, Some(current))?;
        Ok(next)
    }

    /// Patch (`PATCH`): merge, JSON, strategic merge, or server-side apply
    /// (which creates the object when absent).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        status: bool,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApiError> {
        let current = match self.get(t, namespace, name) {
            Ok(c) => c,
            Err(e) if kind != PatchKind::Apply || status => return Err(e),
            Err(_) => {
                if manager.is_empty() {
                    return Err(ApiError::BadRequest("fieldManager is required for apply requests".into()));
                }
                let mut object = body.clone();
                object["metadata"]["name"] = json!(name);
                let created = self.create(t, namespace, object, "")?;
                let mut created = created;
                Self::managed(&mut created, manager, "Apply", t, None);
                self.objects.entry(Self::type_key(t)).or_default().insert((namespace.to_owned(), name.to_owned()), created.clone());
                self.applied.insert((Self::type_key(t), (namespace.to_owned(), name.to_owned()), manager.to_owned()), body.clone());
                return Ok(created);
            }
        };
        let mut patched = current.clone();
        match kind {
            PatchKind::Merge => patch::merge(&mut patched, body),
            PatchKind::Json => patch::json(&mut patched, body).map_err(|e| ApiError::Invalid(format!("the JSON patch failed: {e}")))?,
            PatchKind::Strategic => {
                if t.schema.is_some() {
                    return Err(ApiError::UnsupportedMediaType("strategic merge patch is not supported for custom resources".into()));
                }
                patch::strategic(&mut patched, body);
            }
            PatchKind::Apply => {
                if manager.is_empty() {
                    return Err(ApiError::BadRequest("fieldManager is required for apply requests".into()));
                }
                let object_key = (namespace.to_owned(), name.to_owned());
                let type_key = Self::type_key(t);
                let mut conflicts = Vec::new();
                for ((tk, ok, other), config) in &self.applied {
                    if *tk == type_key && *ok == object_key && other != manager {
                        for path in patch::conflicts(body, config) {
                            conflicts.push((other.clone(), path));
                        }
                    }
                }
                if !conflicts.is_empty() && !force {
                    let list: Vec<String> = conflicts.iter().map(|(m, p)| format!("conflict with \"{m}\": {p}")).collect();
                    return Err(ApiError::Conflict(format!("Apply failed with {} conflict(s): {}", list.len(), list.join(", "))));
                }
                for (other, path) in &conflicts {
                    let key = (type_key.clone(), object_key.clone(), other.clone());
                    if let Some(config) = self.applied.get(&key) {
                        let reduced = patch::without(config, std::slice::from_ref(path));
                        self.applied.insert(key, reduced);
                    }
                }
                let previous =
                    self.applied.get(&(type_key.clone(), object_key.clone(), manager.to_owned())).cloned().unwrap_or_else(patch::empty);
                let target =
                    if status { json!({"status": current.get("status").cloned().unwrap_or(Value::Null)}) } else { current.clone() };
                patched = patch::apply(&target, &previous, body);
                if status {
                    let mut whole = current.clone();
                    whole["status"] = patched.get("status").cloned().unwrap_or(Value::Null);
                    patched = whole;
                }
                self.applied.insert((type_key, object_key, manager.to_owned()), body.clone());
            }
        }
        Self::check_version(t, name, &current, &patched)?;
        if let Some(m) = patched["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let mut next = self.compose(t, &current, patched, status)?;
        let operation = if kind == PatchKind::Apply { "Apply" } else { "Update" };
        Self::managed(&mut next, manager, operation, t, status.then_some("status"));
        self.store(t, namespace, name, &current, next)
    }

    /// Delete: with finalizers, only marked (deletionTimestamp); else removed,
    /// its dependents collected (background propagation).
    pub fn delete(&mut self, t: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let current = self.get(t, namespace, name)?;
        let finalizers = current["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        let is_namespace = t.group.is_empty() && t.resource == "namespaces";
        if finalizers || is_namespace {
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Ok(current);
            }
            let mut marked = current.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if is_namespace {
                marked["status"] = json!({"phase": "Terminating"});
            }
            marked["metadata"]["resourceVersion"] = json!(self.next_rv());
            self.objects.entry(Self::type_key(t)).or_default().insert((namespace.to_owned(), name.to_owned()), marked.clone());
            self.emit(t, namespace, "MODIFIED", marked.clone());
            if is_namespace {
                self.empty_namespace(name);
            }
            return Ok(marked);
        }
        self.remove(t, namespace, name);
        Ok(current)
    }

    /// Deletes everything in a terminating namespace; the namespace goes
    /// when the last object is gone.
    fn empty_namespace(&mut self, namespace: &str) {
        let types: Vec<ResourceType> = self.types.iter().filter(|t| t.namespaced).cloned().collect();
        for t in &types {
            let names: Vec<String> = self
                .objects
                .get(&Self::type_key(t))
                .into_iter()
                .flat_map(|o| o.keys())
                .filter(|(ns, _)| ns == namespace)
                .map(|(_, n)| n.clone())
                .collect();
            for name in names {
                let _ = self.delete(t, namespace, &name);
            }
        }
        self.finish_namespace(namespace);
    }

    fn finish_namespace(&mut self, namespace: &str) {
        let Some(ns_type) = self.find("", "v1", "namespaces").cloned() else { return };
        let Ok(ns) = self.get(&ns_type, "", namespace) else { return };
        if ns["metadata"].get("deletionTimestamp").is_none() {
            return;
        }
        let empty = self.objects.iter().all(|(_, objects)| objects.keys().all(|(ns, _)| ns != namespace));
        if empty {
            self.remove(&ns_type, "", namespace);
        }
    }

    fn remove(&mut self, t: &ResourceType, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let Some(object) = self.objects.get_mut(&Self::type_key(t)).and_then(|o| o.remove(&key)) else { return };
        self.applied.retain(|(tk, ok, _), _| !(*tk == Self::type_key(t) && *ok == key));
        let mut gone = object;
        gone["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.emit(t, namespace, "DELETED", gone.clone());
        if t.group == "apiextensions.k8s.io" && t.resource == "customresourcedefinitions" {
            let defined = registry::from_crd(&gone);
            for d in &defined {
                let names: Vec<ObjectKey> = self.objects.get(&Self::type_key(d)).map(|o| o.keys().cloned().collect()).unwrap_or_default();
                for (ns, n) in names {
                    self.remove(d, &ns, &n);
                }
            }
            self.types.retain(|existing| !defined.iter().any(|d| d.group == existing.group && d.resource == existing.resource));
        }
        self.collect_garbage();
        if !namespace.is_empty() {
            self.finish_namespace(namespace);
        }
    }

    /// Background garbage collection: an object whose every owner is gone
    /// is deleted (respecting its own finalizers).
    fn collect_garbage(&mut self) {
        let uids: BTreeSet<String> =
            self.objects.values().flat_map(|o| o.values()).filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_owned)).collect();
        let mut orphans = Vec::new();
        for t in &self.types {
            for ((ns, name), object) in self.objects.get(&Self::type_key(t)).into_iter().flatten() {
                let owners = object["metadata"]["ownerReferences"].as_array();
                let Some(owners) = owners.filter(|o| !o.is_empty()) else { continue };
                if owners.iter().all(|o| o["uid"].as_str().is_none_or(|uid| !uids.contains(uid)))
                    && object["metadata"].get("deletionTimestamp").is_none()
                {
                    orphans.push((t.clone(), ns.clone(), name.clone()));
                }
            }
        }
        for (t, ns, name) in orphans {
            let _ = self.delete(&t, &ns, &name);
        }
    }

    /// Every object, for tests and the sandbox (`(kind, namespace, name)`).
    pub fn summary(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for t in &self.types {
            for (ns, name) in self.objects.get(&Self::type_key(t)).into_iter().flat_map(|o| o.keys()) {
                out.push((t.kind.clone(), ns.clone(), name.clone()));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

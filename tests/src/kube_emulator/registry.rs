//! The resource types the emulator serves: the built-in kinds fusionhook,
//! kubectl and helm touch, plus every CustomResourceDefinition created at
//! run time, and the discovery documents describing them.

use serde_json::{Value, json};

/// A printer column of a CRD (`additionalPrinterColumns`).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Header.
    pub name: String,
    /// `string`, `integer`, `date`, …
    pub kind: String,
    /// JSONPath into the object.
    pub json_path: String,
    /// 0 = shown by default.
    pub priority: i64,
}

/// One served resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group, `""` for core.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Has a `/status` subresource.
    pub status: bool,
    /// Short names (`faw`).
    pub short_names: Vec<String>,
    /// CRD printer columns.
    pub columns: Vec<Column>,
    /// CRD `openAPIV3Schema`, for validation.
    pub schema: Option<Value>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, resource: &str, kind: &str, namespaced: bool, status: bool, short: &[&str]) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            namespaced,
            status,
            short_names: short.iter().map(|s| (*s).to_owned()).collect(),
            columns: Vec::new(),
            schema: None,
        }
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The discovery entry (and its status subresource).
    fn discovery(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.resource,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": self.short_names,
        })];
        if matches!(self.resource.as_str(), "pods" | "services" | "deployments" | "statefulsets" | "persistentvolumeclaims") {
            out[0]["categories"] = json!(["all"]);
        }
        if self.status {
            out.push(json!({"name": format!("{}/status", self.resource), "singularName": "", "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get", "patch", "update"]}));
        }
        out
    }
}

/// The built-in kinds.
pub fn builtins() -> Vec<ResourceType> {
    let b = ResourceType::builtin;
    vec![
        b("", "v1", "namespaces", "Namespace", false, true, &["ns"]),
        b("", "v1", "secrets", "Secret", true, false, &[]),
        b("", "v1", "configmaps", "ConfigMap", true, false, &["cm"]),
        b("", "v1", "services", "Service", true, true, &["svc"]),
        b("", "v1", "serviceaccounts", "ServiceAccount", true, false, &["sa"]),
        b("", "v1", "events", "Event", true, false, &["ev"]),
        b("", "v1", "pods", "Pod", true, true, &["po"]),
        b("apps", "v1", "deployments", "Deployment", true, true, &["deploy"]),
        b("apps", "v1", "statefulsets", "StatefulSet", true, true, &["sts"]),
        b("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, true, &["pvc"]),
        b("coordination.k8s.io", "v1", "leases", "Lease", true, false, &[]),
        b("events.k8s.io", "v1", "events", "Event", true, false, &["ev"]),
        b("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, true, &["crd", "crds"]),
        b("rbac.authorization.k8s.io", "v1", "roles", "Role", true, false, &[]),
        b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, false, &[]),
        b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, false, &[]),
        b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, false, &[]),
        b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, true, &["pdb"]),
        b("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, false, &["netpol"]),
    ]
}

/// The resource types a CRD defines (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten().filter(|v| v["served"] != false) {
        let columns = version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| Column {
                name: text(&c["name"]),
                kind: text(&c["type"]),
                json_path: text(&c["jsonPath"]),
                priority: c["priority"].as_i64().unwrap_or(0),
            })
            .collect();
        out.push(ResourceType {
            group: text(&spec["group"]),
            version: text(&version["name"]),
            resource: text(&names["plural"]),
            singular: names["singular"].as_str().map_or_else(|| text(&names["kind"]).to_ascii_lowercase(), str::to_owned),
            kind: text(&names["kind"]),
            namespaced: spec["scope"] == "Namespaced",
            status: version["subresources"].get("status").is_some(),
            short_names: names["shortNames"].as_array().into_iter().flatten().map(text).collect(),
            columns,
            schema: version["schema"].get("openAPIV3Schema").cloned(),
        });
    }
    out
}

/// `/api`.
pub fn core_versions(address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]})
}

/// `/apis`: every non-core group with its versions.
pub fn group_list(types: &[ResourceType]) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) if !versions.contains(&t.version) => versions.push(t.version.clone()),
            Some(_) => {}
            None => groups.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let entries: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
            json!({"name": name, "versions": entries, "preferredVersion": entries[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(types: &[ResourceType], group: &str) -> Option<Value> {
    let list = group_list(types);
    list["groups"].as_array()?.iter().find(|g| g["name"] == group).map(|g| {
        let mut g = g.clone();
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// `/api/v1` or `/apis/{group}/{version}`.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let matching: Vec<&ResourceType> = types.iter().filter(|t| t.group == group && t.version == version).collect();
    if matching.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    let resources: Vec<Value> = matching.iter().flat_map(|t| t.discovery()).collect();
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

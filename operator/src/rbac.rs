//! The Kubernetes permissions the operator needs: exactly the verbs it uses
//! on exactly the resources it touches. The Helm chart grants this list
//! (a chart test compares them), and the reconcile and leader tests check
//! that every call the operator makes is covered by it, so a new call
//! without a matching grant fails a test instead of a user's install.

/// One RBAC rule: API group, resource, verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Resource, with `/subresource` where one is used.
    pub resource: &'static str,
    /// Verbs, sorted.
    pub verbs: &'static [&'static str],
}

/// Where a permission is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In every watched namespace (or cluster-wide when watching all).
    Watched,
    /// In the operator's own namespace (the Lease).
    Own,
}

/// Every permission, by where it is needed.
pub const PERMISSIONS: &[(Place, Permission)] = &[
    // The resources: watched, the finalizer patched, the status patched.
    (Place::Watched, Permission { group: "fusionhook.dev", resource: "fusionauthwebhooks", verbs: &["get", "list", "patch", "watch"] }),
    (Place::Watched, Permission { group: "fusionhook.dev", resource: "fusionauthwebhooks/status", verbs: &["patch"] }),
    // Referenced Secrets read, all watched by metadata; the generated
    // Authorization Secret server-side applied (create when absent).
    (Place::Watched, Permission { group: "", resource: "secrets", verbs: &["create", "get", "list", "patch", "watch"] }),
    // The receiver objects: watched (to repair and to see availability) and
    // server-side applied; config versions no pod needs any more deleted.
    (Place::Watched, Permission { group: "", resource: "configmaps", verbs: &["create", "delete", "list", "patch", "watch"] }),
    // A Deployment or a StatefulSet (embedded store) and its headless
    // Service; the one of the other kind is deleted when the store type
    // changes (an embedded store once it is drained: `old_store`).
    (Place::Watched, Permission { group: "", resource: "services", verbs: &["create", "delete", "list", "patch", "watch"] }),
    (Place::Watched, Permission { group: "apps", resource: "deployments", verbs: &["create", "delete", "list", "patch", "watch"] }),
    (Place::Watched, Permission { group: "apps", resource: "statefulsets", verbs: &["create", "delete", "get", "list", "patch", "watch"] }),
    // The receiver's pods, listed when a rollout is stuck, to say why, and
    // during a credential rotation, to see that no pod of the earlier
    // config version serves before FusionAuth is switched;
    // deleted only when a store's StatefulSet, replaced to grow it, left
    // them without an owner and the resource is deleted.
    (Place::Watched, Permission { group: "", resource: "pods", verbs: &["delete", "list"] }),
    // A receiver's admin API, through the API server's pod proxy: an old
    // embedded store is asked what it still holds (get), then its claims
    // are deleted; backfill hands missed events to `/v1/ingest` (create).
    (Place::Watched, Permission { group: "", resource: "pods/proxy", verbs: &["create", "get"] }),
    // An old store's claims are deleted; a growing store's are listed and patched.
    (Place::Watched, Permission { group: "", resource: "persistentvolumeclaims", verbs: &["delete", "list", "patch"] }),
    // Events about the resources (a repeated Event is patched as a series).
    (Place::Watched, Permission { group: "events.k8s.io", resource: "events", verbs: &["create", "patch"] }),
    // Leader election.
    (Place::Own, Permission { group: "coordination.k8s.io", resource: "leases", verbs: &["create", "get", "update"] }),
];

/// The (group, resource, verb) a request needs: `GET` of a collection is
/// `list` (`watch` with `watch=true`), of one object `get`; `POST` create;
/// `PUT` update; `PATCH` patch, and a server-side apply may also create;
/// `DELETE` delete. `None` for paths that are not resources (`/version`).
pub fn needed(method: &str, path: &str, query: &str) -> Option<(String, String, Vec<&'static str>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, named) = match rest {
        [resource, _name, "proxy", ..] => (format!("{resource}/proxy"), true),
        [resource] => ((*resource).to_owned(), false),
        [resource, _name] => ((*resource).to_owned(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let watch = query.split('&').any(|p| p == "watch=true" || p == "watch=1");
    let verbs = match (method, named) {
        ("GET", _) if watch => vec!["watch"],
        ("GET", false) => vec!["list"],
        ("GET", true) => vec!["get"],
        ("POST", _) => vec!["create"],
        ("PUT", _) => vec!["update"],
        ("PATCH", _) => vec!["patch"],
        ("DELETE", _) => vec!["delete"],
        _ => return None,
    };
    Some((group.to_owned(), resource, verbs))
}

/// Whether [`PERMISSIONS`] grants what the request needs.
pub fn granted(method: &str, path: &str, query: &str) -> bool {
    let Some((group, resource, verbs)) = needed(method, path, query) else { return true };
    verbs.iter().all(|verb| PERMISSIONS.iter().any(|(_, p)| p.group == group && p.resource == resource && p.verbs.contains(verb)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_rbac_verbs() {
        assert_eq!(needed("GET", "/api/v1/namespaces/a/secrets/b", ""), Some(("".into(), "secrets".into(), vec!["get"])));
        assert_eq!(
            needed("GET", "/apis/apps/v1/deployments", "labelSelector=x&watch=true"),
            Some(("apps".into(), "deployments".into(), vec!["watch"]))
        );
        assert_eq!(needed("GET", "/apis/apps/v1/namespaces/a/deployments", ""), Some(("apps".into(), "deployments".into(), vec!["list"])));
        assert_eq!(
            needed("PATCH", "/apis/fusionhook.dev/v1alpha1/namespaces/a/fusionauthwebhooks/b/status", ""),
            Some(("fusionhook.dev".into(), "fusionauthwebhooks/status".into(), vec!["patch"]))
        );
        assert_eq!(needed("GET", "/version", ""), None);
        assert!(granted("PUT", "/apis/coordination.k8s.io/v1/namespaces/x/leases/l", ""));
        assert!(!granted("DELETE", "/api/v1/namespaces/x/secrets/s", ""));
        assert!(granted("GET", "/api/v1/namespaces/x/pods", "labelSelector=a"));
        assert!(!granted("GET", "/api/v1/namespaces/x/pods/p", ""), "list only");
        assert!(!granted("GET", "/api/v1/namespaces/x/pods/p/log", ""));
        assert_eq!(
            needed("GET", "/api/v1/namespaces/x/pods/p-0:8081/proxy/v1/stats", ""),
            Some(("".into(), "pods/proxy".into(), vec!["get"]))
        );
        assert!(granted("POST", "/api/v1/namespaces/x/pods/p-0:8081/proxy/v1/ingest", ""), "backfill");
        assert!(!granted("DELETE", "/api/v1/namespaces/x/pods/p-0:8081/proxy/v1/ingest", ""));
    }

    #[test]
    fn verbs_are_sorted_for_a_stable_chart() {
        for (_, p) in PERMISSIONS {
            let mut sorted = p.verbs.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, p.verbs, "{}", p.resource);
        }
    }
}

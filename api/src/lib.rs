//! fusionhook-api: the contract between fusionhook's crates, the facts the
//! operator, the receiver and the `kubectl fusionhook` plugin share:
//!
//! - [`resource`]: the `FusionAuthWebhook` custom resource, its CRD schema
//!   and its status (what the operator writes and the plugin reads);
//! - [`names`]: the names, labels, annotations and ids derived from a resource;
//! - [`conditions`]: condition types and reasons, as values and as the
//!   strings Kubernetes shows;
//! - [`admin`]: the receiver's admin API (port, token header, scopes, the
//!   proof a pod gives, the request and answer types) and, in
//!   [`admin::client`], the one client the operator and the plugin call it
//!   with, through the API server's pod proxy.
//!
//! Without its default feature `kube` (how the receiver uses it) only
//! `names`, `conditions` and the admin API's types are built: no Kubernetes
//! client, no CRD schema.

pub mod admin;
pub mod conditions;
pub mod names;
#[cfg(feature = "kube")]
pub mod resource;

#[cfg(feature = "kube")]
pub use resource::{FusionAuthWebhook, FusionAuthWebhookSpec, FusionAuthWebhookStatus};

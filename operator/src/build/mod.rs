//! build: validated resource -> desired state. Pure: no I/O, no clock, no
//! randomness (a generated `Authorization` value is an input).
//!
//! - [`fusionauth`]: the FusionAuth webhook and drift detection over the fields we own;
//! - [`receiver`]: the receiver's config, Secret, Deployment and Service.

pub mod fusionauth;
pub mod receiver;

pub use fusionauth::{drifted, drifted_fields, fusionauth_webhook, receiver_url};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::resource::FusionAuthWebhook;

/// The controller owner reference every receiver object carries, so deleting
/// the resource garbage-collects them. `None` for a resource without uid
/// (never stored by an API server).
pub fn owner_reference(resource: &FusionAuthWebhook) -> Option<OwnerReference> {
    resource.controller_owner_ref(&())
}

//! build: validated resource + this pass's credentials -> the desired state,
//! one value that apply consumes. Pure: no I/O, no clock, no randomness (a
//! generated `Authorization` value is an input).
//!
//! - [`receiver_config`]: the receiver's config file and the Secret files it reads;
//! - [`receiver`]: the receiver's Secret, ConfigMap, Deployment and Service;
//! - [`fusionauth`]: the FusionAuth webhook and drift detection over the fields we own.

pub mod fusionauth;
pub mod receiver;
pub mod receiver_config;

pub use fusionauth::{drifted, drifted_fields, fusionauth_webhook, receiver_url};

use fusionhook_fusionauth::model::Webhook;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::reconcile::rotation::{AdminTokens, Credentials};
use crate::reconcile::validate::Validated;
use crate::resource::{FusionAuthWebhook, StoreType};

/// The controller owner reference every receiver object carries, so deleting
/// the resource garbage-collects them. `None` for a resource without uid
/// (never stored by an API server).
pub fn owner_reference(resource: &FusionAuthWebhook) -> Option<OwnerReference> {
    resource.controller_owner_ref(&())
}

/// The receiver's Kubernetes objects. No `Debug`: the Secret holds values.
#[derive(Clone)]
pub struct ReceiverObjects {
    /// The operator's own Secret ([`crate::names::kept`]); applied when it
    /// holds anything or exists already (so emptied keys are removed).
    pub kept_secret: Secret,
    /// The admin tokens' Secrets, one per scope.
    pub admin_secrets: Vec<Secret>,
    /// The config.
    pub config_map: ConfigMap,
    /// The Service.
    pub service: Service,
    /// The StatefulSet's headless Service (embedded store only).
    pub pods_service: Option<Service>,
    /// The Deployment or the StatefulSet.
    pub workload: Workload,
}

/// What runs the receiver pods.
#[derive(Clone)]
pub enum Workload {
    /// No store, or PostgreSQL.
    Deployment(Box<Deployment>),
    /// An embedded store: a volume per replica.
    StatefulSet(Box<StatefulSet>),
}

/// Everything this resource wants to exist. No `Debug`: it holds secrets.
#[derive(Clone)]
pub struct Desired {
    /// In Kubernetes.
    pub receiver: ReceiverObjects,
    /// In FusionAuth.
    pub webhook: Webhook,
}

/// How the operator runs every receiver: the image when the resource names
/// none, and where the receivers send traces (if anywhere).
#[derive(Debug, Clone, Default)]
pub struct ReceiverDefaults {
    /// The image when `spec.receiver.image` is not set.
    pub image: String,
    /// OTLP/HTTP endpoint for the receivers' traces.
    pub otlp_endpoint: Option<String>,
}

/// The desired state of `v` with `credentials` and the admin tokens `admin`.
pub fn desired(
    v: &Validated,
    credentials: &Credentials,
    admin: &AdminTokens,
    defaults: &ReceiverDefaults,
    owner: &OwnerReference,
) -> Desired {
    let default_image = defaults.image.as_str();
    let previous = &credentials.previous;
    let config = receiver_config::render(v, previous);
    let template = receiver::Template {
        config_map: receiver::config_map_name(v, &config),
        checksum: receiver::config_checksum(&config, previous, credentials.generated.as_ref(), &v.api_key),
        otlp_endpoint: defaults.otlp_endpoint.clone(),
    };
    Desired {
        receiver: ReceiverObjects {
            kept_secret: receiver::kept_secret(v, credentials, owner),
            admin_secrets: admin.iter().map(|(scope, token)| receiver::admin_secret(v, *scope, token, owner)).collect(),
            config_map: receiver::config_map(v, &config, owner),
            service: receiver::service(v, owner),
            pods_service: (v.store.kind == StoreType::Embedded).then(|| receiver::pods_service(v, owner)),
            workload: match v.store.kind {
                StoreType::Embedded => {
                    Workload::StatefulSet(Box::new(receiver::stateful_set(v, previous, default_image, &template, owner)))
                }
                StoreType::None | StoreType::Postgres => {
                    Workload::Deployment(Box::new(receiver::deployment(v, previous, default_image, &template, owner)))
                }
            },
        },
        webhook: fusionauth_webhook(v, &credentials.authorization.0),
    }
}

#[cfg(test)]
pub(crate) mod fixtures;

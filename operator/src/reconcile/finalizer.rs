//! The finalizer that holds deletion until clean-up ran. JSON patches with a
//! `test` first, as kube-runtime does: a concurrent change of the finalizer
//! list fails the patch instead of being overwritten.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::names::FINALIZER;
use crate::reconcile::Error;
use crate::resource::FusionAuthWebhook;

/// Whether the resource carries our finalizer.
pub fn present(r: &FusionAuthWebhook) -> bool {
    r.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer.
pub async fn add(r: &FusionAuthWebhook, ctx: &Context, api: &Api<FusionAuthWebhook>) -> Result<(), Error> {
    let patch = match &r.metadata.finalizers {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(current) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    json_patch(api, &r.name_any(), patch).await?;
    ctx.metrics.kubernetes_write("finalizer");
    Ok(())
}

/// Removes the finalizer (gone already is fine).
pub async fn remove(r: &FusionAuthWebhook, ctx: &Context, api: &Api<FusionAuthWebhook>) -> Result<(), Error> {
    let Some(index) = r.finalizers().iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let path = format!("/metadata/finalizers/{index}");
    let patch = json!([{"op": "test", "path": path, "value": FINALIZER}, {"op": "remove", "path": path}]);
    match json_patch(api, &r.name_any(), patch).await {
        Err(Error::Finalizer(kube::Error::Api(status))) if status.is_not_found() => Ok(()),
        Err(e) => Err(e),
        Ok(()) => {
            ctx.metrics.kubernetes_write("finalizer");
            Ok(())
        }
    }
}

async fn json_patch(api: &Api<FusionAuthWebhook>, name: &str, patch: serde_json::Value) -> Result<(), Error> {
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| Error::Finalizer(kube::Error::SerdeError(e)))?;
    api.patch::<FusionAuthWebhook>(name, &PatchParams::default(), &Patch::Json(patch)).await.map_err(Error::Finalizer)?;
    Ok(())
}

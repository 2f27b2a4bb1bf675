//! cleanup: remove what a resource put into a FusionAuth: the tenant
//! switches it turned on (unless another webhook listens), the webhook, and
//! the HMAC keys it imported. Runs on delete (behind the finalizer) and when
//! `spec.fusionAuth.url` moves the resource to another FusionAuth (before
//! anything is registered there). When FusionAuth cannot be reached, the
//! finalizer stays (or the move waits) and a condition says what to do;
//! `deletionPolicy: Orphan` leaves everything in place.

use std::collections::BTreeSet;

use fusionhook_fusionauth::client::FusionAuthClient;
use kube::Api;
use uuid::Uuid;

use crate::context::Context;
use crate::names;
use crate::reconcile::apply::fusionauth::{ApplyError, delete_keys};
use crate::reconcile::conditions::EventReason;
use crate::reconcile::conditions::{Kind, Step};
use crate::reconcile::status::{self, Report, normal, warning};
use crate::reconcile::validate::{self, Connection, Validated};
use crate::reconcile::{Error, Stopped, Then, dereference, tenant_switches};
use crate::resource::{DeletionPolicy, FusionAuthWebhook};

/// Removes everything of webhook `webhook_id` from `fa`: first the tenant
/// switches its record claims (read from the webhook itself), then the
/// webhook (404 is success), then `keys`.
pub async fn remove_from(fa: &FusionAuthClient, webhook_id: Uuid, keys: BTreeSet<Uuid>) -> Result<(), ApplyError> {
    let webhook = fa.retrieve_webhook(webhook_id).await?;
    tenant_switches::release(fa, webhook_id, &tenant_switches::claims_of(webhook.as_ref())).await?;
    fa.delete_webhook(webhook_id).await?;
    delete_keys(fa, keys).await
}

/// The HMAC keys the resource may have imported: the one status records,
/// `current` (the spec's), and the uid-only id of versions before 0.2.
fn keys(r: &FusionAuthWebhook, uid: &str, current: Option<Uuid>) -> BTreeSet<Uuid> {
    let recorded = r.status.as_ref().and_then(|s| s.signing_key_id.as_deref()).and_then(|k| Uuid::parse_str(k).ok());
    let signed = r.spec.auth.signature.as_ref().is_some_and(|s| s.hmac_secret_ref.is_some());
    let legacy = (signed || recorded.is_some()).then(|| names::legacy_signing_key_id(uid));
    [recorded, current, legacy].into_iter().flatten().collect()
}

/// Clean-up before the finalizer goes.
pub async fn on_delete(r: &FusionAuthWebhook, ctx: &Context, api: &Api<FusionAuthWebhook>) -> Result<(), Error> {
    let uid = r.metadata.uid.clone().ok_or(Error::Incomplete("uid"))?;
    let webhook_id = names::webhook_id(&uid);
    if r.spec.deletion_policy == DeletionPolicy::Orphan {
        let note = format!("deletionPolicy is Orphan: FusionAuth webhook {webhook_id} is left in place");
        status::publish(r, ctx, &[normal(EventReason::WebhookOrphaned, "Delete", note)]).await;
        return Ok(());
    }
    let secrets = dereference::secrets(&ctx.client, r).await.map_err(Error::Dereference)?;
    let current = validate::validate(r, &secrets).ok().and_then(|v| v.hmac().map(|(_, id)| id));
    let result = match validate::connection(r, &secrets) {
        Ok(connection) => remove_everywhere(r, ctx, connection, webhook_id, keys(r, &uid, current)).await,
        Err(e) => Err(Error::CleanupBlocked(e)),
    };
    if let Err(e) = result {
        let reason = match &e {
            Error::FusionAuth(e) => e.reason(),
            Error::CleanupBlocked(e) => e.reason(),
            _ => crate::reconcile::conditions::Reason::FusionAuthUnreachable,
        };
        let message = format!(
            "cannot remove FusionAuth webhook {webhook_id}: {e}; the finalizer stays until the webhook is removed (or set deletionPolicy: Orphan)"
        );
        status::write(r, ctx, api, Report::new(r), Some(&Step::failed(Kind::Ready, reason, message))).await?;
        return Err(e);
    }
    let note = format!("FusionAuth webhook {webhook_id} deleted");
    status::publish(r, ctx, &[normal(EventReason::WebhookDeleted, "Delete", note)]).await;
    Ok(())
}

/// `status.fusionAuthUrl`, where the resource is registered: the API key is
/// sent there to clean up after a move. `Err(manager)` when someone other
/// than the operator wrote it last (a person with `fusionauthwebhooks/status`
/// rights, which an admission policy on the spec's URL does not see): the
/// key is then not sent there. Without field ownership recorded (an old
/// server, the emulator), or with the nameless manager of earlier
/// operators (kube-rs sends no User-Agent, which names the manager otherwise), the
/// status is taken as the operator's. Field managers are named by the
/// writer: someone with status rights who names the operator's manager
/// passes this check; the chart's `fusionAuthUrlPolicy` (which covers the
/// status subresource) is the defence that holds against that.
fn registered_url(r: &FusionAuthWebhook) -> Result<Option<String>, String> {
    let Some(url) = r.status.as_ref().and_then(|s| s.fusion_auth_url.clone()) else { return Ok(None) };
    let owners = r.metadata.managed_fields.iter().flatten().filter(|m| writes_status_url(m));
    for owner in owners {
        let manager = owner.manager.as_deref().unwrap_or_default();
        if !manager.is_empty() && manager != names::FIELD_MANAGER {
            return Err(manager.to_owned());
        }
    }
    Ok(Some(url))
}

/// Whether a managedFields entry owns `status.fusionAuthUrl`.
pub fn writes_status_url(entry: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry) -> bool {
    entry.fields_v1.as_ref().is_some_and(|f| f.0.get("f:status").and_then(|s| s.get("f:fusionAuthUrl")).is_some())
}

/// The Warning when [`registered_url`] refused the status's URL.
fn foreign_url(manager: &str) -> kube::runtime::events::Event {
    let note = format!(
        "status.fusionAuthUrl was last written by {manager}, not the operator: the API key is not sent there; remove the webhook from that FusionAuth yourself if it is one of yours"
    );
    warning(EventReason::StatusUrlNotOurs, "Cleanup", note)
}

/// [`remove_from`] the spec's FusionAuth and, when a move to it had not
/// finished, the one the resource is still registered with.
async fn remove_everywhere(
    r: &FusionAuthWebhook,
    ctx: &Context,
    connection: Connection,
    webhook_id: Uuid,
    keys: BTreeSet<Uuid>,
) -> Result<(), Error> {
    let registered = match registered_url(r) {
        Ok(url) => url.filter(|u| !same_instance(u, &connection.url)),
        Err(manager) => {
            status::publish(r, ctx, &[foreign_url(&manager)]).await;
            None
        }
    };
    let instances = registered.map(|url| Connection { url, ..connection.clone() }).into_iter().chain([connection]);
    for instance in instances {
        let fa = ctx.fusionauth(&instance).map_err(|e| Error::FusionAuth(e.into()))?;
        remove_from(&fa, webhook_id, keys.clone()).await.map_err(Error::FusionAuth)?;
    }
    Ok(())
}

/// When `spec.fusionAuth.url` changed since the resource registered: clean
/// the previous FusionAuth first (with the current API key and CA). Returns
/// whether the resource moved, so the generated `Authorization` value is
/// replaced: the old instance must not be able to reach the receiver.
pub async fn previous_fusionauth(r: &FusionAuthWebhook, ctx: &Context, v: &Validated, report: &mut Report) -> Result<bool, Stopped> {
    let previous = match registered_url(r) {
        Ok(url) => url,
        Err(manager) => {
            report.event(foreign_url(&manager));
            report.status.fusion_auth_url = None;
            return Ok(false);
        }
    };
    let Some(previous) = previous.filter(|u| !same_instance(u, &v.fusionauth_url)) else {
        return Ok(false);
    };
    if v.deletion_policy == DeletionPolicy::Orphan {
        let note = format!("moved from FusionAuth {previous}; deletionPolicy is Orphan, so webhook {} is left there", v.webhook_id);
        report.event(normal(EventReason::WebhookOrphaned, "Move", note));
    } else {
        let connection = Connection { url: previous.clone(), ..v.connection() };
        let current = v.hmac().map(|(_, id)| id);
        let removed = match ctx.fusionauth(&connection) {
            Ok(fa) => remove_from(&fa, v.webhook_id, keys(r, &v.uid, current)).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = removed {
            let message = format!(
                "cannot remove webhook {} from the previous FusionAuth {previous}: {e}; retrying (set deletionPolicy: Orphan to leave it there)",
                v.webhook_id
            );
            return Err(Stopped {
                step: Step::failed(Kind::WebhookRegistered, e.reason(), message),
                then: Then::Retry(Error::FusionAuth(e)),
            });
        }
        report.event(normal(
            EventReason::WebhookMoved,
            "Move",
            format!("webhook {} removed from the previous FusionAuth {previous}", v.webhook_id),
        ));
    }
    if v.authorization.is_some() || v.basic.is_some() {
        let note = format!(
            "moved from FusionAuth {previous}: the Authorization value is yours, so rotate it or {previous} can still call the receiver"
        );
        report.event(warning(EventReason::RotateAuthorization, "Move", note));
    }
    report.status.fusion_auth_url = None;
    report.status.signing_key_id = None;
    report.status.enabled_tenant_events.clear();
    Ok(true)
}

/// Whether two base URLs name the same FusionAuth: a trailing slash or the
/// case of the scheme and host is no move (a move deletes the webhook).
fn same_instance(a: &str, b: &str) -> bool {
    let split = |url: &str| {
        let url = url.trim_end_matches('/');
        let authority_end = url.find("://").map_or(0, |i| i + 3);
        let path_start = url[authority_end..].find('/').map_or(url.len(), |i| authority_end + i);
        (url[..path_start].to_ascii_lowercase(), url[path_start..].to_owned())
    };
    split(a) == split(b)
}

#[cfg(test)]
mod tests {
    use super::same_instance;

    #[test]
    fn a_trailing_slash_or_the_host_case_is_not_a_move() {
        assert!(same_instance("http://fa:9011", "http://fa:9011/"));
        assert!(same_instance("HTTP://FA.example:9011/auth/", "http://fa.example:9011/auth"));
        assert!(!same_instance("http://fa:9011/auth", "http://fa:9011/AUTH"), "paths are case-sensitive");
        assert!(!same_instance("http://fa:9011", "http://fb:9011"));
        assert!(!same_instance("http://fa:9011", "https://fa:9011"));
    }
}

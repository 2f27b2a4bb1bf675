//! old_store: an embedded store the resource no longer uses. When the store
//! type changes away from `embedded`, or the resource is deleted, the old
//! StatefulSet may still hold deliveries FusionAuth was told were handled.
//! It keeps running (it delivers what is pending; FusionAuth no longer
//! reaches it: the Service selects the current store's pods only) and its
//! volume claims stay, until every replica's store holds nothing pending or
//! dead, or a person confirms discarding it with the annotation
//! `fusionhook.dev/discard-store: <the StatefulSet's uid>` (a uid, so a
//! confirmation left on the resource never applies to a later store).
//!
//! Each replica is asked through the API server's pod proxy
//! ([`receiver_admin`]: `/v1/stats` of `<name>-<ordinal>`). [`verdict`] is
//! pure; the rest are the calls around it.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

use crate::names;
use crate::reconcile::apply::kubernetes::delete_one;
use crate::reconcile::conditions::EventReason;
use crate::reconcile::receiver_admin;
use crate::reconcile::status;

/// The annotation that confirms discarding an old store's deliveries.
pub const DISCARD_ANNOTATION: &str = "fusionhook.dev/discard-store";

/// How long a replica must have received nothing before its empty store
/// counts as drained: a delivery FusionAuth (or its retries) had under way
/// when the Service moved, or the webhook was deleted, arrives within it.
pub const QUIET_SECONDS: u64 = 30;

/// What one replica's store holds (the admin API's `/v1/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// Deliveries not yet made.
    pub pending: u64,
    /// Deliveries given up on (replay or discard them).
    pub dead: u64,
    /// Seconds since an event last arrived (`None`: not reported).
    #[serde(default)]
    pub quiet_seconds: Option<u64>,
}

impl Held {
    /// Nothing in it, and nothing on its way.
    fn drained(&self) -> bool {
        self.pending == 0 && self.dead == 0 && self.quiet_seconds.is_some_and(|q| q >= QUIET_SECONDS)
    }
}

/// What to do with the old store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the StatefulSet and its claims; the message says why and what to do.
    Keep(String),
    /// Every replica's store is empty: remove them.
    Drained,
    /// A person confirmed discarding what is left: remove them.
    Discarded,
}

/// Pure: the verdict on StatefulSet `name` (uid `uid`) of resource
/// `resource` in `namespace`, from each replica's answer (`pod`, what it
/// holds or why it could not be asked), how long ago FusionAuth was cut off
/// from it (`cut_off`, seconds: the Service narrowed, or the webhook
/// deleted; `None`: this pass) and the resource's annotation.
pub fn verdict(
    namespace: &str,
    resource: &str,
    name: &str,
    uid: &str,
    answers: &[(String, Result<Held, String>)],
    cut_off: Option<u64>,
    confirmation: Option<&str>,
) -> Verdict {
    if confirmation == Some(uid) {
        return Verdict::Discarded;
    }
    let settled = cut_off.is_some_and(|s| s >= QUIET_SECONDS);
    if settled && !answers.is_empty() && answers.iter().all(|(_, a)| a.as_ref().is_ok_and(Held::drained)) {
        return Verdict::Drained;
    }
    let (pending, dead) = answers.iter().filter_map(|(_, a)| a.as_ref().ok()).fold((0, 0), |(p, d), h| (p + h.pending, d + h.dead));
    let unknown: Vec<String> = answers.iter().filter_map(|(pod, a)| a.as_ref().err().map(|e| format!("{pod}: {e}"))).collect();
    let mut message = format!(
        "StatefulSet {name} (the embedded store) is kept with its volume claims: it holds {pending} pending and {dead} dead deliveries"
    );
    if answers.is_empty() {
        message.push_str(" that could be asked: it is scaled to 0 replicas, so nothing it holds can be delivered or counted; scale it up");
    }
    if !settled {
        message.push_str(&format!(" (FusionAuth was cut off from it less than {QUIET_SECONDS} s ago)"));
    }
    if !unknown.is_empty() {
        message.push_str(&format!(", and cannot be asked about the rest ({})", unknown.join("; ")));
    }
    let recent = answers.iter().filter_map(|(_, a)| a.as_ref().ok()).filter(|h| h.quiet_seconds.is_none_or(|q| q < QUIET_SECONDS)).count();
    if recent > 0 {
        message.push_str(&format!(" ({recent} replica(s) received an event less than {QUIET_SECONDS} s ago, or do not say when)"));
    }
    message.push_str(". It delivers what is pending and is removed once nothing is left");
    if dead > 0 {
        message.push_str(&format!(
            "; replay or discard the dead deliveries with its admin API (kubectl -n {namespace} port-forward pod/{name}-0 8081, then POST /v1/replay {{\"state\":\"dead\"}} with the token of Secret {} key {})",
            names::admin_secret_name(resource, names::AdminScope::Replay),
            names::admin_token::TOKEN
        ));
    }
    message.push_str(&format!(
        ". To discard what it holds instead: kubectl annotate -n {namespace} fusionauthwebhook {resource} {DISCARD_ANNOTATION}={uid} --overwrite"
    ));
    Verdict::Keep(message)
}

/// What the store of `pod` holds, from its admin API.
pub async fn ask(client: &Client, namespace: &str, pod: &str, token: &receiver_admin::Token, legacy: Option<&str>) -> Result<Held, String> {
    let proven = match (receiver_admin::prove(client, namespace, pod, token).await, legacy) {
        (Ok(proven), _) => proven,
        // A receiver from before scoped tokens (an operator upgraded while
        // this store drained): it has no /v1/prove and takes the old token.
        (Err(e), Some(legacy)) if e.contains("(404") => receiver_admin::unproven_old_pod(pod, legacy),
        (Err(e), _) => return Err(e),
    };
    let stats = receiver_admin::stats(client, namespace, &proven).await?;
    if let Some(problem) = stats["storeProblem"].as_str()
        && !stats["pending"].is_u64()
    {
        return Err(format!("its store cannot be read: {problem}"));
    }
    // No figure is no answer (never an empty store: that would delete its claims).
    serde_json::from_value(stats).map_err(|e| format!("unexpected answer from the admin API: {e}"))
}

/// The pods of StatefulSet `s`, by ordinal.
pub fn pods(s: &StatefulSet) -> Vec<String> {
    let name = s.metadata.name.clone().unwrap_or_default();
    let replicas = s.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1).max(0);
    (0..replicas).map(|i| format!("{name}-{i}")).collect()
}

/// Asks every replica of `s`, then decides.
pub async fn judge(
    client: &Client,
    namespace: &str,
    resource: &str,
    s: &StatefulSet,
    cut_off: Option<u64>,
    confirmation: Option<&str>,
) -> Result<Verdict, kube::Error> {
    let name = s.metadata.name.clone().unwrap_or_default();
    let uid = s.metadata.uid.clone().unwrap_or_default();
    if confirmation == Some(uid.as_str()) {
        return Ok(Verdict::Discarded);
    }
    let token = receiver_admin::token(client, namespace, resource, names::AdminScope::Read).await?;
    let legacy = receiver_admin::legacy_token(client, namespace, resource).await;
    let mut answers = Vec::new();
    for pod in pods(s) {
        let answer = match &token {
            Some(token) => ask(client, namespace, &pod, token, legacy.as_deref()).await,
            None => Err(format!("the admin token (Secret {}) is gone", names::admin_secret_name(resource, names::AdminScope::Read))),
        };
        answers.push((pod, answer));
    }
    Ok(verdict(namespace, resource, &name, &uid, &answers, cut_off, confirmation))
}

/// Deletes StatefulSet `s` and the volume claims of its replicas (claims
/// of ordinals it was scaled down from are left: nobody asked them).
pub async fn remove(client: &Client, namespace: &str, s: &StatefulSet) -> Result<(), kube::Error> {
    let name = s.metadata.name.clone().unwrap_or_default();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    delete_one(&sets, &name).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    for pod in pods(s) {
        delete_one(&claims, &format!("{}-{pod}", crate::reconcile::build::receiver::STORE_VOLUME)).await?;
    }
    Ok(())
}

/// The pods of resource `resource`'s embedded store that no StatefulSet
/// owns: left by a StatefulSet replaced to grow the store (`store_growth`
/// deletes it with `propagationPolicy: Orphan`) when the operator stopped
/// before applying it again. As a StatefulSet named after the receiver,
/// with as many replicas as the highest ordinal asks and the uid
/// `resource_uid` (what confirms discarding it), to be judged and removed
/// like one; `None` when there are none.
pub async fn orphaned(client: &Client, namespace: &str, resource: &str, resource_uid: &str) -> Result<Option<StatefulSet>, kube::Error> {
    let name = names::receiver_name(resource);
    let orphans = orphan_pods(client, namespace, resource).await?;
    let ordinals = orphans.iter().filter_map(|p| p.strip_prefix(&format!("{name}-"))?.parse::<i32>().ok());
    let Some(highest) = ordinals.max() else { return Ok(None) };
    let mut set =
        StatefulSet { spec: Some(StatefulSetSpec { replicas: Some(highest + 1), ..StatefulSetSpec::default() }), ..StatefulSet::default() };
    set.metadata.name = Some(name);
    set.metadata.uid = Some(resource_uid.to_owned());
    Ok(Some(set))
}

/// The names of resource `resource`'s embedded store pods with no owner.
async fn orphan_pods(client: &Client, namespace: &str, resource: &str) -> Result<Vec<String>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{},{}=embedded", names::receiver_selector(resource), names::STORE_LABEL);
    let listed = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(listed.items.iter().filter(|p| p.owner_references().is_empty()).map(ResourceExt::name_any).collect())
}

/// Deletes the pods of resource `resource`'s embedded store that no
/// StatefulSet owns (nothing else would: garbage collection follows owners).
pub async fn remove_orphans(client: &Client, namespace: &str, resource: &str) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for pod in orphan_pods(client, namespace, resource).await? {
        delete_one(&pods, &pod).await?;
    }
    Ok(())
}

/// The Event for an old store's StatefulSet `name` removed (`action`:
/// `Drain` after a store-type change, `Delete` with the resource).
pub fn removed(verdict: &Verdict, name: &str, action: &str) -> kube::runtime::events::Event {
    match verdict {
        Verdict::Discarded => status::warning(
            EventReason::OldStoreDiscarded,
            action,
            format!("StatefulSet {name} and its volume claims deleted as confirmed by {}, with what they held", DISCARD_ANNOTATION),
        ),
        _ => status::normal(
            EventReason::OldStoreDrained,
            action,
            format!("StatefulSet {name} and its volume claims deleted: its embedded store held nothing any more"),
        ),
    }
}

/// Whole seconds from `then` to now (0 if `then` is in the future).
pub fn seconds_since(then: &k8s_openapi::jiff::Timestamp) -> u64 {
    u64::try_from(k8s_openapi::jiff::Timestamp::now().as_second() - then.as_second()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(held: &[Result<Held, &str>]) -> Vec<(String, Result<Held, String>)> {
        held.iter().enumerate().map(|(i, h)| (format!("r-receiver-{i}"), (*h).map_err(str::to_owned))).collect()
    }

    #[test]
    fn an_old_store_goes_only_when_every_replica_is_empty_or_a_person_confirms_with_its_uid() {
        let empty = Held { quiet_seconds: Some(QUIET_SECONDS), ..Held::default() };
        let judge =
            |held: &[Result<Held, &str>], confirmation| verdict("ns", "r", "r-receiver", "uid-1", &answers(held), Some(30), confirmation);
        assert_eq!(judge(&[Ok(empty), Ok(empty)], None), Verdict::Drained);
        // Empty, but an event arrived just now (it may still be on its way
        // to another replica), or a receiver that does not say: kept.
        let Verdict::Keep(message) = judge(&[Ok(empty), Ok(Held { quiet_seconds: Some(2), ..empty })], None) else { panic!("kept") };
        assert!(message.contains("1 replica(s) received an event less than 30 s ago"), "{message}");
        assert!(matches!(judge(&[Ok(Held { quiet_seconds: None, ..empty })], None), Verdict::Keep(_)));
        let Verdict::Keep(message) = judge(&[Ok(Held { pending: 3, ..empty }), Ok(Held { pending: 1, dead: 2, ..empty })], None) else {
            panic!("kept")
        };
        assert!(message.contains("holds 4 pending and 2 dead deliveries"), "{message}");
        assert!(message.contains("kubectl -n ns port-forward pod/r-receiver-0 8081"), "{message}");
        assert!(message.contains("kubectl annotate -n ns fusionauthwebhook r fusionhook.dev/discard-store=uid-1"), "{message}");
        // A replica that cannot be asked may hold anything.
        let Verdict::Keep(message) = judge(&[Ok(empty), Err("no answer within 10 s")], None) else { panic!("kept") };
        assert!(message.contains("r-receiver-1: no answer within 10 s"), "{message}");
        assert!(!message.contains("replay"), "{message}");
        // FusionAuth cut off from it just now: a delivery may be on its way.
        let answer = answers(&[Ok(empty)]);
        assert!(matches!(verdict("ns", "r", "r-receiver", "uid-1", &answer, Some(5), None), Verdict::Keep(_)));
        assert!(matches!(verdict("ns", "r", "r-receiver", "uid-1", &answer, None, None), Verdict::Keep(_)));
        // Scaled to 0: nobody can say what it holds.
        let Verdict::Keep(message) = judge(&[], None) else { panic!("kept") };
        assert!(message.contains("scaled to 0 replicas"), "{message}");
        // Only this StatefulSet's uid confirms.
        assert_eq!(judge(&[Err("down")], Some("uid-1")), Verdict::Discarded);
        assert!(matches!(judge(&[Err("down")], Some("uid-0")), Verdict::Keep(_)));
    }
}

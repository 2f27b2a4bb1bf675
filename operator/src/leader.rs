//! Leader election on a coordination.k8s.io Lease, as client-go does it:
//! the holder renews the Lease every `renew_every`; another replica takes it
//! over only after the record has stayed unchanged for `lease_duration` *as
//! measured on its own clock* (so clock skew between nodes does not matter);
//! every write carries the resourceVersion it read, so two replicas racing
//! for the Lease cannot both win (the loser gets 409 Conflict).
//!
//! Only the leader reconciles and writes to FusionAuth. A leader that cannot
//! renew within the lease duration steps down (its controller stops and the
//! process exits so Kubernetes restarts it as a standby). Every Lease call is
//! bounded by the time left before a standby could take over: an API server
//! that stops answering (a half-open connection) makes the leader step down
//! in time instead of leaving two leaders.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a silent holder keeps the Lease.
    pub lease_duration: Duration,
    /// How often the holder renews (well below `lease_duration`).
    pub renew_every: Duration,
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder went silent: take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it and is alive.
    Standby {
        /// The holder.
        holder: String,
    },
}

/// Pure: what to do, given the Lease, our identity and how long this exact
/// record has been unchanged as we observed it.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration, lease_duration: Duration) -> Decision {
    let holder = spec.and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty());
    match holder {
        None => Decision::Acquire,
        Some(h) if h == identity => Decision::Renew,
        Some(h) => {
            let duration =
                spec.and_then(|s| s.lease_duration_seconds).and_then(|s| u64::try_from(s).ok()).map_or(lease_duration, Duration::from_secs);
            if unchanged_for >= duration { Decision::Acquire } else { Decision::Standby { holder: h.to_owned() } }
        }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Runs the election until `shutdown`, publishing leadership on `leader`.
/// On shutdown a leader releases the Lease so a standby takes over at once.
pub async fn run(client: Client, settings: LeaseSettings, leader: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut observed: Option<(String, Instant)> = None;
    let mut last_renewal: Option<Instant> = None;
    // Keep leading only while the Lease we last renewed is surely still
    // ours: step down one renew period before a standby may take over.
    let keep_for = settings.lease_duration.saturating_sub(settings.renew_every);
    loop {
        let budget = last_renewal.map_or(settings.renew_every, |t| keep_for.saturating_sub(t.elapsed()));
        let outcome = match tokio::time::timeout(budget, attempt(&api, &settings, &mut observed)).await {
            Ok(outcome) => outcome.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
        };
        match outcome {
            Ok(true) => {
                last_renewal = Some(Instant::now());
                leader.send_if_modified(|l| !std::mem::replace(l, true));
            }
            Ok(false) => {
                last_renewal = None;
                leader.send_if_modified(|l| std::mem::replace(l, false));
            }
            Err(e) => {
                tracing::warn!(error = %e, lease = settings.name, "cannot read or write the Lease");
                if last_renewal.is_none_or(|t| t.elapsed() >= keep_for) {
                    leader.send_if_modified(|l| std::mem::replace(l, false));
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(settings.renew_every) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    if *leader.borrow() {
        match tokio::time::timeout(settings.renew_every, release(&api, &settings)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the Lease; a standby takes over when it expires"),
            Err(_) => tracing::warn!("no answer releasing the Lease; a standby takes over when it expires"),
        }
        leader.send_replace(false);
    }
}

/// One read and at most one write; `Ok(true)` when we hold the Lease after it.
async fn attempt(api: &Api<Lease>, settings: &LeaseSettings, observed: &mut Option<(String, Instant)>) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(settings.name.clone()), ..ObjectMeta::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(settings.identity.clone()),
                lease_duration_seconds: Some(i32::try_from(settings.lease_duration.as_secs()).unwrap_or(i32::MAX)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return create_or_lose(api, &lease).await;
    };
    // Our observation of this exact record: how long it has stayed the same.
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let since = match observed {
        Some((v, at)) if *v == version => *at,
        _ => {
            *observed = Some((version, Instant::now()));
            Instant::now()
        }
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    match decide(Some(spec), &settings.identity, since.elapsed(), settings.lease_duration) {
        Decision::Standby { holder } => {
            tracing::debug!(holder, "standing by");
            Ok(false)
        }
        decision => {
            if decision == Decision::Acquire {
                tracing::info!(previous = spec.holder_identity.as_deref().unwrap_or(""), "taking over the Lease");
                spec.holder_identity = Some(settings.identity.clone());
                spec.acquire_time = Some(now());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(i32::try_from(settings.lease_duration.as_secs()).unwrap_or(i32::MAX));
            spec.renew_time = Some(now());
            replace_or_lose(api, &settings.name, &lease).await
        }
    }
}

async fn create_or_lose(api: &Api<Lease>, lease: &Lease) -> Result<bool, kube::Error> {
    match api.create(&PostParams::default(), lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn replace_or_lose(api: &Api<Lease>, name: &str, lease: &Lease) -> Result<bool, kube::Error> {
    match api.replace(name, &PostParams::default(), lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up: no holder, so a standby acquires it on its next try.
async fn release(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else { return Ok(()) };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = Some(now());
    replace_or_lose(api, &settings.name, &lease).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str) -> LeaseSpec {
        LeaseSpec { holder_identity: Some(holder.to_owned()), lease_duration_seconds: Some(15), ..LeaseSpec::default() }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_or_silent_for_its_duration() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", Duration::ZERO, d), Decision::Acquire);
        assert_eq!(decide(Some(&LeaseSpec::default()), "a", Duration::ZERO, d), Decision::Acquire);
        assert_eq!(decide(Some(&held_by("a")), "a", Duration::ZERO, d), Decision::Renew);
        assert_eq!(decide(Some(&held_by("b")), "a", Duration::from_secs(14), d), Decision::Standby { holder: "b".into() });
        assert_eq!(decide(Some(&held_by("b")), "a", Duration::from_secs(15), d), Decision::Acquire);
        // The holder's own duration wins over ours.
        let mut long = held_by("b");
        long.lease_duration_seconds = Some(60);
        assert_eq!(decide(Some(&long), "a", Duration::from_secs(30), d), Decision::Standby { holder: "b".into() });
    }
}

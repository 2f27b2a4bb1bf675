//! observe: FusionAuth's webhook of a resource, as it is now.
//!
//! A periodic resync reconciles every resource within moments, and each
//! needs its webhook: one `GET /api/webhook/{id}` each would be one call per
//! resource. Instead, reconciles of the same FusionAuth (URL, API key, CA)
//! share one `GET /api/webhook` (all webhooks) while it is younger than
//! `Snapshots::max_age`; the first reconcile to find it stale fetches it
//! while the others wait (single flight). Each entry serves one reconcile
//! only: a second look at the same webhook in that window (after our own
//! write, a spec change) reads it directly, as does a webhook the snapshot
//! does not hold (so nothing is ever created from an old view).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fusionhook_fusionauth::client::{ClientError, FusionAuthClient};
use fusionhook_fusionauth::model::Webhook;
use uuid::Uuid;

/// Every webhook of one FusionAuth, as listed by a call started at `listed`.
#[derive(Default)]
struct Snapshot {
    listed: Option<Instant>,
    webhooks: HashMap<Uuid, Webhook>,
    /// When a listing last failed: reconciles read directly for a while
    /// instead of each waiting for another listing of a FusionAuth in trouble.
    failed: Option<Instant>,
    /// When a pass last wrote each webhook: a listing started before that
    /// does not serve it.
    written: HashMap<Uuid, Instant>,
}

/// The snapshots, one per FusionAuth connection.
pub struct Snapshots {
    max_age: Duration,
    by_connection: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<Snapshot>>>>,
}

/// Most connections with a snapshot (as many as FusionAuth clients are kept).
const MAX_SNAPSHOTS: usize = 256;

impl Snapshots {
    /// Snapshots used while younger than `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Self { max_age, by_connection: Mutex::default() }
    }

    fn slot(&self, connection: [u8; 32]) -> Arc<tokio::sync::Mutex<Snapshot>> {
        let mut all = self.by_connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if all.len() >= MAX_SNAPSHOTS && !all.contains_key(&connection) {
            all.clear();
        }
        Arc::clone(all.entry(connection).or_default())
    }

    /// Webhook `id` of the FusionAuth behind `fa` (`connection`: its key).
    pub async fn webhook(&self, connection: [u8; 32], fa: &FusionAuthClient, id: Uuid) -> Result<Option<Webhook>, ClientError> {
        let slot = self.slot(connection);
        let found = {
            let mut snapshot = slot.lock().await;
            let stale = snapshot.listed.is_none_or(|at| at.elapsed() > self.max_age);
            let resting = snapshot.failed.is_some_and(|at| at.elapsed() < self.max_age);
            if stale && !resting {
                let started = Instant::now();
                match fa.retrieve_webhooks().await {
                    Ok(listed) => {
                        snapshot.webhooks = listed.into_iter().filter_map(|w| Some((w.id?, w))).collect();
                        snapshot.listed = Some(started);
                        snapshot.failed = None;
                        let max_age = self.max_age;
                        snapshot.written.retain(|_, at| at.elapsed() <= max_age);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot list FusionAuth's webhooks; reading them one by one");
                        snapshot.failed = Some(Instant::now());
                        snapshot.webhooks.clear();
                    }
                }
            }
            let entry = snapshot.webhooks.remove(&id);
            let rewritten = matches!((snapshot.written.get(&id), snapshot.listed), (Some(w), Some(l)) if *w >= l);
            entry.filter(|_| !rewritten)
        };
        match found {
            Some(webhook) => Ok(Some(webhook)),
            None => fa.retrieve_webhook(id).await,
        }
    }

    /// A pass may have written webhook `id`: no listing started before now serves it.
    pub async fn written(&self, connection: [u8; 32], id: Uuid) {
        let slot = self.slot(connection);
        let mut snapshot = slot.lock().await;
        snapshot.webhooks.remove(&id);
        snapshot.written.insert(id, Instant::now());
    }
}

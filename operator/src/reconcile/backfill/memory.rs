//! memory: what the leader remembers of each resource's backfill between
//! passes (lost on restart or leader change: the status checkpoint is the
//! fallback). Held by the operator's `Context`; used by the stage.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

use crate::reconcile::backfill::scan;
use crate::reconcile::conditions::Step;

/// What the leader remembers per resource (by uid) between passes.
#[derive(Debug, Default)]
pub(super) struct Remembered {
    /// When the next pass is due.
    pub(super) due: Option<Instant>,
    /// The checkpoint, epoch ms.
    pub(super) checkpoint: Option<i64>,
    /// The last pass's condition.
    pub(super) step: Option<Step>,
    /// Entries at or after the checkpoint looked at and settled (instant,
    /// log id): handed over, delivered, rolled back or not ours. Skipped by
    /// later passes while an earlier entry holds the checkpoint.
    pub(super) settled: BTreeSet<(i64, Uuid)>,
    /// Where a pass that spent its budget stopped, in the window from the checkpoint.
    pub(super) cursor: Option<scan::Position>,
    /// The earliest entry passes since the checkpoint must look at again.
    pub(super) held: Option<i64>,
    /// When the first pass of a cursor chain started: the chain looks at
    /// entries up to then, and the checkpoint moves to it at the end.
    pub(super) chain_started: Option<i64>,
    /// Hand-overs the receiver failed (500), by log id: given up after
    /// [`scan::MAX_HAND_OVER_FAILURES`] passes.
    pub(super) failures: HashMap<Uuid, u32>,
}

/// The leader's backfill memory (lost on restart or leader change: the
/// status checkpoint is the fallback).
#[derive(Debug, Default)]
pub struct Memory {
    resources: Mutex<HashMap<String, Remembered>>,
    /// Requested passes that stopped before the end of their window, by
    /// uid: asking again for the same `since` goes on from there.
    requests: Mutex<HashMap<String, RequestChain>>,
}

/// Where a requested pass stopped.
#[derive(Debug)]
struct RequestChain {
    /// The request's `since`, epoch ms.
    since_ms: i64,
    resume: Resume,
}

impl Memory {
    pub(super) fn with<T>(&self, uid: &str, f: impl FnOnce(&mut Remembered) -> T) -> T {
        let mut all = self.resources.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(all.entry(uid.to_owned()).or_default())
    }

    /// Forgets a resource (deleted).
    pub fn forget(&self, uid: &str) {
        self.forget_passes(uid);
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
    }

    /// Forgets the scheduled passes of a resource (backfill turned off);
    /// a requested chain stays.
    pub(super) fn forget_passes(&self, uid: &str) {
        self.resources.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
    }

    /// Takes the chain a requested pass over `since_ms` left, if any.
    pub(super) fn take_request(&self, uid: &str, since_ms: i64) -> Option<Resume> {
        let mut requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let chain = requests.remove(uid)?;
        (chain.since_ms == since_ms).then_some(chain.resume)
    }

    pub(super) fn keep_request(&self, uid: &str, since_ms: i64, resume: Resume) {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(uid.to_owned(), RequestChain { since_ms, resume });
    }

    /// Takes what the next pass of `uid` goes on from.
    pub(super) fn take_resume(&self, uid: &str) -> Resume {
        self.with(uid, |r| Resume {
            settled: std::mem::take(&mut r.settled),
            cursor: r.cursor,
            held: r.held,
            chain_started: r.chain_started,
            failures: std::mem::take(&mut r.failures),
        })
    }

    /// Remembers a pass of `uid`: when the next one is due, the checkpoint,
    /// the condition, and what the next goes on from (entries settled before
    /// the checkpoint are forgotten: no pass reads them again).
    pub(super) fn remember(&self, uid: &str, due: Instant, checkpoint: i64, step: Step, mut resume: Resume) {
        self.with(uid, |r| {
            r.due = Some(due);
            r.checkpoint = Some(checkpoint);
            r.step = Some(step);
            r.settled = resume.settled.split_off(&(checkpoint, Uuid::nil()));
            r.cursor = resume.cursor;
            r.held = resume.held;
            r.chain_started = resume.chain_started;
            r.failures = std::mem::take(&mut resume.failures);
        });
    }

    /// The condition of the last pass, for a reconcile that stopped before
    /// the backfill stage (so the condition stays as it was).
    pub fn last_step(&self, uid: &str) -> Option<Step> {
        self.resources.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uid).and_then(|r| r.step.clone())
    }
}

/// What a pass goes on from (see [`Remembered`]).
#[derive(Debug, Default)]
pub(super) struct Resume {
    pub(super) settled: BTreeSet<(i64, Uuid)>,
    pub(super) cursor: Option<scan::Position>,
    pub(super) held: Option<i64>,
    pub(super) chain_started: Option<i64>,
    pub(super) failures: HashMap<Uuid, u32>,
}

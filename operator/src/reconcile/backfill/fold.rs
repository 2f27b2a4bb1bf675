//! fold: one backfill pass's bookkeeping, a pure fold over the Webhook
//! Event Log's entries in `sequence` order. The pass (`super::pass`) does
//! the calls: it reads pages, asks [`Fold::look`] what to do with each
//! entry, hands over what it is told to and reports the receiver's answer
//! to [`Fold::handed`]; [`Fold::finish`] turns what was seen into the
//! outcome: counts, the checkpoint, where the next pass goes on from, and
//! the condition.

use std::collections::{HashMap, HashSet};

use fusionhook_fusionauth::model::WebhookEventLog;
use kube::runtime::events::Event;
use uuid::Uuid;

use crate::reconcile::backfill::memory::Resume;
use crate::reconcile::backfill::scan::{self, Position, Progress, Settings, Verdict};
use crate::reconcile::conditions::EventReason;
use crate::reconcile::conditions::{Kind, Reason, Step};
use crate::reconcile::receiver_admin::Refusal;
use crate::reconcile::status;

/// Counts of one pass, by [`Verdict::label`] plus `scanned`, `refused`, `gave_up`.
pub type Counts = Vec<(&'static str, u64)>;

/// What one pass did.
pub struct Outcome {
    /// The condition `BackfillAvailable`.
    pub step: Step,
    /// The checkpoint after it (epoch ms).
    pub checkpoint: i64,
    /// FusionAuth calls made.
    pub calls: u32,
    /// What it saw and did, by label.
    pub counts: Counts,
    /// The insert instants of what this pass handed over.
    pub handed_over: Vec<i64>,
    /// What the next pass goes on from.
    pub resume: Resume,
    /// Warning Events (a hand-over given up).
    pub warnings: Vec<Event>,
    /// Whether it read to the end of its window.
    pub complete: bool,
}

impl Outcome {
    /// A pass stopped before reading anything: the checkpoint stays at `from`.
    pub fn stopped(step: Step, from: i64, resume: Resume) -> Self {
        Self {
            step,
            checkpoint: from,
            calls: 1,
            counts: Vec::new(),
            handed_over: Vec::new(),
            resume,
            warnings: Vec::new(),
            complete: false,
        }
    }

    /// The Event's words for a pass that handed something over.
    pub fn summary(&self, started_ms: i64) -> String {
        let oldest = self.handed_over.iter().min().map_or(0, |t| (started_ms - t).max(0) / 1000);
        let count = |label: &str| self.counts.iter().find(|(l, _)| *l == label).map_or(0, |(_, n)| *n);
        format!(
            "handed {} event(s) FusionAuth failed to deliver to the receiver (the oldest {oldest} s old); {} scanned, {} rolled back, {} still running, {} FusionAuth call(s)",
            self.handed_over.len(),
            count("scanned"),
            count(Verdict::RolledBack.label()),
            count(Verdict::Running.label()),
            self.calls
        )
    }
}

/// What to do with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing (settled, seen, outside the window, or not ours to send).
    Skip,
    /// Hand it to the receiver, then tell [`Fold::handed`] how it went.
    HandOver,
}

/// A pass's state while it reads.
pub struct Fold {
    webhook: Uuid,
    from: i64,
    started_ms: i64,
    resume: Resume,
    progress: Progress,
    seen: HashSet<Uuid>,
    counts: HashMap<&'static str, u64>,
    handed_over: Vec<i64>,
    warnings: Vec<Event>,
    problem: Option<(Reason, String)>,
}

impl Fold {
    /// A pass for `webhook` over `[from, started_ms]`, going on from `resume`.
    pub fn new(webhook: Uuid, from: i64, started_ms: i64, resume: Resume) -> Self {
        let progress = Progress { held: resume.held, last_read: None };
        Self {
            webhook,
            from,
            started_ms,
            resume,
            progress,
            seen: HashSet::new(),
            counts: HashMap::new(),
            handed_over: Vec::new(),
            warnings: Vec::new(),
            problem: None,
        }
    }

    fn count(&mut self, label: &'static str) {
        *self.counts.entry(label).or_default() += 1;
    }

    /// Looks at `entry`.
    pub fn look(&mut self, entry: &WebhookEventLog) -> Next {
        let (Some(id), Some(instant)) = (entry.id, entry.insert_instant) else { return Next::Skip };
        self.progress.read(instant);
        let settled = self.resume.settled.contains(&(instant, id));
        if !self.seen.insert(id) || settled || instant < self.from || instant > self.started_ms {
            // Settled by an earlier pass, or written after this one started
            // (the checkpoint stays before it: the next pass sees it).
            return Next::Skip;
        }
        self.count("scanned");
        match scan::verdict(entry, self.webhook, self.started_ms) {
            Verdict::HandOver => return Next::HandOver,
            Verdict::Running => {
                self.progress.hold(instant);
                self.count(Verdict::Running.label());
            }
            other => {
                self.resume.settled.insert((instant, id));
                self.count(other.label());
            }
        }
        Next::Skip
    }

    /// How the hand-over of `entry` went; `false`: the receiver cannot be
    /// reached, the pass stops here.
    pub fn handed(&mut self, entry: &WebhookEventLog, outcome: Result<(), Refusal>) -> bool {
        let (Some(id), Some(instant)) = (entry.id, entry.insert_instant) else { return true };
        let kind = entry.event_type.as_deref().unwrap_or("?");
        match outcome {
            Ok(()) => {
                self.resume.failures.remove(&id);
                self.handed_over.push(instant);
                self.resume.settled.insert((instant, id));
                self.count(Verdict::HandOver.label());
            }
            Err(Refusal::Invalid(message)) => {
                self.count("refused");
                self.resume.settled.insert((instant, id));
                self.warn(format!(
                    "event {} ({kind}) is refused by the receiver ({message}); it can never be taken as it is and is not offered again: look it up in FusionAuth (System > Webhook Log)",
                    event_id(entry)
                ));
            }
            Err(Refusal::Failed(message)) => {
                let failed = self.resume.failures.entry(id).or_default();
                *failed += 1;
                if *failed >= scan::MAX_HAND_OVER_FAILURES {
                    self.resume.failures.remove(&id);
                    self.resume.settled.insert((instant, id));
                    self.count("gave_up");
                    self.warn(format!(
                        "event {} ({kind}) failed in the receiver in {} passes in a row ({message}); it is not offered again: send it yourself once fixed (kubectl fusionhook send --from-file)",
                        event_id(entry),
                        scan::MAX_HAND_OVER_FAILURES
                    ));
                } else {
                    self.progress.hold(instant);
                    let message = format!("the receiver did not take a missed event: {message}; the next pass tries again");
                    self.problem = Some((Reason::HandOverFailed, message));
                }
            }
            Err(Refusal::Unreachable(message)) => {
                self.progress.hold(instant);
                let message = format!("cannot reach the receiver's admin API: {message}; the next pass tries again");
                self.problem = Some((Reason::HandOverFailed, message));
                return false;
            }
        }
        true
    }

    /// An entry larger than the operator reads, passed by (`start_row` of the window).
    pub fn too_large(&mut self, start_row: u32) {
        self.count("gave_up");
        self.warn(format!(
            "an entry of FusionAuth's Webhook Event Log (row {start_row} of this window) is larger than the operator reads ({} MiB) and was passed by: look it up in FusionAuth (System > Webhook Log) and send it yourself if it matters",
            fusionhook_fusionauth::client::MAX_ANSWER_BYTES / (1024 * 1024)
        ));
    }

    /// The Event Log could not be read further.
    pub fn unavailable(&mut self, problem: (Reason, String)) {
        self.problem = Some(problem);
    }

    fn warn(&mut self, note: String) {
        self.warnings.push(status::warning(EventReason::BackfillGaveUp, "Backfill", note));
    }

    /// The outcome: `complete` (read to the end of the window), `broken`
    /// (stopped in the middle of a page), where the pager stands, the
    /// calls made, and how long FusionAuth keeps logged events.
    pub fn finish(mut self, settings: &Settings, end: End) -> Outcome {
        // Read to the end: the checkpoint moves and paging starts over from
        // it next time. Stopped early: it stays, and the next pass goes on from here.
        let checkpoint = if end.complete { self.progress.checkpoint(self.from, self.started_ms) } else { self.from };
        (self.resume.cursor, self.resume.held, self.resume.chain_started) = match (end.complete, end.broken, end.position) {
            (true, _, _) => (None, None, None),
            (false, false, Some(position)) => (Some(position), self.progress.held, Some(self.started_ms)),
            (false, _, _) => (None, self.progress.held, None),
        };
        let mut counts: Counts = self.counts.into_iter().collect();
        counts.sort();
        let step = condition(self.problem, settings, end.retention_days, end.complete, self.started_ms - checkpoint);
        Outcome {
            step,
            checkpoint,
            calls: end.calls,
            counts,
            handed_over: self.handed_over,
            resume: self.resume,
            warnings: self.warnings,
            complete: end.complete,
        }
    }
}

/// How a pass's reading ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct End {
    /// Read to the end of its window.
    pub complete: bool,
    /// Stopped in the middle of a page (the receiver could not be reached).
    pub broken: bool,
    /// Where the pager stands (a pass that spent its budget goes on from there).
    pub position: Option<Position>,
    /// FusionAuth calls made.
    pub calls: u32,
    /// Days FusionAuth keeps logged events (`None`: it deletes none).
    pub retention_days: Option<u32>,
}

/// The condition after a pass: its problem, else a retention shorter than
/// what backfill looks back over, else fine. `behind_ms`: how far the
/// checkpoint is behind the pass's start.
fn condition(problem: Option<(Reason, String)>, settings: &Settings, retention_days: Option<u32>, complete: bool, behind_ms: i64) -> Step {
    let lookback_days = f64::from(settings.lookback_seconds) / 86_400.0;
    let behind_days = behind_ms as f64 / 86_400_000.0;
    match (problem, retention_days) {
        (Some((reason, message)), _) => Step::failed(Kind::BackfillAvailable, reason, message),
        (None, Some(days)) if f64::from(days) < lookback_days.max(behind_days) => Step::failed(
            Kind::BackfillAvailable,
            Reason::RetentionShorterThanLookback,
            format!(
                "FusionAuth deletes logged events after {days} day(s), sooner than backfill looks back: raise systemConfiguration.webhookEventLogConfiguration.delete.numberOfDaysToRetain or lower spec.backfill.lookbackSeconds; backfill runs over what is kept"
            ),
        ),
        (None, _) if !complete => Step::ok(
            Kind::BackfillAvailable,
            Reason::Available,
            format!(
                "the last pass used its budget of {} FusionAuth calls; the next one goes on from where it stopped",
                settings.call_budget
            ),
        ),
        (None, _) => Step::ok(Kind::BackfillAvailable, Reason::Available, "FusionAuth's Webhook Event Log is read every interval"),
    }
}

/// The event's id in the logged request, for people.
pub fn event_id(entry: &WebhookEventLog) -> String {
    entry.event.as_ref().and_then(|e| e["event"]["id"].as_str()).unwrap_or("?").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const FROM: i64 = NOW - 3_600_000;

    fn hook() -> Uuid {
        Uuid::from_u128(7)
    }

    /// A log entry with attempts of this webhook only.
    fn entry(n: u128, result: &str, attempts: &[&str], at: i64) -> WebhookEventLog {
        let attempts: Vec<(Uuid, &str)> = attempts.iter().map(|r| (hook(), *r)).collect();
        super::super::test_log::entry(n, result, &attempts, at)
    }

    fn settings() -> Settings {
        Settings { interval_seconds: 60, lookback_seconds: 3600, page_size: 100, call_budget: 20 }
    }

    fn done() -> End {
        End { complete: true, calls: 2, ..End::default() }
    }

    #[test]
    fn a_pass_hands_over_what_failed_settles_the_rest_and_moves_the_checkpoint_before_what_runs() {
        let mut fold = Fold::new(hook(), FROM, NOW, Resume::default());
        let failed = entry(1, "Succeeded", &["Failure"], NOW - 600_000);
        let delivered = entry(2, "Succeeded", &["Success"], NOW - 500_000);
        let running = entry(3, "Running", &[], NOW - 400_000);
        let after_start = entry(4, "Succeeded", &["Failure"], NOW + 1);
        let before_window = entry(5, "Succeeded", &["Failure"], FROM - 1);
        assert_eq!(fold.look(&failed), Next::HandOver);
        assert!(fold.handed(&failed, Ok(())));
        assert_eq!(fold.look(&failed), Next::Skip, "a row seen again on a moved page");
        for skipped in [&delivered, &running, &after_start, &before_window] {
            assert_eq!(fold.look(skipped), Next::Skip, "{skipped:?}");
        }
        let out = fold.finish(&settings(), done());
        assert_eq!(out.handed_over, vec![NOW - 600_000]);
        assert_eq!(out.checkpoint, NOW - 400_000, "just before the running event, which the next pass looks at again");
        assert_eq!(out.counts, vec![("delivered", 1), ("handed_over", 1), ("running", 1), ("scanned", 3)]);
        assert!(out.resume.settled.contains(&(NOW - 600_000, Uuid::from_u128(1))));
        assert!(!out.resume.settled.contains(&(NOW - 400_000, Uuid::from_u128(3))));
        assert_eq!((out.resume.cursor, out.resume.held, out.step.reason), (None, None, Reason::Available));
    }

    #[test]
    fn a_failing_receiver_is_asked_again_each_pass_until_it_is_given_up_with_a_warning() {
        let e = entry(1, "Succeeded", &["Failure"], NOW - 600_000);
        let mut resume = Resume::default();
        for pass in 1..=scan::MAX_HAND_OVER_FAILURES {
            let mut fold = Fold::new(hook(), FROM, NOW, resume);
            assert_eq!(fold.look(&e), Next::HandOver, "pass {pass}");
            assert!(fold.handed(&e, Err(Refusal::Failed("a route failed (500)".into()))));
            let out = fold.finish(&settings(), done());
            resume = out.resume;
            if pass < scan::MAX_HAND_OVER_FAILURES {
                assert_eq!(out.step.reason, Reason::HandOverFailed);
                assert!(out.checkpoint <= NOW - 600_000, "held: {}", out.checkpoint);
                assert!(out.warnings.is_empty());
            } else {
                assert_eq!(out.warnings.len(), 1);
                assert_eq!(out.counts.iter().find(|(l, _)| *l == "gave_up"), Some(&("gave_up", 1)));
            }
        }
        let mut fold = Fold::new(hook(), FROM, NOW, resume);
        assert_eq!(fold.look(&e), Next::Skip, "given up: settled, not offered again");
    }

    #[test]
    fn a_refused_event_is_settled_at_once_and_an_unreachable_receiver_stops_the_pass_where_it_was() {
        let refused = entry(1, "Succeeded", &["Failure"], NOW - 600_000);
        let next = entry(2, "Succeeded", &["Failure"], NOW - 500_000);
        let mut fold = Fold::new(hook(), FROM, NOW, Resume::default());
        assert_eq!(fold.look(&refused), Next::HandOver);
        assert!(fold.handed(&refused, Err(Refusal::Invalid("not JSON (400)".into()))));
        assert_eq!(fold.look(&next), Next::HandOver);
        assert!(!fold.handed(&next, Err(Refusal::Unreachable("no answer within 30 s".into()))), "the pass stops");
        let out = fold.finish(&settings(), End { broken: true, position: Some((100, None)), calls: 3, ..End::default() });
        assert_eq!(out.checkpoint, FROM, "not read to the end: the checkpoint stays");
        assert_eq!((out.resume.cursor, out.resume.held), (None, Some(NOW - 500_000)), "a broken page is read again from the checkpoint");
        assert_eq!(out.step.reason, Reason::HandOverFailed);
        assert!(out.resume.settled.contains(&(NOW - 600_000, Uuid::from_u128(1))));
        assert_eq!(out.warnings.len(), 1);
    }

    #[test]
    fn a_pass_that_spent_its_budget_leaves_a_cursor_and_a_short_retention_is_said() {
        let fold = Fold::new(hook(), FROM, NOW, Resume::default());
        let out = fold.finish(&settings(), End { position: Some((200, Some(Uuid::from_u128(9)))), calls: 20, ..End::default() });
        assert_eq!((out.checkpoint, out.resume.cursor, out.resume.chain_started), (FROM, Some((200, Some(Uuid::from_u128(9)))), Some(NOW)));
        assert!(out.step.message.contains("used its budget of 20"), "{}", out.step.message);
        let looks_back_two_days = Settings { lookback_seconds: 2 * 86_400, ..settings() };
        let fold = Fold::new(hook(), FROM, NOW, Resume::default());
        let out = fold.finish(&looks_back_two_days, End { retention_days: Some(1), ..done() });
        assert_eq!(out.step.reason, Reason::RetentionShorterThanLookback);
    }
}

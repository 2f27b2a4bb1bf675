//! backfill: events FusionAuth committed and failed to deliver to this
//! resource's receiver are found in FusionAuth's Webhook Event Log
//! (FACTS.md §c.7) and handed to the receiver through its admin API
//! (`POST /v1/ingest`, never the FusionAuth-facing port: a replayed event
//! carries no FusionAuth credentials), which treats each as a delivery of
//! its `event.id` (dedupe makes a second hand-over harmless).
//!
//! A stage of the reconcile, after the webhook is registered: the leader
//! runs a pass when one is due (`spec.backfill.intervalSeconds`) and asks
//! for the next reconcile then. A pass:
//!
//! 1. reads `systemConfiguration.webhookEventLogConfiguration` (off: the
//!    condition says so, nothing else is called);
//! 2. searches the Event Log from the checkpoint, ordered by `sequence`,
//!    page by page within the call budget ([`scan::Pager`]);
//! 3. hands over each event [`scan::verdict`] picks, to one ready pod of the
//!    current store (the same one each time, so its dedupe sees repeats);
//! 4. moves the checkpoint, once it read to the end, only past what is
//!    settled ([`scan::Progress`]); a pass that spent its call budget leaves
//!    a cursor where it stopped, and the next one goes on from there.
//!
//! The checkpoint is kept in memory and written to `status.backfill` when a
//! pass hands something over or it moved on by ten minutes: a new leader
//! (or a restarted operator) goes on from there, handing over again at most
//! what the receiver's dedupe then recognises.

pub mod memory;
pub mod scan;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use fusionhook_fusionauth::client::{ClientError, FusionAuthClient};
use fusionhook_fusionauth::model::{WebhookEventLog, WebhookEventLogSearchCriteria};
use k8s_openapi::jiff::Timestamp;
use uuid::Uuid;

use crate::context::Context;
use crate::names::AdminScope;
use crate::reconcile::build::receiver::store_label;
use crate::reconcile::conditions::{Kind, Reason, Step};
use crate::reconcile::receiver_admin::{self, Proven, Refusal};
use crate::reconcile::status::{self, Report};
use crate::reconcile::validate::Validated;
pub use memory::Memory;
use memory::Resume;
use scan::{Page, Pager, Progress, Settings, Verdict};

/// The persisted checkpoint is rewritten once the one in memory is this far ahead.
const PERSIST_AFTER_MS: i64 = 600_000;

/// The stage: a pass when one is due. Records the condition and
/// `status.backfill`; returns when the next pass is due (`None`: off).
/// `request`: the value of [`crate::names::BACKFILL_ANNOTATION`], a pass
/// asked for by a person (run once per value, backfill on or off).
pub async fn stage(ctx: &Context, v: &Validated, fa: &FusionAuthClient, request: Option<&str>, report: &mut Report) -> Option<Duration> {
    if let Some(request) = request
        && report.status.backfill.as_ref().and_then(|b| b.handled_request.as_deref()) != Some(request)
    {
        requested(ctx, v, fa, request, report).await;
    }
    let Some(settings) = v.backfill else {
        ctx.backfill.forget_passes(&v.uid);
        if let Some(b) = report.status.backfill.as_mut() {
            // Only what a requested pass left.
            b.checkpoint = None;
        }
        return None;
    };
    let interval = Duration::from_secs(settings.interval_seconds.into());
    let now = Instant::now();
    let (due, remembered) = ctx.backfill.with(&v.uid, |r| (r.due, r.checkpoint));
    if let Some(due) = due.filter(|d| *d > now) {
        if let Some(step) = ctx.backfill.last_step(&v.uid) {
            report.record(step);
        }
        return Some(due - now);
    }
    let mut persisted = report.status.backfill.clone().unwrap_or_default();
    let persisted_ms = persisted.checkpoint.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map(|t| t.as_millisecond());
    let started_ms = Timestamp::now().as_millisecond();
    let from = remembered.or(persisted_ms).unwrap_or(started_ms - i64::from(settings.lookback_seconds) * 1000);
    let resume = ctx.backfill.with(&v.uid, |r| Resume {
        settled: std::mem::take(&mut r.settled),
        cursor: r.cursor,
        held: r.held,
        chain_started: r.chain_started,
        failures: std::mem::take(&mut r.failures),
    });
    let mut outcome = pass(ctx, v, fa, settings, from, started_ms, resume).await;
    ctx.metrics.backfill_pass(&outcome.counts, outcome.calls);
    let step = outcome.step.clone();
    report.record(step.clone());
    // Persist when something was handed over, or the checkpoint moved on far enough.
    let far = persisted_ms.is_none_or(|p| outcome.checkpoint - p >= PERSIST_AFTER_MS);
    let handed_now = outcome.handed_over.len() as u64;
    if handed_now > 0 || far {
        persisted.checkpoint = Some(rfc3339(outcome.checkpoint));
    }
    if handed_now > 0 {
        persisted.handed_over += handed_now;
        persisted.last_hand_over = Some(rfc3339(started_ms));
        report.event(status::normal("BackfillHandedOver", "Backfill", outcome.summary(started_ms)));
    }
    report.status.backfill = Some(persisted);
    ctx.backfill.with(&v.uid, |r| {
        r.due = Some(Instant::now() + interval);
        r.checkpoint = Some(outcome.checkpoint);
        r.step = Some(step);
        r.settled = outcome.resume.settled.split_off(&(outcome.checkpoint, Uuid::nil()));
        r.cursor = outcome.resume.cursor;
        r.held = outcome.resume.held;
        r.chain_started = outcome.resume.chain_started;
        r.failures = std::mem::take(&mut outcome.resume.failures);
    });
    for event in std::mem::take(&mut outcome.warnings) {
        report.event(event);
    }
    Some(interval)
}

/// A pass a person asked for (`<since>/<requested-at>`): over `[since,
/// now]`, with the resource's page size and budget (the defaults when
/// backfill is off), without touching the checkpoint.
async fn requested(ctx: &Context, v: &Validated, fa: &FusionAuthClient, request: &str, report: &mut Report) {
    let settings = v.backfill.or_else(|| Settings::of(Some(&crate::resource::BackfillSpec { enabled: true, ..Default::default() })));
    let since = request.split_once('/').map_or(request, |(since, _)| since).parse::<Timestamp>();
    let started_ms = Timestamp::now().as_millisecond();
    let mut status = report.status.backfill.clone().unwrap_or_default();
    status.handled_request = Some(request.to_owned());
    // (what it did, in words; whether it ran through; whether it covered the window)
    let (result, succeeded, complete) = match (since, settings) {
        (Err(e), _) => {
            (format!("not run: {} in the annotation is not an RFC 3339 time ({e})", crate::names::BACKFILL_ANNOTATION), false, false)
        }
        (Ok(_), None) => ("not run".to_owned(), false, false),
        (Ok(since), Some(settings)) => {
            let since_ms = since.as_millisecond();
            // Asked again after a pass that stopped early: on from there.
            let resume = ctx.backfill.take_request(&v.uid, since_ms).unwrap_or_else(|| {
                let settled = ctx.backfill.with(&v.uid, |r| r.settled.clone());
                Resume { settled, ..Resume::default() }
            });
            let mut outcome = pass(ctx, v, fa, settings, since_ms, started_ms, resume).await;
            if !outcome.complete && outcome.resume.cursor.is_some() {
                ctx.backfill.keep_request(&v.uid, since_ms, std::mem::take(&mut outcome.resume));
            }
            ctx.metrics.backfill_pass(&outcome.counts, outcome.calls);
            let handed = outcome.handed_over.len() as u64;
            status.handed_over += handed;
            if handed > 0 {
                status.last_hand_over = Some(rfc3339(started_ms));
                report.event(status::normal("BackfillHandedOver", "Backfill", format!("requested pass: {}", outcome.summary(started_ms))));
            }
            let stopped_early = if outcome.complete {
                String::new()
            } else {
                "; it stopped before the end of the window (call budget or time spent): ask again with the same --since to go on from where it stopped"
                    .to_owned()
            };
            match outcome.step.state {
                crate::reconcile::conditions::State::True => {
                    (format!("{}{stopped_early}", outcome.summary(started_ms)), true, outcome.complete)
                }
                _ => (format!("{}: {}", outcome.step.reason.as_str(), outcome.step.message), false, false),
            }
        }
    };
    status.last_request_result = Some(result);
    status.last_request_succeeded = Some(succeeded);
    status.last_request_complete = Some(complete);
    report.status.backfill = Some(status);
}

fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// Counts of one pass, by [`Verdict::label`] plus `scanned`, `refused`.
pub type Counts = Vec<(&'static str, u64)>;

/// What one pass did.
struct Outcome {
    step: Step,
    checkpoint: i64,
    calls: u32,
    counts: Counts,
    /// The insert instants of what this pass handed over.
    handed_over: Vec<i64>,
    /// What the next pass goes on from.
    resume: Resume,
    /// Warning Events (a hand-over given up).
    warnings: Vec<kube::runtime::events::Event>,
    /// Whether it read to the end of its window.
    complete: bool,
}

impl Outcome {
    fn summary(&self, started_ms: i64) -> String {
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

/// Why the Event Log cannot be used: the condition's reason and message.
fn unavailable(e: &ClientError, what: &str) -> (Reason, String) {
    match e {
        ClientError::Unauthorized { .. } => (
            Reason::EventLogForbidden,
            format!(
                "FusionAuth refused the API key for {what} (401): give the key permission for GET /api/system-configuration and POST /api/system/webhook-event-log/search (or the webhook_event_log_viewer role's endpoints)"
            ),
        ),
        ClientError::NotFound { .. } => {
            (Reason::EventLogUnsupported, format!("FusionAuth has no {what} (404): the Webhook Event Log needs FusionAuth 1.53.0 or later"))
        }
        other => (Reason::FusionAuthUnreachable, format!("cannot read {what}: {other}; the next pass tries again")),
    }
}

/// One pass over `[from, now]`.
async fn pass(
    ctx: &Context,
    v: &Validated,
    fa: &FusionAuthClient,
    settings: Settings,
    from: i64,
    started_ms: i64,
    mut resume: Resume,
) -> Outcome {
    let mut calls = 1;
    let stopped = |step: Step, resume| Outcome {
        step,
        checkpoint: from,
        calls: 1,
        counts: Vec::new(),
        handed_over: Vec::new(),
        resume,
        warnings: Vec::new(),
        complete: false,
    };
    let configuration = match fa.retrieve_webhook_event_log_configuration().await {
        Ok(c) => c,
        Err(e) => {
            let (reason, message) = unavailable(&e, "the system configuration");
            return stopped(Step::failed(Kind::BackfillAvailable, reason, message), resume);
        }
    };
    if configuration.enabled == Some(false) {
        let message = "FusionAuth's Webhook Event Log is off, so events it failed to deliver cannot be recovered: turn on systemConfiguration.webhookEventLogConfiguration.enabled (System > Webhook Log in the admin UI); the resource works without it";
        return stopped(Step::failed(Kind::BackfillAvailable, Reason::EventLogOff, message), resume);
    }
    let retention_days = configuration.delete.as_ref().filter(|d| d.enabled).map(|d| d.number_of_days_to_retain.unwrap_or(30).max(1));
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    let mut handed_over = Vec::new();
    // A chain of passes (each stopped by its budget) looks at entries up to
    // when its first pass started, so none written meanwhile is passed by the cursor.
    let started_ms = match (resume.cursor, resume.chain_started) {
        (Some(_), Some(chain)) => chain,
        _ => started_ms,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(settings.interval_seconds.into());
    let mut warnings = Vec::new();
    let mut progress = Progress { held: resume.held, last_read: None };
    let mut pager = resume.cursor.map_or_else(|| Pager::new(settings.page_size), |c| Pager::resume(settings.page_size, c));
    let mut seen: HashSet<Uuid> = HashSet::new();
    let (start, end) = scan::window(from, started_ms);
    let mut target: Option<Proven> = None;
    let mut problem: Option<(Reason, String)> = None;
    let mut complete = false;
    // A page not looked at to its end: the next pass pages from the checkpoint again.
    let mut broken = false;
    'pages: while calls < settings.call_budget && pager.restarts <= 2 {
        let (start_row, number) = pager.request();
        let criteria = WebhookEventLogSearchCriteria {
            start: Some(start),
            end: Some(end),
            start_row: Some(start_row),
            number_of_results: Some(number),
            order_by: Some("sequence ASC".into()),
            ..WebhookEventLogSearchCriteria::default()
        };
        calls += 1;
        let (rows, total) = match fa.search_webhook_event_logs(&criteria).await {
            Ok(page) => (page.webhook_event_logs, page.total),
            // Smaller pages; a single entry larger than the client takes is
            // passed by (said in an Event), never a pass stuck on it.
            Err(ClientError::TooLarge { .. }) if pager.shrink() => continue,
            Err(ClientError::TooLarge { .. }) => {
                pager.skip_unreadable();
                *counts.entry("gave_up").or_default() += 1;
                warnings.push(status::warning(
                    "BackfillGaveUp",
                    "Backfill",
                    format!(
                        "an entry of FusionAuth's Webhook Event Log (row {start_row} of this window) is larger than the operator reads ({} MiB) and was passed by: look it up in FusionAuth (System > Webhook Log) and send it yourself if it matters",
                        fusionhook_fusionauth::client::MAX_ANSWER_BYTES / (1024 * 1024)
                    ),
                ));
                continue;
            }
            Err(e) => {
                problem = Some(unavailable(&e, "the Webhook Event Log"));
                break;
            }
        };
        let (rows, last) = match pager.accept(rows, total) {
            Page::Rows(rows, last) => (rows, last),
            Page::Moved => continue,
        };
        for entry in rows {
            let (Some(id), Some(instant)) = (entry.id, entry.insert_instant) else { continue };
            progress.read(instant);
            let settled = resume.settled.contains(&(instant, id));
            if !seen.insert(id) || settled || instant < from || instant > started_ms {
                // Settled by an earlier pass, or written after this one
                // started (the checkpoint stays before it: the next pass sees it).
                continue;
            }
            *counts.entry("scanned").or_default() += 1;
            let verdict = scan::verdict(&entry, v.webhook_id, started_ms);
            match verdict {
                Verdict::Running => progress.hold(instant),
                Verdict::HandOver => match hand_over(ctx, v, &mut target, &entry).await {
                    Ok(()) => {
                        resume.failures.remove(&id);
                        handed_over.push(instant);
                    }
                    Err(Refusal::Invalid(message)) => {
                        *counts.entry("refused").or_default() += 1;
                        resume.settled.insert((instant, id));
                        tracing::warn!(namespace = v.namespace, name = v.name, event_log = %id, error = message, "backfill: the receiver refused a missed event; it is not offered again");
                        warnings.push(status::warning(
                            "BackfillGaveUp",
                            "Backfill",
                            format!(
                                "event {} ({}) is refused by the receiver ({message}); it can never be taken as it is and is not offered again: look it up in FusionAuth (System > Webhook Log)",
                                event_id(&entry),
                                entry.event_type.as_deref().unwrap_or("?")
                            ),
                        ));
                        continue;
                    }
                    Err(Refusal::Failed(message)) => {
                        let failed = resume.failures.entry(id).or_default();
                        *failed += 1;
                        if *failed >= scan::MAX_HAND_OVER_FAILURES {
                            resume.failures.remove(&id);
                            resume.settled.insert((instant, id));
                            *counts.entry("gave_up").or_default() += 1;
                            let event_id = event_id(&entry);
                            warnings.push(status::warning(
                                "BackfillGaveUp",
                                "Backfill",
                                format!(
                                    "event {event_id} ({}) failed in the receiver in {} passes in a row ({message}); it is not offered again: send it yourself once fixed (kubectl fusionhook send --from-file)",
                                    entry.event_type.as_deref().unwrap_or("?"),
                                    scan::MAX_HAND_OVER_FAILURES
                                ),
                            ));
                            continue;
                        }
                        progress.hold(instant);
                        problem = Some((
                            Reason::HandOverFailed,
                            format!("the receiver did not take a missed event: {message}; the next pass tries again"),
                        ));
                        continue;
                    }
                    Err(Refusal::Unreachable(message)) => {
                        progress.hold(instant);
                        problem = Some((
                            Reason::HandOverFailed,
                            format!("cannot reach the receiver's admin API: {message}; the next pass tries again"),
                        ));
                        broken = true;
                        break 'pages;
                    }
                },
                _ => {}
            }
            if verdict != Verdict::Running {
                resume.settled.insert((instant, id));
            }
            *counts.entry(verdict.label()).or_default() += 1;
        }
        if last {
            complete = true;
            break;
        }
        if std::time::Instant::now() > deadline {
            // Hand-overs took the whole interval: the next pass goes on from here.
            break;
        }
    }
    // Read to the end: the checkpoint moves and paging starts over from it
    // next time. Stopped early: it stays, and the next pass goes on from here.
    let checkpoint = if complete { progress.checkpoint(from, started_ms) } else { from };
    (resume.cursor, resume.held, resume.chain_started) = match (complete, broken) {
        (true, _) => (None, None, None),
        (false, false) if pager.position().is_some() => (pager.position(), progress.held, Some(started_ms)),
        (false, _) => (None, progress.held, None),
    };
    let mut counts: Counts = counts.into_iter().collect();
    counts.sort();
    let lookback_days = f64::from(settings.lookback_seconds) / 86_400.0;
    let behind_days = (started_ms - checkpoint) as f64 / 86_400_000.0;
    let step = match (problem, retention_days) {
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
    };
    Outcome { step, checkpoint, calls, counts, handed_over, resume, warnings, complete }
}

/// The logged event's `event.id`, for messages.
fn event_id(entry: &WebhookEventLog) -> String {
    entry.event.as_ref().and_then(|e| e["event"]["id"].as_str()).unwrap_or("?").to_owned()
}

/// Hands `entry`'s payload to the receiver pod `target` (picked once per
/// pass: the first ready pod of the current store, by name).
async fn hand_over(ctx: &Context, v: &Validated, target: &mut Option<Proven>, entry: &WebhookEventLog) -> Result<(), Refusal> {
    let Some(event) = entry.event.as_ref().filter(|e| e.get("event").is_some()) else {
        return Err(Refusal::Invalid("the logged entry has no event payload".into()));
    };
    if target.is_none() {
        let unreachable = |e: kube::Error| Refusal::Unreachable(e.to_string());
        let token = receiver_admin::token(&ctx.client, &v.namespace, &v.name, AdminScope::Ingest).await.map_err(unreachable)?;
        let token = token.ok_or_else(|| Refusal::Unreachable("the admin token is not generated yet".into()))?;
        let pods = receiver_admin::ready_pods(&ctx.client, &v.namespace, &v.name, store_label(v)).await.map_err(unreachable)?;
        // The first pod that proves it is a receiver (see `receiver_admin::prove`).
        let mut refused = None;
        for pod in pods {
            match receiver_admin::prove(&ctx.client, &v.namespace, &pod, &token).await {
                Ok(proven) => {
                    *target = Some(proven);
                    break;
                }
                Err(why) => {
                    tracing::warn!(namespace = v.namespace, name = v.name, pod, reason = why, "backfill: a pod failed its proof; skipped");
                    refused = Some(why);
                }
            }
        }
        if target.is_none() {
            return Err(Refusal::Unreachable(refused.unwrap_or_else(|| "no receiver pod is ready".into())));
        }
    }
    let Some(pod) = target.as_ref() else { return Err(Refusal::Unreachable("no receiver pod".into())) };
    let body = serde_json::to_vec(event).map_err(|e| Refusal::Invalid(e.to_string()))?;
    let outcome = receiver_admin::ingest(&ctx.client, &v.namespace, pod, body).await?;
    tracing::debug!(namespace = v.namespace, name = v.name, pod = pod.pod, outcome, "backfill: handed over a missed event");
    Ok(())
}

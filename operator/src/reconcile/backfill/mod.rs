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

mod fold;
pub mod memory;
pub mod scan;
#[cfg(test)]
mod test_log;

use std::time::{Duration, Instant};

use crate::reconcile::conditions::EventReason;
use crate::resource::BackfillStatus;
use fusionhook_fusionauth::client::{ClientError, FusionAuthClient};
use fusionhook_fusionauth::model::{WebhookEventLog, WebhookEventLogSearchCriteria};
use k8s_openapi::jiff::Timestamp;

use crate::context::Context;
use crate::names::AdminScope;
use crate::reconcile::build::receiver::store_label;
use crate::reconcile::conditions::{Kind, Reason, Step};
use crate::reconcile::receiver_admin::{self, Proven, Refusal};
use crate::reconcile::status::{self, Report};
use crate::reconcile::validate::Validated;
use fold::{End, Fold, Next, Outcome};
pub use memory::Memory;
use memory::Resume;
use scan::{Page, Pager, Settings};

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
    let persisted = report.status.backfill.clone().unwrap_or_default();
    let persisted_ms = persisted.checkpoint.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map(|t| t.as_millisecond());
    let started_ms = Timestamp::now().as_millisecond();
    let from = remembered.or(persisted_ms).unwrap_or(started_ms - i64::from(settings.lookback_seconds) * 1000);
    let resume = ctx.backfill.take_resume(&v.uid);
    let mut outcome = pass(ctx, v, fa, settings, from, started_ms, resume).await;
    ctx.metrics.backfill_pass(&outcome.counts, outcome.calls);
    let step = outcome.step.clone();
    report.record(step.clone());
    persist(report, persisted, persisted_ms, &outcome, started_ms);
    let resume = std::mem::take(&mut outcome.resume);
    ctx.backfill.remember(&v.uid, Instant::now() + interval, outcome.checkpoint, step, resume);
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
                report.event(status::normal(
                    EventReason::BackfillHandedOver,
                    "Backfill",
                    format!("requested pass: {}", outcome.summary(started_ms)),
                ));
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

/// Writes the pass to `status.backfill` when something was handed over (with
/// an Event), or the checkpoint moved on far enough from the one persisted.
fn persist(report: &mut Report, mut persisted: BackfillStatus, persisted_ms: Option<i64>, outcome: &Outcome, started_ms: i64) {
    let far = persisted_ms.is_none_or(|p| outcome.checkpoint - p >= PERSIST_AFTER_MS);
    let handed_now = outcome.handed_over.len() as u64;
    if handed_now > 0 || far {
        persisted.checkpoint = Some(rfc3339(outcome.checkpoint));
    }
    if handed_now > 0 {
        persisted.handed_over += handed_now;
        persisted.last_hand_over = Some(rfc3339(started_ms));
        report.event(status::normal(EventReason::BackfillHandedOver, "Backfill", outcome.summary(started_ms)));
    }
    report.status.backfill = Some(persisted);
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

/// One pass over `[from, now]`: the calls, around the pure [`fold::Fold`].
async fn pass(
    ctx: &Context,
    v: &Validated,
    fa: &FusionAuthClient,
    settings: Settings,
    from: i64,
    started_ms: i64,
    resume: Resume,
) -> Outcome {
    let retention_days = match configuration(fa).await {
        Ok(days) => days,
        Err(step) => return Outcome::stopped(step, from, resume),
    };
    // A chain of passes (each stopped by its budget) looks at entries up to
    // when its first pass started, so none written meanwhile is passed by the cursor.
    let started_ms = match (resume.cursor, resume.chain_started) {
        (Some(_), Some(chain)) => chain,
        _ => started_ms,
    };
    let deadline = Instant::now() + Duration::from_secs(settings.interval_seconds.into());
    let mut pager = resume.cursor.map_or_else(|| Pager::new(settings.page_size), |c| Pager::resume(settings.page_size, c));
    let mut fold = Fold::new(v.webhook_id, from, started_ms, resume);
    let window = scan::window(from, started_ms);
    let mut target: Option<Proven> = None;
    let mut end = End { calls: 1, retention_days, ..End::default() };
    while end.calls < settings.call_budget && pager.restarts <= 2 {
        end.calls += 1;
        let (rows, last) = match read_page(fa, &mut pager, window).await {
            Read::Rows(rows, last) => (rows, last),
            Read::Again => continue,
            Read::TooLarge(start_row) => {
                fold.too_large(start_row);
                continue;
            }
            Read::Failed(problem) => {
                fold.unavailable(problem);
                break;
            }
        };
        if !look_at(ctx, v, &mut fold, &mut target, rows).await {
            end.broken = true;
            break;
        }
        if last {
            end.complete = true;
            break;
        }
        if Instant::now() > deadline {
            // Hand-overs took the whole interval: the next pass goes on from here.
            break;
        }
    }
    end.position = pager.position();
    fold.finish(&settings, end)
}

/// Looks at a page's `rows`, handing over what the fold says to; `false`:
/// the receiver cannot be reached, the pass stops here.
async fn look_at(ctx: &Context, v: &Validated, fold: &mut Fold, target: &mut Option<Proven>, rows: Vec<WebhookEventLog>) -> bool {
    for entry in rows {
        if fold.look(&entry) == Next::HandOver {
            let outcome = hand_over(ctx, v, target, &entry).await;
            if let Err(Refusal::Invalid(message)) = &outcome {
                tracing::warn!(namespace = v.namespace, name = v.name, event_log = %entry.id.unwrap_or_default(), error = message, "backfill: the receiver refused a missed event; it is not offered again");
            }
            if !fold.handed(&entry, outcome) {
                return false;
            }
        }
    }
    true
}

/// FusionAuth's Webhook Event Log configuration: the days it keeps logged
/// events (`None`: it deletes none), or the condition when it cannot be used.
async fn configuration(fa: &FusionAuthClient) -> Result<Option<u32>, Step> {
    let configuration = fa.retrieve_webhook_event_log_configuration().await.map_err(|e| {
        let (reason, message) = unavailable(&e, "the system configuration");
        Step::failed(Kind::BackfillAvailable, reason, message)
    })?;
    if configuration.enabled == Some(false) {
        let message = "FusionAuth's Webhook Event Log is off, so events it failed to deliver cannot be recovered: turn on systemConfiguration.webhookEventLogConfiguration.enabled (System > Webhook Log in the admin UI); the resource works without it";
        return Err(Step::failed(Kind::BackfillAvailable, Reason::EventLogOff, message));
    }
    Ok(configuration.delete.as_ref().filter(|d| d.enabled).map(|d| d.number_of_days_to_retain.unwrap_or(30).max(1)))
}

/// One page of the Event Log, as the pass uses it.
enum Read {
    /// Rows to look at; whether they are the window's last.
    Rows(Vec<WebhookEventLog>, bool),
    /// Nothing to look at this time (the pager moved, or pages shrink): read again.
    Again,
    /// An entry larger than the client reads, passed by (its row).
    TooLarge(u32),
    /// The Event Log cannot be read: the condition's reason and message.
    Failed((Reason, String)),
}

/// Reads the page `pager` asks for, within `(start, end)`.
async fn read_page(fa: &FusionAuthClient, pager: &mut Pager, (start, end): (i64, i64)) -> Read {
    let (start_row, number) = pager.request();
    let criteria = WebhookEventLogSearchCriteria {
        start: Some(start),
        end: Some(end),
        start_row: Some(start_row),
        number_of_results: Some(number),
        order_by: Some("sequence ASC".into()),
        ..WebhookEventLogSearchCriteria::default()
    };
    match fa.search_webhook_event_logs(&criteria).await {
        Ok(page) => match pager.accept(page.webhook_event_logs, page.total) {
            Page::Rows(rows, last) => Read::Rows(rows, last),
            Page::Moved => Read::Again,
        },
        // Smaller pages; a single entry larger than the client takes is
        // passed by (said in an Event), never a pass stuck on it.
        Err(ClientError::TooLarge { .. }) if pager.shrink() => Read::Again,
        Err(ClientError::TooLarge { .. }) => {
            pager.skip_unreadable();
            Read::TooLarge(start_row)
        }
        Err(e) => Read::Failed(unavailable(&e, "the Webhook Event Log")),
    }
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

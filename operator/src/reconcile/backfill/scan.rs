//! scan: pure, what one backfill pass makes of FusionAuth's Webhook Event
//! Log (FACTS.md §c.7): which entries to hand over, how to page without
//! skipping or repeating an entry, and how far the checkpoint may move.

use fusionhook_fusionauth::model::WebhookEventLog;
use uuid::Uuid;

use crate::resource::BackfillSpec;

/// A minute, in ms: FusionAuth's search window is only as fine as that.
const MINUTE_MS: i64 = 60_000;
/// The checkpoint stays this far behind the pass's start: an entry written
/// just before it may not be visible yet (another FusionAuth node, a
/// database commit in flight), and FusionAuth's clock may be behind the
/// operator's by up to this much.
pub const SETTLE_MS: i64 = 30_000;
/// An event `Running` for longer than this is taken as abandoned (FusionAuth
/// stopped during its transaction) and no longer holds the checkpoint.
pub const ABANDONED_MS: i64 = 3_600_000;
/// A finished event this young with no attempt to this webhook yet is
/// looked at again: its attempts may still be on their way into the log.
pub const ATTEMPTS_SETTLE_MS: i64 = 120_000;
/// A hand-over the receiver failed (500) this many passes in a row is given
/// up (a Warning Event says so), so one poisoned event cannot pin the checkpoint.
pub const MAX_HAND_OVER_FAILURES: u32 = 5;

/// The settings, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Seconds between passes.
    pub interval_seconds: u32,
    /// How far back the first pass looks.
    pub lookback_seconds: u32,
    /// Entries per search call.
    pub page_size: u32,
    /// Most FusionAuth calls per pass.
    pub call_budget: u32,
}

impl Settings {
    /// `None` when backfill is off.
    pub fn of(spec: Option<&BackfillSpec>) -> Option<Self> {
        let spec = spec.filter(|s| s.enabled)?;
        Some(Self {
            interval_seconds: spec.interval_seconds.unwrap_or(60).max(10),
            lookback_seconds: spec.lookback_seconds.unwrap_or(3600).max(60),
            page_size: spec.page_size.unwrap_or(100).clamp(10, 1000),
            call_budget: spec.call_budget.unwrap_or(20).max(2),
        })
    }
}

/// What to do with one logged event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Committed, attempted to this webhook, never successfully: hand it over.
    HandOver,
    /// An attempt to this webhook succeeded.
    Delivered,
    /// Never attempted to this webhook (another webhook's event).
    NotOurs,
    /// Its transaction was rolled back (`Failed`): never replay it.
    RolledBack,
    /// Still `Running`: look again next pass.
    Running,
    /// `Running` for longer than [`ABANDONED_MS`]: passed over.
    Abandoned,
}

impl Verdict {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::HandOver => "handed_over",
            Self::Delivered => "delivered",
            Self::NotOurs => "not_ours",
            Self::RolledBack => "rolled_back",
            Self::Running => "running",
            Self::Abandoned => "abandoned",
        }
    }
}

/// The verdict on `entry` for `webhook` at `now_ms`. `Running` is looked at
/// first: its attempts may not be written yet; nor those of a young
/// finished event without one of ours ([`ATTEMPTS_SETTLE_MS`]).
pub fn verdict(entry: &WebhookEventLog, webhook: Uuid, now_ms: i64) -> Verdict {
    let result = entry.event_result.as_deref().unwrap_or("Running");
    let age = now_ms - entry.insert_instant.unwrap_or(now_ms);
    if result != "Succeeded" && result != "Failed" {
        return if age > ABANDONED_MS { Verdict::Abandoned } else { Verdict::Running };
    }
    let ours: Vec<_> = entry.attempts.iter().filter(|a| a.webhook_id == Some(webhook)).collect();
    if ours.is_empty() && age < ATTEMPTS_SETTLE_MS {
        Verdict::Running
    } else if ours.is_empty() {
        Verdict::NotOurs
    } else if ours.iter().any(|a| a.attempt_result.as_deref() == Some("Success")) {
        Verdict::Delivered
    } else if result == "Failed" {
        Verdict::RolledBack
    } else {
        Verdict::HandOver
    }
}

/// The search window from `from_ms` to `now_ms`, widened to whole minutes
/// (FusionAuth may round either bound; entries before `from_ms` are skipped
/// by the caller).
pub fn window(from_ms: i64, now_ms: i64) -> (i64, i64) {
    (from_ms.div_euclid(MINUTE_MS) * MINUTE_MS, (now_ms.div_euclid(MINUTE_MS) + 1) * MINUTE_MS)
}

/// Pages through a search ordered by `sequence ASC` (unique, so the order
/// is stable) with one row of overlap: each page after the first starts
/// with the last row of the one before, which shows whether rows moved
/// meanwhile (retention deleted some; an entry became visible late).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pager {
    page_size: u32,
    /// Rows of the current list up to and including `last`.
    offset: u32,
    last: Option<Uuid>,
    /// Times the list moved under us and paging started over.
    pub restarts: u32,
}

/// Rows read, and the last one read (see [`Pager::position`]).
pub type Position = (u32, Option<Uuid>);

/// What a page brought.
#[derive(Debug, PartialEq)]
pub enum Page {
    /// New rows (none seen before on this list), and whether it was the last page.
    Rows(Vec<WebhookEventLog>, bool),
    /// The list moved: page again from the start (seen rows are skipped by id).
    Moved,
}

impl Pager {
    /// Paging from the first row.
    pub fn new(page_size: u32) -> Self {
        Self { page_size, offset: 0, last: None, restarts: 0 }
    }

    /// Paging on from where an earlier pass over the same window stopped
    /// ([`Pager::position`]); the overlap row, when there is one, shows
    /// whether that still holds.
    pub fn resume(page_size: u32, (offset, last): Position) -> Self {
        Self { page_size, offset, last, restarts: 0 }
    }

    /// Where paging stands: rows read and the last one (none right after
    /// a row passed by as unreadable); `None` before the first row.
    pub fn position(&self) -> Option<Position> {
        (self.offset > 0).then_some((self.offset, self.last))
    }

    /// `(startRow, numberOfResults)` of the next call: from the last row
    /// read (the overlap shows whether the list moved), when there is one.
    pub fn request(&self) -> (u32, u32) {
        match (self.offset, self.last) {
            (n, Some(_)) if n > 0 => (n - 1, self.page_size + 1),
            (n, _) => (n, self.page_size),
        }
    }

    /// The answer was larger than the client takes: smaller pages from here
    /// on. `false` when a page is one row already (that row cannot be read).
    pub fn shrink(&mut self) -> bool {
        if self.page_size == 1 {
            return false;
        }
        self.page_size = (self.page_size / 2).max(1);
        true
    }

    /// Passes by the next row, which cannot be read (larger than the
    /// client's limit alone): paging goes on after it, without an overlap
    /// row to check the list by (there is none that can be read).
    pub fn skip_unreadable(&mut self) {
        self.offset = self.offset.saturating_add(1);
        self.last = None;
    }

    /// Takes the rows a call answered and the `total` it reported: the end
    /// is where the rows read reach the total (a server that answers fewer
    /// rows than asked is paged on); without a total, a short page.
    pub fn accept(&mut self, rows: Vec<WebhookEventLog>, total: u64) -> Page {
        let (from, asked) = self.request();
        let short = rows.len() < asked as usize;
        // With an overlap row, the answer starts one row before the offset.
        let base = from.min(self.offset);
        let skip = match self.last {
            None => 0,
            Some(last) => match rows.iter().position(|r| r.id == Some(last)) {
                Some(at) => at + 1,
                None => {
                    self.offset = 0;
                    self.last = None;
                    self.restarts += 1;
                    return Page::Moved;
                }
            },
        };
        // Rows before `last` in this answer appeared late: the offset moves by them too.
        let new: Vec<WebhookEventLog> = rows.into_iter().skip(skip).collect();
        self.offset = base + u32::try_from(skip + new.len()).unwrap_or(u32::MAX);
        if let Some(last) = new.last() {
            self.last = last.id;
        }
        let end = if total > 0 { u64::from(self.offset) >= total } else { short };
        Page::Rows(new, end)
    }
}

/// How far the checkpoint may move after a pass that read to the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The earliest entry that must be looked at again (running, not handed over).
    pub held: Option<i64>,
    /// The latest `insertInstant` read (FusionAuth's clock).
    pub last_read: Option<i64>,
}

impl Progress {
    /// An entry the next pass must see again.
    pub fn hold(&mut self, instant: i64) {
        self.held = Some(self.held.map_or(instant, |h| h.min(instant)));
    }

    /// An entry read.
    pub fn read(&mut self, instant: i64) {
        self.last_read = Some(self.last_read.map_or(instant, |l| l.max(instant)));
    }

    /// The new checkpoint once everything up to the pass's (or its chain's)
    /// start was read: before anything held, and [`SETTLE_MS`] before both
    /// that start (operator's clock) and the latest entry read (FusionAuth's
    /// clock, which may be behind) for what may not have been visible yet;
    /// never behind `previous`.
    pub fn checkpoint(&self, previous: i64, started_ms: i64) -> i64 {
        let seen_up_to = self.last_read.map_or(started_ms, |l| l.min(started_ms)) - SETTLE_MS;
        self.held.map_or(seen_up_to, |h| h.min(seen_up_to)).max(previous)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_log::entry;
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn hook() -> Uuid {
        Uuid::from_u128(7)
    }

    #[test]
    fn only_committed_events_this_webhook_never_got_are_handed_over() {
        let other = Uuid::from_u128(8);
        let cases = [
            (entry(1, "Succeeded", &[(hook(), "Failure"), (hook(), "Failure")], NOW), Verdict::HandOver),
            (entry(2, "Succeeded", &[(hook(), "Failure"), (hook(), "Success")], NOW), Verdict::Delivered),
            (entry(3, "Succeeded", &[(other, "Failure")], NOW - ATTEMPTS_SETTLE_MS - 1), Verdict::NotOurs),
            (entry(8, "Succeeded", &[(other, "Failure")], NOW), Verdict::Running),
            (entry(4, "Failed", &[(hook(), "Failure")], NOW), Verdict::RolledBack),
            (entry(5, "Running", &[], NOW), Verdict::Running),
            (entry(6, "Running", &[(hook(), "Failure")], NOW - ABANDONED_MS - 1), Verdict::Abandoned),
            (entry(7, "Succeeded", &[(hook(), "Unknown")], NOW), Verdict::HandOver),
        ];
        for (e, want) in cases {
            assert_eq!(verdict(&e, hook(), NOW), want, "{e:?}");
        }
    }

    #[test]
    fn the_window_is_whole_minutes_around_it() {
        assert_eq!(window(125_000, 181_000), (120_000, 240_000));
        assert_eq!(window(120_000, 180_000), (120_000, 240_000));
    }

    fn rows(ids: &[u128]) -> Vec<WebhookEventLog> {
        ids.iter().map(|n| entry(*n, "Succeeded", &[], NOW)).collect()
    }

    fn ids(page: Page) -> (Vec<u128>, bool) {
        match page {
            Page::Rows(r, last) => (r.iter().map(|e| e.id.unwrap_or_default().as_u128()).collect(), last),
            Page::Moved => panic!("moved"),
        }
    }

    /// A list the server pages: `startRow`, `numberOfResults`.
    fn serve(list: &[u128], (start, count): (u32, u32)) -> Vec<WebhookEventLog> {
        rows(&list.iter().copied().skip(start as usize).take(count as usize).collect::<Vec<_>>())
    }

    #[test]
    fn pages_overlap_by_one_row_and_never_repeat_or_skip_one() {
        let list: Vec<u128> = (1..=25).collect();
        let mut pager = Pager::new(10);
        let mut got = Vec::new();
        loop {
            let (new, last) = ids(pager.accept(serve(&list, pager.request()), list.len() as u64));
            got.extend(new);
            if last {
                break;
            }
        }
        assert_eq!(got, list);
        // Exactly a multiple of the page: one more (empty but for the overlap) call says it is the end.
        let list: Vec<u128> = (1..=20).collect();
        let mut pager = Pager::new(10);
        let mut got = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            let (new, last) = ids(pager.accept(serve(&list, pager.request()), list.len() as u64));
            got.extend(new);
            if last {
                break;
            }
        }
        assert_eq!((got, calls), (list, 2), "the total says where it ends");
    }

    /// Issue 24, item 2: a page larger than the client takes is asked for
    /// again in smaller pages, and a row too large alone is passed by, so
    /// the checkpoint never freezes at it.
    #[test]
    fn pages_too_large_shrink_and_a_row_too_large_alone_is_passed_by() {
        let list: Vec<u128> = (1..=9).collect();
        // Row 5 is too large to read; a page holding it is too large.
        let too_large = |(start, count): (u32, u32)| (start..start + count).contains(&4);
        let mut pager = Pager::new(4);
        let (mut got, mut skipped) = (Vec::new(), 0);
        for _ in 0..40 {
            let asked = pager.request();
            if too_large(asked) && (asked.0 as usize) < list.len() {
                if !pager.shrink() {
                    pager.skip_unreadable();
                    skipped += 1;
                }
                continue;
            }
            let (new, last) = ids(pager.accept(serve(&list, asked), list.len() as u64));
            got.extend(new);
            if last {
                break;
            }
        }
        assert_eq!(skipped, 1);
        assert_eq!(got, [1, 2, 3, 4, 6, 7, 8, 9], "every readable row once, in order, to the end");
    }

    #[test]
    fn a_row_that_appears_before_the_position_is_not_read_twice_and_a_deleted_one_restarts() {
        let mut list: Vec<u128> = (1..=15).collect();
        let mut pager = Pager::new(10);
        assert_eq!(ids(pager.accept(serve(&list, pager.request()), list.len() as u64)).0, (1..=10).collect::<Vec<_>>());
        // An entry with an earlier sequence becomes visible late.
        list.insert(3, 100);
        let (new, last) = ids(pager.accept(serve(&list, pager.request()), list.len() as u64));
        assert_eq!((new, last), ((11..=15).collect(), true), "the late one is before the position: the next pass sees it");
        // Retention deletes rows before the position: the overlap row is not where it was.
        let mut list: Vec<u128> = (1..=30).collect();
        let mut pager = Pager::new(10);
        let _ = pager.accept(serve(&list, pager.request()), list.len() as u64);
        list.drain(0..5);
        assert_eq!(pager.accept(serve(&list, pager.request()), list.len() as u64), Page::Moved);
        assert_eq!((pager.restarts, pager.request()), (1, (0, 10)));
    }

    #[test]
    fn a_server_that_answers_fewer_rows_than_asked_is_paged_on_to_the_total() {
        let list: Vec<u128> = (1..=12).collect();
        let mut pager = Pager::new(10);
        let mut got = Vec::new();
        loop {
            let (start, _) = pager.request();
            let (new, last) = ids(pager.accept(serve(&list, (start, 4)), 12));
            got.extend(new);
            if last {
                break;
            }
        }
        assert_eq!(got, list);
    }

    #[test]
    fn a_pass_that_stopped_early_resumes_where_it_stopped() {
        let list: Vec<u128> = (1..=25).collect();
        let mut pager = Pager::new(10);
        let _ = pager.accept(serve(&list, pager.request()), list.len() as u64);
        let position = pager.position();
        assert_eq!(position, Some((10, Some(Uuid::from_u128(10)))));
        let mut next = Pager::resume(10, position.unwrap_or_default());
        assert_eq!(ids(next.accept(serve(&list, next.request()), list.len() as u64)), ((11..=20).collect(), false));
        // Stopped right after passing an unreadable row by: the next pass
        // goes on after it (it used to start over from the checkpoint).
        next.skip_unreadable();
        let position = next.position();
        assert_eq!(position, Some((21, None)));
        let mut after = Pager::resume(10, position.unwrap_or_default());
        assert_eq!(ids(after.accept(serve(&list, after.request()), list.len() as u64)), ((22..=25).collect(), true));
    }

    #[test]
    fn the_checkpoint_stays_before_anything_held_and_what_may_not_be_visible_yet() {
        let started = NOW;
        let mut p = Progress::default();
        assert_eq!(p.checkpoint(NOW - 600_000, started), started - SETTLE_MS);
        p.read(NOW - 100_000);
        assert_eq!(p.checkpoint(NOW - 600_000, started), NOW - 100_000 - SETTLE_MS, "FusionAuth's clock may be behind");
        p.hold(NOW - 550_000);
        p.hold(NOW - 500_000);
        assert_eq!(p.checkpoint(NOW - 600_000, started), NOW - 550_000);
        assert_eq!(p.checkpoint(NOW - 40_000, started), NOW - 40_000, "never back");
    }
}

//! When a failed delivery is tried again, and when it is given up. Pure.

use std::time::Duration;

/// How an attempt failed, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt (timeouts, connection errors, 408, 425, 429,
    /// 5xx); `after` is the service's `Retry-After`, if it sent one.
    Retryable {
        /// The wait the service asked for.
        after: Option<Duration>,
    },
    /// Another attempt would fail the same way (4xx, a request that
    /// cannot be built): dead at once.
    Permanent,
}

/// The waits between attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `initial`, doubling up to `max`, each with equal jitter (half fixed,
    /// half random), so retries of many deliveries spread out.
    Exponential {
        /// The first wait.
        initial: Duration,
        /// The longest wait.
        max: Duration,
    },
    /// These waits, in order; the last one repeats.
    Fixed(Vec<Duration>),
}

/// A route's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first included); `None`: bounded by age only.
    pub max_attempts: Option<u32>,
    /// No attempt starts later than this after the round began.
    pub max_age: Duration,
    /// The waits.
    pub schedule: Schedule,
}

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl Default for RetryPolicy {
    /// Exponential from 1 s up to 1 h between attempts, for up to 24 h.
    fn default() -> Self {
        Self {
            max_attempts: None,
            max_age: Duration::from_secs(24 * 3600),
            schedule: Schedule::Exponential { initial: Duration::from_secs(1), max: Duration::from_secs(3600) },
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts (1 or more); `jitter` is in `[0, 1)`.
    pub fn wait(&self, attempts: u32, jitter: f64) -> Duration {
        match &self.schedule {
            Schedule::Exponential { initial, max } => {
                let doublings = attempts.saturating_sub(1).min(32);
                let full = initial.saturating_mul(1u32 << doublings.min(31)).min(*max);
                full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
            }
            Schedule::Fixed(waits) => {
                let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
                waits.get(i).or(waits.last()).copied().unwrap_or_default()
            }
        }
    }

    /// After a failed attempt: the time of the next one (ms), or why the
    /// delivery is dead. `attempts` counts the one that just failed;
    /// `round_started` and `now` are in ms.
    pub fn next(&self, failure: Failure, attempts: u32, round_started: u64, now: u64, jitter: f64) -> Result<u64, String> {
        let after = match failure {
            Failure::Permanent => return Err("not retried: another attempt would fail the same way".into()),
            Failure::Retryable { after } => after,
        };
        if self.max_attempts.is_some_and(|max| attempts >= max) {
            return Err(format!("gave up after {attempts} attempt(s) (retry.maxAttempts)"));
        }
        let mut wait = self.wait(attempts, jitter);
        if let Some(asked) = after {
            wait = wait.max(asked.min(MAX_RETRY_AFTER));
        }
        let at = now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        let deadline = round_started.saturating_add(u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX));
        if at > deadline {
            return Err(format!(
                "gave up after {attempts} attempt(s): the next would start past retry.maxAgeSeconds ({} s)",
                self.max_age.as_secs()
            ));
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Failure = Failure::Retryable { after: None };

    #[test]
    fn the_default_doubles_from_one_second_to_an_hour_with_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.wait(1, 0.0), Duration::from_millis(500));
        assert!(p.wait(1, 0.999_999) > Duration::from_millis(999) && p.wait(1, 0.999_999) < Duration::from_secs(1));
        assert_eq!(p.wait(2, 0.0), Duration::from_secs(1));
        assert_eq!(p.wait(13, 1.0), Duration::from_secs(3600));
        assert_eq!(p.wait(1000, 1.0), Duration::from_secs(3600), "capped, no overflow");
    }

    #[test]
    fn attempts_and_age_bound_the_retries() {
        let p = RetryPolicy { max_attempts: Some(3), ..RetryPolicy::default() };
        assert!(p.next(RETRY, 2, 0, 0, 0.5).is_ok());
        assert!(p.next(RETRY, 3, 0, 0, 0.5).unwrap_err().contains("after 3 attempt(s)"));
        let p = RetryPolicy { max_age: Duration::from_secs(10), ..RetryPolicy::default() };
        assert!(p.next(RETRY, 1, 0, 9_000, 0.0).is_ok());
        assert!(p.next(RETRY, 1, 0, 9_800, 0.0).unwrap_err().contains("maxAgeSeconds (10 s)"));
    }

    #[test]
    fn permanent_failures_are_dead_at_once_and_retry_after_is_honoured() {
        let p = RetryPolicy::default();
        assert!(p.next(Failure::Permanent, 1, 0, 0, 0.0).is_err());
        let at = p.next(Failure::Retryable { after: Some(Duration::from_secs(30)) }, 1, 0, 0, 0.0).unwrap();
        assert_eq!(at, 30_000);
        let capped = p.next(Failure::Retryable { after: Some(Duration::from_secs(86_400)) }, 1, 0, 0, 0.0).unwrap();
        assert_eq!(capped, 3_600_000);
    }

    #[test]
    fn a_fixed_schedule_repeats_its_last_wait() {
        let p = RetryPolicy { schedule: Schedule::Fixed(vec![Duration::from_secs(1), Duration::from_secs(5)]), ..RetryPolicy::default() };
        assert_eq!(p.wait(1, 0.7), Duration::from_secs(1));
        assert_eq!(p.wait(2, 0.7), Duration::from_secs(5));
        assert_eq!(p.wait(9, 0.7), Duration::from_secs(5));
    }
}

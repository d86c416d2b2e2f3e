//! Retries of idempotent calls: the policy, exponential backoff with full
//! jitter, and the server's `retry-after-ms` / `retry-after`.

use std::future::Future;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::ApiError;

/// Retries of idempotent calls inside a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (1 = no retry).
    pub max_attempts: u32,
    /// The first backoff's upper bound; doubles per attempt (full jitter:
    /// the delay is uniform in `[0, min(cap, base·2ⁿ)]`).
    pub base: Duration,
    pub cap: Duration,
    /// A `retry-after` longer than this is not waited for inside the
    /// client: the error is returned with `retry_after` set, for the caller
    /// to schedule.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// Exponential backoff with full jitter, as a `backon` backoff.
#[derive(Debug, Clone)]
pub(crate) struct FullJitter {
    policy: RetryPolicy,
    attempt: u32,
}

impl FullJitter {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    /// Upper bound of the `n`-th delay (0-based).
    pub(crate) fn bound(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.policy.base.saturating_mul(factor).min(self.policy.cap)
    }
}

impl Iterator for FullJitter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.attempt + 1 >= self.policy.max_attempts {
            return None;
        }
        let bound = self.bound(self.attempt);
        self.attempt += 1;
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(rand::random_range(0..=nanos)))
    }
}

/// Retry loop shared by every client (see [`Http::retry`]).
pub(crate) async fn retry_with<T, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    call: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    use backon::Retryable;
    call.retry(FullJitter::new(policy))
        .sleep(tokio::time::sleep)
        .when(ApiError::is_retriable)
        .adjust(|e: &ApiError, next: Option<Duration>| {
            let next = next?;
            match e.retry_after {
                Some(ra) if ra > policy.max_retry_after => None,
                Some(ra) => Some(ra),
                None => Some(next),
            }
        })
        .notify(|e: &ApiError, delay: Duration| {
            // Quiet: the pipeline reports outages (runtime::batch::health).
            tracing::debug!(call = what, class = ?e.class, status = ?e.status, ?delay, error = %e, "retrying");
        })
        .await
}

/// `retry-after-ms` (milliseconds), else `retry-after` (seconds or an HTTP
/// date, relative to `now`).
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()) {
        if let Ok(ms) = ms.trim().parse::<f64>() {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::from_secs_f64(ms / 1000.0));
            }
        }
    }
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An HTTP date (RFC 9110 §5.6.7: IMF-fixdate, RFC 850 or asctime).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

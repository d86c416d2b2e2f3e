//! The two retry budgets of a record: `ml.batch.max.retries` for its own
//! failures, `ml.batch.retry.deadline` for the provider's lack of capacity
//! or availability, and the rule that applies them.

use crate::batch::{Batch, ResultClass};
use crate::{CoreConfig, Millis};

/// Whether a provider error code means "not now" rather than "not this":
/// expiry, cancellation, rate limits, quotas, overload.
pub fn is_capacity_code(code: &str) -> bool {
    let c = code.to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "expired",
        "cancel",
        "rate_limit",
        "quota",
        "token_limit",
        "limit_exceeded",
        "overloaded",
        "429",
    ];
    WORDS.iter().any(|w| c.contains(w))
}

/// What the emitter does with one member record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    EmitOk,
    EmitError,
    /// A capacity failure past `ml.batch.retry.deadline`: emitted as an
    /// error, its message extended with [`Budget::out_of_time`].
    EmitOutOfTime,
    /// Into the retry batch; `charged`: the retry counts against
    /// `ml.batch.max.retries`.
    Retry {
        charged: bool,
    },
}

/// The retry budgets left to a finished batch's members, decided by the
/// core when it asks for the emission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// `ml.batch.max.retries` is spent: a request's own retriable failure
    /// is emitted as an error.
    pub retries_spent: bool,
    /// `ml.batch.retry.deadline` has passed: capacity failures are emitted
    /// as errors; the text says how long and how often they were tried.
    pub out_of_time: Option<String>,
    /// The provider batch completed: a missing result is then the
    /// request's problem, not the provider's capacity.
    pub completed: bool,
}

impl Budget {
    /// The single rule for a member's fate.
    pub fn disposition(&self, class: ResultClass) -> Disposition {
        let class = match class {
            ResultClass::Missing if self.completed => ResultClass::Retriable,
            ResultClass::Missing => ResultClass::Capacity,
            c => c,
        };
        match class {
            ResultClass::Ok => Disposition::EmitOk,
            ResultClass::Permanent => Disposition::EmitError,
            ResultClass::Retriable if self.retries_spent => Disposition::EmitError,
            ResultClass::Retriable => Disposition::Retry { charged: true },
            ResultClass::Capacity if self.out_of_time.is_some() => Disposition::EmitOutOfTime,
            ResultClass::Capacity | ResultClass::Missing => Disposition::Retry { charged: false },
        }
    }
}

/// `Some(why)` once `ml.batch.retry.deadline` has passed for a batch's
/// records: how long and how often they were tried.
pub(crate) fn out_of_time(cfg: &CoreConfig, batch: &Batch, now: Millis) -> Option<String> {
    let since = batch.tried_since();
    let elapsed = now.saturating_sub(since);
    (elapsed >= cfg.retry_deadline_ms).then(|| {
        format!(
            "gave up after {} of provider capacity or availability failures since the first submission, in {} provider batch{} (ml.batch.retry.deadline = {})",
            fmt_duration(elapsed),
            batch.submissions,
            if batch.submissions == 1 { "" } else { "es" },
            fmt_duration(cfg.retry_deadline_ms)
        )
    })
}

/// `3d 2h`, `2h 5m`, `4m 10s`, `12s`, `850ms`: two units at most.
pub fn fmt_duration(ms: Millis) -> String {
    const UNITS: [(Millis, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (i, &(size, name)) in UNITS.iter().enumerate() {
        if ms >= size {
            let (whole, rest) = (ms / size, ms % size);
            return match UNITS.get(i + 1) {
                Some(&(next, next_name)) if rest >= next => {
                    format!("{whole}{name} {}{next_name}", rest / next)
                }
                _ => format!("{whole}{name}"),
            };
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_failures_use_max_retries_capacity_failures_the_deadline() {
        let fresh = Budget {
            retries_spent: false,
            out_of_time: None,
            completed: true,
        };
        let retry = Disposition::Retry { charged: true };
        let wait = Disposition::Retry { charged: false };
        assert_eq!(fresh.disposition(ResultClass::Retriable), retry);
        assert_eq!(fresh.disposition(ResultClass::Missing), retry);
        assert_eq!(fresh.disposition(ResultClass::Capacity), wait);
        assert_eq!(
            fresh.disposition(ResultClass::Permanent),
            Disposition::EmitError
        );
        assert_eq!(fresh.disposition(ResultClass::Ok), Disposition::EmitOk);
        let spent = Budget {
            retries_spent: true,
            completed: false,
            ..fresh.clone()
        };
        assert_eq!(
            spent.disposition(ResultClass::Retriable),
            Disposition::EmitError
        );
        // Missing from an expired batch: capacity, not counted.
        assert_eq!(spent.disposition(ResultClass::Missing), wait);
        assert_eq!(spent.disposition(ResultClass::Capacity), wait);
        let late = Budget {
            out_of_time: Some("tried for 72h".into()),
            ..spent
        };
        assert_eq!(
            late.disposition(ResultClass::Capacity),
            Disposition::EmitOutOfTime
        );
        assert_eq!(
            late.disposition(ResultClass::Missing),
            Disposition::EmitOutOfTime
        );
    }

    #[test]
    fn failed_lines_are_classified_by_code() {
        for code in [
            "batch_expired",
            "batch_cancelled",
            "canceled",
            "rate_limit_exceeded",
            "http_429",
            "token_limit_exceeded",
            "overloaded_error",
            "insufficient_quota",
        ] {
            assert_eq!(
                ResultClass::of_failure(code, true),
                ResultClass::Capacity,
                "{code}"
            );
        }
        for code in ["http_502", "server_error", "timeout"] {
            assert_eq!(
                ResultClass::of_failure(code, true),
                ResultClass::Retriable,
                "{code}"
            );
        }
        assert_eq!(
            ResultClass::of_failure("invalid_request", false),
            ResultClass::Permanent
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(850), "850ms");
        assert_eq!(fmt_duration(12_000), "12s");
        assert_eq!(fmt_duration(250_000), "4m 10s");
        assert_eq!(fmt_duration(72 * 3_600_000), "3d");
        assert_eq!(fmt_duration(72 * 3_600_000 + 180_000), "3d");
        assert_eq!(fmt_duration(7_500_000), "2h 5m");
    }
}

//! The simulated provider's fault model, shared by the simulation of the
//! core (`tests/sim.rs`) and of the whole driver (`runtime`'s
//! `tests/driver_sim.rs`): how often each call fails, and what becomes of
//! a batch once created. Only built with the `sim` feature.

use rand::rngs::StdRng;
use rand::Rng;

use crate::Millis;

/// Rates of each provider fault, drawn per seed.
#[derive(Debug, Clone)]
pub struct Faults {
    pub upload_fail: f64,
    pub create_429: f64,
    pub create_lost: f64,
    pub create_5xx: f64,
    pub quota: f64,
    pub invalid: f64,
    pub expire: f64,
    pub slow: f64,
    pub req_retriable: f64,
    pub req_permanent: f64,
    pub poll_fail: f64,
    pub find_fail: f64,
    pub download_fail: f64,
}

/// What a created batch will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Complete,
    /// Fails at validation with `token_limit_exceeded`.
    Quota,
    /// Fails at validation for its lines.
    Invalid,
    /// Expires with part of its requests done.
    Expire,
}

impl Faults {
    /// Mild rates, or harsh ones (up to four times higher).
    pub fn random(rng: &mut StdRng, harsh: bool) -> Self {
        let mut f = |max: f64| rng.random_range(0.0..if harsh { max } else { max / 4.0 });
        Self {
            upload_fail: f(0.2),
            create_429: f(0.2),
            create_lost: f(0.3),
            create_5xx: f(0.2),
            quota: f(0.3),
            invalid: f(0.1),
            expire: f(0.2),
            slow: f(0.2),
            req_retriable: f(0.2),
            req_permanent: f(0.1),
            poll_fail: f(0.2),
            find_fail: f(0.2),
            download_fail: f(0.2),
        }
    }

    /// A new batch's fate and how long it runs (slow ones beyond any job
    /// timeout, so they get cancelled).
    pub fn fate(&self, rng: &mut StdRng) -> (Fate, Millis) {
        let mut roll = |p: f64| rng.random_bool(p.clamp(0.0, 1.0));
        let fate = if roll(self.quota) {
            Fate::Quota
        } else if roll(self.invalid) {
            Fate::Invalid
        } else if roll(self.expire) {
            Fate::Expire
        } else {
            Fate::Complete
        };
        let run = if roll(self.slow) {
            rng.random_range(1_000..120_000)
        } else {
            rng.random_range(10..2_000)
        };
        (fate, run)
    }
}

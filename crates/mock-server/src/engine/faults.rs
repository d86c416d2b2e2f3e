//! Fault decisions: deterministic given the seed and the order of calls.
//!
//! Each kind of fault draws from its own seeded RNG, so turning one fault on
//! does not change the decisions of another. Per-request faults are a pure
//! function of (seed, pipeline, custom_id, times seen) so that a retried
//! request can succeed and the outcome does not depend on batch boundaries.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::FaultConfig;
use crate::util::{h64, unit};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    RateLimit = 0,
    ServerError = 1,
    LostResponse = 2,
    TokenLimit = 3,
    Expire = 4,
}

const KINDS: usize = 5;

/// Outcome of the per-request fault roll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestFault {
    None,
    Client4xx,
    Server5xx,
}

pub(crate) struct Faults {
    pub(crate) cfg: FaultConfig,
    seed: u64,
    rngs: Mutex<Vec<StdRng>>,
}

impl Faults {
    pub(crate) fn new(cfg: FaultConfig, seed: u64) -> Self {
        let rngs = (0..KINDS as u64)
            .map(|k| StdRng::seed_from_u64(h64(&[&seed.to_le_bytes(), &k.to_le_bytes()])))
            .collect();
        Faults {
            cfg,
            seed,
            rngs: Mutex::new(rngs),
        }
    }

    fn fraction(&self, kind: Kind) -> f64 {
        match kind {
            Kind::RateLimit => self.cfg.rate_limit_fraction,
            Kind::ServerError => self.cfg.server_error_fraction,
            Kind::LostResponse => self.cfg.lost_response_fraction,
            Kind::TokenLimit => self.cfg.token_limit_fraction,
            Kind::Expire => self.cfg.expire_fraction,
        }
    }

    /// True with the configured probability of `kind`; never draws when off.
    pub(crate) fn roll(&self, kind: Kind) -> bool {
        let f = self.fraction(kind);
        if f <= 0.0 {
            return false;
        }
        let mut rngs = self.rngs.lock().expect("fault rng lock");
        rngs[kind as usize].random::<f64>() < f
    }

    /// A uniform choice in 0..n from the stream of `kind` (e.g. which 5xx).
    pub(crate) fn pick(&self, kind: Kind, n: usize) -> usize {
        let mut rngs = self.rngs.lock().expect("fault rng lock");
        rngs[kind as usize].random_range(0..n)
    }

    pub(crate) fn request_faults_on(&self) -> bool {
        self.cfg.request_4xx_fraction > 0.0 || self.cfg.request_5xx_fraction > 0.0
    }

    /// Per-request fault for the `seen`-th time this (pipeline, custom_id)
    /// is executed (0 = first time).
    pub(crate) fn request(&self, pipeline: &str, custom_id: &str, seen: u32) -> RequestFault {
        let roll = |salt: &str, f: f64| {
            f > 0.0
                && unit(h64(&[
                    &self.seed.to_le_bytes(),
                    salt.as_bytes(),
                    pipeline.as_bytes(),
                    custom_id.as_bytes(),
                    &seen.to_le_bytes(),
                ])) < f
        };
        if roll("4xx", self.cfg.request_4xx_fraction) {
            RequestFault::Client4xx
        } else if roll("5xx", self.cfg.request_5xx_fraction) {
            RequestFault::Server5xx
        } else {
            RequestFault::None
        }
    }

    /// Seed of a batch's output shuffle.
    pub(crate) fn shuffle_seed(&self, batch_seq: u64) -> u64 {
        h64(&[
            &self.seed.to_le_bytes(),
            b"shuffle",
            &batch_seq.to_le_bytes(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(f: f64) -> FaultConfig {
        FaultConfig {
            rate_limit_fraction: f,
            request_5xx_fraction: f,
            ..Default::default()
        }
    }

    #[test]
    fn same_seed_same_decisions() {
        let (a, b) = (Faults::new(cfg(0.5), 3), Faults::new(cfg(0.5), 3));
        let xa: Vec<bool> = (0..64).map(|_| a.roll(Kind::RateLimit)).collect();
        let xb: Vec<bool> = (0..64).map(|_| b.roll(Kind::RateLimit)).collect();
        assert_eq!(xa, xb);
        assert!(xa.iter().any(|x| *x) && xa.iter().any(|x| !*x));
        let c = Faults::new(cfg(0.5), 4);
        let xc: Vec<bool> = (0..64).map(|_| c.roll(Kind::RateLimit)).collect();
        assert_ne!(xa, xc);
    }

    #[test]
    fn off_never_fires_and_retries_can_succeed() {
        let f = Faults::new(cfg(0.0), 1);
        assert!(!(0..100).any(|_| f.roll(Kind::ServerError)));
        let f = Faults::new(cfg(0.5), 1);
        // some custom_id fails the first time and succeeds on a later attempt
        let recovered = (0..50).any(|i| {
            let id = format!("r-{i}");
            f.request("p", &id, 0) == RequestFault::Server5xx
                && f.request("p", &id, 1) == RequestFault::None
        });
        assert!(recovered);
    }
}

//! The exactly-once invariants, checked after a seed's run.

use std::collections::{BTreeMap, BTreeSet};

use super::World;

impl World {
    pub fn check(&self) {
        let mut seen = BTreeMap::new();
        for &(lane, p, ok) in &self.durable.output {
            assert!(
                !self.dead.contains(&(lane, p)),
                "dead record {lane}-{p} emitted as output"
            );
            if seen.insert((lane, p), ok).is_some() {
                panic!("record {lane}-{p} emitted twice");
            }
        }
        for (&lane, &len) in &self.lane_len {
            for p in 0..len {
                if !self.dead.contains(&(lane, p)) {
                    assert!(
                        seen.contains_key(&(lane, p)),
                        "record {lane}-{p} never emitted"
                    );
                }
            }
        }
        let dlq: BTreeSet<_> = self.durable.dlq.iter().copied().collect();
        assert_eq!(
            dlq.len(),
            self.durable.dlq.len(),
            "a dead letter written twice"
        );
        assert_eq!(dlq, self.dead, "dead letters differ from the dead records");
        // A record answered successfully by the provider is never answered
        // again: nothing was paid for twice.
        self.provider.check_no_double_answers();
        // An ok in the output must be an ok at the provider.
        for (&(lane, p), &ok) in &seen {
            if ok {
                assert!(
                    self.provider.answered_ok(lane, p),
                    "{lane}-{p} emitted ok without a provider answer"
                );
            }
        }
        let _ = self.max_retries;
        let _ = self.seed;
    }
}

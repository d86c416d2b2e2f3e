//! Submission gating: whether the next batch may start, under the
//! organisation's enqueued-token limit (`ml.batch.max.enqueued-tokens`) and
//! the budget (`ml.budget.max-usd`). Batches start in id order: one that
//! must wait holds back those behind it, so a large batch is never starved
//! by small ones.

use crate::batch::Phase;
use crate::lifecycle::Run;
use crate::{CoreConfig, NanoUsd};

/// Why the next batch does not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Its tokens would take the enqueued tokens past the limit; it starts
    /// when batches in flight finish.
    Tokens { next: u64 },
    /// Its estimated cost would take the spend past the budget.
    /// `exhausted`: even with nothing in flight it would (what is spent
    /// already leaves too little): only a larger budget, and a restart,
    /// lets it start. Otherwise it starts once batches in flight are
    /// emitted at their (lower) real cost.
    Budget { next: NanoUsd, exhausted: bool },
}

/// The gate's figures, for `status`, gauges and progress lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gate {
    /// Tokens of batches started and not finished.
    pub enqueued_tokens: u64,
    pub token_limit: Option<u64>,
    /// Real cost of the emitted batches (told by the shell, durable).
    pub spent: NanoUsd,
    /// `spent` plus the estimates of the started batches not yet emitted:
    /// what the budget is held against.
    pub committed: NanoUsd,
    pub budget: Option<NanoUsd>,
    pub waiting: Option<Waiting>,
}

/// What the started batches hold: tokens (until they finish) and
/// estimated cost (until they are emitted and their real cost is known).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Held {
    pub tokens: u64,
    pub cost: NanoUsd,
}

impl Held {
    pub(crate) fn of<'a>(runs: impl Iterator<Item = &'a Run>) -> Held {
        let mut held = Held::default();
        for run in runs.filter(|r| r.started) {
            held.add(run);
        }
        held
    }

    pub(crate) fn add(&mut self, run: &Run) {
        if run.batch.phase != Phase::Finished {
            self.tokens += run.batch.tokens;
        }
        self.cost += run.batch.estimated_cost;
    }
}

/// Whether `run` may start now, given what is held and spent.
pub(crate) fn may_start(
    cfg: &CoreConfig,
    run: &Run,
    held: Held,
    spent: NanoUsd,
) -> Result<(), Waiting> {
    let b = &run.batch;
    if let Some(limit) = cfg.max_enqueued_tokens {
        // Alone it always goes (batches are cut within the limit; one cut
        // before a lower limit was set is left to the provider).
        if held.tokens > 0 && held.tokens.saturating_add(b.tokens) > limit {
            return Err(Waiting::Tokens { next: b.tokens });
        }
    }
    if let Some(budget) = cfg.budget {
        let committed = spent.saturating_add(held.cost);
        if committed >= budget || committed.saturating_add(b.estimated_cost) > budget {
            return Err(Waiting::Budget {
                next: b.estimated_cost,
                exhausted: spent >= budget || spent.saturating_add(b.estimated_cost) > budget,
            });
        }
    }
    Ok(())
}

/// Whether any gate is configured (the hot paths skip the sums otherwise).
pub(crate) fn gated(cfg: &CoreConfig) -> bool {
    cfg.max_enqueued_tokens.is_some() || cfg.budget.is_some()
}

#[cfg(test)]
mod tests {
    use crate::{
        Action, Batch, Core, CoreConfig, Event, Remote, RemoteState, RequestSize, Waiting,
    };

    fn core(limit: Option<u64>, budget: Option<u64>) -> Core {
        let mut cfg = CoreConfig::for_tests("t");
        cfg.batch_size = 100;
        cfg.max_inflight = 8;
        cfg.max_enqueued_tokens = limit;
        cfg.budget = budget;
        Core::new(cfg)
    }

    fn req(tokens: u64, cost: u64) -> RequestSize {
        RequestSize {
            bytes: 10,
            tokens,
            cost,
        }
    }

    /// Feed records `from..to` of lane 0; the batches cut.
    fn feed(core: &mut Core, from: u64, to: u64, size: RequestSize) -> Vec<Batch> {
        let mut cut = Vec::new();
        for p in from..to {
            let cuts = core.on_record(0, p, p + 1, size, false, 0);
            cut.extend(
                [cuts.before, cuts.after]
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.batch),
            );
        }
        cut
    }

    fn end(core: &mut Core) -> Vec<Batch> {
        let mut out = Vec::new();
        core.handle(Event::EndOfInput { lane: 0 }, 0, &mut out);
        out.into_iter()
            .filter_map(|a| match a {
                Action::Cut(p) => p.batch,
                _ => None,
            })
            .collect()
    }

    /// Ids of the batches whose upload the next tick asks for.
    fn started(core: &mut Core, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        core.tick(now, &mut out);
        out.iter()
            .filter_map(|a| match a {
                Action::Upload(b) => Some(b.id),
                _ => None,
            })
            .collect()
    }

    /// Take a started batch through upload and create to completed; the
    /// emit action it ends with.
    fn complete(core: &mut Core, id: u64, now: u64) {
        let mut out = Vec::new();
        core.handle(
            Event::Uploaded {
                id,
                result: Ok(Some("file".into())),
            },
            now,
            &mut out,
        );
        core.tick(now, &mut out);
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Create(b) if b.id == id)));
        let remote = Remote {
            id: format!("r{id}"),
            state: Some(RemoteState::Completed),
            output_file: Some("out".into()),
            error_file: None,
            error: None,
        };
        core.handle(
            Event::Created {
                id,
                result: Ok(remote),
            },
            now,
            &mut out,
        );
    }

    fn emitted(core: &mut Core, id: u64, now: u64) {
        let mut out = Vec::new();
        core.handle(Event::Emitted { id, retry: None }, now, &mut out);
    }

    #[test]
    fn batches_are_cut_within_the_limit_and_wait_for_room() {
        let mut c = core(Some(100), None);
        // 30 tokens each: three fit, the fourth starts the next batch.
        let cut = feed(&mut c, 0, 7, req(30, 0));
        assert_eq!(cut.len(), 2);
        assert_eq!((cut[0].records, cut[0].tokens), (3, 90));
        let cut = [cut, end(&mut c)].concat();
        assert_eq!(
            cut.iter().map(|b| b.tokens).collect::<Vec<_>>(),
            [90, 90, 30]
        );
        assert_eq!(started(&mut c, 1), [cut[0].id]);
        let gate = c.gate();
        assert_eq!(gate.enqueued_tokens, 90);
        assert_eq!(gate.waiting, Some(Waiting::Tokens { next: 90 }));
        complete(&mut c, cut[0].id, 2);
        // Finished: its tokens no longer count, though not yet emitted.
        assert_eq!(c.gate().enqueued_tokens, 0);
        // In id order: the second alone, the third waits behind it.
        assert_eq!(started(&mut c, 3), [cut[1].id]);
        assert_eq!(c.gate().waiting, Some(Waiting::Tokens { next: 30 }));
    }

    #[test]
    fn a_batch_is_cut_smaller_to_fit_the_room_left() {
        let mut c = core(Some(100), None);
        let first = [feed(&mut c, 0, 2, req(30, 0)), end(&mut c)].concat();
        assert_eq!(first[0].tokens, 60);
        assert_eq!(started(&mut c, 1), [first[0].id]);
        // 40 tokens left: two requests of 15 fit, the third would not.
        let mut c2 = c;
        c2.open_lane(0, 2, 3);
        let cut = feed(&mut c2, 2, 5, req(15, 0));
        assert_eq!(cut.len(), 1);
        assert_eq!((cut[0].records, cut[0].tokens), (2, 30));
        assert_eq!(started(&mut c2, 2), [cut[0].id], "it fits beside the first");
    }

    #[test]
    fn the_budget_stops_new_batches_and_counts_real_costs() {
        let mut c = core(None, Some(100));
        // Each record: estimate 20; a batch of two costs 40.
        let mut cut = Vec::new();
        for p in 0..6 {
            cut.extend(feed(&mut c, p, p + 1, req(0, 20)));
            if p % 2 == 1 {
                cut.extend(end(&mut c));
                c.open_lane(0, p + 1, 0);
            }
        }
        assert_eq!(
            cut.iter().map(|b| b.estimated_cost).collect::<Vec<_>>(),
            [40, 40, 40]
        );
        assert_eq!(started(&mut c, 1), [cut[0].id, cut[1].id]);
        let gate = c.gate();
        assert_eq!(
            (gate.committed, gate.waiting),
            (
                80,
                Some(Waiting::Budget {
                    next: 40,
                    exhausted: false
                })
            )
        );
        // Finished but not emitted: still held at its estimate.
        complete(&mut c, cut[0].id, 2);
        assert!(started(&mut c, 3).is_empty());
        // Emitted at a real cost of 10: the third fits (10 + 40 + 40).
        emitted(&mut c, cut[0].id, 4);
        c.set_spent(10);
        assert_eq!(started(&mut c, 5), [cut[2].id]);
        assert_eq!(c.gate().committed, 90);
        assert_eq!(c.gate().waiting, None);
    }

    #[test]
    fn a_spent_budget_starts_nothing() {
        let mut c = core(None, Some(100));
        c.set_spent(100);
        let cut = [feed(&mut c, 0, 1, req(0, 0)), end(&mut c)].concat();
        assert!(
            started(&mut c, 1).is_empty(),
            "reached, even for a free batch"
        );
        assert_eq!(
            c.gate().waiting,
            Some(Waiting::Budget {
                next: 0,
                exhausted: true
            })
        );
        assert_eq!(cut.len(), 1);
        assert!(
            c.next_wake().is_none(),
            "nothing to wake for: {:?}",
            c.next_wake()
        );
    }
}

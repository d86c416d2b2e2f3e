//! Deterministic simulation of the core against a simulated provider with
//! faults and crashes. Each seed builds a world (records, dead letters,
//! policy, fault rates), runs it to completion with crashes injected after
//! random steps (restoring the core from the durable state only), then checks
//! the exactly-once invariants.
//!
//! `SIM_SEEDS=100000 cargo test -p batch-core --release --test sim` soaks;
//! `SIM_SEED=1234` replays one seed (a failure prints its seed).

mod world;

use world::World;

fn seeds() -> Vec<u64> {
    if let Ok(one) = std::env::var("SIM_SEED") {
        return vec![one.parse().expect("SIM_SEED is a number")];
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    (0..n).collect()
}

#[test]
fn exactly_once_under_faults_and_crashes() {
    let mut totals = world::Totals::default();
    for seed in seeds() {
        let result = std::panic::catch_unwind(|| {
            let mut world = World::new(seed);
            world.run();
            world.check();
            world.totals()
        });
        match result {
            Ok(t) => totals.add(&t),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("seed {seed} failed: {msg}\nreplay with: SIM_SEED={seed} cargo test -p batch-core --test sim");
            }
        }
    }
    eprintln!("simulation totals: {totals:?}");
    // The faults must actually have been exercised, or the run proves nothing.
    if std::env::var("SIM_SEED").is_err() {
        assert!(
            totals.crashes > 0 && totals.lost_creates > 0 && totals.adoptions > 0,
            "{totals:?}"
        );
        assert!(
            totals.quota_failures > 0 && totals.expired > 0 && totals.retried_records > 0,
            "{totals:?}"
        );
        assert!(
            totals.cancelled > 0 && totals.whole_batch_errors > 0,
            "{totals:?}"
        );
        assert!(totals.lane_moves > 0 && totals.list_polls > 0, "{totals:?}");
        // Pacing: seeds with a limit, batches that waited for room, and
        // requests too large for it.
        assert!(
            totals.paced > 0 && totals.token_waits > 0 && totals.over_limit > 0,
            "{totals:?}"
        );
        // Budgets that stopped runs, raised and resumed.
        assert!(totals.budgeted > 0 && totals.budget_stops > 0, "{totals:?}");
        // Long outages: some records outlive them, some run out of time.
        assert!(
            totals.outages > 0 && totals.longest_outage_ms >= 7_200_000,
            "{totals:?}"
        );
        assert!(
            totals.outage_survivors > 0 && totals.out_of_time > 0,
            "{totals:?}"
        );
    }
}

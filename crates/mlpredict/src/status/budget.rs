//! Why a pipeline does or does not submit under `ml.budget.max-usd`, from
//! its state: the core's own gate over the open batches and the committed
//! spend, so `status` says what the run decides.

use batch_core::{Batch, Core, Waiting};
use pipeline_config::PipelineConfig;

use crate::runtime::{core_config, now_ms};

fn usd(nano: u64) -> String {
    format!("${:.6}", nano as f64 / 1e9)
}

/// One line on the budget, or `None` without one.
pub fn state(cfg: &PipelineConfig, open: &[Batch], spent: Option<&str>) -> Option<String> {
    cfg.batch.max_usd?;
    let spent: u64 = spent.and_then(|s| s.parse().ok()).unwrap_or(0);
    let limits = batch_api::Limits {
        max_requests: u64::MAX,
        max_bytes: u64::MAX,
    };
    let mut core = Core::restore(
        core_config(cfg, limits, false),
        &[],
        open.to_vec(),
        now_ms(),
    );
    core.set_spent(spent);
    let g = core.gate();
    let budget = g.budget.unwrap_or(0);
    let figures = format!(
        "{} spent, {} with the batches in flight, of {}",
        usd(g.spent),
        usd(g.committed),
        usd(budget)
    );
    Some(match g.waiting {
        Some(Waiting::Budget {
            exhausted: true,
            next,
        }) => format!(
            "budget_exhausted: {figures}; the next batch (estimated {}) is not submitted and no record is read until ml.budget.max-usd is raised and the pipeline restarted",
            usd(next)
        ),
        Some(Waiting::Budget { next, .. }) => format!(
            "waiting: {figures}; the next batch (estimated {}) starts once batches in flight are emitted at their cost",
            usd(next)
        ),
        _ if g.spent >= budget => format!("budget_exhausted: {figures}"),
        _ => format!("{} left: {figures}", usd(budget.saturating_sub(g.committed))),
    })
}

//! `mlpredict status`: the pipeline's batches, from its state database.

use std::time::Duration;

use anyhow::bail;
use batch_core::Phase;
use pipeline_config::PipelineConfig;
use state_store::Store;

use crate::runtime::{now_ms, state_dir};

pub fn print(cfg: &PipelineConfig, all: bool) -> anyhow::Result<()> {
    let dir = state_dir(cfg);
    if !dir.join("state.db").exists() {
        bail!(
            "no state for pipeline `{}` under {} (ml.batch.local.dir): it never ran here",
            cfg.name,
            dir.display()
        );
    }
    let store = Store::open(&dir)?;
    let snap = store.load()?;
    let batches = store.all_batches()?;
    println!("pipeline {}  state {}", cfg.name, store.path().display());
    for (lane, w) in &snap.lanes {
        println!("lane {lane}: consumed up to byte {w}");
    }
    for (name, len) in &snap.sinks {
        println!("{name}: {len} bytes committed");
    }
    let open = batches.iter().filter(|b| b.phase != Phase::Emitted).count();
    println!("{} batches, {open} not yet emitted", batches.len());
    println!(
        "{:<6} {:<40} {:<10} {:>8} {:>4} {:>4} {:>9} {:<22} {}",
        "id",
        "batch_number",
        "phase",
        "records",
        "gen",
        "att",
        "age",
        "provider batch",
        "state / failure"
    );
    let now = now_ms();
    let mut shown = 0;
    for b in &batches {
        if !all && b.phase == Phase::Emitted && shown >= 20 {
            continue;
        }
        shown += 1;
        let age = humantime::format_duration(Duration::from_secs(
            now.saturating_sub(b.planned_at) / 1000,
        ));
        let state = match (&b.failure, b.remote_state) {
            (Some(f), _) => format!("{}: {}", f.code, f.message),
            (None, Some(s)) => s.as_str().to_owned(),
            (None, None) => String::new(),
        };
        println!(
            "{:<6} {:<40} {:<10} {:>8} {:>4} {:>4} {:>9} {:<22} {}",
            b.id,
            b.number,
            b.phase.as_str(),
            b.records,
            b.generation,
            b.attempt,
            age.to_string(),
            b.remote_id.as_deref().unwrap_or("-"),
            state
        );
    }
    Ok(())
}

//! `mlpredict status`: the pipeline's batches, from its state database (file
//! sources) or its state topic (Kafka sources). Reads state only: needs no
//! API key, and a Kafka pipeline's group is not joined.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use batch_core::{Batch, Phase};
use pipeline_config::{PipelineConfig, SourceConfig};
use runtime::batch::health::Report;
use state_store::Store;

use crate::runtime::{kafka_settings, now_ms, state_dir};

pub fn print(cfg: &PipelineConfig, all: bool) -> anyhow::Result<()> {
    match &cfg.source {
        SourceConfig::File { .. } => print_file(cfg, all),
        SourceConfig::Kafka(_) => print_kafka(cfg, all),
    }
}

fn print_file(cfg: &PipelineConfig, all: bool) -> anyhow::Result<()> {
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
    println!("pipeline {}  state {}", cfg.name, store.path().display());
    for (lane, w) in &snap.lanes {
        println!("lane {lane}: consumed up to byte {w}");
    }
    for (name, len) in &snap.sinks {
        println!("{name}: {len} bytes committed");
    }
    print_provider(&dir, "");
    print_batches(&store.all_batches()?, all);
    Ok(())
}

fn print_kafka(cfg: &PipelineConfig, all: bool) -> anyhow::Result<()> {
    let s = kafka_settings(cfg, "status")?;
    let reader = kafka_io::StateReader::connect(&s)?;
    let Some(partitions) = reader.partitions()? else {
        bail!(
            "no state for pipeline `{}` at {} (source.bootstrap.servers): its state topic {} does not exist, it never ran against this cluster",
            cfg.name,
            s.bootstrap,
            s.state_topic
        );
    };
    println!(
        "pipeline {}  state topic {} at {}",
        cfg.name, s.state_topic, s.bootstrap
    );
    let mut batches = Vec::new();
    for p in 0..partitions {
        let lane = reader.read_history(p)?;
        if let Some(l) = lane.lane {
            println!("lane {p}: consumed up to offset {}", l.watermark);
        }
        batches.extend(lane.batches.into_values());
    }
    // What the instances on this machine saw of the provider.
    if let Ok(dirs) = std::fs::read_dir(state_dir(cfg)) {
        let mut dirs: Vec<_> = dirs.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            print_provider(dir, &format!(" ({name})"));
        }
    }
    // Newest first, as for a file pipeline; emitted batches are shown until
    // the topic's compaction removes them.
    batches.sort_by_key(|b| std::cmp::Reverse((b.planned_at, b.id)));
    print_batches(&batches, all);
    Ok(())
}

/// The provider's state as the run using `dir` last reported it
/// (`provider_unavailable_since` during an outage).
fn print_provider(dir: &Path, whose: &str) {
    let Some(r) = Report::read(dir) else { return };
    let ago =
        |t: u64| humantime::format_duration(Duration::from_secs(now_ms().saturating_sub(t) / 1000));
    let reported = format!("reported {} ago", ago(r.updated_at));
    match r.unavailable_since {
        None => println!("provider{whose}: up ({reported})"),
        Some(since) => println!(
            "provider{whose}: down, provider_unavailable_since {} ({} ago, {} failed calls; {reported})",
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(since)),
            ago(since),
            r.failed_calls,
        ),
    }
}

/// The batch table, newest first: every open batch and the last 20 emitted
/// ones (all with `all`).
fn print_batches(batches: &[Batch], all: bool) {
    let open = batches.iter().filter(|b| b.phase != Phase::Emitted).count();
    let plural = if batches.len() == 1 {
        "batch"
    } else {
        "batches"
    };
    println!("{} {plural}, {open} not yet emitted", batches.len());
    println!(
        "{:<6} {:<40} {:<10} {:>8} {:>4} {:>4} {:>9} {:<22} state / failure",
        "id", "batch_number", "phase", "records", "gen", "att", "age", "provider batch",
    );
    let now = now_ms();
    let mut shown = 0;
    for b in batches {
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
}

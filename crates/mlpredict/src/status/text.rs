//! `mlpredict status`: the [`Status`] as text.

use std::time::Duration;

use batch_core::Millis;

use super::{ProviderReport, Status};

/// The header, lanes, sinks, then the batch table, newest first: every open
/// batch and the last 20 emitted ones (all with `all`).
pub fn print(s: &Status, all: bool) {
    println!("pipeline {}  {}", s.pipeline, s.state);
    for l in &s.lanes {
        println!("lane {}: consumed up to {} {}", l.lane, l.unit, l.watermark);
    }
    for sink in &s.sinks {
        println!("{}: {} bytes committed", sink.name, sink.bytes);
    }
    for r in &s.provider_reports {
        print_provider(r, s.at_ms);
    }
    if let Some(budget) = &s.money.budget_state {
        println!("budget (ml.budget.max-usd): {budget}");
    }
    let plural = if s.batches.len() == 1 {
        "batch"
    } else {
        "batches"
    };
    println!(
        "{} {plural}, {} not yet emitted",
        s.batches.len(),
        s.open_batches()
    );
    println!(
        "{:<6} {:<40} {:<10} {:>8} {:>4} {:>4} {:>9} {:<22} state / failure",
        "id", "batch_number", "phase", "records", "gen", "att", "age", "provider batch",
    );
    for b in s.shown_batches(all) {
        let age = humantime::format_duration(Duration::from_secs(b.age_ms / 1000));
        println!(
            "{:<6} {:<40} {:<10} {:>8} {:>4} {:>4} {:>9} {:<22} {}",
            b.id,
            b.number,
            b.phase,
            b.records,
            b.generation,
            b.attempt,
            age.to_string(),
            b.remote_id.as_deref().unwrap_or("-"),
            b.state.as_deref().unwrap_or("")
        );
    }
}

/// The provider's state as a run last reported it
/// (`provider_unavailable_since` during an outage).
fn print_provider(p: &ProviderReport, now: Millis) {
    let whose = p
        .instance
        .as_ref()
        .map(|i| format!(" ({i})"))
        .unwrap_or_default();
    let r = &p.report;
    let ago =
        |t: u64| humantime::format_duration(Duration::from_secs(now.saturating_sub(t) / 1000));
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

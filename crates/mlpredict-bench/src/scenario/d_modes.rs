//! (d) Batch vs synchronous mode on the same input under an RPM limit:
//! throughput, API calls and cost.

use std::path::Path;

use anyhow::Context;
use toml::Value;

use crate::config::{self, int};
use crate::ctx::{cleanup, Ctx};
use crate::measure::{calls_by_route, parse_ms};
use crate::{gen, ModeRow, ModeSetup, BATCH_DISCOUNT, PRICE_INPUT_PER_M, PRICE_OUTPUT_PER_M};

pub(crate) fn modes(cx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let setup = if cx.o.smoke {
        ModeSetup {
            records: 60,
            sync_latency: "5ms".into(),
            rpm: 6000,
            concurrency: 8,
            batch_size: 50,
            batch_turnaround: "150ms".into(),
            poll_interval: "50ms".into(),
        }
    } else {
        ModeSetup {
            records: 1200,
            sync_latency: "300ms".into(),
            rpm: 600,
            concurrency: 16,
            batch_size: 1000,
            batch_turnaround: "6s".into(),
            poll_interval: "1s".into(),
        }
    };
    let input = gen::input(&cx.inputs, setup.records, 200)?;
    // The mock's batch life: 1/12 validating, 5/6 in progress, 1/12 finalizing.
    let turnaround = parse_ms(&setup.batch_turnaround);
    let (v, p) = (turnaround / 12, turnaround - turnaround / 6);
    let (v, p) = (format!("{v}ms"), format!("{p}ms"));
    let rpm = setup.rpm.to_string();
    let mock_args = [
        "--sync-latency",
        setup.sync_latency.as_str(),
        "--rpm",
        rpm.as_str(),
        "--validating",
        v.as_str(),
        "--in-progress",
        p.as_str(),
        "--finalizing",
        v.as_str(),
    ];
    for mode in ["batch", "sync"] {
        let name = format!("d-{mode}");
        let mock = cx.mock(&mock_args, &name)?;
        let dir = cx.scratch(&name)?;
        let keys: Vec<(&str, Value)> = if mode == "batch" {
            vec![
                ("ml.batch.size", int(setup.batch_size)),
                (
                    "ml.batch.poll.interval",
                    setup.poll_interval.as_str().into(),
                ),
                ("ml.batch.max.wait", "1s".into()),
            ]
        } else {
            vec![
                (
                    "ml.predict.max-concurrent-operations",
                    int(setup.concurrency),
                ),
                ("ml.predict.max-retries", int(10)),
            ]
        };
        let toml = config::file_pipeline("bench", &input, &dir, &mock.base, mode == "batch", &keys);
        let config = cx.write_config(&dir, &toml)?;
        cx.note_command(format!(
            "{} run --config {}   # (d) {mode} mode",
            cx.o.bin.display(),
            config.display()
        ));
        let m = cx.run_to_end(&config, &name)?;
        let stats = mock.stats()?;
        mock.stop();
        let total_tokens = m.summary_number("tokens: ").unwrap_or(0);
        let (ok, completion) = completion_tokens(&dir.join("output.jsonl"))?;
        let prompt = total_tokens.saturating_sub(completion);
        let factor = if mode == "batch" { BATCH_DISCOUNT } else { 1.0 };
        let cost = factor
            * (prompt as f64 * PRICE_INPUT_PER_M + completion as f64 * PRICE_OUTPUT_PER_M)
            / 1e6;
        let wall = m.wall.as_secs_f64();
        let row = ModeRow {
            mode: mode.into(),
            records: setup.records,
            wall_s: wall,
            records_per_min: setup.records as f64 * 60.0 / wall,
            api_calls: calls_by_route(&stats).values().sum(),
            rate_limited: stats["faults_injected"]["rpm_limit"].as_u64().unwrap_or(0),
            ok,
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost_usd: cost,
        };
        eprintln!(
            "(d) {mode}: {} records in {wall:.1} s = {:.0}/min, {} API calls",
            setup.records, row.records_per_min, row.api_calls
        );
        cx.report.modes.push(row);
        cleanup(&dir)?;
    }
    cx.report.modes_setup = Some(setup);
    Ok(())
}

/// (ok records, completion tokens) of an output file, counting tokens the
/// way the mock's fake model does (4 tokens per 3 words, at least 1).
fn completion_tokens(output: &Path) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(output)
        .with_context(|| format!("cannot read {}", output.display()))?;
    let (mut ok, mut tokens) = (0, 0);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if let Some(p) = v["prediction"].as_str() {
            ok += 1;
            let words = p.split_whitespace().count() as u64;
            tokens += (words * 4).div_ceil(3).max(1);
        }
    }
    Ok((ok, tokens))
}

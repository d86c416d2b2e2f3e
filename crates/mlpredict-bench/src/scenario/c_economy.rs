//! (c) API calls per 1,000 records by batch size and in-flight count.

use crate::config::{self, int};
use crate::ctx::{cleanup, Ctx};
use crate::measure::{calls_by_route, parse_ms};
use crate::{gen, EconomyRow, EconomySetup};

pub(crate) fn economy(cx: &mut Ctx<'_>) -> anyhow::Result<()> {
    // (batch size, max.inflight, in_progress, waves of batches)
    type Cell = (u64, u64, &'static str, u64);
    let (edges, poll, grid): (&str, &str, Vec<Cell>) = if cx.o.smoke {
        (
            "50ms",
            "100ms",
            vec![(50, 2, "300ms", 2), (50, 4, "300ms", 2), (50, 2, "1s", 1)],
        )
    } else {
        let mut g = Vec::new();
        for bs in [100, 1000, 10_000] {
            for inflight in [4, 16, 64] {
                g.push((bs, inflight, "3s", 2));
            }
        }
        // Long batches: adaptive polling backs off.
        g.push((1000, 16, "30s", 1));
        ("200ms", "250ms", g)
    };
    let interval = parse_ms(poll);
    cx.report.economy_setup = Some(EconomySetup {
        lifetime: format!("validating {edges}, in_progress as in the table, finalizing {edges}"),
        poll_interval: poll.to_owned(),
    });
    for (bs, inflight, in_progress, waves) in grid {
        let lifetime = 2 * parse_ms(edges) + parse_ms(in_progress);
        let n = (bs * inflight * waves).min(if cx.o.smoke { 400 } else { 200_000 });
        let input = gen::input(&cx.inputs, n, 200)?;
        let name = format!("c-bs{bs}-if{inflight}-{in_progress}");
        let mock = cx.mock(
            &[
                "--validating",
                edges,
                "--in-progress",
                in_progress,
                "--finalizing",
                edges,
            ],
            &name,
        )?;
        let dir = cx.scratch(&name)?;
        let toml = config::file_pipeline(
            "bench",
            &input,
            &dir,
            &mock.base,
            true,
            &[
                ("ml.batch.size", int(bs)),
                ("ml.batch.max.inflight", int(inflight)),
                ("ml.batch.poll.interval", poll.into()),
                ("ml.batch.max.wait", "1s".into()),
            ],
        );
        let config = cx.write_config(&dir, &toml)?;
        cx.note_command(format!(
            "{} run --config {}   # (c): ml.batch.size = {bs}, max.inflight = {inflight}, poll.interval = {poll}",
            cx.o.bin.display(),
            config.display()
        ));
        let m = cx.run_to_end(&config, &name)?;
        let stats = mock.stats()?;
        mock.stop();
        let calls = calls_by_route(&stats);
        let get = |k: &str| calls.get(k).copied().unwrap_or(0);
        let batches = stats["batches_created"].as_u64().unwrap_or(0);
        let total: u64 = calls.values().sum();
        let polls = get("GET /v1/batches/{id}");
        let lists = get("GET /v1/batches");
        let batch_intervals = batches as f64 * (lifetime as f64 / interval as f64);
        let row = EconomyRow {
            lifetime_ms: lifetime,
            batch_size: bs,
            max_inflight: inflight,
            records: n,
            batches,
            wall_s: m.wall.as_secs_f64(),
            total_calls: total,
            calls_per_1000: total as f64 * 1000.0 / n as f64,
            status_calls_per_batch: (polls + lists) as f64 / batches.max(1) as f64,
            status_calls_per_batch_interval: (polls + lists) as f64 / batch_intervals.max(1e-9),
            calls,
        };
        eprintln!(
            "(c) batch {bs}, in flight {inflight}: {total} calls for {n} records ({:.1} per 1000)",
            row.calls_per_1000
        );
        cx.report.economy.push(row);
        cleanup(&dir)?;
    }
    Ok(())
}

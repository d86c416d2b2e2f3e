//! (a) Operator overhead: records/s and CPU µs/record through the file
//! pipeline against `mock-server --instant`, by batch size and record size,
//! and optionally one run under `perf record`.

use std::process::Command;

use anyhow::bail;
use toml::Value;

use crate::config::{self, int};
use crate::ctx::{cleanup, Ctx};
use crate::measure::{calls_by_route, count_lines, mb};
use crate::procs::Running;
use crate::{gen, OverheadRow, Throughput, OVERHEAD_REPEATS, SYNC_CONCURRENCY};

pub(crate) fn overhead(cx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let grid: &[(usize, &[(u64, u64)])] = if cx.o.smoke {
        &[(200, &[(10, 300), (100, 600)]), (2000, &[(100, 300)])]
    } else {
        &[
            (
                200,
                &[
                    (10, 20_000),
                    (100, 100_000),
                    (1000, 1_000_000),
                    (10_000, 1_000_000),
                ],
            ),
            (
                2000,
                &[
                    (10, 10_000),
                    (100, 50_000),
                    (1000, 200_000),
                    (10_000, 200_000),
                ],
            ),
        ]
    };
    let sync_cells: &[(usize, u64)] = if cx.o.smoke {
        &[(200, 200)]
    } else {
        &[(200, 50_000), (2000, 20_000)]
    };
    let mut cells_all: Vec<(&str, usize, u64, u64)> = Vec::new();
    for &(size, cells) in grid {
        for &(bs, n) in cells {
            cells_all.push(("batch", size, bs, n));
        }
    }
    for &(size, n) in sync_cells {
        cells_all.push(("sync", size, SYNC_CONCURRENCY, n));
    }
    let repeats = if cx.o.smoke { 1 } else { OVERHEAD_REPEATS };
    for (mode, size, bs, n) in cells_all {
        let mut best: Option<OverheadRow> = None;
        for _ in 0..repeats {
            let input = gen::input(&cx.inputs, n, size)?;
            let name = if mode == "batch" {
                format!("a-{size}b-bs{bs}")
            } else {
                format!("a-{size}b-sync")
            };
            let mock = cx.mock(&["--instant"], &name)?;
            let dir = cx.scratch(&name)?;
            let keys: Vec<(&str, Value)> = if mode == "batch" {
                config::throughput_keys(bs)
            } else {
                vec![("ml.predict.max-concurrent-operations", int(bs))]
            };
            let toml =
                config::file_pipeline("bench", &input, &dir, &mock.base, mode == "batch", &keys);
            let config = cx.write_config(&dir, &toml)?;
            cx.note_command(format!(
                "{} run --config {}   # (a) {}",
                cx.o.bin.display(),
                config.display(),
                if mode == "batch" {
                    format!("ml.batch.size = {bs}, poll.interval = 1ms, max.inflight = 32")
                } else {
                    format!("batch mode off, max-concurrent-operations = {bs}")
                }
            ));
            let m = cx.run_to_end(&config, &name)?;
            let stats = mock.stats()?;
            let mock_cpu = mock.cpu();
            mock.stop();
            let emitted = count_lines(&dir.join("output.jsonl"))?;
            if emitted != n {
                bail!("{name}: {emitted} records emitted, {n} expected");
            }
            let api_calls = calls_by_route(&stats).values().sum();
            let t = Throughput::new(n, m.wall, m.user, m.sys);
            let row = OverheadRow {
                mode: mode.into(),
                record_bytes: size,
                batch_size: bs,
                records: n,
                t,
                mock_cpu_s: mock_cpu.as_secs_f64(),
                peak_rss_mb: mb(m.max_rss),
                api_calls,
            };
            eprintln!(
                "(a) {mode} {size} B, {bs}: {n} records in {:.2} s = {:.0}/s, {:.2} µs CPU/record",
                row.t.wall_s, row.t.records_per_s, row.t.cpu_us_per_record
            );
            cleanup(&dir)?;
            if best.as_ref().is_none_or(|b| row.t.wall_s < b.t.wall_s) {
                best = Some(row);
            }
        }
        cx.report.overhead.extend(best);
    }
    Ok(())
}

/// One (a) run under `perf record`; the top of `perf report`.
pub(crate) fn profile(cx: &mut Ctx<'_>) -> anyhow::Result<Option<String>> {
    if Command::new("perf").arg("--version").output().is_err() {
        eprintln!("perf is not installed: no profile (apt-get install linux-perf)");
        return Ok(None);
    }
    let (size, bs, n) = if cx.o.smoke {
        (200, 100, 600)
    } else {
        (200, 1000, 1_000_000)
    };
    let input = gen::input(&cx.inputs, n, size)?;
    let name = format!("profile-{size}b-bs{bs}");
    let mock = cx.mock(&["--instant"], &name)?;
    let dir = cx.scratch(&name)?;
    let toml = config::file_pipeline(
        "bench",
        &input,
        &dir,
        &mock.base,
        true,
        &config::throughput_keys(bs),
    );
    let config = cx.write_config(&dir, &toml)?;
    let data = dir.join("perf.data");
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-F", "999", "-o"])
        .arg(&data)
        .arg("--")
        .arg(&cx.o.bin)
        .args(["run", "--config"])
        .arg(&config)
        .env("MLPREDICT_LOG", "warn");
    cx.note_command(format!(
        "perf record -F 999 -o perf.data -- {} run --config {}   # profile of (a) {size} B, batch {bs}",
        cx.o.bin.display(),
        config.display()
    ));
    let m = Running::start(cmd, &cx.logs, &name)?.wait()?;
    mock.stop();
    if m.exit_code != 0 {
        eprintln!("perf record failed ({}): {}", m.exit_code, m.stderr_tail);
        return Ok(None);
    }
    let mut out = String::new();
    for (sort, limit) in [("dso", "1"), ("dso,sym", "0.7")] {
        let r = Command::new("perf")
            .args(["report", "--no-children", "--stdio", "--sort", sort])
            .args(["--percent-limit", limit, "-i"])
            .arg(&data)
            .output()?;
        let text = String::from_utf8_lossy(&r.stdout);
        out.push_str(&format!(
            "# perf report --sort {sort} (self time, ≥ {limit} %)\n"
        ));
        for line in text.lines() {
            let t = line.trim_start();
            if t.starts_with(|c: char| c.is_ascii_digit()) {
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out.push('\n');
    }
    cleanup(&dir)?;
    Ok(Some(out))
}

//! (b) Peak RSS with many records in flight: batches that stay in progress
//! at the mock, the pipeline stopped by SIGTERM once all are created.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::config::{self, int};
use crate::ctx::{cleanup, Ctx};
use crate::measure::mb;
use crate::{gen, procs, MemoryRow};

pub(crate) fn memory(cx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let (sizes, bs): (&[u64], u64) = if cx.o.smoke {
        (&[2_000, 10_000], 500)
    } else {
        (&[100_000, 1_000_000, 5_000_000], 10_000)
    };
    for &n in sizes {
        let input = gen::input(&cx.inputs, n, 100)?;
        let name = format!("b-{n}");
        let mock = cx.mock(
            &[
                "--validating",
                "100ms",
                "--in-progress",
                "2h",
                "--finalizing",
                "100ms",
            ],
            &name,
        )?;
        let dir = cx.scratch(&name)?;
        let expected = n.div_ceil(bs);
        let toml = config::file_pipeline(
            "bench",
            &input,
            &dir,
            &mock.base,
            true,
            &[
                ("ml.batch.size", int(bs)),
                ("ml.batch.max.inflight", int(expected + 8)),
                ("ml.batch.poll.interval", "30m".into()),
                ("ml.batch.poll.max-interval", "1h".into()),
                ("ml.batch.max.wait", "1s".into()),
            ],
        );
        let config = cx.write_config(&dir, &toml)?;
        cx.note_command(format!(
            "{} run --config {}   # (b): {n} records, ml.batch.size = {bs}, max.inflight = {}, stopped by SIGTERM",
            cx.o.bin.display(),
            config.display(),
            expected + 8
        ));
        let run = cx.start_run(&config, &name)?;
        let pid = run.pid();
        let t0 = Instant::now();
        let deadline = Duration::from_secs(if cx.o.smoke { 60 } else { 600 });
        let mut created = 0;
        let mut reached = false;
        let mut rss_at_plateau = 0;
        while t0.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            created = mock.stats()?["batches_created"].as_u64().unwrap_or(0);
            if created >= expected {
                // Let the last create's answer be processed.
                std::thread::sleep(Duration::from_millis(500));
                rss_at_plateau = procs::proc_status_bytes(pid, "VmRSS").unwrap_or(0);
                reached = true;
                break;
            }
        }
        let to_plateau = t0.elapsed();
        run.signal(libc::SIGTERM);
        let m = run.wait()?;
        let mock_rss = mock.rss();
        mock.stop();
        // 143: interrupted with its state committed (128 + SIGTERM), the
        // documented exit of a stopped run.
        if m.exit_code != 143 {
            bail!(
                "{name}: exit {} after SIGTERM (want 143):\n{}",
                m.exit_code,
                m.stderr_tail
            );
        }
        let row = MemoryRow {
            records: n,
            batch_size: bs,
            batches_in_flight: created,
            records_in_flight: (created * bs).min(n),
            reached_plateau: reached,
            seconds_to_plateau: to_plateau.as_secs_f64(),
            rss_at_plateau_mb: mb(rss_at_plateau),
            peak_rss_mb: mb(m.max_rss),
            pipeline_cpu_s: m.cpu().as_secs_f64(),
            mock_peak_rss_mb: mb(mock_rss),
        };
        eprintln!(
            "(b) {n} records: {} in flight, peak RSS {:.1} MB",
            row.records_in_flight, row.peak_rss_mb
        );
        cx.report.memory.push(row);
        cleanup(&dir)?;
    }
    Ok(())
}

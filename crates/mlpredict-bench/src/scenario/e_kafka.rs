//! (e) Kafka mode end to end: transactions, 1 and 2 instances of one
//! consumer group against the project's broker, every record counted.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::config;
use crate::ctx::{cleanup, Ctx};
use crate::measure::{calls_by_route, mb};
use crate::procs::{self, Measured, Running};
use crate::{kafka, KafkaRow, Throughput};
use anyhow::bail;

/// Input partitions of (e).
pub const KAFKA_PARTITIONS: i32 = 4;

pub(crate) fn kafka_e2e(cx: &mut Ctx<'_>, bootstrap: &str) -> anyhow::Result<()> {
    // (instances, batch size, records)
    let cells: &[(usize, u64, u64)] = if cx.o.smoke {
        &[(1, 100, 1_000), (2, 100, 1_000)]
    } else {
        &[
            (1, 1000, 500_000),
            (2, 1000, 500_000),
            (1, 10_000, 500_000),
            (2, 10_000, 500_000),
        ]
    };
    let size = 200;
    let partitions = KAFKA_PARTITIONS;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    for &(instances, bs, n) in cells {
        let name = format!("e-bs{bs}-x{instances}");
        // Fresh topics and group per run: nothing left over from an earlier one.
        let tag = format!("bench-{name}-{nonce}");
        let (input, output) = (format!("{tag}-in"), format!("{tag}-out"));
        kafka::create_topic(bootstrap, &input, partitions)?;
        let t = Instant::now();
        kafka::produce(bootstrap, &input, partitions, n, size)?;
        let produce_s = t.elapsed().as_secs_f64();
        let mock = cx.mock(&["--instant"], &name)?;
        let keys = config::throughput_keys(bs);
        let mut configs = Vec::new();
        for i in 0..instances {
            let dir = cx.scratch(&format!("{name}-{i}"))?;
            let toml =
                config::kafka_pipeline(&tag, bootstrap, (&input, &output), &dir, &mock.base, &keys);
            let config = cx.write_config(&dir, &toml)?;
            cx.note_command(format!(
                "{} run --until-idle --config {}   # (e) instance {} of {instances}, ml.batch.size = {bs}, {partitions} partitions",
                cx.o.bin.display(),
                config.display(),
                i + 1
            ));
            configs.push((dir, config));
        }
        let broker =
            cx.o.kafka_broker_pid_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|p| p.trim().parse().ok())
                .filter(|&pid| procs::alive(pid));
        let broker_cpu_at_start = broker.map(procs::proc_cpu);
        let t0 = Instant::now();
        let mut running = Vec::new();
        for (i, (_, config)) in configs.iter().enumerate() {
            let mut cmd = Command::new(&cx.o.bin);
            cmd.args(["run", "--until-idle", "--config"]).arg(config);
            cmd.env("MLPREDICT_LOG", "warn");
            running.push(Some(Running::start(cmd, &cx.logs, &format!("{name}-{i}"))?));
        }
        let deadline = Duration::from_secs(if cx.o.smoke { 180 } else { 900 });
        let mut measured: Vec<Measured> = Vec::new();
        while measured.len() < instances {
            for slot in running.iter_mut() {
                let Some(r) = slot else { continue };
                if let Some(m) = r.try_wait()? {
                    *slot = None;
                    measured.push(m);
                }
            }
            if t0.elapsed() > deadline {
                let mut tails = String::new();
                for r in running.iter().flatten() {
                    tails.push_str(&format!("--- pid {}:\n{}\n", r.pid(), r.stderr_tail()));
                    r.signal(libc::SIGKILL);
                }
                for r in running.into_iter().flatten() {
                    let _ = r.wait();
                }
                mock.stop();
                bail!("{name}: instances still running after {deadline:?}:\n{tails}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let wall = t0.elapsed();
        let broker_gone = broker.is_some_and(|pid| !procs::alive(pid));
        if broker_gone {
            eprintln!(
                "!! (e) {name}: the broker process is gone: it was restarted during the run, the figures are disturbed"
            );
        }
        let broker_cpu = broker
            .zip(broker_cpu_at_start)
            .filter(|_| !broker_gone)
            .map(|(pid, at)| procs::proc_cpu(pid).saturating_sub(at).as_secs_f64());
        let stats = mock.stats()?;
        let mock_cpu = mock.cpu();
        mock.stop();
        for m in &measured {
            if m.exit_code != 0 {
                bail!(
                    "{name}: an instance exited with {}:\n{}",
                    m.exit_code,
                    m.stderr_tail
                );
            }
        }
        let t = Instant::now();
        let out = kafka::count_output(bootstrap, &output, n, true)?;
        let all = kafka::count_output(bootstrap, &output, n, false)?;
        let dlq = kafka::count_output(bootstrap, &format!("{output}-dlq"), 0, true)?;
        let verify_s = t.elapsed().as_secs_f64();
        eprintln!(
            "(e) {instances} instance(s), batch {bs}: output holds {} records, {} distinct custom_ids, {} distinct ids, {} ok, {} dead letters (read_committed)",
            out.messages, out.distinct_custom_ids, out.distinct_ids, out.ok, dlq.messages
        );
        if out.messages != n
            || out.distinct_custom_ids != n
            || out.distinct_ids != n
            || out.ok != n
            || dlq.messages != 0
        {
            bail!(
                "{name}: the output topic {output} does not hold every input record exactly once: \
                 {} records, {} distinct custom_ids, {} distinct ids, {} ok, {} dead letters for {n} input records \
                 (logs in {})",
                out.messages,
                out.distinct_custom_ids,
                out.distinct_ids,
                out.ok,
                dlq.messages,
                cx.logs.display()
            );
        }
        let user = measured.iter().map(|m| m.user).sum();
        let sys = measured.iter().map(|m| m.sys).sum();
        let row = KafkaRow {
            instances,
            partitions,
            record_bytes: size,
            batch_size: bs,
            records: n,
            t: Throughput::new(n, wall, user, sys),
            peak_rss_mb: mb(measured.iter().map(|m| m.max_rss).max().unwrap_or(0)),
            mock_cpu_s: mock_cpu.as_secs_f64(),
            broker_cpu_s: broker_cpu,
            broker_gone,
            api_calls: calls_by_route(&stats).values().sum(),
            batches_created: stats["batches_created"].as_u64().unwrap_or(0),
            output_records: out.messages,
            distinct_custom_ids: out.distinct_custom_ids,
            distinct_ids: out.distinct_ids,
            ok: out.ok,
            dlq_records: dlq.messages,
            output_markers: all.control_records,
            output_aborted: all.messages.saturating_sub(out.messages),
            output_mb: mb(out.bytes),
            produce_s,
            verify_s,
        };
        eprintln!(
            "(e) {instances} instance(s), batch {bs}: {n} records in {:.2} s = {:.0}/s, {:.2} µs CPU/record",
            row.t.wall_s, row.t.records_per_s, row.t.cpu_us_per_record
        );
        cx.report.kafka.push(row);
        let state = format!("mlpredict-{tag}-state");
        kafka::delete_topics(
            bootstrap,
            &[&input, &output, &format!("{output}-dlq"), &state],
        );
        for (dir, _) in &configs {
            cleanup(dir)?;
        }
    }
    Ok(())
}

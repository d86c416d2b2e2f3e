//! Operations of the real binary: the Prometheus endpoint (`metrics.port`)
//! scraped while a file pipeline runs, and `run --cancel-inflight` on
//! SIGTERM (batches cancelled at the provider, their records retried by the
//! next run, every record emitted once).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mock_server::MockServer;

/// A run in the background with `args`, stdout and stderr piped.
fn spawn(config: &std::path::Path, args: &[&str]) -> Child {
    run_cmd(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mlpredict")
}

/// Prometheus text format: `name{labels} value` per sample, keyed by
/// `name{labels}` as written (labels sorted by the exporter).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// The value of the histogram bucket `le` of `name`.
fn bucket(m: &BTreeMap<String, f64>, name: &str, le: &str) -> f64 {
    get(m, &format!("{name}_bucket{{le=\"{le}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_serves_the_batch_metrics_of_the_run() {
    // One batch in flight at a time, each 1.2 s at the mock: the counters
    // stay put for a second between emissions, long enough to scrape them
    // and compare with the mock's own counts.
    let in_progress = Duration::from_millis(1200);
    let server = MockServer::start(batch_mock(in_progress.as_millis() as u64))
        .await
        .unwrap();
    let (dir, texts, _) = input_dir(200, 0);
    let port = free_port();
    let config = config(
        dir.path(),
        &server.base_url(),
        &format!("max.inflight = 1\n\n[metrics]\nport = {port}\n"),
    );
    let addr = format!("127.0.0.1:{port}");
    let stats_at_scrape = {
        let (config, addr) = (config.clone(), addr.clone());
        let server_stats = {
            let s = server.base_url();
            move || {
                let body = http_get(s.trim_start_matches("http://"), "/mock/stats").unwrap();
                serde_json::from_str::<serde_json::Value>(&body).unwrap()
            }
        };
        blocking(move || {
            let child = spawn(&config, &[]);
            let deadline = Instant::now() + Duration::from_secs(60);
            // Scrape until two batches were emitted and the third is at the
            // mock (submitted = completed + 1), while the run goes on.
            let mut served = false;
            let mut first_scrape = None;
            let (m, stats) = loop {
                assert!(
                    Instant::now() < deadline,
                    "no scrape with 2 batches completed and 1 in flight (served: {served})"
                );
                std::thread::sleep(Duration::from_millis(40));
                let Ok(body) = http_get(&addr, "/metrics") else {
                    continue;
                };
                served = true;
                let m = samples(&body);
                first_scrape.get_or_insert_with(|| m.clone());
                let completed = get(&m, "batch_jobs_completed_total");
                let submitted = get(&m, "batch_jobs_submitted_total");
                if completed >= 2.0 && submitted == completed + 1.0 {
                    // Between two emissions: the mock's count is the same.
                    break (m, server_stats());
                }
            };
            let out = wait_output(child, Duration::from_secs(60), "the scraped run");
            assert!(out.status.success(), "{}", stderr(&out));
            (m, stats, out, first_scrape.unwrap())
        })
        .await
    };
    let (m, stats, out, first) = stats_at_scrape;
    // Every counter is there from the first scrape on, failures at 0.
    for key in [
        "batch_jobs_submitted_total",
        "batch_jobs_completed_total",
        "batch_jobs_failed_total",
        "batch_jobs_adopted_total",
        "records_in_total",
        "records_out_total{status=\"ok\"}",
        "records_out_total{status=\"error\"}",
        "records_dead_lettered_total",
        "tokens_total",
        "batches_in_flight",
        "api_calls_total{call=\"create\"}",
        "api_calls_total{call=\"cancel\"}",
        "api_errors_total{call=\"create\",class=\"transient\"}",
        "api_errors_total{call=\"poll\",class=\"ambiguous\"}",
    ] {
        assert!(first.contains_key(key), "{key} missing: {first:?}");
    }
    for key in [
        "batch_jobs_failed_total",
        "records_dead_lettered_total",
        "api_errors_total{call=\"create\",class=\"transient\"}",
    ] {
        assert_eq!(m[key], 0.0, "{key}: {m:?}");
    }
    // Buckets: records per batch up to the providers' 50,000, latency from
    // a second to the 24 h window.
    for le in ["1", "10", "100", "1000", "10000", "50000", "+Inf"] {
        let key = format!("batch_records_per_job_bucket{{le=\"{le}\"}}");
        assert!(m.contains_key(&key), "{key} missing: {m:?}");
    }
    for le in ["1000", "60000", "3600000", "86400000", "+Inf"] {
        let key = format!("batch_job_latency_ms_bucket{{le=\"{le}\"}}");
        assert!(m.contains_key(&key), "{key} missing: {m:?}");
    }
    let completed = get(&m, "batch_jobs_completed_total");
    let submitted = get(&m, "batch_jobs_submitted_total");
    // The scrape matches the run at that moment: batches created at the
    // mock, one in flight, 50 records in each emitted batch.
    assert_eq!(
        submitted,
        stats["batches_created"].as_f64().unwrap(),
        "{m:?}\n{stats}"
    );
    assert_eq!(get(&m, "batches_in_flight"), 1.0, "{m:?}");
    assert_eq!(get(&m, "batch_jobs_failed_total"), 0.0, "{m:?}");
    assert_eq!(get(&m, "batch_records_per_job_count"), completed, "{m:?}");
    assert_eq!(
        get(&m, "batch_records_per_job_sum"),
        50.0 * completed,
        "{m:?}"
    );
    assert_eq!(bucket(&m, "batch_records_per_job", "10"), 0.0, "{m:?}");
    assert_eq!(
        bucket(&m, "batch_records_per_job", "100"),
        completed,
        "{m:?}"
    );
    // Latency from create to emission: at least the mock's in_progress time,
    // well under 10 s on this quiet mock.
    assert_eq!(get(&m, "batch_job_latency_ms_count"), completed, "{m:?}");
    let latency_sum = get(&m, "batch_job_latency_ms_sum");
    assert!(
        latency_sum >= completed * in_progress.as_millis() as f64,
        "latency sum {latency_sum} ms for {completed} batches of >= {in_progress:?}"
    );
    assert_eq!(bucket(&m, "batch_job_latency_ms", "1000"), 0.0, "{m:?}");
    assert_eq!(
        bucket(&m, "batch_job_latency_ms", "15000"),
        completed,
        "{m:?}"
    );
    assert_eq!(
        bucket(&m, "batch_job_latency_ms", "+Inf"),
        completed,
        "{m:?}"
    );
    assert_eq!(
        get(&m, "records_out_total{status=\"ok\"}"),
        50.0 * completed,
        "{m:?}"
    );
    assert!(get(&m, "records_in_total") >= 50.0 * submitted, "{m:?}");
    assert_eq!(
        get(&m, "api_calls_total{call=\"create\"}"),
        submitted,
        "{m:?}"
    );
    // The run itself: 4 batches, every record once.
    let (ok, err) = check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    assert_eq!((ok, err), (200, 0));
    let stats = server.stats();
    assert_eq!(stats.batches_created, 4, "{stats:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("batches: 4 submitted, 4 emitted"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_inflight_on_sigterm_cancels_at_the_provider_and_a_restart_retries() {
    // Batches take 4 s at the mock: all 8 are in flight when SIGTERM comes.
    let server = MockServer::start(batch_mock(4000)).await.unwrap();
    let base = server.base_url();
    let (dir, texts, _) = input_dir(400, 0);
    let config = config(dir.path(), &base, "max.inflight = 8\n");
    let c = config.clone();
    let stats = move || {
        let body = http_get(base.trim_start_matches("http://"), "/mock/stats").unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let stats2 = stats.clone();
    let (first, second) = blocking(move || {
        let child = spawn(&c, &["--cancel-inflight"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while stats()["batches_created"].as_u64().unwrap() < 8 {
            assert!(Instant::now() < deadline, "8 batches never created");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the last create's answer reach the pipeline's state.
        std::thread::sleep(Duration::from_millis(300));
        let stopped = Instant::now();
        sigterm(child.id());
        let first = wait_output(child, Duration::from_secs(20), "the SIGTERMed run");
        let took = stopped.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "slow shutdown with --cancel-inflight: {took:?}"
        );
        let after_stop = stats();
        let second = wait_output(spawn(&c, &[]), Duration::from_secs(60), "the restart");
        (first, (after_stop, second, stats2()))
    })
    .await;
    let err1 = stderr(&first);
    assert_eq!(
        first.status.code(),
        Some(EXIT_SIGTERM),
        "SIGTERM exits 143: {err1}"
    );
    assert!(err1.contains("resume"), "{err1}");
    assert_eq!(
        err1.matches("cancel requested").count(),
        8,
        "one cancel per batch in flight: {err1}"
    );
    let (after_stop, second, _) = second;
    let calls = &after_stop["calls_by_route"];
    assert_eq!(
        calls["POST /v1/batches/{id}/cancel"].as_u64(),
        Some(8),
        "{after_stop}"
    );
    assert_eq!(after_stop["batches_created"].as_u64(), Some(8));
    // Every batch of the first run is cancelling or cancelled at the mock.
    let list = http_get(
        server.base_url().trim_start_matches("http://"),
        "/v1/batches?limit=100",
    )
    .unwrap();
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let first_run: Vec<&serde_json::Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["metadata"]["batch_number"]
                .as_str()
                .is_some_and(|n| !n.contains("-r"))
        })
        .collect();
    assert_eq!(first_run.len(), 8, "{list}");
    for b in &first_run {
        assert_eq!(b["status"], "cancelled", "{b}");
        assert!(b["cancelling_at"].is_i64(), "{b}");
    }
    // The restart emits every record once: what finished before the cancel
    // from the cancelled batches, the rest from retry batches.
    assert!(second.status.success(), "restart: {}", stderr(&second));
    let out = lines(&dir.path().join("output.jsonl"));
    let (ok, err) = check_output(&out, &texts);
    assert_eq!((ok, err), (400, 0));
    let retried: Vec<&serde_json::Value> = out
        .iter()
        .filter(|r| r["ml_predict"]["retries"].as_u64() != Some(0))
        .collect();
    assert!(
        !retried.is_empty(),
        "no record was retried: the cancel had no effect"
    );
    for r in &retried {
        let m = &r["ml_predict"];
        assert_eq!(m["retries"].as_u64(), Some(1), "{r}");
        assert!(m["batch_number"].as_str().unwrap().ends_with("-r1"), "{r}");
    }
    let stats = server.stats();
    assert_eq!(stats.requests_answered, 400, "{stats:?}");
    assert_eq!(stats.duplicate_answers, 0, "{stats:?}");
    assert!(stats.duplicate_creates.is_empty(), "{stats:?}");
    assert!(stats.batches_created > 8, "no retry batch: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_130_and_a_redirected_log_has_no_colour() {
    let server = MockServer::start(batch_mock(3000)).await.unwrap();
    let (dir, _, _) = input_dir(200, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let out = blocking(move || {
        let child = spawn(&config, &[]);
        std::thread::sleep(Duration::from_millis(800));
        sigint(child.id());
        wait_output(child, Duration::from_secs(20), "the SIGINTed run")
    })
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_SIGINT), "{err}");
    assert!(err.contains("resume"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in a redirected log: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_object_per_line() {
    let server = MockServer::start(batch_mock(50)).await.unwrap();
    let (dir, _, _) = input_dir(60, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let out = blocking(move || {
        // A quiet run logs nothing at info.
        run_cmd(&config)
            .args(["--log-format", "json"])
            .env("MLPREDICT_LOG", "debug")
            .output()
            .unwrap()
    })
    .await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let mut n = 0;
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        n += 1;
    }
    assert!(n > 0, "no log lines");
}

#[test]
fn exit_codes_and_config_errors_of_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = run(&missing, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    // An error in a -D override is blamed on the override, not the file.
    let config = config(dir.path(), "http://127.0.0.1:9", "");
    let out = run(&config, &["ml.batch.sizee=5"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: in -D ml.batch.sizee: unknown key `ml.batch.sizee`"),
        "{err}"
    );
    // A bad command line is clap's 2.
    let out = std::process::Command::new(bin())
        .args(["run", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_a_file_pipelines_batches_without_the_api_key() {
    let server = MockServer::start(batch_mock(50)).await.unwrap();
    let (dir, _, _) = input_dir(120, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let key = key_from_env(&config);
    let c = config.clone();
    let out = blocking(move || run_cmd(&c).env(KEY_VAR, key).output().unwrap()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = status_without_key(&config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{text}", stderr(&out));
    // ml.batch.size = 50: 120 records in 3 batches, all emitted.
    assert!(text.contains("3 batches, 0 not yet emitted"), "{text}");
    let rows = status_rows(&text);
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows.iter()
            .all(|(number, phase, _)| number.starts_with("reviews-0-") && phase == "emitted"),
        "{text}"
    );
    assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), 120, "{text}");
    // A run still needs the key.
    let out = run_cmd(&config).env_remove(KEY_VAR).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains(KEY_VAR), "{}", stderr(&out));
}

/// An endpoint nobody answers, in batch and in synchronous mode: the run
/// keeps retrying, logs one warning instead of one per failed call, and
/// `status` (another process) says since when the provider is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_since_when_an_unreachable_provider_is_down() {
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (dir, _, _) = input_dir(40, 0);
    for (mode, config) in [
        ("batch", config(dir.path(), &nobody, "")),
        ("sync", sync_config(dir.path(), &nobody, "")),
    ] {
        let mut child = spawn(&config, &[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            let out = status_without_key(&config);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("provider_unavailable_since") {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "{mode}: status never showed the outage:\n{text}{}",
                stderr(&out)
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        // Let it fail for a while: failures keep coming, warnings do not.
        std::thread::sleep(Duration::from_secs(3));
        assert!(text.contains("provider: down"), "{mode}: {text}");
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        let warnings = log.lines().filter(|l| l.contains("WARN")).count();
        assert!(
            (1..=2).contains(&warnings),
            "{mode}: {warnings} warnings in 3 s of outage:\n{log}"
        );
        assert!(log.contains("provider unavailable"), "{mode}: {log}");
    }
}

//! Kafka mode against a real broker (KRaft, started by scripts/kafka):
//! exactly-once with transactions, instances killed, rebalances, broker
//! restarts, dead letters; in batch mode and in synchronous mode.

mod common;
mod kafka_common;

use std::time::Duration;

use common::{
    assert_no_double_pay, batch_mock, blocking, free_port, key_from_env, run_cmd, serve_status,
    sigterm, status_rows, status_without_key, stderr, wait_output, wait_status, KEY_VAR,
};
use kafka_common::*;
use mock_server::MockConfig;

fn mock_cfg(faults: bool) -> MockConfig {
    let mut cfg = batch_mock(100);
    cfg.retry_after = Duration::from_millis(20);
    if faults {
        let f = &mut cfg.faults;
        f.rate_limit_fraction = 0.05;
        f.lost_response_fraction = 0.2;
        f.token_limit_fraction = 0.1;
        f.expire_fraction = 0.1;
        f.request_4xx_fraction = 0.02;
        f.request_5xx_fraction = 0.05;
    }
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_killed_stay_exactly_once() {
    let _serial = serial();
    let n = 10_000;
    let p = pipeline(
        mock_cfg(true),
        records(n),
        "max.inflight = 8\nmax.retries = 5\n",
    )
    .await;
    let c = p.config.clone();
    blocking(move || {
        let t = std::time::Instant::now();
        let a = spawn(&c, true);
        let mut b = spawn(&c, true);
        std::thread::sleep(Duration::from_millis(4000));
        b.kill(); // SIGKILL mid-run
        eprintln!("{:?}: killed b", t.elapsed());
        std::thread::sleep(Duration::from_millis(1500));
        let b2 = spawn(&c, true);
        wait_ok(a, "instance a");
        eprintln!("{:?}: a done", t.elapsed());
        wait_ok(b2, "restarted instance b");
        eprintln!("{:?}: b2 done", t.elapsed());
    })
    .await;
    let (ok, err) = check(&p.bootstrap, &p.output, n);
    assert_eq!(ok + err, n);
    assert!(err < n / 10, "{err} errors");
    assert_no_double_pay(&p.server);
    // Issue 14: the killed instance's directory is its slot, which its
    // restart took again and emptied; nothing is left behind.
    let dirs = instance_dirs(&p.config);
    assert_eq!(
        dirs.keys().collect::<Vec<_>>(),
        ["instance-0", "instance-1"],
        "{dirs:?}"
    );
    assert!(dirs.values().all(|f| f == &[".lock"]), "{dirs:?}");
}

/// Issue 13: both instances of a group killed, the second during the
/// rejoin the first one's restart started, both restarted with
/// `--until-idle`: every record comes out once, and neither exits before
/// the group's input is done (when the first exits, all of it is out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_killed_during_a_rebalance_exits_only_when_its_input_is_done() {
    let _serial = serial();
    let mut cfg = mock_cfg(false);
    cfg.in_progress = Duration::from_millis(1000);
    let n = 3000;
    let p = pipeline(cfg, records(n), "max.inflight = 8\n").await;
    let (c, bootstrap, output) = (p.config.clone(), p.bootstrap.clone(), p.output.clone());
    blocking(move || {
        let t = std::time::Instant::now();
        let mut a = spawn(&c, true);
        let mut b = spawn(&c, true);
        std::thread::sleep(Duration::from_millis(3000));
        b.kill();
        let b2 = spawn(&c, true); // its join starts a rebalance
        std::thread::sleep(Duration::from_millis(800));
        a.kill();
        eprintln!("{:?}: both killed", t.elapsed());
        let a2 = spawn(&c, true);
        let other = wait_first_ok(a2, b2, "the restarted instances");
        eprintln!("{:?}: the first restarted instance exited", t.elapsed());
        // Exit 0 means done: the whole input is out already.
        let (ok, err) = check(&bootstrap, &output, n);
        assert_eq!((ok, err), (n, 0));
        wait_ok(other, "the other restarted instance");
        eprintln!("{:?}: both exited", t.elapsed());
    })
    .await;
    let (ok, err) = check(&p.bootstrap, &p.output, n);
    assert_eq!((ok, err), (n, 0));
    assert_no_double_pay(&p.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_go_to_the_dlq_topic() {
    let _serial = serial();
    let mut recs = records(300);
    recs.push(("bad1".into(), "not json".into()));
    recs.push(("bad2".into(), r#"{"id": 1, "text": 5}"#.into()));
    let p = pipeline(mock_cfg(false), recs, "").await;
    let c = p.config.clone();
    let out = blocking(move || run_cmd(&c).arg("--until-idle").output().unwrap()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The summary names where records went (issue 14: it printed nothing).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dlq_topic = format!("{}-dlq", p.output);
    assert!(
        stdout.contains(&format!("output: {}\n", p.output)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("dead letters: {dlq_topic}")),
        "{stdout}"
    );
    assert!(stdout.contains("302 records read"), "{stdout}");
    check(&p.bootstrap, &p.output, 300);
    let dlq = read_all(&p.bootstrap, &dlq_topic, 3);
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    for (key, value) in &dlq {
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        assert!(key.as_deref().is_some_and(|k| k.starts_with("bad")));
        assert!(
            v["error"].is_string() && v["raw"].is_string() && v["offset"].is_u64(),
            "{v}"
        );
    }
    assert_no_double_pay(&p.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_with_batches_in_flight_resumes_them_without_resubmitting() {
    let _serial = serial();
    let mut cfg = mock_cfg(false);
    cfg.in_progress = Duration::from_millis(1500);
    let n = 3000;
    let p = pipeline(cfg, records(n), "max.inflight = 16\n").await;
    let c = p.config.clone();
    blocking(move || {
        let a = spawn(&c, true);
        std::thread::sleep(Duration::from_millis(2500));
        // A third instance joins while a's batches are in flight, takes some
        // lanes, then leaves (SIGTERM) while its own batches are in flight.
        let joiner = spawn(&c, false);
        std::thread::sleep(Duration::from_millis(6000));
        sigterm(joiner.id());
        wait_sigtermed(joiner, "the instance that joined and left");
        wait_ok(a, "instance a");
        // A bounded instance ends when ITS lanes are done: a may have ended
        // before the joiner left lanes behind. Whoever runs next resumes them.
        wait_ok(spawn(&c, true), "an instance that finishes what is left");
    })
    .await;
    let (ok, err) = check(&p.bootstrap, &p.output, n);
    assert_eq!((ok, err), (n, 0));
    assert_no_double_pay(&p.server);
    let stats = p.server.stats();
    // Lanes moved while their batches ran: resumed (polled or adopted), never
    // created again.
    assert_eq!(
        stats.batches_created as usize,
        stats.creates_by_batch_number.len(),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_run_is_survived() {
    let _serial = serial();
    let mut cfg = mock_cfg(true);
    cfg.in_progress = Duration::from_millis(300);
    let n = 3000;
    let p = pipeline(cfg, records(n), "max.retries = 5\n").await;
    let c = p.config.clone();
    blocking(move || {
        let a = spawn(&c, true);
        std::thread::sleep(Duration::from_millis(3000));
        broker_cmd(&["stop"]);
        std::thread::sleep(Duration::from_millis(3000));
        broker_cmd(&["start"]);
        wait_ok(a, "the instance that lived through a broker restart");
    })
    .await;
    let (ok, err) = check(&p.bootstrap, &p.output, n);
    assert_eq!(ok + err, n);
    assert_no_double_pay(&p.server);
}

fn sync_mock_cfg(seed: u64) -> MockConfig {
    let mut cfg = MockConfig::default();
    cfg.port = 0;
    cfg.seed = seed;
    cfg.sync_latency = Duration::from_millis(5);
    cfg.retry_after = Duration::from_millis(30);
    cfg.faults.server_error_fraction = 0.05;
    cfg.faults.rate_limit_fraction = 0.02;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_two_instances_one_killed_stay_exactly_once() {
    let _serial = serial();
    let n = 4000;
    let mut recs = records(n);
    recs.push(("bad1".into(), "not json".into()));
    recs.push(("bad2".into(), r#"{"id": 1, "text": 5}"#.into()));
    let p = sync_pipeline(
        sync_mock_cfg(4242),
        recs,
        "max-concurrent-operations = 8\noutput-mode = \"ALLOW_UNORDERED\"\nmax-retries = 8",
    )
    .await;
    let c = p.config.clone();
    blocking(move || {
        let a = spawn(&c, true);
        let mut b = spawn(&c, true);
        std::thread::sleep(Duration::from_millis(3500));
        b.kill(); // SIGKILL mid-run: its uncommitted answers are re-sent
        std::thread::sleep(Duration::from_millis(1000));
        let b2 = spawn(&c, true);
        wait_ok(a, "instance a");
        wait_ok(b2, "restarted instance b");
        // A bounded instance ends with ITS lanes: finish what is left.
        wait_ok(spawn(&c, true), "an instance that finishes what is left");
    })
    .await;
    let (ok, err) = check(&p.bootstrap, &p.output, n);
    assert_eq!((ok, err), (n, 0));
    let dlq = read_all(&p.bootstrap, &format!("{}-dlq", p.output), 3);
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let stats = p.server.stats();
    assert_eq!(
        stats.batches_created, 0,
        "synchronous mode creates no batch"
    );
    // Re-sent after the kill: what was in flight plus what was answered
    // after the last commit (200 ms), with slack for the rebalances.
    assert!(
        stats.duplicate_answers < 1500,
        "{} records were sent twice",
        stats.duplicate_answers
    );
    eprintln!(
        "sync kafka: {} answers for {n} records ({} re-sent)",
        stats.sync_answered, stats.duplicate_answers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_ordered_keeps_partition_order_across_sigterm() {
    let _serial = serial();
    let mut mcfg = sync_mock_cfg(7);
    mcfg.sync_latency = Duration::from_millis(20);
    // No faults: a request waiting in backoff at SIGTERM is dropped, and
    // the ORDERED answers queued behind it would be sent again.
    mcfg.faults.server_error_fraction = 0.0;
    mcfg.faults.rate_limit_fraction = 0.0;
    let n = 1500;
    let p = sync_pipeline(
        mcfg,
        records(n),
        "max-concurrent-operations = 16\noutput-mode = \"ORDERED\"\nmax-retries = 8",
    )
    .await;
    let c = p.config.clone();
    blocking(move || {
        let a = spawn(&c, false);
        std::thread::sleep(Duration::from_millis(3000));
        sigterm(a.id());
        wait_sigtermed(a, "an instance stopped by SIGTERM");
        wait_ok(spawn(&c, true), "the instance that resumes");
    })
    .await;
    let (ok, err) = check(&p.bootstrap, &p.output, n);
    assert_eq!((ok, err), (n, 0));
    // Output keeps the input key, so it lands in the matching partition:
    // each partition's ids must come in input order.
    for (p, ids) in ids_by_partition(&p.bootstrap, &p.output, 3) {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of input order: {ids:?}"
        );
    }
    // Requests in flight at the signal were finished and emitted.
    assert_eq!(
        p.server.stats().duplicate_answers,
        0,
        "SIGTERM lost nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_a_kafka_pipelines_batches_without_the_api_key() {
    let _serial = serial();
    let n = 300;
    let p = pipeline(mock_cfg(false), records(n), "").await;
    let key = key_from_env(&p.config);
    // Issue 13: a librdkafka key set alone, without our session timeout,
    // must suit every consumer we create (the state reader refused it).
    let toml = std::fs::read_to_string(&p.config).unwrap().replacen(
        "\n\n[sink]",
        "\n\"max.poll.interval.ms\" = \"20000\"\n\n[sink]",
        1,
    );
    std::fs::write(&p.config, toml).unwrap();
    let c = p.config.clone();
    blocking(move || wait_ok(spawn_env(&c, true, &[(KEY_VAR, key.as_str())]), "run")).await;
    check(&p.bootstrap, &p.output, n);
    let c = p.config.clone();
    let out = blocking(move || status_without_key(&c)).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{text}", stderr(&out));
    // Every partition's lane, consumed to its end: 300 offsets in all.
    let consumed: Vec<i64> = text
        .lines()
        .filter_map(|l| l.split_once(": consumed up to offset "))
        .map(|(_, o)| o.parse().unwrap())
        .collect();
    assert_eq!(consumed.len(), 3, "{text}");
    assert_eq!(consumed.iter().sum::<i64>(), n as i64, "{text}");
    // Every batch, emitted, holding every record once.
    let rows = status_rows(&text);
    assert!(rows.len() >= 6, "ml.batch.size = 50: {text}");
    assert!(
        rows.iter().all(|(_, phase, _)| phase == "emitted"),
        "{text}"
    );
    assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), n as u64, "{text}");
    assert!(
        text.contains(&format!("{} batches, 0 not yet emitted", rows.len())),
        "{text}"
    );
    // The status page reads the same state: /status.json of `status --serve`.
    let c = p.config.clone();
    let batches = rows.len();
    blocking(move || {
        let port = free_port();
        let child = serve_status(&c, port);
        let v = wait_status(
            &format!("127.0.0.1:{port}"),
            Duration::from_secs(60),
            |_| true,
        );
        sigterm(child.id());
        wait_output(child, Duration::from_secs(30), "status --serve");
        assert_eq!(v["source"], "kafka", "{v}");
        let lanes = v["lanes"].as_array().unwrap();
        assert_eq!(lanes.len(), 3, "{v}");
        assert!(lanes.iter().all(|l| l["unit"] == "offset"), "{v}");
        let offsets: u64 = lanes.iter().map(|l| l["watermark"].as_u64().unwrap()).sum();
        assert_eq!(offsets, n as u64, "{v}");
        let b = v["batches"].as_array().unwrap();
        assert_eq!(b.len(), batches, "{v}");
        assert!(b.iter().all(|b| b["phase"] == "emitted"), "{v}");
    })
    .await;
}

//! Kafka mode against a real broker (KRaft, started by scripts/kafka):
//! exactly-once with transactions, instances killed, rebalances, broker
//! restarts, dead letters; in batch mode and in synchronous mode.

mod common;
mod kafka_common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::bin;
use kafka_common::*;
use mock_server::{MockConfig, MockServer};

fn mock_cfg(faults: bool) -> MockConfig {
    let mut cfg = MockConfig::default();
    cfg.port = 0;
    cfg.validating = Duration::from_millis(20);
    cfg.in_progress = Duration::from_millis(100);
    cfg.finalizing = Duration::from_millis(20);
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

/// A test directory, kept for inspection when MLPREDICT_KEEP_TEST_DIR is set.
struct TestDir {
    path: std::path::PathBuf,
    _guard: Option<tempfile::TempDir>,
}

fn test_dir() -> TestDir {
    let t = tempfile::Builder::new()
        .prefix("mlpredict-kafka")
        .tempdir()
        .unwrap();
    if std::env::var("MLPREDICT_KEEP_TEST_DIR").is_ok() {
        TestDir {
            path: t.keep(),
            _guard: None,
        }
    } else {
        TestDir {
            path: t.path().to_owned(),
            _guard: Some(t),
        }
    }
}

fn records(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("k{i}"), serde_json::json!({"id": i, "text": format!("review {i}: fine phone, {} stars", i % 5)}).to_string()))
        .collect()
}

/// A running instance and its log file.
struct Instance {
    child: Child,
    log: std::path::PathBuf,
}

impl Instance {
    fn id(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn spawn(config: &std::path::Path, until_idle: bool) -> Instance {
    let mut cmd = Command::new(bin());
    let log = config.with_extension(format!("{:08x}.log", rand::random::<u32>()));
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if until_idle {
        cmd.arg("--until-idle");
    }
    cmd.env("MLPREDICT_LOG", "info");
    Instance {
        child: cmd.spawn().unwrap(),
        log,
    }
}

/// Wait for an instance to finish, at most a few minutes: a bounded run
/// that never ends is a failure, not a hung CI.
fn wait_ok(mut inst: Instance, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = inst.child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            inst.kill();
            panic!(
                "{what} did not finish within 240 s; its log ends with:\n{}",
                inst.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "{what} failed; its log ends with:\n{}",
        inst.log_tail()
    );
}

/// Every input id exactly once, ok with the mock's answer or an error.
fn check(bootstrap: &str, topic: &str, n: usize) -> (usize, usize) {
    let out = read_all(bootstrap, topic, 3);
    let mut seen = BTreeMap::new();
    let (mut ok, mut err) = (0, 0);
    for (key, value) in &out {
        let v: serde_json::Value =
            serde_json::from_str(value).unwrap_or_else(|e| panic!("bad output {value}: {e}"));
        let id = v["id"].as_u64().unwrap();
        assert_eq!(
            key.as_deref(),
            Some(format!("k{id}").as_str()),
            "output key = input key"
        );
        assert!(seen.insert(id, ()).is_none(), "record {id} emitted twice");
        match v["ml_predict"]["status"].as_str() {
            Some("ok") => {
                ok += 1;
                let text = v["text"].as_str().unwrap();
                assert_eq!(
                    v["prediction"].as_str(),
                    Some(mock_server::fake::chat_reply("gpt-4o-mini", text).as_str())
                );
            }
            _ => err += 1,
        }
    }
    let missing: Vec<_> = (0..n as u64)
        .filter(|i| !seen.contains_key(i))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "never emitted: {missing:?} ({} of {n} seen)",
        seen.len()
    );
    (ok, err)
}

fn no_double_pay(server: &MockServer) {
    let stats = server.stats();
    assert_eq!(
        stats.duplicate_answers, 0,
        "answered twice: {:?}",
        stats.duplicate_answer_keys
    );
    assert!(
        stats.duplicate_creates.is_empty(),
        "created twice: {:?}",
        stats.duplicate_creates
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_killed_stay_exactly_once() {
    let _serial = serial();
    let bootstrap = tokio::task::spawn_blocking(broker).await.unwrap();
    let server = MockServer::start(mock_cfg(true)).await.unwrap();
    let (input, output, group) = (unique("in"), unique("out"), unique("g"));
    create_topic(&bootstrap, &input, 3).await;
    let n = 10_000;
    let (b, i) = (bootstrap.clone(), input.clone());
    tokio::task::spawn_blocking(move || produce(&b, &i, &records(n)))
        .await
        .unwrap();
    let dir = test_dir();
    let config = kafka_config(
        &dir.path,
        &bootstrap,
        &server.base_url(),
        &input,
        &output,
        &group,
        "max.inflight = 8\nmax.retries = 5\n",
    );
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
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
    .await
    .unwrap();
    let (ok, err) = check(&bootstrap, &output, n);
    assert_eq!(ok + err, n);
    assert!(err < n / 10, "{err} errors");
    no_double_pay(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_go_to_the_dlq_topic() {
    let _serial = serial();
    let bootstrap = tokio::task::spawn_blocking(broker).await.unwrap();
    let server = MockServer::start(mock_cfg(false)).await.unwrap();
    let (input, output, group) = (unique("in"), unique("out"), unique("g"));
    create_topic(&bootstrap, &input, 3).await;
    let mut recs = records(300);
    recs.push(("bad1".into(), "not json".into()));
    recs.push(("bad2".into(), r#"{"id": 1, "text": 5}"#.into()));
    let (b, i) = (bootstrap.clone(), input.clone());
    tokio::task::spawn_blocking(move || produce(&b, &i, &recs))
        .await
        .unwrap();
    let dir = test_dir();
    let config = kafka_config(
        &dir.path,
        &bootstrap,
        &server.base_url(),
        &input,
        &output,
        &group,
        "",
    );
    tokio::task::spawn_blocking(move || wait_ok(spawn(&config, true), "run"))
        .await
        .unwrap();
    check(&bootstrap, &output, 300);
    let dlq = read_all(&bootstrap, &format!("{output}-dlq"), 3);
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    for (key, value) in &dlq {
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        assert!(key.as_deref().is_some_and(|k| k.starts_with("bad")));
        assert!(
            v["error"].is_string() && v["raw"].is_string() && v["offset"].is_u64(),
            "{v}"
        );
    }
    no_double_pay(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_with_batches_in_flight_resumes_them_without_resubmitting() {
    let _serial = serial();
    let bootstrap = tokio::task::spawn_blocking(broker).await.unwrap();
    let mut cfg = mock_cfg(false);
    cfg.in_progress = Duration::from_millis(1500);
    let server = MockServer::start(cfg).await.unwrap();
    let (input, output, group) = (unique("in"), unique("out"), unique("g"));
    create_topic(&bootstrap, &input, 3).await;
    let n = 3000;
    let (b, i) = (bootstrap.clone(), input.clone());
    tokio::task::spawn_blocking(move || produce(&b, &i, &records(n)))
        .await
        .unwrap();
    let dir = test_dir();
    let config = kafka_config(
        &dir.path,
        &bootstrap,
        &server.base_url(),
        &input,
        &output,
        &group,
        "max.inflight = 16\n",
    );
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        let a = spawn(&c, true);
        std::thread::sleep(Duration::from_millis(2500));
        // A third instance joins while a's batches are in flight, takes some
        // lanes, then leaves (SIGTERM) while its own batches are in flight.
        let joiner = spawn(&c, false);
        std::thread::sleep(Duration::from_millis(6000));
        unsafe { libc_kill(joiner.id() as i32, 15) };
        wait_ok(joiner, "the instance that joined and left");
        wait_ok(a, "instance a");
        // A bounded instance ends when ITS lanes are done: a may have ended
        // before the joiner left lanes behind. Whoever runs next resumes them.
        wait_ok(spawn(&c, true), "an instance that finishes what is left");
    })
    .await
    .unwrap();
    let (ok, err) = check(&bootstrap, &output, n);
    assert_eq!((ok, err), (n, 0));
    no_double_pay(&server);
    let stats = server.stats();
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
    let bootstrap = tokio::task::spawn_blocking(broker).await.unwrap();
    let mut cfg = mock_cfg(true);
    cfg.in_progress = Duration::from_millis(300);
    let server = MockServer::start(cfg).await.unwrap();
    let (input, output, group) = (unique("in"), unique("out"), unique("g"));
    create_topic(&bootstrap, &input, 3).await;
    let n = 3000;
    let (b, i) = (bootstrap.clone(), input.clone());
    tokio::task::spawn_blocking(move || produce(&b, &i, &records(n)))
        .await
        .unwrap();
    let dir = test_dir();
    let config = kafka_config(
        &dir.path,
        &bootstrap,
        &server.base_url(),
        &input,
        &output,
        &group,
        "max.retries = 5\n",
    );
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        let a = spawn(&c, true);
        std::thread::sleep(Duration::from_millis(3000));
        broker_cmd(&["stop"]);
        std::thread::sleep(Duration::from_millis(3000));
        broker_cmd(&["start"]);
        wait_ok(a, "the instance that lived through a broker restart");
    })
    .await
    .unwrap();
    let (ok, err) = check(&bootstrap, &output, n);
    assert_eq!(ok + err, n);
    no_double_pay(&server);
}

/// A Kafka pipeline in synchronous mode (batch mode off) over a fresh
/// 3-partition input topic holding `recs`.
struct SyncPipeline {
    bootstrap: String,
    server: MockServer,
    output: String,
    config: std::path::PathBuf,
    _dir: TestDir,
}

async fn sync_pipeline(
    mock: MockConfig,
    recs: Vec<(String, String)>,
    predict: &str,
) -> SyncPipeline {
    let bootstrap = tokio::task::spawn_blocking(broker).await.unwrap();
    let server = MockServer::start(mock).await.unwrap();
    let (input, output, group) = (unique("in"), unique("out"), unique("g"));
    create_topic(&bootstrap, &input, 3).await;
    let (b, i) = (bootstrap.clone(), input.clone());
    tokio::task::spawn_blocking(move || produce(&b, &i, &recs))
        .await
        .unwrap();
    let dir = test_dir();
    let path = kafka_config(
        &dir.path,
        &bootstrap,
        &server.base_url(),
        &input,
        &output,
        &group,
        "",
    );
    let toml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("enabled = true", "enabled = false");
    std::fs::write(&path, format!("{toml}\n[ml.predict]\n{predict}\n")).unwrap();
    SyncPipeline {
        bootstrap,
        server,
        output,
        config: path,
        _dir: dir,
    }
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
    let SyncPipeline {
        bootstrap,
        server,
        output,
        config,
        _dir,
    } = sync_pipeline(
        sync_mock_cfg(4242),
        recs,
        "max-concurrent-operations = 8\noutput-mode = \"ALLOW_UNORDERED\"\nmax-retries = 8",
    )
    .await;
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
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
    .await
    .unwrap();
    let (ok, err) = check(&bootstrap, &output, n);
    assert_eq!((ok, err), (n, 0));
    let dlq = read_all(&bootstrap, &format!("{output}-dlq"), 3);
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let stats = server.stats();
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
    let SyncPipeline {
        bootstrap,
        server,
        output,
        config,
        _dir,
    } = sync_pipeline(
        mcfg,
        records(n),
        "max-concurrent-operations = 16\noutput-mode = \"ORDERED\"\nmax-retries = 8",
    )
    .await;
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        let a = spawn(&c, false);
        std::thread::sleep(Duration::from_millis(3000));
        unsafe { libc_kill(a.id() as i32, 15) };
        wait_ok(a, "an instance stopped by SIGTERM");
        wait_ok(spawn(&c, true), "the instance that resumes");
    })
    .await
    .unwrap();
    let (ok, err) = check(&bootstrap, &output, n);
    assert_eq!((ok, err), (n, 0));
    // Output keeps the input key, so it lands in the matching partition:
    // each partition's ids must come in input order.
    for (p, ids) in ids_by_partition(&bootstrap, &output, 3) {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of input order: {ids:?}"
        );
    }
    // Requests in flight at the signal were finished and emitted.
    assert_eq!(server.stats().duplicate_answers, 0, "SIGTERM lost nothing");
}

/// Output ids per partition, in offset order.
fn ids_by_partition(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<u64>> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let ids = read_partition(bootstrap, topic, p)
            .iter()
            .map(|v| {
                serde_json::from_str::<serde_json::Value>(v).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        out.insert(p, ids);
    }
    out
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

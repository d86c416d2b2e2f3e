//! What a run may use at the provider: pacing under the organisation's
//! enqueued-token limit, and the budget. The real binary against the mock.

mod common;

use common::*;
use mock_server::{MockConfig, MockServer};

/// The mock's enqueued-token limit in these tests: about one batch of 50.
const LIMIT: u64 = 1_500;

async fn limited_mock() -> MockServer {
    let cfg = MockConfig {
        max_enqueued_tokens: Some(LIMIT),
        retry_after: std::time::Duration::from_millis(20),
        ..batch_mock(300)
    };
    MockServer::start(cfg).await.expect("mock server")
}

fn token_limit_failures(server: &MockServer) -> u64 {
    server
        .stats()
        .faults_injected
        .get("token_limit")
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_keeps_batches_under_the_enqueued_token_limit() {
    // Without pacing: batches in flight together pass the limit and fail
    // validation; they are retried until every record is out, once.
    let server = limited_mock().await;
    let (dir, texts, _) = input_dir(150, 0);
    let cfg = config(dir.path(), &server.base_url(), "");
    let out = blocking(move || run(&cfg, &[])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (ok, err) = check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    assert_eq!((ok, err), (150, 0));
    let unpaced = token_limit_failures(&server);
    assert!(unpaced > 0, "the limit was never hit: {:?}", server.stats());
    assert_eq!(server.stats().duplicate_answers, 0);

    // With it: not one failure, and a request larger than the limit goes
    // to the dead letters, the limit named.
    let server = limited_mock().await;
    let (dir, texts, _) = input_dir(150, 0);
    let huge = serde_json::json!({"id": 10_000, "text": "word ".repeat(3_000)});
    let input = dir.path().join("input.jsonl");
    let mut text = std::fs::read_to_string(&input).unwrap();
    text.push_str(&format!("{huge}\n"));
    std::fs::write(&input, text).unwrap();
    let cfg = config(dir.path(), &server.base_url(), "");
    let limit = format!("ml.batch.max.enqueued-tokens={LIMIT}");
    let out = blocking(move || run(&cfg, &[&limit])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (ok, err) = check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    assert_eq!((ok, err), (150, 0));
    assert_eq!(
        token_limit_failures(&server),
        0,
        "paced batches failed (unpaced: {unpaced}): {:?}",
        server.stats()
    );
    let dlq = lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let reason = dlq[0]["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("ml.batch.max.enqueued-tokens (1500)"),
        "{}",
        dlq[0]
    );
    let stats = server.stats();
    eprintln!(
        "token_limit_exceeded without pacing: {unpaced}; with pacing: 0 in {} batches",
        stats.batches_created
    );
    assert!(stats.batches_created >= 4, "cut smaller: {stats:?}");
    assert_eq!(stats.duplicate_answers, 0);
}

/// Runs with `-D` `defines` until the log says the budget is reached, then
/// stops it (SIGTERM); its whole log.
fn run_until_budget_reached(config: &std::path::Path, defines: &[&str]) -> String {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut cmd = run_cmd(config);
    for d in defines {
        cmd.arg("-D").arg(d);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mlpredict");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("budget reached") {
                let _ = tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let reached = rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok();
    // Nothing more is emitted while it waits.
    std::thread::sleep(std::time::Duration::from_millis(700));
    sigterm(child.id());
    let status = wait_within(
        &mut child,
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(20),
    );
    if status.is_none() {
        child.kill().unwrap();
    }
    let log = reader.join().unwrap();
    assert!(reached, "the budget was never reached:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_stops_submission_and_a_larger_one_resumes() {
    let server = MockServer::start(batch_mock(100))
        .await
        .expect("mock server");
    let (dir, texts, _) = input_dir(200, 0);
    let cfg = config(dir.path(), &server.base_url(), "");
    let output = dir.path().join("output.jsonl");
    // Batches of 10 are estimated at about $0.0031 each (1024 output
    // tokens per request at gpt-4o-mini's batch price) and cost far less:
    // $0.004 lets one run at a time and stops after a few.
    let small = [
        "ml.batch.size=10",
        "ml.batch.max.wait=50ms",
        "ml.budget.max-usd=0.004",
    ];
    let c = cfg.clone();
    let log = blocking(move || run_until_budget_reached(&c, &small)).await;
    let first = lines(&output).len();
    assert!(
        first > 0 && first < 200 && first % 10 == 0,
        "stopped mid-run: {first} records out\n{log}"
    );
    assert!(log.contains("ml.budget.max-usd"), "{log}");
    // `status` says why it waits.
    let mut status = std::process::Command::new(bin());
    status.arg("status").arg("--config").arg(&cfg);
    for d in small {
        status.arg("-D").arg(d);
    }
    let st = status.output().unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.status.success() && text.contains("budget (ml.budget.max-usd): budget_exhausted"),
        "{text}{}",
        stderr(&st)
    );
    // The spend is durable: the same budget emits nothing more.
    let c = cfg.clone();
    blocking(move || run_until_budget_reached(&c, &small)).await;
    assert_eq!(lines(&output).len(), first, "a restart reset the spend");
    // A larger budget finishes the run: every record once.
    let c = cfg.clone();
    let out = blocking(move || {
        run(
            &c,
            &[
                "ml.batch.size=10",
                "ml.batch.max.wait=50ms",
                "ml.budget.max-usd=5",
            ],
        )
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (ok, err) = check_output(&lines(&output), &texts);
    assert_eq!((ok, err), (200, 0));
    assert_eq!(server.stats().duplicate_answers, 0);
    eprintln!("budget $0.004 stopped the run after {first} of 200 records");
}

//! A Flink SQL job in batch mode, faults on, killed with SIGKILL at random
//! moments (the helpers of tests/crash.rs): its sink's rows stay exactly
//! once.

mod common;
mod sql_common;

use common::*;
use mock_server::MockServer;
use sql_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_job_killed_at_random_moments_stays_exactly_once() {
    let mut cfg = batch_mock(150);
    chaos_faults(&mut cfg);
    cfg.seed = 12;
    let server = MockServer::start(cfg).await.unwrap();
    let (dir, texts, _) = input_dir(4000, 0);
    let d = dir.path().to_path_buf();
    let base = server.base_url();
    let job = file_job(
        &d,
        &base,
        ", 'error-handling-strategy' = 'RETRY', 'retry-num' = '5', 'retry-fallback-strategy' = 'IGNORE'",
        &format!("{}, 'ml.batch.max.inflight', '8'", batch_map(&base, 50)),
    );
    let config = d.join("job.sql");
    std::fs::write(&config, job).unwrap();
    let seed = chaos_seed(20261202);
    eprintln!("chaos seed {seed} (CHAOS_SEED to replay)");
    let c = config.clone();
    let kills = blocking(move || {
        let kills = kill_9_at_random_moments(&c, seed, 20, (30, 400), "sql: ");
        finish_as("sql: ", &c);
        kills
    })
    .await;
    assert!(
        kills >= 12,
        "only {kills} kills landed before the run finished"
    );
    let rows = lines(&d.join("rated/part-0.jsonl"));
    let (ok, err) = check_file_job(&rows, &texts, &Shape::batch());
    assert_eq!(ok + err, 4000);
    assert_no_double_pay(&server);
}

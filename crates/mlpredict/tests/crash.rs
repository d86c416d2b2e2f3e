//! Exactly-once across crashes of the real binary: kill -9 at random
//! moments, crashes at chosen points, SIGTERM, and a source that changed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use mock_server::MockServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_stays_exactly_once() {
    let mut cfg = batch_mock(150);
    chaos_faults(&mut cfg);
    cfg.seed = 11;
    let server = MockServer::start(cfg).await.unwrap();
    let (dir, texts, _) = input_dir(5000, 0);
    let config = config(
        dir.path(),
        &server.base_url(),
        "max.inflight = 8\nmax.retries = 5\n",
    );
    let seed = chaos_seed(20261123);
    eprintln!("chaos seed {seed} (CHAOS_SEED to replay)");
    let c = config.clone();
    let kills = blocking(move || {
        let kills = kill_9_at_random_moments(&c, seed, 25, (30, 400), "");
        finish(&c);
        kills
    })
    .await;
    assert!(
        kills >= 20,
        "only {kills} kills landed before the run finished"
    );
    let (ok, err) = check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    assert_eq!(ok + err, 5000);
    assert_no_double_pay(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_create_and_recording_the_id_is_adopted() {
    let server = MockServer::start(batch_mock(100)).await.unwrap();
    let (dir, texts, _) = input_dir(100, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let c = config.clone();
    let out = blocking(move || {
        crash_at("", &c, "after-create");
        run(&c, &[])
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("adopting a batch created before a crash"),
        "{}",
        stderr(&out)
    );
    check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    let stats = server.stats();
    assert_eq!(
        stats.batches_created, 2,
        "a batch was paid for twice: {stats:?}"
    );
    assert_no_double_pay(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_appending_output_before_commit_re_emits_once() {
    let server = MockServer::start(batch_mock(50)).await.unwrap();
    let (dir, texts, _) = input_dir(120, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let c = config.clone();
    blocking(move || {
        for fp in ["after-cut", "before-emit-commit"] {
            let out = spawn(&c, Some(fp)).wait_with_output().unwrap();
            assert!(!out.status.success(), "failpoint {fp} should abort");
        }
        finish(&c);
    })
    .await;
    check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    assert_no_double_pay(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_a_resumable_state() {
    let server = MockServer::start(batch_mock(1500)).await.unwrap();
    let (dir, texts, _) = input_dir(400, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let c = config.clone();
    blocking(move || {
        let out = sigterm_after(&c, Duration::from_millis(700), Duration::from_secs(3));
        assert!(stderr(&out).contains("resume"), "{}", stderr(&out));
        // The state lists batches still in flight.
        let status = Command::new(bin())
            .args(["status", "--config"])
            .arg(&c)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&status.stdout);
        assert!(status.status.success(), "{}", stderr(&status));
        assert!(
            text.contains("submitted") || text.contains("planned"),
            "{text}"
        );
        finish(&c);
    })
    .await;
    check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    assert_no_double_pay(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_input_is_refused_and_appended_input_is_picked_up() {
    let server = MockServer::start(batch_mock(20)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    let (mut texts, _) = write_input(&input, 60, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let c = config.clone();
    let input2 = input.clone();
    blocking(move || {
        finish(&c);
        // Append: picked up by the next run.
        let more = (60..90u64)
            .map(|i| format!("{}\n", serde_json::json!({"id": i, "text": format!("late review {i}"), "meta": {"n": i}})))
            .collect::<String>();
        let mut f = std::fs::OpenOptions::new().append(true).open(&input2).unwrap();
        std::io::Write::write_all(&mut f, more.as_bytes()).unwrap();
        finish(&c);
        // Edit before the committed position: refused.
        let text = std::fs::read_to_string(&input2).unwrap().replacen("review", "REVIEW", 1);
        std::fs::write(&input2, text).unwrap();
        let out = run(&c, &[]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("changed"), "{}", stderr(&out));
    })
    .await;
    for i in 60..90u64 {
        texts.insert(i, format!("late review {i}"));
    }
    check_output(&lines(&dir.path().join("output.jsonl")), &texts);
}

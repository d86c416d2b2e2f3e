//! Exactly-once across crashes of the real binary: kill -9 at random
//! moments, crashes at chosen points, SIGTERM, and a source that changed.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mock_server::{MockConfig, MockServer};

fn mock_cfg(in_progress_ms: u64) -> MockConfig {
    let mut cfg = MockConfig::default();
    cfg.port = 0;
    cfg.validating = Duration::from_millis(20);
    cfg.in_progress = Duration::from_millis(in_progress_ms);
    cfg.finalizing = Duration::from_millis(20);
    cfg
}

fn faulty(cfg: &mut MockConfig) {
    cfg.retry_after = Duration::from_millis(20);
    let f = &mut cfg.faults;
    f.rate_limit_fraction = 0.05;
    f.server_error_fraction = 0.03;
    f.lost_response_fraction = 0.2;
    f.token_limit_fraction = 0.1;
    f.expire_fraction = 0.1;
    f.request_4xx_fraction = 0.02;
    f.request_5xx_fraction = 0.05;
}

fn spawn(config: &std::path::Path, failpoint: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.env("MLPREDICT_LOG", "info");
    if let Some(fp) = failpoint {
        cmd.env("MLPREDICT_FAILPOINT", fp);
    }
    cmd.spawn().expect("spawn mlpredict")
}

fn finish(config: &std::path::Path) -> std::process::Output {
    let out = run(config, &[]);
    assert!(out.status.success(), "final run failed: {}", stderr(&out));
    out
}

fn assert_no_double_pay(server: &MockServer) {
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
async fn kill_9_at_random_moments_stays_exactly_once() {
    let mut cfg = mock_cfg(150);
    faulty(&mut cfg);
    cfg.seed = 11;
    let server = MockServer::start(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (texts, _) = write_input(&dir.path().join("input.jsonl"), 5000, 0);
    let config = config(
        dir.path(),
        &server.base_url(),
        "max.inflight = 8\nmax.retries = 5\n",
    );
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261123);
    eprintln!("chaos seed {seed} (CHAOS_SEED to replay)");
    let c = config.clone();
    let kills = tokio::task::spawn_blocking(move || {
        let mut x = seed | 1;
        let mut kills = 0;
        while kills < 25 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let after = Duration::from_millis(30 + x % 400);
            let mut child = spawn(&c, None);
            let started = Instant::now();
            while started.elapsed() < after {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            match child.try_wait().unwrap() {
                Some(status) => {
                    let mut err = String::new();
                    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err)
                        .unwrap();
                    assert!(status.success(), "run failed on its own: {err}");
                    // Finished before the kill: the remaining kills have nothing to hit.
                    break;
                }
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                }
            }
        }
        finish(&c);
        kills
    })
    .await
    .unwrap();
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
    let server = MockServer::start(mock_cfg(100)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (texts, _) = write_input(&dir.path().join("input.jsonl"), 100, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let c = config.clone();
    let out = tokio::task::spawn_blocking(move || {
        let child = spawn(&c, Some("after-create"));
        let out = child.wait_with_output().unwrap();
        assert!(
            !out.status.success(),
            "the failpoint should have aborted the run"
        );
        run(&c, &[])
    })
    .await
    .unwrap();
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
    let server = MockServer::start(mock_cfg(50)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (texts, _) = write_input(&dir.path().join("input.jsonl"), 120, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        for fp in ["after-cut", "before-emit-commit"] {
            let out = spawn(&c, Some(fp)).wait_with_output().unwrap();
            assert!(!out.status.success(), "failpoint {fp} should abort");
        }
        finish(&c);
    })
    .await
    .unwrap();
    check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    assert_no_double_pay(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_a_resumable_state() {
    let server = MockServer::start(mock_cfg(1500)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (texts, _) = write_input(&dir.path().join("input.jsonl"), 400, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        let child = spawn(&c, None);
        std::thread::sleep(Duration::from_millis(700));
        let stopped = Instant::now();
        unsafe { libc_kill(child.id() as i32, 15) };
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "SIGTERM should exit 0: {}",
            stderr(&out)
        );
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "slow shutdown: {:?}",
            stopped.elapsed()
        );
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
    .await
    .unwrap();
    check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    assert_no_double_pay(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_input_is_refused_and_appended_input_is_picked_up() {
    let server = MockServer::start(mock_cfg(20)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    let (mut texts, _) = write_input(&input, 60, 0);
    let config = config(dir.path(), &server.base_url(), "");
    let c = config.clone();
    let input2 = input.clone();
    tokio::task::spawn_blocking(move || {
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
    .await
    .unwrap();
    for i in 60..90u64 {
        texts.insert(i, format!("late review {i}"));
    }
    check_output(&lines(&dir.path().join("output.jsonl")), &texts);
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

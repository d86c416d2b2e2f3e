//! The real binary against the mock server, once per provider wire protocol
//! (Anthropic Message Batches, Azure OpenAI, the FLIP's generic protocol):
//! every fault on, kill -9 at random moments, and a crash right after a
//! create. Each record must come out exactly once, and the mock must never
//! have answered a request twice or seen a batch created twice.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, lines, run, stderr, write_input};
use mock_server::{MockConfig, MockServer};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum P {
    Anthropic,
    Azure,
    Generic,
}

impl P {
    /// The model name the mock's fake model sees (its answer's digest
    /// depends on it).
    fn model(self) -> &'static str {
        match self {
            P::Anthropic => "claude-haiku-4-5",
            P::Azure => "gpt-4o-mini-batch",
            P::Generic => "flip-model",
        }
    }

    fn batch_id_prefix(self) -> &'static str {
        match self {
            P::Anthropic => "msgbatch_",
            P::Azure => "batch_",
            P::Generic => "job_",
        }
    }

    fn key(self) -> &'static str {
        match self {
            P::Anthropic => "sk-ant-test-secret-key",
            P::Azure => "az-test-secret-key",
            P::Generic => "flip-test-secret-key",
        }
    }

    /// `[model]` and the batch API endpoint of this provider.
    fn model_section(self, base: &str) -> String {
        let (provider, endpoint, api, extra) = match self {
            P::Anthropic => (
                "anthropic",
                format!("{base}/v1/messages"),
                format!("{base}/v1"),
                "max-tokens = 64\n",
            ),
            P::Azure => (
                "azure-openai",
                format!(
                    "{base}/openai/deployments/{}/chat/completions?api-version=2024-10-21",
                    self.model()
                ),
                format!("{base}/openai"),
                "api-version = \"2024-10-21\"\n",
            ),
            P::Generic => (
                "generic",
                format!("{base}/ml/api/predict"),
                format!("{base}/ml/api/batch_predict"),
                "task = \"chat\"\n",
            ),
        };
        format!(
            r#"[model]
provider = "{provider}"
endpoint = "{endpoint}"
api-key = "{key}"
model = "{model}"
system-prompt = "Rate the review."
input = "text"
output = "prediction"
{extra}
[ml.batch]
enabled = true
size = 50
api.endpoint = "{api}"
"#,
            key = self.key(),
            model = self.model(),
        )
    }
}

const ALL: [P; 3] = [P::Anthropic, P::Azure, P::Generic];

fn config(p: P, dir: &Path, base: &str, extra: &str) -> PathBuf {
    let toml = format!(
        r#"[pipeline]
name = "reviews"

[source]
type = "file"
path = "{d}/input.jsonl"

[sink]
type = "file"
path = "{d}/output.jsonl"
dlq.path = "{d}/dlq.jsonl"

{model}poll.interval = "50ms"
local.dir = "{d}/work/local"
max.wait = "500ms"
{extra}
"#,
        d = dir.display(),
        model = p.model_section(base),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn mock_cfg(in_progress_ms: u64) -> MockConfig {
    MockConfig {
        port: 0,
        validating: Duration::from_millis(20),
        in_progress: Duration::from_millis(in_progress_ms),
        finalizing: Duration::from_millis(20),
        ..MockConfig::default()
    }
}

/// Every input record exactly once, unchanged; ok ones carry the fake
/// model's answer and the provider's batch id. Returns (ok, error) counts.
fn check_output(p: P, out: &[Value], texts: &BTreeMap<u64, String>) -> (usize, usize) {
    let mut seen = BTreeMap::new();
    let (mut ok, mut err) = (0, 0);
    for rec in out {
        let id = rec["id"].as_u64().expect("id");
        assert!(
            seen.insert(id, ()).is_none(),
            "{p:?}: record {id} emitted twice"
        );
        let text = &texts[&id];
        assert_eq!(
            rec["text"].as_str(),
            Some(text.as_str()),
            "{p:?}: record {id} changed"
        );
        assert_eq!(rec["meta"]["n"].as_u64(), Some(id));
        let m = &rec["ml_predict"];
        assert!(
            m["batch_number"]
                .as_str()
                .is_some_and(|b| b.starts_with("reviews-0-")),
            "{rec}"
        );
        // The public custom_id, never Anthropic's tagged wire id.
        let cid = m["custom_id"].as_str().unwrap_or_default();
        assert!(cid.starts_with("0-") && !cid.contains('_'), "{p:?}: {rec}");
        match m["status"].as_str() {
            Some("ok") => {
                ok += 1;
                assert_eq!(
                    rec["prediction"].as_str(),
                    Some(mock_server::fake::chat_reply(p.model(), text).as_str()),
                    "{p:?}: {rec}"
                );
                assert!(m["error"].is_null());
                assert!(
                    m["batch_id"]
                        .as_str()
                        .is_some_and(|b| b.starts_with(p.batch_id_prefix())),
                    "{p:?}: {rec}"
                );
            }
            Some("error") => {
                err += 1;
                assert!(rec["prediction"].is_null());
                assert!(
                    m["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
                    "{rec}"
                );
                assert!(m["error"]["message"].is_string(), "{rec}");
            }
            other => panic!("{p:?}: bad status {other:?} in {rec}"),
        }
    }
    let missing: Vec<_> = texts
        .keys()
        .filter(|k| !seen.contains_key(k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{p:?}: records never emitted, e.g. {missing:?}"
    );
    (ok, err)
}

fn assert_no_double_pay(p: P, server: &MockServer) {
    let stats = server.stats();
    assert_eq!(
        stats.duplicate_answers, 0,
        "{p:?}: answered twice: {:?}",
        stats.duplicate_answer_keys
    );
    assert!(
        stats.duplicate_creates.is_empty(),
        "{p:?}: created twice: {:?}",
        stats.duplicate_creates
    );
}

fn creates(p: P, server: &MockServer) -> u64 {
    let s = server.stats();
    match p {
        P::Anthropic => s.message_batches_created,
        P::Azure => s.batches_created,
        P::Generic => s.jobs_created,
    }
}

async fn every_fault_on(p: P) {
    let mut cfg = mock_cfg(60);
    cfg.seed = 7;
    cfg.api_key = Some(p.key().into());
    cfg.retry_after = Duration::from_millis(20);
    let f = &mut cfg.faults;
    f.rate_limit_fraction = 0.1;
    f.server_error_fraction = 0.05;
    f.lost_response_fraction = 0.3;
    f.token_limit_fraction = 0.2;
    f.expire_fraction = 0.2;
    f.request_4xx_fraction = 0.05;
    f.request_5xx_fraction = 0.1;
    f.slow_finalizing = Duration::from_millis(100);
    f.empty_error_file_id = true;
    let server = MockServer::start(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (texts, _) = write_input(&dir.path().join("input.jsonl"), 600, 0);
    let cfg = config(
        p,
        dir.path(),
        &server.base_url(),
        "max.inflight = 6\nmax.retries = 6\n",
    );
    let out = tokio::task::spawn_blocking(move || run(&cfg, &["ml.batch.size=40"]))
        .await
        .unwrap();
    assert!(out.status.success(), "{p:?}: {}", stderr(&out));
    assert!(
        !stderr(&out).contains(p.key()),
        "{p:?}: the api key reached the log"
    );
    let output = lines(&dir.path().join("output.jsonl"));
    let (ok, err) = check_output(p, &output, &texts);
    assert_eq!(ok + err, 600);
    // 4xx lines are errors at once; with 6 retries nearly every 5xx,
    // expired or canceled request recovers.
    assert!(err > 0 && err < 100, "{p:?}: ok {ok} err {err}");
    assert!(
        output
            .iter()
            .any(|r| r["ml_predict"]["retries"].as_u64() > Some(0)
                && r["ml_predict"]["status"] == "ok"),
        "{p:?}: no retried record succeeded"
    );
    assert_no_double_pay(p, &server);
    let stats = server.stats();
    for kind in [
        "rate_limit",
        "lost_response",
        "token_limit",
        "expire",
        "request_5xx",
    ] {
        assert!(
            stats.faults_injected.keys().any(|k| k.contains(kind)),
            "{p:?}: fault {kind} never injected: {:?}",
            stats.faults_injected
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_exactly_once_with_every_fault_on() {
    every_fault_on(P::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_exactly_once_with_every_fault_on() {
    every_fault_on(P::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_exactly_once_with_every_fault_on() {
    every_fault_on(P::Generic).await;
}

fn spawn(config: &Path, failpoint: Option<&str>) -> std::process::Child {
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

fn finish(p: P, config: &Path) -> std::process::Output {
    let out = run(config, &[]);
    assert!(
        out.status.success(),
        "{p:?}: final run failed: {}",
        stderr(&out)
    );
    out
}

/// kill -9 at random moments (a smaller loop than crash.rs), then a run to
/// the end.
async fn kill_9_loop(p: P, seed: u64) {
    let mut cfg = mock_cfg(150);
    cfg.seed = 11;
    cfg.retry_after = Duration::from_millis(20);
    let f = &mut cfg.faults;
    f.rate_limit_fraction = 0.05;
    f.server_error_fraction = 0.03;
    f.lost_response_fraction = 0.2;
    f.token_limit_fraction = 0.1;
    f.expire_fraction = 0.1;
    f.request_4xx_fraction = 0.02;
    f.request_5xx_fraction = 0.05;
    let server = MockServer::start(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (texts, _) = write_input(&dir.path().join("input.jsonl"), 2000, 0);
    let config = config(
        p,
        dir.path(),
        &server.base_url(),
        "max.inflight = 8\nmax.retries = 5\n",
    );
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seed);
    eprintln!("{p:?}: chaos seed {seed} (CHAOS_SEED to replay)");
    let c = config.clone();
    let kills = tokio::task::spawn_blocking(move || {
        let mut x = seed | 1;
        let mut kills = 0;
        while kills < 10 {
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
                    assert!(status.success(), "{p:?}: run failed on its own: {err}");
                    break;
                }
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                }
            }
        }
        finish(p, &c);
        kills
    })
    .await
    .unwrap();
    assert!(
        kills >= 6,
        "{p:?}: only {kills} kills landed before the run finished"
    );
    let (ok, err) = check_output(p, &lines(&dir.path().join("output.jsonl")), &texts);
    assert_eq!(ok + err, 2000);
    assert_no_double_pay(p, &server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_kill_9_at_random_moments_stays_exactly_once() {
    kill_9_loop(P::Anthropic, 20261201).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_kill_9_at_random_moments_stays_exactly_once() {
    kill_9_loop(P::Azure, 20261202).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_kill_9_at_random_moments_stays_exactly_once() {
    kill_9_loop(P::Generic, 20261203).await;
}

/// A crash between create and recording the batch id: the next run adopts
/// the batch (Anthropic: proven by the batch tag in its results) instead of
/// paying for it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_create_is_adopted_by_every_provider() {
    for p in ALL {
        let server = MockServer::start(mock_cfg(100)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (texts, _) = write_input(&dir.path().join("input.jsonl"), 100, 0);
        let config = config(p, dir.path(), &server.base_url(), "");
        let c = config.clone();
        let out = tokio::task::spawn_blocking(move || {
            let child = spawn(&c, Some("after-create"));
            let out = child.wait_with_output().unwrap();
            assert!(
                !out.status.success(),
                "{p:?}: the failpoint should have aborted the run"
            );
            run(&c, &[])
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{p:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("adopting a batch created before a crash"),
            "{p:?}: {}",
            stderr(&out)
        );
        check_output(p, &lines(&dir.path().join("output.jsonl")), &texts);
        assert_eq!(
            creates(p, &server),
            2,
            "{p:?}: a batch was paid for twice: {:?}",
            server.stats()
        );
        assert_no_double_pay(p, &server);
    }
}

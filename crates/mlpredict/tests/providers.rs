//! The real binary against the mock server, once per provider wire protocol
//! (Anthropic Message Batches, Azure OpenAI, the FLIP's generic protocol):
//! every fault on, kill -9 at random moments, and a crash right after a
//! create. Each record must come out exactly once, and the mock must never
//! have answered a request twice or seen a batch created twice.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use mock_server::MockServer;
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
        r#"{pipeline}{model}poll.interval = "50ms"
local.dir = "{d}/work/local"
max.wait = "500ms"
{extra}
"#,
        pipeline = file_pipeline(dir),
        model = p.model_section(base),
        d = dir.display(),
    );
    write_config(dir, "pipeline.toml", &toml)
}

/// Every input record exactly once, unchanged; ok ones carry the fake
/// model's answer and the provider's batch id. Returns (ok, error) counts.
fn check_output(p: P, out: &[Value], texts: &BTreeMap<u64, String>) -> (usize, usize) {
    let shape = Shape {
        label: format!("{p:?}: "),
        model: p.model(),
        batch_id_prefix: Some(p.batch_id_prefix()),
        // The public custom_id, never Anthropic's tagged wire id.
        plain_custom_id: true,
    };
    let (ok, err, _) = check_records(out, texts, &shape);
    (ok, err)
}

fn assert_no_double_pay(p: P, server: &MockServer) {
    assert_no_double_pay_as(&format!("{p:?}: "), server);
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
    let mut cfg = batch_mock(60);
    cfg.seed = 7;
    cfg.api_key = Some(p.key().into());
    every_fault(&mut cfg);
    let server = MockServer::start(cfg).await.unwrap();
    let (dir, texts, _) = input_dir(600, 0);
    let cfg = config(
        p,
        dir.path(),
        &server.base_url(),
        "max.inflight = 6\nmax.retries = 6\n",
    );
    let out = blocking(move || run(&cfg, &["ml.batch.size=40"])).await;
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

/// kill -9 at random moments (a smaller loop than crash.rs), then a run to
/// the end.
async fn kill_9_loop(p: P, seed: u64) {
    let mut cfg = batch_mock(150);
    cfg.seed = 11;
    chaos_faults(&mut cfg);
    let server = MockServer::start(cfg).await.unwrap();
    let (dir, texts, _) = input_dir(2000, 0);
    let config = config(
        p,
        dir.path(),
        &server.base_url(),
        "max.inflight = 8\nmax.retries = 5\n",
    );
    let seed = chaos_seed(seed);
    eprintln!("{p:?}: chaos seed {seed} (CHAOS_SEED to replay)");
    let c = config.clone();
    let kills = blocking(move || {
        let kills = kill_9_at_random_moments(&c, seed, 10, (30, 400), &format!("{p:?}: "));
        finish_as(&format!("{p:?}: "), &c);
        kills
    })
    .await;
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
        let server = MockServer::start(batch_mock(100)).await.unwrap();
        let (dir, texts, _) = input_dir(100, 0);
        let config = config(p, dir.path(), &server.base_url(), "");
        let c = config.clone();
        let out = blocking(move || {
            crash_at(&format!("{p:?}: "), &c, "after-create");
            run(&c, &[])
        })
        .await;
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

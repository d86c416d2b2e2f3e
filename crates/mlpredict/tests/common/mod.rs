//! Shared helpers of the end-to-end tests: run the real binary against a
//! mock server started in the test process.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const MODEL: &str = "gpt-4o-mini";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mlpredict"))
}

/// Review-like records with escapes and non-ASCII text; every `bad_every`-th
/// line is unusable (not JSON, or without a string `text`).
pub fn write_input(path: &Path, n: usize, bad_every: usize) -> (BTreeMap<u64, String>, usize) {
    let mut texts = BTreeMap::new();
    let mut out = String::new();
    let mut bad = 0;
    for i in 0..n as u64 {
        if bad_every > 0 && i % bad_every as u64 == 7 {
            bad += 1;
            out.push_str(if i % 2 == 0 {
                "not json at all\n"
            } else {
                "{\"id\": -1, \"text\": 42}\n"
            });
        }
        let text = format!(
            "review {i}: \"great\" phone — ünïcode ✓, {} stars\\n{}",
            i % 5 + 1,
            "x".repeat((i % 7) as usize)
        );
        out.push_str(&serde_json::json!({"id": i, "text": text, "meta": {"n": i}}).to_string());
        out.push('\n');
        texts.insert(i, text);
    }
    std::fs::write(path, out).unwrap();
    (texts, bad)
}

pub fn config(dir: &Path, base: &str, extra: &str) -> PathBuf {
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

[model]
provider = "openai"
endpoint = "{base}/v1/chat/completions"
api-key = "sk-test-secret-key"
model = "{MODEL}"
system-prompt = "Rate the review."
input = "text"
output = "prediction"

[ml.batch]
enabled = true
size = 50
api.endpoint = "{base}/v1"
poll.interval = "50ms"
local.dir = "{d}/work/local"
max.wait = "500ms"
{extra}
"#,
        d = dir.display()
    );
    let p = dir.join("pipeline.toml");
    std::fs::write(&p, toml).unwrap();
    p
}

pub fn run(config: &Path, defines: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("run").arg("--config").arg(config);
    for d in defines {
        cmd.arg("-D").arg(d);
    }
    cmd.env("MLPREDICT_LOG", "info");
    cmd.output().expect("run mlpredict")
}

pub fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends in a torn line",
        path.display()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l}: {e}")))
        .collect()
}

/// Every input record exactly once; ok ones carry the mock model's answer.
/// Returns (ok, error) counts.
pub fn check_output(out: &[Value], texts: &BTreeMap<u64, String>) -> (usize, usize) {
    let mut seen = BTreeMap::new();
    let (mut ok, mut err) = (0, 0);
    for rec in out {
        let id = rec["id"].as_u64().expect("id");
        assert!(seen.insert(id, ()).is_none(), "record {id} emitted twice");
        let text = &texts[&id];
        assert_eq!(
            rec["text"].as_str(),
            Some(text.as_str()),
            "record {id} changed"
        );
        assert_eq!(rec["meta"]["n"].as_u64(), Some(id));
        let m = &rec["ml_predict"];
        assert!(
            m["batch_number"]
                .as_str()
                .is_some_and(|b| b.starts_with("reviews-0-")),
            "{rec}"
        );
        assert!(
            m["custom_id"].as_str().is_some_and(|c| c.starts_with("0-")),
            "{rec}"
        );
        match m["status"].as_str() {
            Some("ok") => {
                ok += 1;
                assert_eq!(
                    rec["prediction"].as_str(),
                    Some(mock_server::fake::chat_reply(MODEL, text).as_str()),
                    "{rec}"
                );
                assert!(m["error"].is_null());
                assert!(
                    m["batch_id"]
                        .as_str()
                        .is_some_and(|b| b.starts_with("batch_")),
                    "{rec}"
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
            other => panic!("bad status {other:?} in {rec}"),
        }
    }
    let missing: Vec<_> = texts
        .keys()
        .filter(|k| !seen.contains_key(k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "records never emitted, e.g. {missing:?}"
    );
    (ok, err)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

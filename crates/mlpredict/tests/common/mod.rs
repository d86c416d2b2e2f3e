//! Shared helpers of the end-to-end tests: run the real binary against a
//! mock server started in the test process.
//!
//! - `config.rs`: the pipeline.toml files,
//! - `spawn.rs`: running, killing and waiting for the binary,
//! - `check.rs`: exactly-once checks of the output and of the mock,
//! - `mock.rs`: mock server configurations,
//! - `fuzz.rs`: bad input, and the byte-level JSON check of every line,
//! - `http.rs`: GETs of the metrics and the status page, `status --serve`.
#![allow(dead_code)]

mod check;
mod config;
mod fuzz;
mod http;
mod mock;
mod spawn;

// Not every test file uses every module.
#[allow(unused_imports)]
pub use {check::*, config::*, fuzz::*, http::*, mock::*, spawn::*};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

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

/// A fresh test directory holding `input.jsonl` of [`write_input`]: the
/// directory, the texts by id and the number of unusable lines.
pub fn input_dir(n: usize, bad_every: usize) -> (tempfile::TempDir, BTreeMap<u64, String>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (texts, bad) = write_input(&dir.path().join("input.jsonl"), n, bad_every);
    (dir, texts, bad)
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

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `f` on tokio's blocking pool (child processes, sleeps), its result.
pub async fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap()
}

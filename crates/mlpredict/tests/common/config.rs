//! The pipeline.toml files of the end-to-end tests.

use std::path::{Path, PathBuf};

use super::MODEL;

/// `[pipeline]`, `[source]` and `[sink]` of the file pipeline `reviews` in
/// `dir`: input.jsonl to output.jsonl, dead letters to dlq.jsonl.
pub fn file_pipeline(dir: &Path) -> String {
    format!(
        r#"[pipeline]
name = "reviews"

[source]
type = "file"
path = "{d}/input.jsonl"

[sink]
type = "file"
path = "{d}/output.jsonl"
dlq.path = "{d}/dlq.jsonl"

"#,
        d = dir.display()
    )
}

/// `[model]`: the OpenAI chat model [`MODEL`] at the mock `base`.
pub fn openai_model(base: &str, api_key: &str) -> String {
    format!(
        r#"[model]
provider = "openai"
endpoint = "{base}/v1/chat/completions"
api-key = "{api_key}"
model = "{MODEL}"
system-prompt = "Rate the review."
input = "text"
output = "prediction"
"#
    )
}

/// Writes `toml` to `dir/name`; its path.
pub fn write_config(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, toml).unwrap();
    p
}

/// `[ml.batch]` in batch mode against the mock at `base`, polling every
/// 50 ms, its local files in `local_dir`.
pub fn ml_batch(base: &str, local_dir: &str, max_wait: &str) -> String {
    format!(
        r#"[ml.batch]
enabled = true
size = 50
api.endpoint = "{base}/v1"
poll.interval = "50ms"
local.dir = "{local_dir}"
max.wait = "{max_wait}"
"#
    )
}

/// The file pipeline in `dir` with the OpenAI `[model]` at `base`, then
/// `rest`, written to `dir/pipeline.toml`.
fn file_config(dir: &Path, base: &str, rest: &str) -> PathBuf {
    let toml = format!(
        "{}{}\n{rest}",
        file_pipeline(dir),
        openai_model(base, "sk-test-secret-key")
    );
    write_config(dir, "pipeline.toml", &toml)
}

/// A file pipeline in batch mode against the mock at `base`; `extra` goes
/// at the end of `[ml.batch]` (or opens further tables).
pub fn config(dir: &Path, base: &str, extra: &str) -> PathBuf {
    let local = format!("{}/work/local", dir.display());
    let rest = format!("{}{extra}\n", ml_batch(base, &local, "500ms"));
    file_config(dir, base, &rest)
}

/// A file pipeline in synchronous mode (batch mode off) against the mock at
/// `base`; `extra` goes into `[ml.predict]`.
pub fn sync_config(dir: &Path, base: &str, extra: &str) -> PathBuf {
    let rest = format!(
        r#"[ml.batch]
enabled = false
local.dir = "{d}/work/local"

[ml.predict]
{extra}
"#,
        d = dir.display()
    );
    file_config(dir, base, &rest)
}

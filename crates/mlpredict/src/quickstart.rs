//! `mlpredict quickstart`: a few hundred product reviews through batch mode
//! against a mock Batch API started in-process, then a summary.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;

use crate::runtime::{self, Summary};

const PRODUCTS: &[&str] = &[
    "wireless earbuds",
    "espresso machine",
    "trail running shoes",
    "standing desk",
    "air fryer",
    "mechanical keyboard",
    "baby monitor",
    "camping tent",
    "electric toothbrush",
    "e-reader",
];
const OPENINGS: &[&str] = &[
    "Bought the {p} last month.",
    "I've used this {p} daily for two weeks.",
    "Got the {p} as a gift.",
    "Replaced my old {p} with this one.",
    "Ordered the {p} after reading the reviews.",
];
const VERDICTS: &[&str] = &[
    "It is excellent, works perfectly and I love it.",
    "Great value, sturdy and easy to set up.",
    "Decent, but the battery life is disappointing.",
    "It broke after three days. Terrible quality, I want a refund.",
    "Does the job. Nothing special, nothing bad.",
    "Awful customer service and the box arrived damaged.",
    "Amazing! Better than the expensive brands.",
    "Too loud and the instructions are useless.",
];
const CLOSINGS: &[&str] = &[
    "Would recommend.",
    "Not buying again.",
    "Four stars from me.",
    "",
    "Shipping was fast.",
];

/// Deterministic example records; a few bad lines show the dead-letter output.
pub fn example_records(n: usize) -> String {
    let mut out = String::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    for i in 0..n {
        if i == 41 {
            out.push_str("this line is not json\n");
        }
        if i == 142 {
            out.push_str("{\"review_id\": \"r-broken\", \"stars\": 3}\n");
        }
        let p = PRODUCTS[next(PRODUCTS.len())];
        let text = format!(
            "{} {} {}",
            OPENINGS[next(OPENINGS.len())].replace("{p}", p),
            VERDICTS[next(VERDICTS.len())],
            CLOSINGS[next(CLOSINGS.len())]
        );
        let rec = serde_json::json!({"review_id": format!("r-{i:04}"), "product": p, "text": text.trim()});
        out.push_str(&rec.to_string());
        out.push('\n');
    }
    out
}

pub fn run(rt: &tokio::runtime::Runtime, dir: &Path, records: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for stale in ["output.jsonl", "dlq.jsonl", "work"] {
        let p = dir.join(stale);
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_dir_all(&p);
    }
    std::fs::write(dir.join("input.jsonl"), example_records(records))?;
    let mut mock_cfg = mock_server::MockConfig::default();
    mock_cfg.port = 0;
    let mock = rt.block_on(mock_server::MockServer::start(mock_cfg))?;
    let base = mock.base_url();
    let toml = format!(
        r#"# Written by `mlpredict quickstart`. The mock server it used is gone;
# to run this again, start `mlpredict mock-server --port 8080` and
#   mlpredict run --config {dir}/pipeline.toml -D model.endpoint=http://127.0.0.1:8080/v1/chat/completions -D ml.batch.api.endpoint=http://127.0.0.1:8080/v1
[pipeline]
name = "quickstart"

[source]
type = "file"
path = "{dir}/input.jsonl"

[sink]
type = "file"
path = "{dir}/output.jsonl"
dlq.path = "{dir}/dlq.jsonl"

[model]
provider = "openai"
endpoint = "{base}/v1/chat/completions"
api-key = "sk-quickstart"
model = "gpt-4o-mini"
system-prompt = "Rate the product review from 1 to 5 stars."
input = "text"
output = "prediction"

[ml.batch]
enabled = true
size = 50
api.endpoint = "{base}/v1"
poll.interval = "100ms"
local.dir = "{dir}/work"
max.wait = "500ms"
"#,
        dir = dir.display()
    );
    let config = dir.join("pipeline.toml");
    std::fs::write(&config, toml)?;
    let cfg = pipeline_config::load(&config, &[])?;
    println!("quickstart: {records} product reviews through batch mode against a mock Batch API at {base}/v1");
    let opts = runtime::Options {
        cancel_inflight: false,
        shutdown: Arc::new(AtomicBool::new(false)),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        live: Arc::new(crate::status::live::Live::new()),
    };
    let summary = runtime::run_batch(&cfg, rt.handle().clone(), opts)?;
    rt.block_on(mock.shutdown());
    print_summary(&summary);
    if let Some(first) = std::fs::read_to_string(&summary.output)?.lines().next() {
        println!("\nfirst output record:\n  {first}");
    }
    println!("\nconfiguration used: {}", config.display());
    std::io::stdout().flush()?;
    Ok(())
}

pub fn print_summary(s: &Summary) {
    println!(
        "\n{} records read in {:.1?}\n  emitted: {} ok, {} errors ({} retried in later batches)\n  dead letters: {}\n  batches: {} submitted, {} emitted\n  API calls: {} ({} failed and retried)\n  tokens: {}\n  output: {}\n  dead letters: {}",
        s.records_read,
        s.wall,
        s.ok,
        s.errors,
        s.retried,
        s.dead_letters,
        s.batches_submitted,
        s.batches_emitted,
        s.api_calls,
        s.api_errors,
        s.tokens,
        s.output,
        s.dlq,
    );
    if s.interrupted {
        println!("  interrupted: run the same command again to resume");
    }
}

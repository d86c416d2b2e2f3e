//! CI keeps the harness working: every scenario at smoke size against the
//! debug build of `mlpredict` (built by `cargo build --workspace`, or given
//! in MLPREDICT_BIN). Timings are never asserted; counts are.

use std::path::PathBuf;

use mlpredict_bench::{report, run, Options};

fn mlpredict_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MLPREDICT_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("mlpredict");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "no mlpredict binary under {}: run `cargo build -p mlpredict` first (or set MLPREDICT_BIN)",
        target.display()
    );
}

#[test]
fn smoke_run_of_every_scenario() {
    let work = tempfile::tempdir().unwrap();
    let rep = run(&Options {
        bin: mlpredict_bin(),
        work: work.path().to_owned(),
        smoke: true,
        only: "abcd".into(),
        perf: false,
    })
    .unwrap();
    assert_eq!(rep.overhead.len(), 4);
    assert!(rep.overhead.iter().any(|a| a.mode == "sync"));
    assert!(rep
        .overhead
        .iter()
        .all(|a| a.records > 0 && a.api_calls > 0));
    assert_eq!(rep.memory.len(), 2);
    for m in &rep.memory {
        assert!(m.reached_plateau, "{m:?}");
        assert_eq!(m.records_in_flight, m.records, "{m:?}");
        assert!(m.peak_rss_mb > 0.0);
    }
    assert_eq!(rep.economy.len(), 3);
    assert!(rep
        .economy
        .iter()
        .all(|c| c.calls.contains_key("POST /v1/batches")));
    assert_eq!(rep.modes.len(), 2);
    for d in &rep.modes {
        assert_eq!(d.ok, d.records, "{d:?}");
        assert!(d.prompt_tokens > 0 && d.completion_tokens > 0, "{d:?}");
    }
    let md = work.path().join("B.md");
    report::write_into(&md, &report::render(&rep)).unwrap();
    let text = std::fs::read_to_string(&md).unwrap();
    for section in [
        "(a) Operator overhead",
        "(b) Memory",
        "(c) API calls",
        "(d) Batch vs synchronous",
    ] {
        assert!(text.contains(section), "missing {section}");
    }
}

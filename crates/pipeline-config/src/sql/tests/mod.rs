//! Golden tests of the SQL front end: `golden/NAME.sql` compiles to
//! `golden/NAME.toml` (the `--explain` output), and that TOML, read by the
//! TOML path, gives the same pipeline as the SQL. `UPDATE_GOLDEN=1`
//! rewrites the expected files. Refusals: `refusals.rs`.

mod refusals;

use std::path::PathBuf;

use super::*;
use crate::SinkConfig;

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" | "ANTHROPIC_API_KEY" => Some("sk-test".into()),
        _ => None,
    }
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/sql/tests/golden")
}

/// The pipeline the SQL compiles to, secrets resolved.
pub(super) fn pipeline(sql: &str, overrides: &[String]) -> Result<PipelineConfig, SqlError> {
    compile(sql, overrides)?.build(&env, Secrets::Resolve)
}

#[test]
fn golden_scripts_compile_to_their_toml_and_the_toml_path_agrees() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for sql_path in names {
        let sql = std::fs::read_to_string(&sql_path).unwrap();
        let toml_path = sql_path.with_extension("toml");
        let got =
            explain_str(&sql, &[], &env).unwrap_or_else(|e| panic!("{}: {e}", sql_path.display()));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&toml_path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&toml_path).unwrap_or_default();
        assert_eq!(got, want, "{}", sql_path.display());
        // One validation: the TOML path builds the same pipeline. A literal
        // API key is not printed, so it is compared without secrets.
        let from_sql = pipeline(&sql, &[]).unwrap();
        let from_toml = crate::parse_str_with_env(&got, &[], &env);
        match from_toml {
            Ok(t) => assert_eq!(
                format!("{t:?}"),
                format!("{from_sql:?}"),
                "{}",
                sql_path.display()
            ),
            Err(e) => {
                assert!(got.contains("not shown"), "{}: {e}", sql_path.display());
            }
        }
    }
}

#[test]
fn the_flip_keys_select_batch_mode_and_their_absence_sync_mode() {
    let dir = golden_dir();
    let batch = pipeline(
        &std::fs::read_to_string(dir.join("file_batch.sql")).unwrap(),
        &[],
    )
    .unwrap();
    assert!(batch.batch.enabled);
    assert_eq!(batch.batch_number_prefix(), "rev");
    assert_eq!(batch.batch.size, 50);
    assert_eq!(batch.batch.max_retries, 5);
    assert_eq!(batch.sync.max_retries, 5);
    assert_eq!(batch.name, "scored", "named after the sink table");
    assert_eq!(
        batch.sink,
        SinkConfig::File {
            path: "out/scored/part-0.jsonl".into(),
            dlq_path: "out/scored-dlq.jsonl".into()
        }
    );
    assert_eq!(
        batch.model.system_prompt.as_deref(),
        Some("Rate the review. It's fine.")
    );
    let sync = pipeline(
        &std::fs::read_to_string(dir.join("file_sync.sql")).unwrap(),
        &[],
    )
    .unwrap();
    assert!(!sync.batch.enabled);
    // MAP overrides SET, as in Flink.
    assert_eq!(sync.sync.max_concurrent_operations, 8);
    assert_eq!(sync.sync.output_mode, crate::OutputMode::Ordered);
    assert_eq!(sync.sync.timeout, std::time::Duration::from_secs(20));
    assert_eq!(
        sync.model.system_prompt.as_deref(),
        Some("You are a helpful assistant.")
    );
    let one_at_a_time = pipeline(
        &std::fs::read_to_string(dir.join("anthropic_sync.sql")).unwrap(),
        &[],
    )
    .unwrap();
    assert_eq!(
        one_at_a_time.sync.max_concurrent_operations, 1,
        "async = false"
    );
    assert_eq!(one_at_a_time.model.system_prompt, None, "'' means none");
}

#[test]
fn d_overrides_win_over_the_sql_and_are_named_in_errors() {
    let sql = std::fs::read_to_string(golden_dir().join("file_batch.sql")).unwrap();
    let cfg = pipeline(&sql, &["ml.batch.size=7".into()]).unwrap();
    assert_eq!(cfg.batch.size, 7);
    let e = pipeline(&sql, &["ml.batch.size=abc".into()]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("in -D ml.batch.size: ml.batch.size: "),
        "{e}"
    );
    assert_eq!(e.key(), Some("ml.batch.size"));
}

#[test]
fn flink_table_config_keys_and_durations_work() {
    let sql = format!(
        "SET 'table.exec.async-ml-predict.timeout' = '3 min';\n{}",
        refusals::BASE
    );
    let cfg = pipeline(&sql, &[]).unwrap();
    assert_eq!(cfg.sync.timeout, std::time::Duration::from_secs(180));
}

#[test]
fn error_handling_strategies_keep_flink_s_meaning() {
    use crate::OnError::{Emit, Failover};
    let with = |options: &str| {
        let sql = refusals::BASE.replace("'model' = 'gpt'", &format!("'model' = 'gpt'{options}"));
        let cfg = pipeline(&sql, &[]).unwrap();
        (
            cfg.output.on_error,
            cfg.sync.max_retries,
            cfg.batch.max_retries,
        )
    };
    // mlpredict's default (README, "Flink SQL"): its retry budgets, then the row.
    assert_eq!(with(""), (Emit, 100, 3));
    assert_eq!(with(", 'error-handling-strategy' = 'IGNORE'"), (Emit, 0, 0));
    assert_eq!(
        with(", 'error-handling-strategy' = 'failover'"),
        (Failover, 0, 0)
    );
    // Flink's RETRY: retry-num (100), then retry-fallback-strategy (FAILOVER).
    assert_eq!(
        with(", 'error-handling-strategy' = 'RETRY'"),
        (Failover, 100, 100)
    );
    assert_eq!(with(", 'retry-num' = '4'"), (Failover, 4, 4));
    assert_eq!(
        with(", 'error-handling-strategy' = 'RETRY', 'retry-num' = '2', 'retry-fallback-strategy' = 'IGNORE'"),
        (Emit, 2, 2)
    );
}

#[test]
fn the_projection_becomes_the_sink_s_columns() {
    let sql = std::fs::read_to_string(golden_dir().join("file_projection.sql")).unwrap();
    let cfg = pipeline(&sql, &[]).unwrap();
    let cols: Vec<(String, String, String)> = cfg
        .output
        .columns
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.ty.to_string(), c.from))
        .collect();
    let want = [
        ("rating", "STRING", "label"),
        (
            "ml_predict",
            "ROW<`status` STRING, `error` ROW<`code` STRING, `message` STRING>>",
            "ml_predict",
        ),
        // INT widens to the sink's BIGINT; values are checked as the source declares them.
        ("review_id", "INT", "id"),
        ("review", "STRING", "text"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(cols, want);
    assert_eq!(cfg.model.stop, vec!["END".to_string(), "###".to_string()]);
    assert_eq!((cfg.model.top_p, cfg.model.seed), (Some(0.9), Some(42)));
}

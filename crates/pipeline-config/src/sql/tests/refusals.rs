//! Each refusal, with its message: a base script, one edit, the error.

use super::pipeline;

pub(super) const BASE: &str = "\
CREATE TABLE src (id BIGINT, text STRING) WITH ('connector' = 'filesystem', 'path' = 'in.jsonl', 'format' = 'json');
CREATE TABLE dst (id BIGINT, text STRING, prediction STRING) WITH ('connector' = 'filesystem', 'path' = 'out.jsonl', 'format' = 'json');
CREATE MODEL m INPUT (text STRING) OUTPUT (prediction STRING) WITH ('endpoint' = 'http://127.0.0.1:8080/v1/chat/completions', 'model' = 'gpt');
INSERT INTO dst SELECT * FROM ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(text), MAP['ml.batch.size', '5']);
";

fn refused(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    let sql = BASE.replacen(from, to, 1);
    match pipeline(&sql, &[]) {
        Ok(cfg) => panic!("accepted: {sql}\n{cfg:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_base_script_is_valid() {
    pipeline(BASE, &[]).unwrap();
}

#[test]
fn each_refusal_names_the_line_column_and_construct() {
    let cases: &[(&str, &str, &str)] = &[
        // bad values: the TOML path's message, plus where the SQL set it
        ("'ml.batch.size', '5'", "'ml.batch.size', 'abc'",
         "line 4, column 101 (MAP key 'ml.batch.size' of ML_PREDICT): ml.batch.size: expected a positive integer, got \"abc\""),
        ("'ml.batch.size', '5'", "'ml.batch.sise', '5'",
         "line 4, column 101 (MAP key 'ml.batch.sise' of ML_PREDICT): unknown key `ml.batch.sise` (did you mean `ml.batch.size`?)"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'temperature' = '9'",
         "line 3, column 160 (option 'temperature' of model `m`): model.temperature: must be between 0 and 2, got 9"),
        ("'endpoint' = 'http://127.0.0.1:8080/v1/chat/completions', ", "",
         "line 3, column 14 (CREATE MODEL `m`, option 'endpoint'): missing required key `model.endpoint`"),
        ("MAP['ml.batch.size', '5']", "MAP['batch', 'true']",
         "line 4, column 1 (INSERT INTO, MAP key 'ml.batch.api.endpoint' of ML_PREDICT): ml.batch.api.endpoint is required when ml.batch.enabled = true"),
        ("INSERT INTO", "SET 'ml.predict.timeout' = '10';\nINSERT INTO",
         "line 4, column 28 (SET 'ml.predict.timeout'): ml.predict.timeout: expected a duration such as \"200ms\", \"10s\", \"5m\" or \"24h\", got 10"),
        // outside the subset
        ("DESCRIPTOR(text), MAP['ml.batch.size', '5'])", "DESCRIPTOR(text)) WHERE id > 3",
         "line 4, column 80: WHERE is not supported: the query is SELECT ... FROM ML_PREDICT(...) alone"),
        ("DESCRIPTOR(text), MAP['ml.batch.size', '5'])", "DESCRIPTOR(text)) JOIN other ON true",
         "line 4, column 80: JOIN is not supported: the query is SELECT ... FROM ML_PREDICT(...) alone"),
        ("FROM ML_PREDICT", "FROM src, ML_PREDICT",
         "line 4, column 31: FROM `src` is not supported: the query reads FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(col))"),
        ("'5']);\n", "'5']);\nINSERT INTO dst SELECT * FROM ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(text));\n",
         "line 5, column 1: a second INSERT is not supported: a script runs one INSERT INTO ... SELECT ... FROM ML_PREDICT(...)"),
        ("'connector' = 'filesystem', 'path' = 'in.jsonl'", "'connector' = 'jdbc', 'path' = 'in.jsonl'",
         "line 1, column 63: connector 'jdbc' is not supported (supported: 'kafka', 'filesystem')"),
        ("DESCRIPTOR(text)", "DESCRIPTOR(body)",
         "line 4, column 73: column `body` is not a column of table `src`"),
        ("DESCRIPTOR(text)", "DESCRIPTOR(id)",
         "line 4, column 73: column `id` is BIGINT, but the INPUT of model `m` is STRING"),
        ("SELECT *", "SELECT id, body",
         "line 4, column 28: column `body` is neither a column of table `src` nor the OUTPUT column of model `m` (ML_PREDICT's output: `id`, `text`, `prediction`)"),
        ("SELECT *", "SELECT id, prediction",
         "line 4, column 13: the query has 2 columns (`id`, `prediction`) but sink table `dst` has 3 (`id`, `text`, `prediction`) besides `ml_predict`: INSERT INTO maps the query's columns to the sink's by position"),
        ("SELECT *", "SELECT text AS t, id, prediction",
         "line 2, column 22: column `id` is BIGINT in sink table `dst`, but the query's column in its place, `text`, is STRING"),
        ("SELECT *", "SELECT upper(text)",
         "line 4, column 29: expressions in the projection are not supported (after `upper`: `(`)"),
        ("(id BIGINT, text STRING, prediction STRING)", "(id BIGINT, prediction STRING)",
         "line 4, column 13: the query has 3 columns (`id`, `text`, `prediction`) but sink table `dst` has 2 (`id`, `prediction`) besides `ml_predict`: INSERT INTO maps the query's columns to the sink's by position"),
        ("(id BIGINT, text STRING, prediction STRING)", "(id INT, text STRING, prediction STRING)",
         "line 2, column 22: column `id` is INT in sink table `dst`, but the query's column in its place, `id`, is BIGINT"),
        ("(id BIGINT, text STRING, prediction STRING)", "(id BIGINT, text STRING, prediction STRING, ml_predict INT)",
         "line 2, column 73: column `ml_predict` receives mlpredict's metadata object: declare it STRING or ROW<...>"),
        ("(id BIGINT, text STRING)", "(id BIGINT, text STRING, ml_predict STRING)",
         "line 1, column 43: column `ml_predict` of table `src`: the name is mlpredict's metadata field"),
        ("OUTPUT (prediction STRING)", "OUTPUT (prediction ARRAY<FLOAT>)",
         "line 2, column 54: column `prediction` is STRING in sink table `dst`, but the query's column in its place, `prediction`, is ARRAY<FLOAT>"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'presence-penalty' = '0.9'",
         "line 3, column 144: CREATE MODEL option 'presence-penalty' is not yet supported by mlpredict"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'top-p' = '1.5'",
         "line 3, column 154 (option 'top-p' of model `m`): model.top-p: must be between 0 and 1, got 1.5"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'dimension' = '64'",
         "line 3, column 158 (option 'dimension' of model `m`): model.dimension: applies to embedding models, not chat"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'stop' = 'a,,b'",
         "line 3, column 153 (option 'stop' of model `m`): model.stop: holds an empty stop sequence (two commas, or one at an end)"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'stop' = 'a,b,c,d,e'",
         "line 3, column 153 (option 'stop' of model `m`): model.stop: the openai provider takes at most 4 stop sequences, got 5"),
        ("'endpoint' = 'http://127.0.0.1:8080/v1/chat/completions', 'model' = 'gpt'", "'provider' = 'anthropic', 'endpoint' = 'http://127.0.0.1:8080/v1/messages', 'model' = 'claude', 'seed' = '7'",
         "line 3, column 174 (option 'seed' of model `m`): model.seed: the anthropic provider has no seed parameter; remove it"),
        ("'endpoint' = 'http://127.0.0.1:8080/v1/chat/completions'", "'endpoint' = 'http://127.0.0.1:8080/v1/embeddings', 'seed' = '7'",
         "line 3, column 130 (option 'seed' of model `m`): model.seed: applies to chat models, not embeddings"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'colour' = 'red'",
         "line 3, column 144: unknown CREATE MODEL option 'colour' (supported: provider, endpoint, api-key, model, system-prompt, temperature, max-tokens, top-p, stop, seed, dimension, task, api-version, anthropic-version, error-handling-strategy, retry-num, retry-fallback-strategy)"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'error-handling-strategy' = 'FAILOVER', 'retry-num' = '3'",
         "line 3, column 184: 'retry-num' applies when 'error-handling-strategy' = 'RETRY'"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'error-handling-strategy' = 'SOMETIMES'",
         "line 3, column 144: 'error-handling-strategy' must be 'RETRY', 'FAILOVER' or 'IGNORE', got 'SOMETIMES'"),
        ("'model' = 'gpt'", "'model' = 'gpt', 'retry-fallback-strategy' = 'LATER'",
         "line 3, column 144: 'retry-fallback-strategy' must be 'FAILOVER' or 'IGNORE', got 'LATER'"),
        ("MAP['ml.batch.size', '5']", "MAP['colour', 'red']",
         "line 4, column 84: unknown ML_PREDICT MAP key 'colour' (Flink's: async, max-concurrent-operations, output-mode, timeout; the FLIP's: batch, batch_number, ml.batch.*)"),
        ("MAP['ml.batch.size', '5']", "MAP['async', 'maybe']",
         "line 4, column 93: MAP key 'async' must be 'true' or 'false', got 'maybe'"),
        ("(id BIGINT, text STRING)", "(id BIGINT NOT NULL, text STRING)",
         "line 1, column 29: NOT NULL is not supported: a column that a record lacks is NULL"),
        ("(id BIGINT, text STRING)", "(id TIMESTAMP(3), text STRING)",
         "line 1, column 22: type TIMESTAMP is not supported (JSON records: STRING, VARCHAR, INT, BIGINT, FLOAT, DOUBLE, BOOLEAN, ARRAY<...>, MAP<...>, ROW<...>)"),
        ("(id BIGINT, text STRING)", "(id BIGINT, text STRING, PRIMARY KEY (id) NOT ENFORCED)",
         "line 1, column 43: PRIMARY in a table's columns is not supported"),
        ("INSERT INTO", "CREATE TABLE extra (a STRING) WITH ('connector' = 'filesystem', 'path' = 'x.jsonl', 'format' = 'json');\nINSERT INTO",
         "line 4, column 14: table `extra` is declared but not used by the INSERT"),
        ("INSERT INTO", "CREATE VIEW v AS SELECT 1;\nINSERT INTO",
         "line 4, column 8: CREATE VIEW is not supported (only CREATE TABLE and CREATE MODEL)"),
        ("INSERT INTO", "SELECT 1;\nINSERT INTO",
         "line 4, column 1: SELECT statements are not supported (only SET, CREATE TABLE, CREATE MODEL and INSERT INTO ... SELECT ... FROM ML_PREDICT(...))"),
        ("INSERT INTO dst", "INSERT INTO cat.db.dst",
         "line 4, column 13: qualified names (catalog.database.cat) are not supported; use a plain name"),
        ("INSERT INTO dst", "INSERT INTO nowhere",
         "line 4, column 13: sink table `nowhere` is not declared (CREATE TABLE nowhere ...)"),
        ("'format' = 'json');\nCREATE TABLE dst", "'format' = 'csv');\nCREATE TABLE dst",
         "line 1, column 109: format 'csv' is not supported (records are JSON: 'format' = 'json')"),
        ("'path' = 'in.jsonl'", "'path' = 'in.jsonl', 'source.monitor-interval' = '1s'",
         "line 1, column 98: option 'source.monitor-interval' is not supported for connector 'filesystem' (supported: path, format)"),
        ("'connector' = 'filesystem', 'path' = 'in.jsonl'", "'connector' = 'kafka', 'topic' = 'in', 'properties.bootstrap.servers' = 'b:9092', 'scan.startup.mode' = 'latest-offset'",
         "line 1, column 131: 'scan.startup.mode' = 'latest-offset' is not yet supported: mlpredict starts from the group's committed offsets, or the earliest offset when it has none ('group-offsets' or 'earliest-offset')"),
        ("'endpoint' = 'http://127.0.0.1:8080/v1/chat/completions'", "'endpoint' = 'http://127.0.0.1:8080/v1/embeddings'",
         "line 3, column 55: the model's task is embeddings (from its endpoint), so its OUTPUT column must be ARRAY<FLOAT>, not STRING"),
        ("'format' = 'json');\nCREATE MODEL", "'format' = 'json', 'path' = 'x');\nCREATE MODEL",
         "line 2, column 137: option 'path' is given twice (first at line 2, column 96)"),
        ("MAP['ml.batch.size', '5']", "MAP['ml.batch.size', '5)",
         "line 4, column 101: Unterminated string literal"),
        ("MODEL m,", "MODEL m, MODEL => MODEL m,",
         "line 4, column 62: ML_PREDICT's MODEL argument is given twice"),
    ];
    let mut failures = Vec::new();
    for (from, to, want) in cases {
        let got = refused(from, to);
        if got != *want {
            failures.push(format!("{to}\n  want: {want}\n  got:  {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

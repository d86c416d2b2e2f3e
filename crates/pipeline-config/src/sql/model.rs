//! `CREATE MODEL` (columns, provider options, error handling) and
//! ML_PREDICT's `DESCRIPTOR` and `MAP[...]` → `model.*`, `ml.predict.*`,
//! `ml.batch.*`, `batch` and `batch_number`.

use super::lower::{Origin, Out};
use super::parse::{Insert, Model, Opt, Table};
use super::types::FlinkType;
use super::SqlError;

/// Flink's openai provider's default system prompt.
const FLINK_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

/// Flink's `retry-num` default.
const FLINK_RETRY_NUM: &str = "100";

/// Options with the same name as the `model.*` key.
const SAME_NAME: &[&str] = &[
    "provider",
    "endpoint",
    "api-key",
    "model",
    "system-prompt",
    "temperature",
    "max-tokens",
    "top-p",
    "stop",
    "seed",
    "dimension",
    "task",
    "api-version",
    "anthropic-version",
];

/// Flink openai options that mlpredict does not send yet.
const NOT_YET: &[&str] = &[
    "presence-penalty",
    "n",
    "response-format",
    "max-context-size",
    "context-overflow-action",
];

fn refuse<T>(at: &Opt, message: String) -> Result<T, SqlError> {
    Err(SqlError::Refused {
        loc: at.key.loc,
        message,
    })
}

/// The model's columns and options; returns its OUTPUT column.
pub(crate) fn lower<'a>(
    m: &'a Model,
    source: &Table,
    insert: &Insert,
    out: &mut Out,
) -> Result<(&'a str, &'a FlinkType), SqlError> {
    let name = &m.name.text;
    let (input, output) = match (m.input.as_slice(), m.output.as_slice()) {
        ([i], [o]) => (i, o),
        _ => {
            return Err(SqlError::Refused {
                loc: m.name.loc,
                message: format!("model `{name}` must have one INPUT column (STRING) and one OUTPUT column (STRING or ARRAY<FLOAT>)"),
            })
        }
    };
    if input.ty != FlinkType::String {
        return Err(SqlError::Refused {
            loc: input.ty_loc,
            message: format!(
                "the INPUT column of model `{name}` must be STRING, not {}",
                input.ty
            ),
        });
    }
    let embedding = FlinkType::Array(Box::new(FlinkType::Float));
    if output.ty != FlinkType::String && output.ty != embedding {
        return Err(SqlError::Refused {
            loc: output.ty_loc,
            message: format!("the OUTPUT column of model `{name}` must be STRING (chat) or ARRAY<FLOAT> (embeddings), not {}", output.ty),
        });
    }
    out.output_type = Some((output.ty.clone(), output.ty_loc));
    if source
        .columns
        .iter()
        .any(|c| c.name.text == output.name.text)
    {
        return Err(SqlError::Refused {
            loc: output.name.loc,
            message: format!("OUTPUT column `{}` of model `{name}` is also a column of table `{}`: ML_PREDICT's output would hold it twice", output.name.text, source.name.text),
        });
    }

    let [col] = insert.descriptor.as_slice() else {
        return Err(SqlError::Refused {
            loc: insert.descriptor[1].loc,
            message: format!("DESCRIPTOR takes one column: model `{name}` has one INPUT column"),
        });
    };
    let Some(source_col) = source.columns.iter().find(|c| c.name.text == col.text) else {
        return Err(SqlError::Refused {
            loc: col.loc,
            message: format!(
                "column `{}` is not a column of table `{}`",
                col.text, source.name.text
            ),
        });
    };
    if source_col.ty != FlinkType::String {
        return Err(SqlError::Refused {
            loc: col.loc,
            message: format!(
                "column `{}` is {}, but the INPUT of model `{name}` is STRING",
                col.text, source_col.ty
            ),
        });
    }
    out.set(
        "model.input",
        &col.text,
        Origin::new(col.loc, "DESCRIPTOR".into()),
    );
    out.set(
        "model.output",
        &output.name.text,
        Origin::new(
            output.name.loc,
            format!("the OUTPUT column of model `{name}`"),
        ),
    );

    let origin = |o: &Opt| {
        Origin::new(
            o.value.loc,
            format!("option '{}' of model `{name}`", o.key.text),
        )
    };
    for o in &m.options {
        let key = o.key.text.as_str();
        if SAME_NAME.contains(&key) {
            out.set(&format!("model.{key}"), &o.value.text, origin(o));
        } else if NOT_YET.contains(&key) {
            return refuse(
                o,
                format!("CREATE MODEL option '{key}' is not yet supported by mlpredict"),
            );
        } else if !matches!(
            key,
            "error-handling-strategy" | "retry-num" | "retry-fallback-strategy"
        ) {
            return refuse(o, format!("unknown CREATE MODEL option '{key}' (supported: {}, error-handling-strategy, retry-num, retry-fallback-strategy)", SAME_NAME.join(", ")));
        }
    }
    if output.ty == FlinkType::String {
        out.fallback(
            "model.system-prompt",
            FLINK_SYSTEM_PROMPT,
            Origin::new(
                m.name.loc,
                format!("Flink's default 'system-prompt' of model `{name}`"),
            ),
        );
    }
    error_handling(m, out)?;
    Ok((&output.name.text, &output.ty))
}

/// Flink's `error-handling-strategy`, `retry-num` and
/// `retry-fallback-strategy`: IGNORE emits a failed row with a NULL output
/// at once; FAILOVER stops the pipeline at it (`pipeline.on-error`);
/// RETRY retries `retry-num` times (default 100), then does what
/// `retry-fallback-strategy` says (default FAILOVER). Without any of them,
/// mlpredict's own default holds: its retry budgets, then the row is
/// emitted as an error (README, "Flink SQL").
fn error_handling(m: &Model, out: &mut Out) -> Result<(), SqlError> {
    let find = |name: &str| m.options.iter().find(|o| o.key.text == name);
    let strategy = find("error-handling-strategy");
    let retry_num = find("retry-num");
    let fallback = find("retry-fallback-strategy");
    let at = |o: &Opt| {
        Origin::new(
            o.value.loc,
            format!("option '{}' of model `{}`", o.key.text, m.name.text),
        )
    };
    let retries = |value: &str, origin: Origin, out: &mut Out| {
        out.set("ml.predict.max-retries", value, origin.clone());
        out.set("ml.batch.max.retries", value, origin);
    };
    let on_error = |value: &str, origin: Origin, out: &mut Out| {
        out.set("pipeline.on-error", value, origin);
    };
    let upper = |o: &Opt| o.value.text.to_ascii_uppercase();
    let only_for_retry = |o: &Opt| {
        refuse(
            o,
            format!(
                "'{}' applies when 'error-handling-strategy' = 'RETRY'",
                o.key.text
            ),
        )
    };
    match strategy.map(upper).as_deref() {
        None if retry_num.is_none() && fallback.is_none() => Ok(()),
        Some(s @ ("IGNORE" | "FAILOVER")) => {
            if let Some(o) = retry_num.or(fallback) {
                return only_for_retry(o);
            }
            let o = strategy.expect("matched");
            retries("0", at(o), out);
            let action = if s == "IGNORE" { "emit" } else { "failover" };
            on_error(action, at(o), out);
            Ok(())
        }
        Some("RETRY") | None => {
            let action = match fallback.map(upper).as_deref() {
                Some("IGNORE") => "emit",
                Some("FAILOVER") | None => "failover",
                Some(_) => {
                    let o = fallback.expect("matched");
                    return refuse(
                        o,
                        format!(
                            "'retry-fallback-strategy' must be 'FAILOVER' or 'IGNORE', got '{}'",
                            o.value.text
                        ),
                    );
                }
            };
            let first = strategy.or(fallback).or(retry_num).expect("one is given");
            on_error(action, at(fallback.unwrap_or(first)), out);
            match retry_num {
                Some(o) => retries(&o.value.text, at(o), out),
                None => retries(FLINK_RETRY_NUM, at(first), out),
            }
            Ok(())
        }
        Some(_) => {
            let o = strategy.expect("matched");
            refuse(
                o,
                format!(
                    "'error-handling-strategy' must be 'RETRY', 'FAILOVER' or 'IGNORE', got '{}'",
                    o.value.text
                ),
            )
        }
    }
}

/// ML_PREDICT's `MAP[...]`.
pub(crate) fn config(insert: &Insert, out: &mut Out) -> Result<(), SqlError> {
    let what = |o: &Opt| {
        Origin::new(
            o.value.loc,
            format!("MAP key '{}' of ML_PREDICT", o.key.text),
        )
    };
    for o in &insert.config {
        let key = o.key.text.as_str();
        let value = o.value.text.as_str();
        match key {
            "max-concurrent-operations" | "output-mode" | "timeout" => {
                out.set(&format!("ml.predict.{key}"), value, what(o))
            }
            // Flink's synchronous ML_PREDICT: one request at a time, in order.
            "async" => match value.to_ascii_lowercase().as_str() {
                "true" => {}
                "false" => {
                    if let Some(c) = insert.config.iter().find(|c| c.key.text == "max-concurrent-operations") {
                        return refuse(c, "'max-concurrent-operations' applies when 'async' = 'true'".into());
                    }
                    out.set("ml.predict.max-concurrent-operations", "1", what(o));
                }
                _ => return Err(SqlError::Refused { loc: o.value.loc, message: format!("MAP key 'async' must be 'true' or 'false', got '{value}'") }),
            },
            "batch" | "batch_number" => out.set(key, value, what(o)),
            k if k.starts_with("ml.batch.") => out.set(k, value, what(o)),
            other => return refuse(o, format!("unknown ML_PREDICT MAP key '{other}' (Flink's: async, max-concurrent-operations, output-mode, timeout; the FLIP's: batch, batch_number, ml.batch.*)")),
        }
    }
    Ok(())
}

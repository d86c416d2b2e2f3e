//! Output records → the sink's rows (`sink.columns`), and Flink's FAILOVER
//! (`pipeline.on-error = "failover"`).
//!
//! It runs on a turn's output lines just before the ledger commits them:
//! the one place the output of both modes and every ledger passes, after
//! the operators built their lines. A pipeline with neither setting has no
//! stage, so its bytes are untouched and it costs nothing.
//!
//! A row holds exactly the declared columns, in their order, each taken
//! from a field of the output record (the input record, the model's output
//! field, `ml_predict`); a field the record lacks is null. Values are
//! copied as they are, never converted; one that does not fit its column's
//! type sends the record to the dead letters with the column and the
//! reason. A `ROW<...>` holds exactly its declared fields too.

use std::collections::HashMap;
use std::fmt::Write as _;

use pipeline_config::{ColumnType, OnError, OutputConfig, SinkColumn, METADATA};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::{Lines, Turn};

/// A record whose request failed while `pipeline.on-error = "failover"`.
#[derive(Debug, thiserror::Error)]
#[error(
    "record {custom_id} failed ({code}: {message}) and the model's 'error-handling-strategy' is FAILOVER (pipeline.on-error = \"failover\"): the pipeline stops; the turn holding it was not committed, so running the same command again resumes there and retries it ('IGNORE' emits such a record with a NULL output instead)"
)]
pub struct Failover {
    pub custom_id: String,
    pub code: String,
    pub message: String,
}

pub struct SinkRows {
    columns: Option<Vec<SinkColumn>>,
    failover: bool,
    /// Dead letters in a Kafka source's shape (partition, offset, key).
    kafka: bool,
    dead_letters: u64,
}

/// A record that does not fit a column.
struct Misfit {
    column: String,
    reason: String,
}

enum Refused {
    Misfit(Misfit),
    Failover(Failover),
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    custom_id: Option<String>,
    #[serde(default)]
    error: Option<MetaError>,
}

#[derive(Deserialize, Default)]
struct MetaError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl SinkRows {
    /// The stage for `output`, or `None` when it has nothing to do.
    pub fn new(output: &OutputConfig, kafka_source: bool) -> Option<Self> {
        let failover = output.on_error == OnError::Failover;
        if output.columns.is_none() && !failover {
            return None;
        }
        Some(SinkRows {
            columns: output.columns.clone(),
            failover,
            kafka: kafka_source,
            dead_letters: 0,
        })
    }

    /// Records sent to the dead letters because a value did not fit.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters
    }

    /// Shape `turn.outputs` from line `from` on (the earlier ones are
    /// shaped already); misfits move to `turn.dead_letters`.
    pub fn apply(&mut self, turn: &mut Turn, from: usize) -> Result<(), Failover> {
        if turn.outputs.len() <= from {
            return Ok(());
        }
        let mut shaped = Lines::default();
        let mut row = Vec::with_capacity(512);
        for (i, (key, line)) in turn.outputs.iter().enumerate() {
            if i < from {
                shaped.push(key, &[line, b"\n"].concat());
                continue;
            }
            row.clear();
            match self.row(line, &mut row) {
                Ok(()) => shaped.push(key, &row),
                Err(Refused::Failover(f)) => return Err(f),
                Err(Refused::Misfit(m)) => {
                    self.dead_letters += 1;
                    metrics::counter!("records_dead_lettered_total").increment(1);
                    tracing::warn!(column = %m.column, reason = %m.reason, "a record does not fit the sink's columns; sent to the dead letters");
                    row.clear();
                    self.dead_letter(key, line, &m, &mut row);
                    turn.dead_letters.push(key, &row);
                }
            }
        }
        turn.outputs = shaped;
        Ok(())
    }

    fn row(&self, line: &[u8], out: &mut Vec<u8>) -> Result<(), Refused> {
        let fields: HashMap<String, &RawValue> = match serde_json::from_slice(line) {
            Ok(f) => f,
            Err(e) => {
                return Err(Refused::Misfit(Misfit {
                    column: String::new(),
                    reason: format!("the output record is not a JSON object: {e}"),
                }))
            }
        };
        if self.failover {
            let meta: Meta = fields
                .get(METADATA)
                .and_then(|m| serde_json::from_str(m.get()).ok())
                .unwrap_or_default();
            if meta.status.as_deref() == Some("error") {
                let error = meta.error.unwrap_or_default();
                return Err(Refused::Failover(Failover {
                    custom_id: meta.custom_id.unwrap_or_default(),
                    code: error.code.unwrap_or_default(),
                    message: error.message.unwrap_or_default(),
                }));
            }
        }
        let Some(columns) = &self.columns else {
            out.extend_from_slice(line);
            out.push(b'\n');
            return Ok(());
        };
        out.push(b'{');
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, &c.name).expect("string into a vec");
            out.push(b':');
            let raw = fields.get(&c.from).copied();
            write_column(c, raw, out).map_err(|reason| {
                Refused::Misfit(Misfit {
                    column: c.name.clone(),
                    reason: format!("column `{}` is {}: {reason}", c.name, c.ty),
                })
            })?;
        }
        out.extend_from_slice(b"}\n");
        Ok(())
    }

    /// `{position, raw, column, error}` (files) or `{partition, offset,
    /// key, raw, column, error}` (Kafka); `raw` is the output record, its
    /// prediction included (it was paid for).
    fn dead_letter(&self, key: Option<&[u8]>, line: &[u8], m: &Misfit, out: &mut Vec<u8>) {
        let custom_id = serde_json::from_slice::<HashMap<String, &RawValue>>(line)
            .ok()
            .and_then(|f| f.get(METADATA).map(|m| m.get().to_string()))
            .and_then(|m| serde_json::from_str::<Meta>(&m).ok())
            .and_then(|m| m.custom_id);
        let (lane, pos) = custom_id
            .as_deref()
            .and_then(|c| c.split_once('-'))
            .and_then(|(l, p)| Some((l.parse::<u64>().ok()?, p.parse::<u64>().ok()?)))
            .unzip();
        let mut head = String::from("{");
        if self.kafka {
            let _ = write!(
                head,
                "\"partition\":{},\"offset\":{},\"key\":",
                json_or_null(lane),
                json_or_null(pos)
            );
            out.extend_from_slice(head.as_bytes());
            let key = key.map(String::from_utf8_lossy);
            let _ = serde_json::to_writer(&mut *out, &key);
        } else {
            let _ = write!(head, "\"position\":{}", json_or_null(pos));
            out.extend_from_slice(head.as_bytes());
        }
        out.extend_from_slice(b",\"raw\":");
        let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(line));
        out.extend_from_slice(b",\"column\":");
        let column = (!m.column.is_empty()).then_some(&m.column);
        let _ = serde_json::to_writer(&mut *out, &column);
        out.extend_from_slice(b",\"error\":");
        let _ = serde_json::to_writer(&mut *out, &m.reason);
        out.extend_from_slice(b"}\n");
    }
}

fn json_or_null(v: Option<u64>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

/// One column's value: the field's bytes as they are when they fit (a
/// `ROW` rewritten to its declared fields), `null` when the field is absent.
fn write_column(c: &SinkColumn, raw: Option<&RawValue>, out: &mut Vec<u8>) -> Result<(), String> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    let text = raw.get();
    // A STRING column of the metadata takes the object as it is: Flink's
    // JSON format reads an object into a STRING column as its JSON text.
    if c.from == METADATA && c.ty == ColumnType::String {
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    if let Some(fits) = scalar_fits(&c.ty, text) {
        fits?;
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    check(&c.ty, &value, &mut String::new())?;
    if has_row(&c.ty) {
        write_shaped(&c.ty, &value, out);
    } else {
        out.extend_from_slice(text.as_bytes());
    }
    Ok(())
}

/// Scalar types checked on the text alone; `None` for the others.
fn scalar_fits(ty: &ColumnType, text: &str) -> Option<Result<(), String>> {
    let ok = match ty {
        ColumnType::String => text.starts_with('"'),
        ColumnType::Boolean => text == "true" || text == "false",
        ColumnType::Int => serde_json::from_str::<i32>(text).is_ok(),
        ColumnType::BigInt => serde_json::from_str::<i64>(text).is_ok(),
        ColumnType::Float | ColumnType::Double => serde_json::from_str::<f64>(text).is_ok(),
        _ => return None,
    };
    Some(if ok {
        Ok(())
    } else {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        Err(format!("got {}", describe(&value)))
    })
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn has_row(ty: &ColumnType) -> bool {
    match ty {
        ColumnType::Row(_) => true,
        ColumnType::Array(t) => has_row(t),
        ColumnType::Map(_, v) => has_row(v),
        _ => false,
    }
}

/// Whether `v` fits `ty`; `at` is the path inside the column, for messages.
fn check(ty: &ColumnType, v: &Value, at: &mut String) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    let fits = match ty {
        ColumnType::String => v.is_string(),
        ColumnType::Boolean => v.is_boolean(),
        ColumnType::Int => v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        ColumnType::BigInt => v.as_i64().is_some(),
        ColumnType::Float | ColumnType::Double => v.is_number(),
        ColumnType::Array(t) => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = at.len();
                    let _ = write!(at, "[{i}]");
                    check(t, item, at)?;
                    at.truncate(len);
                }
                true
            }
            None => false,
        },
        ColumnType::Map(k, t) => match v.as_object() {
            Some(map) => {
                for (key, item) in map {
                    if **k != ColumnType::String {
                        let parsed = serde_json::from_str::<Value>(key).unwrap_or(Value::Null);
                        if parsed.is_null() || check(k, &parsed, &mut String::new()).is_err() {
                            return Err(format!("{at}: the key {key:?} is not a {k}"));
                        }
                    }
                    let len = at.len();
                    let _ = write!(at, "[{key:?}]");
                    check(t, item, at)?;
                    at.truncate(len);
                }
                true
            }
            None => false,
        },
        ColumnType::Row(fields) => match v.as_object() {
            Some(map) => {
                for (name, t) in fields {
                    let len = at.len();
                    let _ = write!(at, ".{name}");
                    check(t, map.get(name).unwrap_or(&Value::Null), at)?;
                    at.truncate(len);
                }
                true
            }
            None => false,
        },
    };
    if fits {
        Ok(())
    } else if at.is_empty() {
        Err(format!("got {}", describe(v)))
    } else {
        Err(format!("{at} should be {ty}, got {}", describe(v)))
    }
}

/// `v` (checked) with every `ROW` holding exactly its declared fields.
fn write_shaped(ty: &ColumnType, v: &Value, out: &mut Vec<u8>) {
    match (ty, v) {
        (ColumnType::Row(fields), Value::Object(map)) => {
            out.push(b'{');
            for (i, (name, t)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, name);
                out.push(b':');
                write_shaped(t, map.get(name).unwrap_or(&Value::Null), out);
            }
            out.push(b'}');
        }
        (ColumnType::Array(t), Value::Array(items)) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_shaped(t, item, out);
            }
            out.push(b']');
        }
        (ColumnType::Map(_, t), Value::Object(map)) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                write_shaped(t, item, out);
            }
            out.push(b'}');
        }
        _ => {
            let _ = serde_json::to_writer(&mut *out, v);
        }
    }
}

#[cfg(test)]
#[path = "sink_rows_tests.rs"]
mod tests;

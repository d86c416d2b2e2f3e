//! `CREATE TABLE ... WITH (...)`: Flink's kafka and filesystem connector
//! options → `source.*` / `sink.*` keys.

use super::lower::{Origin, Out};
use super::parse::{Opt, Table};
use super::SqlError;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Role {
    Source,
    Sink,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Sink => "sink",
        }
    }
}

fn refuse<T>(at: &Opt, message: String) -> Result<T, SqlError> {
    Err(SqlError::Refused {
        loc: at.key.loc,
        message,
    })
}

fn origin(t: &Table, o: &Opt) -> Origin {
    Origin::new(
        o.value.loc,
        format!("option '{}' of table `{}`", o.key.text, t.name.text),
    )
}

pub(crate) fn lower(t: &Table, role: Role, out: &mut Out) -> Result<(), SqlError> {
    let r = role.prefix();
    let find = |name: &str| t.options.iter().find(|o| o.key.text == name);
    let Some(connector) = find("connector") else {
        return Err(SqlError::Refused {
            loc: t.name.loc,
            message: format!(
                "table `{}` has no 'connector' option ('kafka' or 'filesystem')",
                t.name.text
            ),
        });
    };
    match find("format").or_else(|| find("value.format")) {
        Some(f) if f.value.text.eq_ignore_ascii_case("json") => {}
        Some(f) => {
            return Err(SqlError::Refused {
                loc: f.value.loc,
                message: format!(
                    "format '{}' is not supported (records are JSON: 'format' = 'json')",
                    f.value.text
                ),
            })
        }
        None => {
            return Err(SqlError::Refused {
                loc: t.name.loc,
                message: format!("table `{}` needs 'format' = 'json'", t.name.text),
            })
        }
    }
    let kind = connector.value.text.as_str();
    let io = match kind {
        "kafka" => "kafka",
        "filesystem" => "file",
        other => {
            return Err(SqlError::Refused {
                loc: connector.value.loc,
                message: format!(
                    "connector '{other}' is not supported (supported: 'kafka', 'filesystem')"
                ),
            })
        }
    };
    out.set(&format!("{r}.type"), io, origin(t, connector));
    for o in &t.options {
        let key = o.key.text.as_str();
        let value = o.value.text.as_str();
        let at = origin(t, o);
        if matches!(key, "connector" | "format" | "value.format") {
            continue;
        }
        let wrong_role = match role {
            Role::Source => key.starts_with("sink."),
            Role::Sink => key.starts_with("scan.") || key == "properties.group.id",
        };
        if wrong_role {
            let (applies, is) = match role {
                Role::Source => ("a sink table", "the source (read by ML_PREDICT)"),
                Role::Sink => ("a source table", "the sink (written by INSERT INTO)"),
            };
            return refuse(
                o,
                format!(
                    "option '{key}' applies to {applies}; `{}` is {is}",
                    t.name.text
                ),
            );
        }
        match (io, key) {
            ("kafka", "topic") => {
                if role == Role::Sink {
                    out.fallback("sink.dlq.topic", &format!("{value}-dlq"), at.clone());
                }
                out.set(&format!("{r}.topic"), value, at)
            }
            ("kafka", "properties.bootstrap.servers") => {
                out.set(&format!("{r}.bootstrap.servers"), value, at)
            }
            ("kafka", "properties.group.id") => out.set("source.group.id", value, at),
            ("kafka", k) if k.starts_with("properties.") => {
                out.set(&format!("{r}.{}", &k["properties.".len()..]), value, at)
            }
            ("kafka", "scan.startup.mode") => match value {
                // Both read from the group's committed offsets, else from
                // the earliest: what Flink does for a fresh job.
                "group-offsets" | "earliest-offset" => {}
                other => {
                    return refuse(
                        o,
                        format!(
                            "'scan.startup.mode' = '{other}' is not yet supported: mlpredict starts from the group's committed offsets, or the earliest offset when it has none ('group-offsets' or 'earliest-offset')"
                        ),
                    )
                }
            },
            ("kafka", "sink.delivery-guarantee") => match value {
                // Delivery is always exactly-once, which satisfies each.
                "exactly-once" | "at-least-once" | "none" => {}
                other => {
                    return refuse(
                        o,
                        format!("'sink.delivery-guarantee' must be 'exactly-once', 'at-least-once' or 'none', got '{other}'"),
                    )
                }
            },
            // Transactional ids are `mlpredict-{pipeline.name}-{instance}`:
            // the prefix names the pipeline unless SET 'pipeline.name' does.
            ("kafka", "sink.transactional-id-prefix") => out.fallback("pipeline.name", value, at),
            ("file", "path") if role == Role::Sink => sink_path(value, at, out),
            ("file", "path") => out.set("source.path", value, at),
            (_, other) => {
                let supported = if io == "kafka" {
                    "topic, properties.bootstrap.servers, properties.group.id, properties.*, scan.startup.mode, format, sink.delivery-guarantee, sink.transactional-id-prefix"
                } else {
                    "path, format"
                };
                return refuse(
                    o,
                    format!(
                        "option '{other}' is not supported for connector '{kind}' (supported: {supported})"
                    ),
                );
            }
        }
    }
    Ok(())
}

/// A filesystem sink's `path` is, as in Flink, a directory: mlpredict
/// writes one part file in it, `<dir>/part-0.jsonl`, and dead letters
/// beside it, `<dir>-dlq.jsonl`. A path ending in `.jsonl` is a file.
fn sink_path(value: &str, at: Origin, out: &mut Out) {
    if value.ends_with(".jsonl") {
        out.set("sink.path", value, at);
        return;
    }
    let dir = match value.trim_end_matches('/') {
        "" => "/",
        d => d,
    };
    out.set("sink.path", &format!("{dir}/part-0.jsonl"), at.clone());
    out.fallback("sink.dlq.path", &format!("{dir}-dlq.jsonl"), at);
}

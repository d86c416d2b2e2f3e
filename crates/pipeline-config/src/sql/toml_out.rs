//! The flat map as the equivalent `pipeline.toml` (`--explain`).

use std::collections::BTreeMap;

use crate::flat::{Entry, FlatMap, Scalar};
use crate::keys::{self, Kind};

/// Tables in the order of docs/CONFIG.md; others follow alphabetically.
const ORDER: &[&str] = &[
    "pipeline",
    "source",
    "sink",
    "model",
    "ml.batch",
    "ml.predict",
    "metrics",
];

fn table_of(key: &str) -> (&str, &str) {
    for t in ["ml.batch", "ml.predict"] {
        if let Some(rest) = key.strip_prefix(t).and_then(|r| r.strip_prefix('.')) {
            return (t, rest);
        }
    }
    key.split_once('.').unwrap_or(("", key))
}

fn bare(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn key_text(rest: &str) -> String {
    rest.split('.')
        .map(|s| {
            if bare(s) {
                s.to_string()
            } else {
                toml::Value::String(s.to_string()).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn value_text(key: &str, entry: &Entry) -> String {
    let kind = keys::lookup(key).map(|k| k.kind);
    let text = match (&entry.value, &entry.raw) {
        (Scalar::Str(s), _) => s.clone(),
        (_, Some(raw)) => raw.clone(),
        (other, None) => format!("{other:?}"),
    };
    match (&entry.value, kind) {
        (Scalar::Int(i), Some(Kind::Int { .. } | Kind::Float { .. } | Kind::Bytes)) => {
            i.to_string()
        }
        (Scalar::Float(f), Some(Kind::Float { .. })) => toml::Value::Float(*f).to_string(),
        (Scalar::Bool(b), Some(Kind::Bool)) => b.to_string(),
        (_, Some(Kind::Secret)) if !text.contains("${") => {
            "\"***\"  # the literal key in the SQL is not shown".into()
        }
        _ => toml::Value::String(text).to_string(),
    }
}

pub(crate) fn write(map: &FlatMap) -> String {
    let mut tables: BTreeMap<&str, Vec<(&str, &Entry)>> = BTreeMap::new();
    for (key, entry) in map {
        let (table, _) = table_of(key);
        tables.entry(table).or_default().push((key, entry));
    }
    let mut names: Vec<&str> = tables.keys().copied().collect();
    names.sort_by_key(|n| {
        (
            !n.is_empty(),
            ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()),
            n.to_string(),
        )
    });
    let mut out =
        String::from("# pipeline.toml equivalent of the SQL script (mlpredict sql --explain)\n");
    for name in names {
        if !name.is_empty() {
            out.push_str(&format!("\n[{name}]\n"));
        }
        for (key, entry) in &tables[name] {
            let (_, rest) = table_of(key);
            out.push_str(&format!(
                "{} = {}\n",
                key_text(rest),
                value_text(key, entry)
            ));
        }
    }
    out
}

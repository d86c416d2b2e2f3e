//! `sink.columns`: the rows a sink receives, as a Flink sink table declares
//! them, and `pipeline.on-error`. Written `name TYPE [FROM field], ...` in
//! Flink SQL types; the SQL front end compiles a sink table and the
//! INSERT's projection to it, and a pipeline.toml may give it by hand.

use std::fmt;

use sqlparser::tokenizer::Token;

use crate::sql::cursor::Cursor;
use crate::sql::types;
pub use crate::sql::types::FlinkType as ColumnType;

/// The metadata field mlpredict adds to each output record.
pub const METADATA: &str = "ml_predict";

/// One column of the sink's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkColumn {
    pub name: String,
    pub ty: ColumnType,
    /// The field of the output record (the input record, the model's output
    /// field and `ml_predict`) the column takes its value from.
    pub from: String,
}

/// `pipeline.on-error`: what a record whose request failed for good
/// becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Emitted with a null output and `ml_predict.status = "error"`
    /// (Flink's IGNORE).
    Emit,
    /// The run stops at it, its turn not committed (Flink's FAILOVER).
    Failover,
}

/// How output records become sink rows.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputConfig {
    /// `None`: each row is the output record as it is.
    pub columns: Option<Vec<SinkColumn>>,
    pub on_error: OnError,
}

fn bare(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.eq_ignore_ascii_case("from")
}

/// A name as the column list writes it: backquoted unless plain.
pub(crate) fn quote(name: &str) -> String {
    if bare(name) {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

impl fmt::Display for SinkColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", quote(&self.name), self.ty)?;
        if self.from != self.name {
            write!(f, " FROM {}", quote(&self.from))?;
        }
        Ok(())
    }
}

/// The column list as `sink.columns` holds it.
pub fn write(columns: &[SinkColumn]) -> String {
    columns
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse `name TYPE [FROM field], ...`; the message says where it is wrong.
pub fn parse(text: &str) -> Result<Vec<SinkColumn>, String> {
    let located = |e: crate::SqlError| match e {
        crate::SqlError::Refused { loc, message } => {
            format!("at column {}: {message}", loc.column)
        }
        other => other.to_string(),
    };
    let mut c = Cursor::new(text).map_err(located)?;
    let mut out: Vec<SinkColumn> = Vec::new();
    loop {
        let name = c.ident("a column name").map_err(located)?;
        let ty = types::parse(&mut c).map_err(located)?;
        let from = if c.eat_word("FROM") {
            c.ident("the field the column is taken from")
                .map_err(located)?
                .text
        } else {
            name.text.clone()
        };
        if out.iter().any(|o| o.name == name.text) {
            return Err(format!("column `{}` is given twice", name.text));
        }
        if from == METADATA && !matches!(ty, ColumnType::String | ColumnType::Row(_)) {
            return Err(format!(
                "column `{}` takes the `{METADATA}` metadata object: its type must be STRING or ROW<...>, not {ty}",
                name.text
            ));
        }
        out.push(SinkColumn {
            name: name.text,
            ty,
            from,
        });
        if !c.eat(&Token::Comma) {
            break;
        }
    }
    if !c.at_end() {
        return c
            .refuse(format!("expected `,` or the end, found {}", c.found()))
            .map_err(located);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_lists_round_trip() {
        let text = "id BIGINT, review STRING FROM `text`, `my col` ARRAY<FLOAT> FROM prediction, ml_predict ROW<`status` STRING>";
        let cols = parse(text).unwrap();
        assert_eq!(cols.len(), 4);
        assert_eq!(cols[1].from, "text");
        assert_eq!(cols[2].name, "my col");
        assert_eq!(parse(&write(&cols)).unwrap(), cols);
    }

    #[test]
    fn bad_column_lists_say_where() {
        for (text, want) in [
            ("id BIGINT,", "at column 11: expected a column name"),
            ("id NUMBER", "at column 4: type NUMBER is not supported"),
            ("id INT id2 INT", "at column 8: expected `,` or the end"),
            ("a INT, a STRING", "column `a` is given twice"),
            (
                "m INT FROM ml_predict",
                "column `m` takes the `ml_predict` metadata object",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }
}

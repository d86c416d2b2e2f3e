//! Flink column types of the subset: what JSON records hold.

use std::fmt;

use sqlparser::tokenizer::Token;

use super::cursor::Cursor;
use super::SqlError;

/// A column type of the subset (Flink SQL's names).
#[derive(Debug, Clone, PartialEq)]
pub enum FlinkType {
    String,
    Int,
    BigInt,
    Float,
    Double,
    Boolean,
    Array(Box<FlinkType>),
    Map(Box<FlinkType>, Box<FlinkType>),
    Row(Vec<(String, FlinkType)>),
}

impl fmt::Display for FlinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlinkType::String => f.write_str("STRING"),
            FlinkType::Int => f.write_str("INT"),
            FlinkType::BigInt => f.write_str("BIGINT"),
            FlinkType::Float => f.write_str("FLOAT"),
            FlinkType::Double => f.write_str("DOUBLE"),
            FlinkType::Boolean => f.write_str("BOOLEAN"),
            FlinkType::Array(t) => write!(f, "ARRAY<{t}>"),
            FlinkType::Map(k, v) => write!(f, "MAP<{k}, {v}>"),
            FlinkType::Row(fields) => {
                f.write_str("ROW<")?;
                for (i, (name, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{name}` {t}")?;
                }
                f.write_str(">")
            }
        }
    }
}

const SUPPORTED: &str =
    "STRING, VARCHAR, INT, BIGINT, FLOAT, DOUBLE, BOOLEAN, ARRAY<...>, MAP<...>, ROW<...>";

pub(crate) fn parse(c: &mut Cursor) -> Result<FlinkType, SqlError> {
    let Some(word) = c.peek_word() else {
        return c.refuse(format!("expected a column type, found {}", c.found()));
    };
    let ty = match word.as_str() {
        "STRING" => FlinkType::String,
        "VARCHAR" => {
            c.next();
            if c.eat(&Token::LParen)
                && (!matches!(c.next(), Token::Number(..)) || !c.eat(&Token::RParen))
            {
                return c.refuse("expected VARCHAR(n)");
            }
            return Ok(FlinkType::String);
        }
        "INT" | "INTEGER" => FlinkType::Int,
        "BIGINT" => FlinkType::BigInt,
        "FLOAT" => FlinkType::Float,
        "DOUBLE" => FlinkType::Double,
        "BOOLEAN" => FlinkType::Boolean,
        "ARRAY" => {
            c.next();
            c.expect(&Token::Lt)?;
            let elem = parse(c)?;
            c.expect(&Token::Gt)?;
            return Ok(FlinkType::Array(Box::new(elem)));
        }
        "MAP" => {
            c.next();
            c.expect(&Token::Lt)?;
            let k = parse(c)?;
            c.expect(&Token::Comma)?;
            let v = parse(c)?;
            c.expect(&Token::Gt)?;
            return Ok(FlinkType::Map(Box::new(k), Box::new(v)));
        }
        "ROW" => {
            c.next();
            // Flink writes both ROW<a INT> and ROW(a INT).
            let close = if c.eat(&Token::Lt) {
                Token::Gt
            } else {
                c.expect(&Token::LParen)?;
                Token::RParen
            };
            let mut fields = Vec::new();
            loop {
                let name = c.ident("a field name")?;
                fields.push((name.text, parse(c)?));
                if !c.eat(&Token::Comma) {
                    break;
                }
            }
            c.expect(&close)?;
            return Ok(FlinkType::Row(fields));
        }
        other => {
            return c.refuse(format!(
                "type {other} is not supported (JSON records: {SUPPORTED})"
            ))
        }
    };
    c.next();
    Ok(ty)
}

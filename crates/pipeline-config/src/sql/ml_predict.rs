//! `ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(c) [, MAP[...]])`, positional
//! or with Flink's named arguments `INPUT =>`, `MODEL =>`, `ARGS =>`,
//! `CONFIG =>` (in any order).

use sqlparser::tokenizer::Token;

use super::cursor::{Cursor, Spanned};
use super::parse::Opt;
use super::SqlError;

type Call = (Spanned, Spanned, Vec<Spanned>, Vec<Opt>);

#[derive(Clone, Copy, PartialEq)]
enum Arg {
    Input,
    Model,
    Args,
    Config,
}

impl Arg {
    fn name(self) -> &'static str {
        match self {
            Arg::Input => "INPUT",
            Arg::Model => "MODEL",
            Arg::Args => "ARGS",
            Arg::Config => "CONFIG",
        }
    }
}

pub(crate) fn call(c: &mut Cursor) -> Result<Call, SqlError> {
    let loc = c.loc();
    if !c.eat_word("ML_PREDICT") {
        if c.peek_word().as_deref() == Some("TABLE") {
            return c.refuse("FROM TABLE(...) is not supported; write FROM ML_PREDICT(...)");
        }
        return c.refuse(format!(
            "FROM {} is not supported: the query reads FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(col))",
            c.found()
        ));
    }
    c.expect(&Token::LParen)?;
    let mut table = None;
    let mut model = None;
    let mut descriptor = None;
    let mut config = None;
    let order = [Arg::Input, Arg::Model, Arg::Args, Arg::Config];
    let mut index = 0;
    loop {
        let arg_loc = c.loc();
        let named = named(c)?;
        let arg = match named {
            Some(a) => a,
            None => match order.get(index) {
                Some(a) => *a,
                None => return c.refuse("ML_PREDICT takes at most 4 arguments"),
            },
        };
        index += 1;
        let seen = match arg {
            Arg::Input => table.is_some(),
            Arg::Model => model.is_some(),
            Arg::Args => descriptor.is_some(),
            Arg::Config => config.is_some(),
        };
        if seen {
            return Err(SqlError::Refused {
                loc: arg_loc,
                message: format!("ML_PREDICT's {} argument is given twice", arg.name()),
            });
        }
        match arg {
            Arg::Input => {
                expect_kind(c, "TABLE", arg)?;
                table = Some(c.ident("the input table's name")?);
            }
            Arg::Model => {
                expect_kind(c, "MODEL", arg)?;
                model = Some(c.ident("the model's name")?);
            }
            Arg::Args => {
                expect_kind(c, "DESCRIPTOR", arg)?;
                c.expect(&Token::LParen)?;
                let mut cols = vec![c.ident("a column name")?];
                while c.eat(&Token::Comma) {
                    cols.push(c.ident("a column name")?);
                }
                c.expect(&Token::RParen)?;
                descriptor = Some(cols);
            }
            Arg::Config => {
                expect_kind(c, "MAP", arg)?;
                config = Some(map(c)?);
            }
        }
        if !c.eat(&Token::Comma) {
            break;
        }
    }
    c.expect(&Token::RParen)?;
    let missing = |what: &str| -> Result<Call, SqlError> {
        Err(SqlError::Refused {
            loc,
            message: format!("ML_PREDICT needs {what}"),
        })
    };
    let Some(table) = table else {
        return missing("an input table (TABLE t)");
    };
    let Some(model) = model else {
        return missing("a model (MODEL m)");
    };
    let Some(descriptor) = descriptor else {
        return missing("the input column (DESCRIPTOR(col))");
    };
    Ok((table, model, descriptor, config.unwrap_or_default()))
}

/// `NAME =>`, if the next argument is named.
fn named(c: &mut Cursor) -> Result<Option<Arg>, SqlError> {
    let Some(word) = c.peek_word() else {
        return Ok(None);
    };
    let arg = match word.as_str() {
        "INPUT" => Arg::Input,
        "MODEL" => Arg::Model,
        "ARGS" => Arg::Args,
        "CONFIG" => Arg::Config,
        _ => return Ok(None),
    };
    let loc = c.loc();
    c.next();
    if c.eat(&Token::RArrow) {
        return Ok(Some(arg));
    }
    if arg == Arg::Model {
        // `MODEL m`: positional, the word belongs to the argument.
        c.rewind();
        return Ok(None);
    }
    Err(SqlError::Refused {
        loc,
        message: format!("expected `=>` after ML_PREDICT's argument name {word}"),
    })
}

fn expect_kind(c: &mut Cursor, word: &str, arg: Arg) -> Result<(), SqlError> {
    if c.eat_word(word) {
        return Ok(());
    }
    let example = match arg {
        Arg::Input => "TABLE t",
        Arg::Model => "MODEL m",
        Arg::Args => "DESCRIPTOR(col)",
        Arg::Config => "MAP['key', 'value', ...]",
    };
    c.refuse(format!(
        "ML_PREDICT's {} argument must be {example}, found {}",
        arg.name(),
        c.found()
    ))
}

/// `MAP['k', 'v', ...]`: keys are strings, values string, number or
/// boolean literals.
fn map(c: &mut Cursor) -> Result<Vec<Opt>, SqlError> {
    super::parse::pairs(c, (&Token::LBracket, &Token::RBracket), "MAP key", |c| {
        let key = c.string("the MAP key")?;
        if !c.eat(&Token::Comma) {
            return c.refuse(format!(
                "MAP key '{}' has no value (MAP[...] holds key, value pairs)",
                key.text
            ));
        }
        let value = c.literal("the MAP value")?;
        Ok(Opt { key, value })
    })
}

//! The statements of the subset: `SET`, `CREATE TABLE`, `CREATE [TEMPORARY]
//! MODEL` and `INSERT INTO ... SELECT ... FROM ML_PREDICT(...)`. Anything
//! else is refused where it starts, naming the construct.

use sqlparser::tokenizer::Token;

use super::cursor::{Cursor, Spanned};
use super::types::{self, FlinkType};
use super::{Loc, SqlError};

#[derive(Debug)]
pub(crate) struct Column {
    pub name: Spanned,
    pub ty: FlinkType,
    pub ty_loc: Loc,
}

/// `'key' = 'value'` of a WITH clause, SET or MAP.
#[derive(Debug, Clone)]
pub(crate) struct Opt {
    pub key: Spanned,
    pub value: Spanned,
}

#[derive(Debug)]
pub(crate) struct Table {
    pub name: Spanned,
    pub columns: Vec<Column>,
    pub options: Vec<Opt>,
}

#[derive(Debug)]
pub(crate) struct Model {
    pub name: Spanned,
    pub input: Vec<Column>,
    pub output: Vec<Column>,
    pub options: Vec<Opt>,
}

#[derive(Debug)]
pub(crate) enum Projection {
    Star,
    Columns(Vec<Spanned>),
}

#[derive(Debug)]
pub(crate) struct Insert {
    pub loc: Loc,
    pub sink: Spanned,
    pub projection: Projection,
    pub table: Spanned,
    pub model: Spanned,
    pub descriptor: Vec<Spanned>,
    pub config: Vec<Opt>,
}

#[derive(Debug)]
pub(crate) enum Statement {
    Set(Opt),
    Table(Table),
    Model(Model),
    Insert(Insert),
}

pub(crate) fn statements(sql: &str) -> Result<Vec<Statement>, SqlError> {
    let mut c = Cursor::new(sql)?;
    let mut out = Vec::new();
    loop {
        while c.eat(&Token::SemiColon) {}
        if c.at_end() {
            return Ok(out);
        }
        let statement = match c.peek_word().as_deref() {
            Some("SET") => set(&mut c)?,
            Some("CREATE") => create(&mut c)?,
            Some("INSERT") => Statement::Insert(insert(&mut c)?),
            Some(w) => return c.refuse(format!("{w} statements are not supported (only SET, CREATE TABLE, CREATE MODEL and INSERT INTO ... SELECT ... FROM ML_PREDICT(...))")),
            None => return c.refuse(format!("expected a statement, found {}", c.found())),
        };
        out.push(statement);
    }
}

fn set(c: &mut Cursor) -> Result<Statement, SqlError> {
    c.expect_word("SET")?;
    let key = c.string("the key")?;
    c.expect(&Token::Eq)?;
    let value = c.string("the value")?;
    c.end_statement("SET")?;
    Ok(Statement::Set(Opt { key, value }))
}

fn create(c: &mut Cursor) -> Result<Statement, SqlError> {
    c.expect_word("CREATE")?;
    // Flink's TEMPORARY lives for the session: here, every object does.
    c.eat_word("TEMPORARY");
    if c.peek_word().as_deref() == Some("OR") {
        return c.refuse("CREATE OR REPLACE is not supported");
    }
    if c.eat_word("TABLE") {
        refuse_if_not_exists(c)?;
        let name = c.ident("a table name")?;
        let columns = columns(c, "table")?;
        for word in ["COMMENT", "PARTITIONED", "DISTRIBUTED", "LIKE"] {
            if c.peek_word().as_deref() == Some(word) {
                return c.refuse(format!("{word} in CREATE TABLE is not supported"));
            }
        }
        let options = with(c, "CREATE TABLE")?;
        c.end_statement("CREATE TABLE")?;
        return Ok(Statement::Table(Table {
            name,
            columns,
            options,
        }));
    }
    if c.eat_word("MODEL") {
        refuse_if_not_exists(c)?;
        let name = c.ident("a model name")?;
        c.expect_word("INPUT")?;
        let input = columns(c, "model")?;
        c.expect_word("OUTPUT")?;
        let output = columns(c, "model")?;
        if c.peek_word().as_deref() == Some("COMMENT") {
            return c.refuse("COMMENT in CREATE MODEL is not supported");
        }
        let options = with(c, "CREATE MODEL")?;
        c.end_statement("CREATE MODEL")?;
        return Ok(Statement::Model(Model {
            name,
            input,
            output,
            options,
        }));
    }
    match c.peek_word() {
        Some(w) => c.refuse(format!(
            "CREATE {w} is not supported (only CREATE TABLE and CREATE MODEL)"
        )),
        None => c.refuse(format!("expected TABLE or MODEL, found {}", c.found())),
    }
}

fn refuse_if_not_exists(c: &mut Cursor) -> Result<(), SqlError> {
    if c.peek_word().as_deref() == Some("IF") {
        return c.refuse("IF NOT EXISTS is not supported: every statement creates what it names");
    }
    Ok(())
}

/// `(name TYPE, ...)`; constraints, computed and metadata columns and
/// watermarks are refused.
fn columns(c: &mut Cursor, of: &str) -> Result<Vec<Column>, SqlError> {
    c.expect(&Token::LParen)?;
    let mut out: Vec<Column> = Vec::new();
    loop {
        for word in ["PRIMARY", "WATERMARK", "CONSTRAINT", "UNIQUE", "FOREIGN"] {
            if c.peek_word().as_deref() == Some(word) {
                return c.refuse(format!("{word} in a {of}'s columns is not supported"));
            }
        }
        let name = c.ident("a column name")?;
        if out.iter().any(|col| col.name.text == name.text) {
            return Err(SqlError::Refused {
                loc: name.loc,
                message: format!("column `{}` is declared twice", name.text),
            });
        }
        let ty_loc = c.loc();
        let ty = types::parse(c)?;
        match c.peek_word().as_deref() {
            Some("NOT") => {
                return c.refuse("NOT NULL is not supported: a column that a record lacks is NULL")
            }
            Some(w @ ("METADATA" | "AS" | "COMMENT" | "PRIMARY" | "NULL")) => {
                return c.refuse(format!("{w} on a column is not supported"))
            }
            _ => {}
        }
        out.push(Column { name, ty, ty_loc });
        if !c.eat(&Token::Comma) {
            break;
        }
    }
    c.expect(&Token::RParen)?;
    Ok(out)
}

/// `WITH ('k' = 'v', ...)`.
fn with(c: &mut Cursor, statement: &str) -> Result<Vec<Opt>, SqlError> {
    if !c.eat_word("WITH") {
        return c.refuse(format!(
            "expected WITH (...) with the options of {statement}, found {}",
            c.found()
        ));
    }
    pairs(c, (&Token::LParen, &Token::RParen), "option", |c| {
        let key = c.string("the option's name")?;
        c.expect(&Token::Eq)?;
        let value = c.string("the option's value")?;
        Ok(Opt { key, value })
    })
}

/// A bracketed, comma-separated list of key/value pairs (`what` names a
/// key in messages); a key given twice is refused.
pub(crate) fn pairs(
    c: &mut Cursor,
    (open, close): (&Token, &Token),
    what: &str,
    pair: impl Fn(&mut Cursor) -> Result<Opt, SqlError>,
) -> Result<Vec<Opt>, SqlError> {
    c.expect(open)?;
    let mut out: Vec<Opt> = Vec::new();
    if c.eat(close) {
        return Ok(out);
    }
    loop {
        let opt = pair(c)?;
        if let Some(first) = out.iter().find(|o| o.key.text == opt.key.text) {
            return Err(SqlError::Refused {
                loc: opt.key.loc,
                message: format!(
                    "{what} '{}' is given twice (first at {})",
                    opt.key.text, first.key.loc
                ),
            });
        }
        out.push(opt);
        if !c.eat(&Token::Comma) {
            break;
        }
    }
    c.expect(close)?;
    Ok(out)
}

fn insert(c: &mut Cursor) -> Result<Insert, SqlError> {
    let loc = c.loc();
    c.expect_word("INSERT")?;
    if c.peek_word().as_deref() == Some("OVERWRITE") {
        return c.refuse("INSERT OVERWRITE is not supported (use INSERT INTO)");
    }
    c.expect_word("INTO")?;
    let sink = c.ident("the sink table's name")?;
    if c.peek() == &Token::LParen {
        return c.refuse("a column list after INSERT INTO is not supported");
    }
    c.expect_word("SELECT")?;
    let projection = projection(c)?;
    c.expect_word("FROM")?;
    let (table, model, descriptor, config) = super::ml_predict::call(c)?;
    if let Some(
        w @ ("WHERE" | "JOIN" | "LEFT" | "RIGHT" | "INNER" | "FULL" | "CROSS" | "GROUP" | "ORDER"
        | "LIMIT" | "UNION" | "HAVING" | "WINDOW" | "AS"),
    ) = c.peek_word().as_deref()
    {
        return c.refuse(format!(
            "{w} is not supported: the query is SELECT ... FROM ML_PREDICT(...) alone"
        ));
    }
    if c.peek() == &Token::Comma {
        return c.refuse("a second table in FROM (a join) is not supported");
    }
    c.end_statement("INSERT INTO ... SELECT ... FROM ML_PREDICT(...)")?;
    Ok(Insert {
        loc,
        sink,
        projection,
        table,
        model,
        descriptor,
        config,
    })
}

fn projection(c: &mut Cursor) -> Result<Projection, SqlError> {
    if c.peek_word().as_deref() == Some("DISTINCT") {
        return c.refuse("SELECT DISTINCT is not supported");
    }
    if c.eat(&Token::Mul) {
        return Ok(Projection::Star);
    }
    let mut cols = Vec::new();
    loop {
        let col = c.ident("a column name or *")?;
        // An alias names the query's column; INSERT INTO maps columns to
        // the sink's by position, so it changes nothing there.
        let bare_alias =
            matches!(c.peek(), Token::Word(w) if !w.value.eq_ignore_ascii_case("FROM"));
        if c.eat_word("AS") || bare_alias {
            c.ident("the column's new name")?;
        }
        match c.peek() {
            Token::Comma => {}
            Token::Word(w) if w.value.eq_ignore_ascii_case("FROM") => {}
            _ => {
                return c.refuse(format!(
                    "expressions in the projection are not supported (after `{}`: {})",
                    col.text,
                    c.found()
                ))
            }
        }
        cols.push(col);
        if !c.eat(&Token::Comma) {
            return Ok(Projection::Columns(cols));
        }
    }
}

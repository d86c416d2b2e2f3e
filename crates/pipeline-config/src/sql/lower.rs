//! The statements → flat `key = value` settings, each with the place in the
//! SQL it came from. The statements are checked against each other here
//! (names resolve, columns and types fit); values are checked by the one
//! validation of the flat map, shared with pipeline.toml.

use super::connector::{self, Role};
use super::model;
use super::parse::{Insert, Model, Opt, Projection, Statement, Table};
use super::types::FlinkType;
use super::{Loc, SqlError};
use crate::{SinkColumn, METADATA};

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub loc: Loc,
    /// The SQL construct, e.g. `option 'topic' of table `reviews``.
    pub what: String,
}

impl Origin {
    pub(crate) fn new(loc: Loc, what: String) -> Self {
        Origin { loc, what }
    }
}

pub(crate) struct Setting {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

#[derive(Default)]
pub(crate) struct Out {
    /// In statement order; a later one wins, as with repeated `-D`.
    pub settings: Vec<Setting>,
    /// Used only when nothing sets the key.
    pub defaults: Vec<Setting>,
    /// Key prefix → the statement that configures it, for errors about a
    /// key the SQL does not set (a missing option).
    pub sections: Vec<(&'static str, Origin)>,
    /// The model's OUTPUT column type and where it is written: it must fit
    /// the task, which is known only after validation.
    pub output_type: Option<(FlinkType, Loc)>,
}

impl Out {
    pub fn set(&mut self, key: &str, value: &str, origin: Origin) {
        self.settings.push(Setting {
            key: key.to_string(),
            value: value.to_string(),
            origin,
        });
    }

    /// The first default given for a key wins.
    pub fn fallback(&mut self, key: &str, value: &str, origin: Origin) {
        if !self.defaults.iter().any(|d| d.key == key) {
            self.defaults.push(Setting {
                key: key.to_string(),
                value: value.to_string(),
                origin,
            });
        }
    }
}

fn refused<T>(loc: Loc, message: String) -> Result<T, SqlError> {
    Err(SqlError::Refused { loc, message })
}

/// Flink's `table.exec.async-ml-predict.*` → mlpredict's `ml.predict.*`.
fn set_key(key: &str) -> String {
    match key.strip_prefix("table.exec.async-ml-predict.") {
        Some(rest @ ("max-concurrent-operations" | "timeout" | "output-mode")) => {
            format!("ml.predict.{rest}")
        }
        _ => key.to_string(),
    }
}

pub(crate) fn lower(statements: Vec<Statement>) -> Result<Out, SqlError> {
    let mut out = Out::default();
    let mut tables: Vec<Table> = Vec::new();
    let mut models: Vec<Model> = Vec::new();
    let mut insert: Option<Insert> = None;
    for s in statements {
        match s {
            Statement::Set(Opt { key, value }) => out.set(
                &set_key(&key.text),
                &value.text,
                Origin::new(value.loc, format!("SET '{}'", key.text)),
            ),
            Statement::Table(t) => {
                if let Some(first) = tables.iter().find(|x| x.name.text == t.name.text) {
                    return refused(
                        t.name.loc,
                        format!(
                            "table `{}` is already declared at {}",
                            t.name.text, first.name.loc
                        ),
                    );
                }
                tables.push(t);
            }
            Statement::Model(m) => {
                if let Some(first) = models.iter().find(|x| x.name.text == m.name.text) {
                    return refused(
                        m.name.loc,
                        format!(
                            "model `{}` is already declared at {}",
                            m.name.text, first.name.loc
                        ),
                    );
                }
                models.push(m);
            }
            Statement::Insert(i) => {
                if insert.is_some() {
                    return refused(
                        i.loc,
                        "a second INSERT is not supported: a script runs one INSERT INTO ... SELECT ... FROM ML_PREDICT(...)".into(),
                    );
                }
                insert = Some(i);
            }
        }
    }
    let Some(insert) = insert else {
        return refused(
            Loc { line: 1, column: 1 },
            "the script has no INSERT INTO ... SELECT ... FROM ML_PREDICT(...)".into(),
        );
    };
    let find_table = |name: &super::cursor::Spanned, what: &str| {
        tables
            .iter()
            .find(|t| t.name.text == name.text)
            .ok_or_else(|| SqlError::Refused {
                loc: name.loc,
                message: format!(
                    "{what} `{}` is not declared (CREATE TABLE {} ...)",
                    name.text, name.text
                ),
            })
    };
    let source = find_table(&insert.table, "table")?;
    let sink = find_table(&insert.sink, "sink table")?;
    if source.name.text == sink.name.text {
        return refused(
            insert.sink.loc,
            format!("table `{}` is both the input and the sink", sink.name.text),
        );
    }
    let Some(model) = models.iter().find(|m| m.name.text == insert.model.text) else {
        return refused(
            insert.model.loc,
            format!(
                "model `{}` is not declared (CREATE MODEL {} ...)",
                insert.model.text, insert.model.text
            ),
        );
    };
    for t in &tables {
        if t.name.text != source.name.text && t.name.text != sink.name.text {
            return refused(
                t.name.loc,
                format!(
                    "table `{}` is declared but not used by the INSERT",
                    t.name.text
                ),
            );
        }
    }
    for m in &models {
        if m.name.text != model.name.text {
            return refused(
                m.name.loc,
                format!(
                    "model `{}` is declared but not used by the INSERT",
                    m.name.text
                ),
            );
        }
    }

    let statement = |t: &Table| Origin::new(t.name.loc, format!("CREATE TABLE `{}`", t.name.text));
    out.sections.push(("source.", statement(source)));
    out.sections.push(("sink.", statement(sink)));
    out.sections.push((
        "model.",
        Origin::new(
            model.name.loc,
            format!("CREATE MODEL `{}`", model.name.text),
        ),
    ));
    out.sections
        .push(("", Origin::new(insert.loc, "INSERT INTO".into())));

    connector::lower(source, Role::Source, &mut out)?;
    connector::lower(sink, Role::Sink, &mut out)?;
    let output = model::lower(model, source, &insert, &mut out)?;
    columns(source, sink, &insert, output, &mut out)?;
    model::config(&insert, &mut out)?;
    // Flink names a job after its sink; so does mlpredict, for its state.
    let name = &sink.name.text;
    if !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        out.fallback(
            "pipeline.name",
            name,
            Origin::new(insert.sink.loc, format!("the sink table's name `{name}`")),
        );
    }
    Ok(out)
}

/// Whether a query column of type `from` may go into a sink column of
/// type `to`: the same type, or Flink's implicit widening of numbers.
fn fits(from: &FlinkType, to: &FlinkType) -> bool {
    from == to
        || matches!(
            (from, to),
            (FlinkType::Int, FlinkType::BigInt) | (FlinkType::Float, FlinkType::Double)
        )
}

/// ML_PREDICT's output is the input table's columns, then the model's
/// OUTPUT column, as in Flink; the projection selects from it, and INSERT
/// INTO maps the query's columns to the sink's by position. A sink column
/// named `ml_predict` is outside that mapping: it takes mlpredict's
/// metadata object. The result is `sink.columns`: each sink column, its
/// type (the query's where it widens), and the field it is taken from.
fn columns(
    source: &Table,
    sink: &Table,
    insert: &Insert,
    output: (&str, &FlinkType),
    out: &mut Out,
) -> Result<(), SqlError> {
    if let Some(c) = source.columns.iter().find(|c| c.name.text == METADATA) {
        return refused(
            c.name.loc,
            format!(
                "column `{METADATA}` of table `{}`: the name is mlpredict's metadata field",
                source.name.text
            ),
        );
    }
    let mut available: Vec<(&str, &FlinkType)> = source
        .columns
        .iter()
        .map(|c| (c.name.text.as_str(), &c.ty))
        .collect();
    available.push(output);
    let selected: Vec<(&str, &FlinkType)> = match &insert.projection {
        Projection::Star => available.clone(),
        Projection::Columns(cols) => {
            let mut selected = Vec::with_capacity(cols.len());
            for c in cols {
                let Some(found) = available.iter().find(|(n, _)| *n == c.text) else {
                    return refused(
                        c.loc,
                        format!(
                            "column `{}` is neither a column of table `{}` nor the OUTPUT column of model `{}` (ML_PREDICT's output: {})",
                            c.text,
                            source.name.text,
                            insert.model.text,
                            names(&available)
                        ),
                    );
                };
                selected.push(*found);
            }
            selected
        }
    };
    let targets: Vec<&super::parse::Column> = sink
        .columns
        .iter()
        .filter(|c| c.name.text != METADATA)
        .collect();
    if let Some(meta) = sink.columns.iter().find(|c| c.name.text == METADATA) {
        if !matches!(meta.ty, FlinkType::String | FlinkType::Row(_)) {
            return refused(meta.ty_loc, "column `ml_predict` receives mlpredict's metadata object: declare it STRING or ROW<...>".into());
        }
    }
    if targets.len() != selected.len() {
        let sink_names: Vec<(&str, &FlinkType)> = targets
            .iter()
            .map(|c| (c.name.text.as_str(), &c.ty))
            .collect();
        return refused(
            insert.sink.loc,
            format!(
                "the query has {} columns ({}) but sink table `{}` has {} ({}) besides `ml_predict`: INSERT INTO maps the query's columns to the sink's by position",
                selected.len(),
                names(&selected),
                sink.name.text,
                targets.len(),
                names(&sink_names)
            ),
        );
    }
    let mut paired = targets.iter().zip(&selected);
    let mut list = Vec::with_capacity(sink.columns.len());
    for col in &sink.columns {
        if col.name.text == METADATA {
            list.push(SinkColumn {
                name: METADATA.into(),
                ty: col.ty.clone(),
                from: METADATA.into(),
            });
            continue;
        }
        let (_, (from, ty)) = paired.next().expect("as many as the targets");
        if !fits(ty, &col.ty) {
            return refused(
                col.ty_loc,
                format!(
                    "column `{}` is {} in sink table `{}`, but the query's column in its place, `{from}`, is {ty}",
                    col.name.text, col.ty, sink.name.text
                ),
            );
        }
        list.push(SinkColumn {
            name: col.name.text.clone(),
            ty: (*ty).clone(),
            from: (*from).to_string(),
        });
    }
    out.set(
        "sink.columns",
        &crate::columns::write(&list),
        Origin::new(
            sink.name.loc,
            format!("the columns of sink table `{}`", sink.name.text),
        ),
    );
    Ok(())
}

fn names(cols: &[(&str, &FlinkType)]) -> String {
    cols.iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

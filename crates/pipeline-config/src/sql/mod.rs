//! The Flink SQL front end: a script of `SET`, `CREATE TABLE`, `CREATE
//! MODEL` and one `INSERT INTO ... SELECT ... FROM ML_PREDICT(...)` is
//! compiled to the same flat `key = value` map that pipeline.toml and `-D`
//! produce, and validated by the same code. An error about a value names
//! the key, as for TOML, plus the line and column of the SQL it came from.

mod connector;
pub(crate) mod cursor;
mod lower;
mod ml_predict;
mod model;
mod parse;
mod toml_out;
pub(crate) mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::flat::{self, Entry, FlatMap};
use crate::{build, ConfigError, PipelineConfig, Secrets, Task};

pub use lower::Origin;
use types::FlinkType;

/// 1-based line and column (in characters) in the SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What can be wrong with a SQL script.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("cannot read SQL file {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Outside the subset, or statements that do not fit together.
    #[error("{loc}: {message}")]
    Refused { loc: Loc, message: String },
    /// The validation shared with pipeline.toml failed; `origin` is where
    /// the key was set (or the statement it belongs to), `None` when a `-D`
    /// override set it.
    #[error("{}", config_message(.origin, .hint, .error))]
    Config {
        origin: Option<Origin>,
        /// The SQL spelling of a key the script does not set.
        hint: Option<String>,
        error: Box<ConfigError>,
    },
}

fn config_message(origin: &Option<Origin>, hint: &Option<String>, error: &ConfigError) -> String {
    match (origin, hint) {
        (Some(o), Some(h)) => format!("{} ({}, {h}): {error}", o.loc, o.what),
        (Some(o), None) => format!("{} ({}): {error}", o.loc, o.what),
        (None, _) => match error.key() {
            Some(key) => format!("in -D {key}: {error}"),
            None => error.to_string(),
        },
    }
}

impl SqlError {
    /// The configuration key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            SqlError::Config { error, .. } => error.key(),
            _ => None,
        }
    }
}

/// A compiled script: the flat map, and where each key came from.
pub struct Compiled {
    map: FlatMap,
    origins: BTreeMap<String, Origin>,
    overridden: BTreeSet<String>,
    sections: Vec<(&'static str, Origin)>,
    output_type: Option<(FlinkType, Loc)>,
}

fn entry(value: &str) -> Entry {
    // SQL option values are strings; typed like `-D` values.
    Entry {
        value: flat::parse_override_value(value),
        raw: Some(value.to_string()),
    }
}

/// Compile a script, with `-D key=value` overrides on top (later win).
pub fn compile(sql: &str, overrides: &[String]) -> Result<Compiled, SqlError> {
    let out = lower::lower(parse::statements(sql)?)?;
    let mut map = FlatMap::new();
    let mut origins = BTreeMap::new();
    for s in out.settings {
        map.insert(s.key.clone(), entry(&s.value));
        origins.insert(s.key, s.origin);
    }
    for d in out.defaults {
        if !map.contains_key(&d.key) {
            map.insert(d.key.clone(), entry(&d.value));
            origins.insert(d.key, d.origin);
        }
    }
    flat::apply_overrides(&mut map, overrides).map_err(|error| SqlError::Config {
        origin: None,
        hint: None,
        error: Box::new(error),
    })?;
    let mut overridden = BTreeSet::new();
    for o in overrides {
        if let Some((k, _)) = o.split_once('=') {
            origins.remove(k.trim());
            overridden.insert(k.trim().to_string());
        }
    }
    Ok(Compiled {
        map,
        origins,
        overridden,
        sections: out.sections,
        output_type: out.output_type,
    })
}

/// The SQL spelling of a key, for errors about a key the script lacks.
fn sql_hint(key: &str) -> Option<String> {
    Some(match key {
        k if k.starts_with("model.") => format!("option '{}'", &k["model.".len()..]),
        "source.topic" | "sink.topic" => "option 'topic'".into(),
        "source.bootstrap.servers" | "sink.bootstrap.servers" => {
            "option 'properties.bootstrap.servers'".into()
        }
        "source.path" | "sink.path" => "option 'path'".into(),
        k if k.starts_with("ml.batch.") => format!("MAP key '{k}' of ML_PREDICT"),
        _ => return None,
    })
}

impl Compiled {
    /// Validate, as pipeline.toml is validated.
    pub(crate) fn build(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        secrets: Secrets,
    ) -> Result<PipelineConfig, SqlError> {
        let cfg = build::build_map(self.map.clone(), env, secrets).map_err(|e| self.locate(e))?;
        if let Some((ty, loc)) = &self.output_type {
            let fits = match cfg.model.task {
                Task::Chat => *ty == FlinkType::String,
                Task::Embeddings => *ty != FlinkType::String,
            };
            if !fits {
                return Err(SqlError::Refused {
                    loc: *loc,
                    message: format!(
                        "the model's task is {} (from its endpoint), so its OUTPUT column must be {}, not {ty}",
                        cfg.model.task.as_str(),
                        if cfg.model.task == Task::Chat { "STRING" } else { "ARRAY<FLOAT>" }
                    ),
                });
            }
        }
        Ok(cfg)
    }

    fn locate(&self, error: ConfigError) -> SqlError {
        let error = Box::new(error);
        let Some(key) = error.key().map(str::to_string) else {
            return SqlError::Config {
                origin: None,
                hint: None,
                error,
            };
        };
        if self.overridden.contains(&key) {
            return SqlError::Config {
                origin: None,
                hint: None,
                error,
            };
        }
        if let Some(o) = self.origins.get(&key) {
            return SqlError::Config {
                origin: Some(o.clone()),
                hint: None,
                error,
            };
        }
        let section = self
            .sections
            .iter()
            .filter(|(prefix, _)| key.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, o)| o.clone());
        SqlError::Config {
            origin: section,
            hint: sql_hint(&key),
            error,
        }
    }

    /// The equivalent pipeline.toml.
    pub fn to_toml(&self) -> String {
        toml_out::write(&self.map)
    }
}

fn read(path: &Path) -> Result<String, SqlError> {
    std::fs::read_to_string(path).map_err(|error| SqlError::Io {
        path: path.to_path_buf(),
        error,
    })
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Read, compile and validate a SQL script, `${VAR}` from the environment.
pub fn load(path: &Path, overrides: &[String]) -> Result<PipelineConfig, SqlError> {
    compile(&read(path)?, overrides)?.build(&process_env, Secrets::Resolve)
}

/// Compile and validate a SQL script and return the equivalent
/// pipeline.toml; secret keys are left unresolved, so their `${VAR}` need
/// not be set (nothing runs).
pub fn explain(path: &Path, overrides: &[String]) -> Result<String, SqlError> {
    explain_str(&read(path)?, overrides, &process_env)
}

/// Like [`explain`], from text and with `env` for `${VAR}`.
pub fn explain_str(
    sql: &str,
    overrides: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SqlError> {
    let compiled = compile(sql, overrides)?;
    compiled.build(env, Secrets::Skip)?;
    Ok(compiled.to_toml())
}

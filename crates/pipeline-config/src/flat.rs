//! The flat model: TOML text → map of dotted keys → values, `-D` overrides
//! on top, `${ENV}` substitution when a value is read.

use std::collections::BTreeMap;
use std::path::Path;

use crate::ConfigError;

/// A value as written, before typing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Arrays, inline arrays of tables, date-times: never valid.
    Other(&'static str),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub value: Scalar,
    /// For `-D` values: the text as given, so that `-D model.model=1234`
    /// can still be read as the string `"1234"`.
    pub raw: Option<String>,
}

/// A value after `${ENV}` substitution.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub value: Scalar,
    pub raw: Option<String>,
    /// The string before substitution, when it referenced the environment.
    /// Errors show this instead of the value.
    pub template: Option<String>,
}

impl Resolved {
    /// The value as a string: strings as they are; for `-D` values also
    /// numbers and booleans as typed.
    pub fn text(&self) -> Option<&str> {
        match (&self.value, &self.raw) {
            (Scalar::Str(s), _) => Some(s),
            (_, Some(raw)) => Some(raw),
            _ => None,
        }
    }

    /// How the value is shown in an error message. Values that came from
    /// the environment are never shown, only the `${VAR}` text.
    pub fn shown(&self) -> String {
        if let Some(t) = &self.template {
            return format!("{t:?} (value from the environment not shown)");
        }
        match &self.value {
            Scalar::Str(s) => format!("{s:?}"),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Other(what) => what.to_string(),
        }
    }
}

pub(crate) type FlatMap = BTreeMap<String, Entry>;

/// 1-based line and column (in chars) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary_compat(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}
impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Parse TOML text into the flat map.
pub(crate) fn parse_toml(text: &str, path: Option<&Path>) -> Result<FlatMap, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = line_col(text, e.span().map(|s| s.start).unwrap_or(text.len()));
        // Only the message, never the toml crate's rendering of the source
        // line: that line may hold a secret.
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ConfigError::Syntax {
            path: path.map(Path::to_path_buf),
            line,
            column,
            key: key_of_line(text, line),
            message: clearer_message(message),
        }
    })?;
    let mut out = FlatMap::new();
    flatten("", &table, &mut out)?;
    Ok(out)
}

/// The toml crate's wording for an integer beyond 64 bits is about serde
/// types (`invalid type: integer 1e20 as i128, expected any valid TOML
/// value`): say what is wrong instead.
fn clearer_message(message: String) -> String {
    match message
        .strip_prefix("invalid type: integer ")
        .and_then(|rest| rest.split_once(" as i128"))
    {
        Some((number, _)) => format!(
            "integer {number} is out of range (TOML integers are 64-bit, at most {})",
            i64::MAX
        ),
        None => message,
    }
}

/// The dotted key written on 1-based `line` (`[ml.batch]` above it and
/// `size = …` on it give `ml.batch.size`), for syntax errors. Only the key
/// is taken from the line, never its value (it may be a secret). `None`
/// when the line does not start with a plain key.
fn key_of_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for l in text.lines().take(line.saturating_sub(1)) {
        if let Some(header) = table_header(l) {
            table = header;
        }
    }
    let l = text.lines().nth(line.checked_sub(1)?)?;
    if let Some(header) = table_header(l) {
        return Some(header);
    }
    let (key, _) = l.split_once('=')?;
    let key = dotted(key)?;
    Some(if table.is_empty() {
        key
    } else {
        format!("{table}.{key}")
    })
}

/// `[a.b]` → `a.b` (`[[a]]` arrays of tables are not keys of ours).
fn table_header(line: &str) -> Option<String> {
    let l = line.trim();
    let l = l.split_once('#').map_or(l, |(before, _)| before).trim_end();
    let inner = l.strip_prefix('[')?.strip_suffix(']')?;
    if inner.starts_with('[') {
        return None;
    }
    dotted(inner)
}

/// `a . "b" .c` → `a.b.c`, for keys of letters, digits, `_`, `-` and
/// simple quotes; anything else is not guessed at.
fn dotted(key: &str) -> Option<String> {
    let parts: Option<Vec<&str>> = key
        .split('.')
        .map(|p| {
            let p = p.trim();
            let p = p
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .or_else(|| p.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')))
                .unwrap_or(p);
            let plain = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            plain.then_some(p)
        })
        .collect();
    Some(parts?.join("."))
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut FlatMap) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let scalar = match v {
            toml::Value::Table(t) => {
                flatten(&key, t, out)?;
                continue;
            }
            toml::Value::String(s) => Scalar::Str(s.clone()),
            toml::Value::Integer(i) => Scalar::Int(*i),
            toml::Value::Float(f) => Scalar::Float(*f),
            toml::Value::Boolean(b) => Scalar::Bool(*b),
            toml::Value::Datetime(_) => Scalar::Other("a date-time"),
            toml::Value::Array(_) => Scalar::Other("an array"),
        };
        // `"a.b" = 1` and `a.b = 2` are different TOML keys but the same
        // dotted key here.
        if out.contains_key(&key) {
            return Err(ConfigError::invalid(
                &key,
                "given twice (as a quoted key containing dots and as a table or dotted key)",
            ));
        }
        out.insert(
            key,
            Entry {
                value: scalar,
                raw: None,
            },
        );
    }
    Ok(())
}

/// A `-D` value: a TOML boolean, integer or float if it parses as one,
/// else the text as a plain string.
pub(crate) fn parse_override_value(text: &str) -> Scalar {
    match text.trim().parse::<toml::Value>() {
        Ok(toml::Value::Boolean(b)) => Scalar::Bool(b),
        Ok(toml::Value::Integer(i)) => Scalar::Int(i),
        Ok(toml::Value::Float(f)) => Scalar::Float(f),
        _ => Scalar::Str(text.to_string()),
    }
}

/// Apply `key=value` overrides on top of the map, in order (later wins).
pub(crate) fn apply_overrides(map: &mut FlatMap, overrides: &[String]) -> Result<(), ConfigError> {
    for arg in overrides {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(ConfigError::BadOverride(arg.clone()));
        };
        let key = key.trim();
        if key.is_empty()
            || key.starts_with('.')
            || key.ends_with('.')
            || key.contains("..")
            || key.chars().any(char::is_whitespace)
        {
            return Err(ConfigError::BadOverride(arg.clone()));
        }
        map.insert(
            key.to_string(),
            Entry {
                value: parse_override_value(value),
                raw: Some(value.to_string()),
            },
        );
    }
    Ok(())
}

/// Replace `${VAR}` by the variable's value; `$${` stands for a literal `${`.
/// Returns `None` when the text references nothing.
pub(crate) fn substitute(
    key: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    if !text.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            // `$${` → literal `${`
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::invalid(
                key,
                "unterminated `${` (write `$${` for a literal `${`)",
            ));
        };
        let name = &after[..end];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "invalid environment variable reference `${{{name}}}` (names are letters, digits and `_`; write `$${{` for a literal `${{`)"
                ),
            ));
        }
        match env(name) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(ConfigError::MissingEnv {
                    key: key.to_string(),
                    var: name.to_string(),
                })
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Look a key up and substitute environment references in its value.
pub(crate) fn resolve(
    map: &FlatMap,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Resolved>, ConfigError> {
    let Some(entry) = map.get(key) else {
        return Ok(None);
    };
    if let Scalar::Str(s) = &entry.value {
        if let Some(substituted) = substitute(key, s, env)? {
            return Ok(Some(Resolved {
                value: Scalar::Str(substituted.clone()),
                raw: None,
                template: Some(s.clone()),
            }));
        }
    }
    Ok(Some(Resolved {
        value: entry.value.clone(),
        raw: entry.raw.clone(),
        template: None,
    }))
}

use std::path::{Path, PathBuf};

/// Everything that can be wrong with a configuration. Every variant about a
/// key names it; no variant ever carries the value of a secret or of an
/// environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    /// The OS error is part of the message, not a `source()`: a chain
    /// printer (`{:#}`) would repeat it.
    #[error("cannot read config file {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The text is not valid TOML. `line` and `column` are 1-based
    /// (column counted in characters). `path` is the file given to
    /// [`crate::load`]; it is not part of the message (callers add it as
    /// context).
    /// `key` is the dotted key of the line, when the line has one.
    #[error("syntax error at line {line}, column {column}{}: {message}", key_text(.key))]
    Syntax {
        path: Option<PathBuf>,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },

    /// A `-D` argument without `=` (or with an empty key).
    #[error("-D override `{0}` is not of the form key=value")]
    BadOverride(String),

    /// A key that is neither known nor in a pass-through namespace.
    #[error("unknown key `{key}`{}", suggestion_text(.suggestion))]
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },

    /// A key that must always be given (within the chosen source/sink type).
    #[error("missing required key `{0}`")]
    MissingKey(String),

    /// A key that must be given because of another key's value.
    #[error("{key} is required when {condition}")]
    RequiredWhen { key: String, condition: String },

    /// A key given where it has no meaning.
    #[error("{key} only applies when {condition}")]
    NotApplicable { key: String, condition: String },

    /// A key whose value is wrong.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },

    /// `${VAR}` in the value of `key`, and `VAR` is not set.
    #[error("{key}: environment variable `{var}` is not set")]
    MissingEnv { key: String, var: String },
}

fn key_text(key: &Option<String>) -> String {
    key.as_ref()
        .map(|k| format!(" (key `{k}`)"))
        .unwrap_or_default()
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        None => String::new(),
        Some(s) if !s.contains('.') => {
            format!(" (did you mean `{s}`? top-level keys go before the first [table])")
        }
        Some(s) => format!(" (did you mean `{s}`?)"),
    }
}

impl ConfigError {
    /// The configuration key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } | ConfigError::BadOverride(_) => None,
            ConfigError::Syntax { key, .. } => key.as_deref(),
            ConfigError::UnknownKey { key, .. }
            | ConfigError::RequiredWhen { key, .. }
            | ConfigError::NotApplicable { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::MissingEnv { key, .. } => Some(key),
            ConfigError::MissingKey(key) => Some(key),
        }
    }

    /// Where the error comes from, as context for its message: the file
    /// (`in pipeline.toml`), or `in -D KEY` when the key it is about was
    /// set by a `-D` override (the value is not shown: it may be a secret).
    /// `None` when the message already says it (an unreadable file, a
    /// malformed `-D`).
    pub fn origin(&self, file: &Path, overrides: &[String]) -> Option<String> {
        match self {
            ConfigError::Io { .. } | ConfigError::BadOverride(_) => None,
            ConfigError::Syntax { .. } => Some(format!("in {}", file.display())),
            _ => {
                let from_override = self.key().is_some_and(|key| {
                    overrides
                        .iter()
                        .filter_map(|o| o.split_once('='))
                        .any(|(k, _)| k.trim() == key)
                });
                Some(if from_override {
                    format!("in -D {}", self.key().unwrap_or_default())
                } else {
                    format!("in {}", file.display())
                })
            }
        }
    }

    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

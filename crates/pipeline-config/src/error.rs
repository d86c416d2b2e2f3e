use std::path::PathBuf;

/// Everything that can be wrong with a configuration. Every variant about a
/// key names it; no variant ever carries the value of a secret or of an
/// environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The text is not valid TOML. `line` and `column` are 1-based
    /// (column counted in characters). `path` is the file given to
    /// [`crate::load`]; it is not part of the message (callers add it as
    /// context).
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        path: Option<PathBuf>,
        line: usize,
        column: usize,
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
            ConfigError::Io { .. } | ConfigError::Syntax { .. } | ConfigError::BadOverride(_) => {
                None
            }
            ConfigError::UnknownKey { key, .. }
            | ConfigError::RequiredWhen { key, .. }
            | ConfigError::NotApplicable { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::MissingEnv { key, .. } => Some(key),
            ConfigError::MissingKey(key) => Some(key),
        }
    }

    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

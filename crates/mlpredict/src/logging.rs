//! Logs on stderr: `MLPREDICT_LOG` sets the level, `--log-format` the
//! format; colour only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `span`).
    Json,
}

pub fn init(format: Format) {
    let filter =
        EnvFilter::try_from_env("MLPREDICT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Escape codes in a redirected log are noise: colour only on a terminal,
    // and never with NO_COLOR (https://no-color.org).
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        Format::Text => builder.with_ansi(ansi).init(),
        Format::Json => builder.json().with_ansi(false).init(),
    }
}

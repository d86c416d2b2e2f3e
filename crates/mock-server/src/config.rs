//! Command-line flags, the `--faults FILE` TOML file and the resolved config.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// Flags of `mlpredict mock-server`. Every option can also be given in a
/// `--faults FILE` TOML file under the same name (`rate-limit-fraction = 0.1`
/// or `rate_limit_fraction = 0.1`); a flag on the command line wins.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(after_help = ROUTES)]
pub struct MockArgs {
    /// Address to bind [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Port to bind [default: 0 = any free port; the URL is printed on
    /// stdout].
    #[arg(long)]
    pub port: Option<u16>,
    /// Require this API key (`Authorization: Bearer`, Azure `api-key`,
    /// Anthropic `x-api-key`); without it any key is accepted.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// TOML file with any of these options (faults, timings).
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    /// Seed of every random decision (faults, output order).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Batches finish at their first GET after create; no sleeps anywhere.
    #[arg(long)]
    pub instant: bool,
    /// Time a batch spends in `validating` (default 100ms).
    #[arg(long, value_name = "DURATION")]
    pub validating: Option<humantime::Duration>,
    /// Time a batch spends in `in_progress` (default 300ms).
    #[arg(long, value_name = "DURATION")]
    pub in_progress: Option<humantime::Duration>,
    /// Time a batch spends in `finalizing` (default 100ms).
    #[arg(long, value_name = "DURATION")]
    pub finalizing: Option<humantime::Duration>,
    /// Time a batch spends in `cancelling` (default 100ms).
    #[arg(long, value_name = "DURATION")]
    pub cancelling: Option<humantime::Duration>,
    /// Extra time in `finalizing` (the "stuck in finalizing" quirk).
    #[arg(long, value_name = "DURATION")]
    pub slow_finalizing: Option<humantime::Duration>,
    /// Latency of each synchronous chat/embeddings request.
    #[arg(long, value_name = "DURATION")]
    pub sync_latency: Option<humantime::Duration>,
    /// Requests-per-minute limit of the synchronous endpoints (429 past it).
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Length of the sliding window `--rpm` counts requests in (default
    /// 1m); shorter windows let tests run at the limit in less time.
    #[arg(long, value_name = "DURATION")]
    pub rpm_window: Option<humantime::Duration>,
    /// Largest accepted upload in bytes (default 200 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_file_bytes: Option<u64>,
    /// `retry-after` sent with injected 429s (default 200ms).
    #[arg(long, value_name = "DURATION")]
    pub retry_after: Option<humantime::Duration>,
    /// Fraction of API calls answered 429 (rate_limit_exceeded).
    #[arg(long, value_name = "F")]
    pub rate_limit_fraction: Option<f64>,
    /// Fraction of API calls answered 500/502/503 before acting.
    #[arg(long, value_name = "F")]
    pub server_error_fraction: Option<f64>,
    /// Fraction of batch/job creates that act, then answer 500 or drop the connection.
    #[arg(long, value_name = "F")]
    pub lost_response_fraction: Option<f64>,
    /// Fraction of batches failing validation with token_limit_exceeded.
    #[arg(long, value_name = "F")]
    pub token_limit_fraction: Option<f64>,
    /// Fraction of batches going in_progress -> expired with about half done.
    #[arg(long, value_name = "F")]
    pub expire_fraction: Option<f64>,
    /// Enqueued-token limit of the organisation (OpenAI protocols): a batch
    /// whose prompt tokens, with those of the batches in progress, pass it
    /// fails validation with token_limit_exceeded, as OpenAI's do.
    #[arg(long, value_name = "TOKENS")]
    pub max_enqueued_tokens: Option<u64>,
    /// Fraction of requests answered with a 4xx error line.
    #[arg(long = "request-4xx-fraction", value_name = "F")]
    pub request_4xx_fraction: Option<f64>,
    /// Fraction of requests answered with a 5xx error line.
    #[arg(long = "request-5xx-fraction", value_name = "F")]
    pub request_5xx_fraction: Option<f64>,
    /// Quirk: `error_file_id: ""` instead of null.
    #[arg(long)]
    pub empty_error_file_id: bool,
}

const ROUTES: &str = "\
Protocols served on the one port:
  OpenAI        /v1/files, /v1/batches, /v1/chat/completions, /v1/embeddings
  Azure OpenAI  /openai/{files,batches}?api-version=..., /openai/v1/...,
                /openai/deployments/{name}/{chat/completions,embeddings}
  Anthropic     /v1/messages/batches (Message Batches), /v1/messages
  FLIP generic  /ml/api/batch_predict, /ml/api/batch/{status,results}/{id}, /ml/api/batch/jobs
  mock stats    /mock/stats";

/// The same options as read from a `--faults` TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileArgs {
    bind: Option<IpAddr>,
    port: Option<u16>,
    api_key: Option<String>,
    seed: Option<u64>,
    instant: Option<bool>,
    validating: Option<String>,
    in_progress: Option<String>,
    finalizing: Option<String>,
    cancelling: Option<String>,
    slow_finalizing: Option<String>,
    sync_latency: Option<String>,
    rpm: Option<u32>,
    rpm_window: Option<String>,
    max_file_bytes: Option<u64>,
    retry_after: Option<String>,
    rate_limit_fraction: Option<f64>,
    server_error_fraction: Option<f64>,
    lost_response_fraction: Option<f64>,
    token_limit_fraction: Option<f64>,
    expire_fraction: Option<f64>,
    max_enqueued_tokens: Option<u64>,
    request_4xx_fraction: Option<f64>,
    request_5xx_fraction: Option<f64>,
    empty_error_file_id: Option<bool>,
}

/// Fault fractions, each in [0, 1]; all zero by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    pub rate_limit_fraction: f64,
    pub server_error_fraction: f64,
    pub lost_response_fraction: f64,
    pub token_limit_fraction: f64,
    pub expire_fraction: f64,
    pub request_4xx_fraction: f64,
    pub request_5xx_fraction: f64,
    pub slow_finalizing: Duration,
    pub empty_error_file_id: bool,
}

/// Resolved server configuration.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub api_key: Option<String>,
    pub seed: u64,
    pub instant: bool,
    pub validating: Duration,
    pub in_progress: Duration,
    pub finalizing: Duration,
    pub cancelling: Duration,
    pub sync_latency: Duration,
    pub rpm: Option<u32>,
    /// The window `rpm` counts requests in.
    pub rpm_window: Duration,
    pub max_file_bytes: u64,
    pub retry_after: Duration,
    pub faults: FaultConfig,
    /// Enqueued-token limit (OpenAI protocols); `None`: unlimited.
    pub max_enqueued_tokens: Option<u64>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            api_key: None,
            seed: 0,
            instant: false,
            validating: Duration::from_millis(100),
            in_progress: Duration::from_millis(300),
            finalizing: Duration::from_millis(100),
            cancelling: Duration::from_millis(100),
            sync_latency: Duration::ZERO,
            rpm: None,
            rpm_window: Duration::from_secs(60),
            max_file_bytes: 200 * 1024 * 1024,
            retry_after: Duration::from_millis(200),
            faults: FaultConfig::default(),
            max_enqueued_tokens: None,
        }
    }
}

impl MockConfig {
    /// Resolves flags over the optional `--faults` file over the defaults.
    pub fn from_args(args: &MockArgs) -> anyhow::Result<Self> {
        let file = match &args.faults {
            Some(path) => read_file_args(path)?,
            None => FileArgs::default(),
        };
        let d = MockConfig::default();
        let dur = |flag: Option<humantime::Duration>, text: &Option<String>, name: &str, def| {
            resolve_duration(flag, text.as_deref(), name, def)
        };
        let frac = |flag: Option<f64>, text: Option<f64>, name: &str| {
            let v = flag.or(text).unwrap_or(0.0);
            if !(0.0..=1.0).contains(&v) {
                bail!("{name} must be between 0 and 1, got {v}");
            }
            Ok(v)
        };
        let mut cfg = MockConfig {
            bind: args.bind.or(file.bind).unwrap_or(d.bind),
            port: args.port.or(file.port).unwrap_or(d.port),
            api_key: args.api_key.clone().or(file.api_key),
            seed: args.seed.or(file.seed).unwrap_or(d.seed),
            instant: args.instant || file.instant.unwrap_or(false),
            validating: dur(
                args.validating,
                &file.validating,
                "validating",
                d.validating,
            )?,
            in_progress: dur(
                args.in_progress,
                &file.in_progress,
                "in-progress",
                d.in_progress,
            )?,
            finalizing: dur(
                args.finalizing,
                &file.finalizing,
                "finalizing",
                d.finalizing,
            )?,
            cancelling: dur(
                args.cancelling,
                &file.cancelling,
                "cancelling",
                d.cancelling,
            )?,
            sync_latency: dur(
                args.sync_latency,
                &file.sync_latency,
                "sync-latency",
                d.sync_latency,
            )?,
            rpm: args.rpm.or(file.rpm),
            rpm_window: dur(
                args.rpm_window,
                &file.rpm_window,
                "rpm-window",
                d.rpm_window,
            )?,
            max_file_bytes: args
                .max_file_bytes
                .or(file.max_file_bytes)
                .unwrap_or(d.max_file_bytes),
            retry_after: dur(
                args.retry_after,
                &file.retry_after,
                "retry-after",
                d.retry_after,
            )?,
            max_enqueued_tokens: args.max_enqueued_tokens.or(file.max_enqueued_tokens),
            faults: FaultConfig {
                rate_limit_fraction: frac(
                    args.rate_limit_fraction,
                    file.rate_limit_fraction,
                    "rate-limit-fraction",
                )?,
                server_error_fraction: frac(
                    args.server_error_fraction,
                    file.server_error_fraction,
                    "server-error-fraction",
                )?,
                lost_response_fraction: frac(
                    args.lost_response_fraction,
                    file.lost_response_fraction,
                    "lost-response-fraction",
                )?,
                token_limit_fraction: frac(
                    args.token_limit_fraction,
                    file.token_limit_fraction,
                    "token-limit-fraction",
                )?,
                expire_fraction: frac(
                    args.expire_fraction,
                    file.expire_fraction,
                    "expire-fraction",
                )?,
                request_4xx_fraction: frac(
                    args.request_4xx_fraction,
                    file.request_4xx_fraction,
                    "request-4xx-fraction",
                )?,
                request_5xx_fraction: frac(
                    args.request_5xx_fraction,
                    file.request_5xx_fraction,
                    "request-5xx-fraction",
                )?,
                slow_finalizing: dur(
                    args.slow_finalizing,
                    &file.slow_finalizing,
                    "slow-finalizing",
                    Duration::ZERO,
                )?,
                empty_error_file_id: args.empty_error_file_id
                    || file.empty_error_file_id.unwrap_or(false),
            },
        };
        if cfg.rpm == Some(0) {
            bail!("rpm must be at least 1");
        }
        if cfg.instant {
            // instant means no waiting anywhere: throughput benchmarks rely on it
            cfg.make_instant();
        }
        Ok(cfg)
    }

    /// Zeroes every timing (what `--instant` does).
    pub fn make_instant(&mut self) {
        self.instant = true;
        self.validating = Duration::ZERO;
        self.in_progress = Duration::ZERO;
        self.finalizing = Duration::ZERO;
        self.cancelling = Duration::ZERO;
        self.sync_latency = Duration::ZERO;
        self.faults.slow_finalizing = Duration::ZERO;
    }
}

fn resolve_duration(
    flag: Option<humantime::Duration>,
    text: Option<&str>,
    name: &str,
    default: Duration,
) -> anyhow::Result<Duration> {
    if let Some(d) = flag {
        return Ok(d.into());
    }
    match text {
        Some(t) => humantime::parse_duration(t)
            .with_context(|| format!("invalid duration for {name}: {t:?}")),
        None => Ok(default),
    }
}

fn read_file_args(path: &Path) -> anyhow::Result<FileArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read faults file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid toml in {}", path.display()))?;
    // accept both spellings of each key: the flag's (kebab) and snake_case
    let normalized: toml::Table = table
        .into_iter()
        .map(|(k, v)| (k.replace('_', "-"), v))
        .collect();
    FileArgs::deserialize(normalized)
        .with_context(|| format!("invalid option in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_in_both_spellings_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("mock-faults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.toml");
        std::fs::write(
            &path,
            "rate_limit_fraction = 0.25\nexpire-fraction = 0.5\nin-progress = \"2s\"\nseed = 7\n",
        )
        .unwrap();
        let args = MockArgs {
            faults: Some(path),
            seed: Some(9),
            ..Default::default()
        };
        let cfg = MockConfig::from_args(&args).unwrap();
        assert_eq!(cfg.faults.rate_limit_fraction, 0.25);
        assert_eq!(cfg.faults.expire_fraction, 0.5);
        assert_eq!(cfg.in_progress, Duration::from_secs(2));
        assert_eq!(cfg.seed, 9);
    }

    #[test]
    fn rejects_bad_fraction_and_unknown_key() {
        let args = MockArgs {
            rate_limit_fraction: Some(1.5),
            ..Default::default()
        };
        assert!(MockConfig::from_args(&args).is_err());
        let dir = std::env::temp_dir().join(format!("mock-faults-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.toml");
        std::fs::write(&path, "no-such-option = 1\n").unwrap();
        assert!(MockConfig::from_args(&MockArgs {
            faults: Some(path),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn instant_zeroes_timings() {
        let cfg = MockConfig::from_args(&MockArgs {
            instant: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            cfg.validating + cfg.in_progress + cfg.finalizing,
            Duration::ZERO
        );
    }
}

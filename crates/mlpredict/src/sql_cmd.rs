//! `mlpredict sql`: a Flink SQL job, compiled to the pipeline a
//! pipeline.toml describes and run by the same code as `mlpredict run`.

use std::path::PathBuf;

/// Arguments of `mlpredict sql`.
#[derive(clap::Args)]
pub struct SqlArgs {
    /// The job's SQL script: SET, CREATE TABLE, CREATE MODEL and one INSERT
    /// INTO ... SELECT ... FROM ML_PREDICT(...).
    #[arg(long, short)]
    file: PathBuf,
    /// Override a configuration key, as for `run`: -D ml.batch.size=500
    /// (repeatable; later ones win; they win over the script).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    define: Vec<String>,
    /// Print the pipeline the script compiles to, as the equivalent
    /// pipeline.toml, and run nothing (API key variables need not be set).
    #[arg(long)]
    explain: bool,
    /// As for `run`: Kafka sources stop once the group's input is done.
    #[arg(long)]
    until_idle: bool,
    /// As for `run`: this Kafka instance's id, the same at every restart.
    #[arg(long, env = "MLPREDICT_INSTANCE_ID", value_name = "ID")]
    instance_id: Option<String>,
}

pub fn run(args: SqlArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<std::process::ExitCode> {
    let context = format!("in {}", args.file.display());
    if args.explain {
        let toml = pipeline_config::sql::explain(&args.file, &args.define)
            .map_err(|e| anyhow::Error::new(e).context(context))?;
        print!("{toml}");
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let cfg = pipeline_config::sql::load(&args.file, &args.define)
        .map_err(|e| anyhow::Error::new(e).context(context))?;
    crate::run_pipeline(
        &cfg,
        rt,
        false,
        args.until_idle,
        args.instance_id.as_deref(),
    )
}

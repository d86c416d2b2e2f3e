//! `cargo run -p mock-server --example serve -- --port 0 [options]`:
//! the same as `mlpredict mock-server`, without building the main binary.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: mock_server::MockArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mock_server::run_cli(Cli::parse().args).await
}

//! A faithful mock of OpenAI-style Files + Batches, the FLIP's generic batch
//! protocol and the synchronous chat/embeddings endpoints, with seeded fault
//! injection. It lets people try pipelines without a cloud account and lets
//! CI check exactly-once behaviour (`GET /mock/stats`).
//!
//! See `crates/mock-server/README.md` for routes, options and extensions.

// Layers, each using only those above it: base (config, stats, util) →
// engine (no protocol) → http (shared envelopes and layers) → one module
// per protocol → router.
mod config;
mod stats;
mod util;

mod engine;
mod http;

mod anthropic;
mod generic;
mod openai;
mod sync;

mod router;

pub use engine::fake;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use config::{FaultConfig, MockArgs, MockConfig};
pub use stats::Stats;

use engine::store::{AppState, Shared};
use http::layers::ConnKill;

/// A running mock server.
pub struct MockServer {
    addr: SocketAddr,
    state: Shared,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Binds `cfg.bind:cfg.port` (port 0 = any free port) and starts serving.
    pub async fn start(cfg: MockConfig) -> anyhow::Result<MockServer> {
        let listener = TcpListener::bind((cfg.bind, cfg.port))
            .await
            .with_context(|| format!("cannot bind {}:{}", cfg.bind, cfg.port))?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        let state = Arc::new(AppState::new(cfg, addr));
        let router = router::router(state.clone());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, router, stopped));
        tracing::info!(%addr, "mock server started");
        Ok(MockServer {
            addr,
            state,
            stop,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, no `/v1`).
    pub fn base_url(&self) -> String {
        util::base_url_of(self.addr)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.state.stats.snapshot()
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serves connections ourselves (not `axum::serve`) so that a lost-response
/// fault can close a connection without writing any answer.
async fn accept_loop(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // e.g. too many open files: back off instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let kill = ConnKill(Arc::new(Notify::new()));
        let service = TowerToHyperService::new(router.clone().layer(Extension(kill.clone())));
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                res = conn => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = kill.0.notified() => tracing::debug!(%peer, "connection dropped on purpose"),
                _ = stop.changed() => {}
            }
        });
    }
}

/// Starts the server, prints `mock server listening on http://127.0.0.1:PORT/v1`
/// and serves until SIGINT or SIGTERM.
pub async fn run_cli(args: MockArgs) -> anyhow::Result<()> {
    let cfg = MockConfig::from_args(&args)?;
    let server = MockServer::start(cfg).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "mock server listening on {}/v1", server.base_url())
            .context("cannot write to stdout")?;
        out.flush().context("cannot flush stdout")?;
    }
    wait_for_signal().await?;
    tracing::info!("mock server stopping");
    server.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for sigterm")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for sigint")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for ctrl-c")
}

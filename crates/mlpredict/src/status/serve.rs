//! The status page's HTTP server: `/` the page, `/status.json` the same
//! [`Status`] as JSON. Served by `run` (`ui.port`) next to the pipeline,
//! and by `status --serve PORT` on its own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pipeline_config::PipelineConfig;

use super::live::Live;
use super::{page, Status};

/// A status read this recently is served again: reading a Kafka state
/// topic takes a consumer and a pass over it.
const FRESH: Duration = Duration::from_millis(1000);

type Read = Arc<Result<Status, String>>;

struct Source {
    cfg: PipelineConfig,
    live: Option<Arc<Live>>,
    last: Mutex<Option<(Instant, Read)>>,
}

impl Source {
    /// Blocking: reads the state database or topic.
    fn status(&self) -> Read {
        if let Some((at, read)) = &*self.lock() {
            if at.elapsed() < FRESH {
                return read.clone();
            }
        }
        let read = Arc::new(
            super::read(&self.cfg)
                .map(|mut s| {
                    if let Some(live) = &self.live {
                        live.overlay(&mut s);
                    }
                    s
                })
                .map_err(|e| format!("{e:#}")),
        );
        *self.lock() = Some((Instant::now(), read.clone()));
        read
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Read)>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bind `bind:port` (`what` names the setting in the error).
fn listen(bind: std::net::IpAddr, port: u16, what: &str) -> anyhow::Result<std::net::TcpListener> {
    let addr = SocketAddr::new(bind, port);
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot serve the status page on {addr} ({what})"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn router(source: Source) -> Router {
    Router::new()
        .route("/", get(html))
        .route("/status.json", get(json))
        .with_state(Arc::new(source))
}

async fn read(source: Arc<Source>) -> Read {
    tokio::task::spawn_blocking(move || source.status())
        .await
        .unwrap_or_else(|e| Arc::new(Err(format!("reading the status failed: {e}"))))
}

async fn html(State(source): State<Arc<Source>>) -> Response {
    let name = source.cfg.name.clone();
    let (code, body) = match &*read(source).await {
        Ok(s) => (StatusCode::OK, page::render(s)),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            page::render_error(&name, e),
        ),
    };
    (code, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

async fn json(State(source): State<Arc<Source>>) -> Response {
    let read = read(source).await;
    let (code, body) = match &*read {
        Ok(s) => (
            StatusCode::OK,
            Json(serde_json::to_value(s).unwrap_or_default()),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e })),
        ),
    };
    (code, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

/// `run` with `ui.port`: serve the page on `rt` while the pipeline runs.
pub fn spawn(
    cfg: &PipelineConfig,
    live: Arc<Live>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let Some(port) = cfg.ui.port else {
        return Ok(());
    };
    let listener = listen(cfg.ui.bind, port, "ui.port, ui.bind")?;
    let addr = listener.local_addr()?;
    let app = router(Source {
        cfg: cfg.clone(),
        live: Some(live),
        last: Mutex::default(),
    });
    let _guard = rt.enter();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the status page stopped");
        }
    });
    tracing::info!(url = %format!("http://{addr}/"), "serving the status page");
    Ok(())
}

/// `status --serve PORT`: serve the page from the state until SIGINT or
/// SIGTERM.
pub fn run(cfg: &PipelineConfig, port: u16, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let listener = listen(cfg.ui.bind, port, "--serve, ui.bind")?;
    let addr = listener.local_addr()?;
    let app = router(Source {
        cfg: cfg.clone(),
        live: None,
        last: Mutex::default(),
    });
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tracing::info!(url = %format!("http://{addr}/"), "serving the status page");
        axum::serve(listener, app)
            .with_graceful_shutdown(stop_signal())
            .await
    })?;
    Ok(())
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        Err(_) => drop(tokio::signal::ctrl_c().await),
    }
}

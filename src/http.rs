//! The HTTP endpoints every long-running mq9 process serves: `/metrics` (Prometheus text),
//! `/healthz` (the process runs) and `/readyz` (it can do its job, else 503 with the reason).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// What a process exposes over HTTP.
pub trait Probe: Send + Sync + 'static {
    /// The metrics in Prometheus text format.
    fn metrics(&self) -> String;
    /// `None` when ready, else why not.
    fn not_ready_reason(&self) -> Option<String>;
}

/// Binds the endpoints; serving starts when the returned future is polled and ends when
/// `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    probe: Arc<dyn Probe>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(probe);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "HTTP endpoints listening");
    Ok(std::future::IntoFuture::into_future(
        axum::serve(listener, app).with_graceful_shutdown(shutdown),
    ))
}

async fn metrics_handler(State(probe): State<Arc<dyn Probe>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        probe.metrics(),
    )
}

async fn ready_handler(State(probe): State<Arc<dyn Probe>>) -> impl IntoResponse {
    match probe.not_ready_reason() {
        None => (StatusCode::OK, "ready".to_owned()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

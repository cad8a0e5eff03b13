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

/// The endpoints, served in a task until [`HttpServer::stop`].
pub struct HttpServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// Binds `addr` (a clear error when it cannot) and starts serving.
    pub async fn start(addr: SocketAddr, probe: Arc<dyn Probe>) -> anyhow::Result<HttpServer> {
        let app = Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready_handler))
            .with_state(probe);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "HTTP endpoints listening");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let serving = axum::serve(listener, app).with_graceful_shutdown(shutdown);
        let task = tokio::spawn(std::future::IntoFuture::into_future(serving));
        Ok(HttpServer { stop, task })
    }

    /// Stops serving, letting requests in progress finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
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

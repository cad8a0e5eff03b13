//! The HTTP endpoints every long-running mq9 process serves: `/metrics` (Prometheus text),
//! `/healthz` (the process is sound, else 503 with the reason: Kubernetes restarts it) and
//! `/readyz` (it can do its job now, else 503 with the reason: it gets no traffic meanwhile).

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
    /// `None` while the process is sound, else why it must be restarted (a failure it cannot
    /// recover from by waiting, unlike not being ready). Sound by default.
    fn not_live_reason(&self) -> Option<String> {
        None
    }
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
            .route("/healthz", get(live_handler))
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

async fn live_handler(State(probe): State<Arc<dyn Probe>>) -> impl IntoResponse {
    verdict(probe.not_live_reason(), "ok")
}

async fn ready_handler(State(probe): State<Arc<dyn Probe>>) -> impl IntoResponse {
    verdict(probe.not_ready_reason(), "ready")
}

/// 200 with `fine`, or 503 with the reason.
fn verdict(reason: Option<String>, fine: &str) -> (StatusCode, String) {
    match reason {
        None => (StatusCode::OK, fine.to_owned()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

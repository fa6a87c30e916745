//! Prometheus metrics: the process-wide recorder, the `/metrics` endpoint, and a tower layer
//! recording rate, errors and latency per gRPC method.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .expect("static buckets are valid")
                .install_recorder()
                .expect("the metrics recorder is installed once")
        })
        .clone()
}

/// Names the process on `/metrics`: `target_info{service_name, service_version} 1`, the
/// OpenMetrics target info (the name OpenTelemetry gives resource attributes in Prometheus).
/// One series per process rather than a label on every series: dashboards join it on the
/// scrape's `instance`, and the metric names and labels of everything else stay as they are.
pub fn describe_target(service_name: &str) {
    install();
    metrics::describe_gauge!("target_info", "The service this process runs; always 1.");
    metrics::gauge!(
        "target_info",
        "service_name" => service_name.to_owned(),
        "service_version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(addr: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handle = install();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

/// Records `pos_grpc_requests_total{method,code}` and `pos_grpc_request_seconds{method}`, and
/// the status on the call's server span (see [`crate::grpc::serve`]).
#[derive(Clone, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            // Errors of unary calls travel in the headers (trailers-only responses); a
            // streaming call's final status is in the trailers, counted as "0" here.
            let code = match &result {
                Ok(response) => {
                    response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0").to_owned()
                }
                Err(_) => "transport".to_owned(),
            };
            crate::grpc::record_status(&tracing::Span::current(), &code);
            metrics::counter!("pos_grpc_requests_total", "method" => method.clone(), "code" => code).increment(1);
            metrics::histogram!("pos_grpc_request_seconds", "method" => method).record(started.elapsed().as_secs_f64());
            result
        })
    }
}

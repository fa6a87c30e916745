//! The gRPC server every service runs: health, reflection, metrics, auth and trace context.
//! What its methods return on failure is [`crate::error`]'s.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::auth::{AuthLayer, Authenticator};
use crate::metrics::GrpcMetricsLayer;

/// Serves `routes` with health, reflection, metrics, authentication and trace propagation
/// until `shutdown`; health turns NOT_SERVING first, and in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    health_services: Vec<&'static str>,
    authenticator: Arc<Authenticator>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in &health_services {
        reporter.set_service_status(*name, tonic_health::ServingStatus::Serving).await;
    }
    reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pos_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let names: Vec<String> = health_services.iter().map(|s| (*s).to_owned()).collect();
    let stopping = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            for name in &names {
                reporter.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
            }
            reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        }
    };

    let addr = listener.local_addr()?;
    tracing::info!(%addr, services = ?health_services, "grpc server listening");
    // Accepted sockets do not inherit the builder's TCP_NODELAY (it applies to `serve(addr)`
    // only). Without it a response spanning several segments waits for the peer's delayed ACK:
    // a ~40 ms floor under every larger reply, e.g. a page of tickets.
    let incoming = tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |stream| {
        if let Ok(stream) = &stream
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::warn!(%error, "failed to set TCP_NODELAY on a grpc connection");
        }
        stream
    });
    tonic::transport::Server::builder()
        .trace_fn(|request| server_span(request.uri().path(), request.headers()))
        .layer(GrpcMetricsLayer)
        .layer(AuthLayer::new(authenticator))
        .add_routes(routes)
        .add_service(health)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, stopping)
        .await?;
    tracing::info!(%addr, "grpc server stopped");
    Ok(())
}

/// The server span of one call, per the OpenTelemetry RPC conventions: named
/// `<package.Service>/<Method>`, kind SERVER, continuing the caller's trace context. Health
/// checks (probes, every few seconds) get none: they would be a root trace each.
fn server_span(path: &str, headers: &http::HeaderMap) -> tracing::Span {
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    if service == "grpc.health.v1.Health" {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        parent: None,
        "grpc",
        otel.name = name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::telemetry::set_parent_from_http(&span, headers);
    span
}

/// Records a call's gRPC status code (as the `grpc-status` header spells it) on its server span;
/// the codes that mean the server failed mark the span as an error.
pub(crate) fn record_status(span: &tracing::Span, grpc_status: &str) {
    let Ok(code) = grpc_status.parse::<i32>() else {
        span.record("otel.status_code", "ERROR");
        return;
    };
    span.record("rpc.grpc.status_code", code);
    use tonic::Code;
    let server_failed = match Code::from_i32(code) {
        Code::Unknown
        | Code::DeadlineExceeded
        | Code::Unimplemented
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss => true,
        // The caller's mistakes or the answer to them: the server did its job.
        Code::Ok
        | Code::Cancelled
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unauthenticated => false,
    };
    if server_failed {
        span.record("otel.status_code", "ERROR");
    }
}

/// A lazily connecting channel to a peer service, e.g. `http://127.0.0.1:50051`.
pub fn channel(endpoint: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    Ok(tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .connect_lazy())
}

/// Adds `authorization: Bearer <token>` and the current trace context to an outgoing request.
pub fn outgoing<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    crate::telemetry::inject_into_metadata(request.metadata_mut());
    request
}

//! The gRPC server every service runs: health, reflection, metrics, auth and trace context;
//! and the error details every service returns.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::service::Routes;
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{AuthLayer, Authenticator};
use crate::metrics::GrpcMetricsLayer;

/// Collects field violations and turns them into `INVALID_ARGUMENT` with `google.rpc.BadRequest`.
#[derive(Debug, Default)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
}

impl FieldViolations {
    pub fn new() -> FieldViolations {
        FieldViolations::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push((field.into(), description.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.violations.iter().map(|(field, _)| field.as_str())
    }

    /// `Ok` when nothing was violated.
    pub fn into_result(self) -> Result<(), Status> {
        if self.violations.is_empty() { Ok(()) } else { Err(self.into_status()) }
    }

    pub fn into_status(self) -> Status {
        let message = self
            .violations
            .iter()
            .map(|(field, description)| format!("{field}: {description}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::new();
        for (field, description) in self.violations {
            details.add_bad_request_violation(field, description);
        }
        Status::with_error_details(tonic::Code::InvalidArgument, message, details)
    }
}

/// `INVALID_ARGUMENT` for one field.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    let mut violations = FieldViolations::new();
    violations.add(field, description);
    violations.into_status()
}

/// The field names of a status's `BadRequest` details (for clients and tests).
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Logs an internal error with its cause and returns an opaque `INTERNAL` to the caller.
pub fn internal(context: &str, error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "{context}");
    Status::internal(format!("{context}: internal error"))
}

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
        .trace_fn(|request| {
            let span = tracing::info_span!("grpc", method = %request.uri().path());
            crate::telemetry::set_parent_from_http(&span, request.headers());
            span
        })
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

//! The gRPC server every service runs: health, reflection, metrics, auth and trace context.
//! What its methods return on failure is [`crate::error`]'s.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::auth::{AuthLayer, Authenticator};
use crate::metrics::GrpcMetricsLayer;

/// Serves `routes` with health, reflection, metrics, authentication and trace propagation
/// until `shutdown`; health turns NOT_SERVING first, and in-flight calls finish. TLS per `tls`
/// (certificates reloaded as their files change); plaintext only on loopback unless
/// `tls.allow_plaintext`.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    health_services: Vec<&'static str>,
    authenticator: Arc<Authenticator>,
    limits: crate::limits::LimitsConfig,
    tls: crate::tls::TlsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tls.check_listener(addr)?;
    let server_tls = crate::tls::ServerTls::load(&tls)?;
    let limits_layer = crate::limits::LimitsLayer::new(&limits)?;
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

    tracing::info!(
        %addr,
        services = ?health_services,
        tls = server_tls.is_some(),
        client_certificates = if tls.require_client_cert { "required" } else if tls.client_ca_file.is_some() { "optional" } else { "none" },
        "grpc server listening"
    );
    // Ends with this function: the accept loop (which also ends when tonic drops `incoming` on
    // shutdown, closing the listening socket) and the certificate watcher.
    let listening = CancellationToken::new();
    let _stop_listening = listening.clone().drop_guard();
    if let Some(server_tls) = &server_tls {
        tokio::spawn(server_tls.clone().watch(listening.clone()));
    }
    let incoming = crate::tls::incoming(listener, server_tls, listening);
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .trace_fn(|request| server_span(request.uri().path(), request.headers(), request.extensions()))
        // Outermost: what the connection told (addresses, the caller's certificate) becomes
        // extensions the layers below and the services read.
        .layer(tower::util::MapRequestLayer::new(crate::tls::expose_connection_info::<tonic::body::Body>))
        .layer(GrpcMetricsLayer)
        .layer(AuthLayer::new(authenticator))
        // Inside AuthLayer: it counts calls by the caller AuthLayer verified. Its own deadlines
        // per method rather than the builder's `timeout`, which would cap uploads at the default.
        .layer(limits_layer)
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
fn server_span(path: &str, headers: &http::HeaderMap, extensions: &http::Extensions) -> tracing::Span {
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
        peer.service = tracing::field::Empty,
    );
    // The caller's service, as its client certificate names it (mutual TLS only).
    if let Some(peer) = extensions.get::<crate::tls::ConnectionInfo>().and_then(|info| info.peer.as_ref()) {
        span.record("peer.service", peer.name.as_str());
    }
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

/// A lazily connecting channel to a peer service, e.g. `http://127.0.0.1:50051`, or over TLS
/// with the process's client settings (`[tls]`, see [`crate::tls::set_process_client`]),
/// e.g. `https://routing.pos:50051`.
pub fn channel(endpoint: &str) -> anyhow::Result<tonic::transport::Channel> {
    channel_with(endpoint, crate::tls::process_client().as_deref())
}

/// [`channel`] with the given client TLS instead of the process's.
pub fn channel_with(endpoint: &str, tls: Option<&crate::tls::ClientTls>) -> anyhow::Result<tonic::transport::Channel> {
    Ok(self::endpoint(endpoint, tls, None)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .connect_lazy())
}

/// Where a process listening on `addr` calls itself (services it hosts calling each other):
/// loopback for a wildcard address; `https://` when it serves TLS.
pub fn own_endpoint(addr: std::net::SocketAddr, tls: &crate::tls::TlsConfig) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if tls.serves_tls() { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// A channel to this process's own listener at `endpoint` (see [`own_endpoint`]): over TLS,
/// the server's certificate is verified against `tls.server_name`, else against the name its
/// own certificate carries, since the address it is called at is loopback.
pub fn own_channel(endpoint: &str, tls: &crate::tls::TlsConfig) -> anyhow::Result<tonic::transport::Channel> {
    let name = tls.server_name.clone().or_else(|| crate::tls::certificate_name(tls));
    Ok(self::endpoint(endpoint, crate::tls::process_client().as_deref(), name.as_deref())?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .connect_lazy())
}

/// The endpoint of `uri`: plaintext for `http://`; for `https://`, TLS with `tls`, verifying
/// the server's certificate against `server_name` (else the configured override, else the
/// host of `uri`). An `https://` endpoint without client TLS settings is refused: there is no
/// CA to verify it with.
pub fn endpoint(
    uri: &str,
    tls: Option<&crate::tls::ClientTls>,
    server_name: Option<&str>,
) -> anyhow::Result<tonic::transport::Endpoint> {
    let endpoint = tonic::transport::Endpoint::from_shared(uri.to_owned())?;
    if endpoint.uri().scheme() != Some(&http::uri::Scheme::HTTPS) {
        return Ok(endpoint);
    }
    let tls = tls.ok_or_else(|| {
        anyhow::anyhow!("{uri}: an https:// endpoint needs the CA that signs its certificate: set tls.ca_file")
    })?;
    Ok(endpoint.tls_config(tls.tonic_config(server_name))?)
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

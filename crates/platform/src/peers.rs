//! Peers: where the services a process does not host are served, one balanced channel to each,
//! and the front door that forwards their calls (see `docs/adr/0009-front-door.md`).
//!
//! - `[peers]` lists the endpoints of each service (`POS_PEERS__ROUTING=http://a:50051,http://b:50051`);
//!   an entry may be `dns:///host:port`, resolved again every `dns_refresh_secs`, so that the
//!   replicas behind one name (a Kubernetes headless service) are all used.
//! - `https://` entries are called over TLS with the process's client settings (`[tls]`
//!   `ca_file`, and `client_cert_file` for mutual TLS); so are the addresses of `dns:///` entries
//!   when `tls.ca_file` is set, each verified against the entry's name (or `tls.server_name`).
//! - Services call their peers over [`balanced`] channels: tonic's power-of-two-choices balancer
//!   over every endpoint. Only idempotent calls are retried ([`retry_idempotent`]).
//! - Every process serves the whole `pos.v1` surface: calls of a service it does not host are
//!   forwarded as they are (headers, streaming bodies, trailers) to that service's peers
//!   ([`forward_unhosted`]). The owner authenticates and authorizes; nothing is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt as _;
use tracing::Instrument as _;

use crate::config::ConfigError;
use crate::error::ApiError;

/// The services of the platform, each the owner of one gRPC service of `pos.v1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Service {
    Intake,
    Routing,
    Ticketing,
    Sla,
    Notify,
}

impl Service {
    pub const ALL: &'static [Service] = <Service as strum::VariantArray>::VARIANTS;

    /// The name a process hosts it under (`pos up --services routing`).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The gRPC service it owns.
    pub fn grpc_service(self) -> &'static str {
        match self {
            Service::Intake => "pos.v1.IntakeService",
            Service::Routing => "pos.v1.RoutingService",
            Service::Ticketing => "pos.v1.TicketingService",
            Service::Sla => "pos.v1.SlaService",
            Service::Notify => "pos.v1.NotifyService",
        }
    }

    /// The environment variable listing its peers, for messages to operators.
    pub fn setting(self) -> String {
        format!("POS_PEERS__{}", self.name().to_ascii_uppercase())
    }
}

/// The `[peers]` section: the endpoints of each service this process does not host.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PeersConfig {
    #[serde(deserialize_with = "endpoint_list")]
    pub intake: Vec<String>,
    #[serde(deserialize_with = "endpoint_list")]
    pub routing: Vec<String>,
    #[serde(deserialize_with = "endpoint_list")]
    pub ticketing: Vec<String>,
    #[serde(deserialize_with = "endpoint_list")]
    pub sla: Vec<String>,
    #[serde(deserialize_with = "endpoint_list")]
    pub notify: Vec<String>,
    /// How often `dns:///host:port` entries are resolved again, in seconds.
    pub dns_refresh_secs: u64,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            intake: Vec::new(),
            routing: Vec::new(),
            ticketing: Vec::new(),
            sla: Vec::new(),
            notify: Vec::new(),
            dns_refresh_secs: 10,
        }
    }
}

/// Endpoints from a list or a comma-separated string (`http://a:50051,http://b:50051`).
fn endpoint_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Endpoints {
        List(Vec<String>),
        One(String),
    }
    let entries = match Endpoints::deserialize(deserializer)? {
        Endpoints::List(list) => list,
        Endpoints::One(one) => vec![one],
    };
    Ok(entries
        .iter()
        .flat_map(|entry| entry.split(','))
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty())
        .collect())
}

impl PeersConfig {
    /// The configured endpoints of `service` (empty: none).
    pub fn endpoints(&self, service: Service) -> &[String] {
        match service {
            Service::Intake => &self.intake,
            Service::Routing => &self.routing,
            Service::Ticketing => &self.ticketing,
            Service::Sla => &self.sla,
            Service::Notify => &self.notify,
        }
    }

    pub fn dns_refresh(&self) -> Duration {
        Duration::from_secs(self.dns_refresh_secs.max(1))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for service in Service::ALL {
            for entry in self.endpoints(*service) {
                Target::parse(entry)
                    .map_err(|problem| ConfigError::invalid(format!("peers.{}", service.name()), problem))?;
            }
        }
        Ok(())
    }
}

/// One configured entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// `http://host:port` or `https://host:port`: one endpoint (a host name is resolved at each
    /// connect).
    Fixed(String),
    /// `dns:///host:port`: every address the name resolves to, followed as it changes.
    Dns { host: String, port: u16 },
}

impl Target {
    fn parse(entry: &str) -> Result<Target, String> {
        if let Some(name) = entry.strip_prefix("dns:///") {
            let (host, port) = name
                .rsplit_once(':')
                .ok_or_else(|| format!("{entry:?}: a dns entry needs a port (dns:///host:port)"))?;
            let port = port.parse().map_err(|_| format!("{entry:?}: {port:?} is not a port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("{entry:?}: no host name"));
            }
            return Ok(Target::Dns { host: host.to_owned(), port });
        }
        let uri: http::Uri = entry.parse().map_err(|error| format!("{entry:?}: {error}"))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http" | "https"), Some(_)) if uri.path() == "/" || uri.path().is_empty() => {
                Ok(Target::Fixed(entry.to_owned()))
            }
            _ => Err(format!("{entry:?}: use http://host:port, https://host:port or dns:///host:port")),
        }
    }
}

/// How long a peer may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn endpoint(
    uri: &str,
    tls: Option<&crate::tls::ClientTls>,
    server_name: Option<&str>,
    timeout: Option<Duration>,
) -> anyhow::Result<Endpoint> {
    let endpoint = crate::grpc::endpoint(uri, tls, server_name)?.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true);
    Ok(match timeout {
        Some(timeout) => endpoint.timeout(timeout),
        None => endpoint,
    })
}

/// One channel balancing calls over every endpoint of `entries` (see [`PeersConfig`]);
/// `timeout` bounds each call until its response begins (none: the caller's deadline only).
/// Connections are made lazily; needs a Tokio runtime.
pub fn balanced(entries: &[String], dns_refresh: Duration, timeout: Option<Duration>) -> anyhow::Result<Channel> {
    anyhow::ensure!(!entries.is_empty(), "no peer endpoints");
    let tls = crate::tls::process_client();
    let targets =
        entries.iter().map(|entry| Target::parse(entry).map_err(anyhow::Error::msg)).collect::<Result<Vec<_>, _>>()?;
    let mut fixed = BTreeSet::new();
    let mut names = Vec::new();
    for target in targets {
        match target {
            Target::Fixed(uri) => {
                fixed.insert(uri);
            }
            Target::Dns { host, port } => names.push((host, port)),
        }
    }
    if names.is_empty() {
        let endpoints =
            fixed.iter().map(|uri| endpoint(uri, tls.as_deref(), None, timeout)).collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(Channel::balance_list(endpoints.into_iter()));
    }
    let (channel, changes) = Channel::balance_channel::<String>(64);
    tokio::spawn(follow_dns(fixed, names, changes, tls, timeout, dns_refresh));
    Ok(channel)
}

/// Keeps the balancer's endpoints equal to the fixed ones plus what the names resolve to now.
/// A name that fails to resolve keeps its last addresses: a DNS hiccup must not empty the set.
/// With client TLS, the addresses are called over TLS and verified against their name.
/// Ends when the channel is dropped.
async fn follow_dns(
    fixed: BTreeSet<String>,
    names: Vec<(String, u16)>,
    changes: tokio::sync::mpsc::Sender<Change<String, Endpoint>>,
    tls: Option<std::sync::Arc<crate::tls::ClientTls>>,
    timeout: Option<Duration>,
    every: Duration,
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut last_known: BTreeMap<(String, u16), BTreeSet<String>> = BTreeMap::new();
    let mut current: BTreeSet<String> = BTreeSet::new();
    loop {
        for (host, port) in &names {
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(addresses) => {
                    let resolved: BTreeSet<String> = addresses.map(|address| format!("{scheme}://{address}")).collect();
                    last_known.insert((host.clone(), *port), resolved);
                }
                Err(error) => tracing::warn!(%host, port, %error, "peer name not resolved, keeping its last addresses"),
            }
        }
        // Each address with the name its certificate must carry (none for fixed entries).
        let mut wanted: BTreeMap<String, Option<&str>> = fixed.iter().map(|uri| (uri.clone(), None)).collect();
        for ((host, _), uris) in &last_known {
            for uri in uris {
                wanted.entry(uri.clone()).or_insert(Some(host.as_str()));
            }
        }
        let wanted_uris: BTreeSet<String> = wanted.keys().cloned().collect();
        for uri in wanted_uris.difference(&current) {
            let change = match endpoint(uri, tls.as_deref(), wanted[uri], timeout) {
                Ok(endpoint) => Change::Insert(uri.clone(), endpoint),
                Err(error) => {
                    tracing::warn!(%uri, %error, "peer address not usable");
                    continue;
                }
            };
            if changes.send(change).await.is_err() {
                return;
            }
        }
        for uri in current.difference(&wanted_uris) {
            if changes.send(Change::Remove(uri.clone())).await.is_err() {
                return;
            }
        }
        if wanted_uris != current {
            tracing::info!(peers = ?wanted_uris, "peer endpoints changed");
        }
        current = wanted_uris;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = changes.closed() => return,
        }
    }
}

/// How often an idempotent call is tried in all.
const IDEMPOTENT_ATTEMPTS: u32 = 3;

/// Runs an idempotent peer call (a read), trying again on `UNAVAILABLE`: the balancer may have
/// picked a replica that is down, and the next try picks again. Never wrap a call that changes
/// something: a call that failed on the way back may have been applied.
pub async fn retry_idempotent<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if status.code() == tonic::Code::Unavailable && attempt < IDEMPOTENT_ATTEMPTS => {
                tracing::debug!(attempt, message = status.message(), "peer unavailable, trying again");
                tokio::time::sleep(backoff).await;
                backoff *= 4;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Marks a forwarded call: a process receiving one for a service it does not host answers with
/// an error instead of forwarding it again (peers configured in a loop).
pub const FORWARDED_HEADER: &str = "pos-forwarded";

/// Adds to `router` a route forwarding every call of each service not in `hosted` that has
/// peers configured. Services neither hosted nor configured stay UNIMPLEMENTED.
pub fn forward_unhosted(
    mut router: axum::Router,
    hosted: &[&str],
    peers: &PeersConfig,
) -> anyhow::Result<axum::Router> {
    for service in Service::ALL.iter().copied().filter(|service| !hosted.contains(&service.name())) {
        let endpoints = peers.endpoints(service);
        if endpoints.is_empty() {
            continue;
        }
        // No timeout of its own: the client's deadline (`grpc-timeout`) travels with the call.
        let channel = balanced(endpoints, peers.dns_refresh(), None)?;
        tracing::info!(service = service.grpc_service(), peers = ?endpoints, "forwarding calls to peers");
        router =
            router.route_service(&format!("/{}/{{*method}}", service.grpc_service()), Forward { service, channel });
    }
    Ok(router)
}

/// Forwards calls of one service to its peers.
#[derive(Clone)]
struct Forward {
    service: Service,
    channel: Channel,
}

type ForwardFuture = Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl tower::Service<http::Request<axum::body::Body>> for Forward {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = ForwardFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The channel's own readiness is awaited per call (`oneshot`), so one slow peer does
        // not hold up the router.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> ForwardFuture {
        Box::pin(forward(self.service, self.channel.clone(), request))
    }
}

async fn forward(
    service: Service,
    channel: Channel,
    request: http::Request<axum::body::Body>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().trim_start_matches('/').to_owned();
    if parts.headers.contains_key(FORWARDED_HEADER) {
        metrics::counter!("pos_grpc_forwarded_total", "service" => service.name(), "outcome" => "loop").increment(1);
        let error = anyhow::anyhow!(
            "{path} was forwarded to a process that does not host {}: check {}",
            service.name(),
            service.setting()
        );
        return Ok(status_response(ApiError::internal("peers configured in a loop", error)));
    }
    let method = path.rsplit_once('/').map(|(_, method)| method).unwrap_or_default().to_owned();
    let span = tracing::info_span!(
        "grpc forward",
        otel.name = path.as_str(),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = service.grpc_service(),
        rpc.method = method.as_str(),
    );
    // The owner's server span becomes a child of this one; the caller's context travels on
    // unchanged when there is none (no OpenTelemetry layer).
    inject_trace_context(&span, &mut parts.headers);
    parts.headers.insert(FORWARDED_HEADER, http::HeaderValue::from_static("1"));
    // What this process learnt about the call (its caller, the connection) is not the owner's.
    parts.extensions = http::Extensions::new();
    let request = http::Request::from_parts(parts, tonic::body::Body::new(body));
    match channel.oneshot(request).instrument(span).await {
        Ok(response) => {
            metrics::counter!("pos_grpc_forwarded_total", "service" => service.name(), "outcome" => "forwarded")
                .increment(1);
            Ok(response)
        }
        Err(error) => {
            metrics::counter!("pos_grpc_forwarded_total", "service" => service.name(), "outcome" => "unreachable")
                .increment(1);
            tracing::warn!(%error, %path, "no peer reachable for a forwarded call");
            Ok(status_response(ApiError::unavailable(
                "PEER_UNAVAILABLE",
                format!("{} is not reachable from this process, retry later", service.grpc_service()),
            )))
        }
    }
}

/// Writes `span`'s W3C trace context into `headers`, replacing what the caller sent; nothing
/// when the span has no valid context.
fn inject_trace_context(span: &tracing::Span, headers: &mut http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    struct HeaderInjector<'a>(&'a mut http::HeaderMap);
    impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
            {
                self.0.insert(name, value);
            }
        }
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

fn status_response(error: ApiError) -> http::Response<tonic::body::Body> {
    tonic::Status::from(error).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_own_every_grpc_service_of_the_contract() {
        use prost::Message as _;
        let descriptors = prost_types::FileDescriptorSet::decode(pos_proto::FILE_DESCRIPTOR_SET).unwrap();
        let contract: BTreeSet<String> = descriptors
            .file
            .iter()
            .filter(|file| file.package() == "pos.v1")
            .flat_map(|file| file.service.iter().map(move |service| format!("{}.{}", file.package(), service.name())))
            .collect();
        let owned: BTreeSet<String> = Service::ALL.iter().map(|service| service.grpc_service().to_owned()).collect();
        assert_eq!(owned, contract, "every gRPC service has exactly one owner to forward to");
    }

    #[test]
    fn entries_are_http_endpoints_or_dns_names() {
        assert_eq!(Target::parse("http://10.0.0.1:50051"), Ok(Target::Fixed("http://10.0.0.1:50051".into())));
        assert_eq!(Target::parse("https://routing.pos:50051"), Ok(Target::Fixed("https://routing.pos:50051".into())));
        assert_eq!(
            Target::parse("dns:///routing.pos.svc:50051"),
            Ok(Target::Dns { host: "routing.pos.svc".into(), port: 50051 })
        );
        for wrong in ["routing:50051", "dns:///routing", "ftp://a:1", "http://a:1/path", "dns:///:1"] {
            assert!(Target::parse(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn peers_come_from_the_environment_as_lists() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("POS_AUTH__HS256_SECRET", "dev");
            jail.set_env("POS_PEERS__ROUTING", "http://a:50051, http://b:50051");
            jail.set_env("POS_PEERS__TICKETING", "[\"dns:///ticketing:50051\"]");
            let config = crate::config::PlatformConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.peers.endpoints(Service::Routing), ["http://a:50051", "http://b:50051"]);
            assert_eq!(config.peers.endpoints(Service::Ticketing), ["dns:///ticketing:50051"]);
            assert!(config.peers.endpoints(Service::Intake).is_empty());

            jail.set_env("POS_PEERS__SLA", "sla:50051");
            let error = crate::config::PlatformConfig::load(None).unwrap_err().to_string();
            assert!(error.contains("peers.sla"), "{error}");
            jail.set_env("POS_PEERS__SLA", "");
            jail.set_env("POS_PEERS__ROUTNG", "http://a:50051");
            assert!(crate::config::PlatformConfig::load(None).is_err(), "a misspelt service is refused");
            Ok(())
        });
    }

    /// A process hosting nothing, whose peers for routing are itself (a misconfiguration): the
    /// call is forwarded once and refused there, not passed round forever; a service with no
    /// peers at all stays UNIMPLEMENTED.
    #[tokio::test]
    async fn a_forwarding_loop_ends_at_the_second_hop() {
        use pos_proto::v1::intake_service_client::IntakeServiceClient;
        use pos_proto::v1::routing_service_client::RoutingServiceClient;
        crate::testing::init_for_tests_once();
        let data = crate::testing::TempDir::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let mut config = crate::testing::platform_config(&data.0);
        config.peers.routing = vec![endpoint.clone()];
        let infra = crate::host::Infra::connect(config).await.unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { crate::host::run(&infra, Vec::new(), listener, shutdown).await })
        };
        crate::testing::eventually(Duration::from_secs(10), "the process serves", || async {
            crate::host::healthcheck(&endpoint, "").await.is_ok()
        })
        .await;
        let token = crate::testing::token("system", "", "", &[crate::auth::Role::System]);
        let channel = crate::grpc::channel(&endpoint).unwrap();

        let request = crate::grpc::outgoing(pos_proto::v1::ListRegionsRequest {}, &token);
        let looped = RoutingServiceClient::new(channel.clone()).list_regions(request).await.unwrap_err();
        assert_eq!(looped.code(), tonic::Code::Internal, "{looped:?}");
        let request = crate::grpc::outgoing(pos_proto::v1::GetAppealRequest::default(), &token);
        let nowhere = IntakeServiceClient::new(channel).get_appeal(request).await.unwrap_err();
        assert_eq!(nowhere.code(), tonic::Code::Unimplemented, "{nowhere:?}");

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    /// A tiny gRPC health server on a free port, counting the checks it answers.
    async fn counting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let counter = calls.clone();
        let counted = tower::ServiceBuilder::new()
            .map_request(move |request: http::Request<tonic::body::Body>| {
                counter.fetch_add(1, Ordering::SeqCst);
                request
            })
            .service(health);
        let router = tonic::service::Routes::default().into_axum_router().route_service(
            "/grpc.health.v1.Health/{*method}",
            counted.map_request(|request: http::Request<axum::body::Body>| request.map(tonic::body::Body::new)),
        );
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(tonic::service::Routes::from(router))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (format!("127.0.0.1:{port}"), calls)
    }

    async fn check_many(channel: Channel, times: usize) {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        for _ in 0..times {
            client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_balanced_channel_uses_every_endpoint() {
        use std::sync::atomic::Ordering;
        let (a, a_calls) = counting_server().await;
        let (b, b_calls) = counting_server().await;
        let channel = balanced(&[format!("http://{a}"), format!("http://{b}")], Duration::from_secs(1), None).unwrap();
        check_many(channel, 40).await;
        let (a_calls, b_calls) = (a_calls.load(Ordering::SeqCst), b_calls.load(Ordering::SeqCst));
        assert_eq!(a_calls + b_calls, 40);
        assert!(a_calls > 0 && b_calls > 0, "both endpoints get calls: {a_calls} and {b_calls}");
    }

    #[tokio::test]
    async fn a_dns_entry_is_resolved_to_its_addresses() {
        use std::sync::atomic::Ordering;
        let (a, a_calls) = counting_server().await;
        let port = a.rsplit_once(':').unwrap().1;
        let channel = balanced(&[format!("dns:///localhost:{port}")], Duration::from_secs(1), None).unwrap();
        // `localhost` may resolve to ::1 as well, where nothing listens: retried like a replica
        // that is down.
        let client = tonic_health::pb::health_client::HealthClient::new(channel);
        for _ in 0..5 {
            retry_idempotent(|| {
                let mut client = client.clone();
                async move { client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await }
            })
            .await
            .ok();
        }
        assert!(a_calls.load(Ordering::SeqCst) > 0, "the resolved address gets calls");
    }
}

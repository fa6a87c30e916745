//! The gRPC server over TLS: mutual TLS with certificates from the tests' own authorities,
//! certificates replaced on disk while serving, and plaintext kept to loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pos_platform::testing::TestCa;
use pos_platform::tls::{ClientTls, PeerIdentity, TlsConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The name the server's certificates carry; clients connect to 127.0.0.1 and verify this one.
const SERVER_NAME: &str = "routing.pos";

/// The certificates of a test: servers' from one authority, clients' from another.
struct Pki {
    servers: TestCa,
    clients: TestCa,
    server_ca: PathBuf,
    client_ca: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let (servers, clients) = (TestCa::named("pos servers"), TestCa::named("pos services"));
        let (server_ca, client_ca) = (servers.ca_file(), clients.ca_file());
        Pki { servers, clients, server_ca, client_ca }
    }

    /// The server's settings: its certificate from `servers`, client certificates from
    /// `clients` required.
    fn server_tls(&self) -> TlsConfig {
        let (cert_file, key_file) = self.servers.issue(SERVER_NAME);
        TlsConfig {
            cert_file: Some(cert_file),
            key_file: Some(key_file),
            client_ca_file: Some(self.client_ca.clone()),
            require_client_cert: true,
            reload_secs: 1,
            ..TlsConfig::default()
        }
    }

    /// A client trusting `servers`, with a certificate for `name` from `clients`.
    fn client(&self, name: &str) -> ClientTls {
        let (cert, key) = self.clients.issue(name);
        ClientTls::from_files(&self.server_ca, Some((&cert, &key)), None).unwrap()
    }
}

/// Answers every call of `pos.v1.RoutingService` with a status telling who the caller is, as
/// the server's request extensions say.
fn whoami_routes() -> tonic::service::Routes {
    let whoami = tower::service_fn(|request: http::Request<axum::body::Body>| async move {
        let peer = request.extensions().get::<PeerIdentity>().map(|peer| peer.name.clone()).unwrap_or_default();
        let from = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default();
        let answer = tonic::Status::failed_precondition(format!("peer={peer} from={from}"));
        Ok::<_, Infallible>(answer.into_http::<tonic::body::Body>())
    });
    tonic::service::Routes::from(axum::Router::new().route_service("/pos.v1.RoutingService/{*method}", whoami))
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(bind: &str, tls: TlsConfig) -> Server {
        pos_platform::telemetry::init_for_tests();
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(pos_platform::grpc::serve(
            listener,
            whoami_routes(),
            Vec::new(),
            pos_platform::testing::authenticator(),
            pos_platform::limits::LimitsConfig::default(),
            tls,
            shutdown.clone(),
        ));
        Server { addr, shutdown, served }
    }

    fn https(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.served).await.unwrap().unwrap().unwrap();
    }
}

async fn connect(endpoint: &str, tls: Option<&ClientTls>) -> anyhow::Result<Channel> {
    let endpoint = pos_platform::grpc::endpoint(endpoint, tls, Some(SERVER_NAME))?;
    Ok(endpoint.connect_timeout(Duration::from_secs(3)).connect().await?)
}

/// Whether a health check from a client connecting to `endpoint` with `tls` fails, at the
/// handshake or at the call.
async fn refused(endpoint: &str, tls: Option<&ClientTls>) -> bool {
    match connect(endpoint, tls).await {
        Ok(channel) => healthy(channel).await.is_err(),
        Err(_) => true,
    }
}

async fn healthy(channel: Channel) -> Result<(), tonic::Status> {
    let request = HealthCheckRequest { service: String::new() };
    tokio::time::timeout(Duration::from_secs(3), HealthClient::new(channel).check(request))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer within 3 s"))?
        .map(|_| ())
}

async fn whoami(channel: Channel) -> String {
    let request = pos_platform::grpc::outgoing(pos_proto::v1::ListRegionsRequest {}, "");
    let status = pos_proto::v1::routing_service_client::RoutingServiceClient::new(channel)
        .list_regions(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    status.message().to_owned()
}

#[tokio::test]
async fn mutual_tls_serves_a_client_with_a_certificate_from_its_ca() {
    let pki = Pki::new();
    let server = Server::start("127.0.0.1:0", pki.server_tls()).await;
    // A client that connects and says nothing holds up nobody else's handshake.
    let _silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();

    let channel = connect(&server.https(), Some(&pki.client("intake.pos"))).await.unwrap();
    healthy(channel.clone()).await.unwrap();
    assert_eq!(whoami(channel).await, "peer=intake.pos from=127.0.0.1", "the caller is named by its certificate");
    assert_eq!(PeerIdentity { name: "intake.pos".into() }.service(), "intake");
    server.stop().await;
}

#[tokio::test]
async fn clients_without_a_certificate_from_its_ca_are_refused() {
    let pki = Pki::new();
    let server = Server::start("127.0.0.1:0", pki.server_tls()).await;

    // Plaintext gets no gRPC answer from a TLS listener.
    let plaintext = format!("http://127.0.0.1:{}", server.addr.port());
    assert!(refused(&plaintext, None).await, "a plaintext call is refused");

    // TLS without a client certificate.
    let anonymous = ClientTls::from_files(&pki.server_ca, None, None).unwrap();
    assert!(refused(&server.https(), Some(&anonymous)).await, "a call without a client certificate is refused");

    // A certificate with the right name from an authority the server does not know.
    let stranger = TestCa::named("somebody else");
    let (cert, key) = stranger.issue("intake.pos");
    let stranger = ClientTls::from_files(&pki.server_ca, Some((&cert, &key)), None).unwrap();
    assert!(refused(&server.https(), Some(&stranger)).await, "a certificate from another CA is refused");

    // The listener goes on accepting after the failed handshakes.
    let channel = connect(&server.https(), Some(&pki.client("sla.pos"))).await.unwrap();
    healthy(channel).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_reaches_new_connections_while_open_ones_go_on() {
    let pki = Pki::new();
    let tls = pki.server_tls();
    let (cert_file, key_file) = (tls.cert_file.clone().unwrap(), tls.key_file.clone().unwrap());
    let server = Server::start("127.0.0.1:0", tls).await;
    let client = pki.client("ticketing.pos");
    let open = connect(&server.https(), Some(&client)).await.unwrap();
    healthy(open.clone()).await.unwrap();

    // The server's certificate now comes from a new authority, trusted by new clients only.
    let renewed = TestCa::named("pos servers, renewed");
    let (certificate, key) = renewed.issue_pem(SERVER_NAME);
    let renewed_ca = renewed.ca_file();
    // The key first: until the certificate matches it, the server keeps what it has.
    std::fs::write(&key_file, key).unwrap();
    std::fs::write(&cert_file, certificate).unwrap();
    let (client_cert, client_key) = pki.clients.issue("ticketing.pos");
    let trusts_renewed = ClientTls::from_files(&renewed_ca, Some((&client_cert, &client_key)), None).unwrap();
    pos_platform::testing::eventually(Duration::from_secs(8), "the renewed certificate is served", || async {
        !refused(&server.https(), Some(&trusts_renewed)).await
    })
    .await;

    // A new connection trusting the old authority only is refused now; the open one goes on.
    assert!(refused(&server.https(), Some(&client)).await, "the old certificate is no longer served");
    healthy(open).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn plaintext_listens_beyond_loopback_only_when_allowed() {
    let refused = Server::start("0.0.0.0:0", TlsConfig::default()).await;
    let error = tokio::time::timeout(Duration::from_secs(5), refused.served).await.unwrap().unwrap().unwrap_err();
    let error = format!("{error:#}");
    assert!(error.contains("tls.cert_file") && error.contains("tls.allow_plaintext"), "{error}");

    let allowed = Server::start("0.0.0.0:0", TlsConfig { allow_plaintext: true, ..TlsConfig::default() }).await;
    let channel = connect(&format!("http://127.0.0.1:{}", allowed.addr.port()), None).await.unwrap();
    healthy(channel).await.unwrap();
    allowed.stop().await;

    // Loopback needs no permission.
    let local = Server::start("127.0.0.1:0", TlsConfig::default()).await;
    let channel = connect(&format!("http://127.0.0.1:{}", local.addr.port()), None).await.unwrap();
    healthy(channel).await.unwrap();
    local.stop().await;
}

#[tokio::test]
async fn an_https_peer_needs_a_ca() {
    let error = pos_platform::grpc::endpoint("https://routing.pos:50051", None, None).unwrap_err().to_string();
    assert!(error.contains("tls.ca_file"), "{error}");
}

//! Spawning the service on a fresh schema, a unique cache prefix and an in-process bus.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pos_platform::auth::Role;
use pos_platform::bus::memory::MemoryBus;
use pos_platform::cache::RedisCache;
use pos_platform::db::Db;
use pos_platform::host::{Infra, ServiceContext};
use pos_platform::testing::{self, TempDir};
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub struct App {
    pub addr: SocketAddr,
    pub db: Db,
    pub bus: Arc<MemoryBus>,
    pub cache: Arc<RedisCache>,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    _dir: TempDir,
}

/// The routing service, seeded, serving on a free port.
pub async fn spawn_app() -> App {
    let dir = TempDir::new();
    let db = testing::postgres_db("routing", &pos_routing::MIGRATIONS).await;
    let cache = Arc::new(
        RedisCache::connect(&testing::redis_url(), &testing::unique("routing")).await.expect("local Redis is running"),
    );
    let bus = Arc::new(MemoryBus::new());
    let infra = Infra {
        config: testing::platform_config(&dir.0),
        bus: bus.clone(),
        cache: cache.clone(),
        authenticator: testing::authenticator(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let component = pos_routing::component(ServiceContext {
        infra: infra.clone(),
        db: db.clone(),
        config_file: None,
        self_endpoint: format!("http://{addr}"),
    })
    .await
    .expect("component builds");
    let shutdown = CancellationToken::new();
    let server = {
        let (infra, shutdown) = (infra.clone(), shutdown.clone());
        tokio::spawn(async move { pos_platform::host::run(&infra, vec![component], listener, shutdown).await })
    };
    let app = App { addr, db, bus, cache, shutdown, server, _dir: dir };
    app.wait_until_serving().await;
    app
}

impl App {
    async fn wait_until_serving(&self) {
        let endpoint = format!("http://{}", self.addr);
        for _ in 0..100 {
            if pos_platform::host::healthcheck(&endpoint, "pos.v1.RoutingService").await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("routing did not start serving");
    }

    pub async fn client(&self) -> RoutingServiceClient<Channel> {
        RoutingServiceClient::connect(format!("http://{}", self.addr)).await.expect("connect")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.server).await;
        self.db.drop_schema().await.expect("drop schema");
        self.db.close().await;
    }
}

/// A request with a bearer token for `roles` in `organization_id`.
pub fn req<T>(message: T, organization_id: &str, roles: &[Role]) -> tonic::Request<T> {
    let token = testing::token("tester", organization_id, "41", roles);
    pos_platform::grpc::outgoing(message, &token)
}

/// A request from an integration acting as the platform (classifier and directory admin).
pub fn system<T>(message: T) -> tonic::Request<T> {
    req(message, "", &[Role::System])
}

/// A request from an applicant: any authenticated role may resolve and read.
pub fn applicant<T>(message: T) -> tonic::Request<T> {
    req(message, "", &[Role::Applicant])
}

/// Asserts an `INVALID_ARGUMENT` naming `field` in its BadRequest details.
pub fn assert_invalid(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let fields = pos_platform::grpc::violated_fields(status);
    assert!(fields.iter().any(|f| f == field), "expected a violation of {field}, got {fields:?}: {}", status.message());
}

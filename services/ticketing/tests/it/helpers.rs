//! Routed appeals, databases of both dialects, and the service on a free port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pos_platform::Envelope;
use pos_platform::auth::Role;
use pos_platform::bus::memory::MemoryBus;
use pos_platform::cache::MemoryCache;
use pos_platform::consumer::Handler;
use pos_platform::db::Db;
use pos_platform::host::{Infra, ServiceContext};
use pos_platform::testing::{self, TempDir};
use pos_proto::v1 as pb;
use pos_proto::v1::events::AppealRouted;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use pos_ticketing::store::{self, Ticket};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const REGISTERED_AT: i64 = 1_737_000_000;

/// An appeal routed to `organization_id`, filed by the applicant account `account`.
pub fn routed(appeal_id: &str, organization_id: &str, account: &str) -> AppealRouted {
    AppealRouted {
        appeal_id: appeal_id.into(),
        number: 1501,
        registered_at: Some(prost_types::Timestamp { seconds: REGISTERED_AT, nanos: 0 }),
        source: pb::Source::Epgu as i32,
        region_code: "41".into(),
        category_id: "cat-school".into(),
        fact_id: "fact-food".into(),
        organization: Some(pb::OrganizationRef {
            id: organization_id.into(),
            short_name: format!("school {organization_id}"),
            r#type: pb::OrganizationType::School as i32,
            region_code: "41".into(),
        }),
        time_zone: "Asia/Kamchatka".into(),
        period_days: 30,
        public_text: "В столовой холодная еда".into(),
        applicant: Some(pb::Applicant {
            full_name: "Иван Иванов".into(),
            account_id: account.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Delivers `routed` through the consumer's handler, as the bus would.
pub async fn deliver(db: &Db, routed: &AppealRouted) {
    let mut tx = db.begin().await.expect("begin");
    pos_ticketing::consumer::AppealRoutedHandler
        .handle(&mut tx, &Envelope::new(routed, "41"))
        .await
        .expect("routed appeal handled");
    tx.commit().await.expect("commit");
}

pub async fn current(db: &Db, appeal_id: &str) -> Ticket {
    store::get_by_appeal(db, appeal_id).await.expect("read").expect("a current ticket")
}

pub async fn outbox_count(db: &Db, type_name: &str) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE type_name = $1")
        .bind(type_name)
        .fetch_one(db.pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

/// Both dialects, each with a fresh migrated database.
pub async fn databases() -> Vec<(Db, Option<TempDir>)> {
    let postgres = testing::postgres_db("ticketing", &pos_ticketing::MIGRATIONS).await;
    let (sqlite, dir) = testing::sqlite_db("ticketing", &pos_ticketing::MIGRATIONS).await;
    vec![(postgres, None), (sqlite, Some(dir))]
}

pub async fn release(db: Db) {
    if db.dialect() == pos_platform::db::Dialect::Postgres {
        db.drop_schema().await.expect("drop schema");
    }
    db.close().await;
}

pub struct App {
    pub addr: SocketAddr,
    pub db: Db,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    _dir: TempDir,
}

/// Ticketing on a fresh PostgreSQL schema with an in-process bus, serving on a free port.
pub async fn spawn_app() -> App {
    let dir = TempDir::new();
    let db = testing::postgres_db("ticketing", &pos_ticketing::MIGRATIONS).await;
    let infra = Infra {
        config: testing::platform_config(&dir.0),
        bus: Arc::new(MemoryBus::new()),
        cache: Arc::new(MemoryCache::new()),
        authenticator: testing::authenticator(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let component = pos_ticketing::component(ServiceContext {
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
    let app = App { addr, db, shutdown, server, _dir: dir };
    let endpoint = format!("http://{addr}");
    for _ in 0..100 {
        if pos_platform::host::healthcheck(&endpoint, "pos.v1.TicketingService").await.is_ok() {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ticketing did not start serving");
}

impl App {
    pub async fn client(&self) -> TicketingServiceClient<Channel> {
        TicketingServiceClient::connect(format!("http://{}", self.addr)).await.expect("connect")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.server).await;
        self.db.drop_schema().await.expect("drop schema");
        self.db.close().await;
    }
}

/// A request with a token for `subject` holding `roles` in `organization_id`.
pub fn as_<T>(message: T, subject: &str, organization_id: &str, roles: &[Role]) -> tonic::Request<T> {
    let token = testing::token(subject, organization_id, "41", roles);
    pos_platform::grpc::outgoing(message, &token)
}

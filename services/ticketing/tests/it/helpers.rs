//! Routed appeals, databases of both dialects, and the service served by the platform's test
//! server.

use std::ops::Deref;

use pos_platform::Envelope;
use pos_platform::auth::Role;
use pos_platform::consumer;
use pos_platform::db::Db;
use pos_platform::testing::{self, TempDir, TestOptions, TestServer};
use pos_proto::v1 as pb;
use pos_proto::v1::events::AppealRouted;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use pos_ticketing::store::tickets::{self, Ticket};
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
    consumer::deliver(&pos_ticketing::consumer::AppealRoutedHandler, &mut tx, &Envelope::new(routed, "41"))
        .await
        .expect("routed appeal handled");
    tx.commit().await.expect("commit");
}

pub async fn current(db: &Db, appeal_id: &str) -> Ticket {
    tickets::get_by_appeal(db, appeal_id).await.expect("read").expect("a current ticket")
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

/// Ticketing served as `pos up` runs it (a fresh PostgreSQL schema, the in-process bus), with a
/// typed client.
pub struct App(TestServer);

pub async fn spawn_app() -> App {
    App(TestServer::spawn("ticketing", &pos_ticketing::MIGRATIONS, TestOptions::default(), pos_ticketing::component)
        .await)
}

impl Deref for App {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.0
    }
}

impl App {
    pub fn client(&self) -> TicketingServiceClient<Channel> {
        TicketingServiceClient::new(self.channel())
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

/// A request with a token for `subject` holding `roles` in `organization_id`.
pub fn as_<T>(message: T, subject: &str, organization_id: &str, roles: &[Role]) -> tonic::Request<T> {
    let token = testing::token(subject, organization_id, "41", roles);
    pos_platform::grpc::outgoing(message, &token)
}

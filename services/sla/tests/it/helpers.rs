//! Databases, events and readers shared by the tests.

use chrono::{DateTime, TimeZone, Utc};
use pos_platform::consumer::{Handler, deliver};
use pos_platform::db::{Db, to_micros};
use pos_platform::testing::{self, TempDir};
use pos_platform::{Dialect, Envelope};
use pos_proto::v1 as pb;
use pos_proto::v1::events::{AppealRouted, TicketAction, TicketReopened, TicketStatusChanged};
use pos_sla::consumer::{ReopenedHandler, RoutedHandler, Shared, StatusHandler};
use pos_sla::store::{self, Clock, ClockKind};
use sqlx::Row;

/// A migrated, seeded database: PostgreSQL (a schema of its own) or SQLite (a temp file), with
/// the consumer's handlers to feed it events as the bus would.
pub struct SlaDb {
    pub db: Db,
    _dir: Option<TempDir>,
}

impl SlaDb {
    /// The database of a running server (seeded by the component).
    pub fn of(db: Db) -> SlaDb {
        SlaDb { db, _dir: None }
    }

    pub async fn postgres() -> SlaDb {
        let db = testing::postgres_db("sla", &pos_sla::MIGRATIONS).await;
        store::seed(&db).await.expect("seed");
        SlaDb { db, _dir: None }
    }

    pub async fn sqlite() -> SlaDb {
        let (db, dir) = testing::sqlite_db("sla", &pos_sla::MIGRATIONS).await;
        store::seed(&db).await.expect("seed");
        SlaDb { db, _dir: Some(dir) }
    }

    pub async fn both() -> Vec<SlaDb> {
        vec![SlaDb::postgres().await, SlaDb::sqlite().await]
    }

    pub async fn drop(self) {
        self.db.drop_schema().await.expect("drop schema");
        self.db.close().await;
    }

    pub fn shared(&self) -> Shared {
        Shared { dialect: self.db.dialect(), timers: std::sync::Arc::new(tokio::sync::Notify::new()) }
    }

    /// Delivers an envelope to a handler in a transaction and commits, as the consumer does.
    pub async fn handle<H: Handler>(&self, handler: &H, envelope: &Envelope) {
        let mut tx = self.db.begin().await.expect("begin");
        deliver(handler, &mut tx, envelope).await.expect("handled");
        tx.commit().await.expect("commit");
    }

    pub async fn routed(&self, event: &AppealRouted) {
        let region = event.region_code.clone();
        self.handle(&RoutedHandler(self.shared()), &Envelope::new(event, &region).with_appeal(&event.appeal_id)).await;
    }

    pub async fn status(&self, event: &TicketStatusChanged) {
        self.handle(&StatusHandler(self.shared()), &Envelope::new(event, &event.region_code)).await;
    }

    pub async fn reopened(&self, event: &TicketReopened) {
        self.handle(&ReopenedHandler(self.shared()), &Envelope::new(event, &event.region_code)).await;
    }

    pub async fn clock(&self, appeal_id: &str, kind: ClockKind) -> Clock {
        let mut conn = self.db.pool().acquire().await.unwrap();
        store::clocks(&mut conn, appeal_id).await.unwrap().into_iter().find(|c| c.kind == kind).expect("clock")
    }

    pub async fn log(&self, appeal_id: &str) -> Vec<store::LogEntry> {
        let mut conn = self.db.pool().acquire().await.unwrap();
        store::log(&mut conn, appeal_id).await.unwrap()
    }

    pub async fn log_kinds(&self, appeal_id: &str) -> Vec<String> {
        let mut conn = self.db.pool().acquire().await.unwrap();
        store::log(&mut conn, appeal_id).await.unwrap().into_iter().map(|e| format!("{}:{}", e.clock, e.kind)).collect()
    }

    /// Routing keys in the outbox, oldest first, for one appeal (by the appeal header).
    pub async fn published(&self, appeal_id: &str) -> Vec<String> {
        let rows =
            sqlx::query("SELECT routing_key, headers FROM outbox ORDER BY id").fetch_all(self.db.pool()).await.unwrap();
        rows.iter()
            .filter(|r| r.get::<String, _>("headers").contains(&format!("\"{appeal_id}\"")))
            .map(|r| r.get::<String, _>("routing_key"))
            .collect()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.db.pool()).await.unwrap()
    }

    pub fn name(&self) -> &'static str {
        match self.db.dialect() {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }
}

pub fn ts(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(pos_proto::time::to_proto(at))
}

pub fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

/// An appeal routed to `organization` in `region` (zone `zone`), registered at `registered_at`.
pub fn routed(
    appeal_id: &str,
    region: &str,
    zone: &str,
    organization: &str,
    fact_id: &str,
    fast_track: bool,
    registered_at: DateTime<Utc>,
) -> AppealRouted {
    AppealRouted {
        appeal_id: appeal_id.into(),
        number: 1,
        registered_at: ts(registered_at),
        region_code: region.into(),
        fact_id: fact_id.into(),
        organization: Some(pb::OrganizationRef {
            id: organization.into(),
            short_name: organization.into(),
            r#type: pb::OrganizationType::RegionalCenter as i32,
            region_code: region.into(),
        }),
        time_zone: zone.into(),
        period_days: if fast_track { 10 } else { 30 },
        working_days: false,
        fast_track,
        routed_at: ts(registered_at),
        ..Default::default()
    }
}

pub fn status(appeal_id: &str, region: &str, action: TicketAction, at: DateTime<Utc>) -> TicketStatusChanged {
    TicketStatusChanged {
        ticket_id: format!("t-{appeal_id}"),
        appeal_id: appeal_id.into(),
        region_code: region.into(),
        action: action as i32,
        at: ts(at),
        ..Default::default()
    }
}

pub fn micros(at: DateTime<Utc>) -> i64 {
    to_micros(at)
}

//! Notify: turns events into messages to people and systems.
//!
//! This first part consumes what notify must act upon into an ordered journal (the source of
//! deliveries and of the resumable stream for external systems) and serves the delivery log.

use async_trait::async_trait;
use pos_platform::auth::{Role, authorize};
use pos_platform::bus::QueueSpec;
use pos_platform::consumer::{Consumer, HandleError, Handler};
use pos_platform::db::{Db, Migrations, RowExt, now_micros, to_micros};
use pos_platform::grpc::internal;
use pos_platform::host::{Component, ServiceContext};
use pos_platform::{Envelope, Tx};
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_server::{NotifyService, NotifyServiceServer};
use sqlx::Row;
use sqlx::migrate::Migrator;
use tonic::{Request, Response, Status};

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
pub static MIGRATIONS: Migrations = Migrations { postgres: &POSTGRES, sqlite: &SQLITE };

/// The events people or systems must hear of.
const EVENTS: [&str; 3] = ["appeal.received", "appeal.routed", "ticket.status_changed"];

pub async fn component(ctx: ServiceContext) -> anyhow::Result<Component> {
    let bindings: Vec<String> = EVENTS.iter().flat_map(|event| ctx.infra.config.bindings(event)).collect();
    let bindings: Vec<&str> = bindings.iter().map(String::as_str).collect();
    let routes = tonic::service::Routes::new(NotifyServiceServer::new(Notify { db: ctx.db.clone() }));
    Ok(Component::new("notify", ctx.db, routes, vec!["pos.v1.NotifyService"])
        .consumer(Consumer::new(QueueSpec::new("notify.events", &bindings), Journal)))
}

struct Journal;

#[async_trait]
impl Handler for Journal {
    async fn handle(&self, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandleError> {
        sqlx::query(
            "INSERT INTO journal (message_id, event, region_code, appeal_id, type_name, payload, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(envelope.message_id.to_string())
        .bind(envelope.event())
        .bind(envelope.region())
        .bind(envelope.appeal_id().unwrap_or_default())
        .bind(&envelope.type_name)
        .bind(envelope.payload.to_vec())
        .bind(to_micros(envelope.timestamp).min(now_micros()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

struct Notify {
    db: Db,
}

#[tonic::async_trait]
impl NotifyService for Notify {
    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/ListDeliveries";
        // The delivery log names recipients: operators and systems only.
        authorize(&request, METHOD, &[Role::System, Role::OrgAdmin, Role::Curator])?;
        let request = request.into_inner();
        let limit = i64::from(request.page_size.clamp(1, 500));
        let rows = sqlx::query(
            "SELECT id, message_id, event, channel, recipient, status, attempts, last_error, created_at, delivered_at \
             FROM deliveries WHERE appeal_id = $1 ORDER BY created_at LIMIT $2",
        )
        .bind(&request.appeal_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(|e| internal("failed to read deliveries", e))?;
        let deliveries = rows
            .iter()
            .map(|row| -> Result<pb::Delivery, sqlx::Error> {
                Ok(pb::Delivery {
                    id: row.try_get("id")?,
                    event_id: row.try_get("message_id")?,
                    event_type: row.try_get("event")?,
                    channel: row.try_get("channel")?,
                    recipient: row.try_get("recipient")?,
                    status: row.try_get("status")?,
                    attempts: row.try_get::<i64, _>("attempts")? as i32,
                    last_error: row.try_get("last_error")?,
                    created_at: Some(pos_proto::time::to_proto(row.time("created_at")?)),
                    delivered_at: row.time_opt("delivered_at")?.map(pos_proto::time::to_proto),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal("failed to read deliveries", e))?;
        Ok(Response::new(pb::ListDeliveriesResponse { deliveries }))
    }
}

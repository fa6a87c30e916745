//! Ticketing: the organization's cabinet, where a routed appeal becomes work.

pub mod consumer;
pub mod folder;
pub mod grpc;
pub mod incident;
pub mod store;
pub mod template;
pub mod workflow;

use pos_platform::bus::QueueSpec;
use pos_platform::consumer::Consumer;
use pos_platform::db::Migrations;
use pos_platform::host::{Component, ServiceContext};
use pos_proto::v1::ticketing_service_server::TicketingServiceServer;
use sqlx::migrate::Migrator;

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
pub static MIGRATIONS: Migrations = Migrations { postgres: &POSTGRES, sqlite: &SQLITE };

pub async fn component(ctx: ServiceContext) -> anyhow::Result<Component> {
    let bindings = ctx.infra.config.bindings("appeal.routed");
    let bindings: Vec<&str> = bindings.iter().map(String::as_str).collect();
    let mut sla = ctx.infra.config.bindings("sla.armed");
    sla.extend(ctx.infra.config.bindings("sla.overdue"));
    let sla: Vec<&str> = sla.iter().map(String::as_str).collect();
    let routes = tonic::service::Routes::new(TicketingServiceServer::new(grpc::Ticketing::new(ctx.db.clone())));
    Ok(Component::new("ticketing", ctx.db, routes, vec!["pos.v1.TicketingService"])
        .consumer(Consumer::new(QueueSpec::new("ticketing.appeal-routed", &bindings), consumer::AppealRoutedHandler))
        .consumer(Consumer::new(QueueSpec::new("ticketing.sla", &sla), consumer::SlaHandler)))
}

//! Ticketing: the organization's cabinet, where a routed appeal becomes work.
//!
//! Layers, from the wire in: [`grpc`] (roles, the caller's organization, requests into
//! commands), [`workflow`] and [`incident`] (pure state machines), [`store`] (the database, one
//! module per aggregate), [`events`] (what the cabinet publishes), [`consumer`] (what it hears).
//! [`error`] maps the domain's refusals onto the platform's one error model; [`measures`] is what
//! the cabinet tells on `/metrics`.

pub mod consumer;
pub mod error;
pub mod events;
pub mod folder;
pub mod grpc;
pub mod incident;
pub mod measures;
pub mod store;
pub mod template;
pub mod workflow;

use pos_platform::consumer::Consumer;
use pos_platform::db::Migrations;
use pos_platform::host::{Component, ServiceContext};
use pos_proto::v1::ticketing_service_server::TicketingServiceServer;
use sqlx::migrate::Migrator;

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
pub static MIGRATIONS: Migrations = Migrations { postgres: &POSTGRES, sqlite: &SQLITE };

pub async fn component(ctx: ServiceContext) -> anyhow::Result<Component> {
    let regions = &ctx.infra.config.regions;
    // Incidents and answers name intake's files: intake checks and records each reference.
    let attachments = grpc::AttachmentClaims::new(ctx.peer(pos_platform::peers::Service::Intake)?)
        .with_service_identity(ctx.infra.clone());
    // A supervisor's escalation names a federal body of routing's directory.
    let directory = grpc::Directory::new(ctx.peer(pos_platform::peers::Service::Routing)?, ctx.infra.clone());
    let api = grpc::Ticketing::new(ctx.db.clone()).with_attachments(attachments).with_directory(directory);
    // A curator's reports cover the organizations under theirs: routing knows which.
    let api = api.with_supervision(grpc::Supervision::new(ctx.peer(pos_platform::peers::Service::Routing)?));
    let routes = tonic::service::Routes::new(pos_platform::message_limits!(
        TicketingServiceServer::new(api),
        &ctx.infra.config.limits
    ));
    Ok(Component::new("ticketing", ctx.db, routes, vec!["pos.v1.TicketingService"])
        .consumer(Consumer::new(consumer::ROUTED_QUEUE, regions, consumer::AppealRoutedHandler))
        .consumer(Consumer::new(consumer::SLA_QUEUE, regions, consumer::SlaHandler))
        .sampler("tickets by folder", measures::OpenTickets::default()))
}

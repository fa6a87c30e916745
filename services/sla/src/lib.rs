//! SLA: answer and execution deadlines computed from the region's policy and production
//! calendar, kept as durable timers, and published as `sla.*` events.
//!
//! - `calendar`, `policy`, `deadline`: pure data and arithmetic, unit-tested.
//! - `store`: clocks, the append-only SLA log, timers and their ledger, policies, calendars.
//! - `engine`: clock changes, each with its log entry, timers and events in one transaction.
//! - `consumer`: `appeal.routed`, `ticket.status_changed`, `ticket.reopened`.
//! - `timers`: the loop firing due timers, at most once, never early, across instances.
//! - `gauges`: deadlines by region and state, and the organizations with the most overdue.
//! - `grpc`: `pos.v1.SlaService`.
//!
//! See `docs/adr/0007-sla-deadlines-and-timers.md`.

pub mod calendar;
pub mod config;
pub mod consumer;
pub mod deadline;
pub mod engine;
pub mod gauges;
pub mod grpc;
pub mod policy;
pub mod store;
pub mod timers;

use std::sync::Arc;

use pos_platform::consumer::Consumer;
use pos_platform::db::Migrations;
use pos_platform::host::{Component, ServiceContext};
use pos_proto::v1::sla_service_server::SlaServiceServer;
use sqlx::migrate::Migrator;
use tokio::sync::Notify;

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
pub static MIGRATIONS: Migrations = Migrations { postgres: &POSTGRES, sqlite: &SQLITE };

/// The service's component: the gRPC API, three consumers and the timer loop. Loads the
/// built-in calendars and policies that the database lacks first.
pub async fn component(ctx: ServiceContext) -> anyhow::Result<Component> {
    let config = config::SlaConfig::load(ctx.config_file.as_deref())?;
    store::seed(&ctx.db).await?;
    let wake = Arc::new(Notify::new());
    let shared = consumer::Shared { dialect: ctx.db.dialect(), timers: wake.clone() };
    let routes = tonic::service::Routes::new(pos_platform::message_limits!(
        SlaServiceServer::new(grpc::Sla::new(ctx.db.clone())),
        &ctx.infra.config.limits
    ));
    let timer_loop = timers::TimerLoop::new(ctx.db.clone(), wake);
    Ok(Component::new("sla", ctx.db, routes, vec!["pos.v1.SlaService"])
        .consumer(Consumer::new(
            consumer::ROUTED_QUEUE,
            &ctx.infra.config.regions,
            consumer::RoutedHandler(shared.clone()),
        ))
        .consumer(Consumer::new(
            consumer::STATUS_QUEUE,
            &ctx.infra.config.regions,
            consumer::StatusHandler(shared.clone()),
        ))
        .consumer(Consumer::new(consumer::REOPENED_QUEUE, &ctx.infra.config.regions, consumer::ReopenedHandler(shared)))
        .task("sla-timers", move |shutdown| timer_loop.run(shutdown))
        .sampler("deadlines", gauges::DeadlineGauges::new(config.top_organizations)))
}

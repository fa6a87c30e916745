//! Routing: the classifier (category → subcategory → fact, each fact with its addressee rule
//! and review period), the organizations directory, regions and auto-rules; the addressee
//! decision for every received appeal (`appeal.received` → `appeal.routed`), and its dry run
//! over gRPC (`pos.v1.RoutingService`).
//!
//! See `docs/adr/0003-routing-resolution.md` for the algorithm and the cache.

pub mod config;
pub mod consumer;
pub mod grpc;
pub mod model;
pub mod reroute;
pub mod resolve;
pub mod seed;
pub mod snapshot;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pos_platform::consumer::Consumer;
use pos_platform::db::{Db, Migrations};
use pos_platform::host::{Component, ServiceContext};
use pos_proto::v1::routing_service_server::RoutingServiceServer;
use sqlx::migrate::Migrator;
use tonic::server::NamedService;
use tonic::service::Routes;

pub use config::RoutingConfig;
pub use seed::{Seed, SeedError, SeedReport, load_seed};
pub use store::OnConflict;

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// The routing schema, for PostgreSQL and SQLite.
pub static MIGRATIONS: Migrations = Migrations { postgres: &POSTGRES, sqlite: &SQLITE };

/// The service's component: the gRPC API and the `appeal.received` consumer. Seeds an empty
/// database first, so that a fresh deployment routes from its first appeal.
pub async fn component(ctx: ServiceContext) -> anyhow::Result<Component> {
    let config: RoutingConfig = pos_platform::config::section(ctx.config_file.as_deref(), "routing")?;
    config.validate()?;
    let db = ctx.db.clone();
    if config.seed_on_start {
        seed_if_empty(&db, &config).await?;
    }
    let config = Arc::new(config);
    let snapshots =
        Arc::new(snapshot::Snapshots::new(ctx.infra.cache.clone(), Duration::from_secs(config.cache_ttl_secs)));
    warn_about_fallback(&db, &snapshots, &config).await?;

    // The dry run shows the period the SLA service's policy gives (this process's own endpoint
    // when the SLA service runs here, as in `pos up`).
    let periods = grpc::SlaPeriods::new(ctx.peer(pos_platform::peers::Service::Sla)?, ctx.infra.clone());
    let api = grpc::RoutingApi::new(db.clone(), snapshots.clone(), config.clone()).with_periods(periods);
    let routes = Routes::new(pos_platform::message_limits!(RoutingServiceServer::new(api), &ctx.infra.config.limits));
    let regions = &ctx.infra.config.regions;
    let consumer = Consumer::new(
        consumer::QUEUE,
        regions,
        consumer::AppealReceivedHandler::new(snapshots.clone(), config.clone()),
    );
    let reroutes = Consumer::new(reroute::QUEUE, regions, reroute::RerouteRequestedHandler::new(snapshots, config));
    Ok(Component::new("routing", db, routes, vec![<RoutingServiceServer<grpc::RoutingApi> as NamedService>::NAME])
        .consumer(consumer)
        .consumer(reroutes))
}

/// Loads the seed (the configured directory, else the built-in copy) when the database has
/// neither classifier nor directory. Instances starting together may both load: the rows are
/// keyed by id and kept when present, so that is harmless.
async fn seed_if_empty(db: &Db, config: &RoutingConfig) -> anyhow::Result<()> {
    let mut conn = db.pool().acquire().await?;
    if !store::is_empty(&mut conn).await? {
        return Ok(());
    }
    drop(conn);
    let seed = match &config.seed_dir {
        Some(dir) => Seed::from_dir(dir)?,
        None => Seed::embedded()?,
    };
    let report = load_seed(db, &seed, OnConflict::Keep).await.context("failed to load the routing seed")?;
    tracing::info!(rows = report.total(), from = ?config.seed_dir, "empty routing database seeded");
    Ok(())
}

/// The configured fallback should exist; routing still works without it (the appeal is
/// addressed to the id anyway), but an operator has to know.
async fn warn_about_fallback(db: &Db, snapshots: &snapshot::Snapshots, config: &RoutingConfig) -> anyhow::Result<()> {
    let mut conn = db.pool().acquire().await?;
    let snapshot = snapshots.current(&mut conn).await?;
    if snapshot.directory.organization(&config.fallback_organization_id).is_none() {
        tracing::warn!(
            organization_id = %config.fallback_organization_id,
            "routing.fallback_organization_id is not in the directory"
        );
    }
    Ok(())
}

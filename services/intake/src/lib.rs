//! Intake: registers citizens' appeals (idempotently, with a platform number at once), stores
//! their attachments after checking the type by content, masks passport and SNILS numbers in
//! everything public, publishes `appeal.received` through the outbox, and keeps the applicant's
//! view of routing and status from the events that follow.

pub mod attachments;
pub mod classifier;
pub mod config;
pub mod consumer;
pub mod error;
pub mod grpc;
pub mod masking;
pub mod store;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use pos_platform::db::Migrations;
use pos_platform::host::{Component, ServiceContext};
use pos_platform::peers::Service;
use pos_proto::v1::intake_service_server::IntakeServiceServer;
use sqlx::migrate::Migrator;
use tonic::service::Routes;

use crate::attachments::AttachmentStorage;
use crate::classifier::{Catalog, ClassifierSource, RoutingClassifier};
use crate::config::IntakeConfig;
use crate::grpc::IntakeApi;
use crate::store::Store;

pub use crate::classifier::{ClassifierSnapshot, FixedClassifier};

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// Intake's schema, one directory per dialect with the same meaning.
pub static MIGRATIONS: Migrations = Migrations { postgres: &POSTGRES, sqlite: &SQLITE };

/// The name gRPC health reports intake under.
pub const HEALTH_NAME: &str = "pos.v1.IntakeService";

/// How often unattached uploads are looked for.
const JANITOR_PERIOD: Duration = Duration::from_secs(600);

/// Intake as the platform hosts it: the classifier comes from routing over gRPC, balanced over
/// routing's peers (`[peers] routing`), or this process's own endpoint when routing runs here.
pub async fn component(ctx: ServiceContext) -> anyhow::Result<Component> {
    let config = IntakeConfig::load(ctx.config_file.as_deref())?;
    let routing = match &config.routing_url {
        Some(url) if ctx.infra.config.peers.endpoints(Service::Routing).is_empty() => {
            tracing::warn!("intake.routing_url is deprecated: list routing's endpoints in POS_PEERS__ROUTING");
            pos_platform::grpc::channel(url)?
        }
        _ => ctx.peer(Service::Routing)?,
    };
    let source = Arc::new(RoutingClassifier::new(routing, ctx.infra.clone()));
    // Routing may be this very process, not serving yet: the refresher loads the snapshot.
    build(ctx, config, source, false).await
}

/// Intake with its classifier from `classifier` (tests, or a deployment without routing);
/// the first snapshot is loaded before this returns when the source answers.
pub async fn component_with(ctx: ServiceContext, classifier: Arc<dyn ClassifierSource>) -> anyhow::Result<Component> {
    let config = IntakeConfig::load(ctx.config_file.as_deref())?;
    build(ctx, config, classifier, true).await
}

/// Intake with an explicit configuration and classifier source.
pub async fn component_from(
    ctx: ServiceContext,
    config: IntakeConfig,
    classifier: Arc<dyn ClassifierSource>,
) -> anyhow::Result<Component> {
    config.validate()?;
    build(ctx, config, classifier, true).await
}

async fn build(
    ctx: ServiceContext,
    config: IntakeConfig,
    classifier: Arc<dyn ClassifierSource>,
    load_now: bool,
) -> anyhow::Result<Component> {
    let storage = AttachmentStorage::open(&config, &ctx.infra.config.data_dir)?;
    let catalog = Arc::new(Catalog::new(classifier, ctx.infra.cache.clone(), config.organization_ttl()));
    if load_now {
        match tokio::time::timeout(Duration::from_secs(5), catalog.refresh()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "classifier not loaded at start, retrying in the background")
            }
            Err(_) => tracing::warn!("classifier source did not answer at start, retrying in the background"),
        }
    }
    let store = Store::new(ctx.db.clone());
    let config = Arc::new(config);
    let api = IntakeApi::new(store.clone(), catalog.clone(), storage.clone(), config.clone());
    let routes = Routes::new(pos_platform::message_limits!(IntakeServiceServer::new(api), &ctx.infra.config.limits));
    let mut component = Component::new("intake", ctx.db, routes, vec![HEALTH_NAME]);
    for consumer in consumer::consumers(&ctx.infra.config) {
        component = component.consumer(consumer);
    }
    let refresh = config.classifier_refresh();
    let orphan_ttl = config.orphan_ttl();
    Ok(component
        .task("intake-classifier-refresh", move |shutdown| catalog.run_refresher(refresh, shutdown))
        .task("intake-attachment-janitor", move |shutdown| {
            attachments::run_janitor(store, storage, orphan_ttl, JANITOR_PERIOD, shutdown)
        }))
}

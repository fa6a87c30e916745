//! `pos up`: the five services on one gRPC listener, one process.

use std::path::{Path, PathBuf};

use anyhow::Context;
use pos_platform::auth::Role;
use pos_platform::config::{PlatformConfig, Secret};
use pos_platform::db::Migrations;
use pos_platform::host::{Component, Infra, ServiceContext};

/// The configuration, with a development signing key of the data directory when none is set,
/// so that a fresh machine needs nothing to start.
pub fn load_config(file: Option<&Path>) -> anyhow::Result<PlatformConfig> {
    let mut config: PlatformConfig = pos_platform::config::figment(file).extract().map_err(Box::new)?;
    if config.auth.hs256_secret.is_none() && config.auth.public_key_files.is_empty() && config.auth.jwks_url.is_none() {
        config.auth.hs256_secret = Some(development_secret(&config.data_dir)?);
        // A random secret of this machine's data directory, not one shared in a file or a
        // manifest: `pos up` against local servers is a development stack all the same.
        config.auth.allow_development_secret = true;
    }
    config.validate()?;
    Ok(config)
}

fn development_secret(data_dir: &Path) -> anyhow::Result<Secret> {
    let path = data_dir.join("dev-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(Secret::new(secret.trim()));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("failed to create {}", data_dir.display()))?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(&path, &secret).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(Secret::new(secret))
}

/// Every service, in start order: routing first, since intake validates against it.
pub const SERVICES: [(&str, &Migrations); 5] = [
    ("routing", &pos_routing::MIGRATIONS),
    ("intake", &pos_intake::MIGRATIONS),
    ("ticketing", &pos_ticketing::MIGRATIONS),
    ("sla", &pos_sla::MIGRATIONS),
    ("notify", &pos_notify::MIGRATIONS),
];

pub async fn migrate(config: PlatformConfig) -> anyhow::Result<()> {
    let _telemetry = telemetry(&config, &[])?;
    let infra = Infra::connect(config).await?;
    for (name, migrations) in SERVICES {
        infra.database(name, migrations).await?;
        println!("{name}: migrated");
    }
    Ok(())
}

/// Loads the routing seed (built in, or from `dir`) into the routing database.
pub async fn seed(config: PlatformConfig, dir: Option<&Path>) -> anyhow::Result<()> {
    let infra = Infra::connect(config).await?;
    let db = infra.database("routing", &pos_routing::MIGRATIONS).await?;
    let seed = match dir {
        Some(dir) => pos_routing::Seed::from_dir(dir)?,
        None => pos_routing::Seed::embedded()?,
    };
    let report = pos_routing::load_seed(&db, &seed, pos_routing::OnConflict::Update).await?;
    println!(
        "routing seed loaded: {} regions, {} organizations, {} categories, {} subcategories, {} facts written",
        report.regions, report.organizations, report.categories, report.subcategories, report.facts
    );
    Ok(())
}

fn telemetry(config: &PlatformConfig, services: &[&str]) -> anyhow::Result<pos_platform::telemetry::TelemetryGuard> {
    pos_platform::telemetry::init(&pos_platform::telemetry::TelemetryConfig {
        service_name: pos_platform::telemetry::service_name(services),
        otlp_endpoint: config.otlp_endpoint.clone(),
        log_filter: config.log_filter.clone(),
        json_logs: config.json_logs,
    })
}

/// Accepts a service name for `--services`.
pub fn parse_service(name: &str) -> Result<&'static str, String> {
    SERVICES
        .iter()
        .map(|(service, _)| *service)
        .find(|service| *service == name)
        .ok_or_else(|| format!("unknown service {name:?}; one of {}", SERVICES.map(|(s, _)| s).join(", ")))
}

/// Builds the components of one process on `infra` (all five when `only` is empty), all
/// served at `self_endpoint`.
pub async fn components(
    infra: &Infra,
    config_file: Option<PathBuf>,
    self_endpoint: &str,
    only: &[&str],
) -> anyhow::Result<Vec<Component>> {
    let mut components = Vec::new();
    for (name, migrations) in SERVICES.into_iter().filter(|(name, _)| only.is_empty() || only.contains(name)) {
        let db = infra.database(name, migrations).await?;
        let ctx = ServiceContext {
            infra: infra.clone(),
            db,
            config_file: config_file.clone(),
            self_endpoint: self_endpoint.to_owned(),
        };
        let component = match name {
            "routing" => pos_routing::component(ctx).await,
            "intake" => pos_intake::component(ctx).await,
            "ticketing" => pos_ticketing::component(ctx).await,
            "sla" => pos_sla::component(ctx).await,
            "notify" => pos_notify::component(ctx).await,
            other => anyhow::bail!("unknown service {other}"),
        }
        .with_context(|| format!("failed to start {name}"))?;
        components.push(component);
    }
    Ok(components)
}

pub async fn up(config: PlatformConfig, config_file: Option<PathBuf>, only: &[&str]) -> anyhow::Result<()> {
    let telemetry = telemetry(&config, only)?;
    let infra = Infra::connect(config).await?;
    let listener = tokio::net::TcpListener::bind(infra.config.grpc_addr)
        .await
        .with_context(|| format!("failed to listen on {}", infra.config.grpc_addr))?;
    let endpoint = pos_platform::grpc::own_endpoint(listener.local_addr()?, &infra.config.tls);
    let web = if only.is_empty() { web_cabinet(&infra, config_file.as_deref(), &endpoint).await? } else { None };
    let components = components(&infra, config_file, &endpoint, only).await?;
    print_banner(&infra, &endpoint, &components)?;
    let shutdown = pos_platform::shutdown::on_signal();
    let web = web.map(|(app, listener)| {
        println!("web cabinet: http://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
        tokio::spawn(pos_web::serve(app, listener, shutdown.clone()))
    });
    let result = pos_platform::host::run(&infra, components, listener, shutdown).await;
    if let Some(web) = web {
        web.await??;
    }
    telemetry.shutdown().await;
    result
}

/// The web cabinet of the whole platform (`[web]`, `POS_WEB__ADDR`), talking to this process's
/// gRPC endpoint; with the development sign-in wherever development tokens are printed. The
/// platform runs without it when its address is taken (e.g. by another `pos up`).
async fn web_cabinet(
    infra: &Infra,
    config_file: Option<&Path>,
    endpoint: &str,
) -> anyhow::Result<Option<(pos_web::App, tokio::net::TcpListener)>> {
    let mut web: pos_web::WebConfig = pos_platform::config::section(config_file, "web")?;
    web.grpc_endpoint = endpoint.to_owned();
    web.dev_sign_in |= infra.config.auth.hs256_secret.is_some();
    let listener = match tokio::net::TcpListener::bind(web.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(addr = %web.addr, %error, "web cabinet not started: its address is unavailable (POS_WEB__ADDR)");
            return Ok(None);
        }
    };
    let channel = pos_platform::grpc::own_channel(endpoint, &infra.config.tls)?;
    let addr = listener.local_addr()?;
    // A sign-in configuration that cannot work stops `pos up` here, as it stops `pos-web`.
    let app = pos_web::App::try_new(web, channel, infra.cache.clone(), Some(infra.authenticator.clone()), addr)?
        // The appeal links notify signs (its key falls back to one derived from auth, too).
        .with_auth(&infra.config.auth);
    Ok(Some((app, listener)))
}

/// The Kamchatka regional center of informatization: the addressee of the walkthrough.
const DEMO_ORGANIZATION: &str = "41-kcioko";

fn print_banner(infra: &Infra, endpoint: &str, components: &[Component]) -> anyhow::Result<()> {
    let names: Vec<&str> = components.iter().map(|c| c.name).collect();
    let mode = if infra.is_embedded() {
        format!("embedded (data in {})", infra.config.data_dir.display())
    } else {
        "servers (PostgreSQL, RabbitMQ, Redis as configured)".to_owned()
    };
    println!("pos is up: {} in {mode}", names.join(", "));
    println!("gRPC endpoint: {endpoint} (health and reflection enabled)");
    if infra.config.auth.hs256_secret.is_some() {
        println!("development tokens (12 h):");
        let hours = std::time::Duration::from_secs(12 * 3600);
        for role in [Role::Applicant, Role::Operator, Role::System] {
            let token = infra.authenticator.mint(&format!("dev-{role}"), "", "41", &[role], hours)?;
            println!("  {role:<12} {token}");
        }
        for role in [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::OrgAdmin, Role::Approver] {
            let token = infra.authenticator.mint(&format!("dev-{role}"), DEMO_ORGANIZATION, "41", &[role], hours)?;
            println!("  {role:<12} {token}  (organization {DEMO_ORGANIZATION})");
        }
    }
    Ok(())
}

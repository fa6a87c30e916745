//! Hosting services: connect the infrastructure (real servers when configured, embedded
//! adapters otherwise), run one or more service [`Component`]s on one gRPC listener with their
//! consumers, outbox relays and background tasks, and stop them gracefully.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::auth::{Authenticator, Role};
use crate::bus::Bus;
use crate::bus::amqp::AmqpBus;
use crate::bus::memory::MemoryBus;
use crate::cache::{Cache, MemoryCache, RedisCache};
use crate::config::PlatformConfig;
use crate::consumer::{self, Consumer};
use crate::db::{Db, Migrations};
use crate::outbox::Relay;

pub type Task = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
pub type TaskFn = Box<dyn FnOnce(CancellationToken) -> Task + Send>;

/// The shared infrastructure of a process.
#[derive(Clone)]
pub struct Infra {
    pub config: PlatformConfig,
    pub bus: Arc<dyn Bus>,
    pub cache: Arc<dyn Cache>,
    pub authenticator: Arc<Authenticator>,
}

impl Infra {
    /// Connects what is configured; what is not runs in-process (the embedded mode).
    pub async fn connect(config: PlatformConfig) -> anyhow::Result<Infra> {
        let servers_ca = crate::servers_ca::ServersCa::from_config(&config)?;
        let bus: Arc<dyn Bus> = match &config.amqp_url {
            Some(url) => Arc::new(
                AmqpBus::connect_with_ca(url.expose(), &config.exchange, servers_ca.as_ref()).await.with_context(
                    || format!("failed to connect to RabbitMQ at {}", crate::db::redact_url(url.expose())),
                )?,
            ),
            None => {
                let journal = Db::connect(&sqlite_url(&config.data_dir, "bus"), "bus", 4).await?;
                Arc::new(MemoryBus::durable(journal).await?)
            }
        };
        let cache: Arc<dyn Cache> = match &config.redis_url {
            Some(url) => Arc::new(
                RedisCache::connect_with_ca(url.expose(), &config.cache_prefix, servers_ca.as_ref())
                    .await
                    .with_context(|| {
                        format!("failed to connect to Redis at {}", crate::db::redact_url(url.expose()))
                    })?,
            ),
            None => Arc::new(MemoryCache::new()),
        };
        let authenticator = Arc::new(Authenticator::for_process(&config.auth, config.is_embedded())?);
        authenticator.fetch_keys().await;
        // Calls to `https://` peers, from here and from `grpc::channel` anywhere in the process.
        if let Some(client_tls) = crate::tls::ClientTls::from_config(&config.tls)? {
            crate::tls::set_process_client(Some(client_tls));
        }
        Ok(Infra { config, bus, cache, authenticator })
    }

    /// Whether nothing external is configured.
    pub fn is_embedded(&self) -> bool {
        self.config.is_embedded()
    }

    /// The service's database, migrated: a PostgreSQL schema named after it, or its SQLite file.
    pub async fn database(&self, service: &str, migrations: &Migrations) -> anyhow::Result<Db> {
        let url = match &self.config.database_url {
            Some(url) => url.expose().to_owned(),
            None => sqlite_url(&self.config.data_dir, service),
        };
        let schema = format!("{}{service}", self.config.schema_prefix);
        let servers_ca = crate::servers_ca::ServersCa::from_config(&self.config)?;
        let db = Db::connect_with_ca(&url, &schema, self.config.db_max_connections, servers_ca.as_ref())
            .await
            .with_context(|| format!("failed to connect the {service} database at {}", crate::db::redact_url(&url)))?;
        db.migrate(migrations).await.with_context(|| format!("failed to migrate the {service} database"))?;
        Ok(db)
    }

    /// A short-lived token for calls between services.
    pub fn service_token(&self, service: &str) -> anyhow::Result<String> {
        self.authenticator.mint(service, "", "", &[Role::System], Duration::from_secs(3600))
    }
}

pub fn sqlite_url(data_dir: &Path, name: &str) -> String {
    format!("sqlite://{}", data_dir.join(format!("{name}.db")).display())
}

/// What a service brings to a process.
pub struct Component {
    pub name: &'static str,
    pub db: Db,
    pub routes: Routes,
    /// Names reported by gRPC health, e.g. `pos.v1.IntakeService`.
    pub health: Vec<&'static str>,
    pub consumers: Vec<Consumer>,
    /// Background work (timers, refreshers); each must return once its token is cancelled.
    pub tasks: Vec<(&'static str, TaskFn)>,
    /// Gauges read from the component's store every [`SAMPLE_EVERY`].
    pub samplers: Vec<(&'static str, Box<dyn Sampler>)>,
}

/// Gauges that tell the state of a component's store (tickets by folder, deadlines by state,
/// parked events): read with a cheap grouped query every [`SAMPLE_EVERY`] by one task per
/// component, so that no service writes a sampling loop of its own.
#[async_trait::async_trait]
pub trait Sampler: Send + 'static {
    /// Reads the store and sets the gauges. An error is logged and the next round tries again:
    /// a database outage shows elsewhere, and a missed sample is not worth stopping for.
    async fn sample(&mut self, db: &Db) -> anyhow::Result<()>;
}

/// How often [`Sampler`]s run: dashboards refresh about as often, and each round is one or two
/// grouped queries per component.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

impl Component {
    pub fn new(name: &'static str, db: Db, routes: Routes, health: Vec<&'static str>) -> Component {
        Component { name, db, routes, health, consumers: Vec::new(), tasks: Vec::new(), samplers: Vec::new() }
    }

    pub fn sampler(mut self, name: &'static str, sampler: impl Sampler) -> Component {
        self.samplers.push((name, Box::new(sampler)));
        self
    }

    pub fn consumer(mut self, consumer: Consumer) -> Component {
        self.consumers.push(consumer);
        self
    }

    pub fn task<F, Fut>(mut self, name: &'static str, task: F) -> Component
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.push((name, Box::new(move |token| Box::pin(task(token)))));
        self
    }
}

/// Runs `components` until `shutdown`. Order of stopping: health NOT_SERVING and no new
/// deliveries; in-flight calls and deliveries finish; then the relays publish what is left.
pub async fn run(
    infra: &Infra,
    components: Vec<Component>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Every queue exists before anything is served or relayed, so that no event published
    // from now on can miss a consumer of this process.
    let mut components = components;
    // Parked events are kept under the consumer's own name, not its deployment's queue name.
    let parking_consumers: Vec<Vec<String>> =
        components.iter().map(|c| c.consumers.iter().map(|consumer| consumer.spec.name.clone()).collect()).collect();
    for component in &mut components {
        for consumer in &mut component.consumers {
            // Queues belong to the deployment: two deployments (or test runs) on one broker never
            // share a queue, whatever their regions.
            consumer.spec.name = infra.config.queue_name(&consumer.spec.name);
            consumer.exchange = infra.config.exchange.clone();
            infra
                .bus
                .declare(&consumer.spec)
                .await
                .with_context(|| format!("failed to declare queue {}", consumer.spec.name))?;
        }
    }
    // Then the bindings the configuration no longer wants go (regions dropped since the last
    // start): after every new one is in place, so an event moving between bindings misses none.
    let specs: Vec<crate::bus::QueueSpec> =
        components.iter().flat_map(|c| c.consumers.iter().map(|consumer| consumer.spec.clone())).collect();
    for spec in &specs {
        let stale = infra
            .bus
            .remove_stale_bindings(spec)
            .await
            .with_context(|| format!("failed to remove stale bindings of queue {}", spec.name))?;
        if !stale.is_empty() {
            tracing::info!(queue = %spec.name, removed = ?stale, "bindings no longer configured removed");
        }
    }
    let lag_queues: Vec<String> = specs.iter().map(|spec| spec.name.clone()).collect();
    let relay_stop = CancellationToken::new();
    let mut work = JoinSet::new();
    let mut relays = JoinSet::new();
    // One UNIMPLEMENTED fallback for the process; each component's own is dropped so that
    // their routers can be merged.
    let mut router = Routes::default().into_axum_router();
    let hosted: Vec<&'static str> = components.iter().map(|component| component.name).collect();
    // Each service's denials go to its own store, written off the calls' path.
    let mut audit = crate::audit::Wiring::new(
        components.iter().map(|c| crate::audit::Store { service: c.name, db: c.db.clone() }).collect(),
    );
    for writer in audit.take_writers() {
        work.spawn(writer.run());
    }
    let mut health = Vec::new();
    for (component, parking_consumers) in components.into_iter().zip(parking_consumers) {
        router = router.merge(audit.watch(Some(component.name), component.routes.into_axum_router()).reset_fallback());
        health.extend(component.health);
        relays.spawn(
            Relay::new(component.db.clone(), infra.bus.clone())
                .with_exchange(&infra.config.exchange)
                .run(relay_stop.clone()),
        );
        let mut samplers = component.samplers;
        if !parking_consumers.is_empty() {
            samplers.push(("parked events", Box::new(ParkedEvents { consumers: parking_consumers })));
        }
        if !samplers.is_empty() {
            work.spawn(sample_gauges(component.db.clone(), samplers, shutdown.clone()));
        }
        for consumer in component.consumers {
            let name = consumer.spec.name.clone();
            let task = consumer::run(component.db.clone(), infra.bus.clone(), consumer, shutdown.clone());
            work.spawn(async move { task.await.with_context(|| format!("consumer {name} failed")) });
        }
        for (name, task) in component.tasks {
            let task = task(shutdown.clone());
            work.spawn(async move { task.await.with_context(|| format!("task {name} failed")) });
        }
    }
    // The dead letters of this process's consumers; those of other services through their peers.
    let dead_letters = crate::dead_letters::DeadLetterApi::new(infra.bus.clone(), specs, &hosted, &infra.config)?;
    router = router.merge(
        audit
            .watch(
                None,
                Routes::new(pos_proto::v1::operations::dead_letter_service_server::DeadLetterServiceServer::new(
                    dead_letters,
                ))
                .add_service(pos_proto::v1::operations::audit_service_server::AuditServiceServer::new(
                    audit.api(&infra.config)?,
                ))
                .into_axum_router(),
            )
            .reset_fallback(),
    );
    drop(audit);
    // The front door: what this process does not host goes to the peers that do.
    let router = crate::peers::forward_unhosted(router, &hosted, &infra.config.peers)?;
    // Unless telemetry named the process already (its binary does), it is named after what it runs.
    crate::metrics::describe_target(&crate::telemetry::service_name(&hosted));
    work.spawn(report_consumer_lag(infra.bus.clone(), lag_queues, shutdown.clone()));
    if let Some(addr) = infra.config.metrics_addr {
        work.spawn(crate::metrics::serve(addr, shutdown.clone()));
    } else {
        crate::metrics::install();
    }
    work.spawn(crate::grpc::serve(
        listener,
        Routes::from(router),
        health,
        infra.authenticator.clone(),
        infra.config.limits.clone(),
        infra.config.tls.clone(),
        shutdown.clone(),
    ));

    let mut failure = None;
    while let Some(joined) = work.join_next().await {
        let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(error) = result
            && !shutdown.is_cancelled()
        {
            tracing::error!(error = %format!("{error:#}"), "a part of the service failed, stopping");
            failure = Some(error);
            shutdown.cancel();
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    // In-flight work gets the grace period; then the relays publish what it committed.
    let grace = Duration::from_secs(infra.config.shutdown_grace_secs);
    if tokio::time::timeout(grace, async { while work.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(?grace, "in-flight work did not finish within the grace period");
        work.abort_all();
    }
    relay_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while relays.join_next().await.is_some() {} }).await;
    if let Err(error) = infra.bus.flush().await {
        tracing::warn!(%error, "the bus could not store its last acknowledgements; those messages come back once");
    }
    tracing::info!("stopped");
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// How long an event may wait for its object before the wait is logged as suspicious: the
/// object comes from another service's event, normally within seconds.
const PARKED_STALE_AFTER: Duration = Duration::from_secs(600);

/// Runs the component's samplers every [`SAMPLE_EVERY`], one after the other, until `shutdown`.
async fn sample_gauges(
    db: Db,
    mut samplers: Vec<(&'static str, Box<dyn Sampler>)>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    // A round that took long (a slow database) is not made up for with a burst of rounds.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        for (name, sampler) in &mut samplers {
            if let Err(error) = sampler.sample(&db).await {
                let error = format!("{error:#}");
                tracing::warn!(%error, gauges = *name, schema = db.schema(), "failed to sample gauges");
            }
        }
    }
}

/// `pos_parked_events` and `pos_parked_oldest_seconds` of the component's consumers, with a
/// warning about events that wait too long (see [`crate::parking`]).
struct ParkedEvents {
    consumers: Vec<String>,
}

#[async_trait::async_trait]
impl Sampler for ParkedEvents {
    async fn sample(&mut self, db: &Db) -> anyhow::Result<()> {
        let consumers: Vec<&str> = self.consumers.iter().map(String::as_str).collect();
        crate::parking::observe(db, &consumers, PARKED_STALE_AFTER).await?;
        Ok(())
    }
}

/// Publishes `pos_consumer_lag{queue}` (messages waiting) and `pos_dead_letters{queue}` (messages
/// given up on, see [`crate::dead_letters::observe`]) every few seconds.
async fn report_consumer_lag(
    bus: Arc<dyn Bus>,
    queues: Vec<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        for queue in &queues {
            // A broker outage shows as missing samples and as the outbox backlog, not as an error.
            if let Ok(depth) = bus.queue_depth(queue).await {
                metrics::gauge!("pos_consumer_lag", "queue" => queue.clone()).set(depth as f64);
            }
        }
        crate::dead_letters::observe(bus.as_ref(), &queues).await;
    }
}

/// What a standalone service binary is asked to do.
#[derive(Debug, clap::Parser)]
pub struct ServiceCli {
    /// A TOML configuration file (also `POS_CONFIG`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<ServiceCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Serve (the default).
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// Ask a running instance's gRPC health endpoint; exit 0 when serving.
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        endpoint: String,
        /// A service's health name (e.g. `pos.v1.IntakeService`); empty: the whole server.
        #[arg(long, default_value = "")]
        service: String,
    },
}

/// Everything a service needs to build its component.
pub struct ServiceContext {
    pub infra: Infra,
    pub db: Db,
    pub config_file: Option<PathBuf>,
    /// Where this process serves gRPC, e.g. `http://127.0.0.1:50051`.
    pub self_endpoint: String,
}

/// How long a service's own call to a peer may take until its response begins.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl ServiceContext {
    /// A channel to `service`: balanced over its configured peers (`[peers]`), or this process's
    /// own endpoint when none are configured (the service runs here, as in `pos up`).
    pub fn peer(&self, service: crate::peers::Service) -> anyhow::Result<tonic::transport::Channel> {
        let peers = &self.infra.config.peers;
        let endpoints = peers.endpoints(service);
        if endpoints.is_empty() {
            return crate::grpc::own_channel(&self.self_endpoint, &self.infra.config.tls);
        }
        tracing::info!(peer = service.name(), ?endpoints, "calls balanced over peers");
        crate::peers::balanced(endpoints, peers.dns_refresh(), Some(PEER_CALL_TIMEOUT))
            .with_context(|| format!("invalid {}", service.setting()))
    }
}

/// The body of a service's thin `main`: parse the command line, load and validate the
/// configuration, start telemetry, then migrate, serve, or check health.
pub async fn service_main<F, Fut>(name: &'static str, migrations: &'static Migrations, build: F) -> anyhow::Result<()>
where
    F: FnOnce(ServiceContext) -> Fut,
    Fut: Future<Output = anyhow::Result<Component>>,
{
    use clap::Parser;
    let cli = ServiceCli::parse();
    if let Some(ServiceCommand::Healthcheck { endpoint, service }) = &cli.command {
        // Over TLS (`https://`, e.g. a Kubernetes exec probe) with the process's own `[tls]`:
        // its CA, its certificate as the client's, its certificate's name as the server's.
        let tls: crate::tls::TlsConfig = crate::config::section(cli.config.as_deref(), "tls")?;
        crate::tls::set_process_client(crate::tls::ClientTls::from_config(&tls)?);
        return check_health(crate::grpc::own_channel(endpoint, &tls)?, service).await;
    }
    let config = PlatformConfig::load(cli.config.as_deref())?;
    let telemetry = crate::telemetry::init(&crate::telemetry::TelemetryConfig {
        service_name: format!("pos-{name}"),
        otlp_endpoint: config.otlp_endpoint.clone(),
        log_filter: config.log_filter.clone(),
        json_logs: config.json_logs,
    })?;
    let infra = Infra::connect(config).await?;
    let db = infra.database(name, migrations).await?;
    if matches!(cli.command, Some(ServiceCommand::Migrate)) {
        tracing::info!(service = name, "migrations applied");
        telemetry.shutdown().await;
        return Ok(());
    }
    let listener = TcpListener::bind(infra.config.grpc_addr)
        .await
        .with_context(|| format!("failed to listen on {}", infra.config.grpc_addr))?;
    let self_endpoint = crate::grpc::own_endpoint(listener.local_addr()?, &infra.config.tls);
    let shutdown = crate::shutdown::on_signal();
    let component =
        build(ServiceContext { infra: infra.clone(), db, config_file: cli.config.clone(), self_endpoint }).await?;
    let result = run(&infra, vec![component], listener, shutdown).await;
    telemetry.shutdown().await;
    result
}

/// Exits with an error unless `service` (empty: the whole server) reports SERVING.
pub async fn healthcheck(endpoint: &str, service: &str) -> anyhow::Result<()> {
    healthcheck_with(endpoint, service, crate::tls::process_client().as_deref()).await
}

/// [`healthcheck`] with client TLS settings of the caller's choosing (`https://` endpoints).
pub async fn healthcheck_with(
    endpoint: &str,
    service: &str,
    tls: Option<&crate::tls::ClientTls>,
) -> anyhow::Result<()> {
    let channel = crate::grpc::endpoint(endpoint, tls, None)?.connect().await?;
    check_health(channel, service).await
}

async fn check_health(channel: tonic::transport::Channel, service: &str) -> anyhow::Result<()> {
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: service.to_owned() })
        .await?;
    let status = response.into_inner().status;
    anyhow::ensure!(
        status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        "not serving (status {status})"
    );
    Ok(())
}

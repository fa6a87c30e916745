//! The platform as an external system sees it: started in-process (all five services on one
//! gRPC listener, with real servers or embedded adapters) and driven over gRPC.

pub mod mail;

use std::time::{Duration, Instant};

use pos_platform::auth::Role;
use pos_platform::config::{PlatformConfig, Secret};
use pos_platform::host::Infra;
use pos_platform::testing::{self, TempDir};
use pos_proto::v1 as pb;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Which adapters the platform runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// PostgreSQL, RabbitMQ and Redis on loopback, isolated by a unique schema prefix,
    /// exchange and cache prefix.
    Servers,
    /// SQLite files, the journaled in-process bus and the in-process cache, in a temp dir.
    Embedded,
}

/// How to start a platform.
pub struct Options {
    pub mode: Mode,
    /// State directory (an embedded platform's state survives a restart in the same one).
    pub data: TempDir,
    /// Names the schemas, exchange and cache prefix in server mode; keep it to restart.
    pub run_id: String,
    /// A broker other than the shared local one (e.g. a test's own node).
    pub amqp_url: Option<String>,
    /// Services to host in-process; empty: all five.
    pub services: Vec<&'static str>,
    pub config_file: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Regions whose events this platform consumes (`POS_REGIONS`); all by default.
    pub regions: Vec<String>,
    /// An exchange other than the run's own, e.g. one another deployment uses too.
    pub exchange: Option<String>,
}

impl Options {
    pub fn new(mode: Mode) -> Options {
        Options {
            mode,
            data: TempDir::new(),
            run_id: testing::unique("e2e"),
            amqp_url: None,
            services: Vec::new(),
            config_file: None,
            metrics_addr: None,
            regions: vec!["*".to_owned()],
            exchange: None,
        }
    }
}

/// The configuration of a platform under test.
pub fn config(mode: Mode, data: &TempDir, run_id: &str, amqp_url: Option<&str>) -> PlatformConfig {
    let mut config = testing::platform_config(&data.0);
    match mode {
        Mode::Servers => {
            config.database_url = Some(Secret::new(testing::database_url()));
            config.schema_prefix = format!("{run_id}_");
            config.amqp_url = Some(Secret::new(amqp_url.map(str::to_owned).unwrap_or_else(testing::amqp_url)));
            config.redis_url = Some(Secret::new(testing::redis_url()));
            // Named after the run, not anew at each start, so that a restart finds its queues.
            config.exchange = format!("{run_id}.events");
            config.cache_prefix = run_id.to_owned();
        }
        Mode::Embedded => {
            // The in-process bus and cache are this platform's alone: named as `pos up` names them.
            let defaults = PlatformConfig::default();
            config.exchange = defaults.exchange;
            config.cache_prefix = defaults.cache_prefix;
        }
    }
    config
}

/// The same configuration as environment variables, for a service run as a process.
pub fn config_env(config: &PlatformConfig) -> Vec<(String, String)> {
    let mut env = vec![
        ("POS_DATA_DIR".to_owned(), config.data_dir.display().to_string()),
        ("POS_SCHEMA_PREFIX".to_owned(), config.schema_prefix.clone()),
        ("POS_EXCHANGE".to_owned(), config.exchange.clone()),
        ("POS_REGIONS".to_owned(), config.regions.join(",")),
        ("POS_CACHE_PREFIX".to_owned(), config.cache_prefix.clone()),
        ("POS_AUTH__HS256_SECRET".to_owned(), testing::TEST_SECRET.to_owned()),
        // The test key is a development secret, on a stack with servers.
        ("POS_AUTH__ALLOW_DEVELOPMENT_SECRET".to_owned(), "true".to_owned()),
        ("POS_SHUTDOWN_GRACE_SECS".to_owned(), config.shutdown_grace_secs.to_string()),
    ];
    if let Some(endpoint) = &config.otlp_endpoint {
        env.push(("POS_OTLP_ENDPOINT".to_owned(), endpoint.clone()));
    }
    if let Some(deployment) = &config.deployment {
        env.push(("POS_DEPLOYMENT".to_owned(), deployment.clone()));
    }
    if let Some(addr) = &config.metrics_addr {
        env.push(("POS_METRICS_ADDR".to_owned(), addr.to_string()));
    }
    for (name, value) in [
        ("POS_DATABASE_URL", &config.database_url),
        ("POS_AMQP_URL", &config.amqp_url),
        ("POS_REDIS_URL", &config.redis_url),
    ] {
        if let Some(value) = value {
            env.push((name.to_owned(), value.expose().to_owned()));
        }
    }
    env
}

/// A loopback port free at the time of asking, for a process to listen on.
///
/// Taken below Linux's ephemeral range (32768–60999): a port from `bind(0)` is free only until
/// the process it is handed to binds it, and meanwhile any outgoing connection of a test running
/// beside this one may be given the same port. Below the range only another test's pick can
/// collide; each test process starts at its own place and checks that the port is free.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let start = (std::process::id().wrapping_mul(7_919) ^ nanos) % COUNT;
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in {FIRST}..{}", FIRST + COUNT)
}

/// The environment naming each service's peers: `POS_PEERS__<SERVICE>` with its endpoints.
pub fn peers_env(peers: &[(&str, Vec<String>)]) -> Vec<(String, String)> {
    peers
        .iter()
        .map(|(service, endpoints)| (format!("POS_PEERS__{}", service.to_ascii_uppercase()), endpoints.join(",")))
        .collect()
}

/// Where a service process runs: in a network namespace of its own (`ip netns add`, as on a
/// machine of its own) or in the test's, and the address it listens on there.
#[derive(Clone, Debug)]
pub struct Host {
    pub netns: Option<String>,
    pub address: std::net::IpAddr,
}

impl Host {
    /// The test's own network, on loopback.
    pub fn loopback() -> Host {
        Host { netns: None, address: std::net::IpAddr::from([127, 0, 0, 1]) }
    }
}

/// `pos up --services …` as a process of its own, killed on drop.
pub struct ServiceProcess {
    child: std::process::Child,
    pub endpoint: String,
}

impl ServiceProcess {
    /// Starts `binary` (the `pos` command line; tests pass `env!("CARGO_BIN_EXE_pos-under-test")`)
    /// and waits until its gRPC health answers SERVING.
    pub async fn start(binary: &str, services: &[&str], config: &PlatformConfig) -> anyhow::Result<ServiceProcess> {
        ServiceProcess::start_with_env(binary, services, config, &[]).await
    }

    /// [`ServiceProcess::start`] with more environment, e.g. the peers of the services that run
    /// in other processes (`POS_PEERS__ROUTING`, see [`peers_env`]).
    pub async fn start_with_env(
        binary: &str,
        services: &[&str],
        config: &PlatformConfig,
        env: &[(&str, &str)],
    ) -> anyhow::Result<ServiceProcess> {
        let port = free_port()?;
        ServiceProcess::start_on_port(binary, services, config, env, port).await
    }

    /// [`ServiceProcess::start_with_env`] listening on `port` (see [`free_port`]), e.g. to
    /// restart a killed replica where its peers already look for it.
    pub async fn start_on_port(
        binary: &str,
        services: &[&str],
        config: &PlatformConfig,
        env: &[(&str, &str)],
        port: u16,
    ) -> anyhow::Result<ServiceProcess> {
        ServiceProcess::start_on_host(binary, services, config, env, &Host::loopback(), port).await
    }

    /// [`ServiceProcess::start_on_port`] on `host`: in its network namespace, if it has one,
    /// listening on its address.
    pub async fn start_on_host(
        binary: &str,
        services: &[&str],
        config: &PlatformConfig,
        env: &[(&str, &str)],
        host: &Host,
        port: u16,
    ) -> anyhow::Result<ServiceProcess> {
        ServiceProcess::launch(binary, services, config, env, host, port, None).await
    }

    /// [`ServiceProcess::start_with_env`] for a process serving TLS (its `POS_TLS__*` in `env`):
    /// its endpoint is `https://`, and its health is asked with `client`'s settings.
    pub async fn start_tls(
        binary: &str,
        services: &[&str],
        config: &PlatformConfig,
        env: &[(&str, &str)],
        client: &pos_platform::tls::ClientTls,
    ) -> anyhow::Result<ServiceProcess> {
        ServiceProcess::launch(binary, services, config, env, &Host::loopback(), free_port()?, Some(client)).await
    }

    async fn launch(
        binary: &str,
        services: &[&str],
        config: &PlatformConfig,
        env: &[(&str, &str)],
        host: &Host,
        port: u16,
        tls: Option<&pos_platform::tls::ClientTls>,
    ) -> anyhow::Result<ServiceProcess> {
        let listen = std::net::SocketAddr::new(host.address, port);
        let endpoint = format!("{}://{listen}", if tls.is_some() { "https" } else { "http" });
        let mut command = match &host.netns {
            // `ip netns exec` execs the binary itself: the child is the service, so a SIGKILL
            // reaches it.
            Some(netns) => {
                let mut command = std::process::Command::new("ip");
                command.args(["netns", "exec", netns.as_str(), binary]);
                command
            }
            None => std::process::Command::new(binary),
        };
        let child = command
            .arg("up")
            .args(if services.is_empty() { Vec::new() } else { vec!["--services".to_owned(), services.join(",")] })
            .envs(config_env(config))
            .env("POS_GRPC_ADDR", listen.to_string())
            .env("RUST_LOG", std::env::var("TEST_LOG").map(|_| "info").unwrap_or("warn"))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let mut process = ServiceProcess { child, endpoint };
        let deadline = Instant::now() + Duration::from_secs(60);
        while pos_platform::host::healthcheck_with(&process.endpoint, "", tls).await.is_err() {
            if let Some(status) = process.child.try_wait()? {
                anyhow::bail!("{services:?} exited while starting: {status}");
            }
            anyhow::ensure!(Instant::now() < deadline, "{services:?} did not become healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(process)
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; returns its exit status.
    pub fn terminate(mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let status = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(Instant::now() < deadline, "the process did not stop within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no flushing, as a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Platform {
    pub endpoint: String,
    pub infra: Infra,
    pub mode: Mode,
    /// Every consumer queue of the platform, named as on the bus.
    pub queues: Vec<pos_platform::bus::QueueSpec>,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    _data: TempDir,
}

impl Platform {
    pub async fn start(mode: Mode) -> anyhow::Result<Platform> {
        Platform::start_with(Options::new(mode)).await
    }

    pub async fn start_with(options: Options) -> anyhow::Result<Platform> {
        testing::init_for_tests_once();
        let Options { mode, data, run_id, amqp_url, services, config_file, metrics_addr, regions, exchange } = options;
        let mut config = config(mode, &data, &run_id, amqp_url.as_deref());
        config.metrics_addr = metrics_addr;
        config.regions = regions;
        if let Some(exchange) = exchange {
            config.exchange = exchange;
        }
        let infra = Infra::connect(config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let components = pos::up::components(&infra, config_file, &endpoint, &services).await?;
        let queues = components
            .iter()
            .flat_map(|component| component.consumers.iter())
            .map(|consumer| {
                let mut spec = consumer.spec.clone();
                spec.name = infra.config.queue_name(&spec.name);
                spec
            })
            .collect();
        let shutdown = CancellationToken::new();
        let handle = {
            let (infra, shutdown) = (infra.clone(), shutdown.clone());
            tokio::spawn(async move { pos_platform::host::run(&infra, components, listener, shutdown).await })
        };
        // Serving means every queue is declared and every consumer is about to start.
        let deadline = Instant::now() + Duration::from_secs(60);
        while pos_platform::host::healthcheck(&endpoint, "").await.is_err() {
            anyhow::ensure!(!handle.is_finished(), "the platform stopped while starting");
            anyhow::ensure!(Instant::now() < deadline, "the platform did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Platform { endpoint, infra, mode, queues, shutdown, handle, _data: data })
    }

    /// Stops gracefully, as on SIGTERM, and leaves everything in place (queues, schemas, state
    /// directory) for a restart with the same run id and data.
    pub async fn shut_down(self) -> anyhow::Result<(Infra, TempDir)> {
        self.shutdown.cancel();
        self.handle.await??;
        Ok((self.infra, self._data))
    }

    /// Stops gracefully, as on SIGTERM, then removes what the run left on the shared servers
    /// (queues, exchanges, schemas), so that test runs do not pile up on them.
    pub async fn stop(self) -> anyhow::Result<TempDir> {
        let mode = self.mode;
        let (infra, data) = self.shut_down().await?;
        if mode == Mode::Servers {
            remove_from_servers(&infra).await?;
        }
        Ok(data)
    }

    /// Declares a queue of a service running elsewhere (another process) on this platform's bus,
    /// so that [`Platform::stop`] removes it too.
    pub async fn adopt_queue(&self, name: &str) -> anyhow::Result<()> {
        let spec = pos_platform::bus::QueueSpec::new(self.infra.config.queue_name(name), &[]);
        self.infra.bus.declare(&spec).await?;
        Ok(())
    }

    pub fn channel(&self) -> Channel {
        pos_platform::grpc::channel(&self.endpoint).expect("valid endpoint")
    }

    pub fn intake(&self) -> IntakeServiceClient<Channel> {
        IntakeServiceClient::new(self.channel())
    }

    pub fn routing(&self) -> RoutingServiceClient<Channel> {
        RoutingServiceClient::new(self.channel())
    }

    pub fn ticketing(&self) -> TicketingServiceClient<Channel> {
        TicketingServiceClient::new(self.channel())
    }

    /// Waits until the appeal has a ticket, as its addressee's coordinator sees it.
    pub async fn wait_for_ticket(
        &self,
        appeal_id: &str,
        organization_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<pb::Ticket> {
        let token = testing::token("e2e-coordinator", organization_id, "", &[Role::Coordinator, Role::System]);
        let deadline = Instant::now() + timeout;
        loop {
            let request = pos_platform::grpc::outgoing(
                pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::AppealId(appeal_id.to_owned())) },
                &token,
            );
            match self.ticketing().get_ticket(request).await {
                Ok(ticket) => return Ok(ticket.into_inner()),
                Err(status) if status.code() == tonic::Code::NotFound && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => anyhow::bail!("no ticket for appeal {appeal_id}: {status}"),
            }
        }
    }
}

/// Removes what a stopped platform on real servers left there: its queues (and the exchanges,
/// unless another deployment still uses them) and its schemas.
pub async fn remove_from_servers(infra: &Infra) -> anyhow::Result<()> {
    infra.bus.delete_declared().await?;
    let db = pos_platform::db::Db::connect(&testing::database_url(), "public", 1).await?;
    for (service, _) in pos::up::SERVICES {
        let schema = format!("{}{service}", infra.config.schema_prefix);
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(db.pool()).await?;
    }
    db.close().await;
    Ok(())
}

impl Platform {
    /// Submits `count` appeals of the given shape, `concurrency` at a time; every one must be
    /// accepted. Returns the appeal ids in submission order.
    pub async fn submit_many(
        &self,
        count: usize,
        concurrency: usize,
        appeal: impl Fn(usize) -> pb::SubmitAppealRequest,
    ) -> anyhow::Result<Vec<String>> {
        use futures::StreamExt;
        // A channel integration submitting in bulk: a system caller, with its own rate allowance.
        let token = testing::token("channel-load", "", "", &[Role::System]);
        let requests: Vec<pb::SubmitAppealRequest> = (0..count).map(appeal).collect();
        let results: Vec<anyhow::Result<String>> = futures::stream::iter(requests)
            .map(|request| {
                let (mut client, token) = (self.intake(), token.clone());
                async move {
                    let response = client.submit_appeal(pos_platform::grpc::outgoing(request, &token)).await?;
                    Ok(response.into_inner().appeal_id)
                }
            })
            .buffered(concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Every ticket of an organization (all folders), as its system integration sees them.
    pub async fn all_tickets(&self, organization_id: &str) -> anyhow::Result<Vec<pb::Ticket>> {
        all_tickets(&self.endpoint, organization_id).await
    }

    /// Waits until the organization holds `expected` tickets (or the timeout passes) and
    /// returns what it holds then.
    pub async fn wait_for_tickets(
        &self,
        organization_id: &str,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<pb::Ticket>> {
        wait_for_tickets(&self.endpoint, organization_id, expected, timeout).await
    }
}

/// Every ticket of an organization (all folders) at `endpoint`, as a system integration sees them.
pub async fn all_tickets(endpoint: &str, organization_id: &str) -> anyhow::Result<Vec<pb::Ticket>> {
    let token = testing::token("e2e-system", organization_id, "", &[Role::System]);
    let mut client = TicketingServiceClient::new(pos_platform::grpc::channel(endpoint)?);
    let mut tickets = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListTicketsRequest {
            organization_id: organization_id.to_owned(),
            page_size: 500,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = client.list_tickets(pos_platform::grpc::outgoing(request, &token)).await?.into_inner();
        tickets.extend(page.tickets);
        if page.next_page_token.is_empty() {
            return Ok(tickets);
        }
        page_token = page.next_page_token;
    }
}

/// Waits until the organization at `endpoint` holds `expected` tickets (or the timeout passes)
/// and returns what it holds then.
pub async fn wait_for_tickets(
    endpoint: &str,
    organization_id: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<pb::Ticket>> {
    let deadline = Instant::now() + timeout;
    loop {
        let tickets = all_tickets(endpoint, organization_id).await?;
        if tickets.len() >= expected || Instant::now() > deadline {
            return Ok(tickets);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the ticket of every one of `appeal_ids` at `endpoint` shows its answer deadline:
/// the SLA service's `sla.armed` reached ticketing, even when it came before the ticket. Fails
/// naming how many still have none after `timeout`.
pub async fn wait_for_deadlines(
    endpoint: &str,
    organization_id: &str,
    appeal_ids: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let tickets = all_tickets(endpoint, organization_id).await?;
        let shown: std::collections::HashSet<&str> =
            tickets.iter().filter(|t| t.answer_due.is_some()).map(|t| t.appeal_id.as_str()).collect();
        let missing = appeal_ids.iter().filter(|id| !shown.contains(id.as_str())).count();
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{missing} of {} tickets show no answer deadline after {timeout:?}", appeal_ids.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The e-diary appeal of the walkthrough (Kamchatka, fast-track, to the regional center).
pub fn e_diary_appeal(request_id: &str) -> pb::SubmitAppealRequest {
    pb::SubmitAppealRequest {
        request_id: request_id.to_owned(),
        source: pb::Source::PortalWidget as i32,
        applicant: Some(pb::Applicant {
            full_name: "Иванова Мария Петровна".into(),
            email: "maria@example.org".into(),
            phone: "+7 914 000-00-00".into(),
            account_id: "esia-1001".into(),
        }),
        region_code: "41".into(),
        category_id: "education".into(),
        subcategory_id: "education.e-diary".into(),
        fact_id: "education.e-diary.access".into(),
        text: "Здравствуйте. Прошу предоставить доступ к электронному дневнику для сына. СНИЛС 123-345-678 90".into(),
        ..Default::default()
    }
}

pub const KAMCHATKA_CENTER: &str = "41-kcioko";

/// The same e-diary appeal from Tatarstan, which goes to Tatarstan's regional center.
pub fn tatarstan_e_diary_appeal(request_id: &str) -> pb::SubmitAppealRequest {
    pb::SubmitAppealRequest { region_code: "16".into(), ..e_diary_appeal(request_id) }
}

pub const TATARSTAN_CENTER: &str = "16-rcmko";

/// Asserts that `tickets` are exactly one per appeal of `appeal_ids`.
pub fn assert_one_ticket_per_appeal(tickets: &[pb::Ticket], appeal_ids: &[String]) {
    let mut seen = std::collections::HashMap::new();
    for ticket in tickets {
        *seen.entry(ticket.appeal_id.as_str()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "appeals with more than one ticket: {twice:?}");
    let missing: Vec<_> = appeal_ids.iter().filter(|id| !seen.contains_key(id.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} of {} appeals have no ticket, e.g. {:?}",
        missing.len(),
        appeal_ids.len(),
        missing.first()
    );
    assert_eq!(tickets.len(), appeal_ids.len());
}

/// A request carrying a token and a chosen W3C trace context.
pub fn traced<T>(message: T, token: &str, trace_id: &str) -> tonic::Request<T> {
    let mut request = pos_platform::grpc::outgoing(message, token);
    let traceparent = format!("00-{trace_id}-{}-01", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("ascii"));
    request
}

//! Helpers for the services' integration tests: any component served on a test listener with
//! a fresh schema or data directory, a unique exchange and cache prefix ([`TestServer`]); the
//! local servers' URLs; tokens; [`eventually`]. Tests talk to real servers; these only find
//! and isolate them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Role};
use crate::bus::Bus;
use crate::bus::amqp::AmqpBus;
use crate::bus::memory::MemoryBus;
use crate::cache::{Cache, MemoryCache, RedisCache};
use crate::config::{AuthConfig, PlatformConfig, Secret};
use crate::db::{Db, Dialect, Migrations};
use crate::host::{Component, Infra, ServiceContext};

/// Installs the quiet test subscriber (see [`crate::telemetry::init_for_tests`]).
pub fn init_for_tests_once() {
    crate::telemetry::init_for_tests();
}

pub const TEST_SECRET: &str = "pos-test-secret";

pub fn database_url() -> String {
    std::env::var("POS_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn amqp_url() -> String {
    std::env::var("POS_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn redis_url() -> String {
    std::env::var("POS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A name unique to this test run, e.g. `intake_t5f3a…`, fit for schemas, queues and prefixes.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_t{}", uuid::Uuid::new_v4().simple().to_string().get(..12).unwrap_or_default())
}

/// A migrated, empty schema of its own on the local PostgreSQL.
pub async fn postgres_db(service: &str, migrations: &Migrations) -> Db {
    crate::telemetry::init_for_tests();
    let db = Db::connect(&database_url(), &unique(service), 5).await.expect("local PostgreSQL is running");
    db.migrate(migrations).await.expect("migrations apply");
    db
}

/// A migrated SQLite file in a temporary directory (kept alive by the returned guard).
pub async fn sqlite_db(service: &str, migrations: &Migrations) -> (Db, TempDir) {
    crate::telemetry::init_for_tests();
    let dir = TempDir::new();
    let db = Db::connect(&crate::host::sqlite_url(&dir.0, service), service, 4).await.expect("sqlite opens");
    db.migrate(migrations).await.expect("migrations apply");
    (db, dir)
}

/// A directory removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(unique("pos"));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Platform configuration for tests: the test key, a short grace period, and an exchange and
/// cache prefix of the test's own, so that tests sharing a broker or a Redis never meet.
pub fn platform_config(data_dir: &std::path::Path) -> PlatformConfig {
    let run = unique("t");
    PlatformConfig {
        data_dir: data_dir.to_path_buf(),
        auth: AuthConfig { hs256_secret: Some(Secret::new(TEST_SECRET)), ..AuthConfig::default() },
        shutdown_grace_secs: 5,
        exchange: format!("{run}.events"),
        cache_prefix: run,
        ..PlatformConfig::default()
    }
}

/// Polls `check` every 25 ms until it holds, for up to `limit` (events are handled
/// asynchronously); panics naming `what` otherwise.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Where a [`TestServer`]'s database lives.
pub enum TestDb {
    /// A fresh schema on the local PostgreSQL (the default).
    Postgres,
    /// A SQLite file in the server's temporary directory.
    Sqlite,
    /// One the test prepared (migrated already).
    Given(Db),
}

/// How a [`TestServer`] is set up; the defaults suit most tests.
pub struct TestOptions {
    pub db: TestDb,
    /// RabbitMQ on loopback (a unique exchange) instead of the in-process bus.
    pub rabbitmq: bool,
    /// Redis on loopback (a unique prefix) instead of the in-process cache.
    pub redis: bool,
    /// Adjusts the platform configuration before anything connects.
    pub configure: Box<dyn FnOnce(&mut PlatformConfig) + Send>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions { db: TestDb::Postgres, rabbitmq: false, redis: false, configure: Box::new(|_| {}) }
    }
}

/// One service component served on `127.0.0.1:0` with its consumers, relays and tasks, as
/// `pos up` would run it; stopped and cleaned up (schema, queues) by [`TestServer::stop`].
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub db: Db,
    pub infra: Infra,
    pub dir: TempDir,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Builds `service`'s component with `build` and serves it until [`TestServer::stop`].
    /// Returns once gRPC health answers SERVING, i.e. once every consumer's queue exists.
    pub async fn spawn<F, Fut>(service: &str, migrations: &Migrations, options: TestOptions, build: F) -> TestServer
    where
        F: FnOnce(ServiceContext) -> Fut,
        Fut: Future<Output = anyhow::Result<Component>>,
    {
        crate::telemetry::init_for_tests();
        let dir = TempDir::new();
        let mut config = platform_config(&dir.0);
        (options.configure)(&mut config);
        let db = match options.db {
            TestDb::Postgres => postgres_db(service, migrations).await,
            TestDb::Sqlite => {
                let db = Db::connect(&crate::host::sqlite_url(&dir.0, service), service, 4).await.expect("sqlite opens");
                db.migrate(migrations).await.expect("migrations apply");
                db
            }
            TestDb::Given(db) => db,
        };
        let bus: Arc<dyn Bus> = if options.rabbitmq {
            Arc::new(AmqpBus::connect(&amqp_url(), &config.exchange).await.expect("local RabbitMQ is running"))
        } else {
            Arc::new(MemoryBus::new())
        };
        let cache: Arc<dyn Cache> = if options.redis {
            Arc::new(RedisCache::connect(&redis_url(), &config.cache_prefix).await.expect("local Redis is running"))
        } else {
            Arc::new(MemoryCache::new())
        };
        let infra = Infra { config, bus, cache, authenticator: authenticator() };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a test port");
        let addr = listener.local_addr().expect("local address");
        let endpoint = format!("http://{addr}");
        let context =
            ServiceContext { infra: infra.clone(), db: db.clone(), config_file: None, self_endpoint: endpoint.clone() };
        let component = build(context).await.expect("the component builds");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let (infra, shutdown) = (infra.clone(), shutdown.clone());
            async move { crate::host::run(&infra, vec![component], listener, shutdown).await }
        });
        let test_server = TestServer { addr, endpoint, db, infra, dir, shutdown, server: Some(server) };
        let health = test_server.endpoint.clone();
        eventually(Duration::from_secs(10), &format!("{service} serves"), || {
            let health = health.clone();
            async move { crate::host::healthcheck(&health, "").await.is_ok() }
        })
        .await;
        test_server
    }

    /// A lazily connecting channel to the server, for any generated client.
    pub fn channel(&self) -> tonic::transport::Channel {
        crate::grpc::channel(&self.endpoint).expect("a valid endpoint")
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.infra.bus
    }

    /// The name a consumer's queue has on the bus (the host puts the exchange before it).
    pub fn queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.infra.config.exchange)
    }

    /// Stops serving (gracefully, as on SIGTERM) and returns the result of the host's run.
    pub async fn shut_down(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.server.take() {
            Some(server) => match tokio::time::timeout(Duration::from_secs(15), server).await {
                Ok(joined) => joined?,
                Err(_) => anyhow::bail!("the server did not stop within 15 s"),
            },
            None => Ok(()),
        }
    }

    /// Stops serving, then removes what the test created: the schema, the queues.
    pub async fn stop(mut self) {
        if let Err(error) = self.shut_down().await {
            tracing::warn!(error = %format!("{error:#}"), "test server stopped with an error");
        }
        if self.db.dialect() == Dialect::Postgres {
            let _ = self.db.drop_schema().await;
        }
        self.db.close().await;
        let _ = self.infra.bus.delete_declared().await;
    }
}

pub fn authenticator() -> Arc<Authenticator> {
    Arc::new(
        Authenticator::from_config(&AuthConfig {
            hs256_secret: Some(Secret::new(TEST_SECRET)),
            ..AuthConfig::default()
        })
        .expect("test key"),
    )
}

/// A bearer token for a caller of `organization_id` with `roles`.
pub fn token(subject: &str, organization_id: &str, region: &str, roles: &[Role]) -> String {
    authenticator().mint(subject, organization_id, region, roles, std::time::Duration::from_secs(3600)).expect("mint")
}

/// A RabbitMQ node of a test's own on spare ports, so that stopping it disturbs no other test.
/// Stopped and removed on drop. Needs the `rabbitmq-server` scripts on PATH (when run as root,
/// Debian's scripts switch to the `rabbitmq` user, hence the `chown`). Blocking: call from
/// `spawn_blocking` in async tests.
pub struct RabbitNode {
    name: String,
    port: u16,
    base: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl RabbitNode {
    pub fn start() -> RabbitNode {
        use std::process::Command;
        let id = unique("rmq");
        let name = format!("pos-test-{id}@localhost");
        let (port, dist_port) = (free_port(), free_port());
        let base = std::env::temp_dir().join(format!("pos-rabbitmq-{id}"));
        std::fs::create_dir_all(&base).expect("node directory");
        // Our own config: the system one binds the shared node's port.
        std::fs::write(base.join("rabbitmq.conf"), format!("listeners.tcp.local = 127.0.0.1:{port}\n"))
            .expect("node config");
        std::fs::write(base.join("enabled_plugins"), "[].\n").expect("node plugins");
        let _ = Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(&base).status();
        let node = RabbitNode { name, port, base };
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .current_dir(std::env::temp_dir())
            .env("RABBITMQ_NODENAME", &node.name)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", node.base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", node.base.join("log"))
            .env("RABBITMQ_CONFIG_FILE", node.base.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", node.base.join("enabled_plugins"))
            .status()
            .expect("rabbitmq-server on PATH");
        assert!(status.success(), "rabbitmq-server -detached failed");
        node.await_listener(std::time::Duration::from_secs(90));
        node
    }

    /// Runs `rabbitmqctl -n <node> <args>`, e.g. `stop_app` / `start_app`.
    pub fn ctl(&self, args: &[&str]) {
        let output = std::process::Command::new("rabbitmqctl")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("rabbitmqctl on PATH");
        assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Stops the broker application: connections close, queues stay on disk.
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// Starts it again and waits for the listener.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.await_listener(std::time::Duration::from_secs(60));
    }

    /// The AMQP listener opens once the node has booted.
    pub fn await_listener(&self, limit: std::time::Duration) {
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < limit, "node {} did not start in {limit:?}", self.name);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").arg("-n").arg(&self.name).arg("stop").output();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

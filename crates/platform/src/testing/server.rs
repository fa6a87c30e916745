//! One service component served as `pos up` would run it, on a test listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{TempDir, amqp_url, authenticator, eventually, platform_config, postgres_db, redis_url};
use crate::bus::Bus;
use crate::bus::amqp::AmqpBus;
use crate::bus::memory::MemoryBus;
use crate::cache::{Cache, MemoryCache, RedisCache};
use crate::config::PlatformConfig;
use crate::db::{Db, Dialect, Migrations};
use crate::host::{Component, Infra, ServiceContext};

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
                let db =
                    Db::connect(&crate::host::sqlite_url(&dir.0, service), service, 4).await.expect("sqlite opens");
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

    /// The name a consumer's queue has on the bus (see `PlatformConfig::queue_name`).
    pub fn queue(&self, consumer: &str) -> String {
        self.infra.config.queue_name(consumer)
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
        self.db.close().await;
        // Through a connection of its own: the test may have closed the server's pool.
        if self.db.dialect() == Dialect::Postgres
            && let Ok(cleanup) = Db::connect(&super::database_url(), self.db.schema(), 1).await
        {
            let _ = cleanup.drop_schema().await;
            cleanup.close().await;
        }
        let _ = self.infra.bus.delete_declared().await;
    }
}

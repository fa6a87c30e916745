//! Helpers for the services' integration tests: any component served on a test listener with
//! a fresh schema or data directory, a unique exchange and cache prefix ([`TestServer`]); the
//! local servers' URLs; tokens; [`eventually`]; a RabbitMQ node or cluster of a test's own
//! ([`RabbitNode`], [`RabbitCluster`]); the check that both migration trees of a service mean
//! the same schema ([`assert_schema_parity`]); the checks that every method survives its database's outage
//! ([`assert_unavailable_without_database`]) and keeps to the caller's scope
//! ([`assert_every_method_scoped`]); with the `test-tls` feature, a certificate authority of the
//! test's own and PostgreSQL, Redis and RabbitMQ servers that speak TLS only ([`TestCa`]).
//! Tests talk to real servers; these only find and isolate them.

mod outage;
mod rabbit;
mod schema;
mod scope;
mod server;
#[cfg(feature = "test-tls")]
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use outage::{Call, assert_unavailable_without_database, call, declared_methods};
pub use rabbit::{ClusterQueue, RabbitCluster, RabbitNode};
pub use schema::{SchemaDrift, assert_schema_parity, schema_drift};
pub use scope::{DENIAL_REASONS, Scoped, assert_every_method_scoped, assert_scoped};
pub use server::{TestDb, TestOptions, TestServer};
#[cfg(feature = "test-tls")]
pub use tls::{TestCa, TlsPostgres, TlsRabbit, TlsRedis};

use crate::auth::{Authenticator, Role};
use crate::config::{AuthConfig, PlatformConfig, Secret};
use crate::db::{Db, Migrations};

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

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
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
        // The test key is a development secret, also on the tests' stacks with servers.
        auth: AuthConfig {
            hs256_secret: Some(Secret::new(TEST_SECRET)),
            allow_development_secret: true,
            ..AuthConfig::default()
        },
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

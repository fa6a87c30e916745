//! The database port: one `sqlx::Any` pool per service, PostgreSQL in production (one schema
//! per service) or a SQLite file in embedded mode (one file per service).
//!
//! Store code is written once, in the SQL both dialects share: `$N` placeholders, `TEXT` ids,
//! times as `BIGINT` microseconds since the Unix epoch (UTC), JSON as `TEXT`. The few places
//! where the dialects differ ask [`Dialect`]. See `docs/adr/0002-one-store-two-databases.md`.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row};
use tokio::sync::Notify;

use crate::servers_ca::ServersCa;

pub type Tx = sqlx::Transaction<'static, Any>;

/// Which SQL dialect a pool speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Row locking for work queues; SQLite serializes writers anyway.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    #[error("invalid schema name {0:?}: use lowercase letters, digits and underscores")]
    InvalidSchema(String),
    /// The server's certificate was refused, with the CA bundle it was checked against.
    #[error("tls: {0}")]
    Tls(String),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A service's database: the pool, its dialect, and the signal that wakes the outbox relay.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    schema: Arc<str>,
    outbox_signal: Arc<Notify>,
}

/// The platform's own tables (outbox, inbox) live beside each service's tables but keep their
/// own migration history, so that service migrations can be numbered freely.
static PLATFORM_POSTGRES: LazyLock<Migrator> =
    LazyLock::new(|| platform_migrator(sqlx::migrate!("migrations/postgres")));
static PLATFORM_SQLITE: LazyLock<Migrator> = LazyLock::new(|| platform_migrator(sqlx::migrate!("migrations/sqlite")));

fn platform_migrator(mut migrator: Migrator) -> Migrator {
    migrator.dangerous_set_table_name("_pos_platform_migrations");
    migrator
}

/// A service's embedded migrations, one directory per dialect with the same meaning.
pub struct Migrations {
    pub postgres: &'static Migrator,
    pub sqlite: &'static Migrator,
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite://…`). For PostgreSQL every connection works
    /// in `schema`, which is created when missing; a SQLite file is created when missing.
    pub async fn connect(url: &str, schema: &str, max_connections: u32) -> Result<Db, DbError> {
        Db::connect_with_ca(url, schema, max_connections, None).await
    }

    /// [`Db::connect`], with PostgreSQL's certificate verified against `ca` (`servers_ca_file`)
    /// when the URL asks for verification (`sslmode=verify-ca` or `verify-full`) and names no
    /// `sslrootcert` of its own.
    pub async fn connect_with_ca(
        url: &str,
        schema: &str,
        max_connections: u32,
        ca: Option<&ServersCa>,
    ) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(DbError::InvalidSchema(schema.to_owned()));
        }
        let dialect = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            return Err(DbError::InvalidUrl(redact_url(url)));
        };
        let pool = match dialect {
            Dialect::Postgres => {
                let url = &with_root_cert(url, ca);
                let refused = |error: sqlx::Error| match ca {
                    Some(ca) if is_tls_error(&error) => DbError::Tls(format!("{error} ({})", ca.describe())),
                    _ => DbError::Sqlx(error),
                };
                // Create the schema once, outside the pool, so every pooled connection can use it.
                let bootstrap = AnyPoolOptions::new().max_connections(1).connect(url).await.map_err(refused)?;
                bootstrap.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).await?;
                bootstrap.close().await;
                // The schema name was checked above to be lowercase letters, digits and underscores.
                let search_path = format!("SET search_path TO {schema}");
                AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(move |conn, _| {
                        let search_path = sqlx::AssertSqlSafe(search_path.clone());
                        Box::pin(async move {
                            conn.execute(search_path).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Dialect::Sqlite => {
                if let Some(path) = sqlite_path(url)
                    && let Some(dir) = Path::new(path).parent()
                {
                    std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
                }
                let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
                AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(30))
                    // A file does not drop connections the way a server does; a ping per
                    // checkout would be one more hand-off to SQLite's worker thread each time.
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the one writer; busy_timeout queues
                            // writers instead of failing them; NORMAL is durable in WAL mode
                            // up to the last checkpointed transaction on power loss only.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
        };
        Ok(Db { pool, dialect, schema: schema.into(), outbox_signal: Arc::new(Notify::new()) })
    }

    /// Applies the platform's migrations and then the service's, for this dialect.
    pub async fn migrate(&self, service: &Migrations) -> Result<(), DbError> {
        let (platform, own) = match self.dialect {
            Dialect::Postgres => (&*PLATFORM_POSTGRES, service.postgres),
            Dialect::Sqlite => (&*PLATFORM_SQLITE, service.sqlite),
        };
        platform.run(&self.pool).await?;
        own.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A transaction, for writing (reads alone go to the pool). SQLite cannot upgrade a deferred
    /// reader to a writer once another writer has committed (SQLITE_BUSY_SNAPSHOT, which
    /// busy_timeout does not retry), so there it takes the write lock up front.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let tx = match self.dialect {
            Dialect::Postgres => self.pool.begin().await,
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
        }?;
        // `pos bench` weighs changes by transactions per appeal; counted here so that SQLite,
        // which keeps no statistics of its own, is measured the same way as PostgreSQL.
        metrics::counter!("pos_db_transactions_total", "schema" => self.schema.clone()).increment(1);
        Ok(tx)
    }

    /// Tells the outbox relay that rows were committed; call after a commit that enqueued events.
    pub fn wake_outbox(&self) {
        self.outbox_signal.notify_one();
    }

    pub(crate) fn outbox_signal(&self) -> &Notify {
        &self.outbox_signal
    }

    /// Drops the service's schema and everything in it (PostgreSQL). Used by tests.
    pub async fn drop_schema(&self) -> Result<(), sqlx::Error> {
        if self.dialect == Dialect::Postgres {
            self.pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))).await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `url` with `sslrootcert` set to the bundle, unless it names one already; only PostgreSQL's
/// verifying modes read it, so it is harmless elsewhere.
fn with_root_cert(url: &str, ca: Option<&ServersCa>) -> String {
    let Some(ca) = ca else { return url.to_owned() };
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or_default();
    let named = query.split('&').any(|pair| {
        let key = pair.split('=').next().unwrap_or_default();
        matches!(key, "sslrootcert" | "ssl-root-cert" | "ssl-ca")
    });
    if named {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslrootcert={}", percent_encode(&ca.path().to_string_lossy()))
}

/// A file path as a URL query value: what is not unreserved or `/` is percent-encoded.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Whether a connection failed in the TLS handshake (a certificate refused, most often): sqlx
/// reports a failed handshake as the I/O error rustls returns, `InvalidData`.
fn is_tls_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// A URL with its password replaced, fit for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Microseconds since the Unix epoch: how every time is stored.
pub fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub fn from_micros(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros).single().unwrap_or_default()
}

pub fn now_micros() -> i64 {
    to_micros(Utc::now())
}

/// Reading columns the same way from both dialects.
pub trait RowExt {
    /// A boolean column: PostgreSQL returns BOOLEAN, SQLite an integer.
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error>;
    fn time_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    fn uuid(&self, column: &str) -> Result<uuid::Uuid, sqlx::Error>;
}

impl RowExt for AnyRow {
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        match self.try_get::<bool, _>(column) {
            Ok(value) => Ok(value),
            Err(_) => Ok(self.try_get::<i64, _>(column)? != 0),
        }
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        Ok(from_micros(self.try_get::<i64, _>(column)?))
    }

    fn time_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        Ok(self.try_get::<Option<i64>, _>(column)?.map(from_micros))
    }

    fn uuid(&self, column: &str) -> Result<uuid::Uuid, sqlx::Error> {
        let text: String = self.try_get(column)?;
        uuid::Uuid::from_str(&text)
            .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: e.into() })
    }
}

/// SQLSTATE / SQLite codes the services act upon, mapped in one place.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("23505") | Some("2067") | Some("1555")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://pos:secret@db:5432/pos"), "postgres://pos:***@db:5432/pos");
        assert_eq!(redact_url("amqp://guest@localhost"), "amqp://guest@localhost");
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn the_ca_bundle_goes_into_the_url_unless_it_names_its_own() {
        let dir = crate::testing::TempDir::new();
        let path = dir.0.join("my ca.pem");
        // A self-signed certificate is not needed to test the URL: any PEM certificate block.
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").unwrap();
        let ca = ServersCa::load("servers_ca_file", &path).unwrap();
        let encoded = percent_encode(&path.to_string_lossy());
        assert!(encoded.ends_with("/my%20ca.pem"), "{encoded}");
        assert_eq!(
            with_root_cert("postgres://u@db/pos?sslmode=verify-full", Some(&ca)),
            format!("postgres://u@db/pos?sslmode=verify-full&sslrootcert={encoded}")
        );
        assert_eq!(
            with_root_cert("postgres://u@db/pos", Some(&ca)),
            format!("postgres://u@db/pos?sslrootcert={encoded}")
        );
        let own = "postgres://u@db/pos?sslmode=verify-full&sslrootcert=/etc/own.pem";
        assert_eq!(with_root_cert(own, Some(&ca)), own);
        assert_eq!(with_root_cert("postgres://u@db/pos", None), "postgres://u@db/pos");
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite://data/intake.db?mode=rwc"), Some("data/intake.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}

//! TLS to the servers, against real ones started by each test with certificates of its own
//! ([`TestCa`]): PostgreSQL with `sslmode=verify-full`, RabbitMQ over `amqps://`, Redis over
//! `rediss://`, each verified against `servers_ca_file`. Each test starts only what it needs.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use pos_platform::bus::amqp::AmqpBus;
use pos_platform::bus::{Bus, Disposition, Envelope, QueueSpec};
use pos_platform::cache::RedisCache;
use pos_platform::config::Secret;
use pos_platform::db::{Db, Migrations};
use pos_platform::host::Infra;
use pos_platform::testing::{TempDir, TestCa, TlsPostgres, TlsRabbit, TlsRedis, platform_config, unique};
use sqlx::Row;
use sqlx::migrate::Migrator;

/// The platform's own migrations only: these tests have no service.
static NO_MIGRATIONS: Migrator = Migrator::DEFAULT;
static PLATFORM_ONLY: Migrations = Migrations { postgres: &NO_MIGRATIONS, sqlite: &NO_MIGRATIONS };

/// A CA of the test's own and a server with its certificate, started off the async workers.
async fn with_ca<T: Send + 'static>(start: fn(&TestCa) -> T) -> (TestCa, T) {
    tokio::task::spawn_blocking(move || {
        let ca = TestCa::new();
        let server = start(&ca);
        (ca, server)
    })
    .await
    .expect("the server starts")
}

#[tokio::test]
async fn postgres_is_verified_against_the_servers_ca_and_plaintext_is_refused() {
    pos_platform::testing::init_for_tests_once();
    let (ca, postgres) = with_ca(TlsPostgres::start).await;
    let stranger = TestCa::new();

    // Through the configuration, as a service connects: `servers_ca_file` verifies the server.
    let data = TempDir::new();
    let mut config = platform_config(&data.0);
    // The test's token key is a development secret, on a stack with servers.
    config.auth.allow_development_secret = true;
    config.database_url = Some(Secret::new(postgres.url()));
    config.servers_ca_file = Some(ca.ca_file());
    let infra = Infra::connect(config).await.expect("the embedded parts start");
    let db = infra.database(&unique("tls"), &PLATFORM_ONLY).await.expect("verify-full against servers_ca_file");
    let row = sqlx::query("SELECT 1 + 1 AS two").fetch_one(db.pool()).await.expect("a query over TLS");
    assert_eq!(row.try_get::<i32, _>("two").unwrap(), 2);
    db.close().await;

    let schema = unique("tls");
    // Plaintext: pg_hba admits hostssl only.
    let plaintext = Db::connect(&postgres.url_with("sslmode=disable"), &schema, 1).await;
    assert!(plaintext.is_err(), "a plaintext connection was accepted");
    // A CA that did not sign the server's certificate, and none but the public roots.
    let error = Db::connect_with_ca(&postgres.url(), &schema, 1, Some(&stranger.servers_ca()))
        .await
        .err()
        .expect("a certificate from another CA was accepted")
        .to_string();
    assert!(error.contains(&stranger.ca_file().display().to_string()), "the error names the CA bundle: {error}");
    assert!(Db::connect(&postgres.url(), &schema, 1).await.is_err(), "a test CA passed as a public one");
    // The URL's own `sslrootcert` wins over `servers_ca_file`.
    let own = postgres.url_with(&format!("sslmode=verify-full&sslrootcert={}", ca.ca_file().display()));
    let db = Db::connect_with_ca(&own, &schema, 1, Some(&stranger.servers_ca())).await.expect("the URL's CA");
    db.drop_schema().await.unwrap();
    db.close().await;
}

#[tokio::test]
async fn the_amqp_bus_publishes_and_consumes_over_amqps() {
    pos_platform::testing::init_for_tests_once();
    let (ca, rabbit) = with_ca(TlsRabbit::start).await;

    let exchange = unique("tls.events");
    let bus = AmqpBus::connect_with_ca(&rabbit.url(), &exchange, Some(&ca.servers_ca())).await.expect("amqps");
    let spec = QueueSpec::new(unique("tls.consumer"), &["tls.checked.*"]);
    bus.declare(&spec).await.unwrap();
    let mut deliveries = bus.consume(&spec).await.unwrap();
    let envelope = Envelope {
        message_id: uuid::Uuid::now_v7(),
        routing_key: "tls.checked.41".to_owned(),
        type_name: "pos.v1.events.AppealReceived".to_owned(),
        timestamp: chrono::Utc::now(),
        headers: Default::default(),
        payload: Bytes::from_static(b"over TLS"),
    };
    bus.publish(&envelope).await.expect("published with a confirm");
    let delivery = tokio::time::timeout(Duration::from_secs(15), deliveries.next())
        .await
        .expect("delivered in time")
        .expect("a delivery");
    assert_eq!(delivery.envelope.payload, envelope.payload);
    delivery.settle(Disposition::Ack).await.unwrap();
    bus.close().await;

    // The same node refuses a client that trusts another CA.
    let stranger = TestCa::new();
    let refused = AmqpBus::connect_with_ca(&rabbit.url(), &unique("tls.events"), Some(&stranger.servers_ca())).await;
    let error = refused.err().expect("a certificate from another CA was accepted").to_string();
    assert!(error.contains(&stranger.ca_file().display().to_string()), "the error names the CA bundle: {error}");
}

#[tokio::test]
async fn the_redis_cache_sets_and_gets_over_rediss() {
    pos_platform::testing::init_for_tests_once();
    let (ca, redis) = with_ca(TlsRedis::start).await;

    // Through the configuration, as a service connects.
    let data = TempDir::new();
    let mut config = platform_config(&data.0);
    // The test's token key is a development secret, on a stack with servers.
    config.auth.allow_development_secret = true;
    config.redis_url = Some(Secret::new(redis.url()));
    config.servers_ca_file = Some(ca.ca_file());
    let infra = Infra::connect(config).await.expect("rediss against servers_ca_file");
    infra.cache.set("greeting", b"over TLS", Duration::from_secs(60)).await.unwrap();
    assert_eq!(infra.cache.get("greeting").await.unwrap().as_deref(), Some(&b"over TLS"[..]));

    let stranger = TestCa::new();
    let refused = RedisCache::connect_with_ca(&redis.url(), "tls", Some(&stranger.servers_ca())).await;
    let error = refused.err().expect("a certificate from another CA was accepted").to_string();
    assert!(error.contains(&stranger.ca_file().display().to_string()), "the error names the CA bundle: {error}");
}

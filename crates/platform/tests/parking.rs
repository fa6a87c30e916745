//! Parking on both dialects: events come back in arrival order, once, in the transaction that
//! takes them; a message parked twice is kept once; keys and consumers stay apart; what waits is
//! listed; and on PostgreSQL parking and taking for one key wait for each other.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use pos_platform::Envelope;
use pos_platform::db::{Db, Dialect, Migrations};
use pos_platform::parking;
use pos_platform::testing::{self, TempDir};
use sqlx::migrate::Migrator;

/// No service tables: the platform's own migrations only.
static NONE: Migrator = Migrator::DEFAULT;
static PLATFORM_ONLY: Migrations = Migrations { postgres: &NONE, sqlite: &NONE };

async fn databases() -> Vec<(Db, Option<TempDir>)> {
    let postgres = testing::postgres_db("parking", &PLATFORM_ONLY).await;
    let (sqlite, dir) = testing::sqlite_db("parking", &PLATFORM_ONLY).await;
    vec![(postgres, None), (sqlite, Some(dir))]
}

async fn release(db: Db) {
    db.drop_schema().await.expect("drop schema");
    db.close().await;
}

fn envelope(event: &str, payload: &[u8]) -> Envelope {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_owned(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned());
    headers.insert("x-appeal-id".to_owned(), "a-1".to_owned());
    Envelope {
        message_id: uuid::Uuid::now_v7(),
        routing_key: format!("{event}.41"),
        type_name: "pos.v1.events.SlaArmed".to_owned(),
        // Whole microseconds: how the database keeps times.
        timestamp: Utc.timestamp_micros(1_737_000_000_123_456).unwrap(),
        headers,
        payload: Bytes::copy_from_slice(payload),
    }
}

async fn park(db: &Db, consumer: &str, key: &str, envelope: &Envelope) -> bool {
    let mut tx = db.begin().await.expect("begin");
    let parked = parking::park(&mut tx, consumer, key, envelope).await.expect("park");
    tx.commit().await.expect("commit");
    parked
}

async fn take(db: &Db, consumer: &str, key: &str) -> Vec<Envelope> {
    let mut tx = db.begin().await.expect("begin");
    let taken = parking::take(&mut tx, consumer, key).await.expect("take");
    tx.commit().await.expect("commit");
    taken
}

#[tokio::test]
async fn parked_events_come_back_once_in_arrival_order() {
    for (db, _dir) in databases().await {
        let (first, second, other_key, other_consumer) = (
            envelope("sla.armed", b"one"),
            envelope("sla.overdue", b"two"),
            envelope("sla.armed", b"x"),
            envelope("sla.armed", b"y"),
        );
        assert!(park(&db, "ticketing.sla", "a-1", &second).await);
        assert!(park(&db, "ticketing.sla", "a-1", &first).await);
        // The same message again (a redelivery, another replica): kept once.
        assert!(!park(&db, "ticketing.sla", "a-1", &second).await);
        assert!(park(&db, "ticketing.sla", "a-2", &other_key).await);
        assert!(park(&db, "notify.events", "a-1", &other_consumer).await);

        let waiting = parking::waiting(&db).await.expect("waiting");
        let listed: Vec<(&str, &str, i64)> =
            waiting.iter().map(|w| (w.consumer.as_str(), w.key.as_str(), w.events)).collect();
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert!(listed.contains(&("ticketing.sla", "a-1", 2)), "{listed:?}");
        let observed = parking::observe(&db, &["ticketing.sla"], Duration::ZERO).await.expect("observe");
        assert_eq!(observed, waiting);

        // Rolled back, the taking changes nothing: the events are still there.
        let mut tx = db.begin().await.expect("begin");
        assert_eq!(parking::take(&mut tx, "ticketing.sla", "a-1").await.expect("take").len(), 2);
        tx.rollback().await.expect("rollback");

        assert_eq!(take(&db, "ticketing.sla", "a-1").await, vec![second.clone(), first.clone()], "whole, in order");
        assert!(take(&db, "ticketing.sla", "a-1").await.is_empty(), "taken once");
        assert_eq!(take(&db, "ticketing.sla", "a-2").await, vec![other_key]);
        assert_eq!(take(&db, "notify.events", "a-1").await, vec![other_consumer]);
        assert!(parking::waiting(&db).await.expect("waiting").is_empty());
        release(db).await;
    }
}

/// The race parking exists for: the parker found no object while its creator was committing.
/// With the key's lock, the park waits for the creator's transaction and can look again.
#[tokio::test]
async fn parking_waits_for_a_transaction_taking_the_same_key() {
    let (postgres, _) = databases().await.into_iter().next().expect("postgres");
    assert_eq!(postgres.dialect(), Dialect::Postgres);
    let mut creator = postgres.begin().await.expect("begin");
    assert!(parking::take(&mut creator, "ticketing.sla", "a-1").await.expect("take").is_empty());

    let parker = {
        let db = postgres.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await.expect("begin");
            parking::lock(&mut tx, "ticketing.sla", "a-1").await.expect("lock");
            tx
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!parker.is_finished(), "the parker waits for the creator");
    // Another key does not wait.
    let mut elsewhere = postgres.begin().await.expect("begin");
    parking::lock(&mut elsewhere, "ticketing.sla", "a-2").await.expect("another key");
    elsewhere.commit().await.expect("commit");

    creator.commit().await.expect("commit");
    let mut parker = tokio::time::timeout(Duration::from_secs(10), parker).await.expect("lock granted").expect("task");
    assert!(park_in(&mut parker, &envelope("sla.armed", b"late")).await);
    parker.commit().await.expect("commit");
    assert_eq!(take(&postgres, "ticketing.sla", "a-1").await.len(), 1);
    release(postgres).await;
}

async fn park_in(tx: &mut pos_platform::Tx, envelope: &Envelope) -> bool {
    parking::park(tx, "ticketing.sla", "a-1", envelope).await.expect("park")
}

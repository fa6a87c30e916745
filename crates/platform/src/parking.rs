//! Events that arrive before the object they are about. Services publish independently and each
//! consumer (and each replica of it) runs at its own pace, so `sla.armed` can reach ticketing
//! before the `appeal.routed` that creates the ticket. Acknowledging such an event and dropping it
//! loses it; retrying it ends in the dead-letter queue when the object is slow to appear. Instead
//! the consumer parks it, in its own transaction (with its inbox row), keyed by the object, and
//! the transaction that creates the object takes the parked events back and applies them.
//!
//! ```ignore
//! // In the handler of the event about the object:
//! if !apply(tx, &event).await? {
//!     // Take the key's lock, then look again: the creator may have committed meanwhile.
//!     parking::lock(tx, CONSUMER, &key).await?;
//!     if !apply(tx, &event).await? {
//!         parking::park(tx, CONSUMER, &key, envelope).await?;
//!     }
//! }
//! // In the handler that creates the object, after creating it:
//! for envelope in parking::take(tx, CONSUMER, &key).await? {
//!     apply(tx, &envelope.decode()?).await?;
//! }
//! ```
//!
//! **Why the lock.** Without it, on PostgreSQL, the parker can see no object (its creation is
//! not committed yet) while the creator sees nothing parked (the park is not committed yet): the
//! event would wait forever. Parking and taking for one key hold a transaction-scoped advisory
//! lock on it, so one of them commits first and the other, looking after the lock, sees it.
//! SQLite transactions take the write lock at `BEGIN IMMEDIATE`, which serializes them anyway.
//!
//! **Guarantees.** A message is parked once per consumer (by message id); [`take`] returns a
//! key's events in the order they were parked and removes them in the caller's transaction, so
//! they are applied exactly once, or stay parked if that transaction rolls back.
//!
//! **Finding events whose object never appeared.** Each park is logged (`event parked`, with the
//! consumer, key and event); [`observe`] sets the gauges `pos_parked_events` and
//! `pos_parked_oldest_seconds` per consumer and logs a warning for every key waiting longer than
//! it should. An operator lists them in the service's schema with
//! `SELECT consumer, object_key, type_name, message_id, parked_at FROM parked ORDER BY id`, and may
//! delete a row whose object will never exist (the event stays in the consumer's inbox, so a
//! replay of the same message does not park it again).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::bus::Envelope;
use crate::db::{Db, Tx, from_micros, now_micros, to_micros};

/// Serializes this transaction with every other one parking or taking events of `consumer`
/// about `key`, until it ends. Call it before the check that finds the object missing, and look
/// again after it (see the module's documentation). Taking it twice is harmless.
pub async fn lock(tx: &mut Tx, consumer: &str, key: &str) -> Result<(), sqlx::Error> {
    // SQLite's BEGIN IMMEDIATE already holds the database's only write lock.
    if tx.backend_name() != "PostgreSQL" {
        return Ok(());
    }
    // The lock space is the database's: the schema keeps deployments and services apart (a
    // hash collision only makes two keys wait for each other).
    sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || $1, 0))")
        .bind(format!("parked/{consumer}/{key}"))
        .fetch_one(&mut **tx)
        .await?;
    Ok(())
}

/// Keeps `envelope` for `consumer` until the object `key` appears. Takes the key's lock; the
/// caller should have taken it before deciding the object is missing. Returns whether it was
/// parked now (`false`: this message was parked already).
pub async fn park(tx: &mut Tx, consumer: &str, key: &str, envelope: &Envelope) -> Result<bool, sqlx::Error> {
    lock(tx, consumer, key).await?;
    let headers = serde_json::to_string(&envelope.headers).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let parked = sqlx::query(
        "INSERT INTO parked (consumer, object_key, message_id, routing_key, type_name, headers, payload, \
         published_at, parked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(key)
    .bind(envelope.message_id.to_string())
    .bind(&envelope.routing_key)
    .bind(&envelope.type_name)
    .bind(headers)
    .bind(envelope.payload.to_vec())
    .bind(to_micros(envelope.timestamp))
    .bind(now_micros())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    if parked {
        tracing::info!(
            consumer,
            key,
            event = envelope.event(),
            message_id = %envelope.message_id,
            "event parked until its object exists"
        );
    }
    Ok(parked)
}

/// The events parked for `consumer` about `key`, in the order they were parked, removed in the
/// caller's transaction: call it in the transaction that creates the object, and apply them there.
pub async fn take(tx: &mut Tx, consumer: &str, key: &str) -> Result<Vec<Envelope>, sqlx::Error> {
    lock(tx, consumer, key).await?;
    let rows = sqlx::query(
        "SELECT id, message_id, routing_key, type_name, headers, payload, published_at FROM parked \
         WHERE consumer = $1 AND object_key = $2 ORDER BY id",
    )
    .bind(consumer)
    .bind(key)
    .fetch_all(&mut **tx)
    .await?;
    let Some(last) = rows.last() else {
        return Ok(Vec::new());
    };
    let last: i64 = last.try_get("id")?;
    let envelopes = rows.iter().map(envelope).collect::<Result<Vec<_>, _>>()?;
    // The lock keeps new rows for this key out until the transaction ends.
    sqlx::query("DELETE FROM parked WHERE consumer = $1 AND object_key = $2 AND id <= $3")
        .bind(consumer)
        .bind(key)
        .bind(last)
        .execute(&mut **tx)
        .await?;
    tracing::info!(consumer, key, events = envelopes.len(), "parked events taken back: their object exists");
    Ok(envelopes)
}

fn envelope(row: &sqlx::any::AnyRow) -> Result<Envelope, sqlx::Error> {
    let decode = |column: &str, error: Box<dyn std::error::Error + Send + Sync>| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: error,
    };
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&row.try_get::<String, _>("headers")?).map_err(|e| decode("headers", e.into()))?;
    Ok(Envelope {
        message_id: Uuid::parse_str(&row.try_get::<String, _>("message_id")?)
            .map_err(|e| decode("message_id", e.into()))?,
        routing_key: row.try_get("routing_key")?,
        type_name: row.try_get("type_name")?,
        timestamp: from_micros(row.try_get("published_at")?),
        headers,
        payload: Bytes::from(row.try_get::<Vec<u8>, _>("payload")?),
    })
}

/// The events one consumer keeps about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub consumer: String,
    pub key: String,
    pub events: i64,
    /// When the oldest of them was parked.
    pub since: DateTime<Utc>,
}

/// Every key with parked events, the longest waiting first.
pub async fn waiting(db: &Db) -> Result<Vec<Waiting>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT consumer, object_key, COUNT(*) AS events, MIN(parked_at) AS since FROM parked \
         GROUP BY consumer, object_key ORDER BY since, consumer, object_key",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Waiting {
                consumer: row.try_get("consumer")?,
                key: row.try_get("object_key")?,
                events: row.try_get("events")?,
                since: from_micros(row.try_get("since")?),
            })
        })
        .collect()
}

/// Sets `pos_parked_events` and `pos_parked_oldest_seconds` for each of `consumers` (zero when
/// nothing waits) and warns about every key waiting longer than `stale_after`: an object that
/// should have appeared by then probably never will. For a service's periodic housekeeping.
pub async fn observe(db: &Db, consumers: &[&str], stale_after: Duration) -> Result<Vec<Waiting>, sqlx::Error> {
    let waiting = waiting(db).await?;
    let now = Utc::now();
    for consumer in consumers {
        let mine = waiting.iter().filter(|w| w.consumer == *consumer);
        let events: i64 = mine.clone().map(|w| w.events).sum();
        let oldest = mine.map(|w| (now - w.since).num_milliseconds().max(0) as f64 / 1000.0).fold(0.0, f64::max);
        let labels = [("schema", db.schema().to_owned()), ("consumer", (*consumer).to_owned())];
        metrics::gauge!("pos_parked_events", &labels).set(events as f64);
        metrics::gauge!("pos_parked_oldest_seconds", &labels).set(oldest);
    }
    let stale_after = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    for stale in waiting.iter().filter(|w| now - w.since > stale_after) {
        tracing::warn!(
            consumer = %stale.consumer,
            key = %stale.key,
            events = stale.events,
            since = %stale.since,
            "parked events still wait for their object"
        );
    }
    Ok(waiting)
}

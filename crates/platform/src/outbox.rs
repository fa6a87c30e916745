//! The transactional outbox: a state change and the events it causes are written in one
//! transaction ([`enqueue`]); the [`Relay`] publishes them with publisher confirms and only then
//! marks them sent. Broker down: the outbox grows, nothing is lost, it drains on return.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Bus, Envelope};
use crate::db::{Db, Tx, from_micros, now_micros, to_micros};

/// Writes `envelope` into the outbox of the transaction's database.
pub async fn enqueue(tx: &mut Tx, envelope: &Envelope) -> Result<(), sqlx::Error> {
    let headers = serde_json::to_string(&envelope.headers).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(
        "INSERT INTO outbox (message_id, routing_key, type_name, headers, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(envelope.message_id.to_string())
    .bind(&envelope.routing_key)
    .bind(&envelope.type_name)
    .bind(headers)
    .bind(envelope.payload.to_vec())
    .bind(to_micros(envelope.timestamp))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Publishes committed outbox rows. Several relays may run on one PostgreSQL schema (several
/// instances of a service): each claims its batch with `FOR UPDATE SKIP LOCKED`.
pub struct Relay {
    db: Db,
    bus: Arc<dyn Bus>,
    batch_size: i64,
    /// Fallback poll for rows committed by other instances (a local commit wakes it at once).
    poll_interval: Duration,
    /// Sent rows are kept this long for inspection, then deleted.
    retention: Duration,
}

impl Relay {
    pub fn new(db: Db, bus: Arc<dyn Bus>) -> Relay {
        Relay {
            db,
            bus,
            batch_size: 256,
            poll_interval: Duration::from_millis(250),
            retention: Duration::from_secs(24 * 3600),
        }
    }

    pub fn with_poll_interval(mut self, interval: Duration) -> Relay {
        self.poll_interval = interval;
        self
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        // Housekeeping (purge, backlog gauge) runs at the first idle moment, then every 10 s.
        let mut last_purge: Option<std::time::Instant> = None;
        loop {
            // Drain whatever is committed; finish the batch in hand even when shutting down.
            match self.publish_batch().await {
                Ok(0) => backoff = Duration::from_millis(100),
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    if !shutdown.is_cancelled() {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(schema = self.db.schema(), %error, "outbox relay failed, retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if last_purge.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                last_purge = Some(std::time::Instant::now());
                if let Err(error) = self.purge_sent().await {
                    tracing::warn!(%error, "outbox purge failed");
                }
                self.report_backlog().await;
            }
            tokio::select! {
                () = self.db.outbox_signal().notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    /// Claims, publishes and marks one batch; returns how many were sent.
    #[tracing::instrument(skip(self), fields(schema = self.db.schema()))]
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, message_id, routing_key, type_name, headers, payload, created_at FROM outbox \
             WHERE sent_at IS NULL ORDER BY id LIMIT $1{}",
            self.db.dialect().skip_locked()
        )))
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut envelopes = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.try_get::<i64, _>("id")?);
            let headers: BTreeMap<String, String> = serde_json::from_str(&row.try_get::<String, _>("headers")?)?;
            envelopes.push(Envelope {
                message_id: Uuid::parse_str(&row.try_get::<String, _>("message_id")?)?,
                routing_key: row.try_get("routing_key")?,
                type_name: row.try_get("type_name")?,
                timestamp: from_micros(row.try_get("created_at")?),
                headers,
                payload: Bytes::from(row.try_get::<Vec<u8>, _>("payload")?),
            });
        }
        let results = self.bus.publish_batch(&envelopes).await;
        let now = now_micros();
        let mut sent = Vec::new();
        let mut first_error = None;
        for ((id, envelope), result) in ids.iter().zip(&envelopes).zip(results) {
            match result {
                Ok(()) => sent.push(id.to_string()),
                Err(error) => {
                    // Later rows may be confirmed already; they are marked, this one stays.
                    sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2")
                        .bind(error.to_string())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if first_error.is_none() {
                        tracing::warn!(message_id = %envelope.message_id, routing_key = %envelope.routing_key, %error, "outbox publish failed");
                        first_error = Some(error);
                    }
                }
            }
        }
        if !sent.is_empty() {
            // Ids come from our own table, so inlining them is safe; `Any` has no array binds.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE outbox SET sent_at = $1 WHERE id IN ({})",
                sent.join(",")
            )))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        metrics::counter!("pos_outbox_published_total", "schema" => self.db.schema().to_owned())
            .increment(sent.len() as u64);
        match first_error {
            Some(error) if sent.is_empty() => Err(error.into()),
            _ => Ok(sent.len()),
        }
    }

    async fn purge_sent(&self) -> Result<(), sqlx::Error> {
        let cutoff = now_micros() - self.retention.as_micros() as i64;
        sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1")
            .bind(cutoff)
            .execute(self.db.pool())
            .await?;
        sqlx::query("DELETE FROM inbox WHERE processed_at < $1")
            .bind(cutoff - 6 * self.retention.as_micros() as i64)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn report_backlog(&self) {
        if let Ok(backlog) = backlog(&self.db).await {
            metrics::gauge!("pos_outbox_backlog", "schema" => self.db.schema().to_owned()).set(backlog as f64);
        }
    }
}

/// Rows not yet published.
pub async fn backlog(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetch_one(db.pool()).await
}

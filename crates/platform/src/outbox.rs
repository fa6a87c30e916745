//! The transactional outbox: a state change and the events it causes are written in one
//! transaction ([`enqueue`]); the [`Relay`] publishes them with publisher confirms and only then
//! marks them sent. Broker down: the outbox grows, nothing is lost, it drains on return.
//!
//! Each row keeps the trace context of the transaction that wrote it (its `headers`); the
//! relay publishes it under a PRODUCER span continuing that context, and the message carries
//! the publish span's context, so consumers elsewhere continue the same trace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::bus::{Bus, BusError, Envelope};
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
    /// The exchange the bus publishes to: the destination named by publish spans.
    exchange: String,
}

impl Relay {
    pub fn new(db: Db, bus: Arc<dyn Bus>) -> Relay {
        Relay {
            db,
            bus,
            batch_size: 256,
            poll_interval: Duration::from_millis(250),
            retention: Duration::from_secs(24 * 3600),
            exchange: crate::config::PlatformConfig::default().exchange,
        }
    }

    /// Names the bus's exchange in publish spans (default: the default exchange, `pos.events`).
    pub fn with_exchange(mut self, exchange: impl Into<String>) -> Relay {
        self.exchange = exchange.into();
        self
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

    /// Claims, publishes and marks one batch; returns how many were sent. Not a span of its own:
    /// it runs every poll, and each message it publishes has its span in the message's trace.
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
        let mut envelopes: Vec<Envelope> = Vec::with_capacity(rows.len());
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
        let spans: Vec<tracing::Span> =
            envelopes.iter_mut().map(|envelope| publish_span(&self.exchange, envelope)).collect();
        let results = self.bus.publish_batch(&envelopes).await;
        let now = now_micros();
        let mut sent = Vec::new();
        let mut first_error = None;
        for (((id, envelope), result), span) in ids.iter().zip(&envelopes).zip(results).zip(&spans) {
            match result {
                Ok(()) => sent.push(id.to_string()),
                Err(error) => {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", error_type(&error));
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

/// The PRODUCER span of publishing one outbox row, per the OpenTelemetry messaging conventions:
/// a child of the context stored with the row (the transaction that wrote the event; a new trace
/// when it had none), and from now on the context the message carries. It ends when the span is
/// dropped, after the broker's confirm.
fn publish_span(exchange: &str, envelope: &mut Envelope) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "publish",
        otel.name = format!("{exchange} publish"),
        otel.kind = "producer",
        messaging.system = crate::telemetry::MESSAGING_SYSTEM,
        messaging.operation.type = "publish",
        messaging.operation.name = "publish",
        messaging.destination.name = exchange,
        messaging.message.id = %envelope.message_id,
        messaging.rabbitmq.destination.routing_key = %envelope.routing_key,
        appeal_id = envelope.appeal_id().unwrap_or_default(),
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    crate::telemetry::set_parent_from(&span, &envelope.headers);
    crate::telemetry::inject(&span.context(), &mut envelope.headers);
    span
}

/// `error.type` of a failed publish: which of the bus's failures it was.
fn error_type(error: &BusError) -> &'static str {
    match error {
        BusError::Unavailable(_) => "unavailable",
        BusError::Nacked(_) => "nacked",
        BusError::Unroutable(_) => "unroutable",
        BusError::Closed => "closed",
        BusError::Other(_) => "other",
    }
}

/// Rows not yet published.
pub async fn backlog(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetch_one(db.pool()).await
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use opentelemetry::trace::TraceContextExt;
    use sqlx::migrate::Migrator;

    use super::*;
    use crate::bus::QueueSpec;
    use crate::bus::memory::MemoryBus;
    use crate::db::Migrations;
    use crate::telemetry;

    static NONE: Migrator = Migrator::DEFAULT;
    static PLATFORM_ONLY: Migrations = Migrations { postgres: &NONE, sqlite: &NONE };

    const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
    const WRITER_SPAN_ID: &str = "b7ad6b7169203331";

    fn event(traceparent: Option<&str>) -> Envelope {
        let mut envelope = Envelope::new(&pos_proto::v1::events::AppealReceived::default(), "41");
        envelope.headers.remove(crate::bus::HEADER_TRACEPARENT);
        if let Some(traceparent) = traceparent {
            envelope.headers.insert(crate::bus::HEADER_TRACEPARENT.to_owned(), traceparent.to_owned());
        }
        envelope
    }

    /// Enqueues `envelope`, relays it through an in-process bus and returns what a consumer gets.
    async fn relayed(envelope: &Envelope) -> Envelope {
        let (db, _dir) = crate::testing::sqlite_db("relay", &PLATFORM_ONLY).await;
        let bus = Arc::new(MemoryBus::new());
        let mut deliveries =
            bus.consume(&QueueSpec::new("test.appeal-received", &["appeal.received.*"])).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        enqueue(&mut tx, envelope).await.unwrap();
        tx.commit().await.unwrap();
        // The bus lives on beyond the relay: a dropped in-process bus ends its streams.
        assert_eq!(Relay::new(db.clone(), bus.clone()).publish_batch().await.unwrap(), 1);
        let delivery = deliveries.next().await.expect("delivered");
        db.close().await;
        delivery.envelope
    }

    #[tokio::test]
    async fn the_message_carries_the_publish_span_in_the_writers_trace() {
        let written = event(Some(&format!("00-{TRACE_ID}-{WRITER_SPAN_ID}-01")));
        let delivered = relayed(&written).await;
        let context = telemetry::extract(&delivered.headers);
        let span = context.span();
        let carried = span.span_context();
        assert_eq!(carried.trace_id().to_string(), TRACE_ID, "the writer's trace continues");
        assert_ne!(carried.span_id().to_string(), WRITER_SPAN_ID, "the publish span is the consumers' parent");
        assert_eq!(telemetry::event_trace_id(&delivered.headers), TRACE_ID);
        // The stored row keeps the writer's context: a publish that fails is retried under it.
        assert_eq!(delivered.message_id, written.message_id);
    }

    #[tokio::test]
    async fn an_event_written_outside_any_trace_is_published_in_a_trace_of_its_own() {
        let delivered = relayed(&event(None)).await;
        let trace_id = telemetry::event_trace_id(&delivered.headers);
        assert_eq!(trace_id.len(), 32, "consumers continue the publish span's trace: {:?}", delivered.headers);
    }
}

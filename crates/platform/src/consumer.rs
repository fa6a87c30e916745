//! Consumers with an inbox: a handler's effect and the `(consumer, message_id)` inbox row are
//! committed in one transaction, and the delivery is acked only after the commit. A redelivered
//! event finds its inbox row and changes nothing the second time.
//!
//! Each delivery is handled under a CONSUMER span (`<exchange> process`, per the OpenTelemetry
//! messaging conventions) continuing the trace context the message carries, so the events the
//! handler writes continue the same trace.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{Bus, Delivery, Disposition, Envelope, EventSet, QueueSpec};
use crate::db::{Db, Tx, now_micros};

/// Why a handler did not finish; the consumer turns it into a retry or a dead letter.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Might work later (a database hiccup, a peer not ready): retry with backoff, then dead-letter.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Will never work (malformed payload, impossible content): dead-letter now.
    #[error("poison: {0:#}")]
    Poison(anyhow::Error),
}

impl HandleError {
    pub fn poison(error: impl Into<anyhow::Error>) -> HandleError {
        HandleError::Poison(error.into())
    }
}

impl From<sqlx::Error> for HandleError {
    fn from(error: sqlx::Error) -> HandleError {
        HandleError::Transient(error.into())
    }
}

impl From<crate::bus::DecodeError> for HandleError {
    fn from(error: crate::bus::DecodeError) -> HandleError {
        HandleError::Poison(error.into())
    }
}

/// A service's reaction to one kind of event (or to an [`EventSet`] of several), inside the
/// transaction that records it in the inbox. The consumer decodes the payload; one that does not
/// decode as `Event` is poison and never reaches the handler.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    type Event: EventSet;

    async fn handle(&self, tx: &mut Tx, event: Self::Event, envelope: &Envelope) -> Result<(), HandleError>;
}

/// Decodes the envelope and hands the event to `handler`: what a consumer does with each
/// delivery inside its transaction (tests call it to deliver as the bus would).
pub async fn deliver<H: Handler>(handler: &H, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandleError> {
    let event = H::Event::decode(envelope)?;
    handler.handle(tx, event, envelope).await
}

/// A handler with its event type erased, so that consumers of different events run alike.
#[async_trait]
trait Dispatch: Send + Sync + 'static {
    async fn dispatch(&self, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandleError>;
}

#[async_trait]
impl<H: Handler> Dispatch for H {
    async fn dispatch(&self, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandleError> {
        deliver(self, tx, envelope).await
    }
}

/// A queue and the handler for what arrives on it.
pub struct Consumer {
    pub spec: QueueSpec,
    handler: Arc<dyn Dispatch>,
    /// Deliveries handled at once.
    pub concurrency: usize,
    /// The exchange the queue is bound to: the destination named by process spans.
    pub exchange: String,
}

impl Consumer {
    /// Consumer `name` (also its queue and inbox name) of the handler's events about `regions`
    /// (`*` for all; a deployment's `POS_REGIONS`).
    pub fn new<H: Handler>(name: &str, regions: &[String], handler: H) -> Consumer {
        Consumer::with_spec(QueueSpec::for_events::<H::Event>(name, regions), handler)
    }

    /// A consumer on a queue specified by hand (tests tune delivery limits and delays).
    pub fn with_spec<H: Handler>(spec: QueueSpec, handler: H) -> Consumer {
        let concurrency = usize::from(spec.prefetch).clamp(1, 16);
        Consumer { spec, handler: Arc::new(handler), concurrency, exchange: default_exchange() }
    }
}

/// The exchange named in spans when the host does not say (`pos up`'s default).
fn default_exchange() -> String {
    crate::config::PlatformConfig::default().exchange
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Duplicate,
    Retried,
    DeadLettered,
}

impl Outcome {
    /// `error.type` of the process span: what went wrong, if anything.
    fn error_type(self) -> Option<&'static str> {
        match self {
            Outcome::Done | Outcome::Duplicate => None,
            Outcome::Retried => Some("retried"),
            Outcome::DeadLettered => Some("dead_lettered"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Duplicate => "duplicate",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Consumes until `shutdown`; deliveries in hand are finished before returning.
pub async fn run(db: Db, bus: Arc<dyn Bus>, consumer: Consumer, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Consumer { spec, handler, concurrency, exchange } = consumer;
    let spec = Arc::new(spec);
    let exchange: Arc<str> = exchange.into();
    let deliveries = bus.consume(&spec).await?;
    tracing::info!(queue = %spec.name, "consumer started");
    // Stop taking deliveries on shutdown; the ones already taken run to completion.
    let deliveries = deliveries.take_until(shutdown.cancelled_owned());
    deliveries
        .for_each_concurrent(concurrency, |delivery| {
            let (db, handler, spec, exchange) = (db.clone(), handler.clone(), spec.clone(), exchange.clone());
            async move {
                let queue = spec.name.clone();
                if let Err(error) = settle(&db, handler.as_ref(), &spec, &exchange, delivery).await {
                    tracing::warn!(%queue, %error, "delivery left unsettled, it will come back");
                }
            }
        })
        .await;
    tracing::info!(queue = %spec.name, "consumer stopped");
    Ok(())
}

/// Handles one delivery with `handler` and settles it: what a running consumer does with each
/// delivery (tests call it to see the outcome).
pub async fn process<H: Handler>(
    db: &Db,
    handler: &H,
    spec: &QueueSpec,
    delivery: Delivery,
) -> anyhow::Result<Outcome> {
    settle(db, handler, spec, &default_exchange(), delivery).await
}

/// The CONSUMER span of handling one delivery, per the OpenTelemetry messaging conventions: a
/// child of the context the message carries (a new trace when it carries none).
fn process_span(exchange: &str, spec: &QueueSpec, envelope: &Envelope, attempt: u32) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "process",
        otel.name = format!("{exchange} process"),
        otel.kind = "consumer",
        messaging.system = crate::telemetry::MESSAGING_SYSTEM,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = exchange,
        messaging.consumer.group.name = %spec.name,
        messaging.message.id = %envelope.message_id,
        messaging.rabbitmq.destination.routing_key = %envelope.routing_key,
        event = %envelope.event(),
        appeal_id = envelope.appeal_id().unwrap_or_default(),
        attempt,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    crate::telemetry::set_parent_from(&span, &envelope.headers);
    span
}

/// Handles one delivery and settles it.
async fn settle(
    db: &Db,
    handler: &dyn Dispatch,
    spec: &QueueSpec,
    exchange: &str,
    delivery: Delivery,
) -> anyhow::Result<Outcome> {
    let envelope = delivery.envelope.clone();
    let attempt = delivery.attempt();
    let span = process_span(exchange, spec, &envelope, attempt);
    let started = Instant::now();
    let outcome = async {
        let (outcome, disposition) = match handle_once(db, handler, &spec.name, &envelope).await {
            Ok(true) => (Outcome::Done, Disposition::Ack),
            Ok(false) => (Outcome::Duplicate, Disposition::Ack),
            Err(HandleError::Poison(error)) => {
                tracing::error!(error = %format!("{error:#}"), "poison event, dead-lettering");
                (Outcome::DeadLettered, Disposition::DeadLetter { reason: format!("{error:#}") })
            }
            Err(HandleError::Transient(error)) if attempt >= spec.delivery_limit => {
                tracing::error!(attempt, error = %format!("{error:#}"), "delivery limit reached, dead-lettering");
                (
                    Outcome::DeadLettered,
                    Disposition::DeadLetter { reason: format!("after {attempt} attempts: {error:#}") },
                )
            }
            Err(HandleError::Transient(error)) => {
                let delay = spec.retry_delay(envelope.retry_count());
                tracing::warn!(attempt, ?delay, error = %format!("{error:#}"), "handler failed, retrying later");
                (Outcome::Retried, Disposition::Retry { delay, reason: format!("{error:#}") })
            }
        };
        if let Some(error_type) = outcome.error_type() {
            let span = tracing::Span::current();
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error_type);
        }
        delivery.settle(disposition).await?;
        anyhow::Ok(outcome)
    }
    .instrument(span)
    .await?;
    if outcome == Outcome::Done {
        db.wake_outbox();
    }
    metrics::counter!("pos_consumer_deliveries_total", "queue" => spec.name.clone(), "outcome" => outcome.label())
        .increment(1);
    metrics::histogram!("pos_consumer_handle_seconds", "queue" => spec.name.clone())
        .record(started.elapsed().as_secs_f64());
    Ok(outcome)
}

/// Runs the handler in a transaction with the inbox row; `Ok(false)` for a duplicate.
async fn handle_once(
    db: &Db,
    handler: &dyn Dispatch,
    consumer: &str,
    envelope: &Envelope,
) -> Result<bool, HandleError> {
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, message_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(envelope.message_id.to_string())
    .bind(now_micros())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    handler.dispatch(&mut tx, envelope).await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sqlx::migrate::Migrator;

    use super::*;
    use crate::bus::{BusError, Settle};
    use crate::db::Migrations;
    use pos_proto::v1::events::AppealReceived;

    static NONE: Migrator = Migrator::DEFAULT;
    static PLATFORM_ONLY: Migrations = Migrations { postgres: &NONE, sqlite: &NONE };
    const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

    /// Remembers the trace the handler ran in, and what the events it writes would carry.
    #[derive(Default)]
    struct Witness {
        seen: Mutex<Option<(String, String)>>,
    }

    #[async_trait]
    impl Handler for Arc<Witness> {
        type Event = AppealReceived;

        async fn handle(&self, _: &mut Tx, _: AppealReceived, envelope: &Envelope) -> Result<(), HandleError> {
            let written = Envelope::new(&AppealReceived::default(), "41");
            *self.seen.lock().unwrap() = Some((
                crate::telemetry::event_trace_id(&envelope.headers),
                crate::telemetry::event_trace_id(&written.headers),
            ));
            Ok(())
        }
    }

    struct Settled;

    #[async_trait]
    impl Settle for Settled {
        async fn settle(self: Box<Self>, _: &Envelope, _: Disposition) -> Result<(), BusError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_handler_runs_in_the_messages_trace_and_its_events_continue_it() {
        let (db, _dir) = crate::testing::sqlite_db("consumer", &PLATFORM_ONLY).await;
        let mut envelope = Envelope::new(&AppealReceived::default(), "41");
        envelope
            .headers
            .insert(crate::bus::HEADER_TRACEPARENT.to_owned(), format!("00-{TRACE_ID}-b7ad6b7169203331-01"));
        let witness = Arc::new(Witness::default());
        let spec = QueueSpec::new("test.appeal-received", &["appeal.received.*"]);
        let outcome = process(&db, &witness, &spec, Delivery::new(envelope, 0, Box::new(Settled))).await.unwrap();
        assert_eq!(outcome, Outcome::Done);
        let seen = witness.seen.lock().unwrap().clone();
        assert_eq!(seen, Some((TRACE_ID.to_owned(), TRACE_ID.to_owned())));
        db.close().await;
    }
}

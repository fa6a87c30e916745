//! Consumers with an inbox: a handler's effect and the `(consumer, message_id)` inbox row are
//! committed in one transaction, and the delivery is acked only after the commit. A redelivered
//! event finds its inbox row and changes nothing the second time.

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
        Consumer { spec, handler: Arc::new(handler), concurrency }
    }
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
    let Consumer { spec, handler, concurrency } = consumer;
    let spec = Arc::new(spec);
    let deliveries = bus.consume(&spec).await?;
    tracing::info!(queue = %spec.name, "consumer started");
    // Stop taking deliveries on shutdown; the ones already taken run to completion.
    let deliveries = deliveries.take_until(shutdown.cancelled_owned());
    deliveries
        .for_each_concurrent(concurrency, |delivery| {
            let (db, handler, spec) = (db.clone(), handler.clone(), spec.clone());
            async move {
                let queue = spec.name.clone();
                if let Err(error) = settle(&db, handler.as_ref(), &spec, delivery).await {
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
    settle(db, handler, spec, delivery).await
}

/// Handles one delivery and settles it.
async fn settle(db: &Db, handler: &dyn Dispatch, spec: &QueueSpec, delivery: Delivery) -> anyhow::Result<Outcome> {
    let envelope = delivery.envelope.clone();
    let span = tracing::info_span!(
        "consume",
        queue = %spec.name,
        event = %envelope.event(),
        message_id = %envelope.message_id,
        appeal_id = envelope.appeal_id().unwrap_or_default(),
    );
    crate::telemetry::set_parent_from(&span, &envelope.headers);
    let started = Instant::now();
    let attempt = delivery.attempt();
    let (outcome, disposition) = async {
        match handle_once(db, handler, &spec.name, &envelope).await {
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
        }
    }
    .instrument(span)
    .await;
    delivery.settle(disposition).await?;
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

//! Consumers with an inbox: a handler's effect and the `(consumer, message_id)` inbox row are
//! committed in one transaction, and the delivery is acked only after the commit. A redelivered
//! event finds its inbox row and changes nothing the second time.
//!
//! Deliveries that are waiting together are handled together: one transaction for the batch
//! (each delivery's inbox row and effects, in arrival order), then one ack per delivery. A batch
//! is whatever is ready when the previous one is done, never a wait to fill one, so at low load
//! a batch is a single delivery and nothing is slower; under load the commits, and with SQLite
//! the hand-offs to its worker thread, are shared by many deliveries. When any delivery of a
//! batch fails, or the commit does, the batch is rolled back and each of its deliveries is
//! handled again alone, so retries and dead letters are decided per delivery exactly as for a
//! single one.
//!
//! Each delivery is handled under a CONSUMER span (`<exchange> process`, per the OpenTelemetry
//! messaging conventions) continuing the trace context the message carries, so the events the
//! handler writes continue the same trace.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
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
///
/// The transaction may hold other deliveries of the same queue, handled before this one; if any
/// delivery of the batch fails, all of them are rolled back and handled again one by one. So
/// whatever a handler does outside the transaction (a metric, a wake-up, a cached read) may
/// happen more than once for one committed effect, as it may already for a retried delivery.
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
    /// Batches handled at once, each in its own transaction: 1 unless the consumer says
    /// otherwise (see [`BATCHES_IN_FLIGHT`]).
    pub concurrency: usize,
    /// Deliveries handled in one transaction at most; 1 gives every delivery a transaction of
    /// its own.
    pub batch_limit: usize,
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
        // A batch never holds more than the prefetch lets through anyway.
        let batch_limit = usize::from(spec.prefetch).clamp(1, 64);
        let concurrency = BATCHES_IN_FLIGHT;
        Consumer { spec, handler: Arc::new(handler), concurrency, batch_limit, exchange: default_exchange() }
    }
}

/// Batches a consumer handles at once unless it says otherwise: one, on either database.
///
/// SQLite has one writer per database: a second batch would only wait for the first one's write
/// lock (busy_timeout polls in sleeps of milliseconds), while what arrives meanwhile joins the
/// next batch anyway. On PostgreSQL concurrent batches hold the locks their handlers take across
/// several deliveries, and handlers take them in the order of their data (an appeal's row, then
/// notify's journal lock or a parking lock), so two batches lock in opposite orders and
/// deadlock: measured with `pos bench` at 100 and 200 appeals/s, two or four batches in flight
/// deadlocked 10 to 30 times in a 10 s step (each costing PostgreSQL's deadlock_timeout, 1 s,
/// and a batch handled again one by one), one never did. One at a time also keeps the queue's
/// order: an event's predecessor in the queue is committed, or earlier in the same transaction,
/// so notify seldom has to retry an event that overtook its appeal. A consumer whose handlers
/// cannot lock each other out may raise its own `concurrency`: on PostgreSQL that overlaps the
/// round trips of its batches.
pub const BATCHES_IN_FLIGHT: usize = 1;

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
    let Consumer { spec, handler, concurrency, batch_limit, exchange } = consumer;
    let spec = Arc::new(spec);
    let exchange: Arc<str> = exchange.into();
    let (batch_limit, in_flight) = (batch_limit.max(1), concurrency.max(1));
    let deliveries = bus.consume(&spec).await?;
    tracing::info!(queue = %spec.name, batch_limit, in_flight, "consumer started");
    // Stop taking deliveries on shutdown; the ones already taken run to completion.
    let deliveries = read_ahead(deliveries.take_until(shutdown.cancelled_owned()).boxed(), batch_limit);
    deliveries
        .ready_chunks(batch_limit)
        .for_each_concurrent(in_flight, |batch| {
            let (db, handler, spec, exchange) = (db.clone(), handler.clone(), spec.clone(), exchange.clone());
            async move {
                for settled in handle_batch(&db, handler.as_ref(), &spec, &exchange, batch).await {
                    if let Err(error) = settled {
                        tracing::warn!(queue = %spec.name, %error, "delivery left unsettled, it will come back");
                    }
                }
            }
        })
        .await;
    tracing::info!(queue = %spec.name, "consumer stopped");
    Ok(())
}

/// Takes deliveries off the bus ahead of the batches, up to `capacity` waiting, so that what
/// arrives while a batch runs is ready for the next one. Without it a batch would hold only what
/// the adapter happens to have buffered (the AMQP adapter hands over one at a time, the journaled
/// in-process bus writes to its journal before each delivery). The prefetch still bounds the
/// deliveries taken and not yet settled. The stream ends when `deliveries` does; what was taken
/// before is still handed over.
fn read_ahead(mut deliveries: BoxStream<'static, Delivery>, capacity: usize) -> impl Stream<Item = Delivery> {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    tokio::spawn(async move {
        loop {
            let delivery = tokio::select! {
                delivery = deliveries.next() => delivery,
                // The consumer is gone: a delivery taken now would only come back.
                () = sender.closed() => return,
            };
            let Some(delivery) = delivery else { return };
            if sender.send(delivery).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
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

/// Handles `deliveries` as a running consumer handles a batch that was ready at once, and settles
/// each: the outcome of each delivery, in order (tests call it to see them).
pub async fn process_batch<H: Handler>(
    db: &Db,
    handler: &H,
    spec: &QueueSpec,
    deliveries: Vec<Delivery>,
) -> Vec<anyhow::Result<Outcome>> {
    handle_batch(db, handler, spec, &default_exchange(), deliveries).await
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
    let span = process_span(exchange, spec, &delivery.envelope, delivery.attempt());
    settle_alone(db, handler, spec, delivery, span, Instant::now()).await
}

/// Handles one delivery in a transaction of its own and settles it, under its process `span`;
/// `started` is when the consumer took it on.
async fn settle_alone(
    db: &Db,
    handler: &dyn Dispatch,
    spec: &QueueSpec,
    delivery: Delivery,
    span: tracing::Span,
    started: Instant,
) -> anyhow::Result<Outcome> {
    let envelope = delivery.envelope.clone();
    let attempt = delivery.attempt();
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
    record(spec, outcome, started);
    Ok(outcome)
}

/// Counts a settled delivery and the time from taking it on to settling it.
fn record(spec: &QueueSpec, outcome: Outcome, started: Instant) {
    metrics::counter!("pos_consumer_deliveries_total", "queue" => spec.name.clone(), "outcome" => outcome.label())
        .increment(1);
    metrics::histogram!("pos_consumer_handle_seconds", "queue" => spec.name.clone())
        .record(started.elapsed().as_secs_f64());
}

/// Handles the deliveries of a batch in one transaction and acks each after the commit; if any
/// of them fails (or the commit does), handles each alone instead.
async fn handle_batch(
    db: &Db,
    handler: &dyn Dispatch,
    spec: &QueueSpec,
    exchange: &str,
    batch: Vec<Delivery>,
) -> Vec<anyhow::Result<Outcome>> {
    let started = Instant::now();
    let batch: Vec<(Delivery, tracing::Span)> = batch
        .into_iter()
        .map(|delivery| {
            let span = process_span(exchange, spec, &delivery.envelope, delivery.attempt());
            (delivery, span)
        })
        .collect();
    if batch.len() == 1 {
        // Alone anyway: the single path is the same thing without the bookkeeping.
        let (delivery, span) = batch.into_iter().next().expect("one delivery");
        return vec![settle_alone(db, handler, spec, delivery, span, started).await];
    }
    let mut settled = Vec::with_capacity(batch.len());
    match handle_together(db, handler, &spec.name, &batch).await {
        Ok(fresh) => {
            if fresh.contains(&true) {
                db.wake_outbox();
            }
            // In order, each under its own span; one that fails to settle comes back, and its
            // inbox row (committed) makes that a duplicate.
            for ((delivery, span), fresh) in batch.into_iter().zip(fresh) {
                let outcome = if fresh { Outcome::Done } else { Outcome::Duplicate };
                let acked = delivery.settle(Disposition::Ack).instrument(span).await;
                settled.push(match acked {
                    Ok(()) => {
                        record(spec, outcome, started);
                        Ok(outcome)
                    }
                    Err(error) => Err(error.into()),
                });
            }
        }
        Err(failed) => {
            // Rolled back. Each alone now decides its own retry or dead letter, and the others
            // commit without it; failures are rare, so doing the work twice costs little.
            tracing::debug!(
                queue = %spec.name,
                deliveries = batch.len(),
                failed,
                "a delivery of the batch failed, handling each alone"
            );
            for (delivery, span) in batch {
                settled.push(settle_alone(db, handler, spec, delivery, span, started).await);
            }
        }
    }
    settled
}

/// Runs the handler for every delivery of the batch in one transaction with their inbox rows,
/// each under its own span, and commits: for each, whether it was new (`false` for a duplicate).
/// On a failure, rolls back and returns which delivery failed (the batch's length for the
/// transaction itself).
async fn handle_together(
    db: &Db,
    handler: &dyn Dispatch,
    consumer: &str,
    batch: &[(Delivery, tracing::Span)],
) -> Result<Vec<bool>, usize> {
    let Ok(mut tx) = db.begin().await else { return Err(batch.len()) };
    let mut fresh = Vec::with_capacity(batch.len());
    for (index, (delivery, span)) in batch.iter().enumerate() {
        let envelope = &delivery.envelope;
        let handled = async {
            if !record_in_inbox(&mut tx, consumer, envelope).await? {
                return Ok(false);
            }
            handler.dispatch(&mut tx, envelope).await?;
            Ok::<bool, HandleError>(true)
        }
        .instrument(span.clone())
        .await;
        match handled {
            Ok(new) => fresh.push(new),
            Err(error) => {
                // Said again, with its outcome, when the delivery is handled alone.
                tracing::debug!(parent: span, %error, "failed in a batch, to be handled alone");
                let _ = tx.rollback().await;
                return Err(index);
            }
        }
    }
    match tx.commit().await {
        Ok(()) => Ok(fresh),
        Err(error) => {
            tracing::warn!(queue = consumer, %error, "a batch failed to commit, handling each alone");
            Err(batch.len())
        }
    }
}

/// Runs the handler in a transaction with the inbox row; `Ok(false)` for a duplicate.
async fn handle_once(
    db: &Db,
    handler: &dyn Dispatch,
    consumer: &str,
    envelope: &Envelope,
) -> Result<bool, HandleError> {
    let mut tx = db.begin().await?;
    if !record_in_inbox(&mut tx, consumer, envelope).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    handler.dispatch(&mut tx, envelope).await?;
    tx.commit().await?;
    Ok(true)
}

/// Inserts the delivery's inbox row; `false` when the consumer has it already (a duplicate,
/// handled before or earlier in the same batch).
async fn record_in_inbox(tx: &mut Tx, consumer: &str, envelope: &Envelope) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, message_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(envelope.message_id.to_string())
    .bind(now_micros())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted > 0)
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

    /// Remembers the traces the handler ran in, and what the events it writes would carry.
    #[derive(Default)]
    struct Witness {
        seen: Mutex<Vec<(String, String)>>,
    }

    #[async_trait]
    impl Handler for Arc<Witness> {
        type Event = AppealReceived;

        async fn handle(&self, _: &mut Tx, _: AppealReceived, envelope: &Envelope) -> Result<(), HandleError> {
            let written = Envelope::new(&AppealReceived::default(), "41");
            self.seen.lock().unwrap().push((
                crate::telemetry::event_trace_id(&envelope.headers),
                crate::telemetry::event_trace_id(&written.headers),
            ));
            Ok(())
        }
    }

    fn traced(trace_id: &str) -> Envelope {
        let mut envelope = Envelope::new(&AppealReceived::default(), "41");
        envelope
            .headers
            .insert(crate::bus::HEADER_TRACEPARENT.to_owned(), format!("00-{trace_id}-b7ad6b7169203331-01"));
        envelope
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
        let witness = Arc::new(Witness::default());
        let spec = QueueSpec::new("test.appeal-received", &["appeal.received.*"]);
        let delivery = Delivery::new(traced(TRACE_ID), 0, Box::new(Settled));
        let outcome = process(&db, &witness, &spec, delivery).await.unwrap();
        assert_eq!(outcome, Outcome::Done);
        let seen = witness.seen.lock().unwrap().clone();
        assert_eq!(seen, vec![(TRACE_ID.to_owned(), TRACE_ID.to_owned())]);
        db.close().await;
    }

    /// Handled in one transaction, each delivery still runs in its own message's trace.
    #[tokio::test]
    async fn each_delivery_of_a_batch_runs_in_its_own_trace() {
        let (db, _dir) = crate::testing::sqlite_db("consumer", &PLATFORM_ONLY).await;
        let witness = Arc::new(Witness::default());
        let spec = QueueSpec::new("test.appeal-received", &["appeal.received.*"]);
        let traces = [TRACE_ID, "4bf92f3577b34da6a3ce929d0e0e4736", "1f2e3d4c5b6a79880716253443526170"];
        let batch = traces.iter().map(|trace| Delivery::new(traced(trace), 0, Box::new(Settled))).collect();
        let outcomes = process_batch(&db, &witness, &spec, batch).await;
        assert!(outcomes.iter().all(|outcome| matches!(outcome, Ok(Outcome::Done))), "{outcomes:?}");
        let seen = witness.seen.lock().unwrap().clone();
        let expected: Vec<(String, String)> = traces.iter().map(|t| ((*t).to_owned(), (*t).to_owned())).collect();
        assert_eq!(seen, expected);
        db.close().await;
    }
}

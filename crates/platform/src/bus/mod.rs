//! The bus port: one durable topic exchange, routing keys `<event>.<region>`, a queue per
//! consumer with a dead-letter queue, a delivery limit and delayed retries.
//!
//! Two adapters share these semantics and one contract test suite: [`amqp::AmqpBus`]
//! (RabbitMQ, quorum queues) and [`memory::MemoryBus`] (in-process, for the embedded mode).

pub mod amqp;
pub mod memory;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
pub use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use pos_proto::BusEvent;
use uuid::Uuid;

/// Header carrying the W3C trace context.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// Header carrying the appeal the event is about, when there is one.
pub const HEADER_APPEAL_ID: &str = "x-appeal-id";
/// Header counting delayed retries already made by consumers of this queue.
pub const HEADER_RETRY_COUNT: &str = "x-retry-count";
/// Header saying why a message was dead-lettered.
pub const HEADER_DEATH_REASON: &str = "x-death-reason";

/// Headers a dead letter carries about its death: stripped when it is replayed, so that it comes
/// back as a first delivery with the whole delivery budget.
pub const DEATH_HEADERS: &[&str] = &[HEADER_DEATH_REASON, HEADER_RETRY_COUNT];

/// One event as it travels: AMQP properties and headers, and the protobuf payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub message_id: Uuid,
    /// `<event>.<region>`, e.g. `appeal.routed.41`.
    pub routing_key: String,
    /// The protobuf full name of the payload, e.g. `pos.v1.events.AppealRouted`.
    pub type_name: String,
    pub timestamp: DateTime<Utc>,
    pub headers: BTreeMap<String, String>,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("expected {expected}, got a {actual} payload")]
    WrongType { expected: String, actual: String },
    #[error("payload is not a valid {type_name}: {source}")]
    Malformed { type_name: String, source: prost::DecodeError },
}

impl Envelope {
    /// An envelope for `event` about `region`, carrying the current trace context.
    pub fn new<E: BusEvent>(event: &E, region: &str) -> Envelope {
        let mut headers = BTreeMap::new();
        crate::telemetry::inject_current(&mut headers);
        Envelope {
            message_id: Uuid::now_v7(),
            routing_key: format!("{}.{}", E::EVENT, region),
            type_name: E::full_name(),
            timestamp: Utc::now(),
            headers,
            payload: Bytes::from(event.encode_to_vec()),
        }
    }

    pub fn with_appeal(mut self, appeal_id: impl ToString) -> Envelope {
        self.headers.insert(HEADER_APPEAL_ID.to_owned(), appeal_id.to_string());
        self
    }

    pub fn decode<E: BusEvent>(&self) -> Result<E, DecodeError> {
        if !self.is::<E>() {
            return Err(DecodeError::WrongType { expected: E::full_name(), actual: self.type_name.clone() });
        }
        E::decode(self.payload.as_ref()).map_err(|source| DecodeError::Malformed { type_name: E::full_name(), source })
    }

    /// Whether the payload is an `E`.
    pub fn is<E: BusEvent>(&self) -> bool {
        E::is_type(&self.type_name)
    }

    /// The event name: the routing key without its region.
    pub fn event(&self) -> &str {
        self.routing_key.rsplit_once('.').map_or(&self.routing_key, |(event, _)| event)
    }

    pub fn region(&self) -> &str {
        self.routing_key.rsplit_once('.').map_or("", |(_, region)| region)
    }

    pub fn appeal_id(&self) -> Option<&str> {
        self.headers.get(HEADER_APPEAL_ID).map(String::as_str)
    }

    pub fn retry_count(&self) -> u32 {
        self.headers.get(HEADER_RETRY_COUNT).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Why it was dead-lettered, when it was.
    pub fn death_reason(&self) -> Option<&str> {
        self.headers.get(HEADER_DEATH_REASON).map(String::as_str)
    }

    /// The dead letter as its consumer gets it back on a replay: the same message (id, payload,
    /// trace context), without what its death added.
    pub fn revived(&self) -> Envelope {
        let mut envelope = self.clone();
        envelope.headers.retain(|key, _| !DEATH_HEADERS.contains(&key.as_str()));
        envelope
    }
}

/// A message in a dead-letter queue, as an operator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The event as dead-lettered, with its reason in [`HEADER_DEATH_REASON`].
    pub envelope: Envelope,
    /// When it was dead-lettered, when known.
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// Deliveries made before it was dead-lettered (0: unknown).
    pub attempts: u32,
}

/// Which dead letters of a queue an operator acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterSelection {
    /// Every copy of one message (a crash while dead-lettering may have left two).
    Message(Uuid),
    /// Every dead letter the queue holds when the call begins.
    All,
}

impl DeadLetterSelection {
    pub fn selects(&self, message_id: Uuid) -> bool {
        match self {
            DeadLetterSelection::Message(id) => *id == message_id,
            DeadLetterSelection::All => true,
        }
    }
}

/// What becomes of the dead letters taken out of their queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Back on the consumer's own queue (no other consumer's), [`Envelope::revived`]: one copy
    /// per message, however many copies the dead-letter queue held.
    Replay,
    /// Gone for good.
    Drop,
}

/// A consumer's queue: its name, what it binds, and how hard it tries.
#[derive(Clone, Debug)]
pub struct QueueSpec {
    /// Unique per consumer, e.g. `routing.appeal-received`. Also the inbox consumer name.
    pub name: String,
    /// Topic patterns, e.g. `appeal.received.*` or `appeal.routed.41`.
    pub bindings: Vec<String>,
    /// Deliveries (first one included) before a message goes to the dead-letter queue, whether
    /// the handler asked to retry or the consumer died holding it.
    pub delivery_limit: u32,
    /// Delay before retry n (the last one repeats).
    pub retry_delays: Vec<Duration>,
    /// Unacknowledged deliveries in flight for this consumer.
    pub prefetch: u16,
}

impl QueueSpec {
    /// The queue of consumer `name` for the events of `E` about `regions` (`*` for all).
    pub fn for_events<E: EventSet>(name: impl Into<String>, regions: &[String]) -> QueueSpec {
        let bindings: Vec<String> =
            E::EVENTS.iter().flat_map(|event| regions.iter().map(move |region| format!("{event}.{region}"))).collect();
        QueueSpec { bindings, ..QueueSpec::new(name, &[]) }
    }

    pub fn new(name: impl Into<String>, bindings: &[&str]) -> QueueSpec {
        QueueSpec {
            name: name.into(),
            bindings: bindings.iter().map(|b| (*b).to_owned()).collect(),
            delivery_limit: 5,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
            prefetch: 32,
        }
    }

    /// The delay before the retry that follows `retries_done` earlier retries.
    pub fn retry_delay(&self, retries_done: u32) -> Duration {
        let index = (retries_done as usize).min(self.retry_delays.len().saturating_sub(1));
        self.retry_delays.get(index).copied().unwrap_or(Duration::from_secs(1))
    }

    /// The name of the queue holding this consumer's dead letters.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.name)
    }
}

/// What a consumer takes off its queue: one bus event, or an enum of several (see
/// [`event_set!`](crate::event_set)). Decoding picks the variant by the AMQP `type`.
pub trait EventSet: Sized + Send + 'static {
    /// The event names (routing-key prefixes) the consumer's queue binds.
    const EVENTS: &'static [&'static str];

    fn decode(envelope: &Envelope) -> Result<Self, DecodeError>;
}

impl<E: BusEvent + Send + 'static> EventSet for E {
    const EVENTS: &'static [&'static str] = &[E::EVENT];

    fn decode(envelope: &Envelope) -> Result<E, DecodeError> {
        envelope.decode()
    }
}

/// An enum of bus events that one consumer takes, decoded by type, so that a handler matches
/// on it exhaustively: adding a variant is a compile error wherever it is not handled.
///
/// ```ignore
/// pos_platform::event_set! {
///     /// What the applicant's view follows.
///     pub enum ViewEvent {
///         Routed(AppealRouted),
///         StatusChanged(TicketStatusChanged),
///     }
/// }
/// ```
#[macro_export]
macro_rules! event_set {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident($event:ty)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        $vis enum $name {
            $($(#[$vmeta])* $variant($event),)+
        }

        impl $crate::bus::EventSet for $name {
            const EVENTS: &'static [&'static str] = &[$(<$event as $crate::__proto::BusEvent>::EVENT),+];

            fn decode(envelope: &$crate::bus::Envelope) -> Result<Self, $crate::bus::DecodeError> {
                $(if envelope.is::<$event>() {
                    return envelope.decode::<$event>().map($name::$variant);
                })+
                Err($crate::bus::DecodeError::WrongType {
                    expected: stringify!($name).to_owned(),
                    actual: envelope.type_name.clone(),
                })
            }
        }
    };
}

/// What the consumer decided about a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Done (or a duplicate): remove it from the queue.
    Ack,
    /// Deliver again to this consumer after `delay`.
    Retry { delay: Duration, reason: String },
    /// Move it to the dead-letter queue, with the reason.
    DeadLetter { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker refused the message: {0}")]
    Nacked(String),
    #[error("no queue is bound for routing key {0}")]
    Unroutable(String),
    #[error("bus is closed")]
    Closed,
    #[error("bus error: {0}")]
    Other(String),
}

/// Settles one delivery; implemented by each adapter.
#[async_trait]
pub trait Settle: Send + Sync {
    async fn settle(self: Box<Self>, envelope: &Envelope, disposition: Disposition) -> Result<(), BusError>;
}

/// One message handed to a consumer. Dropping it unsettled makes it come back (as a crash would).
pub struct Delivery {
    pub envelope: Envelope,
    /// How many times it was delivered before (crashes, or retries made by the broker).
    pub redeliveries: u32,
    settle: Box<dyn Settle>,
}

impl Delivery {
    pub fn new(envelope: Envelope, redeliveries: u32, settle: Box<dyn Settle>) -> Delivery {
        Delivery { envelope, redeliveries, settle }
    }

    /// Delivery attempts so far for this consumer, this one included.
    pub fn attempt(&self) -> u32 {
        self.envelope.retry_count() + self.redeliveries + 1
    }

    pub async fn settle(self, disposition: Disposition) -> Result<(), BusError> {
        self.settle.settle(&self.envelope, disposition).await
    }
}

/// The bus port.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes in order and returns once the broker has confirmed each message (or refused
    /// it). The result for message `i` is at index `i`.
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<(), BusError>>;

    /// Declares the consumer's queue, its bindings, its retry path and its dead-letter queue.
    /// Idempotent. Only adds bindings, and remembers them (where the queue lives, so that any
    /// later process sees them) for [`Bus::remove_stale_bindings`].
    async fn declare(&self, spec: &QueueSpec) -> Result<(), BusError>;

    /// Removes the bindings that declarations of the queue made before (by any process, before
    /// any restart) and `spec` no longer lists, and returns them. Called after [`Bus::declare`],
    /// so a deployment whose regions change binds the new ones before the old ones go: nothing
    /// published in between misses the queue. Messages already queued stay in it.
    async fn remove_stale_bindings(&self, spec: &QueueSpec) -> Result<Vec<String>, BusError>;

    /// Deliveries from the consumer's queue (declared first). The stream survives broker
    /// restarts and ends only when the bus is closed.
    async fn consume(&self, spec: &QueueSpec) -> Result<BoxStream<'static, Delivery>, BusError>;

    /// Messages waiting in a queue (for lag metrics and tests).
    async fn queue_depth(&self, queue: &str) -> Result<u64, BusError>;

    /// Takes up to `max` messages out of a consumer's dead-letter queue (tests).
    async fn drain_dead_letters(&self, spec: &QueueSpec, max: usize) -> Result<Vec<Envelope>, BusError>;

    /// Up to `max` messages of a consumer's dead-letter queue, oldest first, left where they
    /// are. A queue never declared has none.
    async fn peek_dead_letters(&self, spec: &QueueSpec, max: usize) -> Result<Vec<DeadLetter>, BusError>;

    /// Takes the selected dead letters out of the consumer's dead-letter queue and replays or
    /// drops them, leaving every other message in place; returns what was taken (every copy).
    /// A replayed message is on the consumer's queue before it leaves the dead-letter queue, so
    /// a failure in between leaves a duplicate (which the inbox absorbs), never a loss.
    async fn settle_dead_letters(
        &self,
        spec: &QueueSpec,
        selection: DeadLetterSelection,
        action: DeadLetterAction,
    ) -> Result<Vec<Envelope>, BusError>;

    /// Removes every queue (with its retry and dead-letter queues) declared through this bus,
    /// messages included, and the exchanges unless another deployment's queues are still bound
    /// to them: for decommissioning a deployment or a test run.
    async fn delete_declared(&self) -> Result<(), BusError>;

    /// Writes what the adapter holds and has not stored yet (the in-process bus's queued
    /// acknowledgements), so that a clean stop redelivers nothing on the next start. Called once
    /// a process has stopped consuming and publishing; the bus stays usable.
    async fn flush(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.publish_batch(std::slice::from_ref(envelope)).await.pop().unwrap_or(Err(BusError::Closed))
    }
}

/// Whether a routing key matches an AMQP topic pattern (`*` one word, `#` zero or more).
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    fn matches(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.first(), key.first()) {
            (None, None) => true,
            (Some(&"#"), _) => matches(&pattern[1..], key) || (!key.is_empty() && matches(pattern, &key[1..])),
            (Some(&"*"), Some(_)) => matches(&pattern[1..], &key[1..]),
            (Some(p), Some(k)) if p == k => matches(&pattern[1..], &key[1..]),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    matches(&pattern, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns() {
        assert!(topic_matches("appeal.received.*", "appeal.received.41"));
        assert!(!topic_matches("appeal.received.*", "appeal.routed.41"));
        assert!(topic_matches("appeal.#", "appeal.routed.41"));
        assert!(topic_matches("#", "ticket.status_changed.77"));
        assert!(topic_matches("*.*.41", "appeal.routed.41"));
        assert!(!topic_matches("appeal.received.41", "appeal.received.42"));
        assert!(topic_matches("appeal.received.#", "appeal.received"));
    }
}

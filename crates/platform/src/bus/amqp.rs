//! The RabbitMQ adapter (lapin, quorum queues).
//!
//! Topology for exchange `E` (e.g. `pos.events`):
//!
//! - `E`: durable topic exchange, the one events are published to, with `E.unroutable` as its
//!   alternate exchange, so a message no queue binds is kept rather than dropped;
//! - `E.unroutable`: fanout exchange and quorum queue of that name;
//! - `E.dlx`: direct exchange routing dead letters by consumer queue name;
//! - `E.retry`: direct exchange routing delayed retries to one consumer's retry queues;
//! - per consumer `Q`: quorum queue `Q` bound to `E` with the consumer's patterns, its dead-letter
//!   queue `Q.dead` bound to `E.dlx` with key `Q`, and one retry queue `Q.retry.<millis>` per
//!   distinct retry delay, bound to `E.retry` with its own name, whose messages expire after that
//!   delay and are dead-lettered through the default exchange straight back into `Q` alone;
//!   and `Q.bindings`, the record of the patterns `Q` was bound to (AMQP cannot list a queue's
//!   bindings), so that a later start can remove those its spec no longer lists.
//!
//! A retry or a dead letter is a copy published with a confirm, then the original is acked:
//! publishing the copy ourselves keeps our headers (retry count, death reason), which a broker
//! dead-lettering would not let us set. A crash between the two gives a duplicate, which the
//! inbox absorbs; never a loss.
//!
//! Connection recovery is ours, not lapin's (off by default there): a supervisor reconnects with
//! backoff, declares the exchanges and every queue declared so far, and the consume streams
//! subscribe again on the new connection. Deliveries unsettled on the dead connection are
//! redelivered by the broker.
//!
//! The bus may be given the nodes of a cluster (`amqp://a:5672/%2f,amqp://b:5672/%2f`): it
//! connects to the first that answers, in the order listed, and on losing the connection it
//! tries the node after the lost one first, so a node that is stopped moves its clients to the
//! others. Quorum queues are declared without a group size, so RabbitMQ places a member on
//! every node of the cluster: any majority of the nodes keeps every queue working.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind, Event, ExchangeKind};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::servers_ca::ServersCa;

use super::{
    Bus, BusError, DeadLetter, DeadLetterAction, DeadLetterSelection, Delivery, Disposition, Envelope,
    HEADER_DEATH_REASON, HEADER_RETRY_COUNT, QueueSpec, Settle,
};

const CONTENT_TYPE: &str = "application/x-protobuf";
/// The event's own routing key: retries and dead letters travel under the consumer's queue name.
const HEADER_ROUTING_KEY: &str = "x-routing-key";
/// The exact timestamp; the AMQP `timestamp` property has whole seconds only.
const HEADER_TIMESTAMP_NANOS: &str = "x-timestamp-nanos";
/// Unsettled deliveries of earlier copies, carried into a retry copy so the limit counts them.
const HEADER_REDELIVERIES: &str = "x-redeliveries";
/// Set by quorum queues: how many times this copy was returned to the queue.
const HEADER_DELIVERY_COUNT: &str = "x-delivery-count";
/// When a dead letter of ours was dead-lettered (nanoseconds since the epoch); the broker's own
/// say so in `x-death`.
const HEADER_DEATH_AT: &str = "x-death-at-nanos";
/// Deliveries made before a dead letter of ours was dead-lettered.
const HEADER_DEATH_ATTEMPTS: &str = "x-death-attempts";

/// How long a call waits for a connection before reporting the broker unavailable.
const LINK_WAIT: Duration = Duration::from_secs(2);
/// How long a batch waits for its publisher confirms.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on connecting and declaring, so a half-open broker cannot hang the supervisor.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the supervisor looks at the connection state, besides listening to its events
/// (a broker closing the connection politely sends no error event).
const HEALTH_CHECK: Duration = Duration::from_secs(1);
/// Most dead letters one settlement looks through.
const MAX_DEAD_LETTERS_SETTLED: usize = 100_000;
/// Pause before a consumer subscribes again on a connection that is still up.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// The RabbitMQ bus. Dropping it (or [`AmqpBus::close`]) closes the connection and ends every
/// consume stream.
pub struct AmqpBus {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

/// The names derived from the main exchange's.
struct Names {
    exchange: String,
    unroutable: String,
    dlx: String,
    retry: String,
}

impl Names {
    fn new(exchange: &str) -> Names {
        Names {
            exchange: exchange.to_owned(),
            unroutable: format!("{exchange}.unroutable"),
            dlx: format!("{exchange}.dlx"),
            retry: format!("{exchange}.retry"),
        }
    }
}

struct Shared {
    /// The broker's nodes, in the order they are tried (see [`node_urls`]).
    nodes: Vec<String>,
    /// The CAs that verify `amqps://` nodes besides the public roots (`servers_ca_file`).
    tls: OwnedTLSConfig,
    /// Where `tls` came from, for errors.
    ca: Option<ServersCa>,
    names: Names,
    /// The live connection; `None` while reconnecting.
    link: watch::Sender<Option<Arc<Link>>>,
    /// Every queue declared so far, declared again on each new connection.
    specs: Mutex<BTreeMap<String, QueueSpec>>,
    shutdown: CancellationToken,
    /// Someone saw an operation fail: the supervisor checks the connection at once.
    kick: Notify,
}

/// One connection and its publishing channel (in confirm mode).
struct Link {
    generation: u64,
    /// The index in [`Shared::nodes`] of the node it is connected to.
    node: usize,
    connection: Connection,
    publisher: tokio::sync::Mutex<Channel>,
}

impl Link {
    /// The confirm channel, opened again if a channel error closed it.
    async fn publisher(&self) -> Result<Channel, lapin::Error> {
        let mut channel = self.publisher.lock().await;
        if !channel.status().connected() {
            let fresh = self.connection.create_channel().await?;
            fresh.confirm_select(ConfirmSelectOptions::default()).await?;
            *channel = fresh;
        }
        Ok(channel.clone())
    }
}

impl AmqpBus {
    /// Connects to `url`, or to the first node that answers of a comma-separated list of a
    /// cluster's nodes, and declares the exchange topology. Fails if no node can be reached now;
    /// once connected, the bus reconnects by itself, to whichever node answers.
    pub async fn connect(url: &str, exchange: &str) -> Result<AmqpBus, BusError> {
        AmqpBus::connect_with_ca(url, exchange, None).await
    }

    /// [`AmqpBus::connect`]; each `amqps://` node's certificate is verified against `ca`
    /// (`servers_ca_file`) as well as the public web PKI roots.
    pub async fn connect_with_ca(url: &str, exchange: &str, ca: Option<&ServersCa>) -> Result<AmqpBus, BusError> {
        if exchange.is_empty() || exchange.len() > MAX_NAME {
            return Err(BusError::Other(format!("invalid exchange name {exchange:?}: 1 to {MAX_NAME} bytes")));
        }
        let nodes = node_urls(url);
        if nodes.is_empty() {
            return Err(BusError::Other("no broker URL given".to_owned()));
        }
        let tls = OwnedTLSConfig { identity: None, cert_chain: ca.map(|ca| ca.pem().to_owned()) };
        let shared = Arc::new(Shared {
            nodes,
            tls,
            ca: ca.cloned(),
            names: Names::new(exchange),
            link: watch::Sender::new(None),
            specs: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
            kick: Notify::new(),
        });
        let (link, events) = open_any(&shared, 1, 0).await.map_err(|e| {
            let nodes: Vec<String> = shared.nodes.iter().map(|url| crate::db::redact_url(url)).collect();
            match &shared.ca {
                Some(ca) if shared.nodes.iter().any(|url| url.starts_with("amqps://")) => {
                    BusError::Unavailable(format!("{}: {e} ({})", nodes.join(","), ca.describe()))
                }
                _ => BusError::Unavailable(format!("{}: {e}", nodes.join(","))),
            }
        })?;
        shared.link.send_replace(Some(link.clone()));
        tracing::info!(exchange, node = %shared.node_name(link.node), "amqp bus connected");
        let supervisor = tokio::spawn(supervise(shared.clone(), link, events));
        Ok(AmqpBus { shared, supervisor: Mutex::new(Some(supervisor)) })
    }

    /// The queue receiving messages that no binding matched.
    pub fn unroutable_queue(&self) -> &str {
        &self.shared.names.unroutable
    }

    /// Closes the connection and ends every consume stream; unsettled deliveries go back to
    /// their queues. Later calls fail with [`BusError::Closed`].
    pub async fn close(&self) {
        self.shared.shutdown.cancel();
        let supervisor = self.supervisor.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(supervisor) = supervisor {
            let _ = supervisor.await;
        }
    }
}

impl Drop for AmqpBus {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl Shared {
    /// The live connection, waiting up to `wait` for one.
    async fn link(&self, wait: Duration) -> Result<Arc<Link>, BusError> {
        if self.shutdown.is_cancelled() {
            return Err(BusError::Closed);
        }
        let mut links = self.link.subscribe();
        tokio::select! {
            () = self.shutdown.cancelled() => Err(BusError::Closed),
            link = tokio::time::timeout(wait, next_link(&mut links)) => match link {
                Ok(Some(link)) => Ok(link),
                Ok(None) => Err(BusError::Closed),
                Err(_) => Err(BusError::Unavailable("not connected to the broker".to_owned())),
            },
        }
    }

    /// A node's URL fit for a log: without its password.
    fn node_name(&self, node: usize) -> String {
        self.nodes.get(node).map(|url| crate::db::redact_url(url)).unwrap_or_default()
    }

    fn specs(&self) -> Vec<QueueSpec> {
        self.specs.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    fn remember(&self, spec: &QueueSpec) {
        self.specs.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.name.clone(), spec.clone());
    }
}

async fn next_link(links: &mut watch::Receiver<Option<Arc<Link>>>) -> Option<Arc<Link>> {
    links.wait_for(Option::is_some).await.ok().and_then(|link| link.clone())
}

type Events = BoxStream<'static, Event>;

/// The nodes an AMQP setting names: one URL, or several separated by commas (a cluster's nodes,
/// tried in this order). Blanks around and between them are ignored.
pub fn node_urls(setting: &str) -> Vec<String> {
    setting.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_owned).collect()
}

/// The order in which `nodes` nodes are tried, beginning with `first`.
fn attempt_order(first: usize, nodes: usize) -> impl Iterator<Item = usize> {
    (0..nodes).map(move |i| (first + i) % nodes.max(1))
}

/// Connects to the first node that answers, trying each once beginning with `first`; the
/// error is the last node's.
async fn open_any(shared: &Shared, generation: u64, first: usize) -> Result<(Arc<Link>, Events), lapin::Error> {
    let mut failure = None;
    for node in attempt_order(first, shared.nodes.len()) {
        match open_link(shared, generation, node).await {
            Ok(opened) => return Ok(opened),
            Err(error) => {
                if shared.nodes.len() > 1 {
                    tracing::warn!(%error, node = %shared.node_name(node), "amqp node did not answer, trying the next");
                }
                failure = Some(error);
            }
        }
    }
    Err(failure.unwrap_or_else(|| {
        lapin::Error::from(ErrorKind::IOError(Arc::new(std::io::Error::other("no broker node to connect to"))))
    }))
}

/// Connects to `node` and declares everything known so far.
async fn open_link(shared: &Shared, generation: u64, node: usize) -> Result<(Arc<Link>, Events), lapin::Error> {
    let open = async {
        let properties =
            ConnectionProperties::default().with_connection_name(format!("pos {}", shared.names.exchange).into());
        let runtime = lapin::runtime::default_runtime()?;
        let connection =
            Connection::connect_with_config(&shared.nodes[node], properties, shared.tls.clone(), runtime).await?;
        // Subscribed before anything can fail, so no error event is missed.
        let events = connection.events_listener().boxed();
        let channel = connection.create_channel().await?;
        declare_exchanges(&channel, &shared.names).await?;
        for spec in shared.specs() {
            declare_queue(&channel, &shared.names, &spec).await?;
        }
        let _ = channel.close(200, "OK".into()).await;
        let publisher = connection.create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok((Arc::new(Link { generation, node, connection, publisher: tokio::sync::Mutex::new(publisher) }), events))
    };
    match tokio::time::timeout(OPERATION_TIMEOUT, open).await {
        Ok(result) => result,
        Err(_) => Err(lapin::Error::from(ErrorKind::IOError(Arc::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connecting to the broker timed out",
        ))))),
    }
}

/// Keeps a connection up until shutdown.
async fn supervise(shared: Arc<Shared>, mut link: Arc<Link>, mut events: Events) {
    loop {
        if !wait_until_lost(&shared, &link, &mut events).await {
            break;
        }
        shared.link.send_replace(None);
        let generation = link.generation + 1;
        let lost = shared.node_name(link.node);
        tracing::warn!(generation = link.generation, node = %lost, "amqp connection lost, reconnecting");
        // The lost node is tried last: it is the one most likely down.
        let first = (link.node + 1) % shared.nodes.len();
        let mut delay = BACKOFF_MIN;
        (link, events) = loop {
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            match open_any(&shared, generation, first).await {
                Ok(next) => break next,
                Err(error) => {
                    delay = (delay * 2).min(BACKOFF_MAX);
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "amqp reconnect failed");
                }
            }
        };
        shared.link.send_replace(Some(link.clone()));
        tracing::info!(generation, node = %shared.node_name(link.node), "amqp connection restored");
    }
    shared.link.send_replace(None);
    let _ = tokio::time::timeout(Duration::from_secs(2), link.connection.close(200, "OK".into())).await;
    tracing::info!("amqp bus closed");
}

/// `true` when the connection is lost, `false` on shutdown.
async fn wait_until_lost(shared: &Shared, link: &Link, events: &mut Events) -> bool {
    let mut health = tokio::time::interval(HEALTH_CHECK);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return false,
            event = events.next() => match event {
                Some(Event::Error(error)) => {
                    tracing::warn!(%error, "amqp connection error");
                    return true;
                }
                Some(Event::ConnectionBlocked(reason)) => tracing::warn!(%reason, "amqp connection blocked by the broker"),
                Some(Event::ConnectionUnblocked) => tracing::info!("amqp connection unblocked"),
                Some(_) => {}
                None => return true,
            },
            _ = health.tick() => if !link.connection.status().connected() { return true },
            () = shared.kick.notified() => if !link.connection.status().connected() { return true },
        }
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn short(value: &str) -> Result<ShortString, BusError> {
    ShortString::try_new(value).map_err(|e| BusError::Other(format!("{value:?}: {e}")))
}

/// Quorum queues: replicated, durable, and the only kind with delivery limits.
fn quorum_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), text("quorum"));
    arguments
}

/// Quorum queues must be durable, not exclusive and not auto-delete.
fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

async fn declare_exchanges(channel: &Channel, names: &Names) -> Result<(), lapin::Error> {
    // Durable: exchanges must outlive a broker restart with the durable queues bound to them.
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    // Fanout: whatever reaches the unroutable exchange is kept, whatever its key.
    channel
        .exchange_declare(names.unroutable.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
        .await?;
    channel.queue_declare(names.unroutable.as_str().into(), durable_queue(), quorum_arguments()).await?;
    channel
        .queue_bind(
            names.unroutable.as_str().into(),
            names.unroutable.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut main = FieldTable::default();
    // Messages no binding matches go to the unroutable queue instead of being dropped.
    main.insert("alternate-exchange".into(), text(&names.unroutable));
    // Topic: consumers bind `<event>.<region>` patterns.
    channel.exchange_declare(names.exchange.as_str().into(), ExchangeKind::Topic, durable, main).await?;
    // Direct: a dead letter or a retry is addressed to exactly one queue.
    channel.exchange_declare(names.dlx.as_str().into(), ExchangeKind::Direct, durable, FieldTable::default()).await?;
    channel.exchange_declare(names.retry.as_str().into(), ExchangeKind::Direct, durable, FieldTable::default()).await?;
    Ok(())
}

/// Longest exchange or queue name accepted, leaving room for the derived names' suffixes
/// within AMQP's 255 bytes.
const MAX_NAME: usize = 200;

/// Names are AMQP short strings; checked here so that building them later cannot fail.
fn validate(spec: &QueueSpec) -> Result<(), BusError> {
    if spec.name.is_empty() || spec.name.len() > MAX_NAME {
        return Err(BusError::Other(format!("invalid queue name {:?}: 1 to {MAX_NAME} bytes", spec.name)));
    }
    if let Some(pattern) = spec.bindings.iter().find(|p| p.len() > 255) {
        return Err(BusError::Other(format!("binding pattern too long: {pattern:?}")));
    }
    Ok(())
}

/// Distinct retry delays in milliseconds; one retry queue each.
fn retry_delays_ms(spec: &QueueSpec) -> BTreeSet<u64> {
    let mut delays: BTreeSet<u64> = spec.retry_delays.iter().map(|d| (d.as_millis() as u64).max(1)).collect();
    if delays.is_empty() {
        delays.insert(spec.retry_delay(0).as_millis() as u64);
    }
    delays
}

fn retry_queue(queue: &str, delay_ms: u64) -> String {
    format!("{queue}.retry.{delay_ms}")
}

/// The queue holding the record of what `queue` is bound to: each record is one message listing
/// patterns; what the queue may be bound to is the union of the records.
fn bindings_record_queue(queue: &str) -> String {
    format!("{queue}.bindings")
}

/// The patterns the binding record of `queue` lists, and the delivery tag that acknowledges
/// every record read (on this channel). Usually one record; more after a crash between writing
/// a record and acknowledging the one it replaces, or when replicas start together: the union
/// is a superset of what is bound, and removing a binding that is not there does nothing.
async fn read_bindings_record(channel: &Channel, queue: &str) -> Result<(BTreeSet<String>, Option<u64>), lapin::Error> {
    let record = bindings_record_queue(queue);
    // Quorum: a record lost with a node would leave a stale binding that nothing removes.
    channel.queue_declare(record.as_str().into(), durable_queue(), quorum_arguments()).await?;
    let mut patterns = BTreeSet::new();
    let mut last_tag = None;
    // Not auto-acked: a record goes only once its replacement is confirmed.
    while let Some(message) = channel.basic_get(record.as_str().into(), BasicGetOptions { no_ack: false }).await? {
        last_tag = Some(message.delivery.delivery_tag);
        match serde_json::from_slice::<Vec<String>>(&message.delivery.data) {
            Ok(listed) => patterns.extend(listed),
            Err(error) => tracing::warn!(%error, queue, "unreadable binding record, dropping it"),
        }
    }
    Ok((patterns, last_tag))
}

/// Replaces the records read (up to `read`) with one listing `patterns`: the new record is
/// confirmed before the old ones are acknowledged, so a crash in between leaves both, never none.
/// `channel` is in confirm mode.
async fn write_bindings_record(
    channel: &Channel,
    queue: &str,
    patterns: &BTreeSet<String>,
    read: Option<u64>,
) -> Result<(), lapin::Error> {
    let record = bindings_record_queue(queue);
    let body = serde_json::to_vec(patterns).unwrap_or_else(|_| b"[]".to_vec());
    let properties = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
    // Through the default exchange, which routes by queue name.
    let confirmation = channel
        .basic_publish("".into(), record.as_str().into(), BasicPublishOptions::default(), &body, properties)
        .await?
        .await?;
    if !matches!(confirmation, Confirmation::Ack(None)) {
        return Err(lapin::Error::from(ErrorKind::IOError(Arc::new(std::io::Error::other(format!(
            "the broker did not confirm the binding record of {queue}: {confirmation:?}"
        ))))));
    }
    if let Some(tag) = read {
        channel.basic_ack(tag, BasicAckOptions { multiple: true }).await?;
    }
    Ok(())
}

/// The retry queue for `delay`: the shortest declared delay not below it, else the longest
/// (a handler asking for a delay the spec does not list gets the nearest longer one).
fn pick_retry_delay(delays: &BTreeSet<u64>, delay: Duration) -> u64 {
    let wanted = delay.as_millis() as u64;
    delays.range(wanted..).next().or_else(|| delays.last()).copied().unwrap_or(1000)
}

async fn declare_queue(channel: &Channel, names: &Names, spec: &QueueSpec) -> Result<(), lapin::Error> {
    let name = spec.name.as_str();
    let mut arguments = quorum_arguments();
    // The broker counts returns (crashes, unsettled drops) after the first delivery; retries
    // are new copies and counted by the consumer through the retry-count header.
    arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(i64::from(spec.delivery_limit.max(1) - 1)));
    // Messages over the limit, or rejected as malformed, go to this consumer's dead letters.
    arguments.insert("x-dead-letter-exchange".into(), text(&names.dlx));
    arguments.insert("x-dead-letter-routing-key".into(), text(name));
    // The broker keeps a dead letter until the dead-letter queue has confirmed it.
    arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    // Required by at-least-once dead-lettering: refuse publishes rather than drop the oldest.
    arguments.insert("x-overflow".into(), text("reject-publish"));
    channel.queue_declare(name.into(), durable_queue(), arguments).await?;
    for pattern in &spec.bindings {
        channel
            .queue_bind(
                name.into(),
                names.exchange.as_str().into(),
                pattern.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let dead = spec.dead_letter_queue();
    // No limit, no dead-letter target: dead letters wait for an operator.
    channel.queue_declare(dead.as_str().into(), durable_queue(), quorum_arguments()).await?;
    // Keyed by the consumer's queue name, so each consumer gets only its own dead letters.
    channel
        .queue_bind(
            dead.as_str().into(),
            names.dlx.as_str().into(),
            name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for delay_ms in retry_delays_ms(spec) {
        let retry = retry_queue(name, delay_ms);
        let mut arguments = quorum_arguments();
        // One delay per queue: every message expires in arrival order, none waits behind a longer one.
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(i64::try_from(delay_ms).unwrap_or(i64::MAX)));
        // Expired messages go through the default exchange, which routes by queue name...
        arguments.insert("x-dead-letter-exchange".into(), text(""));
        // ...to this consumer's queue only, never to other consumers bound to the same event.
        arguments.insert("x-dead-letter-routing-key".into(), text(name));
        // A retry waiting here must not be lost on its way back.
        arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        // Required by at-least-once dead-lettering.
        arguments.insert("x-overflow".into(), text("reject-publish"));
        channel.queue_declare(retry.as_str().into(), durable_queue(), arguments).await?;
        // Bound by its own name: a retry is published to exactly this queue.
        channel
            .queue_bind(
                retry.as_str().into(),
                names.retry.as_str().into(),
                retry.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// One message to publish.
struct Outgoing<'a> {
    exchange: &'a str,
    routing_key: &'a str,
    envelope: &'a Envelope,
    /// Carried into retry copies (see [`HEADER_REDELIVERIES`]).
    redeliveries: Option<u32>,
    /// For a dead letter: the deliveries it had (see [`HEADER_DEATH_ATTEMPTS`]).
    death_attempts: Option<u32>,
}

fn properties(outgoing: &Outgoing<'_>) -> Result<BasicProperties, BusError> {
    let envelope = outgoing.envelope;
    let mut headers = FieldTable::default();
    for (key, value) in &envelope.headers {
        headers.insert(short(key)?, text(value));
    }
    headers.insert(HEADER_ROUTING_KEY.into(), text(&envelope.routing_key));
    if let Some(nanos) = envelope.timestamp.timestamp_nanos_opt() {
        headers.insert(HEADER_TIMESTAMP_NANOS.into(), AMQPValue::LongLongInt(nanos));
    }
    if let Some(redeliveries) = outgoing.redeliveries {
        headers.insert(HEADER_REDELIVERIES.into(), AMQPValue::LongLongInt(i64::from(redeliveries)));
    }
    if let Some(attempts) = outgoing.death_attempts {
        headers.insert(HEADER_DEATH_ATTEMPTS.into(), AMQPValue::LongLongInt(i64::from(attempts)));
        if let Some(nanos) = Utc::now().timestamp_nanos_opt() {
            headers.insert(HEADER_DEATH_AT.into(), AMQPValue::LongLongInt(nanos));
        }
    }
    Ok(BasicProperties::default()
        .with_message_id(envelope.message_id.to_string().into())
        .with_type(short(&envelope.type_name)?)
        .with_timestamp(u64::try_from(envelope.timestamp.timestamp()).unwrap_or(0))
        .with_content_type(CONTENT_TYPE.into())
        // Persistent: written to disk by the queue before the confirm.
        .with_delivery_mode(2)
        .with_headers(headers))
}

/// Publishes in order on the confirm channel: every message is sent, then every confirm awaited.
async fn publish_all(shared: &Shared, link: &Link, items: &[Outgoing<'_>]) -> Vec<Result<(), BusError>> {
    let channel = match tokio::time::timeout(OPERATION_TIMEOUT, link.publisher()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => {
            shared.kick.notify_one();
            return items.iter().map(|_| Err(BusError::Unavailable(error.to_string()))).collect();
        }
        Err(_) => {
            return items
                .iter()
                .map(|_| Err(BusError::Unavailable("opening a channel timed out".to_owned())))
                .collect();
        }
    };
    let mut sent = Vec::with_capacity(items.len());
    for item in items {
        let confirm = async {
            let properties = properties(item)?;
            channel
                .basic_publish(
                    short(item.exchange)?,
                    short(item.routing_key)?,
                    // Mandatory: a message no queue takes comes back as an error, not silence.
                    BasicPublishOptions { mandatory: true, immediate: false },
                    &item.envelope.payload,
                    properties,
                )
                .await
                .map_err(|e| BusError::Unavailable(e.to_string()))
        };
        sent.push(confirm.await);
    }
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
    let mut results = Vec::with_capacity(items.len());
    for (item, confirm) in items.iter().zip(sent) {
        let result = match confirm {
            Err(error) => Err(error),
            Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                Err(_) => Err(BusError::Unavailable(format!("no publisher confirm within {CONFIRM_TIMEOUT:?}"))),
                Ok(Err(error)) => Err(BusError::Unavailable(error.to_string())),
                Ok(Ok(Confirmation::Ack(None))) => Ok(()),
                Ok(Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)))) => {
                    Err(BusError::Unroutable(item.routing_key.to_owned()))
                }
                Ok(Ok(Confirmation::Nack(None))) => {
                    Err(BusError::Nacked(format!("message {} to {}", item.envelope.message_id, item.exchange)))
                }
                Ok(Ok(Confirmation::NotRequested)) => {
                    Err(BusError::Other("publisher confirms are not enabled".to_owned()))
                }
            },
        };
        if let Err(error) = &result {
            tracing::warn!(%error, exchange = item.exchange, routing_key = item.routing_key, message_id = %item.envelope.message_id, "amqp publish failed");
        }
        results.push(result);
    }
    if results.iter().any(|r| matches!(r, Err(BusError::Unavailable(_)))) {
        shared.kick.notify_one();
    }
    results
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(e) if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
}

/// The broker refused to delete an exchange that still has bindings (`if-unused`).
fn is_in_use(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(e) if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<(), BusError>> {
        let link = match self.shared.link(LINK_WAIT).await {
            Ok(link) => link,
            Err(error) => {
                let message = error.to_string();
                return envelopes
                    .iter()
                    .map(|_| {
                        Err(if matches!(error, BusError::Closed) {
                            BusError::Closed
                        } else {
                            BusError::Unavailable(message.clone())
                        })
                    })
                    .collect();
            }
        };
        let items: Vec<Outgoing<'_>> = envelopes
            .iter()
            .map(|envelope| Outgoing {
                exchange: &self.shared.names.exchange,
                routing_key: &envelope.routing_key,
                envelope,
                redeliveries: None,
                death_attempts: None,
            })
            .collect();
        publish_all(&self.shared, &link, &items).await
    }

    async fn declare(&self, spec: &QueueSpec) -> Result<(), BusError> {
        validate(spec)?;
        let link = self.shared.link(LINK_WAIT).await?;
        let declare = async {
            let channel = link.connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            // Written down before binding: a binding missing from the record would never be removed.
            let (mut recorded, read) = read_bindings_record(&channel, &spec.name).await?;
            recorded.extend(spec.bindings.iter().cloned());
            write_bindings_record(&channel, &spec.name, &recorded, read).await?;
            declare_queue(&channel, &self.shared.names, spec).await?;
            let _ = channel.close(200, "OK".into()).await;
            Ok::<(), lapin::Error>(())
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, declare).await {
            Ok(Ok(())) => {
                self.shared.remember(spec);
                Ok(())
            }
            Ok(Err(error)) => {
                self.shared.kick.notify_one();
                Err(BusError::Other(format!("declaring queue {}: {error}", spec.name)))
            }
            Err(_) => Err(BusError::Unavailable(format!("declaring queue {} timed out", spec.name))),
        }
    }

    async fn remove_stale_bindings(&self, spec: &QueueSpec) -> Result<Vec<String>, BusError> {
        validate(spec)?;
        let link = self.shared.link(LINK_WAIT).await?;
        let names = &self.shared.names;
        let remove = async {
            let channel = link.connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            let (recorded, read) = read_bindings_record(&channel, &spec.name).await?;
            let (kept, stale): (BTreeSet<String>, BTreeSet<String>) =
                recorded.into_iter().partition(|pattern| spec.bindings.contains(pattern));
            for pattern in &stale {
                // Removing a binding that is not there (any more) succeeds.
                channel
                    .queue_unbind(
                        spec.name.as_str().into(),
                        names.exchange.as_str().into(),
                        pattern.as_str().into(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            // Unchanged: the records read go back to their queue when the channel closes.
            if !stale.is_empty() {
                write_bindings_record(&channel, &spec.name, &kept, read).await?;
            }
            let _ = channel.close(200, "OK".into()).await;
            Ok::<Vec<String>, lapin::Error>(stale.into_iter().collect())
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, remove).await {
            Ok(Ok(stale)) => Ok(stale),
            Ok(Err(error)) => {
                self.shared.kick.notify_one();
                Err(BusError::Other(format!("removing stale bindings of {}: {error}", spec.name)))
            }
            Err(_) => Err(BusError::Unavailable(format!("removing stale bindings of {} timed out", spec.name))),
        }
    }

    async fn consume(&self, spec: &QueueSpec) -> Result<BoxStream<'static, Delivery>, BusError> {
        self.declare(spec).await?;
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(consume_loop(self.shared.clone(), spec.clone(), sender));
        Ok(tokio_stream::wrappers::ReceiverStream::new(receiver).boxed())
    }

    async fn delete_declared(&self) -> Result<(), BusError> {
        let specs: Vec<QueueSpec> =
            self.shared.specs.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let link = self.shared.link(LINK_WAIT).await?;
        let names = &self.shared.names;
        let delete = async {
            let channel = link.connection.create_channel().await?;
            for spec in &specs {
                let mut queues = vec![spec.name.clone(), spec.dead_letter_queue(), bindings_record_queue(&spec.name)];
                queues.extend(retry_delays_ms(spec).into_iter().map(|delay| retry_queue(&spec.name, delay)));
                for queue in queues {
                    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await?;
                }
            }
            let _ = channel.close(200, "OK".into()).await;
            // The exchanges (and the unroutable queue) are shared by every deployment on them:
            // they go with the last one, i.e. when no queue is bound to the main exchange any more.
            let shared = link.connection.create_channel().await?;
            let if_unused = ExchangeDeleteOptions { if_unused: true, ..ExchangeDeleteOptions::default() };
            match shared.exchange_delete(names.exchange.as_str().into(), if_unused).await {
                Ok(()) => {}
                Err(error) if is_in_use(&error) => {
                    tracing::info!(exchange = %names.exchange, "another deployment still uses the exchange, keeping it");
                    return Ok(());
                }
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(error),
            }
            // A fresh channel: a refused deletion above closed the first one.
            let channel = link.connection.create_channel().await?;
            channel.queue_delete(names.unroutable.as_str().into(), QueueDeleteOptions::default()).await?;
            for exchange in [&names.unroutable, &names.dlx, &names.retry] {
                channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await?;
            }
            let _ = channel.close(200, "OK".into()).await;
            Ok::<(), lapin::Error>(())
        };
        match tokio::time::timeout(OPERATION_TIMEOUT * 4, delete).await {
            Ok(Ok(())) => {
                self.shared.specs.lock().unwrap_or_else(|e| e.into_inner()).clear();
                Ok(())
            }
            Ok(Err(error)) => Err(BusError::Other(format!("deleting the topology: {error}"))),
            Err(_) => Err(BusError::Unavailable("deleting the topology timed out".to_owned())),
        }
    }

    async fn queue_depth(&self, queue: &str) -> Result<u64, BusError> {
        let name = short(queue)?;
        let link = self.shared.link(LINK_WAIT).await?;
        let depth = async {
            let channel = link.connection.create_channel().await?;
            // Passive: only reads the queue's state, never creates it.
            let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            let declared = channel.queue_declare(name, options, FieldTable::default()).await?;
            let _ = channel.close(200, "OK".into()).await;
            Ok::<u64, lapin::Error>(u64::from(declared.message_count()))
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, depth).await {
            Ok(Ok(depth)) => Ok(depth),
            Ok(Err(error)) => Err(BusError::Other(format!("queue {queue}: {error}"))),
            Err(_) => Err(BusError::Unavailable(format!("reading the depth of {queue} timed out"))),
        }
    }

    async fn drain_dead_letters(&self, spec: &QueueSpec, max: usize) -> Result<Vec<Envelope>, BusError> {
        let link = self.shared.link(LINK_WAIT).await?;
        let queue = spec.dead_letter_queue();
        let drain = async {
            let channel = link.connection.create_channel().await?;
            let mut envelopes = Vec::new();
            let mut last_tag = None;
            while envelopes.len() < max {
                // Not auto-acked: they are acked together below, once all are in hand.
                match channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await {
                    Ok(Some(message)) => {
                        last_tag = Some(message.delivery.delivery_tag);
                        envelopes.push(decode_lenient(&message.delivery, spec.delivery_limit.max(1)));
                    }
                    Ok(None) => break,
                    Err(error) if is_not_found(&error) => return Ok(Vec::new()),
                    Err(error) => return Err(error),
                }
            }
            if let Some(tag) = last_tag {
                // Multiple: one ack for everything taken on this channel.
                channel.basic_ack(tag, BasicAckOptions { multiple: true }).await?;
            }
            let _ = channel.close(200, "OK".into()).await;
            Ok(envelopes)
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, drain).await {
            Ok(Ok(envelopes)) => Ok(envelopes),
            Ok(Err(error)) => Err(BusError::Unavailable(format!("draining {queue}: {error}"))),
            Err(_) => Err(BusError::Unavailable(format!("draining {queue} timed out"))),
        }
    }

    async fn peek_dead_letters(&self, spec: &QueueSpec, max: usize) -> Result<Vec<DeadLetter>, BusError> {
        let link = self.shared.link(LINK_WAIT).await?;
        let queue = spec.dead_letter_queue();
        let limit = spec.delivery_limit.max(1);
        let peek = async {
            let channel = link.connection.create_channel().await?;
            let mut letters = Vec::new();
            while letters.len() < max {
                // Held unacknowledged, so each get sees the next message...
                match channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await {
                    Ok(Some(message)) => letters.push(dead_letter_of(&message.delivery, limit)),
                    Ok(None) => break,
                    Err(error) if is_not_found(&error) => return Ok(Vec::new()),
                    Err(error) => return Err(error),
                }
            }
            // ...and all go back to the queue, in place, when the channel closes: an operator's
            // look takes nothing away.
            let _ = channel.close(200, "OK".into()).await;
            Ok(letters)
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, peek).await {
            Ok(Ok(letters)) => Ok(letters),
            Ok(Err(error)) => Err(BusError::Unavailable(format!("reading {queue}: {error}"))),
            Err(_) => Err(BusError::Unavailable(format!("reading {queue} timed out"))),
        }
    }

    async fn settle_dead_letters(
        &self,
        spec: &QueueSpec,
        selection: DeadLetterSelection,
        action: DeadLetterAction,
    ) -> Result<Vec<Envelope>, BusError> {
        validate(spec)?;
        let link = self.shared.link(LINK_WAIT).await?;
        let queue = spec.dead_letter_queue();
        let limit = spec.delivery_limit.max(1);
        let settle = async {
            let channel = link.connection.create_channel().await.map_err(|e| BusError::Unavailable(e.to_string()))?;
            let mut taken: Vec<(u64, Envelope)> = Vec::new();
            let mut looked_again = 0;
            // Unselected messages stay held until the channel closes, which returns them in
            // place. Replayed copies are published only after this loop, so a replayed message
            // that dies again at once cannot come round in this call.
            for _ in 0..MAX_DEAD_LETTERS_SETTLED {
                let got = match channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await {
                    Ok(got) => got,
                    Err(error) if is_not_found(&error) => return Ok(Vec::new()),
                    Err(error) => return Err(BusError::Other(error.to_string())),
                };
                let Some(message) = got else {
                    // A message another reader (a listing) held a moment ago is returned to the
                    // queue asynchronously: look again briefly before calling it absent.
                    if taken.is_empty() && looked_again < 3 {
                        looked_again += 1;
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        continue;
                    }
                    break;
                };
                let envelope = decode_lenient(&message.delivery, limit);
                if selection.selects(envelope.message_id) {
                    taken.push((message.delivery.delivery_tag, envelope));
                }
            }
            if action == DeadLetterAction::Replay {
                let mut seen = BTreeSet::new();
                let revived: Vec<Envelope> = taken
                    .iter()
                    .filter(|(_, envelope)| seen.insert(envelope.message_id))
                    .map(|(_, envelope)| envelope.revived())
                    .collect();
                // Through the default exchange straight to the consumer's queue: no other
                // consumer bound to the event gets it again.
                let items: Vec<Outgoing<'_>> = revived
                    .iter()
                    .map(|envelope| Outgoing {
                        exchange: "",
                        routing_key: &spec.name,
                        envelope,
                        redeliveries: None,
                        death_attempts: None,
                    })
                    .collect();
                // Confirmed before anything leaves the dead-letter queue; on failure the
                // channel closes with every dead letter still in it.
                for result in publish_all(&self.shared, &link, &items).await {
                    result?;
                }
            }
            for (tag, _) in &taken {
                channel
                    .basic_ack(*tag, BasicAckOptions { multiple: false })
                    .await
                    .map_err(|e| BusError::Unavailable(format!("acknowledging a dead letter: {e}")))?;
            }
            let _ = channel.close(200, "OK".into()).await;
            Ok(taken.into_iter().map(|(_, envelope)| envelope).collect())
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, settle).await {
            Ok(Ok(envelopes)) => Ok(envelopes),
            Ok(Err(error)) => {
                self.shared.kick.notify_one();
                Err(error)
            }
            Err(_) => Err(BusError::Unavailable(format!("settling dead letters of {queue} timed out"))),
        }
    }
}

/// Feeds one consume stream across connections until shutdown or until the stream is dropped.
async fn consume_loop(shared: Arc<Shared>, spec: QueueSpec, sender: mpsc::Sender<Delivery>) {
    let mut links = shared.link.subscribe();
    loop {
        let link = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = sender.closed() => return,
            link = next_link(&mut links) => match link {
                Some(link) => link,
                None => return,
            },
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, subscribe(&shared, &link, &spec)).await {
            Ok(Ok((channel, consumer))) => {
                tracing::info!(queue = %spec.name, generation = link.generation, "amqp consumer subscribed");
                if !pump(&shared, &link, &spec, channel, consumer, &sender).await {
                    return;
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, queue = %spec.name, "amqp consumer could not subscribe");
                shared.kick.notify_one();
            }
            Err(_) => tracing::warn!(queue = %spec.name, "amqp consumer subscription timed out"),
        }
        // A new connection, or another try on this one after a pause (a channel error, such as
        // a deleted queue, leaves the connection up).
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = sender.closed() => return,
            _ = links.changed() => {}
            () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
        }
    }
}

async fn subscribe(shared: &Shared, link: &Link, spec: &QueueSpec) -> Result<(Channel, lapin::Consumer), lapin::Error> {
    let channel = link.connection.create_channel().await?;
    // Declared again so a consumer heals a queue deleted under it.
    declare_queue(&channel, &shared.names, spec).await?;
    // Per consumer (not global): the spec's prefetch bounds this stream's unsettled deliveries.
    channel.basic_qos(spec.prefetch, BasicQosOptions { global: false }).await?;
    let tag = format!("pos-{}", Uuid::new_v4().simple());
    // Manual acks (no_ack false) and not exclusive: replicas of a service compete on the queue.
    let consumer = channel
        .basic_consume(spec.name.as_str().into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    Ok((channel, consumer))
}

/// Forwards deliveries; `false` when the stream is over (shutdown or dropped), `true` when the
/// subscription was lost and should be made again.
async fn pump(
    shared: &Arc<Shared>,
    link: &Link,
    spec: &QueueSpec,
    channel: Channel,
    mut consumer: lapin::Consumer,
    sender: &mpsc::Sender<Delivery>,
) -> bool {
    let delays = Arc::new(retry_delays_ms(spec));
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return false,
            () = sender.closed() => return false,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let settle = AmqpSettle {
                        shared: shared.clone(),
                        generation: link.generation,
                        _channel: channel.clone(),
                        acker: delivery.acker.clone(),
                        queue: spec.name.clone(),
                        delivery_limit: spec.delivery_limit.max(1),
                        retry_delays: delays.clone(),
                        redeliveries: 0,
                        settled: false,
                    };
                    if let Some(delivery) = settle.admit(&delivery).await
                        && sender.send(delivery).await.is_err()
                    {
                        return false;
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, queue = %spec.name, "amqp consumer failed");
                    shared.kick.notify_one();
                    return true;
                }
                None => {
                    tracing::warn!(queue = %spec.name, "amqp consumer cancelled by the broker");
                    return true;
                }
            },
        }
    }
}

struct AmqpSettle {
    shared: Arc<Shared>,
    /// The connection the delivery came on; its ack is meaningless on any other.
    generation: u64,
    /// Keeps the channel open while the delivery is held (a closed channel requeues it).
    _channel: Channel,
    acker: lapin::Acker,
    queue: String,
    delivery_limit: u32,
    retry_delays: Arc<BTreeSet<u64>>,
    redeliveries: u32,
    settled: bool,
}

impl AmqpSettle {
    /// A delivery for the handler, or `None` when it was dead-lettered here: malformed, or past
    /// the limit counting retries (the broker's limit counts only the returns of one copy).
    async fn admit(mut self, delivery: &lapin::message::Delivery) -> Option<Delivery> {
        match decode(delivery) {
            Ok((envelope, redeliveries)) => {
                self.redeliveries = redeliveries;
                let attempt = envelope.retry_count() + redeliveries + 1;
                if attempt > self.delivery_limit {
                    tracing::warn!(queue = %self.queue, message_id = %envelope.message_id, attempt, "delivery limit reached, dead-lettering");
                    let reason = format!("delivery limit of {} reached", self.delivery_limit);
                    if let Err(error) = Box::new(self).dead_letter(&envelope, reason, attempt - 1).await {
                        tracing::warn!(%error, "amqp dead-lettering failed, the message will come back");
                    }
                    return None;
                }
                Some(Delivery::new(envelope, redeliveries, Box::new(self)))
            }
            Err(problem) => {
                tracing::error!(queue = %self.queue, %problem, "malformed message, rejecting it to the dead-letter queue");
                self.settled = true;
                // Not requeued: the queue's dead-letter target takes it as it is.
                if let Err(error) = self.acker.nack(BasicNackOptions { multiple: false, requeue: false }).await {
                    tracing::warn!(%error, queue = %self.queue, "amqp reject failed");
                }
                None
            }
        }
    }

    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        // Whatever happens the acker is spent: a failed ack means the channel is gone and the
        // broker redelivers on its own.
        self.settled = true;
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(BusError::Unavailable("the channel closed before the ack; it will be redelivered".to_owned()))
            }
            Err(error) => Err(BusError::Unavailable(format!("ack failed, it will be redelivered: {error}"))),
        }
    }

    /// Publishes `copy` with a confirm, then acks the original. On failure the original is
    /// left unsettled and so comes back.
    async fn forward(self: Box<Self>, outgoing: Outgoing<'_>) -> Result<(), BusError> {
        let link = self.shared.link(LINK_WAIT).await?;
        if link.generation != self.generation {
            return Err(BusError::Unavailable("the connection was replaced; it will be redelivered".to_owned()));
        }
        publish_all(&self.shared, &link, std::slice::from_ref(&outgoing))
            .await
            .pop()
            .unwrap_or(Err(BusError::Closed))?;
        self.ack().await
    }

    async fn retry(self: Box<Self>, envelope: &Envelope, delay: Duration, reason: String) -> Result<(), BusError> {
        let retries = envelope.retry_count();
        let attempts = retries + self.redeliveries + 1;
        if attempts >= self.delivery_limit {
            let reason = format!("{reason} (delivery limit of {} reached)", self.delivery_limit);
            return self.dead_letter(envelope, reason, attempts).await;
        }
        let delay_ms = pick_retry_delay(&self.retry_delays, delay);
        let queue = retry_queue(&self.queue, delay_ms);
        let mut copy = envelope.clone();
        copy.headers.insert(HEADER_RETRY_COUNT.to_owned(), (retries + 1).to_string());
        tracing::debug!(queue = %self.queue, message_id = %envelope.message_id, retry = retries + 1, delay_ms, %reason, "delivery scheduled for retry");
        let shared = self.shared.clone();
        let redeliveries = self.redeliveries;
        self.forward(Outgoing {
            exchange: &shared.names.retry,
            routing_key: &queue,
            envelope: &copy,
            redeliveries: Some(redeliveries),
            death_attempts: None,
        })
        .await
    }

    /// `attempts`: the deliveries it had, this one included when a handler got it.
    async fn dead_letter(self: Box<Self>, envelope: &Envelope, reason: String, attempts: u32) -> Result<(), BusError> {
        let mut copy = envelope.clone();
        copy.headers.insert(HEADER_DEATH_REASON.to_owned(), reason);
        let shared = self.shared.clone();
        let queue = self.queue.clone();
        self.forward(Outgoing {
            exchange: &shared.names.dlx,
            routing_key: &queue,
            envelope: &copy,
            redeliveries: None,
            death_attempts: Some(attempts),
        })
        .await
    }
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn settle(self: Box<Self>, envelope: &Envelope, disposition: Disposition) -> Result<(), BusError> {
        match disposition {
            Disposition::Ack => self.ack().await,
            Disposition::Retry { delay, reason } => self.retry(envelope, delay, reason).await,
            Disposition::DeadLetter { reason } => {
                let attempts = envelope.retry_count() + self.redeliveries + 1;
                self.dead_letter(envelope, reason, attempts).await
            }
        }
    }
}

impl Drop for AmqpSettle {
    /// Unsettled: returned to the queue now rather than when the channel closes. Without a
    /// runtime (dropped during shutdown) the channel's closing returns it instead.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let acker = self.acker.clone();
            runtime.spawn(async move {
                let _ = acker.nack(BasicNackOptions { multiple: false, requeue: true }).await;
            });
        }
    }
}

fn header_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn header_int(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        other => header_text(other).and_then(|s| s.parse().ok()),
    }
}

/// Headers of ours or of the broker's, not the envelope's.
fn is_transport_header(key: &str) -> bool {
    matches!(
        key,
        HEADER_ROUTING_KEY
            | HEADER_TIMESTAMP_NANOS
            | HEADER_REDELIVERIES
            | HEADER_DELIVERY_COUNT
            | HEADER_DEATH_AT
            | HEADER_DEATH_ATTEMPTS
            | "x-death"
    ) || key.starts_with("x-first-death-")
        || key.starts_with("x-last-death-")
}

/// Why the broker dead-lettered a message, in the words the in-process bus uses.
fn broker_death_reason(reason: &str, delivery_limit: u32) -> String {
    match reason {
        "delivery_limit" => format!("delivery limit of {delivery_limit} reached"),
        "rejected" => "rejected by the consumer (malformed)".to_owned(),
        "expired" => "expired".to_owned(),
        "maxlen" => "queue full".to_owned(),
        other => other.to_owned(),
    }
}

/// The envelope and the redeliveries of an incoming message.
fn decode(delivery: &lapin::message::Delivery) -> Result<(Envelope, u32), String> {
    let properties = &delivery.properties;
    let empty = FieldTable::default();
    let table = properties.headers().as_ref().unwrap_or(&empty);
    let header = |key: &str| table.inner().get(key);
    let message_id = properties.message_id().as_ref().ok_or("no message_id property")?;
    let message_id = Uuid::parse_str(message_id.as_str()).map_err(|e| format!("message_id {message_id}: {e}"))?;
    let type_name = properties.kind().as_ref().ok_or("no type property")?.to_string();
    let routing_key =
        header(HEADER_ROUTING_KEY).and_then(header_text).unwrap_or_else(|| delivery.routing_key.to_string());
    let timestamp = header(HEADER_TIMESTAMP_NANOS)
        .and_then(header_int)
        .map(DateTime::from_timestamp_nanos)
        .or_else(|| properties.timestamp().and_then(|s| Utc.timestamp_opt(i64::try_from(s).ok()?, 0).single()))
        .unwrap_or_else(Utc::now);
    let mut headers = BTreeMap::new();
    for (key, value) in table {
        if is_transport_header(key.as_str()) {
            continue;
        }
        if let Some(value) = header_text(value) {
            headers.insert(key.to_string(), value);
        }
    }
    let count = |key: &str| header(key).and_then(header_int).and_then(|v| u32::try_from(v).ok());
    let returned = count(HEADER_DELIVERY_COUNT).unwrap_or(u32::from(delivery.redelivered));
    let redeliveries = count(HEADER_REDELIVERIES).unwrap_or(0).saturating_add(returned);
    let envelope = Envelope {
        message_id,
        routing_key,
        type_name,
        timestamp,
        headers,
        payload: Bytes::from(delivery.data.clone()),
    };
    Ok((envelope, redeliveries))
}

/// The reason of the latest dead-lettering done by the broker (`x-death` lists the most
/// recent first), for messages it dead-lettered itself: over the delivery limit, or rejected.
fn broker_death(delivery: &lapin::message::Delivery, delivery_limit: u32) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(latest) = deaths.as_slice().first()? else {
        return None;
    };
    latest.inner().get("reason").and_then(header_text).map(|r| broker_death_reason(&r, delivery_limit))
}

/// A dead letter as an operator sees it: when it died and after how many deliveries, from our
/// headers, or from the broker's `x-death` when the broker dead-lettered it.
fn dead_letter_of(delivery: &lapin::message::Delivery, delivery_limit: u32) -> DeadLetter {
    let envelope = decode_lenient(delivery, delivery_limit);
    let headers = delivery.properties.headers().as_ref();
    let header = |key: &str| headers.and_then(|table| table.inner().get(key)).and_then(header_int);
    let latest_death = headers.and_then(|table| match table.inner().get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().first() {
            Some(AMQPValue::FieldTable(latest)) => Some(latest.clone()),
            _ => None,
        },
        _ => None,
    });
    let dead_lettered_at = header(HEADER_DEATH_AT).map(DateTime::from_timestamp_nanos).or_else(|| {
        let seconds = latest_death.as_ref()?.inner().get("time").and_then(header_int)?;
        Utc.timestamp_opt(seconds, 0).single()
    });
    let attempts = header(HEADER_DEATH_ATTEMPTS).and_then(|v| u32::try_from(v).ok()).unwrap_or_else(|| {
        // The broker dead-letters over the limit after exactly the limit's deliveries.
        let over_limit = latest_death
            .as_ref()
            .and_then(|death| death.inner().get("reason").and_then(header_text))
            .is_some_and(|reason| reason == "delivery_limit");
        if over_limit { delivery_limit } else { 0 }
    });
    DeadLetter { envelope, dead_lettered_at, attempts }
}

/// For dead letters handed to an operator: whatever can be read, never an error.
fn decode_lenient(delivery: &lapin::message::Delivery, delivery_limit: u32) -> Envelope {
    match decode(delivery) {
        Ok((mut envelope, _)) => {
            if !envelope.headers.contains_key(HEADER_DEATH_REASON) {
                let reason = broker_death(delivery, delivery_limit).unwrap_or_else(|| "unknown".to_owned());
                envelope.headers.insert(HEADER_DEATH_REASON.to_owned(), reason);
            }
            envelope
        }
        Err(problem) => {
            let mut headers = BTreeMap::new();
            headers.insert(HEADER_DEATH_REASON.to_owned(), format!("malformed: {problem}"));
            Envelope {
                message_id: Uuid::nil(),
                routing_key: delivery.routing_key.to_string(),
                type_name: delivery.properties.kind().as_ref().map(|k| k.to_string()).unwrap_or_default(),
                timestamp: Utc::now(),
                headers,
                payload: Bytes::from(delivery.data.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_choice() {
        let delays: BTreeSet<u64> = [1000, 5000, 30000].into_iter().collect();
        assert_eq!(pick_retry_delay(&delays, Duration::from_secs(1)), 1000);
        assert_eq!(pick_retry_delay(&delays, Duration::from_millis(1200)), 5000);
        assert_eq!(pick_retry_delay(&delays, Duration::from_secs(600)), 30000);
        assert_eq!(pick_retry_delay(&delays, Duration::ZERO), 1000);
    }

    #[test]
    fn a_setting_names_one_node_or_several_tried_in_turn() {
        assert_eq!(node_urls("amqp://h:5672/%2f"), vec!["amqp://h:5672/%2f"]);
        assert_eq!(
            node_urls(" amqp://a:5672/%2f, amqp://b:5672/%2f,,amqp://c:5672/%2f "),
            vec!["amqp://a:5672/%2f", "amqp://b:5672/%2f", "amqp://c:5672/%2f"]
        );
        assert!(node_urls(" , ").is_empty());
        // From the node after the lost one, round to the lost one last.
        assert_eq!(attempt_order(1, 3).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(attempt_order(0, 1).collect::<Vec<_>>(), vec![0]);
        assert_eq!(attempt_order(0, 0).count(), 0);
    }

    #[test]
    fn transport_headers_are_not_envelope_headers() {
        assert!(is_transport_header("x-delivery-count"));
        assert!(is_transport_header("x-first-death-queue"));
        assert!(!is_transport_header(HEADER_RETRY_COUNT));
        assert!(!is_transport_header(HEADER_DEATH_REASON));
    }
}

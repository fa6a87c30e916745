//! One contract for every bus adapter: the in-process bus (volatile and durable) and RabbitMQ.
//! Each check runs against each adapter, so their semantics cannot drift apart.
//!
//! The RabbitMQ checks need a broker at `POS_TEST_AMQP_URL` (default: the local one, guest).
//! Each test declares its own exchange and queues under a unique prefix and deletes them after.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use pos_platform::bus::amqp::AmqpBus;
use pos_platform::bus::memory::MemoryBus;
use pos_platform::bus::{
    Bus, Delivery, Disposition, Envelope, HEADER_APPEAL_ID, HEADER_DEATH_REASON, HEADER_RETRY_COUNT,
    HEADER_TRACEPARENT, QueueSpec,
};
use pos_platform::db::Db;
use uuid::Uuid;

/// Longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(15);
/// How long "nothing arrives" is watched.
const QUIET: Duration = Duration::from_millis(600);
const RETRY_DELAY: Duration = Duration::from_millis(250);

fn amqp_url() -> String {
    std::env::var("POS_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

enum Adapter {
    Memory(MemoryBus),
    Amqp(AmqpBus),
}

/// An adapter under test, with the names it used, to clean up afterwards.
struct Target {
    adapter: Adapter,
    prefix: String,
    exchange: String,
    specs: Mutex<Vec<QueueSpec>>,
    db_file: Option<PathBuf>,
}

fn unique(kind: &str) -> String {
    format!("test.{kind}.{}", Uuid::new_v4().simple())
}

fn temp_db_file() -> PathBuf {
    std::env::temp_dir().join(format!("pos-bus-{}.db", Uuid::new_v4().simple()))
}

async fn sqlite(file: &std::path::Path) -> Db {
    Db::connect(&format!("sqlite://{}", file.display()), "bus", 4).await.expect("sqlite database")
}

fn remove_db_files(file: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

impl Target {
    async fn memory() -> Target {
        Target::new(Adapter::Memory(MemoryBus::new()), unique("memory"), None)
    }

    async fn durable() -> Target {
        let file = temp_db_file();
        let bus = MemoryBus::durable(sqlite(&file).await).await.expect("durable memory bus");
        Target::new(Adapter::Memory(bus), unique("durable"), Some(file))
    }

    async fn amqp() -> Target {
        let exchange = unique("amqp");
        let bus = AmqpBus::connect(&amqp_url(), &exchange).await.expect("RabbitMQ at POS_TEST_AMQP_URL");
        Target::new(Adapter::Amqp(bus), exchange, None)
    }

    fn new(adapter: Adapter, prefix: String, db_file: Option<PathBuf>) -> Target {
        Target { adapter, exchange: prefix.clone(), prefix, specs: Mutex::new(Vec::new()), db_file }
    }

    fn bus(&self) -> &dyn Bus {
        match &self.adapter {
            Adapter::Memory(bus) => bus,
            Adapter::Amqp(bus) => bus,
        }
    }

    fn unroutable_queue(&self) -> String {
        match &self.adapter {
            Adapter::Memory(bus) => bus.unroutable_queue().to_owned(),
            Adapter::Amqp(bus) => bus.unroutable_queue().to_owned(),
        }
    }

    /// A consumer queue under this test's prefix, with short retry delays.
    fn spec(&self, name: &str, bindings: &[&str]) -> QueueSpec {
        let mut spec = QueueSpec::new(format!("{}.{name}", self.prefix), bindings);
        spec.retry_delays = vec![RETRY_DELAY];
        spec.prefetch = 10;
        self.specs.lock().unwrap().push(spec.clone());
        spec
    }

    async fn finish(&self) {
        match &self.adapter {
            Adapter::Memory(bus) => bus.close().await,
            Adapter::Amqp(bus) => {
                bus.close().await;
                self.delete_amqp_topology().await;
            }
        }
        if let Some(file) = &self.db_file {
            remove_db_files(file);
        }
    }

    async fn delete_amqp_topology(&self) {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let Ok(connection) = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
        else {
            return;
        };
        let mut queues = vec![format!("{}.unroutable", self.exchange)];
        for spec in self.specs.lock().unwrap().iter() {
            queues.push(spec.name.clone());
            queues.push(spec.dead_letter_queue());
            queues.push(format!("{}.bindings", spec.name));
            queues.extend(spec.retry_delays.iter().map(|d| format!("{}.retry.{}", spec.name, d.as_millis())));
        }
        // One channel per deletion: a failure closes its channel.
        for queue in queues {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
            }
        }
        for suffix in ["", ".unroutable", ".dlx", ".retry"] {
            if let Ok(channel) = connection.create_channel().await {
                let name = format!("{}{suffix}", self.exchange);
                let _ = channel.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default()).await;
            }
        }
        let _ = connection.close(200, "OK".into()).await;
    }
}

/// Logs go to the test's captured output (`RUST_LOG` to choose, warnings by default).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// Runs `check` against `target`, cleaning up even when it fails.
async fn run<F, Fut>(target: Target, check: F)
where
    F: FnOnce(Arc<Target>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    init_tracing();
    let target = Arc::new(target);
    let outcome = tokio::spawn(check(target.clone())).await;
    target.finish().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::run(super::Target::memory().await, |t| async move { super::$check(&t).await }).await;
                }
            )*
        }
        mod durable {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::run(super::Target::durable().await, |t| async move { super::$check(&t).await }).await;
                }
            )*
        }
        mod amqp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::run(super::Target::amqp().await, |t| async move { super::$check(&t).await }).await;
                }
            )*
        }
    };
}

contract!(
    round_trip_keeps_the_envelope,
    batch_is_delivered_in_order,
    topic_routing,
    each_consumer_gets_its_own_copy,
    retry_comes_back_to_that_consumer_only,
    retries_exhaust_into_dead_letters,
    dead_letter_keeps_the_reason,
    dropped_delivery_is_redelivered,
    unsettled_drops_exhaust_into_dead_letters,
    a_limit_of_one_allows_no_second_attempt,
    unroutable_is_kept,
    queue_depth_counts_waiting_messages,
    prefetch_bounds_unsettled_deliveries,
    rebinding_adds_before_it_removes,
);

fn envelope(routing_key: &str) -> Envelope {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert(
        HEADER_TRACEPARENT.to_owned(),
        format!("00-{}-{}-01", Uuid::new_v4().simple(), &Uuid::new_v4().simple().to_string()[..16]),
    );
    headers.insert(HEADER_APPEAL_ID.to_owned(), Uuid::new_v4().to_string());
    Envelope {
        message_id: Uuid::now_v7(),
        routing_key: routing_key.to_owned(),
        type_name: "pos.v1.events.AppealReceived".to_owned(),
        // Nanosecond precision on purpose: adapters must keep the timestamp exact.
        timestamp: Utc::now(),
        headers,
        payload: Bytes::from(Uuid::new_v4().as_bytes().to_vec()),
    }
}

type Deliveries = BoxStream<'static, Delivery>;

async fn next(stream: &mut Deliveries) -> Delivery {
    tokio::time::timeout(WAIT, stream.next()).await.expect("a delivery in time").expect("the stream is open")
}

async fn nothing(stream: &mut Deliveries) {
    if let Ok(delivery) = tokio::time::timeout(QUIET, stream.next()).await {
        panic!("unexpected delivery: {:?}", delivery.map(|d| d.envelope));
    }
}

async fn publish(bus: &dyn Bus, envelope: &Envelope) {
    bus.publish(envelope).await.expect("published and confirmed");
}

async fn ack(delivery: Delivery) {
    delivery.settle(Disposition::Ack).await.expect("acked");
}

/// Waits until `queue` holds `expected` messages ready (some adapters count asynchronously).
async fn assert_depth(bus: &dyn Bus, queue: &str, expected: u64) {
    let started = Instant::now();
    loop {
        let depth = bus.queue_depth(queue).await.expect("queue depth");
        if depth == expected {
            return;
        }
        assert!(started.elapsed() < WAIT, "queue {queue} holds {depth} messages, expected {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Drains until `expected` dead letters came out (dead-lettering by a broker is asynchronous).
async fn drain(bus: &dyn Bus, spec: &QueueSpec, expected: usize) -> Vec<Envelope> {
    let started = Instant::now();
    let mut drained = Vec::new();
    while drained.len() < expected {
        drained.extend(bus.drain_dead_letters(spec, expected - drained.len()).await.expect("drained"));
        assert!(started.elapsed() < WAIT, "{} dead letters after {WAIT:?}, expected {expected}", drained.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drained
}

async fn round_trip_keeps_the_envelope(t: &Target) {
    let spec = t.spec("intake", &["appeal.received.41"]);
    let mut deliveries = t.bus().consume(&spec).await.unwrap();
    let sent = envelope("appeal.received.41");
    publish(t.bus(), &sent).await;
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.envelope, sent);
    assert_eq!(delivery.redeliveries, 0);
    assert_eq!(delivery.attempt(), 1);
    ack(delivery).await;
    nothing(&mut deliveries).await;
    assert_depth(t.bus(), &spec.name, 0).await;
}

async fn batch_is_delivered_in_order(t: &Target) {
    let spec = t.spec("ordered", &["appeal.routed.*"]);
    let mut deliveries = t.bus().consume(&spec).await.unwrap();
    let batch: Vec<Envelope> = (0..5).map(|_| envelope("appeal.routed.41")).collect();
    let results = t.bus().publish_batch(&batch).await;
    assert_eq!(results.len(), batch.len());
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for sent in &batch {
        let delivery = next(&mut deliveries).await;
        assert_eq!(&delivery.envelope, sent);
        ack(delivery).await;
    }
}

async fn topic_routing(t: &Target) {
    let region = t.spec("region41", &["appeal.received.41"]);
    let all = t.spec("all", &["appeal.#"]);
    t.bus().declare(&region).await.unwrap();
    t.bus().declare(&all).await.unwrap();
    let (in_41, in_42) = (envelope("appeal.received.41"), envelope("appeal.received.42"));
    publish(t.bus(), &in_41).await;
    publish(t.bus(), &in_42).await;
    assert_depth(t.bus(), &region.name, 1).await;
    assert_depth(t.bus(), &all.name, 2).await;

    let mut regional = t.bus().consume(&region).await.unwrap();
    let delivery = next(&mut regional).await;
    assert_eq!(delivery.envelope.message_id, in_41.message_id);
    ack(delivery).await;
    nothing(&mut regional).await;

    let mut everything = t.bus().consume(&all).await.unwrap();
    for sent in [&in_41, &in_42] {
        let delivery = next(&mut everything).await;
        assert_eq!(delivery.envelope.message_id, sent.message_id);
        ack(delivery).await;
    }
}

async fn each_consumer_gets_its_own_copy(t: &Target) {
    let routing = t.spec("routing", &["appeal.received.*"]);
    let notify = t.spec("notify", &["appeal.received.*"]);
    let mut first = t.bus().consume(&routing).await.unwrap();
    let mut second = t.bus().consume(&notify).await.unwrap();
    let sent = envelope("appeal.received.41");
    publish(t.bus(), &sent).await;
    let (a, b) = (next(&mut first).await, next(&mut second).await);
    assert_eq!(a.envelope, sent);
    assert_eq!(b.envelope, sent);
    ack(a).await;
    ack(b).await;
    nothing(&mut first).await;
    nothing(&mut second).await;
}

async fn retry_comes_back_to_that_consumer_only(t: &Target) {
    let retrying = t.spec("retrying", &["appeal.received.*"]);
    let other = t.spec("other", &["appeal.received.*"]);
    let mut mine = t.bus().consume(&retrying).await.unwrap();
    let mut theirs = t.bus().consume(&other).await.unwrap();
    let sent = envelope("appeal.received.41");
    publish(t.bus(), &sent).await;
    ack(next(&mut theirs).await).await;

    let delivery = next(&mut mine).await;
    let retried_at = Instant::now();
    delivery
        .settle(Disposition::Retry { delay: retrying.retry_delay(0), reason: "peer not ready".to_owned() })
        .await
        .unwrap();
    let again = next(&mut mine).await;
    assert!(
        retried_at.elapsed() >= RETRY_DELAY - Duration::from_millis(50),
        "came back after {:?}",
        retried_at.elapsed()
    );
    let mut expected = sent.clone();
    expected.headers.insert(HEADER_RETRY_COUNT.to_owned(), "1".to_owned());
    assert_eq!(again.envelope, expected);
    assert_eq!(again.envelope.retry_count(), 1);
    assert_eq!(again.redeliveries, 0);
    assert_eq!(again.attempt(), 2);
    ack(again).await;

    nothing(&mut theirs).await;
    assert_depth(t.bus(), &other.name, 0).await;
    assert_depth(t.bus(), &retrying.name, 0).await;
}

async fn retries_exhaust_into_dead_letters(t: &Target) {
    let mut spec = t.spec("flaky", &["appeal.received.*"]);
    spec.delivery_limit = 3;
    let mut deliveries = t.bus().consume(&spec).await.unwrap();
    let sent = envelope("appeal.received.41");
    publish(t.bus(), &sent).await;
    for attempt in 1..=3 {
        let delivery = next(&mut deliveries).await;
        assert_eq!(delivery.attempt(), attempt);
        let delay = spec.retry_delay(delivery.envelope.retry_count());
        delivery.settle(Disposition::Retry { delay, reason: format!("boom {attempt}") }).await.unwrap();
    }
    nothing(&mut deliveries).await;
    let dead = drain(t.bus(), &spec, 1).await;
    assert_eq!(dead[0].message_id, sent.message_id);
    let reason = &dead[0].headers[HEADER_DEATH_REASON];
    assert!(reason.contains("boom 3") && reason.contains("delivery limit"), "{reason}");
    assert_eq!(dead[0].retry_count(), 2);
    assert_depth(t.bus(), &spec.name, 0).await;
    assert!(t.bus().drain_dead_letters(&spec, 10).await.unwrap().is_empty());
}

async fn dead_letter_keeps_the_reason(t: &Target) {
    let spec = t.spec("strict", &["appeal.received.*"]);
    let mut deliveries = t.bus().consume(&spec).await.unwrap();
    let sent = envelope("appeal.received.41");
    publish(t.bus(), &sent).await;
    next(&mut deliveries)
        .await
        .settle(Disposition::DeadLetter { reason: "poison: bad payload".to_owned() })
        .await
        .unwrap();
    nothing(&mut deliveries).await;
    assert_depth(t.bus(), &spec.dead_letter_queue(), 1).await;
    let dead = drain(t.bus(), &spec, 1).await;
    let mut expected = sent.clone();
    expected.headers.insert(HEADER_DEATH_REASON.to_owned(), "poison: bad payload".to_owned());
    assert_eq!(dead, vec![expected]);
    assert_depth(t.bus(), &spec.dead_letter_queue(), 0).await;
    // A consumer never declared has no dead letters rather than an error.
    let stranger = t.spec("never-declared", &[]);
    assert!(t.bus().drain_dead_letters(&stranger, 10).await.unwrap().is_empty());
}

async fn dropped_delivery_is_redelivered(t: &Target) {
    let spec = t.spec("crashy", &["appeal.received.*"]);
    let mut deliveries = t.bus().consume(&spec).await.unwrap();
    let sent = envelope("appeal.received.41");
    publish(t.bus(), &sent).await;
    let first = next(&mut deliveries).await;
    assert_eq!(first.redeliveries, 0);
    drop(first);
    let again = next(&mut deliveries).await;
    assert_eq!(again.envelope, sent);
    assert_eq!(again.redeliveries, 1);
    assert_eq!(again.attempt(), 2);
    ack(again).await;
    nothing(&mut deliveries).await;
    assert_depth(t.bus(), &spec.name, 0).await;
}

async fn unsettled_drops_exhaust_into_dead_letters(t: &Target) {
    let mut spec = t.spec("doomed", &["appeal.received.*"]);
    spec.delivery_limit = 2;
    let mut deliveries = t.bus().consume(&spec).await.unwrap();
    let sent = envelope("appeal.received.41");
    publish(t.bus(), &sent).await;
    drop(next(&mut deliveries).await);
    let second = next(&mut deliveries).await;
    assert_eq!(second.attempt(), 2);
    drop(second);
    nothing(&mut deliveries).await;
    let dead = drain(t.bus(), &spec, 1).await;
    assert_eq!(dead[0].message_id, sent.message_id);
    assert!(dead[0].headers[HEADER_DEATH_REASON].contains("delivery limit"), "{:?}", dead[0].headers);
}

async fn a_limit_of_one_allows_no_second_attempt(t: &Target) {
    let mut spec = t.spec("once", &["appeal.received.*"]);
    spec.delivery_limit = 1;
    let mut deliveries = t.bus().consume(&spec).await.unwrap();
    let (retried, dropped) = (envelope("appeal.received.41"), envelope("appeal.received.41"));
    publish(t.bus(), &retried).await;
    publish(t.bus(), &dropped).await;
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.envelope.message_id, retried.message_id);
    let retry = Disposition::Retry { delay: RETRY_DELAY, reason: "boom".to_owned() };
    delivery.settle(retry).await.unwrap();
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.envelope.message_id, dropped.message_id);
    drop(delivery);
    nothing(&mut deliveries).await;
    let mut dead = drain(t.bus(), &spec, 2).await;
    dead.sort_by_key(|e| e.message_id);
    assert_eq!(dead.iter().map(|e| e.message_id).collect::<Vec<_>>(), vec![retried.message_id, dropped.message_id]);
    for envelope in &dead {
        assert!(envelope.headers[HEADER_DEATH_REASON].contains("delivery limit of 1"), "{:?}", envelope.headers);
    }
}

async fn unroutable_is_kept(t: &Target) {
    let spec = t.spec("bound", &["appeal.received.*"]);
    t.bus().declare(&spec).await.unwrap();
    publish(t.bus(), &envelope("nobody.listens.99")).await;
    assert_depth(t.bus(), &t.unroutable_queue(), 1).await;
    assert_depth(t.bus(), &spec.name, 0).await;
}

async fn queue_depth_counts_waiting_messages(t: &Target) {
    let mut spec = t.spec("backlog", &["appeal.received.*"]);
    spec.prefetch = 1;
    t.bus().declare(&spec).await.unwrap();
    assert_depth(t.bus(), &spec.name, 0).await;
    for _ in 0..3 {
        publish(t.bus(), &envelope("appeal.received.41")).await;
    }
    assert_depth(t.bus(), &spec.name, 3).await;
    let mut deliveries = t.bus().consume(&spec).await.unwrap();
    let first = next(&mut deliveries).await;
    // The one in hand is no longer waiting.
    assert_depth(t.bus(), &spec.name, 2).await;
    ack(first).await;
    for _ in 0..2 {
        ack(next(&mut deliveries).await).await;
    }
    assert_depth(t.bus(), &spec.name, 0).await;
    assert!(t.bus().queue_depth(&format!("{}.missing", t.prefix)).await.is_err());
}

async fn prefetch_bounds_unsettled_deliveries(t: &Target) {
    let mut spec = t.spec("bounded", &["appeal.received.*"]);
    spec.prefetch = 2;
    let mut deliveries = t.bus().consume(&spec).await.unwrap();
    for _ in 0..3 {
        publish(t.bus(), &envelope("appeal.received.41")).await;
    }
    let first = next(&mut deliveries).await;
    let second = next(&mut deliveries).await;
    nothing(&mut deliveries).await;
    ack(first).await;
    let third = next(&mut deliveries).await;
    ack(second).await;
    ack(third).await;
}

/// A deployment restarted with other regions: the queue keeps its messages, the new binding is
/// there before the old one goes, and only the one the spec no longer lists goes.
async fn rebinding_adds_before_it_removes(t: &Target) {
    let before = t.spec("regional", &["appeal.received.41", "appeal.received.16"]);
    t.bus().declare(&before).await.unwrap();
    let (old_41, old_16) = (envelope("appeal.received.41"), envelope("appeal.received.16"));
    publish(t.bus(), &old_41).await;
    publish(t.bus(), &old_16).await;
    assert_depth(t.bus(), &before.name, 2).await;

    let after =
        QueueSpec { bindings: vec!["appeal.received.41".to_owned(), "appeal.received.77".to_owned()], ..before };
    t.bus().declare(&after).await.unwrap();
    // Declaring adds: both the old and the new regions reach the queue until the removal.
    let (new_77, late_16) = (envelope("appeal.received.77"), envelope("appeal.received.16"));
    publish(t.bus(), &new_77).await;
    publish(t.bus(), &late_16).await;
    assert_depth(t.bus(), &after.name, 4).await;

    assert_eq!(t.bus().remove_stale_bindings(&after).await.unwrap(), vec!["appeal.received.16".to_owned()]);
    assert!(t.bus().remove_stale_bindings(&after).await.unwrap().is_empty(), "removed once");
    let (gone_16, still_41) = (envelope("appeal.received.16"), envelope("appeal.received.41"));
    publish(t.bus(), &gone_16).await;
    publish(t.bus(), &still_41).await;
    assert_depth(t.bus(), &t.unroutable_queue(), 1).await;
    assert_depth(t.bus(), &after.name, 5).await;

    // What was queued before the change is still handled, in order.
    let mut deliveries = t.bus().consume(&after).await.unwrap();
    for sent in [&old_41, &old_16, &new_77, &late_16, &still_41] {
        let delivery = next(&mut deliveries).await;
        assert_eq!(delivery.envelope.message_id, sent.message_id);
        ack(delivery).await;
    }
    nothing(&mut deliveries).await;
}

/// The record of what a queue is bound to outlives the process that bound it: the next start,
/// on a bus of its own, removes what the previous one bound and no longer wants.
mod bindings_outlive_the_process {
    use super::*;

    const BEFORE: &[&str] = &["appeal.received.41", "appeal.received.16"];

    /// On a bus other than the one that declared `BEFORE`: re-declared for 41 only, the queue
    /// loses 16 and keeps 41.
    async fn restart_without_16(bus: &dyn Bus, unroutable: &str, name: &str) {
        let after = QueueSpec::new(name, &["appeal.received.41"]);
        bus.declare(&after).await.unwrap();
        assert_eq!(bus.remove_stale_bindings(&after).await.unwrap(), vec!["appeal.received.16".to_owned()]);
        publish(bus, &envelope("appeal.received.16")).await;
        publish(bus, &envelope("appeal.received.41")).await;
        assert_depth(bus, unroutable, 1).await;
        assert_depth(bus, name, 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable() {
        init_tracing();
        let file = temp_db_file();
        let name = unique("durable");
        let first = MemoryBus::durable(sqlite(&file).await).await.unwrap();
        first.declare(&QueueSpec::new(&name, BEFORE)).await.unwrap();
        first.close().await;
        drop(first);
        let second = MemoryBus::durable(sqlite(&file).await).await.unwrap();
        restart_without_16(&second, second.unroutable_queue(), &name).await;
        second.close().await;
        drop(second);
        remove_db_files(&file);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn amqp() {
        init_tracing();
        let exchange = unique("amqp");
        let name = format!("{exchange}.regional");
        let first = AmqpBus::connect(&amqp_url(), &exchange).await.unwrap();
        first.declare(&QueueSpec::new(&name, BEFORE)).await.unwrap();
        first.close().await;
        let second = AmqpBus::connect(&amqp_url(), &exchange).await.unwrap();
        restart_without_16(&second, second.unroutable_queue(), &name).await;
        // Decommissioning removes the record with the queue, and the exchanges with the last queue.
        second.delete_declared().await.unwrap();
        let unroutable = second.unroutable_queue().to_owned();
        // Closed first: a bus that hits a missing queue reconnects and declares its exchanges again.
        second.close().await;
        for queue in [name.clone(), format!("{name}.bindings"), unroutable] {
            assert!(!queue_exists(&queue).await, "{queue} is gone");
        }
    }

    /// Asked on a connection of its own, without declaring anything.
    async fn queue_exists(queue: &str) -> bool {
        use lapin::options::QueueDeclareOptions;
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await.expect("RabbitMQ");
        let channel = connection.create_channel().await.expect("a channel");
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let exists = channel.queue_declare(queue.into(), passive, Default::default()).await.is_ok();
        let _ = connection.close(200, "OK".into()).await;
        exists
    }
}

/// The durable in-process bus: what was published survives the bus, and a process killed
/// with deliveries in hand gets them back, counted as redeliveries.
mod durable_restart {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_survive_the_bus() {
        let file = temp_db_file();
        let spec = QueueSpec {
            retry_delays: vec![Duration::from_millis(300)],
            ..QueueSpec::new("routing.appeal-received", &["appeal.received.*"])
        };
        let (in_hand, waiting, retried, dead) = (
            envelope("appeal.received.41"),
            envelope("appeal.received.41"),
            envelope("appeal.received.41"),
            envelope("appeal.received.41"),
        );
        {
            let bus = MemoryBus::durable(sqlite(&file).await).await.unwrap();
            let mut deliveries = bus.consume(&spec).await.unwrap();
            for sent in [&retried, &dead, &in_hand, &waiting] {
                publish(&bus, sent).await;
            }
            next(&mut deliveries)
                .await
                .settle(Disposition::Retry { delay: Duration::from_millis(300), reason: "later".to_owned() })
                .await
                .unwrap();
            next(&mut deliveries).await.settle(Disposition::DeadLetter { reason: "poison".to_owned() }).await.unwrap();
            // As if the process died handling it: never settled, never returned.
            std::mem::forget(next(&mut deliveries).await);
            drop(deliveries);
        }

        let bus = MemoryBus::durable(sqlite(&file).await).await.unwrap();
        // Routing survives too: published before the consumer declares its queue again.
        let late = envelope("appeal.received.42");
        publish(&bus, &late).await;
        assert_depth(&bus, bus.unroutable_queue(), 0).await;

        let mut deliveries = bus.consume(&spec).await.unwrap();
        let first = next(&mut deliveries).await;
        assert_eq!(first.envelope, in_hand);
        assert_eq!(first.redeliveries, 1);
        ack(first).await;
        // The retry may or may not be due before `late`: compare by id, not by order.
        let mut expected_retry = retried.clone();
        expected_retry.headers.insert(HEADER_RETRY_COUNT.to_owned(), "1".to_owned());
        let mut expected: Vec<Envelope> = vec![waiting.clone(), late.clone(), expected_retry];
        for _ in 0..3 {
            let delivery = next(&mut deliveries).await;
            assert_eq!(delivery.redeliveries, 0);
            let index = expected
                .iter()
                .position(|e| e.message_id == delivery.envelope.message_id)
                .expect("an expected message");
            assert_eq!(delivery.envelope, expected.remove(index));
            ack(delivery).await;
        }
        nothing(&mut deliveries).await;
        let drained = bus.drain_dead_letters(&spec, 10).await.unwrap();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].message_id, dead.message_id);
        assert_eq!(drained[0].headers[HEADER_DEATH_REASON], "poison");
        drop(deliveries);
        bus.close().await;
        drop(bus);

        // Everything settled is gone for good.
        let bus = MemoryBus::durable(sqlite(&file).await).await.unwrap();
        assert_depth(&bus, &spec.name, 0).await;
        assert_depth(&bus, &spec.dead_letter_queue(), 0).await;
        drop(bus);
        remove_db_files(&file);
    }

    const CHILD_DB: &str = "POS_BUS_TEST_CHILD_DB";
    const CHILD_PUBLISHED: &str = "child: published";

    /// Run by `survives_sigkill` in a child process: publishes and waits to be killed.
    #[tokio::test]
    #[ignore = "run by survives_sigkill in a child process"]
    async fn child_publishes_then_waits() {
        let Ok(file) = std::env::var(CHILD_DB) else {
            return;
        };
        let bus = MemoryBus::durable(sqlite(std::path::Path::new(&file)).await).await.unwrap();
        let spec = QueueSpec::new("sla.appeal-routed", &["appeal.routed.*"]);
        let mut deliveries = bus.consume(&spec).await.unwrap();
        let batch: Vec<Envelope> = (0..20).map(|_| envelope("appeal.routed.41")).collect();
        assert!(bus.publish_batch(&batch).await.iter().all(Result::is_ok));
        let _in_hand = next(&mut deliveries).await;
        println!("{CHILD_PUBLISHED}");
        std::future::pending::<()>().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_sigkill() {
        use std::io::{BufRead, BufReader};
        let file = temp_db_file();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["durable_restart::child_publishes_then_waits", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_DB, &file)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let published = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.contains(CHILD_PUBLISHED))
        });
        let published = tokio::time::timeout(WAIT, published).await.expect("child published in time").unwrap();
        assert!(published, "the child did not publish");
        // SIGKILL: no destructor, no flush, nothing.
        child.kill().unwrap();
        child.wait().unwrap();

        let bus = MemoryBus::durable(sqlite(&file).await).await.unwrap();
        let spec = QueueSpec::new("sla.appeal-routed", &["appeal.routed.*"]);
        let mut deliveries = bus.consume(&spec).await.unwrap();
        let mut redelivered = 0;
        for _ in 0..20 {
            let delivery = next(&mut deliveries).await;
            redelivered += delivery.redeliveries;
            ack(delivery).await;
        }
        nothing(&mut deliveries).await;
        assert_eq!(redelivered, 1, "the delivery in hand at the kill comes back counted");
        drop(deliveries);
        drop(bus);
        remove_db_files(&file);
    }
}

/// The RabbitMQ adapter across a broker restart, on a private node so that no other test is
/// disturbed. Needs the `rabbitmq-server` scripts (Debian's switch to the `rabbitmq` user when
/// run as root); takes about 15 s, most of it the node's start.
mod amqp_restart {
    use super::*;
    use pos_platform::bus::BusError;

    use pos_platform::testing::RabbitNode as Node;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fault_streams_and_publishing_survive_a_broker_restart() {
        init_tracing();
        let node = tokio::task::spawn_blocking(Node::start).await.unwrap();
        let bus = AmqpBus::connect(&node.url(), "pos.events").await.unwrap();
        let mut spec = QueueSpec::new("routing.appeal-received", &["appeal.received.*"]);
        spec.retry_delays = vec![RETRY_DELAY];
        let mut deliveries = bus.consume(&spec).await.unwrap();
        let before = envelope("appeal.received.41");
        publish(&bus, &before).await;
        let held = next(&mut deliveries).await;
        assert_eq!(held.envelope, before);

        // The broker goes away: connections close, listeners stop, queues stay on disk.
        let node = tokio::task::spawn_blocking(move || {
            node.stop_app();
            node
        })
        .await
        .unwrap();
        let outage = Instant::now();
        let during = bus.publish(&envelope("appeal.received.41")).await;
        assert!(matches!(during, Err(BusError::Unavailable(_))), "{during:?}");
        assert!(outage.elapsed() < Duration::from_secs(5), "publishing took {:?}", outage.elapsed());
        assert!(held.settle(Disposition::Ack).await.is_err(), "an ack on the dead connection cannot succeed");

        let node = tokio::task::spawn_blocking(move || {
            node.start_app();
            node
        })
        .await
        .unwrap();
        let after = envelope("appeal.received.41");
        let restarted = Instant::now();
        loop {
            match bus.publish(&after).await {
                Ok(()) => break,
                Err(BusError::Unavailable(_)) if restarted.elapsed() < WAIT => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("publishing after the restart: {error}"),
            }
        }
        // The same stream goes on: the delivery unsettled at the restart comes back first.
        let again = next(&mut deliveries).await;
        assert_eq!(again.envelope, before);
        ack(again).await;
        let delivery = next(&mut deliveries).await;
        assert_eq!(delivery.envelope, after);
        ack(delivery).await;
        nothing(&mut deliveries).await;
        assert_eq!(bus.queue_depth(&spec.name).await.unwrap(), 0);
        bus.close().await;
        drop(deliveries);
        tokio::task::spawn_blocking(move || drop(node)).await.unwrap();
    }
}

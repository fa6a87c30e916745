//! The RabbitMQ bus given several nodes: it connects to the first that answers, and when the
//! node it is on stops it moves to another, with its consume streams and publishing intact.
//! The check on a dead node needs only the local broker (`POS_TEST_AMQP_URL`); the cluster
//! checks start a three-node cluster of their own (`rabbitmq-server` on PATH; about a minute,
//! most of it the nodes' boot and joining).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use pos_platform::bus::amqp::AmqpBus;
use pos_platform::bus::{Bus, BusError, Delivery, Disposition, Envelope, QueueSpec};
use pos_platform::testing::{ClusterQueue, RabbitCluster};
use uuid::Uuid;

/// Longest wait for something that should happen; a quorum queue's leader election included.
const WAIT: Duration = Duration::from_secs(30);

type Deliveries = BoxStream<'static, Delivery>;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

fn local_broker() -> String {
    std::env::var("POS_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A loopback port nothing listens on: connecting to it is refused.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn envelope(routing_key: &str) -> Envelope {
    Envelope {
        message_id: Uuid::now_v7(),
        routing_key: routing_key.to_owned(),
        type_name: "pos.v1.events.AppealReceived".to_owned(),
        timestamp: Utc::now(),
        headers: BTreeMap::new(),
        payload: Bytes::from(Uuid::new_v4().to_string()),
    }
}

async fn next(stream: &mut Deliveries) -> Delivery {
    tokio::time::timeout(WAIT, stream.next()).await.expect("a delivery in time").expect("the stream is open")
}

/// Publishes until the broker confirms, through a reconnection if there is one.
async fn publish_eventually(bus: &AmqpBus, envelope: &Envelope) {
    let started = Instant::now();
    loop {
        match bus.publish(envelope).await {
            Ok(()) => return,
            Err(BusError::Unavailable(_) | BusError::Nacked(_)) if started.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("publishing {}: {error}", envelope.message_id),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_given_a_dead_node_first_connects_to_the_next() {
    init_tracing();
    let exchange = format!("test.failover.{}", Uuid::new_v4().simple());
    let nodes = format!("amqp://guest:s3cret@127.0.0.1:{}/%2f, {}", dead_port(), local_broker());
    let bus = AmqpBus::connect(&nodes, &exchange).await.expect("the second node answers");
    let spec = QueueSpec::new(format!("{exchange}.routing"), &["appeal.received.*"]);
    let mut deliveries = bus.consume(&spec).await.unwrap();
    let sent = envelope("appeal.received.41");
    bus.publish(&sent).await.expect("published");
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.envelope, sent);
    delivery.settle(Disposition::Ack).await.expect("acked");
    drop(deliveries);
    bus.delete_declared().await.expect("topology removed");
    bus.close().await;

    // No node answers: unavailable, and the error names the nodes without their passwords.
    let dead = format!("amqp://guest:s3cret@127.0.0.1:{0}/%2f,amqp://guest:s3cret@127.0.0.1:{0}/%2f", dead_port());
    let error = AmqpBus::connect(&dead, &exchange).await.err().expect("no node answers");
    assert!(matches!(error, BusError::Unavailable(_)), "{error:?}");
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

/// Asserts that the cluster lists every queue named in `names`, each a quorum queue with a
/// member on every node, and (with `online`) every member up.
fn assert_replicated(queues: &[ClusterQueue], names: &[String], nodes: usize, online: bool) {
    for name in names {
        let queue = queues.iter().find(|q| &q.name == name).unwrap_or_else(|| panic!("queue {name} in {queues:?}"));
        assert_eq!(queue.kind, "quorum", "{queue:?}");
        assert_eq!(queue.members.len(), nodes, "a member on every node: {queue:?}");
        if online {
            assert_eq!(queue.online.len(), nodes, "every member up: {queue:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_a_bus_moves_to_another_node_when_its_node_stops() {
    init_tracing();
    let cluster = tokio::task::spawn_blocking(|| RabbitCluster::start(3)).await.unwrap();
    assert_eq!(cluster.len(), 3);
    let exchange = "pos.events";
    // Listed first, the first node is the one the bus is on.
    let bus = AmqpBus::connect(&cluster.url(), exchange).await.unwrap();
    let mut spec = QueueSpec::new("routing.appeal-received", &["appeal.received.*"]);
    spec.retry_delays = vec![Duration::from_millis(250)];
    let mut deliveries = bus.consume(&spec).await.unwrap();

    // Each queue of the topology has a replica on every node.
    let mut names = vec![
        spec.name.clone(),
        spec.dead_letter_queue(),
        format!("{}.bindings", spec.name),
        format!("{}.retry.250", spec.name),
        bus.unroutable_queue().to_owned(),
    ];
    names.sort();
    let (cluster, queues) = tokio::task::spawn_blocking(move || {
        let queues = cluster.queues();
        (cluster, queues)
    })
    .await
    .unwrap();
    assert_replicated(&queues, &names, 3, true);

    let before = envelope("appeal.received.41");
    bus.publish(&before).await.unwrap();
    let held = next(&mut deliveries).await;
    assert_eq!(held.envelope, before);
    let cluster = tokio::task::spawn_blocking(move || {
        assert_eq!(cluster.connections_per_node(), [1, 0, 0], "the bus is on the node listed first");
        cluster
    })
    .await
    .unwrap();

    // The node the bus is on stops; the other two go on.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_node(0);
        cluster
    })
    .await
    .unwrap();
    let moved = Instant::now();
    let during = envelope("appeal.received.41");
    publish_eventually(&bus, &during).await;
    let failover = moved.elapsed();
    assert!(held.settle(Disposition::Ack).await.is_err(), "an ack on the lost connection cannot succeed");
    // The same stream goes on over the new connection: the delivery unsettled on the lost one
    // comes back, and the one published meanwhile arrives.
    let mut arrived = Vec::new();
    for _ in 0..2 {
        let delivery = next(&mut deliveries).await;
        arrived.push(delivery.envelope.message_id);
        delivery.settle(Disposition::Ack).await.expect("acked on the new connection");
    }
    arrived.sort();
    let mut expected = vec![before.message_id, during.message_id];
    expected.sort();
    assert_eq!(arrived, expected);
    let cluster = tokio::task::spawn_blocking(move || {
        assert_eq!(cluster.connections_per_node(), [0, 1, 0], "the bus moved to the node after its own");
        cluster
    })
    .await
    .unwrap();

    // A bus connecting while the first node is down skips it.
    let second = AmqpBus::connect(&cluster.url(), exchange).await.expect("a running node answers");
    let from_second = envelope("appeal.received.41");
    publish_eventually(&second, &from_second).await;
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.envelope, from_second);
    delivery.settle(Disposition::Ack).await.unwrap();
    second.close().await;

    // Back again, the node catches up and holds its replicas.
    let (cluster, queues) = tokio::task::spawn_blocking(move || {
        cluster.start_node(0);
        let queues = cluster.queues();
        (cluster, queues)
    })
    .await
    .unwrap();
    assert_replicated(&queues, &names, 3, true);
    let after = envelope("appeal.received.41");
    bus.publish(&after).await.unwrap();
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.envelope, after);
    delivery.settle(Disposition::Ack).await.unwrap();
    assert_eq!(bus.queue_depth(&spec.name).await.unwrap(), 0);
    println!("amqp cluster: the bus published again {:.1}s after its node stopped", failover.as_secs_f64());

    bus.close().await;
    drop(deliveries);
    tokio::task::spawn_blocking(move || drop(cluster)).await.unwrap();
}

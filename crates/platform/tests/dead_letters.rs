//! Dead letters as a tool, on both buses: a consumer gives up on an event, an operator lists it
//! with its reason, reads its payload, and after the fix replays it: it is handled exactly once,
//! however often it is replayed or redelivered. Dropping removes one; the depth gauge follows.
//! On the journaled in-process bus, what an operator did survives a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pos_platform::auth::Role;
use pos_platform::bus::memory::MemoryBus;
use pos_platform::bus::{Bus, DeadLetterAction, DeadLetterSelection, Disposition, Envelope, QueueSpec};
use pos_platform::consumer::{Consumer, HandleError, Handler};
use pos_platform::db::{Db, Migrations, Tx};
use pos_platform::host::Component;
use pos_platform::testing::{self, TestDb, TestOptions, TestServer, eventually};
use pos_proto::v1::events::AppealReceived;
use pos_proto::v1::operations as pb;
use pos_proto::v1::operations::dead_letter_service_client::DeadLetterServiceClient;
use sqlx::migrate::Migrator;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

static NONE: Migrator = Migrator::DEFAULT;
static PLATFORM_ONLY: Migrations = Migrations { postgres: &NONE, sqlite: &NONE };

const CONSUMER: &str = "routing.dlq-check";
const WAIT: Duration = Duration::from_secs(20);

/// Refuses every event as poison while `failing`, like a handler with a bug; records what it
/// applied otherwise.
#[derive(Clone, Default)]
struct Fixable {
    failing: Arc<AtomicBool>,
    applied: Arc<Mutex<Vec<Uuid>>>,
}

impl Fixable {
    fn applied(&self, id: Uuid) -> usize {
        self.applied.lock().unwrap().iter().filter(|applied| **applied == id).count()
    }
}

#[async_trait]
impl Handler for Fixable {
    type Event = AppealReceived;

    async fn handle(&self, _: &mut Tx, event: AppealReceived, envelope: &Envelope) -> Result<(), HandleError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(HandleError::poison(anyhow::anyhow!("region {} is not configured", event.region_code)));
        }
        self.applied.lock().unwrap().push(envelope.message_id);
        Ok(())
    }
}

async fn serve(rabbitmq: bool, handler: Fixable) -> TestServer {
    let options = TestOptions { db: TestDb::Sqlite, rabbitmq, ..TestOptions::default() };
    TestServer::spawn("routing", &PLATFORM_ONLY, options, move |ctx| async move {
        let consumer = Consumer::new(CONSUMER, &["*".to_owned()], handler);
        Ok(Component::new("routing", ctx.db, tonic::service::Routes::default(), vec![]).consumer(consumer))
    })
    .await
}

fn event(appeal_id: &str) -> Envelope {
    let event = AppealReceived {
        appeal_id: appeal_id.to_owned(),
        region_code: "41".to_owned(),
        public_text: "Не вывозят мусор".to_owned(),
        ..Default::default()
    };
    Envelope::new(&event, "41").with_appeal(appeal_id)
}

fn operator() -> String {
    testing::token("duty-operator", "", "", &[Role::Operator])
}

fn client(channel: Channel) -> DeadLetterServiceClient<Channel> {
    DeadLetterServiceClient::new(channel)
}

fn call<T>(message: T, token: &str) -> tonic::Request<T> {
    pos_platform::grpc::outgoing(message, token)
}

async fn listed(client: &DeadLetterServiceClient<Channel>, queue: &str) -> pb::ListDeadLettersResponse {
    let request = pb::ListDeadLettersRequest { queue: queue.to_owned(), ..Default::default() };
    client.clone().list_dead_letters(call(request, &operator())).await.expect("listed").into_inner()
}

async fn wait_for_depth(client: &DeadLetterServiceClient<Channel>, queue: &str, depth: u64) {
    eventually(WAIT, &format!("{queue} holds {depth} dead letters"), || async move {
        listed(client, queue).await.queues.first().is_some_and(|q| q.depth == depth)
    })
    .await;
}

/// The gauge as `/metrics` shows it, once it says `depth`.
async fn wait_for_gauge(queue: &str, depth: u64) {
    let line = format!("pos_dead_letters{{queue=\"{queue}\"}} {depth}");
    eventually(WAIT, &format!("the gauge says {line}"), || {
        let line = line.clone();
        async move { pos_platform::metrics::install().render().lines().any(|l| l == line) }
    })
    .await;
}

async fn operator_fixes_and_replays(rabbitmq: bool) {
    let handler = Fixable::default();
    handler.failing.store(true, Ordering::SeqCst);
    let server = serve(rabbitmq, handler.clone()).await;
    let queue = server.queue(CONSUMER);
    let dlq = client(server.channel());

    // The consumer gives up on an event.
    let sent = event("a-1");
    server.bus().publish(&sent).await.expect("published");
    wait_for_depth(&dlq, CONSUMER, 1).await;
    wait_for_gauge(&queue, 1).await;

    // Every queue, with its depth and its oldest dead letter.
    let all = client(server.channel())
        .list_dead_letters(call(pb::ListDeadLettersRequest::default(), &operator()))
        .await
        .unwrap()
        .into_inner();
    let listed_queue = all.queues.iter().find(|q| q.queue == queue).expect("the consumer's queue is listed");
    assert_eq!((listed_queue.depth, listed_queue.service.as_str()), (1, "routing"), "{all:?}");
    assert_eq!(listed_queue.dead_letter_queue, format!("{queue}.dead"));
    assert!(listed_queue.oldest.is_some(), "{all:?}");
    assert!(all.messages.is_empty() && all.unreachable.is_empty(), "{all:?}");

    // One queue's messages, with the reason; by the name on the bus as well as the short one.
    let one = listed(&dlq, &queue).await;
    assert_eq!(one.messages.len(), 1, "{one:?}");
    let summary = &one.messages[0];
    assert_eq!(summary.message_id, sent.message_id.to_string());
    assert_eq!(summary.type_name, "pos.v1.events.AppealReceived");
    assert_eq!(summary.routing_key, "appeal.received.41");
    assert_eq!(summary.appeal_id, "a-1");
    assert!(summary.reason.contains("region 41 is not configured"), "{summary:?}");
    assert_eq!(summary.delivery_count, 1, "a poison event dies at its first delivery");
    assert_eq!(summary.size, sent.payload.len() as u64);
    assert!(summary.dead_lettered_at.is_some(), "{summary:?}");

    // Its payload, decoded.
    let letter = dlq
        .clone()
        .get_dead_letter(call(
            pb::GetDeadLetterRequest { queue: CONSUMER.to_owned(), message_id: sent.message_id.to_string() },
            &operator(),
        ))
        .await
        .unwrap()
        .into_inner();
    let payload: serde_json::Value = serde_json::from_str(&letter.payload_json).expect("JSON");
    assert_eq!(payload["appeal_id"], "a-1", "{}", letter.payload_json);
    assert_eq!(payload["public_text"], "Не вывозят мусор");
    assert!(letter.headers["x-death-reason"].contains("region 41"), "{:?}", letter.headers);
    // Looking took nothing away.
    wait_for_depth(&dlq, CONSUMER, 1).await;

    // Roles first, then the body: an applicant learns nothing about the request's shape.
    let applicant = testing::token("citizen", "", "", &[Role::Applicant]);
    let denied =
        dlq.clone().replay_dead_letter(call(pb::ReplayDeadLetterRequest::default(), &applicant)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let invalid = dlq
        .clone()
        .replay_dead_letter(call(
            pb::ReplayDeadLetterRequest { queue: CONSUMER.to_owned(), message_id: "x".to_owned(), all: true },
            &operator(),
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");
    let unknown = dlq
        .clone()
        .get_dead_letter(call(
            pb::GetDeadLetterRequest { queue: "routing.nothing".to_owned(), message_id: Uuid::nil().to_string() },
            &operator(),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    // The fix, then the replay: handled once, and the dead-letter queue is empty.
    handler.failing.store(false, Ordering::SeqCst);
    let replay =
        pb::ReplayDeadLetterRequest { queue: CONSUMER.to_owned(), message_id: sent.message_id.to_string(), all: false };
    let replayed = dlq.clone().replay_dead_letter(call(replay.clone(), &operator())).await.unwrap().into_inner();
    assert_eq!(replayed.message_ids, vec![sent.message_id.to_string()]);
    eventually(WAIT, "the replayed event is handled", || async { handler.applied(sent.message_id) == 1 }).await;
    wait_for_depth(&dlq, CONSUMER, 0).await;
    wait_for_gauge(&queue, 0).await;

    // A second replay finds nothing; the same event delivered again changes nothing.
    let again = dlq.clone().replay_dead_letter(call(replay, &operator())).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    server.bus().publish(&sent).await.expect("published again");
    let duplicate = format!("pos_consumer_deliveries_total{{queue=\"{queue}\",outcome=\"duplicate\"}} 1");
    eventually(WAIT, "the duplicate is seen as one", || {
        let duplicate = duplicate.clone();
        async move { pos_platform::metrics::install().render().lines().any(|l| l == duplicate) }
    })
    .await;
    assert_eq!(handler.applied(sent.message_id), 1, "applied exactly once");

    // Two more die; one is dropped, the other replayed with `all`.
    handler.failing.store(true, Ordering::SeqCst);
    let (doomed, kept) = (event("a-2"), event("a-3"));
    server.bus().publish_batch(&[doomed.clone(), kept.clone()]).await.into_iter().for_each(|r| r.unwrap());
    wait_for_depth(&dlq, CONSUMER, 2).await;
    wait_for_gauge(&queue, 2).await;
    let dropped = dlq
        .clone()
        .drop_dead_letter(call(
            pb::DropDeadLetterRequest { queue: queue.clone(), message_id: doomed.message_id.to_string() },
            &operator(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dropped.message_ids, vec![doomed.message_id.to_string()]);
    // The other stays (on RabbitMQ it comes back from the drop's look a moment later).
    let kept_id = kept.message_id.to_string();
    eventually(WAIT, "only the kept dead letter is left", || {
        let (dlq, kept_id) = (dlq.clone(), kept_id.clone());
        async move {
            let left = listed(&dlq, CONSUMER).await;
            left.messages.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>() == vec![kept_id]
        }
    })
    .await;
    handler.failing.store(false, Ordering::SeqCst);
    let all = pb::ReplayDeadLetterRequest { queue: CONSUMER.to_owned(), all: true, ..Default::default() };
    let replayed = dlq.clone().replay_dead_letter(call(all, &operator())).await.unwrap().into_inner();
    assert_eq!(replayed.message_ids, vec![kept.message_id.to_string()]);
    eventually(WAIT, "the kept event is handled", || async { handler.applied(kept.message_id) == 1 }).await;
    wait_for_depth(&dlq, CONSUMER, 0).await;
    wait_for_gauge(&queue, 0).await;
    assert_eq!(handler.applied(doomed.message_id), 0, "a dropped event is never applied");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_on_the_memory_bus_is_handled_once() {
    operator_fixes_and_replays(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_on_rabbitmq_is_handled_once() {
    operator_fixes_and_replays(true).await;
}

/// A process that does not run routing answers for routing's dead letters through its peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_calls_for_another_service_go_to_its_peer() {
    let handler = Fixable::default();
    handler.failing.store(true, Ordering::SeqCst);
    let routing = serve(false, handler).await;
    let sent = event("a-9");
    routing.bus().publish(&sent).await.unwrap();
    wait_for_depth(&client(routing.channel()), CONSUMER, 1).await;

    let peer = routing.endpoint.clone();
    let options = TestOptions {
        db: TestDb::Sqlite,
        configure: Box::new(move |config| config.peers.routing = vec![peer]),
        ..TestOptions::default()
    };
    let front = TestServer::spawn("sla", &PLATFORM_ONLY, options, |ctx| async move {
        Ok(Component::new("sla", ctx.db, tonic::service::Routes::default(), vec![]))
    })
    .await;
    let dlq = client(front.channel());
    let all = dlq
        .clone()
        .list_dead_letters(call(pb::ListDeadLettersRequest::default(), &operator()))
        .await
        .unwrap()
        .into_inner();
    let queue = routing.queue(CONSUMER);
    assert!(all.queues.iter().any(|q| q.queue == queue && q.depth == 1), "{all:?}");
    // A local-only list is the front's own: it runs no consumer.
    let local = dlq
        .clone()
        .list_dead_letters(call(pb::ListDeadLettersRequest { local_only: true, ..Default::default() }, &operator()))
        .await
        .unwrap()
        .into_inner();
    assert!(local.queues.is_empty(), "{local:?}");
    // By the consumer's short name (the two test servers run on exchanges of their own, so
    // their names on the bus differ; a deployment's processes share them).
    let letter = dlq
        .clone()
        .get_dead_letter(call(
            pb::GetDeadLetterRequest { queue: CONSUMER.to_owned(), message_id: sent.message_id.to_string() },
            &operator(),
        ))
        .await
        .expect("answered by the peer")
        .into_inner();
    assert_eq!(letter.summary.unwrap().message_id, sent.message_id.to_string());
    assert_eq!(letter.queue, queue);

    front.stop().await;
    routing.stop().await;
}

/// On the journaled bus, a replay and a drop are written down: a restart finds the replayed
/// event on its consumer's queue, a first delivery again, and the dropped one gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_settlements_survive_a_restart_of_the_journaled_bus() {
    let dir = testing::TempDir::new();
    let url = pos_platform::host::sqlite_url(&dir.0, "bus");
    let spec = QueueSpec::new("routing.journaled", &["appeal.received.*"]);
    let (replayed, dropped) = (event("a-4"), event("a-5"));
    {
        let bus = MemoryBus::durable(Db::connect(&url, "bus", 2).await.unwrap()).await.unwrap();
        let mut deliveries = bus.consume(&spec).await.unwrap();
        bus.publish_batch(&[replayed.clone(), dropped.clone()]).await.into_iter().for_each(|r| r.unwrap());
        for _ in 0..2 {
            use futures::StreamExt;
            let delivery = deliveries.next().await.unwrap();
            delivery.settle(Disposition::DeadLetter { reason: "poison: no region".to_owned() }).await.unwrap();
        }
        let peeked = bus.peek_dead_letters(&spec, 10).await.unwrap();
        assert_eq!(peeked.len(), 2);
        assert_eq!(peeked[0].attempts, 1);
        bus.settle_dead_letters(&spec, DeadLetterSelection::Message(replayed.message_id), DeadLetterAction::Replay)
            .await
            .unwrap();
        bus.settle_dead_letters(&spec, DeadLetterSelection::Message(dropped.message_id), DeadLetterAction::Drop)
            .await
            .unwrap();
        drop(deliveries);
        bus.close().await;
    }
    let bus = MemoryBus::durable(Db::connect(&url, "bus", 2).await.unwrap()).await.unwrap();
    assert!(bus.peek_dead_letters(&spec, 10).await.unwrap().is_empty(), "nothing is left dead");
    assert_eq!(bus.queue_depth(&spec.name).await.unwrap(), 1);
    let mut deliveries = bus.consume(&spec).await.unwrap();
    let delivery = futures::StreamExt::next(&mut deliveries).await.unwrap();
    assert_eq!(delivery.envelope, replayed, "the same event, without what its death added");
    assert_eq!(delivery.attempt(), 1, "a whole delivery budget");
    delivery.settle(Disposition::Ack).await.unwrap();
    bus.close().await;
}

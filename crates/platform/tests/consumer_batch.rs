//! Deliveries that are ready together are handled in one transaction and acked after its
//! commit, with the guarantees of one delivery at a time: a poison delivery alone is
//! dead-lettered, a failing one alone is retried, a duplicate changes nothing, and every other
//! delivery's effect is written once. On SQLite and on the local PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pos_platform::bus::memory::MemoryBus;
use pos_platform::bus::{Bus, BusError, Delivery, Disposition, Envelope, QueueSpec, Settle};
use pos_platform::consumer::{self, Consumer, HandleError, Handler, Outcome};
use pos_platform::db::{Db, Migrations, Tx};
use pos_platform::testing::{self, eventually};
use pos_proto::v1::events::AppealReceived;
use sqlx::migrate::Migrator;
use sqlx::{Executor, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

static NONE: Migrator = Migrator::DEFAULT;
static PLATFORM_ONLY: Migrations = Migrations { postgres: &NONE, sqlite: &NONE };

const QUEUE: &str = "test.batch";
const WAIT: Duration = Duration::from_secs(20);

/// What the handler saw of one call: the appeal, and the effects visible inside its
/// transaction and from another connection.
#[derive(Clone, Debug)]
struct Call {
    appeal_id: String,
    inside: i64,
    outside: i64,
}

/// Writes one `effects` row per event; refuses appeals named `poison-…` as poison and
/// `transient-…` as a passing failure.
#[derive(Clone)]
struct Effects {
    db: Db,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Effects {
    fn new(db: &Db) -> Effects {
        Effects { db: db.clone(), calls: Arc::default() }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Handler for Effects {
    type Event = AppealReceived;

    async fn handle(&self, tx: &mut Tx, event: AppealReceived, envelope: &Envelope) -> Result<(), HandleError> {
        if event.appeal_id.starts_with("poison") {
            self.calls.lock().unwrap().push(Call { appeal_id: event.appeal_id, inside: -1, outside: -1 });
            return Err(HandleError::poison(anyhow::anyhow!("unreadable appeal")));
        }
        if event.appeal_id.starts_with("transient") {
            self.calls.lock().unwrap().push(Call { appeal_id: event.appeal_id, inside: -1, outside: -1 });
            return Err(HandleError::Transient(anyhow::anyhow!("a peer is not ready")));
        }
        sqlx::query("INSERT INTO effects (message_id, appeal_id) VALUES ($1, $2)")
            .bind(envelope.message_id.to_string())
            .bind(&event.appeal_id)
            .execute(&mut **tx)
            .await?;
        let inside: i64 = sqlx::query("SELECT count(*) AS n FROM effects").fetch_one(&mut **tx).await?.get("n");
        let outside: i64 = sqlx::query("SELECT count(*) AS n FROM effects").fetch_one(self.db.pool()).await?.get("n");
        self.calls.lock().unwrap().push(Call { appeal_id: event.appeal_id, inside, outside });
        Ok(())
    }
}

/// What a settle saw, from another connection, when it was called.
#[derive(Clone, Debug)]
struct Settled {
    message_id: Uuid,
    disposition: Disposition,
    in_inbox: bool,
    effects: i64,
}

/// Settles like a bus would, looking first at what is committed.
struct Witness {
    db: Db,
    settled: Arc<Mutex<Vec<Settled>>>,
}

#[async_trait]
impl Settle for Witness {
    async fn settle(self: Box<Self>, envelope: &Envelope, disposition: Disposition) -> Result<(), BusError> {
        let look = async {
            let in_inbox: i64 = sqlx::query("SELECT count(*) AS n FROM inbox WHERE consumer = $1 AND message_id = $2")
                .bind(QUEUE)
                .bind(envelope.message_id.to_string())
                .fetch_one(self.db.pool())
                .await?
                .get("n");
            let effects: i64 =
                sqlx::query("SELECT count(*) AS n FROM effects").fetch_one(self.db.pool()).await?.get("n");
            Ok::<_, sqlx::Error>((in_inbox == 1, effects))
        };
        let (in_inbox, effects) = look.await.map_err(|e| BusError::Other(e.to_string()))?;
        let message_id = envelope.message_id;
        self.settled.lock().unwrap().push(Settled { message_id, disposition, in_inbox, effects });
        Ok(())
    }
}

/// A database of either kind with the `effects` table, and the settles it saw.
struct Fixture {
    db: Db,
    _dir: Option<testing::TempDir>,
    settled: Arc<Mutex<Vec<Settled>>>,
}

impl Fixture {
    async fn new(postgres: bool) -> Fixture {
        let (db, dir) = if postgres {
            (testing::postgres_db("consumer", &PLATFORM_ONLY).await, None)
        } else {
            let (db, dir) = testing::sqlite_db("consumer", &PLATFORM_ONLY).await;
            (db, Some(dir))
        };
        db.pool().execute("CREATE TABLE effects (message_id TEXT NOT NULL, appeal_id TEXT NOT NULL)").await.unwrap();
        Fixture { db, _dir: dir, settled: Arc::default() }
    }

    fn delivery(&self, envelope: &Envelope) -> Delivery {
        let witness = Witness { db: self.db.clone(), settled: self.settled.clone() };
        Delivery::new(envelope.clone(), 0, Box::new(witness))
    }

    fn settled(&self) -> Vec<Settled> {
        self.settled.lock().unwrap().clone()
    }

    /// How many effects the event of `envelope` left.
    async fn effects_of(&self, envelope: &Envelope) -> i64 {
        sqlx::query("SELECT count(*) AS n FROM effects WHERE message_id = $1")
            .bind(envelope.message_id.to_string())
            .fetch_one(self.db.pool())
            .await
            .unwrap()
            .get("n")
    }

    async fn in_inbox(&self, envelope: &Envelope) -> bool {
        let n: i64 = sqlx::query("SELECT count(*) AS n FROM inbox WHERE consumer = $1 AND message_id = $2")
            .bind(QUEUE)
            .bind(envelope.message_id.to_string())
            .fetch_one(self.db.pool())
            .await
            .unwrap()
            .get("n");
        n == 1
    }

    async fn close(self) {
        self.db.drop_schema().await.unwrap();
        self.db.close().await;
    }
}

fn spec() -> QueueSpec {
    QueueSpec::new(QUEUE, &["appeal.received.*"])
}

fn event(appeal_id: &str) -> Envelope {
    let event = AppealReceived { appeal_id: appeal_id.to_owned(), region_code: "41".to_owned(), ..Default::default() };
    Envelope::new(&event, "41").with_appeal(appeal_id)
}

fn outcomes(settled: Vec<anyhow::Result<Outcome>>) -> Vec<Outcome> {
    settled.into_iter().map(|outcome| outcome.expect("settled")).collect()
}

async fn batch_commits_once_and_acks_after_the_commit(postgres: bool) {
    let fixture = Fixture::new(postgres).await;
    let handler = Effects::new(&fixture.db);
    let events: Vec<Envelope> = (1..=5).map(|i| event(&format!("ok-{i}"))).collect();
    let batch = events.iter().map(|e| fixture.delivery(e)).collect();

    let settled = consumer::process_batch(&fixture.db, &handler, &spec(), batch).await;
    assert_eq!(outcomes(settled), vec![Outcome::Done; 5]);

    // One transaction: each handler sees the batch's earlier effects, and nobody else sees any.
    let calls = handler.calls();
    let seen: Vec<(i64, i64)> = calls.iter().map(|c| (c.inside, c.outside)).collect();
    assert_eq!(seen, vec![(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)], "{calls:?}");
    // Acked in order, each after the commit of every effect and its inbox row.
    let settled = fixture.settled();
    assert_eq!(
        settled.iter().map(|s| s.message_id).collect::<Vec<_>>(),
        events.iter().map(|e| e.message_id).collect::<Vec<_>>()
    );
    for s in &settled {
        assert_eq!((&s.disposition, s.in_inbox, s.effects), (&Disposition::Ack, true, 5), "{settled:?}");
    }
    fixture.close().await;
}

async fn a_poison_delivery_alone_is_dead_lettered(postgres: bool) {
    let fixture = Fixture::new(postgres).await;
    let handler = Effects::new(&fixture.db);
    let events = [event("ok-1"), event("poison-2"), event("ok-3")];
    let batch = events.iter().map(|e| fixture.delivery(e)).collect();

    let settled = consumer::process_batch(&fixture.db, &handler, &spec(), batch).await;
    assert_eq!(outcomes(settled), vec![Outcome::Done, Outcome::DeadLettered, Outcome::Done]);

    let settled = fixture.settled();
    assert_eq!(settled.len(), 3, "{settled:?}");
    assert_eq!(settled[0].disposition, Disposition::Ack);
    assert!(matches!(&settled[1].disposition, Disposition::DeadLetter { reason } if reason.contains("unreadable")));
    assert_eq!(settled[2].disposition, Disposition::Ack);
    assert!(settled[0].in_inbox && !settled[1].in_inbox && settled[2].in_inbox, "{settled:?}");
    assert_eq!(
        (
            fixture.effects_of(&events[0]).await,
            fixture.effects_of(&events[1]).await,
            fixture.effects_of(&events[2]).await
        ),
        (1, 0, 1)
    );
    assert!(!fixture.in_inbox(&events[1]).await, "a dead letter leaves no inbox row, so a replay is handled");
    fixture.close().await;
}

async fn a_failing_delivery_alone_is_retried(postgres: bool) {
    let fixture = Fixture::new(postgres).await;
    let handler = Effects::new(&fixture.db);
    let events = [event("ok-1"), event("ok-2"), event("transient-3"), event("ok-4")];
    let batch = events.iter().map(|e| fixture.delivery(e)).collect();

    let settled = consumer::process_batch(&fixture.db, &handler, &spec(), batch).await;
    assert_eq!(outcomes(settled), vec![Outcome::Done, Outcome::Done, Outcome::Retried, Outcome::Done]);

    let settled = fixture.settled();
    let dispositions: Vec<&Disposition> = settled.iter().map(|s| &s.disposition).collect();
    assert_eq!(dispositions[0], &Disposition::Ack);
    assert_eq!(dispositions[1], &Disposition::Ack);
    assert!(
        matches!(dispositions[2], Disposition::Retry { delay, .. } if *delay == spec().retry_delay(0)),
        "{settled:?}"
    );
    assert_eq!(dispositions[3], &Disposition::Ack);
    for (envelope, effects) in events.iter().zip([1, 1, 0, 1]) {
        assert_eq!(fixture.effects_of(envelope).await, effects, "{}", envelope.appeal_id().unwrap_or_default());
    }
    assert!(!fixture.in_inbox(&events[2]).await, "the retry must find no inbox row");
    fixture.close().await;
}

async fn duplicates_in_a_batch_change_nothing(postgres: bool) {
    let fixture = Fixture::new(postgres).await;
    let handler = Effects::new(&fixture.db);
    let earlier = event("ok-earlier");
    let outcome = consumer::process(&fixture.db, &handler, &spec(), fixture.delivery(&earlier)).await.unwrap();
    assert_eq!(outcome, Outcome::Done);
    let fresh = event("ok-fresh");
    // The same message twice in one batch, and one the inbox has already.
    let batch = vec![fixture.delivery(&fresh), fixture.delivery(&fresh), fixture.delivery(&earlier)];

    let settled = consumer::process_batch(&fixture.db, &handler, &spec(), batch).await;
    assert_eq!(outcomes(settled), vec![Outcome::Done, Outcome::Duplicate, Outcome::Duplicate]);

    let called: Vec<String> = handler.calls().into_iter().map(|c| c.appeal_id).collect();
    assert_eq!(called, ["ok-earlier", "ok-fresh"], "a duplicate never reaches the handler");
    assert_eq!((fixture.effects_of(&earlier).await, fixture.effects_of(&fresh).await), (1, 1));
    assert!(fixture.settled().iter().all(|s| s.disposition == Disposition::Ack && s.in_inbox));
    fixture.close().await;
}

/// A running consumer takes what is waiting as batches: fewer transactions than deliveries,
/// every effect once, the queue empty at the end; a poison event among them is dead-lettered.
/// The journaled bus writes before each delivery, so this also shows that batches do not stop
/// at the first delivery the bus has to wait for.
async fn a_running_consumer_batches_what_is_waiting(postgres: bool) {
    let fixture = Fixture::new(postgres).await;
    let bus_dir = testing::TempDir::new();
    let bus_db = Db::connect(&pos_platform::host::sqlite_url(&bus_dir.0, "bus"), "bus", 4).await.unwrap();
    let memory = Arc::new(MemoryBus::durable(bus_db).await.unwrap());
    let bus: Arc<dyn Bus> = memory.clone();
    let handler = Effects::new(&fixture.db);
    let spec = spec();
    bus.declare(&spec).await.unwrap();
    let count = 30;
    let events: Vec<Envelope> = (0..count).map(|i| event(&format!("ok-{i}"))).collect();
    for result in bus.publish_batch(&events).await {
        result.unwrap();
    }

    // One batch at a time (the default), so that the calls tell the batches apart.
    let consumer = Consumer::with_spec(spec.clone(), handler.clone());
    assert_eq!(consumer.concurrency, 1);
    let stop = CancellationToken::new();
    let running = tokio::spawn(consumer::run(fixture.db.clone(), bus.clone(), consumer, stop.clone()));
    let effects = || async {
        sqlx::query("SELECT count(*) AS n FROM effects").fetch_one(fixture.db.pool()).await.unwrap().get::<i64, _>("n")
    };
    eventually(WAIT, "every event is handled", || async { effects().await == count as i64 }).await;
    eventually(WAIT, "the queue is empty", || async { bus.queue_depth(&spec.name).await.unwrap() == 0 }).await;
    // A call that sees exactly one more effect inside than outside opened its transaction.
    let calls = handler.calls();
    let transactions = calls.iter().filter(|c| c.inside == c.outside + 1).count();
    // How many depends on how fast the bus hands them over; never one per delivery.
    assert!(transactions * 3 <= count, "{transactions} transactions for {count} deliveries: {calls:?}");

    let more = [event("ok-before"), event("poison-between"), event("ok-after")];
    for result in bus.publish_batch(&more).await {
        result.unwrap();
    }
    eventually(WAIT, "the poison event is dead-lettered", || async {
        bus.peek_dead_letters(&spec, 10).await.unwrap().len() == 1
    })
    .await;
    eventually(WAIT, "the others are handled", || async { effects().await == count as i64 + 2 }).await;
    eventually(WAIT, "the queue is empty", || async { bus.queue_depth(&spec.name).await.unwrap() == 0 }).await;
    stop.cancel();
    running.await.unwrap().unwrap();

    for envelope in events.iter().chain([&more[0], &more[2]]) {
        assert_eq!(fixture.effects_of(envelope).await, 1);
    }
    memory.close().await;
    fixture.close().await;
}

macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(false).await;
            })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(true).await;
            })+
        }
    };
}

on_both!(
    batch_commits_once_and_acks_after_the_commit,
    a_poison_delivery_alone_is_dead_lettered,
    a_failing_delivery_alone_is_retried,
    duplicates_in_a_batch_change_nothing,
    a_running_consumer_batches_what_is_waiting,
);

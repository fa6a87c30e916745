//! The durable in-process bus's journal (`pos_bus_messages` in SQLite) under load and across
//! restarts: acknowledgements are written in batches, a process killed before a batch is written
//! gets those messages back (counted as redeliveries, none lost), and a clean close leaves
//! nothing to redeliver. Two ignored tests measure the CPU time and journal transactions the bus
//! costs per appeal of 12 deliveries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use pos_platform::bus::memory::MemoryBus;
use pos_platform::bus::{Bus, Delivery, Disposition, Envelope, QueueSpec};
use pos_platform::db::{Db, Tx};
use uuid::Uuid;

fn temp_db_file() -> PathBuf {
    std::env::temp_dir().join(format!("pos-bus-journal-{}.db", Uuid::new_v4().simple()))
}

async fn sqlite(file: &Path) -> Db {
    Db::connect(&format!("sqlite://{}", file.display()), "bus", 4).await.expect("sqlite database")
}

fn remove_db_files(file: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

fn envelope(routing_key: &str) -> Envelope {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("x-appeal-id".to_owned(), Uuid::new_v4().to_string());
    Envelope {
        message_id: Uuid::now_v7(),
        routing_key: routing_key.to_owned(),
        type_name: "pos.v1.events.AppealReceived".to_owned(),
        timestamp: Utc::now(),
        headers,
        payload: Bytes::from(vec![7u8; 200]),
    }
}

type Deliveries = futures::stream::BoxStream<'static, Delivery>;

/// Longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(15);
/// How long "nothing arrives" is watched.
const QUIET: Duration = Duration::from_millis(300);

async fn next(stream: &mut Deliveries) -> Delivery {
    tokio::time::timeout(WAIT, stream.next()).await.expect("a delivery in time").expect("the stream is open")
}

async fn nothing(stream: &mut Deliveries) {
    if let Ok(delivery) = tokio::time::timeout(QUIET, stream.next()).await {
        panic!("unexpected delivery: {:?}", delivery.map(|d| d.envelope));
    }
}

async fn ack(delivery: Delivery) {
    delivery.settle(Disposition::Ack).await.expect("acked");
}

/// Rows in the journal: messages the next start would load.
async fn rows(db: &Db) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pos_bus_messages").fetch_one(db.pool()).await.unwrap()
}

/// Holds the database's write lock, as a slow disk or another writer would, until released:
/// the bus's writer waits meanwhile (busy_timeout), and what it would write piles up.
struct WriteLock(Option<Tx>);

impl WriteLock {
    async fn take(db: &Db) -> WriteLock {
        WriteLock(Some(db.begin().await.expect("the write lock")))
    }

    async fn release(mut self) {
        self.0.take().unwrap().rollback().await.unwrap();
    }

    /// Released by a task of its own after `after`, while the caller waits for something that
    /// needs it.
    fn release_after(self, after: Duration) {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            self.release().await;
        });
    }
}

/// Takes the journal's write lock, then acknowledges every delivery: none of the
/// acknowledgements can be written until the lock is released.
async fn ack_behind_the_write_lock(db: &Db, taken: Vec<Delivery>) -> WriteLock {
    let lock = WriteLock::take(db).await;
    for delivery in taken {
        ack(delivery).await;
    }
    lock
}

fn spec(name: &str) -> QueueSpec {
    // Unlimited prefetch: the tests hold every delivery before settling any.
    QueueSpec { prefetch: 0, ..QueueSpec::new(name, &["appeal.received.*"]) }
}

async fn publish_and_take(bus: &MemoryBus, deliveries: &mut Deliveries, count: usize) -> Vec<Delivery> {
    let sent: Vec<Envelope> = (0..count).map(|_| envelope("appeal.received.41")).collect();
    assert!(bus.publish_batch(&sent).await.iter().all(Result::is_ok));
    let mut taken = Vec::with_capacity(count);
    for _ in 0..count {
        taken.push(next(deliveries).await);
    }
    taken
}

/// Many acknowledgements, few transactions: the ones made while the writer waits for the
/// database all go in its next one. Acknowledged messages are gone from this process at once,
/// rows or not: never delivered again, not even counted as redeliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_are_written_in_batches() {
    const N: usize = 500;
    let file = temp_db_file();
    let db = sqlite(&file).await;
    let bus = MemoryBus::durable(db.clone()).await.unwrap();
    let mut deliveries = bus.consume(&spec("journal.batches")).await.unwrap();
    let before = bus.journal_transactions();
    let taken = publish_and_take(&bus, &mut deliveries, N).await;
    // The publish is one transaction; each delivery waited for its count, in as many.
    let published_and_counted = bus.journal_transactions() - before;
    assert!(published_and_counted <= 1 + N as u64, "{published_and_counted} transactions");
    assert_eq!(rows(&db).await, N as i64);

    let lock = WriteLock::take(&db).await;
    let before = bus.journal_transactions();
    for delivery in taken {
        ack(delivery).await;
    }
    nothing(&mut deliveries).await;
    assert_eq!(bus.queue_depth("journal.batches").await.unwrap(), 0);
    assert_eq!(rows(&db).await, N as i64, "no row deleted while the writer waits");
    lock.release().await;
    bus.close().await;
    let acks = bus.journal_transactions() - before;
    // The writer may have taken the first acknowledgement alone before it found the lock.
    assert!(acks <= 2, "{N} acknowledgements in {acks} transactions");
    assert_eq!(rows(&db).await, 0);
    drop(bus);
    remove_db_files(&file);
}

/// Closing writes what the writer has not written yet: a clean stop redelivers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_writes_the_last_acknowledgements() {
    let file = temp_db_file();
    let db = sqlite(&file).await;
    let bus = MemoryBus::durable(db.clone()).await.unwrap();
    let spec = spec("journal.close");
    let mut deliveries = bus.consume(&spec).await.unwrap();
    let taken = publish_and_take(&bus, &mut deliveries, 20).await;
    let lock = ack_behind_the_write_lock(&db, taken).await;
    assert_eq!(rows(&db).await, 20);
    // Waits for the database, however long it takes.
    lock.release_after(Duration::from_millis(300));
    bus.close().await;
    assert_eq!(rows(&db).await, 0, "written when close returns");
    drop(deliveries);
    drop(bus);

    let bus = MemoryBus::durable(sqlite(&file).await).await.unwrap();
    let mut deliveries = bus.consume(&spec).await.unwrap();
    nothing(&mut deliveries).await;
    drop(deliveries);
    bus.close().await;
    drop(bus);
    remove_db_files(&file);
}

/// Decommissioning with acknowledgements not yet written: it waits for the writer, and what is
/// published afterwards is not touched by deletions meant for the earlier messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_declared_settles_with_the_writer_first() {
    let file = temp_db_file();
    let db = sqlite(&file).await;
    let bus = MemoryBus::durable(db.clone()).await.unwrap();
    let spec = spec("journal.decommissioned");
    let mut deliveries = bus.consume(&spec).await.unwrap();
    let taken = publish_and_take(&bus, &mut deliveries, 5).await;
    let lock = ack_behind_the_write_lock(&db, taken).await;
    lock.release_after(Duration::from_millis(300));
    bus.delete_declared().await.unwrap();
    assert_eq!(rows(&db).await, 0);
    drop(deliveries);

    bus.declare(&spec).await.unwrap();
    let later: Vec<Envelope> = (0..3).map(|_| envelope("appeal.received.41")).collect();
    assert!(bus.publish_batch(&later).await.iter().all(Result::is_ok));
    bus.close().await;
    drop(bus);
    let bus = MemoryBus::durable(sqlite(&file).await).await.unwrap();
    assert_eq!(bus.queue_depth(&spec.name).await.unwrap(), 3);
    bus.close().await;
    drop(bus);
    remove_db_files(&file);
}

/// The journal on PostgreSQL (where the batches are written statement by statement): what is
/// published, counted and acknowledged survives a close and a restart as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_works_on_postgres_too() {
    let schema = pos_platform::testing::unique("bus");
    let url = pos_platform::testing::database_url();
    let connect = || Db::connect(&url, &schema, 4);
    let db = connect().await.expect("local PostgreSQL is running");
    let bus = MemoryBus::durable(db.clone()).await.unwrap();
    let spec = spec("journal.postgres");
    let mut deliveries = bus.consume(&spec).await.unwrap();
    let mut taken = publish_and_take(&bus, &mut deliveries, 150).await;
    assert_eq!(rows(&db).await, 150);
    // Half acknowledged; half left unsettled when the bus goes, so they come back counted.
    let unsettled = taken.split_off(75);
    for delivery in taken {
        ack(delivery).await;
    }
    drop(deliveries);
    std::mem::forget(unsettled);
    bus.close().await;
    assert_eq!(rows(&db).await, 75);
    drop(bus);

    let bus = MemoryBus::durable(connect().await.unwrap()).await.unwrap();
    let mut deliveries = bus.consume(&spec).await.unwrap();
    for _ in 0..75 {
        let delivery = next(&mut deliveries).await;
        assert_eq!(delivery.redeliveries, 1);
        ack(delivery).await;
    }
    nothing(&mut deliveries).await;
    drop(deliveries);
    bus.close().await;
    assert_eq!(rows(&db).await, 0);
    drop(bus);
    db.drop_schema().await.unwrap();
}

const CHILD_DB: &str = "POS_BUS_JOURNAL_CHILD_DB";
const CHILD_TAKEN: &str = "child: taken";
const CHILD_ACKED: &str = "child: acked";
const KILLED: usize = 20;

/// Run by `acknowledgements_not_written_come_back_after_a_kill` in a child process: takes its
/// deliveries, acknowledges them when told (the parent holds the write lock by then), checks
/// that they are gone from this process, and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by acknowledgements_not_written_come_back_after_a_kill in a child process"]
async fn child_acknowledges_then_waits() {
    let Ok(file) = std::env::var(CHILD_DB) else {
        return;
    };
    let bus = MemoryBus::durable(sqlite(Path::new(&file)).await).await.unwrap();
    let spec = spec("journal.killed");
    let mut deliveries = bus.consume(&spec).await.unwrap();
    let taken = publish_and_take(&bus, &mut deliveries, KILLED).await;
    println!("{CHILD_TAKEN}");
    let told = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await.unwrap();
    assert!(told.unwrap() > 0, "the parent went away");
    for delivery in taken {
        ack(delivery).await;
    }
    nothing(&mut deliveries).await;
    assert_eq!(bus.queue_depth(&spec.name).await.unwrap(), 0);
    println!("{CHILD_ACKED}");
    std::future::pending::<()>().await;
}

/// A process killed after acknowledging but before its writer wrote the acknowledgements gets
/// those messages back on the next start: every one, each counted as a redelivery (the inbox
/// absorbs them). At least once; nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_not_written_come_back_after_a_kill() {
    use std::io::{BufRead, BufReader, Write};
    let file = temp_db_file();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_acknowledges_then_waits", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DB, &file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, mut said) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut wait_for = async |expected: &str| {
        let heard = tokio::time::timeout(WAIT, async {
            while let Some(line) = said.recv().await {
                if line.contains(expected) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(matches!(heard, Ok(true)), "the child did not say {expected:?}");
    };
    wait_for(CHILD_TAKEN).await;
    let db = sqlite(&file).await;
    let lock = WriteLock::take(&db).await;
    writeln!(stdin, "acknowledge").unwrap();
    stdin.flush().unwrap();
    wait_for(CHILD_ACKED).await;
    // SIGKILL: no destructor, no flush, nothing.
    child.kill().unwrap();
    child.wait().unwrap();
    lock.release().await;
    assert_eq!(rows(&db).await, KILLED as i64, "the acknowledgements were never written");

    let bus = MemoryBus::durable(db.clone()).await.unwrap();
    let mut deliveries = bus.consume(&spec("journal.killed")).await.unwrap();
    for _ in 0..KILLED {
        let delivery = next(&mut deliveries).await;
        assert_eq!(delivery.redeliveries, 1, "handled once before the kill");
        ack(delivery).await;
    }
    nothing(&mut deliveries).await;
    drop(deliveries);
    bus.close().await;
    assert_eq!(rows(&db).await, 0);
    drop(bus);
    remove_db_files(&file);
}

/// CPU time of this process so far (user + system), from /proc.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name may hold spaces; the fields after it are space separated.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name, in clock ticks
    // of 10 ms (USER_HZ is 100 on Linux).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

const QUEUES: usize = 12;

/// Publishes `appeals` appeals of 12 events each (one per queue), `rate` per second (0: as fast
/// as possible), consumes and acknowledges every one, and prints CPU and wall time per appeal.
async fn load(appeals: usize, rate: u64) {
    let file = temp_db_file();
    let bus = Arc::new(MemoryBus::durable(sqlite(&file).await).await.unwrap());
    let acked = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for queue in 0..QUEUES {
        let spec = QueueSpec::new(format!("bench.q{queue}"), &[&format!("ev{queue}.*")]);
        let deliveries = bus.consume(&spec).await.unwrap();
        let acked = acked.clone();
        consumers.push(tokio::spawn(deliveries.for_each_concurrent(16, move |delivery| {
            let acked = acked.clone();
            async move {
                delivery.settle(Disposition::Ack).await.unwrap();
                acked.fetch_add(1, Ordering::SeqCst);
            }
        })));
    }
    let cpu = process_cpu();
    let started = Instant::now();
    let publishers = 4;
    let mut tasks = Vec::new();
    for publisher in 0..publishers {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut interval =
                (rate > 0).then(|| tokio::time::interval(Duration::from_micros(1_000_000 * publishers as u64 / rate)));
            for _ in (publisher..appeals).step_by(publishers) {
                if let Some(interval) = &mut interval {
                    interval.tick().await;
                }
                let batch: Vec<Envelope> = (0..QUEUES).map(|q| envelope(&format!("ev{q}.41"))).collect();
                assert!(bus.publish_batch(&batch).await.iter().all(Result::is_ok));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let published = started.elapsed();
    while acked.load(Ordering::SeqCst) < appeals * QUEUES {
        assert!(started.elapsed() < Duration::from_secs(120), "consumers fell behind");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let wall = started.elapsed();
    bus.close().await;
    let cpu = process_cpu() - cpu;
    let stats = bus.journal_transactions();
    println!(
        "{appeals} appeals at {rate}/s: published in {published:?}, all acked in {wall:?}; CPU {cpu:?} = {:.0} µs per \
         appeal; {stats} journal transactions = {:.2} per appeal",
        cpu.as_micros() as f64 / appeals as f64,
        stats as f64 / appeals as f64,
    );
    for consumer in consumers {
        consumer.abort();
    }
    remove_db_files(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo nextest run --release -p pos-platform --test bus_journal --run-ignored only measure --no-capture -j1"]
async fn measure_as_fast_as_possible() {
    load(3000, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo nextest run --release -p pos-platform --test bus_journal --run-ignored only measure --no-capture -j1"]
async fn measure_at_1000_per_second() {
    load(3000, 1000).await;
}

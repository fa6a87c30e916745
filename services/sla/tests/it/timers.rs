//! Timers: fired exactly once, never early, by two instances side by side, and across an
//! instance killed with SIGKILL.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pos_platform::db::{Db, to_micros};
use pos_platform::testing::{self, TestDb, TestOptions, TestServer};
use pos_sla::policy::Period;
use pos_sla::store::{self, Clock, ClockKind, State, Timer, TimerKind};
use tokio_util::sync::CancellationToken;

use crate::helpers::SlaDb;

/// Arms `n` running answer clocks whose overdue timers come due evenly over `window` from
/// `first` (PostgreSQL: one statement each for clocks and timers, so that 10,000 take a moment).
pub async fn arm_many_postgres(db: &Db, n: i64, first: DateTime<Utc>, window: Duration) {
    let step = (window.as_micros() as i64 / n.max(1)).max(1);
    let now = to_micros(Utc::now());
    sqlx::query(
        "INSERT INTO sla_clocks (appeal_id, clock, organization_id, region_code, time_zone, round, fast_track, \
         period_days, working_days, started_at, due_at, span_micros, state, generation, updated_at) \
         SELECT 'k-' || g, 'answer', 'org-41', '41', 'Asia/Kamchatka', 1, FALSE, 10, FALSE, $1, \
         $2 + g * $3 - 1000000, $2 + g * $3 - 1000000 - $1, 'running', 1, $1 FROM generate_series(0, $4 - 1) AS g",
    )
    .bind(now)
    .bind(to_micros(first))
    .bind(step)
    .bind(n)
    .execute(db.pool())
    .await
    .expect("clocks");
    sqlx::query(
        "INSERT INTO timers (id, appeal_id, clock, generation, kind, point, due_at, created_at) \
         SELECT 'k-' || g || ':answer:1:1:overdue:', 'k-' || g, 'answer', 1, 'overdue', '', $1 + g * $2, $3 \
         FROM generate_series(0, $4 - 1) AS g",
    )
    .bind(to_micros(first))
    .bind(step)
    .bind(now)
    .bind(n)
    .execute(db.pool())
    .await
    .expect("timers");
}

/// The same through the store functions, for both dialects (a few hundred).
async fn arm_many(db: &Db, n: i64, first: DateTime<Utc>, window: Duration) {
    let step = chrono::Duration::microseconds((window.as_micros() as i64 / n.max(1)).max(1));
    let mut tx = db.begin().await.unwrap();
    for i in 0..n {
        let overdue_at = first + step * i32::try_from(i).unwrap();
        let due = overdue_at - chrono::Duration::seconds(1);
        let clock = Clock {
            appeal_id: format!("k-{i}"),
            kind: ClockKind::Answer,
            ticket_id: String::new(),
            organization_id: "org-41".into(),
            region_code: "41".into(),
            time_zone: "Asia/Kamchatka".into(),
            fact_id: String::new(),
            assignee_id: String::new(),
            round: 1,
            fast_track: false,
            period: Period::calendar(10),
            started_at: Utc::now(),
            due_at: due,
            span: due - Utc::now(),
            state: State::Running,
            paused_at: None,
            overdue: false,
            met: false,
            stopped_at: None,
            generation: 1,
            warnings: Vec::new(),
        };
        store::save_clock(&mut tx, &clock).await.unwrap();
        store::insert_timers(&mut tx, &[Timer::new(&clock, TimerKind::Overdue, "", overdue_at)]).await.unwrap();
    }
    tx.commit().await.unwrap();
}

struct Fired {
    ledger: i64,
    early: i64,
    overdue_events: i64,
    breached: i64,
    lateness_ms: Vec<f64>,
}

async fn fired(db: &Db) -> Fired {
    let count =
        |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(db.pool()).await.unwrap() };
    let mut lateness: Vec<i64> =
        sqlx::query_scalar("SELECT lateness_micros FROM timer_ledger").fetch_all(db.pool()).await.unwrap();
    lateness.sort_unstable();
    Fired {
        ledger: count("SELECT COUNT(*) FROM timer_ledger").await,
        early: count("SELECT COUNT(*) FROM timer_ledger WHERE fired_at < due_at").await,
        overdue_events: count("SELECT COUNT(*) FROM outbox WHERE routing_key LIKE 'sla.overdue.%'").await,
        breached: count("SELECT COUNT(*) FROM sla_log WHERE kind = 'breached'").await,
        lateness_ms: lateness.into_iter().map(|l| l as f64 / 1000.0).collect(),
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn wait_for_ledger(db: &Db, n: i64, limit: Duration) {
    let started = Instant::now();
    loop {
        let ledger: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timer_ledger").fetch_one(db.pool()).await.unwrap();
        if ledger >= n {
            return;
        }
        assert!(started.elapsed() < limit, "only {ledger} of {n} timers fired within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn timers_fire_once_and_never_early() {
    for t in SlaDb::both().await {
        let n = 300;
        arm_many(&t.db, n, Utc::now() + chrono::Duration::seconds(1), Duration::from_secs(3)).await;
        let stop = CancellationToken::new();
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(
            pos_sla::timers::TimerLoop::new(t.db.clone(), wake)
                .with_poll_interval(Duration::from_millis(200))
                .run(stop.clone()),
        );
        wait_for_ledger(&t.db, n, Duration::from_secs(60)).await;
        // Nothing more fires later.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        task.await.unwrap().unwrap();
        let f = fired(&t.db).await;
        assert_eq!((f.ledger, f.early, f.overdue_events, f.breached), (n, 0, n, n), "{}", t.name());
        assert!(f.lateness_ms.iter().all(|l| *l >= 0.0));
        t.drop().await;
    }
}

/// A full SLA instance on `db`'s schema, with an in-process bus of its own. Instances may
/// share a schema, so they are shut down, never stopped (which drops it).
pub async fn spawn_instance(db: Db) -> TestServer {
    let options = TestOptions { db: TestDb::Given(db), ..TestOptions::default() };
    TestServer::spawn("sla", &pos_sla::MIGRATIONS, options, pos_sla::component).await
}

#[tokio::test]
async fn two_instances_side_by_side_fire_each_timer_once() {
    let t = SlaDb::postgres().await;
    let n = 5_000;
    arm_many_postgres(&t.db, n, Utc::now() + chrono::Duration::seconds(3), Duration::from_secs(15)).await;
    let second = Db::connect(&testing::database_url(), t.db.schema(), 5).await.unwrap();
    let mut a = spawn_instance(t.db.clone()).await;
    let mut b = spawn_instance(second.clone()).await;
    wait_for_ledger(&t.db, n, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = tokio::join!(a.shut_down(), b.shut_down());
    let f = fired(&t.db).await;
    println!(
        "two instances: {n} timers, lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&f.lateness_ms, 0.5),
        percentile(&f.lateness_ms, 0.99),
        percentile(&f.lateness_ms, 1.0)
    );
    assert_eq!((f.ledger, f.early, f.overdue_events, f.breached), (n, 0, n, n));
    second.close().await;
    t.drop().await;
}

const CHILD_SCHEMA: &str = "POS_SLA_TEST_CHILD_SCHEMA";

/// The child side of the SIGKILL test: serves the schema named in the environment until killed.
#[tokio::test]
#[ignore = "run as a child process by sigkilled_instance_fires_every_timer_once_after_restart"]
async fn child_serves_until_killed() {
    let Ok(schema) = std::env::var(CHILD_SCHEMA) else { return };
    pos_platform::testing::init_for_tests_once();
    let db = Db::connect(&testing::database_url(), &schema, 5).await.unwrap();
    let _server = spawn_instance(db).await;
    std::future::pending::<()>().await;
}

fn spawn_child(schema: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["timers::child_serves_until_killed", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_SCHEMA, schema)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("child test process")
}

#[tokio::test]
async fn sigkilled_instance_fires_every_timer_once_after_restart() {
    let t = SlaDb::postgres().await;
    let n = 10_000;
    // Due from 5 s to 50 s from now: the kill lands while they are coming due.
    arm_many_postgres(&t.db, n, Utc::now() + chrono::Duration::seconds(5), Duration::from_secs(45)).await;
    let mut first = spawn_child(t.db.schema());
    tokio::time::sleep(Duration::from_secs(15)).await;
    first.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    first.wait().unwrap();
    let before_restart = fired(&t.db).await;
    println!("killed with {} of {n} fired", before_restart.ledger);
    assert!(before_restart.ledger < n, "the kill must land while timers are still coming due");
    // Down for a while: timers keep coming due and must fire at start-up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut second = spawn_child(t.db.schema());
    wait_for_ledger(&t.db, n, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let f = fired(&t.db).await;
    println!(
        "after restart: {} fired, lateness p50 {:.1} ms, p99 {:.1} ms (includes the downtime)",
        f.ledger,
        percentile(&f.lateness_ms, 0.5),
        percentile(&f.lateness_ms, 0.99)
    );
    assert_eq!((f.ledger, f.early, f.overdue_events, f.breached), (n, 0, n, n));
    t.drop().await;
}

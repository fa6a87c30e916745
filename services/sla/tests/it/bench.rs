//! The timer benchmark: 1,000,000 armed timers in PostgreSQL; the arming rate through the
//! consumer path; the memory it takes; the lateness of firing under arming load. Prints its
//! figures (docs/benchmarks.md records them). Run with:
//! `cargo nextest run -p pos-sla --test it -E 'test(bench::)' --run-ignored only --no-capture`

use std::time::{Duration, Instant};

use chrono::Utc;
use pos_platform::consumer::deliver;
use pos_platform::db::{Db, to_micros};
use pos_platform::{Envelope, Tx};
use pos_sla::consumer::RoutedHandler;

use crate::helpers::{SlaDb, routed};
use crate::timers::{arm_many_postgres, percentile, spawn_instance};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Arms appeals through the `appeal.routed` handler (policy, calendar, clock, three timers,
/// log, two events per appeal) from `tasks` tasks for `duration`; returns how many.
async fn arm_through_consumer(t: &SlaDb, prefix: &str, tasks: usize, duration: Duration) -> usize {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let db = t.db.clone();
        let shared = t.shared();
        let prefix = format!("{prefix}-{task}");
        handles.push(tokio::spawn(async move {
            let handler = RoutedHandler(shared);
            let started = Instant::now();
            let mut n = 0usize;
            while started.elapsed() < duration {
                let event = routed(
                    &format!("{prefix}-{n}"),
                    "41",
                    "Asia/Kamchatka",
                    "41-kcioko",
                    "education.e-diary.access",
                    true,
                    Utc::now(),
                );
                let envelope = Envelope::new(&event, "41");
                let mut tx: Tx = db.begin().await.unwrap();
                deliver(&handler, &mut tx, &envelope).await.unwrap();
                tx.commit().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await.unwrap();
    }
    total
}

async fn size_mib(db: &Db, table: &str) -> f64 {
    let bytes: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT pg_total_relation_size('{table}')")))
        .fetch_one(db.pool())
        .await
        .unwrap();
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test]
#[ignore = "a benchmark: minutes long, prints figures"]
async fn bench_million_timers() {
    let t = SlaDb::postgres().await;
    let rss_start = rss_mib();

    // 1. Arming through the consumer path, on an empty table.
    let window = Duration::from_secs(20);
    let armed = arm_through_consumer(&t, "warm", 4, window).await;
    println!(
        "arming via appeal.routed, 4 tasks, empty db: {armed} appeals in {window:?} = {:.0}/s",
        armed as f64 / window.as_secs_f64()
    );

    // 2. Fill to a million timers, due from tomorrow over 30 days.
    let fill = 1_000_000 - 3 * armed as i64;
    let started = Instant::now();
    let chunk = 100_000;
    let mut done = 0;
    while done < fill {
        let n = chunk.min(fill - done);
        // Offsets per chunk keep ids unique: arm_many_postgres numbers from 0.
        sqlx::query("UPDATE sla_clocks SET appeal_id = 'f' || $1 || '-' || appeal_id WHERE appeal_id LIKE 'k-%'")
            .bind(done)
            .execute(t.db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE timers SET id = 'f' || $1 || '-' || id, appeal_id = 'f' || $1 || '-' || appeal_id WHERE appeal_id LIKE 'k-%'")
            .bind(done)
            .execute(t.db.pool())
            .await
            .unwrap();
        arm_many_postgres(&t.db, n, Utc::now() + chrono::Duration::days(1), Duration::from_secs(30 * 86_400)).await;
        done += n;
    }
    sqlx::query("ANALYZE").execute(t.db.pool()).await.unwrap();
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM timers WHERE fired_at IS NULL").fetch_one(t.db.pool()).await.unwrap();
    println!(
        "bulk fill: {fill} clocks+timers in {:.1} s; pending timers {pending}; timers {:.0} MiB, sla_clocks {:.0} MiB (tables with indexes)",
        started.elapsed().as_secs_f64(),
        size_mib(&t.db, "timers").await,
        size_mib(&t.db, "sla_clocks").await
    );
    let started = Instant::now();
    let next = pos_sla::store::next_due(&t.db).await.unwrap();
    println!("next due lookup over {pending} pending: {:?} ({next:?})", started.elapsed());

    // 3. Firing under load: 10,000 due over the next 20 s, one instance, arming continuing.
    sqlx::query("UPDATE sla_clocks SET appeal_id = 'g-' || appeal_id WHERE appeal_id LIKE 'k-%'")
        .execute(t.db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE timers SET id = 'g-' || id, appeal_id = 'g-' || appeal_id WHERE appeal_id LIKE 'k-%'")
        .execute(t.db.pool())
        .await
        .unwrap();
    let first = Utc::now() + chrono::Duration::seconds(5);
    arm_many_postgres(&t.db, 10_000, first, Duration::from_secs(20)).await;
    let rss_before = rss_mib();
    let mut server = spawn_instance(t.db.clone()).await;
    let armed_under_load = arm_through_consumer(&t, "load", 2, Duration::from_secs(30)).await;
    let cutoff = to_micros(first + chrono::Duration::seconds(21));
    for _ in 0..600 {
        let fired: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timer_ledger WHERE timer_id LIKE 'k-%'")
            .fetch_one(t.db.pool())
            .await
            .unwrap();
        if fired >= 10_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut lateness: Vec<f64> = sqlx::query_scalar::<_, i64>(
        "SELECT lateness_micros FROM timer_ledger WHERE timer_id LIKE 'k-%' AND due_at <= $1",
    )
    .bind(cutoff)
    .fetch_all(t.db.pool())
    .await
    .unwrap()
    .into_iter()
    .map(|l| l as f64 / 1000.0)
    .collect();
    lateness.sort_by(f64::total_cmp);
    let early: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timer_ledger WHERE fired_at < due_at")
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    println!(
        "firing 10000 due over 20 s with 1M pending and arming at {:.0}/s (2 tasks): fired {}, early {early}, lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        armed_under_load as f64 / 30.0,
        lateness.len(),
        percentile(&lateness, 0.5),
        percentile(&lateness, 0.99),
        percentile(&lateness, 1.0)
    );
    println!(
        "process RSS: start {rss_start:.0} MiB, before serving {rss_before:.0} MiB, after firing {:.0} MiB",
        rss_mib()
    );
    let _ = server.shut_down().await;
    assert_eq!(early, 0);
    assert_eq!(lateness.len(), 10_000);
    t.drop().await;
}

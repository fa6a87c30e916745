//! Delivery: retries through an SMTP outage, the crash window measured and recovered,
//! dead letters shown in the log, and the sustained rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pos_notify::Wake;
use pos_notify::directory::StaticDirectory;
use pos_notify::sender::SenderConfig;
use pos_platform::Db;
use pos_platform::db::now_micros;
use pos_platform::testing::{eventually, postgres_db, sqlite_db};
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_server::NotifyService;

use crate::helpers::*;

async fn stats(db: &Db) -> pb::DeliveryStats {
    service(db, Arc::new(Wake::default()))
        .get_delivery_stats(system(pb::GetDeliveryStatsRequest {}))
        .await
        .unwrap()
        .into_inner()
}

async fn plan_appeals(db: &Db, wake: Arc<Wake>, domain: &str, count: usize) -> Vec<String> {
    let planner = planner(db, wake, StaticDirectory::default());
    let mut recipients = Vec::new();
    for i in 0..count {
        let id = uuid::Uuid::now_v7().to_string();
        let email = format!("a{i}@{domain}");
        deliver(db, &planner, &received(&id, i as i64 + 1, &email), &id).await;
        recipients.push(email);
    }
    recipients
}

/// E-mails planned while the relay is down.
const OUTAGE_APPEALS: usize = 1_000;
/// How long the relay stays down: longer than the first retries' backoff, so rows retry often.
const OUTAGE: Duration = Duration::from_secs(60);

async fn outage(db: &Db) {
    let mut sink = SmtpSink::down();
    let domain = unique_domain();
    let wake = Arc::new(Wake::default());
    // The production retry schedule (1 s doubling to 30 s, 12 attempts) must outlast a minute down.
    let defaults = pos_notify::NotifyConfig::default().sender();
    let config = SenderConfig {
        max_attempts: defaults.max_attempts,
        backoff_base: defaults.backoff_base,
        backoff_max: defaults.backoff_max,
        ..sender_config()
    };
    let sender = RunningSender::start(db, sink.mailer(), wake.clone(), config);
    let recipients = plan_appeals(db, wake, &domain, OUTAGE_APPEALS).await;
    tokio::time::sleep(OUTAGE).await;
    let during = stats(db).await;
    assert_eq!(during.sent, 0);
    assert_eq!(during.dead, 0);
    assert_eq!((during.pending + during.sending) as usize, OUTAGE_APPEALS);
    sink.resume();
    eventually(Duration::from_secs(240), "every e-mail arrived after the relay returned", || {
        std::future::ready(sink.message_ids().values().sum::<usize>() >= OUTAGE_APPEALS)
    })
    .await;
    sender.stop().await;
    let ids = sink.message_ids();
    assert_eq!(ids.len(), OUTAGE_APPEALS, "distinct e-mails");
    assert!(ids.values().all(|n| *n == 1), "an e-mail arrived twice");
    for recipient in &recipients {
        assert_eq!(sink.messages(recipient).len(), 1, "{recipient}");
    }
    let after = stats(db).await;
    assert_eq!((after.sent as usize, after.dead, after.pending, after.resent_after_crash), (OUTAGE_APPEALS, 0, 0, 0));
}

#[tokio::test]
async fn an_smtp_outage_delays_but_loses_and_doubles_nothing_on_postgres() {
    outage(&postgres_db("notify", &pos_notify::MIGRATIONS).await).await;
}

#[tokio::test]
async fn an_smtp_outage_delays_but_loses_and_doubles_nothing_on_sqlite() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    outage(&db).await;
}

/// A process killed between marking "sending" and marking "sent" leaves rows "sending"; the
/// next sender takes them after the lease and counts them as possible duplicates.
async fn crash_window(db: &Db) {
    let sink = SmtpSink::start();
    let domain = unique_domain();
    let wake = Arc::new(Wake::default());
    plan_appeals(db, wake.clone(), &domain, 5).await;
    let long_ago = now_micros() - 3_600_000_000;
    let crashed = sqlx::query(
        "UPDATE deliveries SET status = 'sending', attempts = 1, sending_at = $1 \
         WHERE id IN (SELECT id FROM deliveries ORDER BY id LIMIT 2)",
    )
    .bind(long_ago)
    .execute(db.pool())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(crashed, 2);
    let config = pos_notify::sender::SenderConfig { lease: Duration::from_secs(1), ..sender_config() };
    let sender = RunningSender::start(db, sink.mailer(), wake, config);
    eventually(Duration::from_secs(30), "every e-mail arrived", || std::future::ready(sink.message_ids().len() >= 5))
        .await;
    sender.stop().await;
    let after = stats(db).await;
    assert_eq!((after.sent, after.resent_after_crash), (5, 2));
    assert!(after.window_p50_micros > 0 && after.window_max_micros < 5_000_000, "{after:?}");
}

#[tokio::test]
async fn the_crash_window_is_recovered_and_counted_on_postgres() {
    crash_window(&postgres_db("notify", &pos_notify::MIGRATIONS).await).await;
}

#[tokio::test]
async fn the_crash_window_is_recovered_and_counted_on_sqlite() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    crash_window(&db).await;
}

#[tokio::test]
async fn failures_are_dead_lettered_shown_and_can_be_retried() {
    let db = postgres_db("notify", &pos_notify::MIGRATIONS).await;
    let mut sink = SmtpSink::down();
    let wake = Arc::new(Wake::default());
    let planner = planner(&db, wake.clone(), StaticDirectory::default());
    let domain = unique_domain();
    let (good, bad) = (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
    deliver(&db, &planner, &received(&good, 1, &format!("ok@{domain}")), &good).await;
    // Not an address: no retry can help.
    deliver(&db, &planner, &received(&bad, 2, "not an address"), &bad).await;
    let config = pos_notify::sender::SenderConfig {
        max_attempts: 3,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        ..sender_config()
    };
    let sender = RunningSender::start(&db, sink.mailer(), wake.clone(), config);
    let notify = service(&db, wake);
    let dead = || async {
        notify
            .list_deliveries(system(pb::ListDeliveriesRequest {
                status: "dead".into(),
                page_size: 10,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .deliveries
    };
    let dead = &dead;
    eventually(
        Duration::from_secs(30),
        "both failures are dead-lettered",
        move || async move { dead().await.len() == 2 },
    )
    .await;
    let log = dead().await;
    assert_eq!(log.len(), 2, "{log:?}");
    let unreachable = log.iter().find(|d| d.appeal_id == good).unwrap();
    assert_eq!(unreachable.attempts, 3);
    assert!(!unreachable.last_error.is_empty());
    let invalid = log.iter().find(|d| d.appeal_id == bad).unwrap();
    assert_eq!(invalid.attempts, 1, "a permanent failure is not retried");
    // The relay is back; an operator retries the dead one.
    sink.resume();
    let retried = notify.retry_delivery(system(pb::RetryDeliveryRequest { id: unreachable.id.clone() })).await.unwrap();
    // Back in the queue (the woken sender may already hold it).
    let status = retried.into_inner().status;
    assert!(["pending", "sending", "sent"].contains(&status.as_str()), "{status}");
    eventually(Duration::from_secs(30), "the retried e-mail arrived", || {
        std::future::ready(sink.messages(&format!("ok@{domain}")).len() == 1)
    })
    .await;
    sender.stop().await;
    // Pages: one at a time, then the end.
    let first = notify
        .list_deliveries(system(pb::ListDeliveriesRequest {
            organization_id: String::new(),
            status: "sent".into(),
            page_size: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.deliveries.len(), 1);
    let rest = notify
        .list_deliveries(system(pb::ListDeliveriesRequest {
            status: "sent".into(),
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(rest.deliveries.is_empty() && rest.next_page_token.is_empty(), "{rest:?}");
    // Staff of another organization do not read this log.
    let denied = notify
        .list_deliveries(as_caller(
            pb::ListDeliveriesRequest {
                appeal_id: good.clone(),
                organization_id: "other".into(),
                ..Default::default()
            },
            "school-1",
            &[pos_platform::auth::Role::OrgAdmin],
        ))
        .await;
    assert!(denied.is_err());
}

/// `cargo nextest run -p pos-notify --run-ignored only bench -- --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand, see docs/benchmarks.md"]
async fn bench_emails_per_second_to_local_smtp() {
    for (name, db, _dir) in [("postgres", postgres_db("notify", &pos_notify::MIGRATIONS).await, None), {
        let (db, dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
        ("sqlite", db, Some(dir))
    }] {
        let count = 1000;
        let sink = SmtpSink::start();
        let domain = unique_domain();
        let wake = Arc::new(Wake::default());
        let started = Instant::now();
        plan_appeals(&db, wake.clone(), &domain, count).await;
        let planned = started.elapsed();
        let defaults = pos_notify::NotifyConfig::default();
        let config = defaults.sender();
        let mailer = defaults.mailer_for(&sink.url(), None).unwrap();
        let sending = Instant::now();
        let sender = RunningSender::start(&db, mailer, wake, config);
        // Polls the ledger, not the sink's folder: reading a thousand files every 50 ms would
        // measure the test, not the sender.
        let ledger = &db;
        eventually(Duration::from_secs(600), "every e-mail is sent", move || async move {
            stats(ledger).await.sent >= count as i64
        })
        .await;
        let sent = sending.elapsed();
        sender.stop().await;
        let after = stats(&db).await;
        assert_eq!(sink.message_ids().len(), count, "every e-mail arrived");
        println!(
            "notify bench {name} (concurrency {}): {count} e-mails planned in {:.2}s ({:.0}/s), sent to local aiosmtpd in {:.2}s ({:.0} e-mails/s); \
             window p50 {} us, p99 {} us, max {} us; duplicates {}",
            defaults.concurrency,
            planned.as_secs_f64(),
            count as f64 / planned.as_secs_f64(),
            sent.as_secs_f64(),
            count as f64 / sent.as_secs_f64(),
            after.window_p50_micros,
            after.window_p99_micros,
            after.window_max_micros,
            sink.message_ids().values().filter(|n| **n > 1).count()
        );
    }
}

//! notify as a process of its own on PostgreSQL and RabbitMQ, killed with SIGKILL while it
//! sends and started again: no e-mail lost, duplicates counted (the goal is none).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pos_notify::events::NotifyEvent;
use pos_platform::bus::amqp::AmqpBus;
use pos_platform::testing::{self, eventually};
use pos_platform::{Bus, Db, Envelope, QueueSpec};

use crate::helpers::*;

struct Process(Child);

impl Process {
    async fn start(env: &[(String, String)]) -> (Process, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_pos-notify"))
            .envs(env.iter().cloned())
            .env("POS_GRPC_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", std::env::var("TEST_LOG").map(|_| "info").unwrap_or("warn"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        eventually(Duration::from_secs(60), "notify is healthy", || {
            let endpoint = endpoint.clone();
            async move { pos_platform::host::healthcheck(&endpoint, "").await.is_ok() }
        })
        .await;
        (Process(child), endpoint)
    }

    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_killed_mid_stream_loses_no_email() {
    testing::init_for_tests_once();
    let run = testing::unique("nkill");
    let sink = SmtpSink::start();
    let exchange = format!("{run}.events");
    let env: Vec<(String, String)> = [
        ("POS_DATABASE_URL", testing::database_url()),
        ("POS_SCHEMA_PREFIX", format!("{run}_")),
        ("POS_AMQP_URL", testing::amqp_url()),
        ("POS_EXCHANGE", exchange.clone()),
        ("POS_AUTH__HS256_SECRET", testing::TEST_SECRET.to_owned()),
        ("POS_AUTH__ALLOW_DEVELOPMENT_SECRET", "true".to_owned()),
        ("POS_DATA_DIR", sink.dir.0.join("data").display().to_string()),
        ("POS_NOTIFY__SMTP_URL", sink.url()),
        // A short lease so that the restarted process takes the crashed rows back quickly.
        ("POS_NOTIFY__SMTP_TIMEOUT_SECS", "1".to_owned()),
        ("POS_NOTIFY__LEASE_SECS", "2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (notify, _) = Process::start(&env).await;

    let bus = AmqpBus::connect(&testing::amqp_url(), &exchange).await.unwrap();
    // Declared here too, so that this run's queues are removed with it at the end. The host
    // names a consumer's queue after the exchange and deployment: `<exchange>.<run>.notify.events`.
    let queue = format!("{exchange}.{run}.{}", pos_notify::CONSUMER);
    bus.declare(&QueueSpec::for_events::<NotifyEvent>(queue, &["*".to_owned()])).await.unwrap();
    let domain = unique_domain();
    let count = 400;
    let envelopes: Vec<Envelope> = (0..count)
        .map(|i| {
            let id = uuid::Uuid::now_v7().to_string();
            Envelope::new(&received(&id, i as i64 + 1, &format!("a{i}@{domain}")), "41").with_appeal(&id)
        })
        .collect();
    for result in bus.publish_batch(&envelopes).await {
        result.unwrap();
    }
    eventually(Duration::from_secs(60), "the first e-mails arrived", || {
        std::future::ready(sink.message_ids().len() >= 60)
    })
    .await;
    notify.kill();
    let at_kill = sink.message_ids().len();
    let (_notify, _) = Process::start(&env).await;
    eventually(Duration::from_secs(120), "every e-mail arrived after the restart", || {
        std::future::ready(sink.message_ids().len() >= count)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids = sink.message_ids();
    let duplicates: usize = ids.values().map(|n| n - 1).sum();
    let db = Db::connect(&testing::database_url(), &format!("{run}_notify"), 2).await.unwrap();
    let resent: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(resent), 0) FROM deliveries").fetch_one(db.pool()).await.unwrap();
    println!(
        "notify sigkill: {count} e-mails, {at_kill} arrived before the kill, {} distinct after restart, \
         {duplicates} duplicates, {resent} rows resent after the lease",
        ids.len()
    );
    assert_eq!(ids.len(), count, "no e-mail lost");
    assert!(duplicates as i64 <= resent, "every duplicate is a counted resend");
    db.drop_schema().await.unwrap();
    bus.delete_declared().await.unwrap();
}

//! Faults: a broker outage, a killed service, a poison event. Nothing accepted is lost, nothing
//! happens twice. These run one at a time (see .config/nextest.toml) on a broker node of their
//! own where they stop it.

use std::time::Duration;

use pos_e2e::{
    KAMCHATKA_CENTER, Mode, Options, Platform, ServiceProcess, assert_one_ticket_per_appeal, config, e_diary_appeal,
    wait_for_deadlines,
};
use pos_platform::Envelope;
use pos_platform::bus::QueueSpec;
use pos_platform::testing::{self, RabbitNode};

const APPEALS: usize = 1_000;
const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");

fn numbered_appeal(run: &str) -> impl Fn(usize) -> pos_proto::v1::SubmitAppealRequest + '_ {
    move |i| e_diary_appeal(&format!("{run}-{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_rabbitmq_stopped_during_1000_submissions() {
    let node = tokio::task::spawn_blocking(RabbitNode::start).await.unwrap();
    let mut options = Options::new(Mode::Servers);
    options.amqp_url = Some(node.url());
    let platform = Platform::start_with(options).await.expect("platform starts");
    let run = testing::unique("outage");

    let first = platform.submit_many(APPEALS / 4, 16, numbered_appeal(&run)).await.expect("accepted");
    let node = tokio::task::spawn_blocking(move || {
        node.stop_app();
        node
    })
    .await
    .unwrap();
    // The broker is down: intake still registers every appeal; the outboxes grow.
    let during = platform
        .submit_many(APPEALS / 2, 16, |i| numbered_appeal(&run)(APPEALS / 4 + i))
        .await
        .expect("accepted while the broker is down");
    let node = tokio::task::spawn_blocking(move || {
        node.start_app();
        node
    })
    .await
    .unwrap();
    let after = platform
        .submit_many(APPEALS / 4, 16, |i| numbered_appeal(&run)(3 * APPEALS / 4 + i))
        .await
        .expect("accepted after the broker returned");

    let appeal_ids: Vec<String> = first.into_iter().chain(during).chain(after).collect();
    let tickets = platform.wait_for_tickets(KAMCHATKA_CENTER, APPEALS, Duration::from_secs(180)).await.unwrap();
    assert_one_ticket_per_appeal(&tickets, &appeal_ids);
    wait_for_deadlines(&platform.endpoint, KAMCHATKA_CENTER, &appeal_ids, Duration::from_secs(60)).await.unwrap();
    platform.stop().await.expect("stops");
    tokio::task::spawn_blocking(move || drop(node)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_routing_killed_mid_stream_and_restarted() {
    let mut options = Options::new(Mode::Servers);
    let routing_config = config(Mode::Servers, &options.data, &options.run_id, None);
    let routing = ServiceProcess::start(POS, &["routing"], &routing_config).await.expect("routing starts");
    // The in-process services reach the routing process for the classifier.
    let config_file = options.data.0.join("pos.toml");
    std::fs::write(&config_file, format!("[intake]\nrouting_url = \"{}\"\n", routing.endpoint)).unwrap();
    options.config_file = Some(config_file);
    options.services = vec!["intake", "ticketing", "sla", "notify"];
    let platform = Platform::start_with(options).await.expect("platform starts");
    let run = testing::unique("kill");

    let first = platform.submit_many(APPEALS / 2, 16, numbered_appeal(&run)).await.expect("accepted");
    routing.kill();
    // Routing is dead: appeals are still accepted and wait on the broker.
    let during = platform
        .submit_many(APPEALS / 4, 16, |i| numbered_appeal(&run)(APPEALS / 2 + i))
        .await
        .expect("accepted while routing is dead");
    let routing = ServiceProcess::start(POS, &["routing"], &routing_config).await.expect("routing restarts");
    let after = platform
        .submit_many(APPEALS / 4, 16, |i| numbered_appeal(&run)(3 * APPEALS / 4 + i))
        .await
        .expect("accepted after the restart");

    let appeal_ids: Vec<String> = first.into_iter().chain(during).chain(after).collect();
    let tickets = platform.wait_for_tickets(KAMCHATKA_CENTER, APPEALS, Duration::from_secs(180)).await.unwrap();
    assert_one_ticket_per_appeal(&tickets, &appeal_ids);
    wait_for_deadlines(&platform.endpoint, KAMCHATKA_CENTER, &appeal_ids, Duration::from_secs(60)).await.unwrap();
    drop(routing);
    for queue in ["routing.appeal-received", "routing.reroute-requested"] {
        platform.adopt_queue(queue).await.unwrap();
    }
    platform.stop().await.expect("stops");
}

async fn poison_event_is_dead_lettered_and_the_rest_flow_on(mode: Mode) {
    let platform = Platform::start(mode).await.expect("platform starts");
    // An appeal.received whose payload is not an AppealReceived at all.
    let mut poison = Envelope::new(&pos_proto::v1::events::AppealReceived::default(), "41");
    poison.payload = bytes_of(b"\xff\xff\xff not protobuf");
    platform.infra.bus.publish(&poison).await.expect("published");

    let appeal_ids =
        platform.submit_many(3, 3, |i| e_diary_appeal(&testing::unique(&format!("after-poison-{i}")))).await.unwrap();
    let tickets = platform.wait_for_tickets(KAMCHATKA_CENTER, 3, Duration::from_secs(30)).await.unwrap();
    assert_one_ticket_per_appeal(&tickets, &appeal_ids);

    let spec = QueueSpec::new(platform.infra.config.queue_name("routing.appeal-received"), &[]);
    let mut dead = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while dead.is_empty() && std::time::Instant::now() < deadline {
        dead = platform.infra.bus.drain_dead_letters(&spec, 10).await.expect("dead letters readable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.iter().map(|e| e.message_id).collect::<Vec<_>>(), vec![poison.message_id]);
    assert!(
        dead[0].headers.get(pos_platform::bus::HEADER_DEATH_REASON).is_some_and(|r| r.contains("AppealReceived")),
        "the reason says what was wrong: {:?}",
        dead[0].headers
    );
    platform.stop().await.expect("stops");
}

fn bytes_of(raw: &[u8]) -> pos_platform::bus::Bytes {
    pos_platform::bus::Bytes::copy_from_slice(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_event_is_dead_lettered_on_servers() {
    poison_event_is_dead_lettered_and_the_rest_flow_on(Mode::Servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_event_is_dead_lettered_embedded() {
    poison_event_is_dead_lettered_and_the_rest_flow_on(Mode::Embedded).await;
}

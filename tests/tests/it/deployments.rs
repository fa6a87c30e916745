//! Two deployments on one broker and one exchange, each with its own regions and schemas (as
//! Kamchatka and Tatarstan would run): each handles its own region's appeals and nothing of the
//! other's, an event of a region nobody serves is kept as unroutable, and a deployment restarted
//! with other regions loses the old binding and gains the new one.

use std::time::Duration;

use pos_e2e::{
    KAMCHATKA_CENTER, Mode, Options, Platform, TATARSTAN_CENTER, e_diary_appeal, remove_from_servers,
    tatarstan_e_diary_appeal,
};
use pos_platform::Envelope;
use pos_platform::bus::Bus;
use pos_platform::testing::{self, TempDir, eventually};
use pos_proto::v1::events::AppealReceived;

/// Waits for an appeal's ticket.
const TICKET_WAIT: Duration = Duration::from_secs(60);
/// How long the other deployment is watched for a ticket it must not make.
const QUIET: Duration = Duration::from_secs(3);

fn deployment(run_id: &str, data: TempDir, exchange: &str, regions: &[&str]) -> Options {
    let mut options = Options::new(Mode::Servers);
    options.run_id = run_id.to_owned();
    options.data = data;
    options.exchange = Some(exchange.to_owned());
    options.regions = regions.iter().map(|r| (*r).to_owned()).collect();
    options
}

/// Messages ready in `queue` on `bus`, once it holds `expected` (the broker counts asynchronously).
async fn wait_for_depth(bus: &dyn Bus, queue: &str, expected: u64) {
    eventually(Duration::from_secs(15), &format!("{queue} holds {expected}"), || async move {
        bus.queue_depth(queue).await.is_ok_and(|depth| depth == expected)
    })
    .await;
}

async fn assert_no_dead_letters(platform: &Platform) {
    for spec in &platform.queues {
        let dead = platform.infra.bus.drain_dead_letters(spec, 10).await.expect("dead letters readable");
        assert!(dead.is_empty(), "dead letters in {}: {dead:?}", spec.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_on_one_exchange_stay_apart() {
    let exchange = format!("{}.events", testing::unique("shared"));
    let (kamchatka_run, tatarstan_run) = (testing::unique("kamchatka"), testing::unique("tatarstan"));
    let kamchatka = Platform::start_with(deployment(&kamchatka_run, TempDir::new(), &exchange, &["41"]))
        .await
        .expect("the Kamchatka deployment starts");
    let tatarstan = Platform::start_with(deployment(&tatarstan_run, TempDir::new(), &exchange, &["16"]))
        .await
        .expect("the Tatarstan deployment starts");
    assert_eq!(kamchatka.infra.config.exchange, tatarstan.infra.config.exchange);
    for spec in &kamchatka.queues {
        assert!(tatarstan.queues.iter().all(|theirs| theirs.name != spec.name), "{} is shared", spec.name);
    }

    let from_kamchatka = kamchatka
        .submit_many(1, 1, |_| e_diary_appeal(&testing::unique("req")))
        .await
        .expect("accepted in Kamchatka")
        .remove(0);
    let from_tatarstan = tatarstan
        .submit_many(1, 1, |_| tatarstan_e_diary_appeal(&testing::unique("req")))
        .await
        .expect("accepted in Tatarstan")
        .remove(0);
    let ticket = kamchatka.wait_for_ticket(&from_kamchatka, KAMCHATKA_CENTER, TICKET_WAIT).await.unwrap();
    assert_eq!(ticket.appeal_id, from_kamchatka);
    let ticket = tatarstan.wait_for_ticket(&from_tatarstan, TATARSTAN_CENTER, TICKET_WAIT).await.unwrap();
    assert_eq!(ticket.appeal_id, from_tatarstan);
    // Each appeal became a ticket in its own deployment only.
    tokio::time::sleep(QUIET).await;
    assert!(tatarstan.all_tickets(KAMCHATKA_CENTER).await.unwrap().is_empty(), "Tatarstan took a 41 event");
    assert!(kamchatka.all_tickets(TATARSTAN_CENTER).await.unwrap().is_empty(), "Kamchatka took a 16 event");
    assert_eq!(kamchatka.all_tickets(KAMCHATKA_CENTER).await.unwrap().len(), 1);
    assert_eq!(tatarstan.all_tickets(TATARSTAN_CENTER).await.unwrap().len(), 1);
    assert_no_dead_letters(&kamchatka).await;
    assert_no_dead_letters(&tatarstan).await;

    // Every event of 41 and 16 had a taker; one of 77, which neither serves, is kept.
    let unroutable = format!("{exchange}.unroutable");
    let bus = kamchatka.infra.bus.clone();
    wait_for_depth(bus.as_ref(), &unroutable, 0).await;
    bus.publish(&Envelope::new(&AppealReceived::default(), "77")).await.expect("published");
    wait_for_depth(bus.as_ref(), &unroutable, 1).await;

    // Kamchatka comes back serving 77 instead of 41: stopped (its queues and data stay), started
    // again with the same identity and other regions, stopped again to look at its queue.
    let (_, data) = kamchatka.shut_down().await.expect("Kamchatka stops");
    let restarted = Platform::start_with(deployment(&kamchatka_run, data, &exchange, &["77"]))
        .await
        .expect("Kamchatka restarts with other regions");
    let queues = restarted.queues.clone();
    let (infra, _data) = restarted.shut_down().await.expect("Kamchatka stops again");
    let routing = queues
        .iter()
        .find(|spec| spec.name.ends_with(".routing.appeal-received"))
        .expect("routing's queue")
        .name
        .clone();
    wait_for_depth(infra.bus.as_ref(), &routing, 0).await;
    infra.bus.publish(&Envelope::new(&AppealReceived::default(), "77")).await.expect("published");
    infra.bus.publish(&Envelope::new(&AppealReceived::default(), "41")).await.expect("published");
    // 77 is bound now; 41 is not any more, and nobody else takes it.
    wait_for_depth(infra.bus.as_ref(), &routing, 1).await;
    wait_for_depth(infra.bus.as_ref(), &unroutable, 2).await;

    tatarstan.stop().await.expect("Tatarstan stops");
    // The last deployment on the exchange takes the exchanges with it.
    remove_from_servers(&infra).await.expect("Kamchatka's queues, schemas and the exchanges removed");
}

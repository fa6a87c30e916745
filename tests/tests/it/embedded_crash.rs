//! `pos up` (embedded: SQLite, journaled in-process bus) killed with SIGKILL mid-scenario and
//! started again on the same data: nothing accepted is lost, nothing is done twice. A client
//! that lost its answer in the crash retries with the same request_id, as clients must.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use pos_e2e::{KAMCHATKA_CENTER, Mode, ServiceProcess, config, e_diary_appeal, wait_for_tickets};
use pos_platform::auth::Role;
use pos_platform::testing::{self, TempDir};
use pos_proto::v1::intake_service_client::IntakeServiceClient;

const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");
const APPEALS: usize = 400;

/// Submits `request_id` until some instance answers, following the endpoint across restarts.
async fn submit_until_accepted(
    endpoint: Arc<RwLock<String>>,
    accepted: Arc<AtomicUsize>,
    request_id: String,
    token: String,
) -> (String, String) {
    loop {
        let target = endpoint.read().unwrap().clone();
        if let Ok(channel) = pos_platform::grpc::channel(&target) {
            let request = pos_platform::grpc::outgoing(e_diary_appeal(&request_id), &token);
            match IntakeServiceClient::new(channel).submit_appeal(request).await {
                Ok(response) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    return (request_id, response.into_inner().appeal_id);
                }
                Err(status) => assert!(
                    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled),
                    "only the crash may refuse a valid appeal: {status}"
                ),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_pos_up_killed_with_sigkill_loses_nothing() {
    testing::init_for_tests_once();
    let data = TempDir::new();
    let config = config(Mode::Embedded, &data, "crash", None);
    let first = ServiceProcess::start(POS, &[], &config).await.expect("pos up starts");
    let endpoint = Arc::new(RwLock::new(first.endpoint.clone()));
    // A channel integration submitting in bulk: a system caller, with its own rate allowance.
    let token = testing::token("channel-crash", "", "41", &[Role::System]);
    let run = testing::unique("crash");
    let accepted = Arc::new(AtomicUsize::new(0));

    let submissions = futures::stream::iter(0..APPEALS)
        .map(|i| submit_until_accepted(endpoint.clone(), accepted.clone(), format!("{run}-{i}"), token.clone()))
        .buffer_unordered(8)
        .collect::<Vec<_>>();
    let crash = {
        let endpoint = endpoint.clone();
        let (config, accepted) = (config.clone(), accepted.clone());
        async move {
            // Let a good part of the run be accepted and in flight, then crash.
            while accepted.load(Ordering::SeqCst) < APPEALS / 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            first.kill();
            let at_crash = accepted.load(Ordering::SeqCst);
            assert!(at_crash < APPEALS, "the crash must come mid-run, {at_crash} of {APPEALS} were accepted");
            let second = ServiceProcess::start(POS, &[], &config).await.expect("pos up restarts on the same data");
            *endpoint.write().unwrap() = second.endpoint.clone();
            second
        }
    };
    let (answers, second) = tokio::join!(submissions, crash);

    // Every request_id got exactly one appeal, even when it was retried across the crash.
    let by_request: HashMap<String, String> = answers.iter().cloned().collect();
    assert_eq!(by_request.len(), APPEALS);
    let appeal_ids: Vec<String> = by_request.values().cloned().collect::<HashSet<_>>().into_iter().collect();
    assert_eq!(appeal_ids.len(), APPEALS, "one appeal per request_id");

    let tickets =
        wait_for_tickets(&second.endpoint, KAMCHATKA_CENTER, APPEALS, Duration::from_secs(120)).await.unwrap();
    pos_e2e::assert_one_ticket_per_appeal(&tickets, &appeal_ids);
    pos_e2e::wait_for_deadlines(&second.endpoint, KAMCHATKA_CENTER, &appeal_ids, Duration::from_secs(60))
        .await
        .unwrap();
    drop(second);
}

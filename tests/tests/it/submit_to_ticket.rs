//! An appeal submitted over gRPC appears as a ticket in the right organization's New folder,
//! end to end through the bus, in one trace — on real servers and embedded.

use std::time::Duration;

use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform, e_diary_appeal, traced};
use pos_platform::auth::Role;
use pos_platform::testing;
use pos_proto::v1 as pb;

async fn submit_reaches_the_new_folder_in_one_trace(mode: Mode) {
    let platform = Platform::start(mode).await.expect("platform starts");
    let token = testing::token("operator-1", "", "41", &[Role::Operator]);
    let trace_id = uuid::Uuid::new_v4().simple().to_string();

    let submitted = platform
        .intake()
        .submit_appeal(traced(e_diary_appeal(&testing::unique("req")), &token, &trace_id))
        .await
        .expect("appeal accepted")
        .into_inner();
    assert!(submitted.number > 0);
    assert!(submitted.registered_at.is_some());

    let ticket = platform
        .wait_for_ticket(&submitted.appeal_id, KAMCHATKA_CENTER, Duration::from_secs(30))
        .await
        .expect("ticket created");
    assert_eq!(ticket.organization.as_ref().map(|o| o.id.as_str()), Some(KAMCHATKA_CENTER));
    assert_eq!(ticket.folder, pb::Folder::New as i32);
    assert_eq!(ticket.number, submitted.number);
    assert!(ticket.fast_track, "the e-diary fact is fast-track in Kamchatka");
    assert!(!ticket.public_text.contains("123-345-678 90"), "SNILS is masked in the cabinet's text");
    assert_eq!(ticket.trace_id, trace_id, "one trace from the submit call to the ticket's creation");

    // The coordinator of the regional center sees it in New, with the folder counts.
    let coordinator = testing::token("coordinator-1", KAMCHATKA_CENTER, "41", &[Role::Coordinator]);
    let list = platform
        .ticketing()
        .list_tickets(pos_platform::grpc::outgoing(
            pb::ListTicketsRequest { folder: pb::Folder::New as i32, ..Default::default() },
            &coordinator,
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(list.tickets.iter().any(|t| t.appeal_id == submitted.appeal_id));
    let new_count = list.folder_counts.iter().find(|c| c.folder == pb::Folder::New as i32).map(|c| c.count);
    assert_eq!(new_count, Some(1));

    // Another organization's coordinator cannot read it.
    let stranger = testing::token("coordinator-2", "41-minobr", "41", &[Role::Coordinator]);
    let denied = platform
        .ticketing()
        .get_ticket(pos_platform::grpc::outgoing(
            pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::TicketId(ticket.id.clone())) },
            &stranger,
        ))
        .await
        .expect_err("another organization is refused");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // The applicant's view in intake follows the routing decision.
    let appeal = wait_for_routed_appeal(&platform, &submitted.appeal_id).await;
    assert_eq!(appeal.routing.and_then(|r| r.organization).map(|o| o.id), Some(KAMCHATKA_CENTER.to_owned()));

    platform.stop().await.expect("stops gracefully");
}

async fn wait_for_routed_appeal(platform: &Platform, appeal_id: &str) -> pb::Appeal {
    let token = testing::token("operator-1", "", "41", &[Role::Operator]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let appeal = platform
            .intake()
            .get_appeal(pos_platform::grpc::outgoing(pb::GetAppealRequest { appeal_id: appeal_id.to_owned() }, &token))
            .await
            .expect("appeal readable")
            .into_inner();
        if appeal.routing.is_some() || std::time::Instant::now() > deadline {
            return appeal;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_reaches_the_new_folder_on_servers() {
    submit_reaches_the_new_folder_in_one_trace(Mode::Servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_reaches_the_new_folder_embedded() {
    submit_reaches_the_new_folder_in_one_trace(Mode::Embedded).await;
}

//! The README's five-minute walkthrough as a test, on real servers and embedded: the Kamchatka
//! e-diary appeal is submitted, lands fast-track in the regional center's New folder, is
//! assigned, answered and approved, and the applicant is e-mailed the answer.

use std::time::Duration;

use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform, e_diary_appeal};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_client::NotifyServiceClient;
use pos_proto::v1::sla_service_client::SlaServiceClient;

/// Checks that a command moved the version by one and remembers the new one.
fn advance(version: &mut i64, updated: pb::Ticket) -> pb::Ticket {
    assert_eq!(updated.version, *version + 1, "every command moves the version by one");
    *version = updated.version;
    updated
}

async fn walkthrough(mode: Mode) {
    let platform = Platform::start(mode).await.expect("platform starts");
    let token = |subject: &str, role: Role| testing::token(subject, KAMCHATKA_CENTER, "41", &[role]);
    let mut ticketing = platform.ticketing();

    let executor = pb::StaffMember {
        subject: "executor-petrov".into(),
        organization_id: KAMCHATKA_CENTER.into(),
        full_name: "Петров Иван".into(),
        email: "petrov@kcioko.example".into(),
        roles: vec!["executor".into()],
        active: true,
    };
    ticketing.upsert_staff(outgoing(executor, &token("admin", Role::OrgAdmin))).await.expect("staff saved");

    let operator = testing::token("operator-1", "", "41", &[Role::Operator]);
    let submitted = platform
        .intake()
        .submit_appeal(outgoing(e_diary_appeal(&testing::unique("walk")), &operator))
        .await
        .expect("accepted")
        .into_inner();
    let ticket =
        platform.wait_for_ticket(&submitted.appeal_id, KAMCHATKA_CENTER, Duration::from_secs(30)).await.unwrap();
    assert_eq!(ticket.folder, pb::Folder::New as i32);
    assert!(ticket.fast_track);

    let coordinator = token("coordinator-1", Role::Coordinator);
    let executor = token("executor-petrov", Role::Executor);
    let head = token("head-1", Role::Head);
    let id = ticket.id.clone();
    let mut version = ticket.version;
    let assign = pb::AssignExecutorRequest {
        ticket_id: id.clone(),
        expected_version: version,
        executor_id: "executor-petrov".into(),
        execution_due: None,
    };
    advance(
        &mut version,
        ticketing.assign_executor(outgoing(assign, &coordinator)).await.expect("assigned").into_inner(),
    );
    let take = pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: version };
    advance(&mut version, ticketing.take_in_work(outgoing(take, &executor)).await.expect("taken in work").into_inner());
    let answer = pb::Answer {
        r#type: pos_proto::v1::events::AnswerType::Resolved as i32,
        text: "Здравствуйте! Доступ к электронному дневнику предоставлен.".into(),
        ..Default::default()
    };
    let prepare = pb::PrepareAnswerRequest {
        ticket_id: id.clone(),
        expected_version: version,
        answer: Some(answer),
        template_id: String::new(),
    };
    advance(&mut version, ticketing.prepare_answer(outgoing(prepare, &executor)).await.expect("prepared").into_inner());
    let send = pb::VersionRequest { ticket_id: id.clone(), expected_version: version };
    let sent =
        advance(&mut version, ticketing.send_for_approval(outgoing(send, &executor)).await.expect("sent").into_inner());
    assert_eq!(sent.folder, pb::Folder::SentForApproval as i32);
    let approve = pb::ApproveRequest { ticket_id: id.clone(), expected_version: version, edited: None };
    let approved =
        advance(&mut version, ticketing.approve(outgoing(approve, &head)).await.expect("approved").into_inner());
    assert_eq!(approved.folder, pb::Folder::Processed as i32);

    // The applicant is e-mailed the answer (a mailbox folder or SMTP: the delivery log says).
    let system = testing::token("ops", "", "", &[Role::System]);
    let mut notify = NotifyServiceClient::new(platform.channel());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answer_mail = loop {
        let request =
            pb::ListDeliveriesRequest { appeal_id: submitted.appeal_id.clone(), page_size: 100, ..Default::default() };
        let deliveries =
            notify.list_deliveries(outgoing(request, &system)).await.expect("delivery log").into_inner().deliveries;
        let found = deliveries.into_iter().find(|d| {
            d.event_type == "ticket.answer_approved" && d.recipient == "maria@example.org" && d.status == "sent"
        });
        match found {
            Some(delivery) => break delivery,
            None if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            None => panic!("the applicant's answer e-mail was not sent"),
        }
    };
    assert!(answer_mail.subject.contains(&submitted.number.to_string()), "{}", answer_mail.subject);

    // The answer clock stopped in time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let request = pb::GetDeadlinesRequest { appeal_id: submitted.appeal_id.clone() };
        let deadlines = SlaServiceClient::new(platform.channel())
            .get_deadlines(outgoing(request, &system))
            .await
            .unwrap()
            .into_inner();
        if deadlines.answer.as_ref().is_some_and(|a| a.met) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the answer deadline was not met: {deadlines:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    platform.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_on_servers() {
    walkthrough(Mode::Servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_embedded() {
    walkthrough(Mode::Embedded).await;
}

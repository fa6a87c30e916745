//! One appeal's life in Kamchatka (region 41, UTC+12), embedded, with a real SMTP relay: the
//! e-mails its applicant and the regional center's staff read. Names, never ids; the applicant's
//! local time with its zone said; the planned deadline filled; the letters in the order the
//! statuses happened, and only those an applicant wants; staff subjects that tell the messages
//! apart.

use std::time::{Duration, Instant};

use pos_e2e::mail::SmtpSink;
use pos_e2e::{KAMCHATKA_CENTER, e_diary_appeal};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_client::NotifyServiceClient;

/// A protobuf timestamp as a clock in Kamchatka (UTC+12 all year) shows it.
macro_rules! kamchatka_time {
    ($at:expr) => {{
        let mut shifted = $at.clone();
        shifted.seconds += 12 * 3600;
        pos_proto::time::from_proto(&shifted).unwrap().format("%d.%m.%Y %H:%M").to_string()
    }};
}

/// Waits until `ready` holds, checking every 200 ms.
async fn wait_until(what: &str, timeout: Duration, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamchatka_an_appeals_life_in_e_mails() {
    let sink = SmtpSink::start();
    let platform = sink.embedded_platform().await;
    let domain = format!("{}.test", testing::unique("kam").replace('_', "-"));
    let (applicant, head) = (format!("maria@{domain}"), format!("head@{domain}"));
    let token = |subject: &str, role: Role| testing::token(subject, KAMCHATKA_CENTER, "41", &[role]);
    let mut ticketing = platform.ticketing();
    for (subject, email, role) in
        [("executor-petrov", format!("petrov@{domain}"), "executor"), ("head-1", head.clone(), "head")]
    {
        let member = pb::StaffMember {
            subject: subject.into(),
            organization_id: KAMCHATKA_CENTER.into(),
            full_name: subject.into(),
            email,
            roles: vec![role.into()],
            active: true,
        };
        ticketing.upsert_staff(outgoing(member, &token("admin", Role::OrgAdmin))).await.expect("staff saved");
    }

    let mut request = e_diary_appeal(&testing::unique("kamchatka"));
    request.applicant.as_mut().unwrap().email = applicant.clone();
    let operator = testing::token("operator-1", "", "41", &[Role::Operator]);
    let submitted = platform.intake().submit_appeal(outgoing(request, &operator)).await.expect("accepted").into_inner();
    let number = submitted.number.to_string();
    let ticket =
        platform.wait_for_ticket(&submitted.appeal_id, KAMCHATKA_CENTER, Duration::from_secs(30)).await.unwrap();
    // The regional center's coordinator acts once the card shows its answer deadline.
    let coordinator = token("coordinator-1", Role::Coordinator);
    let mut answer_due = None;
    wait_until("the card shows its deadline", Duration::from_secs(30), async || {
        let key = pb::get_ticket_request::Key::AppealId(submitted.appeal_id.clone());
        let card = ticketing.get_ticket(outgoing(pb::GetTicketRequest { key: Some(key) }, &coordinator)).await;
        answer_due = card.unwrap().into_inner().answer_due;
        answer_due.is_some()
    })
    .await;
    let due = kamchatka_time!(answer_due.unwrap());
    assert!(due.ends_with("23:59"), "a deadline ends a local day: {due}");

    let (executor, head_token) = (token("executor-petrov", Role::Executor), token("head-1", Role::Head));
    let id = ticket.id.clone();
    let mut version = ticket.version;
    let assign = pb::AssignExecutorRequest {
        ticket_id: id.clone(),
        expected_version: version,
        executor_id: "executor-petrov".into(),
        execution_due: None,
    };
    version = ticketing.assign_executor(outgoing(assign, &coordinator)).await.expect("assigned").into_inner().version;
    let take = pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: version };
    version = ticketing.take_in_work(outgoing(take, &executor)).await.expect("taken in work").into_inner().version;
    let ask = pb::CommentRequest {
        ticket_id: id.clone(),
        expected_version: version,
        comment: "Уточните класс сына".into(),
        attachment_ids: Vec::new(),
    };
    version = ticketing.request_information(outgoing(ask, &executor)).await.expect("asked").into_inner().version;
    let got = pb::CommentRequest {
        ticket_id: id.clone(),
        expected_version: version,
        comment: "5 «А»".into(),
        attachment_ids: Vec::new(),
    };
    version = ticketing.information_received(outgoing(got, &executor)).await.expect("received").into_inner().version;
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
    version = ticketing.prepare_answer(outgoing(prepare, &executor)).await.expect("prepared").into_inner().version;
    let send = pb::VersionRequest { ticket_id: id.clone(), expected_version: version };
    version = ticketing.send_for_approval(outgoing(send, &executor)).await.expect("sent").into_inner().version;
    let approve = pb::ApproveRequest { ticket_id: id.clone(), expected_version: version, edited: None };
    ticketing.approve(outgoing(approve, &head_token)).await.expect("approved");

    // The applicant hears of the registration, the work, the question and the answer: not of the
    // executor's assignment, the executor taking what was taken, nor the answer going for approval.
    let expected = [
        format!("Сообщение №{number} зарегистрировано"),
        format!("Статус сообщения №{number}: В работе"),
        format!("По сообщению №{number} нужна дополнительная информация"),
        format!("Ответ на сообщение №{number} готов"),
    ];
    wait_until("the applicant's letters arrived", Duration::from_secs(60), async || {
        sink.messages(&applicant).len() >= expected.len() && !sink.messages(&head).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let letters = sink.messages(&applicant);
    let mut subjects: Vec<&str> = letters.iter().map(|(subject, _)| subject.as_str()).collect();
    subjects.sort();
    let mut chosen: Vec<&str> = expected.iter().map(String::as_str).collect();
    chosen.sort();
    assert_eq!(subjects, chosen, "the applicant's letters");

    // In the order the statuses happened: the relay got each after the one before.
    let system = testing::token("ops", "", "", &[Role::System]);
    let log =
        pb::ListDeliveriesRequest { appeal_id: submitted.appeal_id.clone(), page_size: 100, ..Default::default() };
    let mut sent: Vec<pb::Delivery> = NotifyServiceClient::new(platform.channel())
        .list_deliveries(outgoing(log, &system))
        .await
        .expect("delivery log")
        .into_inner()
        .deliveries
        .into_iter()
        .filter(|d| d.recipient == applicant && d.status == "sent")
        .collect();
    sent.sort_by_key(|d| d.delivered_at.map(|t| (t.seconds, t.nanos)));
    let order: Vec<&str> = sent.iter().map(|d| d.subject.as_str()).collect();
    assert_eq!(order, expected.iter().map(String::as_str).collect::<Vec<_>>(), "the order of the letters");

    let letter = |subject: &str| letters.iter().find(|(s, _)| s == subject).map(|(_, body)| body.clone()).unwrap();
    // Registration: the time in Kamchatka, its zone said; the classifier's names.
    let registered = letter(&expected[0]);
    let at = format!("{} по местному времени (UTC+12)", kamchatka_time!(submitted.registered_at.unwrap()));
    for part in [
        at.as_str(),
        "Категория: Образование.",
        "Подкатегория: Электронный дневник.",
        "Факт: Проблемы с доступом к электронному дневнику.",
    ] {
        assert!(registered.contains(part), "{part:?} not in {registered}");
    }
    // The planned deadline, in the applicant's time.
    let in_work = letter(&expected[1]);
    let planned = format!("Плановый срок рассмотрения: {due} по местному времени (UTC+12).");
    assert!(in_work.contains(&planned), "{planned:?} not in {in_work}");
    assert!(letter(&expected[2]).contains("Уточните класс сына"));

    // Staff: the number and the category in the subject; the deadline filled.
    let staff = [sink.messages(&head), sink.messages("info@kcioko.ru")].concat();
    assert!(!staff.is_empty());
    let approval = format!("Ответ ожидает согласования или утверждения: №{number}, Образование");
    assert!(staff.iter().any(|(subject, _)| *subject == approval), "{approval:?} not in {staff:?}");
    for (subject, body) in &staff {
        assert!(subject.contains(&format!("№{number}, Образование")), "{subject}");
        assert!(body.contains("Плановый срок рассмотрения сообщения: "), "{body}");
    }
    for (subject, body) in letters.iter().chain(&staff) {
        for wrong in ["education", "МСК", ": —"] {
            assert!(!subject.contains(wrong) && !body.contains(wrong), "{wrong:?} in {subject}: {body}");
        }
    }
    platform.stop().await.expect("stops");
}

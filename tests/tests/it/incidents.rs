//! Escalations end to end, the platform embedded with a real SMTP relay, each person with their
//! own token:
//! - seed 000: the Kamchatka center's coordinator opens a situation-center incident with a PNG
//!   screenshot; the applicant is told; the second line asks the applicant, who answers with a
//!   file; the result is rejected with a reason, then confirmed; staff read the applicant's file,
//!   another organization cannot;
//! - seed 001: a college escalates to Рособрнадзор, whose staff see it in their own cabinet, ask
//!   for information and answer; the college reads the answer and answers the applicant.

use std::time::Duration;

use pos_e2e::mail::SmtpSink;
use pos_e2e::{KAMCHATKA_CENTER, Platform, e_diary_appeal};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_proto::v1::attachment_chunk::Part as ChunkPart;
use pos_proto::v1::upload_attachment_request::Part;

/// A 1×1 PNG: the screenshot.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0bIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82";
const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";

const COLLEGE: &str = "41-college-polytech";
const ROSOBRNADZOR: &str = "rosobrnadzor";

async fn upload(platform: &Platform, token: &str, name: &str, bytes: &[u8]) -> String {
    let parts = vec![
        pb::UploadAttachmentRequest {
            part: Some(Part::Meta(pb::AttachmentMeta { file_name: name.into(), size: bytes.len() as i64 })),
        },
        pb::UploadAttachmentRequest { part: Some(Part::Chunk(bytes.to_vec())) },
    ];
    let uploaded = platform.intake().upload_attachment(outgoing(tokio_stream::iter(parts), token)).await;
    uploaded.expect("uploaded").into_inner().attachment_id
}

async fn download(platform: &Platform, token: &str, id: &str) -> Result<(pb::AttachmentInfo, Vec<u8>), tonic::Status> {
    let request = outgoing(pb::DownloadAttachmentRequest { attachment_id: id.into() }, token);
    let mut stream = platform.intake().download_attachment(request).await?.into_inner();
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(ChunkPart::Info(described)) => info = Some(described),
            Some(ChunkPart::Chunk(chunk)) => bytes.extend_from_slice(&chunk),
            None => {}
        }
    }
    Ok((info.expect("the file's description"), bytes))
}

fn step(incident: &pb::Incident, comment: &str, files: Vec<String>) -> pb::IncidentCommandRequest {
    pb::IncidentCommandRequest {
        incident_id: incident.id.clone(),
        expected_version: incident.version,
        comment: comment.into(),
        attachment_ids: files,
    }
}

fn card(appeal_id: &str) -> pb::GetTicketRequest {
    pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::AppealId(appeal_id.into())) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_a_situation_center_incident_with_the_applicant_in_the_loop() {
    let sink = SmtpSink::start();
    let platform = sink.embedded_platform().await;
    let email = format!("{}@example.test", testing::unique("inc").replace('_', "-"));
    let applicant_account = testing::unique("esia");
    let applicant = testing::token(&applicant_account, "", "41", &[Role::Applicant]);
    let coordinator = testing::token("coordinator-1", KAMCHATKA_CENTER, "41", &[Role::Coordinator]);
    let itsm = testing::token("itsm-sc", "", "", &[Role::System]);
    let mut ticketing = platform.ticketing();

    let mut request = e_diary_appeal(&testing::unique("inc"));
    request.applicant.as_mut().unwrap().email = email.clone();
    let submitted = platform.intake().submit_appeal(outgoing(request, &applicant)).await.expect("registered");
    let submitted = submitted.into_inner();
    let number = submitted.number;
    let ticket =
        platform.wait_for_ticket(&submitted.appeal_id, KAMCHATKA_CENTER, Duration::from_secs(30)).await.unwrap();

    // The center first asks the applicant itself; the applicant answers with a file, which the
    // history names and the center reads.
    let taken = pb::TakeInWorkRequest { ticket_id: ticket.id.clone(), expected_version: ticket.version };
    let t = ticketing.take_in_work(outgoing(taken, &coordinator)).await.expect("taken").into_inner();
    let ask = pb::CommentRequest {
        ticket_id: ticket.id.clone(),
        expected_version: t.version,
        comment: "Укажите школу и класс".into(),
        attachment_ids: Vec::new(),
    };
    let t = ticketing.request_information(outgoing(ask, &coordinator)).await.expect("asked").into_inner();
    let certificate = upload(&platform, &applicant, "справка.pdf", PDF).await;
    let answer = pb::CommentRequest {
        ticket_id: ticket.id.clone(),
        expected_version: t.version,
        comment: "Школа № 1, 5 «А», справка во вложении".into(),
        attachment_ids: vec![certificate.clone()],
    };
    let ticket = ticketing.information_received(outgoing(answer, &applicant)).await.expect("answered").into_inner();
    assert_eq!(ticket.status, "in work", "the clock resumes with the work");
    let history =
        ticketing.get_ticket_history(outgoing(card(&submitted.appeal_id), &coordinator)).await.unwrap().into_inner();
    assert_eq!(history.entries.last().unwrap().attachment_ids, std::slice::from_ref(&certificate));
    let (_, bytes) = download(&platform, &coordinator, &certificate).await.expect("the center reads it");
    assert_eq!(bytes, PDF);

    // The coordinator opens the incident with a PNG screenshot (seed 000's form).
    let screenshot = upload(&platform, &coordinator, "экран.png", PNG).await;
    let open = pb::OpenIncidentRequest {
        ticket_id: ticket.id.clone(),
        kind: pb::IncidentKind::SituationCenter as i32,
        service: "Инциденты ИС ИЭП".into(),
        request_type: "Запрос/инцидент".into(),
        system: "МШ. Платформа ЦОК".into(),
        priority: "3 Приоритет".into(),
        subject: "Нет доступа к Библиотеке ЦОК при выполнении всех условий".into(),
        attachment_ids: vec![screenshot.clone()],
        user_account: "maria@example.org".into(),
        external_id: String::new(),
        handler_organization_id: String::new(),
    };
    let incident = ticketing.open_incident(outgoing(open, &coordinator)).await.expect("opened").into_inner();
    let card_now = ticketing.get_ticket(outgoing(card(&submitted.appeal_id), &coordinator)).await.unwrap().into_inner();
    assert!(card_now.incident_open, "the card shows the open incident");
    assert_eq!(card_now.version, ticket.version + 1, "and its version moved");
    let opened = sink
        .letter(
            &email,
            &format!("По сообщению №{number} направлен запрос: Ситуационный центр электронного правительства"),
        )
        .await;
    assert!(opened.contains("Нет доступа к Библиотеке ЦОК"), "{opened}");

    // The second line asks the applicant, who answers with a file.
    let incident = ticketing.escalate_incident(outgoing(step(&incident, "", Vec::new()), &itsm)).await.unwrap();
    let incident = ticketing
        .request_incident_information(outgoing(
            step(&incident.into_inner(), "Пришлите снимок экрана с ошибкой входа", Vec::new()),
            &itsm,
        ))
        .await
        .expect("asked")
        .into_inner();
    let asked = sink.letter(&email, &format!("По сообщению №{number} нужна информация от вас")).await;
    assert!(asked.contains("Пришлите снимок экрана с ошибкой входа") && asked.contains("Ответьте в личном кабинете"));
    let proof = upload(&platform, &applicant, "ошибка.pdf", PDF).await;
    let incident = ticketing
        .incident_information_received(outgoing(
            step(&incident, "Снимок с ошибкой во вложении", vec![proof.clone()]),
            &applicant,
        ))
        .await
        .expect("the applicant answered")
        .into_inner();
    assert_eq!(incident.state, "open, second line");

    // Resolved; the applicant rejects with a reason, then confirms the second result.
    let incident = ticketing
        .resolve_incident(outgoing(step(&incident, "Учётная запись привязана к школе", Vec::new()), &itsm))
        .await
        .expect("resolved")
        .into_inner();
    let result = sink
        .letter(
            &email,
            &format!("По сообщению №{number} получен результат: Ситуационный центр электронного правительства"),
        )
        .await;
    assert!(
        result.contains("Учётная запись привязана к школе") && result.contains("подтвердите результат"),
        "{result}"
    );
    let no_reason = ticketing.reject_incident_result(outgoing(step(&incident, "", Vec::new()), &applicant)).await;
    assert_eq!(no_reason.expect_err("a reason is required").code(), tonic::Code::InvalidArgument);
    let incident = ticketing
        .reject_incident_result(outgoing(step(&incident, "Доступа по-прежнему нет", Vec::new()), &applicant))
        .await
        .expect("rejected")
        .into_inner();
    assert_eq!(incident.state, "open, second line");
    let incident = ticketing
        .resolve_incident(outgoing(step(&incident, "Сброшен кэш прав доступа", Vec::new()), &itsm))
        .await
        .expect("resolved again")
        .into_inner();
    let incident = ticketing
        .confirm_incident_result(outgoing(step(&incident, "", Vec::new()), &applicant))
        .await
        .expect("confirmed")
        .into_inner();
    assert_eq!(incident.state, "confirmed");
    let closed = ticketing.get_ticket(outgoing(card(&submitted.appeal_id), &coordinator)).await.unwrap().into_inner();
    assert!(!closed.incident_open);
    assert_eq!(closed.version, ticket.version + 8, "every step moved the card");

    // Staff read the applicant's file and the screenshot; another organization reads neither.
    let (info, bytes) = download(&platform, &coordinator, &proof).await.expect("the center reads the applicant's file");
    assert_eq!((info.content_type.as_str(), bytes.as_slice()), ("application/pdf", PDF));
    let (info, _) = download(&platform, &coordinator, &screenshot).await.expect("and the screenshot");
    assert_eq!(info.content_type, "image/png");
    let ministry = testing::token("coordinator-2", "41-minobr", "41", &[Role::Coordinator]);
    for file in [&proof, &screenshot] {
        let denied = download(&platform, &ministry, file).await.expect_err("another organization");
        assert_eq!(pos_platform::error::reason(&denied), "OTHER_ORGANIZATION");
    }
    platform.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_the_college_escalates_to_rosobrnadzor_which_answers_in_its_own_cabinet() {
    let sink = SmtpSink::start();
    let platform = sink.embedded_platform().await;
    let email = format!("{}@example.test", testing::unique("frdo").replace('_', "-"));
    let applicant = testing::token(&testing::unique("esia"), "", "41", &[Role::Applicant]);
    let college = |subject: &str, role: Role| testing::token(subject, COLLEGE, "41", &[role]);
    let rosobrnadzor = |subject: &str, role: Role| testing::token(subject, ROSOBRNADZOR, "", &[role]);
    let mut ticketing = platform.ticketing();

    let request = pb::SubmitAppealRequest {
        request_id: testing::unique("frdo"),
        source: pb::Source::Epgu as i32,
        applicant: Some(pb::Applicant {
            full_name: "Петров Пётр".into(), email: email.clone(), ..Default::default()
        }),
        region_code: "41".into(),
        category_id: "edu-records".into(),
        subcategory_id: "edu-records.documents".into(),
        fact_id: "edu-records.documents.spo-diploma-missing".into(),
        picked_organization_id: COLLEGE.into(),
        text: "Диплом о СПО до сих пор не отображается на Госуслугах, хотя колледж ответил, что данные внесены.".into(),
        ..Default::default()
    };
    let submitted = platform.intake().submit_appeal(outgoing(request, &applicant)).await.expect("registered");
    let submitted = submitted.into_inner();
    let ticket = platform.wait_for_ticket(&submitted.appeal_id, COLLEGE, Duration::from_secs(30)).await.unwrap();

    // The college escalates to the federal supervisor named in the directory.
    let open = pb::OpenIncidentRequest {
        ticket_id: ticket.id.clone(),
        kind: pb::IncidentKind::FederalSupervisor as i32,
        subject: "Проверьте корректность внесённых данных диплома в ФИС ФРДО".into(),
        handler_organization_id: ROSOBRNADZOR.into(),
        ..Default::default()
    };
    let coordinator = college("college-coordinator", Role::Coordinator);
    let opened = ticketing.open_incident(outgoing(open, &coordinator)).await.expect("escalated").into_inner();
    sink.letter(&email, &format!("По сообщению №{} направлен запрос: Рособрнадзор", submitted.number)).await;

    // Рособрнадзор's staff see it in their own cabinet, with the appeal's public text.
    let addressed = pb::ListIncidentsRequest {
        ticket_id: String::new(),
        handler_organization_id: ROSOBRNADZOR.into(),
        open_only: true,
    };
    let inspector = rosobrnadzor("inspector-1", Role::Executor);
    let listed =
        ticketing.list_incidents(outgoing(addressed.clone(), &inspector)).await.expect("their cabinet").into_inner();
    let seen = listed.incidents.iter().find(|i| i.id == opened.id).expect("the escalation is listed");
    assert_eq!(seen.appeal_number, submitted.number);
    assert!(seen.appeal_text.starts_with("Диплом о СПО до сих пор не отображается"), "{}", seen.appeal_text);
    let denied = ticketing
        .list_incidents(outgoing(addressed.clone(), &college("college-coordinator", Role::Coordinator)))
        .await
        .expect_err("the college does not read Рособрнадзор's cabinet");
    assert_eq!(pos_platform::error::reason(&denied), "OTHER_ORGANIZATION");

    // They ask for information, the applicant answers, and they resolve it.
    let asked = ticketing
        .request_incident_information(outgoing(
            step(seen, "Укажите год выпуска и номер диплома", Vec::new()),
            &inspector,
        ))
        .await
        .expect("asked by Рособрнадзор")
        .into_inner();
    sink.letter(&email, &format!("По сообщению №{} нужна информация от вас", submitted.number)).await;
    let answered = ticketing
        .incident_information_received(outgoing(
            step(&asked, "2024 год, диплом 114124 0012345", Vec::new()),
            &applicant,
        ))
        .await
        .expect("the applicant answered")
        .into_inner();
    let head = rosobrnadzor("rosobrnadzor-head", Role::Head);
    let resolution = "Данные диплома в ФИС ФРДО исправлены, запросите сведения повторно";
    ticketing.resolve_incident(outgoing(step(&answered, resolution, Vec::new()), &head)).await.expect("answered");
    let left = ticketing.list_incidents(outgoing(addressed, &inspector)).await.unwrap().into_inner();
    assert!(left.incidents.iter().all(|i| i.id != opened.id), "answered: no longer waiting");

    // The college sees the answer and answers the applicant with its workflow as usual.
    let at_college = ticketing
        .list_incidents(outgoing(
            pb::ListIncidentsRequest { ticket_id: ticket.id.clone(), ..Default::default() },
            &coordinator,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(at_college.incidents[0].resolution, resolution);
    let current = ticketing.get_ticket(outgoing(card(&submitted.appeal_id), &coordinator)).await.unwrap().into_inner();
    let taken = pb::TakeInWorkRequest { ticket_id: ticket.id.clone(), expected_version: current.version };
    let t = ticketing.take_in_work(outgoing(taken, &coordinator)).await.expect("taken").into_inner();
    let answer = pb::Answer {
        r#type: pos_proto::v1::events::AnswerType::Resolved as i32,
        text: "Здравствуйте! По нашему запросу Рособрнадзор исправил данные диплома в ФИС ФРДО.".into(),
        ..Default::default()
    };
    let prepare = pb::PrepareAnswerRequest {
        ticket_id: ticket.id.clone(),
        expected_version: t.version,
        answer: Some(answer),
        ..Default::default()
    };
    let t = ticketing.prepare_answer(outgoing(prepare, &coordinator)).await.expect("prepared").into_inner();
    let send = pb::VersionRequest { ticket_id: ticket.id.clone(), expected_version: t.version };
    let t = ticketing.send_for_approval(outgoing(send, &coordinator)).await.expect("sent").into_inner();
    let approve = pb::ApproveRequest { ticket_id: ticket.id.clone(), expected_version: t.version, edited: None };
    ticketing.approve(outgoing(approve, &college("college-head", Role::Head))).await.expect("approved");
    let answer = sink.letter(&email, &format!("Ответ на сообщение №{} готов", submitted.number)).await;
    assert!(answer.contains("Рособрнадзор исправил данные диплома"), "{answer}");
    platform.stop().await.expect("stops");
}

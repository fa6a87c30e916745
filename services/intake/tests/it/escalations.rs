//! A college's escalation to the federal supervisor (seed 001), with routing's seeded directory,
//! intake and ticketing served side by side: the escalation names a federal body the directory
//! knows; that body's staff, with their own tokens, list it with the appeal's public text and
//! files, read those files, ask the applicant for information, who answers with a file, and
//! resolve it with their own; the college reads the answer. Nobody else reads the files, and
//! only the platform itself grants an incident to another organization.

use pos_intake::store::Store;
use pos_platform::Envelope;
use pos_platform::auth::Role;
use pos_platform::error::{reason, violated_fields};
use pos_platform::testing::{TestOptions, TestServer, token};
use pos_proto::v1 as pb;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use pos_proto::v1::{AttachmentReferenceKind, ClaimAttachmentsRequest};
use tonic::Code;

use crate::files::{PDF, PNG, appeal_routed_to_school, download, school_coordinator, sweep_everything, upload};
use crate::helpers::*;

const FEDERAL: &str = "rosobrnadzor";
/// Another federal body of the seeded directory.
const OTHER_FEDERAL: &str = "mintsifry-sc";

fn federal(subject: &str, roles: &[Role]) -> String {
    token(subject, FEDERAL, "", roles)
}

/// Routing with its built-in seed (Рособрнадзор among the federal bodies), and ticketing whose
/// peers are that routing and `intake`.
async fn routing_and_ticketing(intake: &TestApp) -> (TestServer, TestServer) {
    let routing =
        TestServer::spawn("routing", &pos_routing::MIGRATIONS, TestOptions::default(), pos_routing::component).await;
    let (intake_endpoint, routing_endpoint) = (intake.server.endpoint.clone(), routing.endpoint.clone());
    let options = TestOptions {
        configure: Box::new(move |config| {
            config.peers.intake = vec![intake_endpoint];
            config.peers.routing = vec![routing_endpoint];
        }),
        ..TestOptions::default()
    };
    let ticketing = TestServer::spawn("ticketing", &pos_ticketing::MIGRATIONS, options, pos_ticketing::component).await;
    (routing, ticketing)
}

#[tokio::test]
async fn the_federal_body_reads_and_answers_the_escalation_addressed_to_it() {
    let app = TestApp::spawn().await;
    let (routing, ticketing) = routing_and_ticketing(&app).await;
    let diploma = upload(&app, &applicant_token(), "диплом.pdf", PDF).await.unwrap();
    let appeal_id = appeal_routed_to_school(&app, "req-1", vec![diploma.attachment_id.clone()]).await;
    let routed = pos_proto::v1::events::AppealRouted {
        appeal_id: appeal_id.clone(),
        number: 250_000_001,
        region_code: REGION.into(),
        organization: Some(pb::OrganizationRef {
            id: SCHOOL.into(),
            short_name: "Школа № 1".into(),
            r#type: pb::OrganizationType::School as i32,
            region_code: REGION.into(),
        }),
        time_zone: "Asia/Kamchatka".into(),
        period_days: 2,
        public_text: "Аттестат не отображается. СНИЛС ***".into(),
        applicant: Some(pb::Applicant { account_id: APPLICANT.into(), ..Default::default() }),
        ..Default::default()
    };
    let mut tx = ticketing.db.begin().await.unwrap();
    let envelope = Envelope::new(&routed, REGION).with_appeal(&appeal_id);
    pos_platform::consumer::deliver(&pos_ticketing::consumer::AppealRoutedHandler, &mut tx, &envelope)
        .await
        .expect("ticket created");
    tx.commit().await.unwrap();
    let mut cabinet = TicketingServiceClient::new(ticketing.channel());
    let key = pb::get_ticket_request::Key::AppealId(appeal_id.clone());
    let ticket = cabinet
        .get_ticket(call(pb::GetTicketRequest { key: Some(key) }, &school_coordinator()))
        .await
        .unwrap()
        .into_inner();

    // The escalation names a federal body that the directory knows.
    let screenshot = upload(&app, &school_coordinator(), "фрдо.png", PNG).await.unwrap();
    let escalate = |handler: &str, files: Vec<String>| pb::OpenIncidentRequest {
        ticket_id: ticket.id.clone(),
        kind: pb::IncidentKind::FederalSupervisor as i32,
        subject: "Повторное обращение: проверьте данные аттестата в ФИС ФРДО".into(),
        attachment_ids: files,
        handler_organization_id: handler.into(),
        ..Default::default()
    };
    for (handler, why) in
        [("41-school-pk-1", "not a federal body"), ("nowhere", "no such organization in the directory")]
    {
        let refused = cabinet
            .open_incident(call(escalate(handler, Vec::new()), &school_coordinator()))
            .await
            .expect_err("not a federal body of the directory");
        assert_eq!(violated_fields(&refused), ["handler_organization_id"], "{why}");
        assert!(refusal(&refused).3[0].1.contains(why), "{refused:?}");
    }
    let opened = cabinet
        .open_incident(call(escalate(FEDERAL, vec![screenshot.attachment_id.clone()]), &school_coordinator()))
        .await
        .expect("escalated to Рособрнадзор")
        .into_inner();
    assert_eq!(opened.handler_organization_id, FEDERAL);
    assert_eq!(opened.appeal_attachment_ids, std::slice::from_ref(&diploma.attachment_id));

    // Рособрнадзор's staff see it in their own cabinet; nobody else does.
    let addressed = |open_only| pb::ListIncidentsRequest {
        ticket_id: String::new(),
        handler_organization_id: FEDERAL.into(),
        open_only,
    };
    let mine = cabinet
        .list_incidents(call(addressed(true), &federal("rosobr-coordinator", &[Role::Coordinator])))
        .await
        .expect("their own escalations")
        .into_inner()
        .incidents;
    assert_eq!(mine.len(), 1);
    let seen = &mine[0];
    assert_eq!((seen.appeal_number, seen.appeal_text.as_str()), (250_000_001, "Аттестат не отображается. СНИЛС ***"));
    assert_eq!(seen.appeal_attachment_ids, std::slice::from_ref(&diploma.attachment_id));
    assert_eq!(seen.attachment_ids, std::slice::from_ref(&screenshot.attachment_id));
    let other_body = token("mincifry-1", OTHER_FEDERAL, "", &[Role::Coordinator]);
    let denied = cabinet.list_incidents(call(addressed(false), &other_body)).await.expect_err("another body");
    assert_eq!(reason(&denied), "OTHER_ORGANIZATION");
    let by_ticket = pb::ListIncidentsRequest { ticket_id: ticket.id.clone(), ..Default::default() };
    let denied = cabinet
        .list_incidents(call(by_ticket, &federal("rosobr-coordinator", &[Role::Coordinator])))
        .await
        .expect_err("the ticket stays the college's");
    assert_eq!(reason(&denied), "OTHER_ORGANIZATION");

    // They read the appeal's file and the college's screenshot; another body does not.
    for file in [&diploma.attachment_id, &screenshot.attachment_id] {
        let (_, bytes, _) =
            download(&app, &federal("rosobr-executor", &[Role::Executor]), file).await.expect("the handling body");
        assert!(!bytes.is_empty());
        let denied = download(&app, &other_body, file).await.expect_err("another federal body");
        assert_eq!(reason(&denied), "OTHER_ORGANIZATION");
    }

    // They ask the applicant, who answers with a file of their own.
    let step = |incident: &pb::Incident, comment: &str, files: Vec<String>| pb::IncidentCommandRequest {
        incident_id: incident.id.clone(),
        expected_version: incident.version,
        comment: comment.into(),
        attachment_ids: files,
    };
    let denied = cabinet
        .request_incident_information(call(step(&opened, "Пришлите копию", Vec::new()), &other_body))
        .await
        .expect_err("another body");
    assert_eq!(reason(&denied), "OTHER_ORGANIZATION");
    let asked = cabinet
        .request_incident_information(call(
            step(&opened, "Пришлите копию аттестата", Vec::new()),
            &federal("rosobr-executor", &[Role::Executor]),
        ))
        .await
        .expect("asked by Рособрнадзор")
        .into_inner();
    let copy = upload(&app, &applicant_token(), "копия.pdf", PDF).await.unwrap();
    let answered = cabinet
        .incident_information_received(call(
            step(&asked, "Копия аттестата во вложении", vec![copy.attachment_id.clone()]),
            &applicant_token(),
        ))
        .await
        .expect("the applicant answered with a file")
        .into_inner();
    assert_eq!(answered.attachment_ids, [screenshot.attachment_id.clone(), copy.attachment_id.clone()]);
    for reader in [federal("rosobr-head", &[Role::Head]), school_coordinator(), applicant_token()] {
        download(&app, &reader, &copy.attachment_id).await.expect("the applicant's copy");
    }
    // Recording what arrived is the escalating side's, not the handling body's.
    let denied = cabinet
        .incident_information_received(call(step(&answered, "ещё", Vec::new()), &federal("rosobr-head", &[Role::Head])))
        .await
        .expect_err("not the body's step");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // They resolve it with their own file; the college reads the answer.
    let conclusion = upload(&app, &federal("rosobr-head", &[Role::Head]), "заключение.pdf", PDF).await.unwrap();
    let resolved = cabinet
        .resolve_incident(call(
            step(&answered, "Данные в ФИС ФРДО исправлены 05.12", vec![conclusion.attachment_id.clone()]),
            &federal("rosobr-head", &[Role::Head]),
        ))
        .await
        .expect("resolved by Рособрнадзор")
        .into_inner();
    assert_eq!(resolved.state, "resolved, first line");
    let at_college = cabinet
        .list_incidents(call(
            pb::ListIncidentsRequest { ticket_id: ticket.id.clone(), ..Default::default() },
            &school_coordinator(),
        ))
        .await
        .unwrap()
        .into_inner()
        .incidents;
    assert_eq!(at_college[0].resolution, "Данные в ФИС ФРДО исправлены 05.12");
    download(&app, &school_coordinator(), &conclusion.attachment_id).await.expect("the college reads the answer");
    let still_open = cabinet
        .list_incidents(call(addressed(true), &federal("rosobr-coordinator", &[Role::Coordinator])))
        .await
        .unwrap()
        .into_inner();
    assert!(still_open.incidents.is_empty(), "answered: no longer waiting for the body");

    // Every file referred to only by the escalation outlives the sweep.
    sweep_everything(&app).await;
    for file in [&screenshot.attachment_id, &copy.attachment_id, &conclusion.attachment_id] {
        download(&app, &school_coordinator(), file).await.expect("kept");
    }
    ticketing.stop().await;
    routing.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn only_the_platform_grants_an_incident_to_another_organization() {
    let app = TestApp::spawn().await;
    let appeal_id = appeal_routed_to_school(&app, "req-1", Vec::new()).await;
    let mut client = app.client.clone();
    let grant = |object_id: &str| ClaimAttachmentsRequest {
        appeal_id: appeal_id.clone(),
        kind: AttachmentReferenceKind::Incident as i32,
        object_id: object_id.into(),
        attachment_ids: Vec::new(),
        field: String::new(),
        reader_organization_id: COLLEGE.into(),
        with_appeal_files: true,
    };
    let denied = client
        .claim_attachments(call(grant("incident-1"), &school_coordinator()))
        .await
        .expect_err("a person, even of the appeal's organization");
    assert_eq!(reason(&denied), "ROLE_NOT_ALLOWED");
    let answer = ClaimAttachmentsRequest { kind: AttachmentReferenceKind::Answer as i32, ..grant("ticket-1") };
    let refused = client.claim_attachments(call(answer, &system_token())).await.expect_err("an answer");
    assert_eq!(violated_fields(&refused), ["reader_organization_id"]);
    client.claim_attachments(call(grant("incident-1"), &system_token())).await.expect("granted");
    let store = Store::new(app.server.db.clone());
    assert!(
        store.is_reader(pos_intake::store::ReferenceKind::Incident, "incident-1", &appeal_id, COLLEGE).await.unwrap()
    );
    // A grant is for that incident of that appeal only.
    assert!(
        !store.is_reader(pos_intake::store::ReferenceKind::Incident, "incident-2", &appeal_id, COLLEGE).await.unwrap()
    );
    // The college's staff now add their own file to that incident, and to no other.
    let file = upload(&app, &token("college-1", COLLEGE, REGION, &[Role::Executor]), "вывод.pdf", PDF).await.unwrap();
    let add = |object_id: &str| ClaimAttachmentsRequest {
        attachment_ids: vec![file.attachment_id.clone()],
        reader_organization_id: String::new(),
        with_appeal_files: false,
        ..grant(object_id)
    };
    let college = token("college-1", COLLEGE, REGION, &[Role::Executor]);
    client.claim_attachments(call(add("incident-1"), &college)).await.expect("their incident");
    let denied = client.claim_attachments(call(add("incident-2"), &college)).await.expect_err("not granted");
    assert_eq!(reason(&denied), "OTHER_ORGANIZATION");
    app.stop().await;
}

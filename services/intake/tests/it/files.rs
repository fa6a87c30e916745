//! Files beyond the applicant's own appeal: staff upload (screenshots too), answers and incidents
//! claim what they name, and everyone allowed to see an appeal or incident downloads its files.
//! The incident is opened on ticketing served beside intake, as `pos up` runs them.

use std::time::Duration;

use pos_intake::attachments::{AttachmentStorage, DOWNLOAD_CHUNK_BYTES, sweep_orphans};
use pos_intake::config::IntakeConfig;
use pos_intake::consumer::RoutedHandler;
use pos_intake::store::Store;
use pos_platform::Envelope;
use pos_platform::auth::Role;
use pos_platform::error::{reason, violated_fields};
use pos_platform::testing::{TestOptions, TestServer, token};
use pos_proto::v1 as pb;
use pos_proto::v1::attachment_chunk::Part as ChunkPart;
use pos_proto::v1::events::AppealRouted;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use pos_proto::v1::upload_attachment_request::Part;
use pos_proto::v1::{
    AttachmentInfo, AttachmentMeta, AttachmentReferenceKind, ClaimAttachmentsRequest, DescribeAttachmentsRequest,
    DownloadAttachmentRequest, UploadAttachmentRequest, UploadAttachmentResponse,
};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use crate::helpers::*;

/// The beginning of a PNG: the signature and the header chunk of a 1×1 image.
pub(crate) const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0bIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82";
pub(crate) const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";

pub(crate) fn school_coordinator() -> String {
    token("coordinator-1", SCHOOL, REGION, &[Role::Coordinator])
}

fn school_head() -> String {
    token("head-1", SCHOOL, REGION, &[Role::Head])
}

fn college_coordinator() -> String {
    token("coordinator-9", COLLEGE, REGION, &[Role::Coordinator])
}

pub(crate) async fn upload(
    app: &TestApp,
    token: &str,
    file_name: &str,
    bytes: &[u8],
) -> Result<UploadAttachmentResponse, Status> {
    let mut parts = vec![UploadAttachmentRequest {
        part: Some(Part::Meta(AttachmentMeta { file_name: file_name.into(), size: bytes.len() as i64 })),
    }];
    parts.extend(bytes.chunks(16 * 1024).map(|c| UploadAttachmentRequest { part: Some(Part::Chunk(c.to_vec())) }));
    let mut client = app.client.clone();
    client.upload_attachment(call(tokio_stream::iter(parts), token)).await.map(tonic::Response::into_inner)
}

/// A whole download: its description, the bytes and the size of each message.
pub(crate) async fn download(
    app: &TestApp,
    token: &str,
    id: &str,
) -> Result<(AttachmentInfo, Vec<u8>, Vec<usize>), Status> {
    let mut client = app.client.clone();
    let request = call(DownloadAttachmentRequest { attachment_id: id.into() }, token);
    let mut stream = client.download_attachment(request).await?.into_inner();
    let Some(ChunkPart::Info(info)) = stream.message().await?.and_then(|m| m.part) else {
        panic!("the first message describes the file");
    };
    let (mut bytes, mut sizes) = (Vec::new(), Vec::new());
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(ChunkPart::Chunk(chunk)) => {
                sizes.push(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            other => panic!("only bytes after the description, got {other:?}"),
        }
    }
    Ok((info, bytes, sizes))
}

/// The applicant's appeal with `attachment_ids`, routed to the school in intake's view.
pub(crate) async fn appeal_routed_to_school(app: &TestApp, request_id: &str, attachment_ids: Vec<String>) -> String {
    let mut client = app.client.clone();
    let request = pb::SubmitAppealRequest { attachment_ids, ..submission(request_id) };
    let appeal_id = client.submit_appeal(call(request, &applicant_token())).await.unwrap().into_inner().appeal_id;
    let event = routed(&appeal_id);
    let mut tx = app.server.db.begin().await.unwrap();
    pos_platform::consumer::deliver(&RoutedHandler, &mut tx, &Envelope::new(&event, REGION).with_appeal(&appeal_id))
        .await
        .expect("routed");
    tx.commit().await.unwrap();
    appeal_id
}

fn routed(appeal_id: &str) -> AppealRouted {
    AppealRouted {
        appeal_id: appeal_id.into(),
        number: 250_000_001,
        registered_at: Some(pos_proto::time::to_proto(chrono::Utc::now())),
        source: pb::Source::Epgu as i32,
        region_code: REGION.into(),
        category_id: "edu-portal".into(),
        fact_id: "school-certificate-missing".into(),
        organization: Some(pb::OrganizationRef {
            id: SCHOOL.into(),
            short_name: "Школа № 1".into(),
            r#type: pb::OrganizationType::School as i32,
            region_code: REGION.into(),
        }),
        time_zone: "Asia/Kamchatka".into(),
        period_days: 10,
        public_text: "Аттестат сына не отображается в личном кабинете.".into(),
        applicant: Some(pb::Applicant {
            full_name: "Иванова Мария Петровна".into(),
            account_id: APPLICANT.into(),
            ..pb::Applicant::default()
        }),
        routed_at: Some(pos_proto::time::to_proto(chrono::Utc::now())),
        ..AppealRouted::default()
    }
}

fn claim(appeal_id: &str, kind: AttachmentReferenceKind, ids: Vec<String>) -> ClaimAttachmentsRequest {
    ClaimAttachmentsRequest {
        appeal_id: appeal_id.into(),
        kind: kind as i32,
        object_id: uuid::Uuid::now_v7().to_string(),
        attachment_ids: ids,
        field: "answer.attachment_ids".into(),
        reader_organization_id: String::new(),
        with_appeal_files: false,
    }
}

/// The sweep as the janitor runs it, over the server's own folder, for everything uploaded
/// until now.
pub(crate) async fn sweep_everything(app: &TestApp) -> usize {
    let storage = AttachmentStorage::open(&IntakeConfig::default(), &app.server.dir.0).unwrap();
    sweep_orphans(&Store::new(app.server.db.clone()), &storage, Duration::ZERO).await.unwrap()
}

#[tokio::test]
async fn staff_upload_screenshots_and_citizens_keep_their_list() {
    let app = TestApp::spawn().await;
    let screenshot = upload(&app, &school_coordinator(), "экран.png", PNG).await.expect("a coordinator's screenshot");
    assert_eq!((screenshot.content_type.as_str(), screenshot.size), ("image/png", PNG.len() as i64));
    assert_eq!(screenshot.sha256, hex::encode(Sha256::digest(PNG)));
    let refused = upload(&app, &applicant_token(), "экран.png", PNG).await.expect_err("not on DOMAIN.md's list");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["chunk"]);
    upload(&app, &applicant_token(), "scan.pdf", PDF).await.expect("the applicant's PDF");
    // The lists are configuration: a deployment may take screenshots from citizens too.
    let config = IntakeConfig {
        applicant_file_types: pos_intake::attachments::FileKind::STAFF.to_vec(),
        ..IntakeConfig::default()
    };
    let open = TestApp::spawn_with(std::sync::Arc::new(classifier()), config).await;
    upload(&open, &applicant_token(), "экран.png", PNG).await.expect("allowed by configuration");
    open.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn the_addressee_reads_the_applicants_file_and_nobody_else_does() {
    let app = TestApp::spawn().await;
    // Over three messages' worth, so that the download is cut into chunks.
    let text: Vec<u8> = "Справка об обучении, страница.\n".repeat(7000).into_bytes();
    let file = upload(&app, &applicant_token(), "справка.txt", &text).await.unwrap();
    let appeal_id = appeal_routed_to_school(&app, "req-1", vec![file.attachment_id.clone()]).await;

    let (info, bytes, sizes) = download(&app, &school_coordinator(), &file.attachment_id).await.expect("the school");
    assert_eq!(bytes, text);
    assert_eq!(info.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(info.sha256, file.sha256);
    assert_eq!(
        (info.content_type.as_str(), info.size, info.file_name.as_str(), info.appeal_id.as_str()),
        ("text/plain; charset=utf-8", text.len() as i64, "справка.txt", appeal_id.as_str())
    );
    assert_eq!(sizes.len(), text.len().div_ceil(DOWNLOAD_CHUNK_BYTES));
    assert!(sizes.iter().all(|&size| size <= DOWNLOAD_CHUNK_BYTES), "{sizes:?}");

    let (_, own, _) = download(&app, &applicant_token(), &file.attachment_id).await.expect("the applicant");
    assert_eq!(own, text);
    let college = download(&app, &college_coordinator(), &file.attachment_id).await.expect_err("another organization");
    assert_eq!((college.code(), reason(&college).as_str()), (Code::PermissionDenied, "OTHER_ORGANIZATION"));
    let stranger = download(&app, &other_applicant_token(), &file.attachment_id).await.expect_err("another applicant");
    assert_eq!((stranger.code(), reason(&stranger).as_str()), (Code::PermissionDenied, "OTHER_APPLICANT"));
    let unknown = download(&app, &school_coordinator(), &uuid::Uuid::now_v7().to_string()).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let malformed = download(&app, &school_coordinator(), "../etc/passwd").await.unwrap_err();
    assert_eq!(violated_fields(&malformed), ["attachment_id"]);
    app.stop().await;
}

#[tokio::test]
async fn answers_and_incidents_claim_only_files_their_author_may_see() {
    let app = TestApp::spawn().await;
    let appeal_id = appeal_routed_to_school(&app, "req-1", Vec::new()).await;
    let mut client = app.client.clone();
    let answer_file = upload(&app, &school_coordinator(), "ответ.pdf", PDF).await.unwrap();
    let screenshot = upload(&app, &school_coordinator(), "экран.png", PNG).await.unwrap();
    let college_file = upload(&app, &college_coordinator(), "чужое.pdf", PDF).await.unwrap();
    let citizens = upload(&app, &other_applicant_token(), "чужое.pdf", PDF).await.unwrap();

    // An unknown id and another caller's upload are refused alike, naming the caller's field.
    for (index, bad) in
        [uuid::Uuid::now_v7().to_string(), college_file.attachment_id, citizens.attachment_id].into_iter().enumerate()
    {
        let request = claim(&appeal_id, AttachmentReferenceKind::Answer, vec![answer_file.attachment_id.clone(), bad]);
        let refused = client.claim_attachments(call(request, &school_coordinator())).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "case {index}");
        assert_eq!(violated_fields(&refused), ["answer.attachment_ids[1]"], "case {index}");
    }
    // The college claims nothing for the school's appeal, not even its own upload.
    let request = claim(&appeal_id, AttachmentReferenceKind::Incident, vec![screenshot.attachment_id.clone()]);
    let denied = client.claim_attachments(call(request, &college_coordinator())).await.expect_err("other school");
    assert_eq!(reason(&denied), "OTHER_ORGANIZATION");

    let request = claim(&appeal_id, AttachmentReferenceKind::Answer, vec![answer_file.attachment_id.clone()]);
    let claimed = client.claim_attachments(call(request, &school_coordinator())).await.unwrap().into_inner();
    assert_eq!(claimed.attachments.len(), 1);
    assert_eq!(claimed.attachments[0].content_type, "application/pdf");
    let request = claim(&appeal_id, AttachmentReferenceKind::Incident, vec![screenshot.attachment_id.clone()]);
    client.claim_attachments(call(request, &school_coordinator())).await.expect("the screenshot");
    // A file already on the appeal may be named again by anyone of its organization.
    let request = claim(&appeal_id, AttachmentReferenceKind::Incident, vec![answer_file.attachment_id.clone()]);
    client.claim_attachments(call(request, &school_head())).await.expect("the answer's file, in an incident");

    // The applicant reads the answer's file but not the incident's screenshot.
    let (_, bytes, _) = download(&app, &applicant_token(), &answer_file.attachment_id).await.expect("the answer's");
    assert_eq!(bytes, PDF);
    let hidden = download(&app, &applicant_token(), &screenshot.attachment_id).await.expect_err("an incident's");
    assert_eq!(reason(&hidden), "OTHER_APPLICANT");
    let (info, bytes, _) = download(&app, &school_head(), &screenshot.attachment_id).await.expect("the school");
    assert_eq!((info.content_type.as_str(), bytes.as_slice()), ("image/png", PNG));
    let college = download(&app, &college_coordinator(), &screenshot.attachment_id).await.expect_err("the college");
    assert_eq!(reason(&college), "OTHER_ORGANIZATION");

    // The sweep takes the two unclaimed uploads only.
    assert_eq!(sweep_everything(&app).await, 2);
    download(&app, &school_head(), &screenshot.attachment_id).await.expect("kept");
    download(&app, &applicant_token(), &answer_file.attachment_id).await.expect("kept");
    app.stop().await;
}

async fn describe(app: &TestApp, token: &str, ids: &[&str]) -> Result<Vec<AttachmentInfo>, Status> {
    let mut client = app.client.clone();
    let request = DescribeAttachmentsRequest { attachment_ids: ids.iter().map(|&id| id.to_owned()).collect() };
    Ok(client.describe_attachments(call(request, token)).await?.into_inner().attachments)
}

#[tokio::test]
async fn descriptions_follow_the_download_rules_file_by_file() {
    let app = TestApp::spawn().await;
    let text = "Справка об обучении.\n".as_bytes();
    let file = upload(&app, &applicant_token(), "справка.txt", text).await.unwrap();
    let appeal_id = appeal_routed_to_school(&app, "req-1", vec![file.attachment_id.clone()]).await;
    let screenshot = upload(&app, &school_coordinator(), "экран.png", PNG).await.unwrap();
    let request = claim(&appeal_id, AttachmentReferenceKind::Incident, vec![screenshot.attachment_id.clone()]);
    app.client.clone().claim_attachments(call(request, &school_coordinator())).await.expect("the incident's file");
    let (file_id, screenshot_id) = (file.attachment_id.as_str(), screenshot.attachment_id.as_str());

    // The school reads both, in the request's order, an id named twice described twice.
    let infos = describe(&app, &school_head(), &[screenshot_id, file_id, screenshot_id]).await.expect("the school");
    let summary: Vec<_> = infos
        .iter()
        .map(|i| {
            (i.attachment_id.as_str(), i.file_name.as_str(), i.content_type.as_str(), i.size, i.appeal_id.as_str())
        })
        .collect();
    assert_eq!(
        summary,
        [
            (screenshot_id, "экран.png", "image/png", PNG.len() as i64, appeal_id.as_str()),
            (file_id, "справка.txt", "text/plain; charset=utf-8", text.len() as i64, appeal_id.as_str()),
            (screenshot_id, "экран.png", "image/png", PNG.len() as i64, appeal_id.as_str()),
        ]
    );
    assert_eq!(
        (infos[0].sha256.as_str(), infos[1].sha256.as_str()),
        (screenshot.sha256.as_str(), file.sha256.as_str())
    );
    assert!(describe(&app, &school_head(), &[]).await.expect("nothing asked").is_empty());
    let own = describe(&app, &applicant_token(), &[file_id]).await.expect("the applicant's own file");
    assert_eq!(own[0].file_name, "справка.txt");

    // Whoever may not download a file may not have it described, and is refused alike; one such
    // id refuses the whole request.
    let cases = [
        ("the applicant, an incident's file", applicant_token(), screenshot_id.to_owned(), Code::PermissionDenied),
        ("another organization", college_coordinator(), file_id.to_owned(), Code::PermissionDenied),
        ("another applicant", other_applicant_token(), file_id.to_owned(), Code::PermissionDenied),
        ("an unknown id", school_head(), uuid::Uuid::now_v7().to_string(), Code::NotFound),
    ];
    for (case, token, id, code) in cases {
        let described = describe(&app, &token, &[file_id, &id]).await.expect_err(case);
        let downloaded = download(&app, &token, &id).await.expect_err(case);
        assert_eq!(refusal(&described), refusal(&downloaded), "{case}");
        assert_eq!(described.code(), code, "{case}");
    }
    let malformed = describe(&app, &school_head(), &[file_id, "../etc/passwd", ""]).await.unwrap_err();
    assert_eq!(violated_fields(&malformed), ["attachment_ids[1]", "attachment_ids[2]"]);
    let too_many = vec![file_id; pos_intake::grpc::DESCRIBE_LIMIT + 1];
    let refused = describe(&app, &school_head(), &too_many).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["attachment_ids"]);
    app.stop().await;
}

/// Ticketing served with intake as its peer, as in a deployment of separate processes.
async fn ticketing_beside(intake: &TestApp) -> TestServer {
    let endpoint = intake.server.endpoint.clone();
    let options = TestOptions {
        configure: Box::new(move |config| config.peers.intake = vec![endpoint]),
        ..TestOptions::default()
    };
    TestServer::spawn("ticketing", &pos_ticketing::MIGRATIONS, options, pos_ticketing::component).await
}

#[tokio::test]
async fn a_coordinator_opens_an_incident_with_a_screenshot_that_outlives_the_sweep() {
    let app = TestApp::spawn().await;
    let ticketing = ticketing_beside(&app).await;
    let appeal_id = appeal_routed_to_school(&app, "req-1", Vec::new()).await;
    let mut tx = ticketing.db.begin().await.unwrap();
    let event = routed(&appeal_id);
    pos_platform::consumer::deliver(
        &pos_ticketing::consumer::AppealRoutedHandler,
        &mut tx,
        &Envelope::new(&event, REGION).with_appeal(&appeal_id),
    )
    .await
    .expect("ticket created");
    tx.commit().await.unwrap();
    let mut cabinet = TicketingServiceClient::new(ticketing.channel());
    let key = pb::get_ticket_request::Key::AppealId(appeal_id.clone());
    let ticket = cabinet
        .get_ticket(call(pb::GetTicketRequest { key: Some(key) }, &school_coordinator()))
        .await
        .expect("the school's ticket")
        .into_inner();
    let (ticket_id, version) = (ticket.id, ticket.version);

    let screenshot = upload(&app, &school_coordinator(), "экран.png", PNG).await.expect("a PNG screenshot");
    let others = upload(&app, &other_applicant_token(), "scan.pdf", PDF).await.unwrap();
    let open = |attachment_ids: Vec<String>| pb::OpenIncidentRequest {
        ticket_id: ticket_id.clone(),
        kind: pb::IncidentKind::SituationCenter as i32,
        service: "Инциденты ИС ИЭП".into(),
        request_type: "Запрос/инцидент".into(),
        system: "МШ. Платформа ЦОК".into(),
        priority: "3 Приоритет".into(),
        subject: "Нет доступа к Библиотеке ЦОК".into(),
        attachment_ids,
        user_account: "user@example.org".into(),
        external_id: String::new(),
        handler_organization_id: String::new(),
    };
    for bad in [uuid::Uuid::now_v7().to_string(), others.attachment_id.clone()] {
        let refused = cabinet
            .open_incident(call(open(vec![screenshot.attachment_id.clone(), bad]), &school_coordinator()))
            .await
            .expect_err("a file the coordinator may not name");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), ["attachment_ids[1]"]);
    }
    let incident = cabinet
        .open_incident(call(open(vec![screenshot.attachment_id.clone()]), &school_coordinator()))
        .await
        .expect("opened with the screenshot")
        .into_inner();
    assert_eq!(incident.attachment_ids, std::slice::from_ref(&screenshot.attachment_id));

    // The answer names the coordinator's letter; the applicant then reads it.
    let letter = upload(&app, &school_coordinator(), "ответ.pdf", PDF).await.unwrap();
    // Opening the incident moved the ticket's version on.
    let take = pb::TakeInWorkRequest { ticket_id: ticket_id.clone(), expected_version: version + 1 };
    let taken = cabinet.take_in_work(call(take, &school_coordinator())).await.expect("taken").into_inner();
    let prepare = |attachment_ids: Vec<String>| pb::PrepareAnswerRequest {
        ticket_id: ticket_id.clone(),
        expected_version: taken.version,
        answer: Some(pb::Answer {
            r#type: pb::events::AnswerType::Resolved as i32,
            text: "Здравствуйте! Аттестат внесён, он отображается в личном кабинете.".into(),
            attachment_ids,
            ..pb::Answer::default()
        }),
        template_id: String::new(),
    };
    let refused = cabinet
        .prepare_answer(call(
            prepare(vec![letter.attachment_id.clone(), others.attachment_id.clone()]),
            &school_coordinator(),
        ))
        .await
        .expect_err("another applicant's upload in the answer");
    assert_eq!(violated_fields(&refused), ["answer.attachment_ids[1]"]);
    cabinet
        .prepare_answer(call(prepare(vec![letter.attachment_id.clone()]), &school_coordinator()))
        .await
        .expect("prepared with the letter");
    let (_, bytes, _) = download(&app, &applicant_token(), &letter.attachment_id).await.expect("the answer's file");
    assert_eq!(bytes, PDF);

    // Referenced only by the incident, the screenshot stays (the letter too); the other upload goes.
    assert_eq!(sweep_everything(&app).await, 1);
    let (info, bytes, _) = download(&app, &school_head(), &screenshot.attachment_id).await.expect("the school");
    assert_eq!((info.sha256.as_str(), bytes.as_slice()), (screenshot.sha256.as_str(), PNG));
    let gone = download(&app, &other_applicant_token(), &others.attachment_id).await.expect_err("swept");
    assert_eq!(gone.code(), Code::NotFound);
    ticketing.stop().await;
    app.stop().await;
}

//! Incidents, files and the supervisor's escalations in Debian's Chromium
//! (`browser/incidents.mjs`): a coordinator of the Kamchatka center downloads the applicant's
//! PDF from the card (bytes and sha256 checked), is refused a file of a forbidden type beside the
//! file field, opens a situation-center incident with a PNG screenshot, sees it in the card and
//! the list's marker, escalates it while a stale tab is told it changed; another organization's
//! coordinator cannot download either file by URL. A college escalates a diploma appeal to
//! Рособрнадзор, whose coordinator answers it on «Обращения на проверку», and the college sees
//! the answer in its card. Screenshots: `target/screenshots/card-incidents.png`,
//! `escalations.png`.

use std::time::Duration;

use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform, e_diary_appeal};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use sha2::{Digest, Sha256};

use super::browser::{run_story, serve_cabinet};

const COLLEGE: &str = "41-college-polytech";
const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
const PDF_NAME: &str = "Заявление Ивановой.pdf";
const DIPLOMA_NAME: &str = "Диплом.pdf";

/// The applicant's own upload, by their own token, for their appeal.
async fn upload(platform: &Platform, token: &str, name: &str, bytes: &[u8]) -> String {
    use pb::upload_attachment_request::Part;
    let meta = pb::UploadAttachmentRequest {
        part: Some(Part::Meta(pb::AttachmentMeta { file_name: name.into(), size: bytes.len() as i64 })),
    };
    let chunk = pb::UploadAttachmentRequest { part: Some(Part::Chunk(bytes.to_vec())) };
    let stream = futures::stream::iter([meta, chunk]);
    platform.intake().upload_attachment(outgoing(stream, token)).await.expect("uploaded").into_inner().attachment_id
}

/// A file's content type and bytes as intake gives them to a system.
async fn download(platform: &Platform, id: &str) -> (String, Vec<u8>) {
    let system = testing::token("ops", "", "", &[Role::System]);
    let request = outgoing(pb::DownloadAttachmentRequest { attachment_id: id.into() }, &system);
    let mut stream = platform.intake().download_attachment(request).await.expect("download").into_inner();
    let (mut content_type, mut bytes) = (String::new(), Vec::new());
    while let Some(chunk) = stream.message().await.expect("chunk") {
        match chunk.part {
            Some(pb::attachment_chunk::Part::Info(info)) => content_type = info.content_type,
            Some(pb::attachment_chunk::Part::Chunk(data)) => bytes.extend(data),
            None => {}
        }
    }
    (content_type, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_files_and_escalations_in_chromium() {
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let run = testing::unique("incidents");
    // The e-diary appeal, with the applicant's PDF, goes to the Kamchatka center.
    let applicant = testing::token("esia-1001", "", "41", &[Role::Applicant]);
    let pdf = upload(&platform, &applicant, PDF_NAME, PDF).await;
    let appeal = pb::SubmitAppealRequest { attachment_ids: vec![pdf.clone()], ..e_diary_appeal(&format!("{run}-1")) };
    let first = platform.intake().submit_appeal(outgoing(appeal, &applicant)).await.expect("submitted").into_inner();
    // Seed 001: a diploma that shows wrong data, to the college the applicant picked.
    let scan = upload(&platform, &applicant, DIPLOMA_NAME, PDF).await;
    let diploma = pb::SubmitAppealRequest {
        attachment_ids: vec![scan],
        category_id: "edu-records".into(),
        subcategory_id: "edu-records.documents".into(),
        fact_id: "edu-records.documents.spo-diploma-incorrect".into(),
        picked_organization_id: COLLEGE.into(),
        text: "В личном кабинете на Госуслугах в дипломе неверно указан год окончания техникума.".into(),
        ..e_diary_appeal(&format!("{run}-2"))
    };
    let second = platform.intake().submit_appeal(outgoing(diploma, &applicant)).await.expect("submitted").into_inner();
    let ticket =
        platform.wait_for_ticket(&first.appeal_id, KAMCHATKA_CENTER, Duration::from_secs(30)).await.expect("ticket");
    let college_ticket =
        platform.wait_for_ticket(&second.appeal_id, COLLEGE, Duration::from_secs(30)).await.expect("college ticket");

    let (addr, shutdown, server) = serve_cabinet(&platform, |config| config.live_poll_secs = 1).await;
    let (number, college_number, sha256) =
        (first.number.to_string(), second.number.to_string(), hex::encode(Sha256::digest(PDF)));
    let env = [
        // Chromium names saved files in the locale's encoding: without a UTF-8 locale (ru_RU is
        // often not generated) a Cyrillic name becomes "download".
        ("LC_ALL", "C.UTF-8"),
        ("NUMBER", number.as_str()),
        ("COLLEGE_NUMBER", college_number.as_str()),
        ("COLLEGE", COLLEGE),
        ("FILE_NAME", PDF_NAME),
        ("DIPLOMA_NAME", DIPLOMA_NAME),
        ("FILE_SHA256", sha256.as_str()),
    ];
    let shots = ["card-incidents.png", "escalations.png"];
    run_story("incidents.mjs", addr, &env, &shots, Duration::from_secs(240)).await;

    // What the browser did is what the services hold: the incident with the PNG the browser
    // uploaded, on the second line; the escalation answered by Рособрнадзор's own coordinator.
    let system = testing::token("ops", "", "", &[Role::System]);
    let list = |ticket_id: String| {
        let (mut ticketing, system) = (platform.ticketing(), system.clone());
        async move {
            let request = pb::ListIncidentsRequest { ticket_id, ..Default::default() };
            ticketing.list_incidents(outgoing(request, &system)).await.expect("incidents").into_inner().incidents
        }
    };
    let incidents = list(ticket.id.clone()).await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let incident = &incidents[0];
    assert_eq!(incident.kind, pb::IncidentKind::SituationCenter as i32);
    assert_eq!(incident.state, "open, second line");
    assert_eq!(incident.opened_by, "dev-coordinator");
    assert_eq!(incident.attachment_ids.len(), 1);
    let (content_type, bytes) = download(&platform, &incident.attachment_ids[0]).await;
    assert_eq!(content_type, "image/png");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "the browser's screenshot");

    let escalations = list(college_ticket.id.clone()).await;
    assert_eq!(escalations.len(), 1, "{escalations:?}");
    let escalation = &escalations[0];
    assert_eq!(escalation.kind, pb::IncidentKind::FederalSupervisor as i32);
    assert_eq!(escalation.handler_organization_id, "rosobrnadzor");
    assert_eq!(escalation.state, "resolved, first line");
    assert!(escalation.resolution.contains("ФРДО"), "{}", escalation.resolution);

    shutdown.cancel();
    server.await.unwrap().unwrap();
    platform.stop().await.unwrap();
}

//! Incidents, files and the supervisor's escalations in Debian's Chromium
//! (`browser/incidents.mjs`): a coordinator of the Kamchatka center downloads the applicant's
//! PDF from the card (bytes and sha256 checked), is refused a file of a forbidden type beside the
//! file field, opens a situation-center incident with a PNG screenshot, sees it in the card and
//! the list's marker, escalates it while a stale tab is told it changed; another organization's
//! coordinator cannot download either file by URL. A college escalates a diploma appeal to
//! Рособрнадзор, whose coordinator answers it on «Обращения на проверку», and the college sees
//! the answer in its card. Screenshots: `target/screenshots/card-incidents.png`,
//! `escalations.png`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform, e_diary_appeal};
use pos_platform::auth::Role;
use pos_platform::cache::MemoryCache;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_web::{App, WebConfig};
use sha2::{Digest, Sha256};

use super::browser::{browser_dir, ensure_node_modules, screenshots_dir};

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
    let chromium = std::env::var("POS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "no Chromium at {chromium}: deploy/local/tools.sh installs Debian's");
    ensure_node_modules();

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

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = WebConfig {
        addr,
        grpc_endpoint: platform.endpoint.clone(),
        dev_sign_in: true,
        live_poll_secs: 1,
        ..WebConfig::default()
    };
    let app = App::new(config, platform.channel(), Arc::new(MemoryCache::new()), Some(testing::authenticator()), addr);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(pos_web::serve(app, listener, shutdown.clone()));
    let screenshots = screenshots_dir();
    for shot in ["card-incidents.png", "escalations.png"] {
        let _ = std::fs::remove_file(screenshots.join(shot));
    }
    let node = tokio::process::Command::new("node")
        .arg("incidents.mjs")
        .current_dir(browser_dir())
        .env("BASE_URL", format!("http://{addr}"))
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        // Chromium names saved files in the locale's encoding: without a UTF-8 locale (ru_RU is
        // often not generated) a Cyrillic name becomes "download".
        .env("LC_ALL", "C.UTF-8")
        .env("NUMBER", first.number.to_string())
        .env("COLLEGE_NUMBER", second.number.to_string())
        .env("COLLEGE", COLLEGE)
        .env("FILE_NAME", PDF_NAME)
        .env("DIPLOMA_NAME", DIPLOMA_NAME)
        .env("FILE_SHA256", hex::encode(Sha256::digest(PDF)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), node)
        .await
        .expect("the browser story finishes in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        println!("browser: {line}");
    }
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser story failed: {}", output.status);
    assert_eq!(stdout.lines().last(), Some("DONE"));
    for shot in ["card-incidents.png", "escalations.png"] {
        assert!(screenshots.join(shot).metadata().map(|m| m.len() > 10_000).unwrap_or(false), "{shot} saved");
    }

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

//! UploadAttachment over gRPC: types told by content, sizes bounded, objects stored, and
//! attachments claimed by the submission that names them.

use std::path::Path;

use pos_intake::config::IntakeConfig;
use pos_platform::error::violated_fields;
use pos_proto::v1::upload_attachment_request::Part;
use pos_proto::v1::{AttachmentMeta, GetAppealRequest, UploadAttachmentRequest, UploadAttachmentResponse};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use crate::helpers::*;

const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0xFF, 0xD9,
];

/// A Windows executable: "MZ", the DOS stub, and a PE header further on.
fn exe() -> Vec<u8> {
    let mut bytes = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    bytes.resize(0x80, 0);
    bytes.extend_from_slice(b"PE\0\0\x4c\x01");
    bytes.resize(1024, 0x90);
    bytes
}

fn parts(file_name: &str, declared: i64, chunks: &[&[u8]]) -> Vec<UploadAttachmentRequest> {
    let mut parts = vec![UploadAttachmentRequest {
        part: Some(Part::Meta(AttachmentMeta { file_name: file_name.into(), size: declared })),
    }];
    parts.extend(chunks.iter().map(|c| UploadAttachmentRequest { part: Some(Part::Chunk(c.to_vec())) }));
    parts
}

async fn upload(
    app: &TestApp,
    token: &str,
    parts: Vec<UploadAttachmentRequest>,
) -> Result<UploadAttachmentResponse, Status> {
    let mut client = app.client.clone();
    client.upload_attachment(call(tokio_stream::iter(parts), token)).await.map(tonic::Response::into_inner)
}

/// Every file under the attachment folder (staging files of aborted uploads included).
fn stored_files(root: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { walk(&path, out) } else { out.push(path) }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

#[tokio::test]
async fn a_pdf_and_a_jpeg_are_stored_and_attached() {
    let app = TestApp::spawn().await;
    let pdf = upload(
        &app,
        &applicant_token(),
        parts("Скан аттестата.pdf", PDF.len() as i64, &[&PDF[..10], &PDF[10..40], &PDF[40..]]),
    )
    .await
    .unwrap();
    assert_eq!(pdf.content_type, "application/pdf");
    assert_eq!(pdf.size, PDF.len() as i64);
    assert_eq!(pdf.sha256, hex::encode(Sha256::digest(PDF)));
    // A JPEG named without an extension: the content decides.
    let jpeg = upload(&app, &applicant_token(), parts("photo", JPEG.len() as i64, &[JPEG])).await.unwrap();
    assert_eq!(jpeg.content_type, "image/jpeg");

    let files = stored_files(&app.server.dir.0.join("attachments"));
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| std::fs::read(f).unwrap() == PDF));

    let mut request = submission("with-files");
    request.attachment_ids = vec![pdf.attachment_id.clone(), jpeg.attachment_id.clone()];
    let mut client = app.client.clone();
    let answer = client.submit_appeal(call(request, &applicant_token())).await.unwrap().into_inner();
    let appeal = client
        .get_appeal(call(GetAppealRequest { appeal_id: answer.appeal_id }, &applicant_token()))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<_> =
        appeal.attachments.iter().map(|a| (a.id.as_str(), a.file_name.as_str(), a.content_type.as_str())).collect();
    assert_eq!(
        listed,
        [
            (pdf.attachment_id.as_str(), "Скан аттестата.pdf", "application/pdf"),
            (jpeg.attachment_id.as_str(), "photo", "image/jpeg")
        ]
    );

    // Already attached: another appeal cannot take them.
    let mut request = submission("steal");
    request.attachment_ids = vec![pdf.attachment_id.clone()];
    let status = client.submit_appeal(call(request, &applicant_token())).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["attachment_ids[0]"]);
    assert!(status.message().contains("already attached"), "{}", status.message());
    app.stop().await;
}

#[tokio::test]
async fn an_executable_named_pdf_is_refused_and_nothing_is_kept() {
    let app = TestApp::spawn().await;
    let exe = exe();
    let status = upload(&app, &applicant_token(), parts("invoice.pdf", exe.len() as i64, &[&exe[..100], &exe[100..]]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["chunk"]);
    assert!(status.message().contains("exe"), "the detected type is explained: {}", status.message());
    assert_eq!(app.count("attachments").await, 0);
    assert!(stored_files(&app.server.dir.0.join("attachments")).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn sizes_are_bounded_and_must_match_the_declaration() {
    let config = IntakeConfig { max_attachment_bytes: 200 * 1024, ..IntakeConfig::default() };
    let app = TestApp::spawn_with(std::sync::Arc::new(classifier()), config).await;
    let token = applicant_token();

    let status = upload(&app, &token, parts("big.pdf", 300 * 1024, &[PDF])).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["meta.size"]);
    let status = upload(&app, &token, parts("liar.pdf", 10, &[PDF])).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["chunk"], "more bytes than declared");
    let status = upload(&app, &token, parts("short.pdf", PDF.len() as i64 + 5, &[PDF])).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["meta.size"], "fewer bytes than declared");
    let status = upload(&app, &token, parts("", PDF.len() as i64, &[PDF])).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["meta.file_name"]);
    let status = upload(&app, &token, vec![UploadAttachmentRequest { part: Some(Part::Chunk(PDF.to_vec())) }])
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["meta"]);

    // A text file larger than the sniffed head streams to the store in parts...
    let line = "Строка обращения без личных данных.\n";
    let text = line.repeat(150 * 1024 / line.len());
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(16 * 1024).collect();
    let stored = upload(&app, &token, parts("letter.txt", text.len() as i64, &chunks)).await.unwrap();
    assert_eq!(stored.content_type, "text/plain; charset=utf-8");
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(text.as_bytes())));
    let files = stored_files(&app.server.dir.0.join("attachments"));
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::read(&files[0]).unwrap(), text.as_bytes());

    // ...and one that turns out not to be text after the head is refused and removed.
    let mut bad = text.clone().into_bytes();
    bad.truncate(100 * 1024);
    bad.extend_from_slice(&[0xFF, 0xFE, 0x00]);
    let chunks: Vec<&[u8]> = bad.chunks(16 * 1024).collect();
    let status = upload(&app, &token, parts("fake.txt", bad.len() as i64, &chunks)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["chunk"]);
    assert_eq!(stored_files(&app.server.dir.0.join("attachments")).len(), 1, "the partial upload was aborted");
    assert_eq!(app.count("attachments").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn only_the_uploader_may_attach_a_file() {
    let app = TestApp::spawn().await;
    let mine = upload(&app, &applicant_token(), parts("scan.pdf", PDF.len() as i64, &[PDF])).await.unwrap();
    let mut request = submission("theirs");
    request.attachment_ids = vec![mine.attachment_id.clone()];
    let mut client = app.client.clone();
    let status = client.submit_appeal(call(request, &other_applicant_token())).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["attachment_ids[0]"]);
    // Answered as an id nobody uploaded: the other applicant learns nothing of the upload.
    let mut request = submission("theirs");
    request.attachment_ids = vec![uuid::Uuid::now_v7().to_string()];
    let unknown = client.submit_appeal(call(request, &other_applicant_token())).await.unwrap_err();
    assert_eq!(refusal(&status), refusal(&unknown));
    // The uploader still attaches it.
    let mut request = submission("mine");
    request.attachment_ids = vec![mine.attachment_id];
    client.submit_appeal(call(request, &applicant_token())).await.expect("the uploader attaches the own upload");
    // Staff upload too (for answers and incidents), but attach to no appeal of an applicant's.
    let staff = upload(&app, &staff_token(SCHOOL), parts("scan.pdf", PDF.len() as i64, &[PDF])).await.unwrap();
    let mut request = submission("staff's");
    request.attachment_ids = vec![staff.attachment_id];
    let status = client.submit_appeal(call(request, &applicant_token())).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["attachment_ids[0]"]);
    app.stop().await;
}

/// `intake.max_upload_bytes_per_day`: counted per caller and UTC day in intake's database.
async fn the_daily_upload_cap_holds(db: pos_platform::testing::TestDb) {
    use tonic_types::StatusExt;
    let cap = 2 * PDF.len() + JPEG.len();
    let config = IntakeConfig { max_upload_bytes_per_day: cap as u64, ..IntakeConfig::default() };
    let options = pos_platform::testing::TestOptions { db, ..Default::default() };
    let app = TestApp::spawn_options(options, std::sync::Arc::new(classifier()), config).await;
    let token = applicant_token();
    let pdf = || parts("scan.pdf", PDF.len() as i64, &[PDF]);
    let jpeg = || parts("photo.jpg", JPEG.len() as i64, &[JPEG]);
    upload(&app, &token, pdf()).await.unwrap();
    upload(&app, &token, pdf()).await.unwrap();

    // A third scan would pass the cap: refused until midnight UTC, and its bytes are not kept.
    let status = upload(&app, &token, pdf()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(pos_platform::error::reason(&status), "UPLOAD_QUOTA_EXCEEDED");
    let now = chrono::Utc::now();
    let midnight = (now.date_naive() + chrono::Days::new(1)).and_time(chrono::NaiveTime::MIN).and_utc();
    let delay = status.get_details_retry_info().and_then(|info| info.retry_delay).expect("retry info");
    let until_midnight = (midnight - now).to_std().unwrap();
    // The server looked at the clock a moment before the test did.
    let moment = std::time::Duration::from_secs(30);
    assert!(delay >= until_midnight && delay <= until_midnight + moment, "{delay:?} for {until_midnight:?}");
    assert_eq!(app.count("attachments").await, 2);
    assert_eq!(stored_files(&app.server.dir.0.join("attachments")).len(), 2, "the refused upload's object is gone");

    // What still fits is taken; then the day is used up and refused before anything is read.
    upload(&app, &token, jpeg()).await.unwrap();
    let used: i64 = sqlx::query_scalar("SELECT bytes FROM upload_usage WHERE subject = $1")
        .bind(APPLICANT)
        .fetch_one(app.server.db.pool())
        .await
        .unwrap();
    assert_eq!(used, cap as i64);
    let status = upload(&app, &token, jpeg()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(app.count("attachments").await, 3);

    // Other callers have their own day; systems have none.
    upload(&app, &other_applicant_token(), pdf()).await.unwrap();
    for _ in 0..3 {
        upload(&app, &system_token(), pdf()).await.unwrap();
    }
    app.stop().await;
}

#[tokio::test]
async fn the_daily_upload_cap_holds_on_postgres() {
    the_daily_upload_cap_holds(pos_platform::testing::TestDb::Postgres).await;
}

#[tokio::test]
async fn the_daily_upload_cap_holds_on_sqlite() {
    the_daily_upload_cap_holds(pos_platform::testing::TestDb::Sqlite).await;
}

//! The database gone: every method of `pos.v1.IntakeService`, called as the applicant (or, for
//! ClaimAttachments, the organization's staff) with a body that passes validation, answers UNAVAILABLE with retry info and the
//! reason DATABASE_UNAVAILABLE, so that applicants' clients retry instead of giving up.

use std::sync::Arc;

use pos_intake::config::IntakeConfig;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Call, TestDb, TestOptions};
use pos_proto::v1::upload_attachment_request::Part;
use pos_proto::v1::{
    AttachmentMeta, AttachmentReferenceKind, ClaimAttachmentsRequest, DescribeAttachmentsRequest,
    DownloadAttachmentRequest, GetAppealRequest, UploadAttachmentRequest,
};

use crate::helpers::*;

/// One rpc on its own clone of the client.
fn applicant<T>(message: T) -> tonic::Request<T> {
    call(message, &applicant_token())
}

async fn every_method_is_unavailable_without_the_database(db: TestDb) {
    let options = TestOptions { db, ..TestOptions::default() };
    let app = TestApp::spawn_options(options, Arc::new(classifier()), IntakeConfig::default()).await;
    let c = &app.client;
    let text = b"plain text, valid UTF-8".to_vec();
    let upload = vec![
        UploadAttachmentRequest {
            part: Some(Part::Meta(AttachmentMeta { file_name: "note.txt".into(), size: text.len() as i64 })),
        },
        UploadAttachmentRequest { part: Some(Part::Chunk(text)) },
    ];
    let appeal_id = uuid::Uuid::now_v7().to_string();
    let calls: Vec<(&str, Call)> = vec![
        ("SubmitAppeal", rpc_call!(c, submit_appeal, applicant(submission("req-1")))),
        ("UploadAttachment", rpc_call!(c, upload_attachment, applicant(tokio_stream::iter(upload)))),
        ("GetAppeal", rpc_call!(c, get_appeal, applicant(GetAppealRequest { appeal_id: appeal_id.clone() }))),
        (
            "ClaimAttachments",
            rpc_call!(
                c,
                claim_attachments,
                // Claims come from the organization's staff, through ticketing.
                call(
                    ClaimAttachmentsRequest {
                        appeal_id,
                        kind: AttachmentReferenceKind::Incident as i32,
                        object_id: uuid::Uuid::now_v7().to_string(),
                        attachment_ids: vec![uuid::Uuid::now_v7().to_string()],
                        field: String::new(),
                        reader_organization_id: String::new(),
                        with_appeal_files: false,
                    },
                    &staff_token(SCHOOL)
                )
            ),
        ),
        (
            "DownloadAttachment",
            rpc_call!(
                c,
                download_attachment,
                applicant(DownloadAttachmentRequest { attachment_id: uuid::Uuid::now_v7().to_string() })
            ),
        ),
        (
            "DescribeAttachments",
            rpc_call!(
                c,
                describe_attachments,
                applicant(DescribeAttachmentsRequest { attachment_ids: vec![uuid::Uuid::now_v7().to_string()] })
            ),
        ),
    ];
    testing::assert_unavailable_without_database(&app.server, "IntakeService", calls).await;
    app.stop().await;
}

#[tokio::test]
async fn every_method_is_unavailable_when_postgres_is_gone() {
    every_method_is_unavailable_without_the_database(TestDb::Postgres).await;
}

#[tokio::test]
async fn every_method_is_unavailable_when_sqlite_is_gone() {
    every_method_is_unavailable_without_the_database(TestDb::Sqlite).await;
}

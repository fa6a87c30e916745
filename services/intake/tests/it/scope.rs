//! Every method of `pos.v1.IntakeService` keeps to the caller's scope: staff of another
//! organization and another applicant read nothing of an appeal that is not theirs; a caller
//! without the method's role is denied before the body is read.

use std::time::Duration;

use pos_platform::auth::Role;
use pos_platform::bus::Envelope;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Scoped, eventually, token};
use pos_proto::v1::events::AppealRouted;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::upload_attachment_request::Part;
use pos_proto::v1::{
    AttachmentMeta, AttachmentReferenceKind, ClaimAttachmentsRequest, DescribeAttachmentsRequest,
    DownloadAttachmentRequest, GetAppealRequest, OrganizationRef, OrganizationType, SubmitAppealRequest,
    UploadAttachmentRequest,
};
use tonic::transport::Channel;

use crate::helpers::*;

/// Staff of the college holding every cabinet role: the appeal went to the school.
fn intruder<T>(message: T) -> tonic::Request<T> {
    call(message, &token("intruder", COLLEGE, REGION, &Role::STAFF))
}

fn other_applicant<T>(message: T) -> tonic::Request<T> {
    call(message, &other_applicant_token())
}

/// A caller holding every role but `allowed`.
fn without<T>(allowed: &[Role], message: T) -> tonic::Request<T> {
    let roles: Vec<Role> = Role::ALL.iter().copied().filter(|role| !allowed.contains(role)).collect();
    call(message, &token("outsider", SCHOOL, REGION, &roles))
}

const SUBMITTERS: [Role; 3] = [Role::Applicant, Role::Operator, Role::System];
/// Who records references: the organization's staff (through ticketing), systems, and the
/// applicant sending the information asked of them.
const CLAIMERS: [Role; 8] = [
    Role::Coordinator,
    Role::Executor,
    Role::Head,
    Role::Curator,
    Role::OrgAdmin,
    Role::Approver,
    Role::System,
    Role::Applicant,
];

/// An incident's claim of `attachment_id` for the appeal.
fn claim(appeal_id: &str, attachment_id: &str) -> ClaimAttachmentsRequest {
    ClaimAttachmentsRequest {
        appeal_id: appeal_id.into(),
        kind: AttachmentReferenceKind::Incident as i32,
        object_id: uuid::Uuid::now_v7().to_string(),
        attachment_ids: vec![attachment_id.into()],
        field: String::new(),
        reader_organization_id: String::new(),
        with_appeal_files: false,
    }
}

/// The applicant's appeal, routed to the school (and readable by the school's staff).
async fn routed_appeal(app: &TestApp) -> String {
    let mut client = app.client.clone();
    let appeal_id =
        client.submit_appeal(call(submission("req-1"), &applicant_token())).await.unwrap().into_inner().appeal_id;
    let event = AppealRouted {
        appeal_id: appeal_id.clone(),
        organization: Some(OrganizationRef {
            id: SCHOOL.into(),
            short_name: "Школа № 1".into(),
            r#type: OrganizationType::School as i32,
            region_code: REGION.into(),
        }),
        time_zone: "Asia/Kamchatka".into(),
        period_days: 10,
        routed_at: Some(pos_proto::time::to_proto(chrono::Utc::now())),
        ..AppealRouted::default()
    };
    app.server.bus().publish(&Envelope::new(&event, REGION).with_appeal(&appeal_id)).await.unwrap();
    eventually(Duration::from_secs(10), "the school's staff read the routed appeal", || {
        let mut client = app.client.clone();
        let request = call(GetAppealRequest { appeal_id: appeal_id.clone() }, &staff_token(SCHOOL));
        async move { client.get_appeal(request).await.is_ok() }
    })
    .await;
    appeal_id
}

/// The applicant's upload, not yet attached to anything.
async fn upload(app: &TestApp) -> String {
    let mut client = app.client.clone();
    let text = b"plain text".to_vec();
    let parts = vec![
        UploadAttachmentRequest {
            part: Some(Part::Meta(AttachmentMeta { file_name: "note.txt".into(), size: text.len() as i64 })),
        },
        UploadAttachmentRequest { part: Some(Part::Chunk(text)) },
    ];
    let uploaded = client.upload_attachment(call(tokio_stream::iter(parts), &applicant_token())).await.unwrap();
    uploaded.into_inner().attachment_id
}

#[tokio::test]
async fn another_organization_and_another_applicant_read_nothing_of_the_appeal() {
    let app = TestApp::spawn().await;
    let appeal_id = routed_appeal(&app).await;
    let attachment_id = upload(&app).await;
    let c = &app.client;
    let rows: Vec<(&str, Scoped)> = vec![
        ("SubmitAppeal", Scoped::OwnOnly(foreign_upload_is_unknown(c, attachment_id.clone()))),
        ("UploadAttachment", Scoped::Public("an upload makes a new object of the caller's own and names none")),
        (
            "GetAppeal",
            Scoped::Denied(rpc_call!(c, get_appeal, intruder(GetAppealRequest { appeal_id: appeal_id.clone() }))),
        ),
        (
            "GetAppeal",
            Scoped::Denied(rpc_call!(
                c,
                get_appeal,
                other_applicant(GetAppealRequest { appeal_id: appeal_id.clone() })
            )),
        ),
        (
            "ClaimAttachments",
            Scoped::Denied(rpc_call!(c, claim_attachments, intruder(claim(&appeal_id, &attachment_id)))),
        ),
        // The applicant claims for their own appeal's incident or information only.
        (
            "ClaimAttachments",
            Scoped::Denied(rpc_call!(c, claim_attachments, other_applicant(claim(&appeal_id, &attachment_id)))),
        ),
        // Granting an incident to another organization is the platform's alone, even for staff
        // of the appeal's own organization.
        (
            "ClaimAttachments",
            Scoped::Denied(rpc_call!(
                c,
                claim_attachments,
                call(
                    ClaimAttachmentsRequest {
                        reader_organization_id: COLLEGE.into(),
                        ..claim(&appeal_id, &attachment_id)
                    },
                    &staff_token(SCHOOL)
                )
            )),
        ),
        (
            "DownloadAttachment",
            Scoped::Denied(rpc_call!(
                c,
                download_attachment,
                intruder(DownloadAttachmentRequest { attachment_id: attachment_id.clone() })
            )),
        ),
        (
            "DownloadAttachment",
            Scoped::Denied(rpc_call!(
                c,
                download_attachment,
                other_applicant(DownloadAttachmentRequest { attachment_id: attachment_id.clone() })
            )),
        ),
        (
            "DescribeAttachments",
            Scoped::Denied(rpc_call!(
                c,
                describe_attachments,
                intruder(DescribeAttachmentsRequest { attachment_ids: vec![attachment_id.clone()] })
            )),
        ),
        (
            "DescribeAttachments",
            Scoped::Denied(rpc_call!(
                c,
                describe_attachments,
                other_applicant(DescribeAttachmentsRequest { attachment_ids: vec![attachment_id.clone()] })
            )),
        ),
    ];
    testing::assert_every_method_scoped("IntakeService", rows).await;
    app.stop().await;
}

/// Another applicant naming the applicant's upload is refused exactly as for an id nobody
/// uploaded, so the refusal tells neither that the upload exists nor whose it is.
fn foreign_upload_is_unknown(client: &IntakeServiceClient<Channel>, attachment_id: String) -> testing::Call {
    let mut client = client.clone();
    Box::pin(async move {
        let foreign = SubmitAppealRequest { attachment_ids: vec![attachment_id], ..submission("req-2") };
        let foreign = match client.submit_appeal(other_applicant(foreign)).await {
            Ok(registered) => panic!("an appeal registered with another applicant's upload: {registered:?}"),
            Err(status) => status,
        };
        let nobodys =
            SubmitAppealRequest { attachment_ids: vec![uuid::Uuid::now_v7().to_string()], ..submission("req-3") };
        let unknown = client.submit_appeal(other_applicant(nobodys)).await.expect_err("an id nobody uploaded");
        assert_eq!(refusal(&foreign), refusal(&unknown), "another applicant's upload is told apart from an unknown id");
        Ok(())
    })
}

#[tokio::test]
async fn a_caller_without_the_role_is_denied_before_the_body_is_read() {
    let app = TestApp::spawn().await;
    let c = &app.client;
    let rows: Vec<(&str, Scoped)> = vec![
        (
            "SubmitAppeal",
            Scoped::Denied(rpc_call!(c, submit_appeal, without(&SUBMITTERS, SubmitAppealRequest::default()))),
        ),
        (
            "UploadAttachment",
            Scoped::Public(
                "every role uploads (applicants for appeals, staff for answers and incidents); the role decides which types",
            ),
        ),
        ("GetAppeal", Scoped::Public("every role may ask; the answer is checked against the appeal")),
        (
            "ClaimAttachments",
            Scoped::Denied(rpc_call!(
                c,
                claim_attachments,
                without(&CLAIMERS, claim(&uuid::Uuid::now_v7().to_string(), &uuid::Uuid::now_v7().to_string()))
            )),
        ),
        ("DownloadAttachment", Scoped::Public("every role may ask; the answer is checked against the file's appeal")),
        (
            "DescribeAttachments",
            Scoped::Public("every role may ask; each file is checked as DownloadAttachment checks it"),
        ),
    ];
    testing::assert_every_method_scoped("IntakeService", rows).await;
    app.stop().await;
}

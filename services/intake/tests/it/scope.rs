//! Every method of `pos.v1.IntakeService` keeps to the caller's scope: staff of another
//! organization and another applicant read nothing of an appeal that is not theirs; a caller
//! without the method's role is denied before the body is read.

use std::time::Duration;

use pos_platform::auth::Role;
use pos_platform::bus::Envelope;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Scoped, eventually, token};
use pos_proto::v1::events::AppealRouted;
use pos_proto::v1::upload_attachment_request::Part;
use pos_proto::v1::{
    AttachmentMeta, GetAppealRequest, OrganizationRef, OrganizationType, SubmitAppealRequest, UploadAttachmentRequest,
};

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
    let c = &app.client;
    let rows: Vec<(&str, Scoped)> = vec![
        (
            "SubmitAppeal",
            Scoped::KnownLeak(
                "naming another applicant's upload in attachment_ids answers INVALID_ARGUMENT \"uploaded by \
                 another caller\", which tells that the upload exists and is someone else's",
            ),
        ),
        ("UploadAttachment", Scoped::Public("an upload makes a new object of the caller's own and names none")),
        (
            "GetAppeal",
            Scoped::Denied(rpc_call!(c, get_appeal, intruder(GetAppealRequest { appeal_id: appeal_id.clone() }))),
        ),
        (
            "GetAppeal",
            Scoped::KnownLeak(
                "another applicant is denied, but with the generic reason PERMISSION_DENIED rather than \
                 OTHER_APPLICANT",
            ),
        ),
    ];
    testing::assert_every_method_scoped("IntakeService", rows).await;
    app.stop().await;
}

/// The rows [`another_organization_and_another_applicant_read_nothing_of_the_appeal`] holds as
/// known failures, checked for real: run with `--ignored` to see whether they hold yet.
#[tokio::test]
#[ignore = "known failures of intake, listed in the scope table"]
async fn known_failures_are_fixed() {
    let app = TestApp::spawn().await;
    let appeal_id = routed_appeal(&app).await;
    let attachment_id = upload(&app).await;
    let c = &app.client;
    let foreign_upload = SubmitAppealRequest { attachment_ids: vec![attachment_id], ..submission("req-2") };
    let rows: Vec<(&str, Scoped)> = vec![
        ("SubmitAppeal", Scoped::Denied(rpc_call!(c, submit_appeal, other_applicant(foreign_upload)))),
        ("GetAppeal", Scoped::Denied(rpc_call!(c, get_appeal, other_applicant(GetAppealRequest { appeal_id })))),
    ];
    testing::assert_scoped("IntakeService", rows).await;
    app.stop().await;
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
            Scoped::Denied(rpc_call!(
                c,
                upload_attachment,
                without(&SUBMITTERS, tokio_stream::iter(Vec::<UploadAttachmentRequest>::new()))
            )),
        ),
        ("GetAppeal", Scoped::Public("every role may ask; the answer is checked against the appeal")),
    ];
    testing::assert_every_method_scoped("IntakeService", rows).await;
    app.stop().await;
}

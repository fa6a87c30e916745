//! The database gone: every method of `pos.v1.TicketingService`, called with a token that holds
//! its role and a body that passes validation, answers UNAVAILABLE with retry info and the reason
//! DATABASE_UNAVAILABLE, so that clients retry rather than report a bug.

use pos_platform::auth::Role;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Call};
use pos_proto::v1 as pb;
use pos_proto::v1::events::AnswerType;

use crate::helpers::{as_, spawn_app};

const SCHOOL: &str = "school-1";

/// Every cabinet role, so that each staff method finds the one it needs.
fn staff<T>(message: T) -> tonic::Request<T> {
    let roles = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::OrgAdmin, Role::Approver];
    as_(message, "staff-1", SCHOOL, &roles)
}

fn applicant<T>(message: T) -> tonic::Request<T> {
    as_(message, "citizen-1", "", &[Role::Applicant])
}

/// The handling line of an incident: the situation center's ITSM.
fn system<T>(message: T) -> tonic::Request<T> {
    as_(message, "itsm", "", &[Role::System])
}

/// One rpc on its own clone of the client.
#[tokio::test]
async fn every_method_answers_unavailable_with_retry_info_while_the_database_is_down() {
    let app = spawn_app().await;
    let c = app.client();
    let ticket = || "t-1".to_owned();
    let version = pb::VersionRequest { ticket_id: ticket(), expected_version: 1 };
    let comment = pb::CommentRequest {
        ticket_id: ticket(),
        expected_version: 1,
        comment: "a reason".into(),
        attachment_ids: Vec::new(),
    };
    let answer = pb::Answer { r#type: AnswerType::Resolved as i32, text: "Ответ".into(), ..Default::default() };
    let by_id = || pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::TicketId(ticket())) };
    let step = pb::IncidentCommandRequest {
        incident_id: "i-1".into(),
        expected_version: 1,
        comment: "note".into(),
        attachment_ids: Vec::new(),
    };
    let calls: Vec<(&str, Call)> = vec![
        ("ListTickets", rpc_call!(c, list_tickets, staff(pb::ListTicketsRequest::default()))),
        ("GetTicket", rpc_call!(c, get_ticket, staff(by_id()))),
        ("ListStaff", rpc_call!(c, list_staff, staff(pb::ListStaffRequest::default()))),
        (
            "UpsertStaff",
            rpc_call!(
                c,
                upsert_staff,
                staff(pb::StaffMember {
                    subject: "exec-1".into(),
                    full_name: "Executor".into(),
                    roles: vec!["executor".into()],
                    active: true,
                    ..Default::default()
                })
            ),
        ),
        ("GetTicketHistory", rpc_call!(c, get_ticket_history, staff(by_id()))),
        (
            "SaveAnswerTemplate",
            rpc_call!(
                c,
                save_answer_template,
                staff(pb::AnswerTemplate {
                    name: "greeting".into(),
                    body: "Здравствуйте, {{applicant_name}}!".into(),
                    ..Default::default()
                })
            ),
        ),
        ("ListAnswerTemplates", rpc_call!(c, list_answer_templates, staff(pb::ListAnswerTemplatesRequest::default()))),
        (
            "PreviewAnswerTemplate",
            rpc_call!(
                c,
                preview_answer_template,
                staff(pb::PreviewAnswerTemplateRequest {
                    body: "Здравствуйте, {{applicant_name}}!".into(),
                    ..Default::default()
                })
            ),
        ),
        ("ListReminders", rpc_call!(c, list_reminders, staff(pb::ListRemindersRequest::default()))),
        (
            "GetReport",
            rpc_call!(
                c,
                get_report,
                staff(pb::GetReportRequest {
                    period_from: Some(prost_types::Timestamp { seconds: 1_737_000_000, nanos: 0 }),
                    period_to: Some(prost_types::Timestamp { seconds: 1_737_086_400, nanos: 0 }),
                    ..Default::default()
                })
            ),
        ),
        (
            "TakeInWork",
            rpc_call!(c, take_in_work, staff(pb::TakeInWorkRequest { ticket_id: ticket(), expected_version: 1 })),
        ),
        (
            "AssignExecutor",
            rpc_call!(
                c,
                assign_executor,
                staff(pb::AssignExecutorRequest {
                    ticket_id: ticket(),
                    expected_version: 1,
                    executor_id: "exec-1".into(),
                    execution_due: None,
                })
            ),
        ),
        (
            "HandOver",
            rpc_call!(
                c,
                hand_over,
                staff(pb::HandOverRequest { ticket_id: ticket(), expected_version: 1, executor_id: "exec-2".into() })
            ),
        ),
        ("ReturnToCoordinator", rpc_call!(c, return_to_coordinator, staff(comment.clone()))),
        (
            "PrepareAnswer",
            rpc_call!(
                c,
                prepare_answer,
                staff(pb::PrepareAnswerRequest {
                    ticket_id: ticket(),
                    expected_version: 1,
                    answer: Some(answer.clone()),
                    template_id: String::new(),
                })
            ),
        ),
        ("RequestInformation", rpc_call!(c, request_information, staff(comment.clone()))),
        ("InformationReceived", rpc_call!(c, information_received, staff(comment.clone()))),
        ("SendForAgreement", rpc_call!(c, send_for_agreement, staff(version.clone()))),
        ("SendForApproval", rpc_call!(c, send_for_approval, staff(version.clone()))),
        ("Agree", rpc_call!(c, agree, staff(comment.clone()))),
        ("ReturnForRework", rpc_call!(c, return_for_rework, staff(comment.clone()))),
        (
            "Approve",
            rpc_call!(c, approve, staff(pb::ApproveRequest { ticket_id: ticket(), expected_version: 1, edited: None })),
        ),
        (
            "Redirect",
            rpc_call!(
                c,
                redirect,
                staff(pb::RedirectRequest {
                    ticket_id: ticket(),
                    expected_version: 1,
                    to_organization_id: "school-2".into(),
                    reason: "their pupil".into(),
                })
            ),
        ),
        ("ReturnToCoordination", rpc_call!(c, return_to_coordination, staff(comment.clone()))),
        ("Reject", rpc_call!(c, reject, staff(comment.clone()))),
        (
            "AcceptAnswer",
            rpc_call!(
                c,
                accept_answer,
                applicant(pb::AcceptAnswerRequest { ticket_id: ticket(), expected_version: 1, rating: 5 })
            ),
        ),
        ("RejectAnswer", rpc_call!(c, reject_answer, applicant(comment.clone()))),
        ("StopReview", rpc_call!(c, stop_review, staff(comment.clone()))),
        (
            "OpenIncident",
            rpc_call!(
                c,
                open_incident,
                staff(pb::OpenIncidentRequest {
                    ticket_id: ticket(),
                    kind: pb::IncidentKind::FederalSupervisor as i32,
                    subject: "Данные в ФРДО неверны".into(),
                    ..Default::default()
                })
            ),
        ),
        (
            "ListIncidents",
            rpc_call!(
                c,
                list_incidents,
                staff(pb::ListIncidentsRequest {
                    ticket_id: ticket(),
                    handler_organization_id: String::new(),
                    open_only: false,
                })
            ),
        ),
        ("EscalateIncident", rpc_call!(c, escalate_incident, system(step.clone()))),
        ("RequestIncidentInformation", rpc_call!(c, request_incident_information, system(step.clone()))),
        ("IncidentInformationReceived", rpc_call!(c, incident_information_received, system(step.clone()))),
        ("ResolveIncident", rpc_call!(c, resolve_incident, system(step.clone()))),
        ("ConfirmIncidentResult", rpc_call!(c, confirm_incident_result, applicant(step.clone()))),
        ("RejectIncidentResult", rpc_call!(c, reject_incident_result, applicant(step.clone()))),
    ];
    // Closes the pool the server shares: every method loses its database.
    testing::assert_unavailable_without_database(&app, "TicketingService", calls).await;
    app.stop().await;
}

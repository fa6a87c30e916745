//! Every method of `pos.v1.TicketingService` keeps to the caller's scope: staff of another school
//! with every cabinet role, naming one of the first school's objects (its ticket, incident,
//! staff, templates, reminders), and another applicant naming someone else's appeal, are
//! denied; a caller without the method's role is denied before the body is read, even a body
//! that would be refused. Lists without a named organization show the caller's own only.

use pos_platform::auth::Role;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Scoped};
use pos_proto::v1 as pb;
use pos_proto::v1::events::AnswerType;
use pos_ticketing::workflow::CommandKind;

use crate::helpers::{App, as_, current, deliver, routed, spawn_app};

const SCHOOL: &str = "school-1";
const OTHER_SCHOOL: &str = "school-2";

/// Staff of the other school holding every cabinet role: the role never stands in the way.
fn intruder<T>(message: T) -> tonic::Request<T> {
    as_(message, "intruder", OTHER_SCHOOL, &Role::STAFF)
}

fn other_applicant<T>(message: T) -> tonic::Request<T> {
    as_(message, "citizen-2", "", &[Role::Applicant])
}

/// A caller of the first school holding every role but `allowed`.
fn without<T>(allowed: &[Role], message: T) -> tonic::Request<T> {
    let roles: Vec<Role> = Role::ALL.iter().copied().filter(|role| !allowed.contains(role)).collect();
    as_(message, "outsider", SCHOOL, &roles)
}

/// A report of the day the test's appeals were registered, of `organization_id`.
fn report_of(organization_id: String) -> pb::GetReportRequest {
    let day = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    pb::GetReportRequest {
        organization_id,
        period_from: day(crate::helpers::REGISTERED_AT - 3_600),
        period_to: day(crate::helpers::REGISTERED_AT + 86_400),
        ..Default::default()
    }
}

/// The first school's objects: a ticket of citizen-1's appeal, an incident on it, an executor,
/// an answer template.
struct Objects {
    ticket_id: String,
    incident_id: String,
}

async fn first_school(app: &App) -> Objects {
    let mut c = app.client();
    let member = pb::StaffMember {
        subject: "exec-1".into(),
        full_name: "Исполнитель".into(),
        roles: vec!["executor".into()],
        active: true,
        ..Default::default()
    };
    c.upsert_staff(as_(member, "admin-1", SCHOOL, &[Role::OrgAdmin])).await.expect("staff saved");
    let template = pb::AnswerTemplate {
        name: "ответ".into(), body: "Здравствуйте!".into(), ..Default::default()
    };
    c.save_answer_template(as_(template, "admin-1", SCHOOL, &[Role::OrgAdmin])).await.expect("template saved");
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let ticket_id = current(&app.db, "a-1").await.id;
    // A supervisor's escalation names a federal body of routing's directory, which this
    // ticketing alone cannot read: the situation center's incident stands in for both kinds.
    let open = pb::OpenIncidentRequest {
        ticket_id: ticket_id.clone(),
        kind: pb::IncidentKind::SituationCenter as i32,
        service: "Инциденты ИС ИЭП".into(),
        request_type: "Запрос/инцидент".into(),
        system: "МШ. Платформа ЦОК".into(),
        priority: "3 Приоритет".into(),
        user_account: "user@example.org".into(),
        subject: "Нет доступа к Библиотеке ЦОК".into(),
        ..Default::default()
    };
    let incident = c.open_incident(as_(open, "coord-1", SCHOOL, &[Role::Coordinator])).await.expect("opened");
    Objects { ticket_id, incident_id: incident.into_inner().id }
}

#[tokio::test]
async fn another_school_and_another_applicant_reach_nothing_of_the_first() {
    let app = spawn_app().await;
    let Objects { ticket_id, incident_id } = first_school(&app).await;
    let c = app.client();
    let by_id = || pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::TicketId(ticket_id.clone())) };
    let by_appeal = || pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::AppealId("a-1".into())) };
    // The bodies name the first school's ticket and are otherwise refusable, so that a check of
    // the body before the scope would show.
    let comment = || pb::CommentRequest {
        ticket_id: ticket_id.clone(),
        expected_version: 0,
        comment: String::new(),
        attachment_ids: Vec::new(),
    };
    let version = || pb::VersionRequest { ticket_id: ticket_id.clone(), expected_version: 0 };
    let step = || pb::IncidentCommandRequest {
        incident_id: incident_id.clone(),
        expected_version: 0,
        comment: String::new(),
        attachment_ids: Vec::new(),
    };
    let first_school = || SCHOOL.to_owned();
    // Lists without a named organization: the caller's own, so nothing of the first school.
    let own_list = |request: tonic::Request<pb::ListTicketsRequest>| {
        let mut client = c.clone();
        testing::call(async move {
            let listed = client.list_tickets(request).await?;
            let leaked =
                listed.get_ref().tickets.iter().any(|t| t.organization.as_ref().is_some_and(|o| o.id == SCHOOL));
            let counted: i64 = listed.get_ref().folder_counts.iter().map(|f| f.count).sum();
            assert!(!leaked && counted == 0, "the first school's tickets listed to an outsider: {listed:?}");
            Ok(listed)
        })
    };
    // A report without a named organization: the caller's own, where nothing was received.
    let own_report = |request: tonic::Request<pb::GetReportRequest>| {
        let mut client = c.clone();
        testing::call(async move {
            let report = client.get_report(request).await?;
            let received = report.get_ref().totals.as_ref().map_or(0, |t| t.received);
            assert!(received == 0 && report.get_ref().organization_id == OTHER_SCHOOL, "{report:?}");
            Ok(report)
        })
    };
    let rows: Vec<(&str, Scoped)> = vec![
        (
            "ListTickets",
            Scoped::Denied(rpc_call!(
                c,
                list_tickets,
                intruder(pb::ListTicketsRequest {
                    organization_id: first_school(),
                    page_size: -1,
                    ..Default::default()
                })
            )),
        ),
        ("ListTickets", Scoped::OwnOnly(own_list(intruder(pb::ListTicketsRequest::default())))),
        ("ListTickets", Scoped::OwnOnly(own_list(other_applicant(pb::ListTicketsRequest::default())))),
        ("GetTicket", Scoped::Denied(rpc_call!(c, get_ticket, intruder(by_id())))),
        ("GetTicket", Scoped::Denied(rpc_call!(c, get_ticket, intruder(by_appeal())))),
        ("GetTicket", Scoped::Denied(rpc_call!(c, get_ticket, other_applicant(by_id())))),
        (
            "ListStaff",
            Scoped::Denied(rpc_call!(
                c,
                list_staff,
                intruder(pb::ListStaffRequest { organization_id: first_school(), role: "nobody".into() })
            )),
        ),
        (
            "UpsertStaff",
            Scoped::Denied(rpc_call!(
                c,
                upsert_staff,
                intruder(pb::StaffMember {
                    organization_id: first_school(),
                    subject: "exec-1".into(),
                    ..Default::default()
                })
            )),
        ),
        ("GetTicketHistory", Scoped::Denied(rpc_call!(c, get_ticket_history, intruder(by_id())))),
        ("GetTicketHistory", Scoped::Denied(rpc_call!(c, get_ticket_history, other_applicant(by_id())))),
        (
            "SaveAnswerTemplate",
            Scoped::Denied(rpc_call!(
                c,
                save_answer_template,
                intruder(pb::AnswerTemplate {
                    organization_id: first_school(),
                    name: "ответ".into(),
                    body: "{{unknown}}".into(),
                    ..Default::default()
                })
            )),
        ),
        (
            "ListAnswerTemplates",
            Scoped::Denied(rpc_call!(
                c,
                list_answer_templates,
                intruder(pb::ListAnswerTemplatesRequest { organization_id: first_school() })
            )),
        ),
        // The body names an unknown placeholder: refused for the field, were the scope after it.
        (
            "PreviewAnswerTemplate",
            Scoped::Denied(rpc_call!(
                c,
                preview_answer_template,
                intruder(pb::PreviewAnswerTemplateRequest {
                    organization_id: first_school(),
                    body: "{{unknown}}".into(),
                    ticket_id: ticket_id.clone(),
                })
            )),
        ),
        (
            "ListReminders",
            Scoped::Denied(rpc_call!(
                c,
                list_reminders,
                intruder(pb::ListRemindersRequest {
                    organization_id: first_school(),
                    due_before: Some(prost_types::Timestamp { seconds: 0, nanos: -1 }),
                })
            )),
        ),
        // The body asks for no period: refused for the field, were the scope checked after it.
        (
            "GetReport",
            Scoped::Denied(rpc_call!(
                c,
                get_report,
                intruder(pb::GetReportRequest { organization_id: first_school(), ..Default::default() })
            )),
        ),
        ("GetReport", Scoped::Denied(rpc_call!(c, get_report, other_applicant(report_of(String::new()))))),
        ("GetReport", Scoped::OwnOnly(own_report(intruder(report_of(String::new()))))),
        (
            "TakeInWork",
            Scoped::Denied(rpc_call!(
                c,
                take_in_work,
                intruder(pb::TakeInWorkRequest { ticket_id: ticket_id.clone(), expected_version: 0 })
            )),
        ),
        (
            "AssignExecutor",
            Scoped::Denied(rpc_call!(
                c,
                assign_executor,
                intruder(pb::AssignExecutorRequest {
                    ticket_id: ticket_id.clone(),
                    expected_version: 0,
                    executor_id: "exec-1".into(),
                    execution_due: Some(prost_types::Timestamp { seconds: 0, nanos: -1 }),
                })
            )),
        ),
        (
            "HandOver",
            Scoped::Denied(rpc_call!(
                c,
                hand_over,
                intruder(pb::HandOverRequest {
                    ticket_id: ticket_id.clone(),
                    expected_version: 0,
                    executor_id: "exec-1".into()
                })
            )),
        ),
        ("ReturnToCoordinator", Scoped::Denied(rpc_call!(c, return_to_coordinator, intruder(comment())))),
        (
            "PrepareAnswer",
            Scoped::Denied(rpc_call!(
                c,
                prepare_answer,
                intruder(pb::PrepareAnswerRequest {
                    ticket_id: ticket_id.clone(),
                    expected_version: 0,
                    answer: None,
                    template_id: "no-such-template".into(),
                })
            )),
        ),
        ("RequestInformation", Scoped::Denied(rpc_call!(c, request_information, intruder(comment())))),
        ("InformationReceived", Scoped::Denied(rpc_call!(c, information_received, intruder(comment())))),
        ("InformationReceived", Scoped::Denied(rpc_call!(c, information_received, other_applicant(comment())))),
        ("SendForAgreement", Scoped::Denied(rpc_call!(c, send_for_agreement, intruder(version())))),
        ("SendForApproval", Scoped::Denied(rpc_call!(c, send_for_approval, intruder(version())))),
        ("Agree", Scoped::Denied(rpc_call!(c, agree, intruder(comment())))),
        ("ReturnForRework", Scoped::Denied(rpc_call!(c, return_for_rework, intruder(comment())))),
        (
            "Approve",
            Scoped::Denied(rpc_call!(
                c,
                approve,
                intruder(pb::ApproveRequest {
                    ticket_id: ticket_id.clone(),
                    expected_version: 0,
                    edited: Some(pb::Answer::default()),
                })
            )),
        ),
        (
            "Redirect",
            Scoped::Denied(rpc_call!(
                c,
                redirect,
                intruder(pb::RedirectRequest {
                    ticket_id: ticket_id.clone(),
                    expected_version: 0,
                    to_organization_id: OTHER_SCHOOL.into(),
                    reason: String::new(),
                })
            )),
        ),
        ("ReturnToCoordination", Scoped::Denied(rpc_call!(c, return_to_coordination, intruder(comment())))),
        ("Reject", Scoped::Denied(rpc_call!(c, reject, intruder(comment())))),
        (
            "AcceptAnswer",
            Scoped::Denied(rpc_call!(
                c,
                accept_answer,
                other_applicant(pb::AcceptAnswerRequest {
                    ticket_id: ticket_id.clone(),
                    expected_version: 0,
                    rating: 0
                })
            )),
        ),
        ("RejectAnswer", Scoped::Denied(rpc_call!(c, reject_answer, other_applicant(comment())))),
        ("StopReview", Scoped::Denied(rpc_call!(c, stop_review, intruder(comment())))),
        (
            "OpenIncident",
            Scoped::Denied(rpc_call!(
                c,
                open_incident,
                intruder(pb::OpenIncidentRequest { ticket_id: ticket_id.clone(), ..Default::default() })
            )),
        ),
        (
            "ListIncidents",
            Scoped::Denied(rpc_call!(
                c,
                list_incidents,
                intruder(pb::ListIncidentsRequest {
                    ticket_id: ticket_id.clone(),
                    handler_organization_id: String::new(),
                    open_only: false,
                })
            )),
        ),
        (
            "ListIncidents",
            Scoped::Denied(rpc_call!(
                c,
                list_incidents,
                other_applicant(pb::ListIncidentsRequest {
                    ticket_id: ticket_id.clone(),
                    handler_organization_id: String::new(),
                    open_only: false,
                })
            )),
        ),
        (
            "ListIncidents",
            Scoped::Denied(rpc_call!(
                c,
                list_incidents,
                intruder(pb::ListIncidentsRequest {
                    ticket_id: String::new(),
                    handler_organization_id: SCHOOL.into(),
                    open_only: false,
                })
            )),
        ),
        (
            "ListIncidents",
            Scoped::Denied(rpc_call!(
                c,
                list_incidents,
                as_(
                    pb::ListIncidentsRequest {
                        ticket_id: String::new(),
                        handler_organization_id: SCHOOL.into(),
                        open_only: false,
                    },
                    "citizen-1",
                    SCHOOL,
                    &[Role::Applicant]
                )
            )),
        ),
        ("EscalateIncident", Scoped::Denied(rpc_call!(c, escalate_incident, intruder(step())))),
        ("RequestIncidentInformation", Scoped::Denied(rpc_call!(c, request_incident_information, intruder(step())))),
        ("IncidentInformationReceived", Scoped::Denied(rpc_call!(c, incident_information_received, intruder(step())))),
        (
            "IncidentInformationReceived",
            Scoped::Denied(rpc_call!(c, incident_information_received, other_applicant(step()))),
        ),
        ("ResolveIncident", Scoped::Denied(rpc_call!(c, resolve_incident, intruder(step())))),
        ("ConfirmIncidentResult", Scoped::Denied(rpc_call!(c, confirm_incident_result, other_applicant(step())))),
        ("RejectIncidentResult", Scoped::Denied(rpc_call!(c, reject_incident_result, other_applicant(step())))),
    ];
    testing::assert_every_method_scoped("TicketingService", rows).await;
    // Nothing was changed by the attempts: the version is the one opening the incident left.
    let ticket = current(&app.db, "a-1").await;
    assert_eq!((ticket.version, ticket.organization_id.as_str()), (2, SCHOOL));
    app.stop().await;
}

#[tokio::test]
async fn a_caller_without_the_role_is_denied_before_the_body_is_read() {
    let app = spawn_app().await;
    let c = app.client();
    // Bodies that would each be refused for a field: the role must be refused first.
    let comment = || pb::CommentRequest {
        ticket_id: String::new(),
        expected_version: 0,
        comment: String::new(),
        attachment_ids: Vec::new(),
    };
    let version = || pb::VersionRequest { ticket_id: String::new(), expected_version: 0 };
    let step = || pb::IncidentCommandRequest {
        incident_id: String::new(),
        expected_version: 0,
        comment: String::new(),
        attachment_ids: Vec::new(),
    };
    let command = |kind: CommandKind| kind.roles();
    let readers = [
        Role::Coordinator,
        Role::Executor,
        Role::Head,
        Role::Curator,
        Role::OrgAdmin,
        Role::Approver,
        Role::System,
        Role::Applicant,
    ];
    let cabinet =
        [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::OrgAdmin, Role::Approver, Role::System];
    let openers = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator];
    let handlers = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::System];
    // The applicant sends the information an incident's line asked of them.
    let information_senders =
        [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::System, Role::Applicant];
    let bad_time = || Some(prost_types::Timestamp { seconds: 0, nanos: -1 });
    let rows: Vec<(&str, Scoped)> = vec![
        (
            "ListTickets",
            Scoped::Denied(rpc_call!(
                c,
                list_tickets,
                without(&readers, pb::ListTicketsRequest { page_size: -1, folder: 99, ..Default::default() })
            )),
        ),
        ("GetTicket", Scoped::Denied(rpc_call!(c, get_ticket, without(&readers, pb::GetTicketRequest { key: None })))),
        (
            "ListStaff",
            Scoped::Denied(rpc_call!(
                c,
                list_staff,
                without(&cabinet, pb::ListStaffRequest { role: "nobody".into(), ..Default::default() })
            )),
        ),
        (
            "UpsertStaff",
            Scoped::Denied(rpc_call!(
                c,
                upsert_staff,
                without(&[Role::OrgAdmin, Role::Curator], pb::StaffMember::default())
            )),
        ),
        (
            "GetTicketHistory",
            Scoped::Denied(rpc_call!(c, get_ticket_history, without(&readers, pb::GetTicketRequest { key: None }))),
        ),
        (
            "SaveAnswerTemplate",
            Scoped::Denied(rpc_call!(
                c,
                save_answer_template,
                without(
                    &[Role::OrgAdmin, Role::Head, Role::Coordinator],
                    pb::AnswerTemplate { body: "{{unknown}}".into(), ..Default::default() }
                )
            )),
        ),
        (
            "ListAnswerTemplates",
            Scoped::Denied(rpc_call!(
                c,
                list_answer_templates,
                without(&cabinet, pb::ListAnswerTemplatesRequest { organization_id: String::new() })
            )),
        ),
        (
            "PreviewAnswerTemplate",
            Scoped::Denied(rpc_call!(
                c,
                preview_answer_template,
                without(
                    &[Role::OrgAdmin, Role::Head, Role::Coordinator],
                    pb::PreviewAnswerTemplateRequest { body: "{{unknown}}".into(), ..Default::default() }
                )
            )),
        ),
        (
            "ListReminders",
            Scoped::Denied(rpc_call!(
                c,
                list_reminders,
                without(&cabinet, pb::ListRemindersRequest { due_before: bad_time(), ..Default::default() })
            )),
        ),
        (
            "GetReport",
            Scoped::Denied(rpc_call!(
                c,
                get_report,
                without(
                    &[Role::Head, Role::Coordinator, Role::Curator, Role::System],
                    pb::GetReportRequest { period_from: bad_time(), folder: 99, ..Default::default() }
                )
            )),
        ),
        (
            "TakeInWork",
            Scoped::Denied(rpc_call!(
                c,
                take_in_work,
                without(command(CommandKind::TakeInWork), pb::TakeInWorkRequest::default())
            )),
        ),
        (
            "AssignExecutor",
            Scoped::Denied(rpc_call!(
                c,
                assign_executor,
                without(
                    command(CommandKind::AssignExecutor),
                    pb::AssignExecutorRequest { execution_due: bad_time(), ..Default::default() }
                )
            )),
        ),
        (
            "HandOver",
            Scoped::Denied(rpc_call!(
                c,
                hand_over,
                without(command(CommandKind::HandOver), pb::HandOverRequest::default())
            )),
        ),
        (
            "ReturnToCoordinator",
            Scoped::Denied(rpc_call!(
                c,
                return_to_coordinator,
                without(command(CommandKind::ReturnToCoordinator), comment())
            )),
        ),
        (
            "PrepareAnswer",
            Scoped::Denied(rpc_call!(
                c,
                prepare_answer,
                without(
                    command(CommandKind::PrepareAnswer),
                    pb::PrepareAnswerRequest {
                        answer: Some(pb::Answer { r#type: 99, ..Default::default() }),
                        ..Default::default()
                    }
                )
            )),
        ),
        (
            "RequestInformation",
            Scoped::Denied(rpc_call!(
                c,
                request_information,
                without(command(CommandKind::RequestInformation), comment())
            )),
        ),
        (
            "InformationReceived",
            Scoped::Denied(rpc_call!(
                c,
                information_received,
                without(command(CommandKind::InformationReceived), comment())
            )),
        ),
        (
            "SendForAgreement",
            Scoped::Denied(rpc_call!(
                c,
                send_for_agreement,
                without(command(CommandKind::SendForAgreement), version())
            )),
        ),
        (
            "SendForApproval",
            Scoped::Denied(rpc_call!(c, send_for_approval, without(command(CommandKind::SendForApproval), version()))),
        ),
        ("Agree", Scoped::Denied(rpc_call!(c, agree, without(command(CommandKind::Agree), comment())))),
        (
            "ReturnForRework",
            Scoped::Denied(rpc_call!(c, return_for_rework, without(command(CommandKind::ReturnForRework), comment()))),
        ),
        (
            "Approve",
            Scoped::Denied(rpc_call!(
                c,
                approve,
                without(
                    command(CommandKind::Approve),
                    pb::ApproveRequest {
                        edited: Some(pb::Answer { r#type: AnswerType::Resolved as i32, ..Default::default() }),
                        ..Default::default()
                    }
                )
            )),
        ),
        (
            "Redirect",
            Scoped::Denied(rpc_call!(
                c,
                redirect,
                without(command(CommandKind::Redirect), pb::RedirectRequest::default())
            )),
        ),
        (
            "ReturnToCoordination",
            Scoped::Denied(rpc_call!(
                c,
                return_to_coordination,
                without(command(CommandKind::ReturnToCoordination), comment())
            )),
        ),
        ("Reject", Scoped::Denied(rpc_call!(c, reject, without(command(CommandKind::Reject), comment())))),
        (
            "AcceptAnswer",
            Scoped::Denied(rpc_call!(
                c,
                accept_answer,
                without(
                    command(CommandKind::AcceptAnswer),
                    pb::AcceptAnswerRequest { rating: 9, ..Default::default() }
                )
            )),
        ),
        (
            "RejectAnswer",
            Scoped::Denied(rpc_call!(c, reject_answer, without(command(CommandKind::RejectAnswer), comment()))),
        ),
        ("StopReview", Scoped::Denied(rpc_call!(c, stop_review, without(command(CommandKind::StopReview), comment())))),
        (
            "OpenIncident",
            Scoped::Denied(rpc_call!(c, open_incident, without(&openers, pb::OpenIncidentRequest::default()))),
        ),
        (
            "ListIncidents",
            Scoped::Denied(rpc_call!(c, list_incidents, without(&readers, pb::ListIncidentsRequest::default()))),
        ),
        ("EscalateIncident", Scoped::Denied(rpc_call!(c, escalate_incident, without(&handlers, step())))),
        (
            "RequestIncidentInformation",
            Scoped::Denied(rpc_call!(c, request_incident_information, without(&handlers, step()))),
        ),
        (
            "IncidentInformationReceived",
            Scoped::Denied(rpc_call!(c, incident_information_received, without(&information_senders, step()))),
        ),
        ("ResolveIncident", Scoped::Denied(rpc_call!(c, resolve_incident, without(&handlers, step())))),
        (
            "ConfirmIncidentResult",
            Scoped::Denied(rpc_call!(c, confirm_incident_result, without(&[Role::Applicant], step()))),
        ),
        (
            "RejectIncidentResult",
            Scoped::Denied(rpc_call!(c, reject_incident_result, without(&[Role::Applicant], step()))),
        ),
    ];
    testing::assert_every_method_scoped("TicketingService", rows).await;
    app.stop().await;
}

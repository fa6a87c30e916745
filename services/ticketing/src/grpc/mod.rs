//! The cabinet over gRPC: the list with its folder counts, the card and its history, the staff
//! directory, answer templates, reminders, reports, the workflow commands and incidents. This
//! layer checks roles and the caller's organization (or, for applicants, their own appeal) before
//! it reads a request's body; the workflow decides legality. Every failure is an [`ApiError`],
//! turned into a gRPC status by the platform.

mod commands;
mod incidents;
mod preview;
mod reports;
mod wire;

use pos_platform::audit;
use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::db::{Db, to_micros};
use pos_platform::error::FieldViolations;
use pos_platform::{ApiError, ApiResult};
use pos_proto::v1 as pb;
use pos_proto::v1::ticketing_service_server::TicketingService;
use tonic::{Request, Response, Status};

use crate::folder::Folder;
use crate::store::listing::{self, Cursor, Filters, ListQuery, Scope, SortKey};
use crate::store::tickets::{self, Ticket};
use crate::store::{history, reminders, staff, templates};
use crate::template;
use crate::workflow::{Command, CommandKind, Rating};

const DEFAULT_PAGE_SIZE: i32 = 50;
const MAX_PAGE_SIZE: i32 = 500;

/// Who may open the cabinet: its staff, and systems.
const CABINET_ROLES: [Role; 7] =
    [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::OrgAdmin, Role::Approver, Role::System];
/// Who may read tickets: the cabinet, and applicants (their own appeals only).
const READER_ROLES: [Role; 8] = [
    Role::Coordinator,
    Role::Executor,
    Role::Head,
    Role::Curator,
    Role::OrgAdmin,
    Role::Approver,
    Role::System,
    Role::Applicant,
];
/// The staff directory: kept by the org admin (and the curator, who reassigns roles).
const STAFF_WRITERS: [Role; 2] = [Role::OrgAdmin, Role::Curator];
const TEMPLATE_WRITERS: [Role; 3] = [Role::OrgAdmin, Role::Head, Role::Coordinator];

pub use incidents::{AttachmentClaims, Directory};
pub use reports::Supervision;

pub struct Ticketing {
    db: Db,
    /// Intake, which checks and records the files incidents and answers name; without it such
    /// commands are refused as unavailable.
    attachments: Option<AttachmentClaims>,
    /// Routing's directory, which names the federal body a supervisor's escalation is addressed
    /// to; without it such escalations are refused as unavailable.
    directory: Option<Directory>,
    /// Routing's directory again, for the organizations under a curator's (reports); without
    /// it a curator's report covers their own organization only.
    supervision: Option<Supervision>,
}

impl Ticketing {
    pub fn new(db: Db) -> Ticketing {
        Ticketing { db, attachments: None, directory: None, supervision: None }
    }

    pub fn with_supervision(mut self, supervision: Supervision) -> Ticketing {
        self.supervision = Some(supervision);
        self
    }

    pub fn with_directory(mut self, directory: Directory) -> Ticketing {
        self.directory = Some(directory);
        self
    }

    pub fn with_attachments(mut self, attachments: AttachmentClaims) -> Ticketing {
        self.attachments = Some(attachments);
        self
    }
}

/// A caller acting as an applicant: no cabinet role, so only their own appeals.
fn is_applicant_only(caller: &Caller) -> bool {
    caller.has(Role::Applicant) && !caller.has_any(&CABINET_ROLES)
}

/// Whether the caller may see this ticket: the organization's staff (or a system), or the
/// applicant whose appeal it is.
fn check_access(caller: &Caller, ticket: &Ticket, method: &str) -> ApiResult<()> {
    if is_applicant_only(caller) {
        return require_own_appeal(caller, ticket, method);
    }
    caller.require_organization(&ticket.organization_id, method)
}

fn require_own_appeal(caller: &Caller, ticket: &Ticket, method: &str) -> ApiResult<()> {
    if !ticket.applicant_account_id.is_empty() && ticket.applicant_account_id == caller.subject {
        return Ok(());
    }
    tracing::warn!(
        target: "security",
        subject = %caller.subject,
        ticket_id = %ticket.id,
        %method,
        "access denied to another applicant's appeal"
    );
    Err(ApiError::denied("OTHER_APPLICANT", "the appeal belongs to another applicant"))
}

/// The organization a request names, or the caller's own; checked against the caller.
fn organization_of(caller: &Caller, requested: &str, method: &str) -> ApiResult<String> {
    let organization_id = if requested.is_empty() { caller.organization_id.clone() } else { requested.to_owned() };
    if organization_id.is_empty() {
        return Err(ApiError::invalid("organization_id", "required for callers without an organization"));
    }
    caller.require_organization(&organization_id, method)?;
    Ok(organization_id)
}

fn timestamp(value: Option<&prost_types::Timestamp>, field: &str, violations: &mut FieldViolations) -> Option<i64> {
    let value = value?;
    match pos_proto::time::from_proto(value) {
        Some(at) => Some(to_micros(at)),
        None => {
            violations.add(field, "not a valid timestamp");
            None
        }
    }
}

impl Ticketing {
    async fn load(&self, ticket_id: &str) -> ApiResult<Ticket> {
        if ticket_id.is_empty() {
            return Err(ApiError::invalid("ticket_id", "required"));
        }
        tickets::get(&self.db, ticket_id).await?.ok_or_else(|| ApiError::not_found("no such ticket"))
    }

    async fn find(&self, request: pb::GetTicketRequest) -> ApiResult<Ticket> {
        use pb::get_ticket_request::Key;
        let found = match request.key {
            Some(Key::TicketId(id)) if !id.is_empty() => tickets::get(&self.db, &id).await?,
            Some(Key::AppealId(id)) if !id.is_empty() => tickets::get_by_appeal(&self.db, &id).await?,
            Some(Key::TicketId(_) | Key::AppealId(_)) | None => {
                return Err(ApiError::invalid("key", "give ticket_id or appeal_id"));
            }
        };
        found.ok_or_else(|| ApiError::not_found("no such ticket"))
    }

    /// Fills a template for this ticket; the template must be the ticket's organization's.
    async fn render(&self, template_id: &str, ticket: &Ticket, caller: &Caller) -> ApiResult<String> {
        let template = templates::get(&self.db, template_id)
            .await?
            .filter(|t| t.organization_id == ticket.organization_id)
            .ok_or_else(|| ApiError::invalid("template_id", "no such template in the ticket's organization"))?;
        let user_name = preview::user_name(&self.db, &ticket.organization_id, caller).await?;
        template::render(&template.body, |name| preview::ticket_value(ticket, &user_name, name)).map_err(|e| {
            ApiError::failed_precondition("TEMPLATE_BROKEN", format!("the template no longer renders: {e}"))
        })
    }
}

#[tonic::async_trait]
impl TicketingService for Ticketing {
    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/ListTickets";
        let caller = authorize(&request, METHOD, &READER_ROLES)?;
        let request = request.into_inner();
        let scope = if is_applicant_only(&caller) {
            Scope::Applicant(caller.subject.clone())
        } else {
            Scope::Organization(organization_of(&caller, &request.organization_id, METHOD)?)
        };
        let mut violations = FieldViolations::new();
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                violations.add("page_size", format!("must be between 1 and {MAX_PAGE_SIZE}"));
                DEFAULT_PAGE_SIZE
            }
        };
        let folder = match pb::Folder::try_from(request.folder) {
            Ok(folder) => Folder::from_proto(folder),
            Err(_) => {
                violations.add("folder", "unknown folder");
                None
            }
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            let cursor = Cursor::decode(&request.page_token);
            if cursor.is_none() {
                violations.add("page_token", "not a token returned by ListTickets");
            }
            cursor
        };
        let (sort, descending) = match pb::SortOrder::try_from(request.sort) {
            Ok(pb::SortOrder::Unspecified | pb::SortOrder::ReceivedDesc) => (SortKey::Received, true),
            Ok(pb::SortOrder::ReceivedAsc) => (SortKey::Received, false),
            Ok(pb::SortOrder::DueAsc) => (SortKey::Due, false),
            Ok(pb::SortOrder::DueDesc) => (SortKey::Due, true),
            Err(_) => {
                violations.add("sort", "unknown sort order");
                (SortKey::Received, true)
            }
        };
        let due_from = timestamp(request.due_from.as_ref(), "due_from", &mut violations);
        let due_to = timestamp(request.due_to.as_ref(), "due_to", &mut violations);
        if request.sources.iter().any(|s| pb::Source::try_from(*s).is_err()) {
            violations.add("sources", "unknown source");
        }
        for (field, values) in [("category_ids", &request.category_ids), ("fact_ids", &request.fact_ids)] {
            if values.len() > 100 {
                violations.add(field, "at most 100 values");
            }
        }
        violations.into_result()?;
        let non_empty = |s: String| (!s.trim().is_empty()).then_some(s);
        let filters = Filters {
            folder,
            fast_track_only: request.fast_track_only,
            delegated_only: request.delegated_only,
            overdue_only: request.overdue_only,
            incident_open_only: request.incident_open_only,
            due_from,
            due_to,
            sources: request.sources,
            category_ids: request.category_ids,
            fact_ids: request.fact_ids,
            region_code: non_empty(request.region_code),
            text: non_empty(request.text),
        };
        let query = ListQuery { scope, filters, sort, descending, after, limit: i64::from(page_size) };
        let (tickets, next) = listing::page(&self.db, &query).await.map_err(ApiError::Db)?;
        // The counts cost a pass over the cabinet; the cabinet shows them with the first page, so
        // following pages skip them, and so does a caller that asks for the cabinet's own apart.
        let counts = if query.after.is_none() && !request.without_folder_counts {
            listing::folder_counts(&self.db, &query.scope, &query.filters).await.map_err(ApiError::Db)?
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::ListTicketsResponse {
            tickets: tickets.iter().map(|ticket| wire::ticket_for(&caller, ticket)).collect(),
            next_page_token: next.map(|c| c.encode()).unwrap_or_default(),
            folder_counts: counts
                .into_iter()
                .map(|(folder, count)| pb::FolderCount { folder: folder.to_proto() as i32, count })
                .collect(),
        }))
    }

    async fn get_ticket(&self, request: Request<pb::GetTicketRequest>) -> Result<Response<pb::Ticket>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/GetTicket";
        let caller = authorize(&request, METHOD, &READER_ROLES)?;
        let ticket = self.find(request.into_inner()).await?;
        check_access(&caller, &ticket, METHOD)?;
        Ok(Response::new(wire::ticket_for(&caller, &ticket)))
    }

    async fn get_ticket_history(
        &self,
        request: Request<pb::GetTicketRequest>,
    ) -> Result<Response<pb::TicketHistory>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/GetTicketHistory";
        let caller = authorize(&request, METHOD, &READER_ROLES)?;
        let ticket = self.find(request.into_inner()).await?;
        check_access(&caller, &ticket, METHOD)?;
        let entries = history::of_ticket(&self.db, &ticket.id).await.map_err(ApiError::Db)?;
        Ok(Response::new(pb::TicketHistory {
            ticket_id: ticket.id,
            entries: entries.into_iter().map(|entry| wire::history_entry_for(&caller, entry)).collect(),
        }))
    }

    async fn list_staff(
        &self,
        request: Request<pb::ListStaffRequest>,
    ) -> Result<Response<pb::ListStaffResponse>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/ListStaff";
        let caller = authorize(&request, METHOD, &CABINET_ROLES)?;
        let request = request.into_inner();
        let organization_id = organization_of(&caller, &request.organization_id, METHOD)?;
        let role = if request.role.is_empty() {
            None
        } else {
            Some(request.role.parse::<Role>().map_err(|e| ApiError::invalid("role", e))?)
        };
        let staff = staff::list(&self.db, &organization_id, role).await.map_err(ApiError::Db)?;
        Ok(Response::new(pb::ListStaffResponse { staff: staff.into_iter().map(wire::staff_member).collect() }))
    }

    async fn upsert_staff(&self, request: Request<pb::StaffMember>) -> Result<Response<pb::StaffMember>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/UpsertStaff";
        let caller = authorize(&request, METHOD, &STAFF_WRITERS)?;
        let request = request.into_inner();
        let organization_id = organization_of(&caller, &request.organization_id, METHOD)?;
        let mut violations = FieldViolations::new();
        if request.subject.trim().is_empty() {
            violations.add("subject", "required");
        }
        if request.full_name.trim().is_empty() {
            violations.add("full_name", "required");
        }
        let mut roles = Vec::new();
        for name in &request.roles {
            match name.parse::<Role>() {
                Ok(role) if Role::STAFF.contains(&role) => roles.push(role),
                Ok(_) | Err(_) => violations.add("roles", format!("{name:?} is not a cabinet role")),
            }
        }
        violations.into_result()?;
        roles.sort_by_key(|r| r.as_str());
        roles.dedup();
        let member = staff::StaffMember {
            organization_id,
            subject: request.subject.trim().to_owned(),
            full_name: request.full_name.trim().to_owned(),
            email: request.email.trim().to_owned(),
            roles,
            active: request.active,
        };
        let mut tx = self.db.begin().await.map_err(ApiError::Db)?;
        let previous = staff::save(&mut tx, &member).await.map_err(ApiError::Db)?;
        let names = |roles: &[Role]| roles.iter().map(|role| role.as_str()).collect::<Vec<_>>();
        // Roles and the switch, not names or addresses: the trail keeps no personal data.
        let details = audit::json!({
            "created": previous.is_none(),
            "roles_before": previous.as_ref().map(|p| names(&p.roles)).unwrap_or_default(),
            "roles_after": names(&member.roles),
            "active_before": previous.as_ref().map(|p| p.active),
            "active_after": member.active,
        });
        let organization = member.organization_id.as_str();
        audit::record(&mut tx, &caller, audit::Kind::StaffChanged, METHOD, organization, &member.subject, details)
            .await
            .map_err(ApiError::Db)?;
        tx.commit().await.map_err(ApiError::Db)?;
        tracing::info!(organization_id = %member.organization_id, subject = %member.subject, "staff member saved");
        Ok(Response::new(wire::staff_member(member)))
    }

    async fn save_answer_template(
        &self,
        request: Request<pb::AnswerTemplate>,
    ) -> Result<Response<pb::AnswerTemplate>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/SaveAnswerTemplate";
        let caller = authorize(&request, METHOD, &TEMPLATE_WRITERS)?;
        let request = request.into_inner();
        let organization_id = organization_of(&caller, &request.organization_id, METHOD)?;
        let mut violations = FieldViolations::new();
        if request.name.trim().is_empty() {
            violations.add("name", "required");
        }
        if let Err(error) = template::check(&request.body) {
            violations.add("body", error.to_string());
        }
        violations.into_result()?;
        let saved = templates::save(&self.db, &organization_id, request.name.trim(), &request.body)
            .await
            .map_err(ApiError::Db)?;
        Ok(Response::new(wire::template(saved)))
    }

    async fn list_answer_templates(
        &self,
        request: Request<pb::ListAnswerTemplatesRequest>,
    ) -> Result<Response<pb::ListAnswerTemplatesResponse>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/ListAnswerTemplates";
        let caller = authorize(&request, METHOD, &CABINET_ROLES)?;
        let organization_id = organization_of(&caller, &request.get_ref().organization_id, METHOD)?;
        let templates = templates::list(&self.db, &organization_id).await.map_err(ApiError::Db)?;
        Ok(Response::new(pb::ListAnswerTemplatesResponse {
            templates: templates.into_iter().map(wire::template).collect(),
        }))
    }

    async fn preview_answer_template(
        &self,
        request: Request<pb::PreviewAnswerTemplateRequest>,
    ) -> Result<Response<pb::PreviewAnswerTemplateResponse>, Status> {
        Ok(Response::new(self.preview(request).await?))
    }

    async fn list_reminders(
        &self,
        request: Request<pb::ListRemindersRequest>,
    ) -> Result<Response<pb::ListRemindersResponse>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/ListReminders";
        let caller = authorize(&request, METHOD, &CABINET_ROLES)?;
        let request = request.into_inner();
        let organization_id = organization_of(&caller, &request.organization_id, METHOD)?;
        let mut violations = FieldViolations::new();
        let until = timestamp(request.due_before.as_ref(), "due_before", &mut violations).unwrap_or(i64::MAX);
        violations.into_result()?;
        let reminders = reminders::due(&self.db, &organization_id, until).await.map_err(ApiError::Db)?;
        Ok(Response::new(pb::ListRemindersResponse {
            reminders: reminders
                .into_iter()
                .map(|r| pb::Reminder {
                    ticket_id: r.ticket_id,
                    appeal_id: r.appeal_id,
                    number: r.number,
                    due_at: Some(pos_proto::time::to_proto(r.due_at)),
                })
                .collect(),
        }))
    }

    async fn get_report(&self, request: Request<pb::GetReportRequest>) -> Result<Response<pb::Report>, Status> {
        Ok(Response::new(self.report(request).await?))
    }

    // The workflow: each rpc turns its request into its command (see `commands.rs`).

    async fn take_in_work(&self, request: Request<pb::TakeInWorkRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::TakeInWork, |_| Ok(Command::TakeInWork)).await
    }

    async fn assign_executor(
        &self,
        request: Request<pb::AssignExecutorRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::AssignExecutor, |body| {
            let execution_due = match &body.execution_due {
                None => None,
                Some(due) => Some(
                    pos_proto::time::from_proto(due)
                        .ok_or_else(|| ApiError::invalid("execution_due", "not a valid timestamp"))?,
                ),
            };
            Ok(Command::AssignExecutor { executor_id: body.executor_id, execution_due })
        })
        .await
    }

    async fn hand_over(&self, request: Request<pb::HandOverRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::HandOver, |body| Ok(Command::HandOver { executor_id: body.executor_id })).await
    }

    async fn return_to_coordinator(
        &self,
        request: Request<pb::CommentRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::ReturnToCoordinator, |body| {
            Ok(Command::ReturnToCoordinator { comment: body.comment })
        })
        .await
    }

    async fn prepare_answer(&self, request: Request<pb::PrepareAnswerRequest>) -> Result<Response<pb::Ticket>, Status> {
        // Not `run`: a template is filled for this ticket and this caller before the command exists.
        let admitted = self.admit(&request, CommandKind::PrepareAnswer).await?;
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        let mut answer = wire::answer_from_proto(body.answer, "answer")?;
        if !body.template_id.is_empty() {
            answer.text = self.render(&body.template_id, &admitted.ticket, &admitted.caller).await?;
        }
        let claim = incidents::Claim {
            appeal_id: &admitted.ticket.appeal_id,
            kind: pb::AttachmentReferenceKind::Answer,
            object_id: &admitted.ticket.id,
            field: "answer.attachment_ids",
        };
        self.claim_attachments(&metadata, &answer.attachment_ids, claim).await?;
        Ok(Response::new(self.execute(admitted, body.expected_version, Command::PrepareAnswer { answer }).await?))
    }

    async fn request_information(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::RequestInformation, |body| {
            Ok(Command::RequestInformation { comment: body.comment })
        })
        .await
    }

    async fn information_received(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        // Not `run`: the files the applicant sends with the information are intake's to check.
        let admitted = self.admit(&request, CommandKind::InformationReceived).await?;
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        let claim = incidents::Claim {
            appeal_id: &admitted.ticket.appeal_id,
            kind: pb::AttachmentReferenceKind::Information,
            object_id: &admitted.ticket.id,
            field: "attachment_ids",
        };
        self.claim_attachments(&metadata, &body.attachment_ids, claim).await?;
        let command = Command::InformationReceived { comment: body.comment };
        Ok(Response::new(
            self.execute_with_files(admitted, body.expected_version, command, &body.attachment_ids).await?,
        ))
    }

    async fn send_for_agreement(&self, request: Request<pb::VersionRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::SendForAgreement, |_| Ok(Command::SendForAgreement)).await
    }

    async fn send_for_approval(&self, request: Request<pb::VersionRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::SendForApproval, |_| Ok(Command::SendForApproval)).await
    }

    async fn agree(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::Agree, |body| Ok(Command::Agree { comment: body.comment })).await
    }

    async fn return_for_rework(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::ReturnForRework, |body| Ok(Command::ReturnForRework { comment: body.comment }))
            .await
    }

    async fn approve(&self, request: Request<pb::ApproveRequest>) -> Result<Response<pb::Ticket>, Status> {
        // Not `run`: the head's edit may name files, which intake checks first.
        let admitted = self.admit(&request, CommandKind::Approve).await?;
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        let edited = match body.edited {
            None => None,
            Some(edited) => Some(wire::answer_from_proto(Some(edited), "edited")?),
        };
        if let Some(edited) = &edited {
            let claim = incidents::Claim {
                appeal_id: &admitted.ticket.appeal_id,
                kind: pb::AttachmentReferenceKind::Answer,
                object_id: &admitted.ticket.id,
                field: "edited.attachment_ids",
            };
            self.claim_attachments(&metadata, &edited.attachment_ids, claim).await?;
        }
        Ok(Response::new(self.execute(admitted, body.expected_version, Command::Approve { edited }).await?))
    }

    async fn redirect(&self, request: Request<pb::RedirectRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::Redirect, |body| {
            Ok(Command::Redirect { to_organization_id: body.to_organization_id, reason: body.reason })
        })
        .await
    }

    async fn return_to_coordination(
        &self,
        request: Request<pb::CommentRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::ReturnToCoordination, |body| {
            Ok(Command::ReturnToCoordination { reason: body.comment })
        })
        .await
    }

    async fn reject(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::Reject, |body| Ok(Command::Reject { reason: body.comment })).await
    }

    async fn accept_answer(&self, request: Request<pb::AcceptAnswerRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::AcceptAnswer, |body| {
            let rating = Rating::new(body.rating).ok_or_else(|| ApiError::invalid("rating", "from 1 to 5"))?;
            Ok(Command::AcceptAnswer { rating })
        })
        .await
    }

    async fn reject_answer(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::RejectAnswer, |body| Ok(Command::RejectAnswer { comment: body.comment })).await
    }

    async fn stop_review(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        self.run(request, CommandKind::StopReview, |body| Ok(Command::StopReview { comment: body.comment })).await
    }

    // Incidents (see `incidents.rs`).

    async fn open_incident(&self, request: Request<pb::OpenIncidentRequest>) -> Result<Response<pb::Incident>, Status> {
        Ok(Response::new(self.open(request).await?))
    }

    async fn list_incidents(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn escalate_incident(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "EscalateIncident", |_| crate::incident::Command::EscalateToSecondLine).await
    }

    async fn request_incident_information(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "RequestIncidentInformation", |comment| {
            crate::incident::Command::RequestInformation { comment }
        })
        .await
    }

    async fn incident_information_received(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "IncidentInformationReceived", |comment| {
            crate::incident::Command::InformationReceived { comment }
        })
        .await
    }

    async fn resolve_incident(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "ResolveIncident", |resolution| crate::incident::Command::Resolve { resolution })
            .await
    }

    async fn confirm_incident_result(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "ConfirmIncidentResult", |_| crate::incident::Command::Confirm).await
    }

    async fn reject_incident_result(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "RejectIncidentResult", |reason| crate::incident::Command::RejectResult {
            reason,
        })
        .await
    }
}

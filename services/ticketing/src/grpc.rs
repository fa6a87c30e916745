//! The cabinet over gRPC: the list with its folder counts, the card and its history, the staff
//! directory, answer templates, and the workflow commands. This layer checks roles and the
//! caller's organization (or, for applicants, their own appeal); the workflow decides legality.

use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::db::{Db, to_micros};
use pos_platform::grpc::{FieldViolations, internal, invalid_field};
use pos_platform::{Envelope, outbox};
use pos_proto::v1 as pb;
use pos_proto::v1::events as ev;
use pos_proto::v1::ticketing_service_server::TicketingService;
use tonic::{Request, Response, Status};

use crate::folder::Folder;
use crate::store::{self, ApplyError, Cursor, Filters, ListQuery, Scope, SortKey};
use crate::workflow::{self, Actor, Answer, AnswerKind, Command, Rating, Refusal, Transition};
use crate::{incident, template};

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
/// Who escalates a ticket: its organization's working roles.
const INCIDENT_OPENERS: [Role; 4] = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator];
/// Who works an incident: the organization's staff recording the line's progress, or the
/// situation center's ITSM / the supervisor's system.
const INCIDENT_HANDLERS: [Role; 5] = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::System];
const TEMPLATE_WRITERS: [Role; 3] = [Role::OrgAdmin, Role::Head, Role::Coordinator];

pub struct Ticketing {
    db: Db,
}

impl Ticketing {
    pub fn new(db: Db) -> Ticketing {
        Ticketing { db }
    }
}

/// A caller acting as an applicant: no cabinet role, so only their own appeals.
fn is_applicant_only(caller: &Caller) -> bool {
    caller.has(Role::Applicant) && !caller.has_any(&CABINET_ROLES)
}

/// Whether the caller may see this ticket: the organization's staff (or a system), or the
/// applicant whose appeal it is.
fn check_access(caller: &Caller, ticket: &store::Ticket, method: &str) -> Result<(), Status> {
    if is_applicant_only(caller) {
        return require_own_appeal(caller, ticket, method);
    }
    caller.require_organization(&ticket.organization_id, method)
}

fn require_own_appeal(caller: &Caller, ticket: &store::Ticket, method: &str) -> Result<(), Status> {
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
    Err(Status::permission_denied("the appeal belongs to another applicant"))
}

fn organization_or_own(caller: &Caller, requested: &str) -> Result<String, Status> {
    let organization_id = if requested.is_empty() { caller.organization_id.clone() } else { requested.to_owned() };
    if organization_id.is_empty() {
        return Err(invalid_field("organization_id", "required for callers without an organization"));
    }
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

fn answer_from_proto(answer: Option<pb::Answer>, field: &str) -> Result<Answer, Status> {
    let answer = answer.ok_or_else(|| invalid_field(field, "the answer is required"))?;
    let kind =
        match ev::AnswerType::try_from(answer.r#type) {
            Ok(ev::AnswerType::Resolved) => AnswerKind::Resolved,
            Ok(ev::AnswerType::NotResolved) => AnswerKind::NotResolved,
            Ok(ev::AnswerType::Postponed) => AnswerKind::Postponed {
                follow_up_at: answer.follow_up_at.as_ref().and_then(pos_proto::time::from_proto).ok_or_else(|| {
                    invalid_field(&format!("{field}.follow_up_at"), "a postponed answer needs its date")
                })?,
            },
            Ok(ev::AnswerType::Rejected) => {
                if answer.basis.trim().is_empty() {
                    return Err(invalid_field(&format!("{field}.basis"), "a rejected answer needs its basis"));
                }
                AnswerKind::Rejected { basis: answer.basis }
            }
            Ok(ev::AnswerType::Unspecified) | Err(_) => {
                return Err(invalid_field(&format!("{field}.type"), "resolved, not resolved, postponed or rejected"));
            }
        };
    Ok(Answer { kind, text: answer.text, attachment_ids: answer.attachment_ids })
}

fn refusal_status(refusal: &Refusal, caller: &Caller, method: &str) -> Status {
    match refusal {
        Refusal::WrongStage { .. } => Status::failed_precondition(refusal.to_string()),
        Refusal::NotAllowed { .. } | Refusal::NotAssignee => {
            tracing::warn!(target: "security", subject = %caller.subject, %method, "workflow command refused");
            Status::permission_denied(refusal.to_string())
        }
        Refusal::Invalid(_) => Status::invalid_argument(refusal.to_string()),
    }
}

impl Ticketing {
    async fn load(&self, ticket_id: &str) -> Result<store::Ticket, Status> {
        if ticket_id.is_empty() {
            return Err(invalid_field("ticket_id", "required"));
        }
        store::get(&self.db, ticket_id)
            .await
            .map_err(|e| internal("failed to read the ticket", e))?
            .ok_or_else(|| Status::not_found("no such ticket"))
    }

    /// Runs one workflow command: roles, then the ticket's organization (or the applicant's own
    /// appeal), then the versioned transition and its events in one transaction.
    async fn run<T>(
        &self,
        request: &Request<T>,
        method: &str,
        ticket_id: &str,
        expected_version: i64,
        command: Command,
    ) -> Result<Response<pb::Ticket>, Status> {
        let caller = authorize(request, method, command.roles())?;
        let ticket = self.load(ticket_id).await?;
        check_access(&caller, &ticket, method)?;
        // Assignment targets must be the organization's own active executors.
        if let Command::AssignExecutor { executor_id, .. } | Command::HandOver { executor_id } = &command {
            let known = store::is_active_staff(&self.db, &ticket.organization_id, executor_id, Role::Executor)
                .await
                .map_err(|e| internal("failed to read the staff directory", e))?;
            if !known {
                return Err(invalid_field("executor_id", "not an active executor of the ticket's organization"));
            }
        }
        let roles: Vec<Role> = caller.roles.iter().copied().collect();
        let actor = Actor { subject: &caller.subject, roles: &roles };
        let mut tx = self.db.begin().await.map_err(|e| internal("failed to start a transaction", e))?;
        let (after, transition) = match store::apply(&mut tx, ticket_id, expected_version, &caller.subject, |t| {
            workflow::decide(&t.snapshot(), command, actor)
        })
        .await
        {
            Ok(done) => done,
            Err(ApplyError::NotFound) => return Err(Status::not_found("no such ticket")),
            Err(ApplyError::StaleVersion { current }) => {
                tracing::info!(%ticket_id, expected_version, current, %method, "stale command refused");
                return Err(Status::failed_precondition(format!(
                    "the ticket changed: version {current}, the command expected {expected_version}"
                )));
            }
            Err(ApplyError::Workflow(refusal)) => return Err(refusal_status(&refusal, &caller, method)),
            Err(ApplyError::Db(e)) => return Err(internal("failed to store the command", e)),
        };
        publish(&mut tx, &after, &transition, &caller.subject).await.map_err(|e| internal("failed to enqueue", e))?;
        tx.commit().await.map_err(|e| internal("failed to commit the command", e))?;
        self.db.wake_outbox();
        tracing::info!(
            ticket_id = %after.id,
            from = transition.from.as_str(),
            to = transition.to.as_str(),
            version = after.version,
            "workflow command applied"
        );
        Ok(Response::new(after.to_proto()))
    }
}

/// Every transition's `ticket.status_changed`, plus the event its action implies.
async fn publish(tx: &mut pos_platform::Tx, ticket: &store::Ticket, t: &Transition, actor: &str) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let envelope = |e: Envelope| e.with_appeal(&ticket.appeal_id);
    let changed = ev::TicketStatusChanged {
        ticket_id: ticket.id.clone(),
        appeal_id: ticket.appeal_id.clone(),
        number: ticket.number,
        organization_id: ticket.organization_id.clone(),
        from_folder: t.from.folder().to_proto() as i32,
        to_folder: t.to.folder().to_proto() as i32,
        status: t.to.as_str().to_owned(),
        actor: actor.to_owned(),
        at: Some(pos_proto::time::to_proto(now)),
        region_code: ticket.region_code.clone(),
        action: t.action as i32,
        assignee_id: ticket.assignee_id.clone(),
        execution_due: t.execution_due.map(pos_proto::time::to_proto),
        comment: t.comment.clone(),
        rating: t.rating.map(Rating::get).unwrap_or_default(),
        time_zone: ticket.time_zone.clone(),
    };
    outbox::enqueue(tx, &envelope(Envelope::new(&changed, &ticket.region_code))).await?;
    if let Some(answer) = &t.approved {
        let follow_up_at = match &answer.kind {
            AnswerKind::Postponed { follow_up_at } => Some(pos_proto::time::to_proto(*follow_up_at)),
            _ => None,
        };
        let approved = ev::TicketAnswerApproved {
            ticket_id: ticket.id.clone(),
            appeal_id: ticket.appeal_id.clone(),
            number: ticket.number,
            organization_id: ticket.organization_id.clone(),
            region_code: ticket.region_code.clone(),
            answer_type: answer.kind.to_proto() as i32,
            text: answer.text.clone(),
            attachment_ids: answer.attachment_ids.clone(),
            approved_by: actor.to_owned(),
            approved_at: Some(pos_proto::time::to_proto(now)),
            follow_up_at,
        };
        outbox::enqueue(tx, &envelope(Envelope::new(&approved, &ticket.region_code))).await?;
    }
    if t.reopens {
        let reopened = ev::TicketReopened {
            ticket_id: ticket.id.clone(),
            appeal_id: ticket.appeal_id.clone(),
            number: ticket.number,
            organization_id: ticket.organization_id.clone(),
            region_code: ticket.region_code.clone(),
            time_zone: ticket.time_zone.clone(),
            comment: t.comment.clone(),
            review_round: ticket.review_round,
            reopened_at: Some(pos_proto::time::to_proto(now)),
        };
        outbox::enqueue(tx, &envelope(Envelope::new(&reopened, &ticket.region_code))).await?;
    }
    if let Some(to) = &t.reroute_to {
        let reroute = ev::TicketRerouteRequested {
            ticket_id: ticket.id.clone(),
            appeal_id: ticket.appeal_id.clone(),
            region_code: ticket.region_code.clone(),
            from_organization_id: ticket.organization_id.clone(),
            to_organization_id: to.clone(),
            reason: t.comment.clone(),
            actor: actor.to_owned(),
            requested_at: Some(pos_proto::time::to_proto(now)),
        };
        outbox::enqueue(tx, &envelope(Envelope::new(&reroute, &ticket.region_code))).await?;
    }
    Ok(())
}

fn comment_command(method: &str, comment: String) -> Command {
    match method {
        "ReturnToCoordinator" => Command::ReturnToCoordinator { comment },
        "Agree" => Command::Agree { comment },
        "ReturnForRework" => Command::ReturnForRework { comment },
        "ReturnToCoordination" => Command::ReturnToCoordination { reason: comment },
        "Reject" => Command::Reject { reason: comment },
        "RejectAnswer" => Command::RejectAnswer { comment },
        "RequestInformation" => Command::RequestInformation { comment },
        "InformationReceived" => Command::InformationReceived { comment },
        _ => Command::StopReview { comment },
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
        let mut violations = FieldViolations::new();
        let scope = if is_applicant_only(&caller) {
            Scope::Applicant(caller.subject.clone())
        } else {
            let organization_id =
                if request.organization_id.is_empty() { &caller.organization_id } else { &request.organization_id };
            if organization_id.is_empty() {
                violations.add("organization_id", "required for callers without an organization");
            }
            Scope::Organization(organization_id.clone())
        };
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
        if let Scope::Organization(organization_id) = &scope {
            caller.require_organization(organization_id, METHOD)?;
        }
        let non_empty = |s: String| (!s.trim().is_empty()).then_some(s);
        let filters = Filters {
            folder,
            fast_track_only: request.fast_track_only,
            delegated_only: request.delegated_only,
            overdue_only: request.overdue_only,
            due_from,
            due_to,
            sources: request.sources,
            category_ids: request.category_ids,
            fact_ids: request.fact_ids,
            region_code: non_empty(request.region_code),
            text: non_empty(request.text),
        };
        let query = ListQuery { scope, filters, sort, descending, after, limit: i64::from(page_size) };
        let (tickets, next) = store::list(&self.db, &query).await.map_err(|e| internal("failed to list tickets", e))?;
        // The counts cost a pass over the cabinet; the cabinet shows them with the first page, so
        // following pages skip them.
        let counts = if query.after.is_none() {
            store::folder_counts(&self.db, &query.scope, &query.filters)
                .await
                .map_err(|e| internal("failed to count tickets", e))?
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::ListTicketsResponse {
            tickets: tickets.iter().map(store::Ticket::to_proto).collect(),
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
        Ok(Response::new(ticket.to_proto()))
    }

    async fn get_ticket_history(
        &self,
        request: Request<pb::GetTicketRequest>,
    ) -> Result<Response<pb::TicketHistory>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/GetTicketHistory";
        let caller = authorize(&request, METHOD, &READER_ROLES)?;
        let ticket = self.find(request.into_inner()).await?;
        check_access(&caller, &ticket, METHOD)?;
        let entries = store::history(&self.db, &ticket.id).await.map_err(|e| internal("failed to read history", e))?;
        let folder = |stored: &str| Folder::parse(stored).map(|f| f.to_proto() as i32).unwrap_or_default();
        Ok(Response::new(pb::TicketHistory {
            ticket_id: ticket.id,
            entries: entries
                .into_iter()
                .map(|e| pb::HistoryEntry {
                    seq: e.seq,
                    at: Some(pos_proto::time::to_proto(e.at)),
                    actor: e.actor,
                    action: e.action,
                    from_folder: folder(&e.from_folder),
                    to_folder: folder(&e.to_folder),
                    from_status: e.from_status,
                    to_status: e.to_status,
                    comment: e.comment,
                })
                .collect(),
        }))
    }

    async fn list_staff(
        &self,
        request: Request<pb::ListStaffRequest>,
    ) -> Result<Response<pb::ListStaffResponse>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/ListStaff";
        let caller = authorize(&request, METHOD, &CABINET_ROLES)?;
        let request = request.into_inner();
        let organization_id = organization_or_own(&caller, &request.organization_id)?;
        let role = if request.role.is_empty() {
            None
        } else {
            Some(request.role.parse::<Role>().map_err(|e| invalid_field("role", e))?)
        };
        caller.require_organization(&organization_id, METHOD)?;
        let staff = store::list_staff(&self.db, &organization_id, role)
            .await
            .map_err(|e| internal("failed to read the staff directory", e))?;
        Ok(Response::new(pb::ListStaffResponse { staff: staff.into_iter().map(staff_to_proto).collect() }))
    }

    async fn upsert_staff(&self, request: Request<pb::StaffMember>) -> Result<Response<pb::StaffMember>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/UpsertStaff";
        let caller = authorize(&request, METHOD, &STAFF_WRITERS)?;
        let request = request.into_inner();
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
                _ => violations.add("roles", format!("{name:?} is not a cabinet role")),
            }
        }
        violations.into_result()?;
        let organization_id = organization_or_own(&caller, &request.organization_id)?;
        caller.require_organization(&organization_id, METHOD)?;
        roles.sort_by_key(|r| r.as_str());
        roles.dedup();
        let member = store::StaffMember {
            organization_id,
            subject: request.subject.trim().to_owned(),
            full_name: request.full_name.trim().to_owned(),
            email: request.email.trim().to_owned(),
            roles,
            active: request.active,
        };
        store::upsert_staff(&self.db, &member).await.map_err(|e| internal("failed to save the staff member", e))?;
        tracing::info!(organization_id = %member.organization_id, subject = %member.subject, "staff member saved");
        Ok(Response::new(staff_to_proto(member)))
    }

    async fn save_answer_template(
        &self,
        request: Request<pb::AnswerTemplate>,
    ) -> Result<Response<pb::AnswerTemplate>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/SaveAnswerTemplate";
        let caller = authorize(&request, METHOD, &TEMPLATE_WRITERS)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        if request.name.trim().is_empty() {
            violations.add("name", "required");
        }
        if let Err(error) = template::check(&request.body) {
            violations.add("body", error.to_string());
        }
        violations.into_result()?;
        let organization_id = organization_or_own(&caller, &request.organization_id)?;
        caller.require_organization(&organization_id, METHOD)?;
        let saved = store::save_template(&self.db, &organization_id, request.name.trim(), &request.body)
            .await
            .map_err(|e| internal("failed to save the template", e))?;
        Ok(Response::new(template_to_proto(saved)))
    }

    async fn list_answer_templates(
        &self,
        request: Request<pb::ListAnswerTemplatesRequest>,
    ) -> Result<Response<pb::ListAnswerTemplatesResponse>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/ListAnswerTemplates";
        let caller = authorize(&request, METHOD, &CABINET_ROLES)?;
        let organization_id = organization_or_own(&caller, &request.get_ref().organization_id)?;
        caller.require_organization(&organization_id, METHOD)?;
        let templates = store::list_templates(&self.db, &organization_id)
            .await
            .map_err(|e| internal("failed to read templates", e))?;
        Ok(Response::new(pb::ListAnswerTemplatesResponse {
            templates: templates.into_iter().map(template_to_proto).collect(),
        }))
    }

    async fn list_reminders(
        &self,
        request: Request<pb::ListRemindersRequest>,
    ) -> Result<Response<pb::ListRemindersResponse>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/ListReminders";
        let caller = authorize(&request, METHOD, &CABINET_ROLES)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let until = timestamp(request.due_before.as_ref(), "due_before", &mut violations).unwrap_or(i64::MAX);
        violations.into_result()?;
        let organization_id = organization_or_own(&caller, &request.organization_id)?;
        caller.require_organization(&organization_id, METHOD)?;
        let reminders = store::due_reminders(&self.db, &organization_id, until)
            .await
            .map_err(|e| internal("failed to read reminders", e))?;
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

    async fn take_in_work(&self, request: Request<pb::TakeInWorkRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        self.run(
            &request,
            "pos.v1.TicketingService/TakeInWork",
            &body.ticket_id,
            body.expected_version,
            Command::TakeInWork,
        )
        .await
    }

    async fn assign_executor(
        &self,
        request: Request<pb::AssignExecutorRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let execution_due = match &body.execution_due {
            None => None,
            Some(due) => Some(
                pos_proto::time::from_proto(due)
                    .ok_or_else(|| invalid_field("execution_due", "not a valid timestamp"))?,
            ),
        };
        let command = Command::AssignExecutor { executor_id: body.executor_id, execution_due };
        self.run(&request, "pos.v1.TicketingService/AssignExecutor", &body.ticket_id, body.expected_version, command)
            .await
    }

    async fn hand_over(&self, request: Request<pb::HandOverRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = Command::HandOver { executor_id: body.executor_id };
        self.run(&request, "pos.v1.TicketingService/HandOver", &body.ticket_id, body.expected_version, command).await
    }

    async fn return_to_coordinator(
        &self,
        request: Request<pb::CommentRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = comment_command("ReturnToCoordinator", body.comment);
        self.run(
            &request,
            "pos.v1.TicketingService/ReturnToCoordinator",
            &body.ticket_id,
            body.expected_version,
            command,
        )
        .await
    }

    async fn prepare_answer(&self, request: Request<pb::PrepareAnswerRequest>) -> Result<Response<pb::Ticket>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/PrepareAnswer";
        let body = request.get_ref().clone();
        let mut answer = answer_from_proto(body.answer, "answer")?;
        if !body.template_id.is_empty() {
            let caller = authorize(&request, METHOD, &[Role::Coordinator, Role::Executor])?;
            let ticket = self.load(&body.ticket_id).await?;
            caller.require_organization(&ticket.organization_id, METHOD)?;
            answer.text = self.render(&body.template_id, &ticket, &caller).await?;
        }
        self.run(&request, METHOD, &body.ticket_id, body.expected_version, Command::PrepareAnswer { answer }).await
    }

    async fn request_information(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = comment_command("RequestInformation", body.comment);
        self.run(
            &request,
            "pos.v1.TicketingService/RequestInformation",
            &body.ticket_id,
            body.expected_version,
            command,
        )
        .await
    }

    async fn information_received(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = comment_command("InformationReceived", body.comment);
        self.run(
            &request,
            "pos.v1.TicketingService/InformationReceived",
            &body.ticket_id,
            body.expected_version,
            command,
        )
        .await
    }

    async fn send_for_agreement(&self, request: Request<pb::VersionRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let method = "pos.v1.TicketingService/SendForAgreement";
        self.run(&request, method, &body.ticket_id, body.expected_version, Command::SendForAgreement).await
    }

    async fn send_for_approval(&self, request: Request<pb::VersionRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let method = "pos.v1.TicketingService/SendForApproval";
        self.run(&request, method, &body.ticket_id, body.expected_version, Command::SendForApproval).await
    }

    async fn agree(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = comment_command("Agree", body.comment);
        self.run(&request, "pos.v1.TicketingService/Agree", &body.ticket_id, body.expected_version, command).await
    }
    async fn return_for_rework(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = comment_command("ReturnForRework", body.comment);
        self.run(&request, "pos.v1.TicketingService/ReturnForRework", &body.ticket_id, body.expected_version, command)
            .await
    }

    async fn approve(&self, request: Request<pb::ApproveRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let edited = match body.edited {
            None => None,
            Some(edited) => Some(answer_from_proto(Some(edited), "edited")?),
        };
        let method = "pos.v1.TicketingService/Approve";
        self.run(&request, method, &body.ticket_id, body.expected_version, Command::Approve { edited }).await
    }

    async fn redirect(&self, request: Request<pb::RedirectRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = Command::Redirect { to_organization_id: body.to_organization_id, reason: body.reason };
        self.run(&request, "pos.v1.TicketingService/Redirect", &body.ticket_id, body.expected_version, command).await
    }

    async fn return_to_coordination(
        &self,
        request: Request<pb::CommentRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = comment_command("ReturnToCoordination", body.comment);
        self.run(
            &request,
            "pos.v1.TicketingService/ReturnToCoordination",
            &body.ticket_id,
            body.expected_version,
            command,
        )
        .await
    }
    async fn reject(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = comment_command("Reject", body.comment);
        self.run(&request, "pos.v1.TicketingService/Reject", &body.ticket_id, body.expected_version, command).await
    }

    async fn accept_answer(&self, request: Request<pb::AcceptAnswerRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let rating = Rating::new(body.rating).ok_or_else(|| invalid_field("rating", "from 1 to 5"))?;
        let method = "pos.v1.TicketingService/AcceptAnswer";
        self.run(&request, method, &body.ticket_id, body.expected_version, Command::AcceptAnswer { rating }).await
    }

    async fn reject_answer(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = comment_command("RejectAnswer", body.comment);
        self.run(&request, "pos.v1.TicketingService/RejectAnswer", &body.ticket_id, body.expected_version, command)
            .await
    }
    async fn stop_review(&self, request: Request<pb::CommentRequest>) -> Result<Response<pb::Ticket>, Status> {
        let body = request.get_ref().clone();
        let command = comment_command("StopReview", body.comment);
        self.run(&request, "pos.v1.TicketingService/StopReview", &body.ticket_id, body.expected_version, command).await
    }

    async fn open_incident(&self, request: Request<pb::OpenIncidentRequest>) -> Result<Response<pb::Incident>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/OpenIncident";
        let caller = authorize(&request, METHOD, &INCIDENT_OPENERS)?;
        let body = request.into_inner();
        let mut violations = FieldViolations::new();
        let kind = match pb::IncidentKind::try_from(body.kind) {
            Ok(pb::IncidentKind::SituationCenter) => Some(incident::Kind::SituationCenter),
            Ok(pb::IncidentKind::FederalSupervisor) => Some(incident::Kind::FederalSupervisor),
            _ => {
                violations.add("kind", "situation center or federal supervisor");
                None
            }
        };
        if body.subject.trim().is_empty() {
            violations.add("subject", "required");
        }
        // The situation center's form cannot be filed without these (seed 000).
        if kind == Some(incident::Kind::SituationCenter) {
            for (field, value) in [
                ("service", &body.service),
                ("request_type", &body.request_type),
                ("system", &body.system),
                ("priority", &body.priority),
                ("user_account", &body.user_account),
            ] {
                if value.trim().is_empty() {
                    violations.add(field, "required for a situation-center incident");
                }
            }
        }
        violations.into_result()?;
        let kind = kind.ok_or_else(|| invalid_field("kind", "required"))?;
        let ticket = self.load(&body.ticket_id).await?;
        caller.require_organization(&ticket.organization_id, METHOD)?;
        if ticket.stage.is_final() || !ticket.superseded_by.is_empty() {
            return Err(Status::failed_precondition("the ticket is closed; escalate from the current ticket"));
        }
        let now = chrono::Utc::now();
        let opened = store::Incident {
            id: uuid::Uuid::now_v7().to_string(),
            ticket_id: ticket.id.clone(),
            appeal_id: ticket.appeal_id.clone(),
            organization_id: ticket.organization_id.clone(),
            kind,
            state: incident::State::Open(incident::Line::First),
            service: body.service,
            request_type: body.request_type,
            system: body.system,
            priority: body.priority,
            subject: body.subject,
            attachment_ids: body.attachment_ids,
            user_account: body.user_account,
            external_id: body.external_id,
            resolution: String::new(),
            last_comment: String::new(),
            opened_by: caller.subject.clone(),
            opened_at: now,
            updated_at: now,
            version: 1,
        };
        let mut tx = self.db.begin().await.map_err(|e| internal("failed to start a transaction", e))?;
        store::insert_incident(&mut tx, &opened).await.map_err(|e| internal("failed to store the incident", e))?;
        let comment = format!("{}: {}", kind.as_str(), opened.subject);
        self.ticket_side_effect(&mut tx, &ticket, &caller.subject, "escalated", &comment, ev::TicketAction::Escalated)
            .await?;
        tx.commit().await.map_err(|e| internal("failed to commit the incident", e))?;
        self.db.wake_outbox();
        tracing::info!(incident_id = %opened.id, ticket_id = %ticket.id, kind = kind.as_str(), "incident opened");
        Ok(Response::new(incident_to_proto(opened)))
    }

    async fn list_incidents(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/ListIncidents";
        let caller = authorize(&request, METHOD, &READER_ROLES)?;
        let ticket = self.load(&request.get_ref().ticket_id).await?;
        check_access(&caller, &ticket, METHOD)?;
        let incidents = store::incidents_of_ticket(&self.db, &ticket.id)
            .await
            .map_err(|e| internal("failed to read incidents", e))?;
        Ok(Response::new(pb::ListIncidentsResponse {
            incidents: incidents.into_iter().map(incident_to_proto).collect(),
        }))
    }

    async fn escalate_incident(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "EscalateIncident", |_| incident::Command::EscalateToSecondLine).await
    }

    async fn request_incident_information(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "RequestIncidentInformation", |comment| incident::Command::RequestInformation {
            comment,
        })
        .await
    }

    async fn incident_information_received(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "IncidentInformationReceived", |comment| {
            incident::Command::InformationReceived { comment }
        })
        .await
    }

    async fn resolve_incident(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "ResolveIncident", |resolution| incident::Command::Resolve { resolution }).await
    }

    async fn confirm_incident_result(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "ConfirmIncidentResult", |_| incident::Command::Confirm).await
    }

    async fn reject_incident_result(
        &self,
        request: Request<pb::IncidentCommandRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.incident_command(request, "RejectIncidentResult", |reason| incident::Command::RejectResult { reason })
            .await
    }
}

impl Ticketing {
    /// A ticket history line (and `ticket.status_changed`) for something that happened beside the
    /// workflow: the ticket's stage stays, its version too.
    async fn ticket_side_effect(
        &self,
        tx: &mut pos_platform::Tx,
        ticket: &store::Ticket,
        actor: &str,
        action: &str,
        comment: &str,
        event: ev::TicketAction,
    ) -> Result<(), Status> {
        let line = store::HistoryLine { action, from: Some(ticket.stage), to: ticket.stage, comment };
        store::append_history(tx, &ticket.id, actor, line).await.map_err(|e| internal("failed to write history", e))?;
        let changed = ev::TicketStatusChanged {
            ticket_id: ticket.id.clone(),
            appeal_id: ticket.appeal_id.clone(),
            number: ticket.number,
            organization_id: ticket.organization_id.clone(),
            from_folder: ticket.folder.to_proto() as i32,
            to_folder: ticket.folder.to_proto() as i32,
            status: ticket.stage.as_str().to_owned(),
            actor: actor.to_owned(),
            at: Some(pos_proto::time::to_proto(chrono::Utc::now())),
            region_code: ticket.region_code.clone(),
            action: event as i32,
            assignee_id: ticket.assignee_id.clone(),
            comment: comment.to_owned(),
            time_zone: ticket.time_zone.clone(),
            ..Default::default()
        };
        let envelope = Envelope::new(&changed, &ticket.region_code).with_appeal(&ticket.appeal_id);
        outbox::enqueue(tx, &envelope).await.map_err(|e| internal("failed to enqueue", e))
    }

    /// One incident command: the handling line (staff of the organization, or a system) or the
    /// applicant (their own appeal), then the versioned transition and the ticket's history line.
    async fn incident_command(
        &self,
        request: Request<pb::IncidentCommandRequest>,
        name: &str,
        command: impl FnOnce(String) -> incident::Command,
    ) -> Result<Response<pb::Incident>, Status> {
        let method = format!("pos.v1.TicketingService/{name}");
        let body = request.get_ref().clone();
        let command = command(body.comment.clone());
        let allowed: &[Role] = if command.by_applicant() { &[Role::Applicant] } else { &INCIDENT_HANDLERS };
        let caller = authorize(&request, &method, allowed)?;
        if body.incident_id.is_empty() {
            return Err(invalid_field("incident_id", "required"));
        }
        let found = store::get_incident(&self.db, &body.incident_id)
            .await
            .map_err(|e| internal("failed to read the incident", e))?
            .ok_or_else(|| Status::not_found("no such incident"))?;
        let ticket = self.load(&found.ticket_id).await?;
        if command.by_applicant() {
            require_own_appeal(&caller, &ticket, &method)?;
        } else {
            caller.require_organization(&found.organization_id, &method)?;
        }
        let state = incident::next(found.kind, found.state, &command).map_err(|refusal| match refusal {
            incident::Refusal::WrongState { .. } => Status::failed_precondition(refusal.to_string()),
            incident::Refusal::Invalid(_) => Status::invalid_argument(refusal.to_string()),
        })?;
        let resolution = matches!(command, incident::Command::Resolve { .. }).then_some(body.comment.as_str());
        let mut tx = self.db.begin().await.map_err(|e| internal("failed to start a transaction", e))?;
        let stored =
            store::update_incident(&mut tx, &found.id, body.expected_version, state, resolution, &body.comment)
                .await
                .map_err(|e| internal("failed to store the incident", e))?;
        if !stored {
            return Err(Status::failed_precondition(format!(
                "the incident changed: version {}, the command expected {}",
                found.version, body.expected_version
            )));
        }
        // Waiting for the applicant pauses the answer clock, as for the ticket's own request.
        let event = match command {
            incident::Command::RequestInformation { .. } => ev::TicketAction::InformationRequested,
            incident::Command::InformationReceived { .. } => ev::TicketAction::InformationReceived,
            _ => ev::TicketAction::Escalated,
        };
        let action = format!("incident {}", command.name());
        self.ticket_side_effect(&mut tx, &ticket, &caller.subject, &action, &body.comment, event).await?;
        tx.commit().await.map_err(|e| internal("failed to commit the incident", e))?;
        self.db.wake_outbox();
        tracing::info!(incident_id = %found.id, state = state.as_str(), "incident command applied");
        let updated = store::get_incident(&self.db, &found.id)
            .await
            .map_err(|e| internal("failed to read the incident", e))?
            .ok_or_else(|| Status::not_found("no such incident"))?;
        Ok(Response::new(incident_to_proto(updated)))
    }

    async fn find(&self, request: pb::GetTicketRequest) -> Result<store::Ticket, Status> {
        let found = match request.key {
            Some(pb::get_ticket_request::Key::TicketId(id)) if !id.is_empty() => store::get(&self.db, &id).await,
            Some(pb::get_ticket_request::Key::AppealId(id)) if !id.is_empty() => {
                store::get_by_appeal(&self.db, &id).await
            }
            _ => return Err(invalid_field("key", "give ticket_id or appeal_id")),
        }
        .map_err(|e| internal("failed to read the ticket", e))?;
        found.ok_or_else(|| Status::not_found("no such ticket"))
    }

    /// Fills a template for this ticket; the template must be the ticket's organization's.
    async fn render(&self, template_id: &str, ticket: &store::Ticket, caller: &Caller) -> Result<String, Status> {
        let template = store::get_template(&self.db, template_id)
            .await
            .map_err(|e| internal("failed to read the template", e))?
            .filter(|t| t.organization_id == ticket.organization_id)
            .ok_or_else(|| invalid_field("template_id", "no such template in the ticket's organization"))?;
        let staff = store::list_staff(&self.db, &ticket.organization_id, None)
            .await
            .map_err(|e| internal("failed to read the staff directory", e))?;
        let user_name = staff
            .into_iter()
            .find(|m| m.subject == caller.subject)
            .map(|m| m.full_name)
            .unwrap_or_else(|| caller.subject.clone());
        let date = ticket.received_at.format("%d.%m.%Y").to_string();
        template::render(&template.body, |name| match name {
            "applicant_name" => ticket.applicant_name.clone(),
            "user_name" => user_name.clone(),
            "message_number" | "registration_number" => ticket.number.to_string(),
            "organization_name" => ticket.organization_short_name.clone(),
            "category" => ticket.category_id.clone(),
            _ => date.clone(),
        })
        .map_err(|e| Status::failed_precondition(format!("the template no longer renders: {e}")))
    }
}

fn staff_to_proto(member: store::StaffMember) -> pb::StaffMember {
    pb::StaffMember {
        subject: member.subject,
        organization_id: member.organization_id,
        full_name: member.full_name,
        email: member.email,
        roles: member.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        active: member.active,
    }
}

fn incident_to_proto(incident: store::Incident) -> pb::Incident {
    pb::Incident {
        id: incident.id,
        ticket_id: incident.ticket_id,
        appeal_id: incident.appeal_id,
        organization_id: incident.organization_id,
        kind: match incident.kind {
            incident::Kind::SituationCenter => pb::IncidentKind::SituationCenter as i32,
            incident::Kind::FederalSupervisor => pb::IncidentKind::FederalSupervisor as i32,
        },
        state: incident.state.as_str().to_owned(),
        service: incident.service,
        request_type: incident.request_type,
        system: incident.system,
        priority: incident.priority,
        subject: incident.subject,
        attachment_ids: incident.attachment_ids,
        user_account: incident.user_account,
        external_id: incident.external_id,
        resolution: incident.resolution,
        last_comment: incident.last_comment,
        opened_by: incident.opened_by,
        opened_at: Some(pos_proto::time::to_proto(incident.opened_at)),
        updated_at: Some(pos_proto::time::to_proto(incident.updated_at)),
        version: incident.version,
    }
}

fn template_to_proto(template: store::Template) -> pb::AnswerTemplate {
    pb::AnswerTemplate {
        id: template.id,
        organization_id: template.organization_id,
        name: template.name,
        body: template.body,
    }
}

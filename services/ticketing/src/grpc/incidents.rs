//! Incidents over gRPC: opened by the ticket's organization, worked by the handling line (its
//! staff, a system, or — for a federal supervisor's escalation — the staff of the federal body it
//! is addressed to, with their own token), answered and confirmed or rejected by the applicant.
//! Each step bumps the ticket's version, keeps its `incident_open` marker, writes a line in its
//! history and a `ticket.status_changed` (the ticket's stage unchanged), and publishes
//! `ticket.incident_changed`, from which the applicant hears of it.
//!
//! Files named by an incident or an answer are intake's: [`AttachmentClaims`] asks intake, with
//! the acting person's token, to check each id and record the reference, which keeps the file
//! from the orphan sweep and lets the incident's organization (and an answer's applicant)
//! download it. An escalation addressed to a federal body is granted to that body by ticketing
//! itself (its service token): intake then lets the body's staff read the incident's files and
//! the appeal's, and add their own.

use chrono::Utc;
use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::error::FieldViolations;
use pos_platform::host::Infra;
use pos_platform::{ApiError, ApiResult, Tx};
use pos_proto::v1 as pb;
use pos_proto::v1::events::{self as ev, IncidentStep, TicketAction};
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::{CABINET_ROLES, READER_ROLES, Ticketing, check_access, is_applicant_only, require_own_appeal, wire};
use crate::events::{self, StatusChange};
use crate::incident::{self, Command, Kind, Line, State};
use crate::store::history::{self, HistoryLine};
use crate::store::incidents::{self as stored, Incident};
use crate::store::tickets::{self, Ticket};

/// Who escalates a ticket: its organization's working roles.
const INCIDENT_OPENERS: [Role; 4] = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator];
/// Who works an incident: the organization's staff recording the line's progress, the
/// situation center's ITSM / the supervisor's system, or the staff of the federal body the
/// escalation is addressed to (see [`HANDLING_BODY`]).
const INCIDENT_HANDLERS: [Role; 5] = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::System];
/// The roles of a federal body's staff that answer an escalation addressed to it.
const HANDLING_BODY: [Role; 3] = [Role::Coordinator, Role::Executor, Role::Head];
/// Who records that the information asked for arrived: the handlers, or the applicant sending it.
const INFORMATION_SENDERS: [Role; 6] =
    [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::System, Role::Applicant];

/// The name the applicant reads for the situation center (seed 000's «СЦ»).
const SITUATION_CENTER: &str = "Ситуационный центр электронного правительства";

/// How long intake gets to check and record an incident's or answer's files, and routing to
/// name an organization.
const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Intake's ClaimAttachments, called over gRPC (intake's peers, or this process's endpoint).
#[derive(Clone)]
pub struct AttachmentClaims {
    client: IntakeServiceClient<Channel>,
    /// Mints ticketing's own token, for the grants only the platform may make.
    infra: Option<Infra>,
}

impl AttachmentClaims {
    pub fn new(channel: Channel) -> AttachmentClaims {
        AttachmentClaims { client: IntakeServiceClient::new(channel), infra: None }
    }

    /// With ticketing's own identity, so that escalations addressed to a federal body can be
    /// granted to its staff.
    pub fn with_service_identity(mut self, infra: Infra) -> AttachmentClaims {
        self.infra = Some(infra);
        self
    }
}

/// Routing's directory, to check the body a supervisor's escalation is addressed to.
#[derive(Clone)]
pub struct Directory {
    client: RoutingServiceClient<Channel>,
    infra: Infra,
}

impl Directory {
    pub fn new(channel: Channel, infra: Infra) -> Directory {
        Directory { client: RoutingServiceClient::new(channel), infra }
    }

    /// The organization, or `None` when the directory has no such id.
    async fn organization(&self, id: &str) -> ApiResult<Option<pb::Organization>> {
        let token =
            self.infra.service_token("ticketing").map_err(|e| ApiError::internal("minting the service token", e))?;
        let mut request = pos_platform::grpc::outgoing(pb::GetOrganizationRequest { id: id.to_owned() }, &token);
        request.set_timeout(PEER_TIMEOUT);
        match self.client.clone().get_organization(request).await {
            Ok(found) => Ok(Some(found.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "routing did not name an organization");
                Err(ApiError::unavailable(
                    "DIRECTORY_UNAVAILABLE",
                    "the directory cannot be read now to check handler_organization_id; retry shortly",
                ))
            }
        }
    }
}

/// What refers to the files: the kind, the object and the field that named them.
pub(super) struct Claim<'a> {
    pub appeal_id: &'a str,
    pub kind: pb::AttachmentReferenceKind,
    pub object_id: &'a str,
    pub field: &'a str,
}

impl Ticketing {
    /// Has intake check the files `ids` and record that `claim` refers to them; intake's
    /// refusal (a field error naming the bad id, in the caller's own field) goes back as it is.
    /// Done before the command's transaction: a reference left by a command that then fails
    /// only keeps a file the caller could already see.
    pub(super) async fn claim_attachments(
        &self,
        metadata: &MetadataMap,
        ids: &[String],
        claim: Claim<'_>,
    ) -> ApiResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // Intake decides what the acting person may attach, so it sees their own token.
        let token = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::Unauthenticated("a bearer token is required"))?;
        let body = pb::ClaimAttachmentsRequest {
            appeal_id: claim.appeal_id.to_owned(),
            kind: claim.kind as i32,
            object_id: claim.object_id.to_owned(),
            attachment_ids: ids.to_vec(),
            field: claim.field.to_owned(),
            reader_organization_id: String::new(),
            with_appeal_files: false,
        };
        self.call_claim(body, token).await.map(|_| ())
    }

    async fn call_claim(
        &self,
        body: pb::ClaimAttachmentsRequest,
        token: &str,
    ) -> ApiResult<pb::ClaimAttachmentsResponse> {
        let Some(claims) = &self.attachments else {
            return Err(ApiError::unavailable(
                "ATTACHMENTS_UNAVAILABLE",
                "files cannot be checked here (intake is not reachable from this ticketing); send no attachment ids",
            ));
        };
        let mut request = pos_platform::grpc::outgoing(body, token);
        request.set_timeout(PEER_TIMEOUT);
        match claims.client.clone().claim_attachments(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => {
                tracing::info!(code = ?status.code(), message = status.message(), "intake refused the attachments");
                Err(ApiError::Stream(status))
            }
        }
    }

    /// Lets the staff of the body an escalation is addressed to read its files and the appeal's
    /// (intake records the grant); returns the appeal's files.
    async fn grant_to_handler(&self, appeal_id: &str, incident_id: &str, handler: &str) -> ApiResult<Vec<String>> {
        let infra = self.attachments.as_ref().and_then(|claims| claims.infra.as_ref()).ok_or_else(|| {
            ApiError::unavailable(
                "ATTACHMENTS_UNAVAILABLE",
                "the appeal's files cannot be granted to the federal body from this ticketing",
            )
        })?;
        let token = infra.service_token("ticketing").map_err(|e| ApiError::internal("minting the service token", e))?;
        let body = pb::ClaimAttachmentsRequest {
            appeal_id: appeal_id.to_owned(),
            kind: pb::AttachmentReferenceKind::Incident as i32,
            object_id: incident_id.to_owned(),
            attachment_ids: Vec::new(),
            field: "handler_organization_id".to_owned(),
            reader_organization_id: handler.to_owned(),
            with_appeal_files: true,
        };
        let granted = self.call_claim(body, &token).await?;
        Ok(granted.attachments.into_iter().map(|a| a.id).collect())
    }

    /// The federal body a supervisor's escalation names, checked in the directory: its short name.
    async fn handling_body(&self, id: &str) -> ApiResult<String> {
        let directory = self.directory.as_ref().ok_or_else(|| {
            ApiError::unavailable("DIRECTORY_UNAVAILABLE", "the directory is not reachable from this ticketing")
        })?;
        match directory.organization(id).await? {
            None => Err(ApiError::invalid("handler_organization_id", "no such organization in the directory")),
            Some(found) if found.r#type != pb::OrganizationType::FederalAgency as i32 => {
                Err(ApiError::invalid("handler_organization_id", "not a federal body"))
            }
            Some(found) => Ok(if found.short_name.is_empty() { found.full_name } else { found.short_name }),
        }
    }

    pub(super) async fn open(&self, request: Request<pb::OpenIncidentRequest>) -> ApiResult<pb::Incident> {
        const METHOD: &str = "pos.v1.TicketingService/OpenIncident";
        let caller = authorize(&request, METHOD, &INCIDENT_OPENERS)?;
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        let ticket = self.load(&body.ticket_id).await?;
        caller.require_organization(&ticket.organization_id, METHOD)?;
        let mut violations = FieldViolations::new();
        let kind = pb::IncidentKind::try_from(body.kind).ok().and_then(wire::incident_kind);
        if kind.is_none() {
            violations.add("kind", "situation center or federal supervisor");
        }
        if body.subject.trim().is_empty() {
            violations.add("subject", "required");
        }
        // The situation center's form cannot be filed without these (seed 000).
        if kind == Some(Kind::SituationCenter) {
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
            if !body.handler_organization_id.trim().is_empty() {
                violations.add("handler_organization_id", "only for a federal supervisor's escalation");
            }
        }
        let handler_id = body.handler_organization_id.trim().to_owned();
        if kind == Some(Kind::FederalSupervisor) && handler_id.is_empty() {
            violations.add("handler_organization_id", "required: the federal body the escalation is addressed to");
        }
        violations.into_result()?;
        let kind = kind.ok_or_else(|| ApiError::invalid("kind", "required"))?;
        if ticket.stage().is_final() || !ticket.superseded_by.is_empty() {
            return Err(ApiError::failed_precondition(
                "TICKET_CLOSED",
                "the ticket is closed; escalate from the current ticket",
            ));
        }
        let handler_name =
            if kind == Kind::FederalSupervisor { self.handling_body(&handler_id).await? } else { String::new() };
        let now = Utc::now();
        let id = uuid::Uuid::now_v7().to_string();
        let claim = Claim {
            appeal_id: &ticket.appeal_id,
            kind: pb::AttachmentReferenceKind::Incident,
            object_id: &id,
            field: "attachment_ids",
        };
        self.claim_attachments(&metadata, &body.attachment_ids, claim).await?;
        let appeal_attachment_ids = if handler_id.is_empty() {
            Vec::new()
        } else {
            self.grant_to_handler(&ticket.appeal_id, &id, &handler_id).await?
        };
        let opened = Incident {
            id,
            ticket_id: ticket.id.clone(),
            appeal_id: ticket.appeal_id.clone(),
            organization_id: ticket.organization_id.clone(),
            kind,
            state: State::Open(Line::First),
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
            handler_organization_id: handler_id,
            handler_organization_name: handler_name,
            appeal_attachment_ids,
        };
        let mut tx = self.db.begin().await?;
        stored::insert(&mut tx, &opened).await?;
        let comment = format!("{}: {}", kind.as_str(), opened.subject);
        let step = Step {
            actor: &caller.subject,
            action: "escalated",
            comment: &comment,
            event: TicketAction::Escalated,
            incident_step: IncidentStep::Opened,
            attachment_ids: &opened.attachment_ids,
        };
        let ticket = incident_stepped(&mut tx, &ticket, &opened, step).await?;
        tx.commit().await?;
        self.db.wake_outbox();
        tracing::info!(incident_id = %opened.id, ticket_id = %ticket.id, kind = kind.as_str(), handler_organization_id = %opened.handler_organization_id, "incident opened");
        Ok(wire::incident(opened, &ticket))
    }

    pub(super) async fn list(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> ApiResult<pb::ListIncidentsResponse> {
        const METHOD: &str = "pos.v1.TicketingService/ListIncidents";
        let caller = authorize(&request, METHOD, &READER_ROLES)?;
        let body = request.into_inner();
        if body.handler_organization_id.is_empty() {
            let ticket = self.load(&body.ticket_id).await?;
            check_access(&caller, &ticket, METHOD)?;
            let incidents = stored::of_ticket(&self.db, &ticket.id).await?;
            return Ok(pb::ListIncidentsResponse {
                incidents: incidents.into_iter().map(|i| wire::incident(i, &ticket)).collect(),
            });
        }
        // The escalations addressed to a body: its own staff (or a system) only.
        if !caller.has_any(&CABINET_ROLES) {
            tracing::warn!(target: "security", subject = %caller.subject, %METHOD, "an applicant asked for a body's escalations");
            return Err(ApiError::denied("OTHER_ORGANIZATION", "the escalations are the handling body's staff's"));
        }
        caller.require_organization(&body.handler_organization_id, METHOD)?;
        if !body.ticket_id.is_empty() {
            return Err(ApiError::invalid("ticket_id", "give ticket_id or handler_organization_id, not both"));
        }
        let incidents = stored::addressed_to(&self.db, &body.handler_organization_id, body.open_only).await?;
        let mut ids: Vec<String> = incidents.iter().map(|i| i.ticket_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let tickets = tickets::get_many(&self.db, &ids).await?;
        let incidents = incidents
            .into_iter()
            .filter_map(|i| tickets.iter().find(|t| t.id == i.ticket_id).map(|t| wire::incident(i, t)))
            .collect();
        Ok(pb::ListIncidentsResponse { incidents })
    }

    /// One incident command: the handling line (staff of the organization, a system, or the
    /// staff of the body the escalation is addressed to) or the applicant (their own appeal),
    /// then the versioned transition and the ticket's side of it.
    pub(super) async fn incident_command(
        &self,
        request: Request<pb::IncidentCommandRequest>,
        name: &str,
        command: impl FnOnce(String) -> Command,
    ) -> Result<Response<pb::Incident>, Status> {
        Ok(Response::new(self.run_incident_command(request, name, command).await?))
    }

    async fn run_incident_command(
        &self,
        request: Request<pb::IncidentCommandRequest>,
        name: &str,
        command: impl FnOnce(String) -> Command,
    ) -> ApiResult<pb::Incident> {
        let method = format!("pos.v1.TicketingService/{name}");
        let command = command(request.get_ref().comment.clone());
        let allowed: &[Role] = match command {
            Command::Confirm | Command::RejectResult { .. } => &[Role::Applicant],
            Command::InformationReceived { .. } => &INFORMATION_SENDERS,
            Command::EscalateToSecondLine | Command::RequestInformation { .. } | Command::Resolve { .. } => {
                &INCIDENT_HANDLERS
            }
        };
        let caller = authorize(&request, &method, allowed)?;
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        if body.incident_id.is_empty() {
            return Err(ApiError::invalid("incident_id", "required"));
        }
        let found =
            stored::get(&self.db, &body.incident_id).await?.ok_or_else(|| ApiError::not_found("no such incident"))?;
        let ticket = self.load(&found.ticket_id).await?;
        admit_to_incident(&caller, &found, &ticket, &command, &method)?;
        let state = incident::next(found.kind, found.state, &command)?;
        // Files come with the information provided or the resolution, nothing else.
        let with_files = matches!(command, Command::InformationReceived { .. } | Command::Resolve { .. });
        if !with_files && !body.attachment_ids.is_empty() {
            return Err(ApiError::invalid(
                "attachment_ids",
                "files go with the information provided or the resolution only",
            ));
        }
        let claim = Claim {
            appeal_id: &ticket.appeal_id,
            kind: pb::AttachmentReferenceKind::Incident,
            object_id: &found.id,
            field: "attachment_ids",
        };
        self.claim_attachments(&metadata, &body.attachment_ids, claim).await?;
        let resolution = matches!(command, Command::Resolve { .. }).then_some(body.comment.as_str());
        let mut tx = self.db.begin().await?;
        let stored = stored::update(
            &mut tx,
            &found.id,
            body.expected_version,
            state,
            resolution,
            &body.comment,
            &body.attachment_ids,
        )
        .await?;
        if !stored {
            return Err(ApiError::failed_precondition(
                "STALE_VERSION",
                format!(
                    "the incident changed: version {}, the command expected {}",
                    found.version, body.expected_version
                ),
            ));
        }
        let updated =
            stored::get_in(&mut tx, &found.id).await?.ok_or_else(|| ApiError::not_found("no such incident"))?;
        // Waiting for the applicant pauses the answer clock, as for the ticket's own request.
        let (event, incident_step) = match command {
            Command::RequestInformation { .. } => {
                (TicketAction::InformationRequested, IncidentStep::InformationRequested)
            }
            Command::InformationReceived { .. } => {
                (TicketAction::InformationReceived, IncidentStep::InformationReceived)
            }
            Command::EscalateToSecondLine => (TicketAction::Escalated, IncidentStep::Escalated),
            Command::Resolve { .. } => (TicketAction::Escalated, IncidentStep::Resolved),
            Command::Confirm => (TicketAction::Escalated, IncidentStep::ResultConfirmed),
            Command::RejectResult { .. } => (TicketAction::Escalated, IncidentStep::ResultRejected),
        };
        let action = format!("incident {}", command.name());
        let step = Step {
            actor: &caller.subject,
            action: &action,
            comment: &body.comment,
            event,
            incident_step,
            attachment_ids: &body.attachment_ids,
        };
        let ticket = incident_stepped(&mut tx, &ticket, &updated, step).await?;
        tx.commit().await?;
        self.db.wake_outbox();
        tracing::info!(incident_id = %found.id, state = state.as_str(), ticket_version = ticket.version, "incident command applied");
        Ok(wire::incident(updated, &ticket))
    }
}

/// Who may issue `command` on the incident: the applicant their own appeal's; otherwise the
/// escalating organization's staff or a system, and — for what a handling line does (ask for
/// information, resolve) — the staff of the body the escalation is addressed to.
fn admit_to_incident(
    caller: &Caller,
    incident: &Incident,
    ticket: &Ticket,
    command: &Command,
    method: &str,
) -> ApiResult<()> {
    if command.by_applicant() || is_applicant_only(caller) {
        return require_own_appeal(caller, ticket, method);
    }
    let handling_body = !incident.handler_organization_id.is_empty()
        && caller.organization_id == incident.handler_organization_id
        && caller.has_any(&HANDLING_BODY)
        && matches!(command, Command::RequestInformation { .. } | Command::Resolve { .. });
    if handling_body {
        return Ok(());
    }
    caller.require_organization(&incident.organization_id, method)
}

/// An incident step as the ticket records it.
struct Step<'a> {
    actor: &'a str,
    /// The history line's action, e.g. "incident resolved".
    action: &'a str,
    comment: &'a str,
    /// What `ticket.status_changed` reports (the SLA service pauses and resumes on it).
    event: TicketAction,
    incident_step: IncidentStep,
    attachment_ids: &'a [String],
}

/// The ticket's side of an incident step, in the step's transaction: its version and
/// `incident_open` marker, a history line (the stage stays), `ticket.status_changed` naming the
/// incident, and `ticket.incident_changed`. Returns the ticket as it now is.
async fn incident_stepped(tx: &mut Tx, before: &Ticket, incident: &Incident, step: Step<'_>) -> ApiResult<Ticket> {
    let ticket = tickets::incident_stepped(tx, &before.id).await?;
    let stage = ticket.stage();
    let line = HistoryLine { action: step.action, from: Some(stage), to: stage, comment: step.comment };
    history::append(tx, &ticket.id, step.actor, line).await?;
    history::attach_files(tx, &ticket.id, step.attachment_ids).await?;
    let at = Utc::now();
    let change = StatusChange {
        from: Some(stage),
        to: stage,
        action: step.event,
        actor: step.actor,
        at,
        comment: step.comment.to_owned(),
    };
    let changed =
        ev::TicketStatusChanged { incident_id: incident.id.clone(), ..events::status_changed(&ticket, change) };
    events::enqueue(tx, &ticket, &changed).await?;
    let handler_name = match incident.kind {
        Kind::SituationCenter => SITUATION_CENTER.to_owned(),
        Kind::FederalSupervisor => incident.handler_organization_name.clone(),
    };
    let incident_changed = ev::TicketIncidentChanged {
        incident_id: incident.id.clone(),
        ticket_id: ticket.id.clone(),
        appeal_id: ticket.appeal_id.clone(),
        number: ticket.number,
        organization_id: ticket.organization_id.clone(),
        organization_name: ticket.organization_short_name.clone(),
        region_code: ticket.region_code.clone(),
        step: step.incident_step as i32,
        state: incident.state.as_str().to_owned(),
        kind: incident.kind.as_str().to_owned(),
        handler_organization_id: incident.handler_organization_id.clone(),
        handler_name,
        subject: incident.subject.clone(),
        // The opening's history comment repeats the kind and subject, which the event has apart.
        comment: if step.incident_step == IncidentStep::Opened { String::new() } else { step.comment.to_owned() },
        actor: step.actor.to_owned(),
        at: Some(pos_proto::time::to_proto(at)),
        version: incident.version,
        attachment_ids: step.attachment_ids.to_vec(),
    };
    events::enqueue(tx, &ticket, &incident_changed).await?;
    Ok(ticket)
}

//! Incidents over gRPC: opened by the ticket's organization, worked by the handling line (its
//! staff, or a system), confirmed or rejected by the applicant. Each step also writes a line in
//! the ticket's history and a `ticket.status_changed`, with the ticket's stage unchanged.
//!
//! Files named by an incident or an answer are intake's: [`AttachmentClaims`] asks intake, with
//! the acting staff member's token, to check each id and record the reference, which keeps the
//! file from the orphan sweep and lets the incident's organization (and an answer's applicant)
//! download it.

use chrono::Utc;
use pos_platform::auth::{Role, authorize};
use pos_platform::error::FieldViolations;
use pos_platform::{ApiError, ApiResult, Tx};
use pos_proto::v1 as pb;
use pos_proto::v1::events::TicketAction;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{READER_ROLES, Ticketing, check_access, require_own_appeal, wire};
use crate::events::{self, StatusChange};
use crate::incident::{self, Command, Kind, Line, State};
use crate::store::history::{self, HistoryLine};
use crate::store::incidents::{self as stored, Incident};
use crate::store::tickets::Ticket;

/// Who escalates a ticket: its organization's working roles.
const INCIDENT_OPENERS: [Role; 4] = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator];
/// Who works an incident: the organization's staff recording the line's progress, or the
/// situation center's ITSM / the supervisor's system.
const INCIDENT_HANDLERS: [Role; 5] = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::System];

/// How long intake gets to check and record an incident's or answer's files.
const CLAIM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Intake's ClaimAttachments, called over gRPC (intake's peers, or this process's endpoint).
#[derive(Clone)]
pub struct AttachmentClaims {
    client: IntakeServiceClient<Channel>,
}

impl AttachmentClaims {
    pub fn new(channel: Channel) -> AttachmentClaims {
        AttachmentClaims { client: IntakeServiceClient::new(channel) }
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
        let Some(claims) = &self.attachments else {
            return Err(ApiError::unavailable(
                "ATTACHMENTS_UNAVAILABLE",
                "files cannot be checked here (intake is not reachable from this ticketing); send no attachment ids",
            ));
        };
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
        };
        let mut request = pos_platform::grpc::outgoing(body, token);
        request.set_timeout(CLAIM_TIMEOUT);
        match claims.client.clone().claim_attachments(request).await {
            Ok(_) => Ok(()),
            Err(status) => {
                tracing::info!(code = ?status.code(), message = status.message(), "intake refused the attachments");
                Err(ApiError::Stream(status))
            }
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
        }
        violations.into_result()?;
        let kind = kind.ok_or_else(|| ApiError::invalid("kind", "required"))?;
        if ticket.stage().is_final() || !ticket.superseded_by.is_empty() {
            return Err(ApiError::failed_precondition(
                "TICKET_CLOSED",
                "the ticket is closed; escalate from the current ticket",
            ));
        }
        let now = Utc::now();
        let id = uuid::Uuid::now_v7().to_string();
        let claim = Claim {
            appeal_id: &ticket.appeal_id,
            kind: pb::AttachmentReferenceKind::Incident,
            object_id: &id,
            field: "attachment_ids",
        };
        self.claim_attachments(&metadata, &body.attachment_ids, claim).await?;
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
        };
        let mut tx = self.db.begin().await?;
        stored::insert(&mut tx, &opened).await?;
        let comment = format!("{}: {}", kind.as_str(), opened.subject);
        ticket_side_effect(&mut tx, &ticket, &caller.subject, "escalated", &comment, TicketAction::Escalated).await?;
        tx.commit().await?;
        self.db.wake_outbox();
        tracing::info!(incident_id = %opened.id, ticket_id = %ticket.id, kind = kind.as_str(), "incident opened");
        Ok(wire::incident(opened))
    }

    pub(super) async fn list(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> ApiResult<pb::ListIncidentsResponse> {
        const METHOD: &str = "pos.v1.TicketingService/ListIncidents";
        let caller = authorize(&request, METHOD, &READER_ROLES)?;
        let ticket = self.load(&request.get_ref().ticket_id).await?;
        check_access(&caller, &ticket, METHOD)?;
        let incidents = stored::of_ticket(&self.db, &ticket.id).await?;
        Ok(pb::ListIncidentsResponse { incidents: incidents.into_iter().map(wire::incident).collect() })
    }

    /// One incident command: the handling line (staff of the organization, or a system) or the
    /// applicant (their own appeal), then the versioned transition and the ticket's history line.
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
        let allowed: &[Role] = if command.by_applicant() { &[Role::Applicant] } else { &INCIDENT_HANDLERS };
        let caller = authorize(&request, &method, allowed)?;
        let body = request.into_inner();
        if body.incident_id.is_empty() {
            return Err(ApiError::invalid("incident_id", "required"));
        }
        let found =
            stored::get(&self.db, &body.incident_id).await?.ok_or_else(|| ApiError::not_found("no such incident"))?;
        let ticket = self.load(&found.ticket_id).await?;
        if command.by_applicant() {
            require_own_appeal(&caller, &ticket, &method)?;
        } else {
            caller.require_organization(&found.organization_id, &method)?;
        }
        let state = incident::next(found.kind, found.state, &command)?;
        let resolution = matches!(command, Command::Resolve { .. }).then_some(body.comment.as_str());
        let mut tx = self.db.begin().await?;
        let stored =
            stored::update(&mut tx, &found.id, body.expected_version, state, resolution, &body.comment).await?;
        if !stored {
            return Err(ApiError::failed_precondition(
                "STALE_VERSION",
                format!(
                    "the incident changed: version {}, the command expected {}",
                    found.version, body.expected_version
                ),
            ));
        }
        // Waiting for the applicant pauses the answer clock, as for the ticket's own request.
        let event = match command {
            Command::RequestInformation { .. } => TicketAction::InformationRequested,
            Command::InformationReceived { .. } => TicketAction::InformationReceived,
            Command::EscalateToSecondLine
            | Command::Resolve { .. }
            | Command::Confirm
            | Command::RejectResult { .. } => TicketAction::Escalated,
        };
        let action = format!("incident {}", command.name());
        ticket_side_effect(&mut tx, &ticket, &caller.subject, &action, &body.comment, event).await?;
        tx.commit().await?;
        self.db.wake_outbox();
        tracing::info!(incident_id = %found.id, state = state.as_str(), "incident command applied");
        let updated = stored::get(&self.db, &found.id).await?.ok_or_else(|| ApiError::not_found("no such incident"))?;
        Ok(wire::incident(updated))
    }
}

/// A ticket history line (and `ticket.status_changed`) for something that happened beside the
/// workflow: the ticket's stage stays, its version too.
async fn ticket_side_effect(
    tx: &mut Tx,
    ticket: &Ticket,
    actor: &str,
    action: &str,
    comment: &str,
    event: TicketAction,
) -> Result<(), sqlx::Error> {
    let stage = ticket.stage();
    history::append(tx, &ticket.id, actor, HistoryLine { action, from: Some(stage), to: stage, comment }).await?;
    let change = StatusChange {
        from: Some(stage),
        to: stage,
        action: event,
        actor,
        at: Utc::now(),
        comment: comment.to_owned(),
    };
    events::enqueue(tx, ticket, &events::status_changed(ticket, change)).await
}

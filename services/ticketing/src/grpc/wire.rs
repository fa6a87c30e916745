//! The cabinet's domain in the wire's terms (`pos.v1`), both ways.

use pos_proto::v1 as pb;
use pos_proto::v1::events as ev;

use crate::incident;
use crate::store::history::HistoryEntry;
use crate::store::incidents::Incident;
use crate::store::staff::StaffMember;
use crate::store::templates::Template;
use crate::store::tickets::Ticket;
use crate::workflow::{Answer, AnswerKind, Stage};
use pos_platform::ApiError;
use pos_platform::auth::Caller;

/// The ticket as `caller` may read it: the organization's staff (and operators, systems) see the
/// answer in every stage; an applicant sees only the answer sent to them, never a draft.
pub fn ticket_for(caller: &Caller, ticket: &Ticket) -> pb::Ticket {
    let mut message = self::ticket(ticket);
    if super::is_applicant_only(caller) {
        message.answer = ticket.sent_answer().map(answer_to_proto);
    }
    message
}

pub fn ticket(ticket: &Ticket) -> pb::Ticket {
    pb::Ticket {
        id: ticket.id.clone(),
        appeal_id: ticket.appeal_id.clone(),
        number: ticket.number,
        organization: Some(pb::OrganizationRef {
            id: ticket.organization_id.clone(),
            short_name: ticket.organization_short_name.clone(),
            r#type: ticket.organization_type,
            region_code: ticket.region_code.clone(),
        }),
        folder: ticket.folder().to_proto() as i32,
        status: ticket.stage().label().to_owned(),
        fast_track: ticket.fast_track,
        delegated_by_auto_rule: ticket.delegated_by_auto_rule,
        source: ticket.source,
        region_code: ticket.region_code.clone(),
        category_id: ticket.category_id.clone(),
        subcategory_id: ticket.subcategory_id.clone(),
        fact_id: ticket.fact_id.clone(),
        public_text: ticket.public_text.clone(),
        problem_address: ticket.problem_address.clone(),
        received_at: Some(pos_proto::time::to_proto(ticket.received_at)),
        created_at: Some(pos_proto::time::to_proto(ticket.created_at)),
        period_days: ticket.period_days,
        working_days: ticket.working_days,
        // Empty: with the coordinator.
        assignee_id: ticket.assignee_id.clone().unwrap_or_default(),
        version: ticket.version,
        trace_id: ticket.trace_id.clone(),
        answer_due: ticket.answer_due.map(pos_proto::time::to_proto),
        execution_due: ticket.execution_due.map(pos_proto::time::to_proto),
        overdue: ticket.overdue,
        review_round: ticket.review_round,
        answer: ticket.answer().map(answer_to_proto),
        rating: ticket.rating,
        superseded_by: ticket.superseded_by.clone(),
        time_zone: ticket.time_zone.clone(),
        incident_open: ticket.incident_open,
    }
}

pub fn answer_to_proto(answer: &Answer) -> pb::Answer {
    let (follow_up_at, basis) = match &answer.kind {
        AnswerKind::Postponed { follow_up_at } => (Some(pos_proto::time::to_proto(*follow_up_at)), String::new()),
        AnswerKind::Rejected { basis } => (None, basis.clone()),
        AnswerKind::Resolved | AnswerKind::NotResolved => (None, String::new()),
    };
    pb::Answer {
        r#type: answer.kind.to_proto() as i32,
        text: answer.text.clone(),
        attachment_ids: answer.attachment_ids.clone(),
        follow_up_at,
        basis,
    }
}

/// An answer from the request's `field`; postponed needs its date and rejected its basis.
pub fn answer_from_proto(answer: Option<pb::Answer>, field: &str) -> Result<Answer, ApiError> {
    let answer = answer.ok_or_else(|| ApiError::invalid(field, "the answer is required"))?;
    let kind = match ev::AnswerType::try_from(answer.r#type) {
        Ok(ev::AnswerType::Resolved) => AnswerKind::Resolved,
        Ok(ev::AnswerType::NotResolved) => AnswerKind::NotResolved,
        Ok(ev::AnswerType::Postponed) => AnswerKind::Postponed {
            follow_up_at: answer.follow_up_at.as_ref().and_then(pos_proto::time::from_proto).ok_or_else(|| {
                ApiError::invalid(&format!("{field}.follow_up_at"), "a postponed answer needs its date")
            })?,
        },
        Ok(ev::AnswerType::Rejected) => {
            if answer.basis.trim().is_empty() {
                return Err(ApiError::invalid(&format!("{field}.basis"), "a rejected answer needs its basis"));
            }
            AnswerKind::Rejected { basis: answer.basis }
        }
        Ok(ev::AnswerType::Unspecified) | Err(_) => {
            return Err(ApiError::invalid(&format!("{field}.type"), "resolved, not resolved, postponed or rejected"));
        }
    };
    Ok(Answer { kind, text: answer.text, attachment_ids: answer.attachment_ids })
}

/// The steps whose comment and files are addressed to the applicant or come from them: a request
/// for information and its answer, the applicant's own verdict, a refusal's grounds, an
/// incident's result. Every other
/// comment (a head's "add the dates", a hand-over note) is the organization's working note.
const APPLICANT_READS: [&str; 11] = [
    "information requested",
    "information received",
    "rejected by applicant",
    "accepted by applicant",
    // The grounds of a refusal and of a stopped re-review are the applicant's to know.
    "rejected",
    "re-review stopped",
    "incident information requested",
    "incident information received",
    "incident resolved",
    "incident result confirmed",
    "incident result rejected",
];

/// A history step as `caller` may read it: staff see everything; an applicant sees every step
/// and when it happened, but the comments, files and names only of the steps addressed to them
/// or taken by them.
pub fn history_entry_for(caller: &Caller, entry: HistoryEntry) -> pb::HistoryEntry {
    let mut message = history_entry(entry);
    if super::is_applicant_only(caller) {
        if !APPLICANT_READS.contains(&message.action.as_str()) {
            message.comment.clear();
            message.attachment_ids.clear();
        }
        if message.actor != caller.subject {
            message.actor.clear();
        }
    }
    message
}

pub fn history_entry(entry: HistoryEntry) -> pb::HistoryEntry {
    let folder = |stage: Option<Stage>| stage.map(|s| s.folder().to_proto()).unwrap_or(pb::Folder::Unspecified) as i32;
    pb::HistoryEntry {
        seq: entry.seq,
        at: Some(pos_proto::time::to_proto(entry.at)),
        actor: entry.actor,
        action: entry.action,
        from_folder: folder(entry.from),
        to_folder: folder(Some(entry.to)),
        // Empty for the first line.
        from_status: entry.from.map(Stage::label).unwrap_or_default().to_owned(),
        to_status: entry.to.label().to_owned(),
        comment: entry.comment,
        attachment_ids: entry.attachment_ids,
    }
}

pub fn staff_member(member: StaffMember) -> pb::StaffMember {
    pb::StaffMember {
        subject: member.subject,
        organization_id: member.organization_id,
        full_name: member.full_name,
        email: member.email,
        roles: member.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        active: member.active,
    }
}

pub fn incident_kind(kind: pb::IncidentKind) -> Option<incident::Kind> {
    match kind {
        pb::IncidentKind::SituationCenter => Some(incident::Kind::SituationCenter),
        pb::IncidentKind::FederalSupervisor => Some(incident::Kind::FederalSupervisor),
        pb::IncidentKind::Unspecified => None,
    }
}

/// An incident with its appeal's number, public (masked) text and files taken from `ticket`:
/// the handling body's staff read the appeal only through the escalation.
pub fn incident(incident: Incident, ticket: &Ticket) -> pb::Incident {
    pb::Incident {
        appeal_number: ticket.number,
        appeal_text: ticket.public_text.clone(),
        appeal_attachment_ids: incident.appeal_attachment_ids,
        handler_organization_id: incident.handler_organization_id,
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

pub fn template(template: Template) -> pb::AnswerTemplate {
    pb::AnswerTemplate {
        id: template.id,
        organization_id: template.organization_id,
        name: template.name,
        body: template.body,
    }
}

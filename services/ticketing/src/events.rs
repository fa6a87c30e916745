//! What the cabinet tells the others, through the outbox: `ticket.status_changed` for every
//! change of a ticket (built in one place, [`status_changed`]), and the events a transition's
//! effects imply (an approved answer, a new review round, a reroute request).

use chrono::{DateTime, Utc};
use pos_platform::{Envelope, Tx, outbox};
use pos_proto::v1 as pb;
use pos_proto::v1::events::{self as ev, TicketAction};

use crate::store::tickets::Ticket;
use crate::workflow::{AnswerKind, Effect, Stage, Transition};

/// What changed, as `ticket.status_changed` reports it.
pub struct StatusChange<'a> {
    /// `None` when the ticket was just created.
    pub from: Option<Stage>,
    pub to: Stage,
    pub action: TicketAction,
    pub actor: &'a str,
    pub at: DateTime<Utc>,
    pub comment: String,
}

/// `ticket.status_changed` for `ticket` (as it is after the change): the folders and the status
/// line follow from the stages.
pub fn status_changed(ticket: &Ticket, change: StatusChange<'_>) -> ev::TicketStatusChanged {
    let folder = |stage: Stage| stage.folder().to_proto();
    ev::TicketStatusChanged {
        ticket_id: ticket.id.clone(),
        appeal_id: ticket.appeal_id.clone(),
        number: ticket.number,
        organization_id: ticket.organization_id.clone(),
        from_folder: change.from.map(folder).unwrap_or(pb::Folder::Unspecified) as i32,
        to_folder: folder(change.to) as i32,
        status: change.to.label().to_owned(),
        actor: change.actor.to_owned(),
        at: Some(pos_proto::time::to_proto(change.at)),
        region_code: ticket.region_code.clone(),
        action: change.action as i32,
        assignee_id: ticket.assignee_id.clone().unwrap_or_default(),
        execution_due: None,
        comment: change.comment,
        rating: 0,
        time_zone: ticket.time_zone.clone(),
        incident_id: String::new(),
        answer_due: ticket.answer_due.map(pos_proto::time::to_proto),
    }
}

/// Puts `event` about `ticket` into the outbox, in the caller's transaction.
pub async fn enqueue<E: pos_proto::BusEvent>(tx: &mut Tx, ticket: &Ticket, event: &E) -> Result<(), sqlx::Error> {
    outbox::enqueue(tx, &Envelope::new(event, &ticket.region_code).with_appeal(&ticket.appeal_id)).await
}

/// A workflow transition's events: its `ticket.status_changed`, and what each effect implies.
/// `ticket` is the ticket after the transition.
pub async fn publish(tx: &mut Tx, ticket: &Ticket, transition: &Transition, actor: &str) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let mut changed = status_changed(
        ticket,
        StatusChange {
            from: Some(transition.from),
            to: transition.to.stage(),
            action: transition.action,
            actor,
            at: now,
            comment: transition.comment.clone(),
        },
    );
    for effect in &transition.effects {
        match effect {
            // The event names the ticket's assignee as it is now.
            Effect::Assign(_) => {}
            Effect::SetExecutionDue(due) => changed.execution_due = Some(pos_proto::time::to_proto(*due)),
            Effect::Rate(rating) => changed.rating = rating.get(),
            // Their own events follow `ticket.status_changed`.
            Effect::ReleaseAnswer(_) | Effect::Reopen | Effect::Reroute { .. } => {}
        }
    }
    enqueue(tx, ticket, &changed).await?;
    for effect in &transition.effects {
        match effect {
            Effect::ReleaseAnswer(answer) => {
                let follow_up_at = match &answer.kind {
                    AnswerKind::Postponed { follow_up_at } => Some(pos_proto::time::to_proto(*follow_up_at)),
                    AnswerKind::Resolved | AnswerKind::NotResolved | AnswerKind::Rejected { .. } => None,
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
                enqueue(tx, ticket, &approved).await?;
            }
            Effect::Reopen => {
                let reopened = ev::TicketReopened {
                    ticket_id: ticket.id.clone(),
                    appeal_id: ticket.appeal_id.clone(),
                    number: ticket.number,
                    organization_id: ticket.organization_id.clone(),
                    region_code: ticket.region_code.clone(),
                    time_zone: ticket.time_zone.clone(),
                    comment: transition.comment.clone(),
                    review_round: ticket.review_round,
                    reopened_at: Some(pos_proto::time::to_proto(now)),
                };
                enqueue(tx, ticket, &reopened).await?;
            }
            Effect::Reroute { to_organization_id } => {
                let reroute = ev::TicketRerouteRequested {
                    ticket_id: ticket.id.clone(),
                    appeal_id: ticket.appeal_id.clone(),
                    region_code: ticket.region_code.clone(),
                    from_organization_id: ticket.organization_id.clone(),
                    // Empty: routing sends it up to the parent.
                    to_organization_id: to_organization_id.clone().unwrap_or_default(),
                    reason: transition.comment.clone(),
                    actor: actor.to_owned(),
                    requested_at: Some(pos_proto::time::to_proto(now)),
                };
                enqueue(tx, ticket, &reroute).await?;
            }
            Effect::Assign(_) | Effect::SetExecutionDue(_) | Effect::Rate(_) => {}
        }
    }
    Ok(())
}

//! Reactions to events: a routed appeal becomes a ticket in the addressee's New folder, and the
//! SLA service's deadlines are mirrored for the list.

use async_trait::async_trait;
use pos_platform::consumer::{HandleError, Handler};
use pos_platform::{Envelope, Tx};
use pos_proto::v1::events::{self as ev, AppealRouted, SlaArmed, SlaOverdue, TicketAction};

use crate::events::{self, StatusChange};
use crate::store::deadlines::{self, Clock};
use crate::store::tickets::{self, Routed};

/// `appeal.routed` → a ticket in New, its history's first line, and `ticket.status_changed`.
pub struct AppealRoutedHandler;

#[async_trait]
impl Handler for AppealRoutedHandler {
    type Event = AppealRouted;

    async fn handle(&self, tx: &mut Tx, routed: AppealRouted, _: &Envelope) -> Result<(), HandleError> {
        if routed.appeal_id.is_empty() || routed.organization.as_ref().is_none_or(|o| o.id.is_empty()) {
            return Err(HandleError::poison(anyhow::anyhow!("appeal.routed without an appeal or an organization")));
        }
        let trace_id = pos_platform::telemetry::current_trace_id();
        let (ticket, previous) = match tickets::create_from_routed(tx, &routed, &trace_id).await? {
            Routed::Duplicate => {
                tracing::info!(appeal_id = %routed.appeal_id, "ticket already exists, nothing to do");
                return Ok(());
            }
            Routed::Created { ticket, previous } => (ticket, previous),
        };
        if let Some(previous) = previous {
            // The old stint ended: its organization's folders show where the appeal went.
            tracing::info!(ticket_id = %previous.id, successor = %ticket.id, "ticket superseded by a reroute");
            let ended = StatusChange {
                from: Some(previous.stage()),
                to: previous.stage(),
                action: TicketAction::Redirected,
                actor: "routing",
                at: previous.updated_at,
                comment: format!("routed to {}", ticket.organization_id),
            };
            events::enqueue(tx, &previous, &events::status_changed(&previous, ended)).await?;
        }
        tracing::info!(
            ticket_id = %ticket.id,
            appeal_id = %ticket.appeal_id,
            organization_id = %ticket.organization_id,
            "ticket created in the new folder"
        );
        let created = StatusChange {
            from: None,
            to: ticket.stage(),
            action: TicketAction::Created,
            actor: "routing",
            at: ticket.created_at,
            comment: String::new(),
        };
        events::enqueue(tx, &ticket, &events::status_changed(&ticket, created)).await?;
        Ok(())
    }
}

pos_platform::event_set! {
    /// The SLA service's deadlines the cabinet lists by. The SLA service owns the clocks; the
    /// cabinet only mirrors them.
    pub enum SlaEvent {
        Armed(SlaArmed),
        Overdue(SlaOverdue),
    }
}

/// `sla.armed` and `sla.overdue`: the deadlines the list filters and sorts by.
pub struct SlaHandler;

#[async_trait]
impl Handler for SlaHandler {
    type Event = SlaEvent;

    async fn handle(&self, tx: &mut Tx, event: SlaEvent, envelope: &Envelope) -> Result<(), HandleError> {
        let (changed, appeal_id) = match event {
            SlaEvent::Armed(armed) => {
                let (deadline, clock) = deadline(armed.deadline)?;
                let Some(due) = deadline.due.as_ref().and_then(pos_proto::time::from_proto) else {
                    return Err(HandleError::poison(anyhow::anyhow!("sla.armed without a due time")));
                };
                let due = pos_platform::db::to_micros(due);
                let (ticket_id, appeal_id, organization_id) =
                    (&deadline.ticket_id, &deadline.appeal_id, &deadline.organization_id);
                (deadlines::set_due(tx, ticket_id, appeal_id, organization_id, clock, due).await?, deadline.appeal_id)
            }
            SlaEvent::Overdue(overdue) => {
                let (deadline, clock) = deadline(overdue.deadline)?;
                let (ticket_id, appeal_id, organization_id) =
                    (&deadline.ticket_id, &deadline.appeal_id, &deadline.organization_id);
                match clock {
                    Clock::Answer => {
                        (deadlines::set_overdue(tx, ticket_id, appeal_id, organization_id).await?, deadline.appeal_id)
                    }
                    // The list filters by the answer deadline only.
                    Clock::Execution => return Ok(()),
                }
            }
        };
        if changed == 0 {
            // The SLA service may arm before the ticket exists or after it moved on; nothing to mirror.
            tracing::info!(%appeal_id, event = %envelope.type_name, "no ticket for the deadline");
        }
        Ok(())
    }
}

/// The deadline an `sla.*` event is about, and its clock; an event without either is poison.
fn deadline(deadline: Option<ev::SlaDeadline>) -> Result<(ev::SlaDeadline, Clock), HandleError> {
    let Some(deadline) = deadline else {
        return Err(HandleError::poison(anyhow::anyhow!("sla event without a deadline")));
    };
    let clock = match ev::SlaClock::try_from(deadline.clock) {
        Ok(ev::SlaClock::Answer) => Clock::Answer,
        Ok(ev::SlaClock::Execution) => Clock::Execution,
        Ok(ev::SlaClock::Unspecified) | Err(_) => {
            return Err(HandleError::poison(anyhow::anyhow!("sla event with an unknown clock")));
        }
    };
    Ok((deadline, clock))
}

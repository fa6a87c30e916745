//! Reactions to events: a routed appeal becomes a ticket in the addressee's New folder.

use async_trait::async_trait;
use pos_platform::consumer::{HandleError, Handler};
use pos_platform::{Envelope, Tx, outbox};
use pos_proto::v1::events::{self as ev, AppealRouted, TicketStatusChanged};

use crate::folder::Folder;
use crate::store::{self, Clock};

/// `appeal.routed` → a ticket in New, its history's first line, and `ticket.status_changed`.
pub struct AppealRoutedHandler;

#[async_trait]
impl Handler for AppealRoutedHandler {
    async fn handle(&self, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandleError> {
        let routed: AppealRouted = envelope.decode()?;
        if routed.appeal_id.is_empty() || routed.organization.as_ref().is_none_or(|o| o.id.is_empty()) {
            return Err(HandleError::poison(anyhow::anyhow!("appeal.routed without an appeal or an organization")));
        }
        let trace_id = pos_platform::telemetry::current_trace_id();
        let (ticket, previous) = match store::create_from_routed(tx, &routed, &trace_id).await? {
            store::Routed::Duplicate => {
                tracing::info!(appeal_id = %routed.appeal_id, "ticket already exists, nothing to do");
                return Ok(());
            }
            store::Routed::Created { ticket, previous } => (ticket, previous),
        };
        if let Some(previous) = previous {
            // The old stint ended: its organization's folders show where the appeal went.
            tracing::info!(ticket_id = %previous.id, successor = %ticket.id, "ticket superseded by a reroute");
            let ended = ev::TicketStatusChanged {
                ticket_id: previous.id.clone(),
                appeal_id: previous.appeal_id.clone(),
                number: previous.number,
                organization_id: previous.organization_id.clone(),
                from_folder: previous.folder.to_proto() as i32,
                to_folder: previous.stage.folder().to_proto() as i32,
                status: previous.stage.as_str().into(),
                actor: "routing".into(),
                at: Some(pos_proto::time::to_proto(previous.updated_at)),
                region_code: previous.region_code.clone(),
                action: ev::TicketAction::Redirected as i32,
                comment: format!("routed to {}", ticket.organization_id),
                time_zone: previous.time_zone.clone(),
                ..Default::default()
            };
            outbox::enqueue(tx, &Envelope::new(&ended, &previous.region_code).with_appeal(&previous.appeal_id)).await?;
        }
        tracing::info!(
            ticket_id = %ticket.id,
            appeal_id = %ticket.appeal_id,
            organization_id = %ticket.organization_id,
            "ticket created in the new folder"
        );
        let changed = TicketStatusChanged {
            ticket_id: ticket.id.clone(),
            appeal_id: ticket.appeal_id.clone(),
            number: ticket.number,
            organization_id: ticket.organization_id.clone(),
            from_folder: pos_proto::v1::Folder::Unspecified as i32,
            to_folder: Folder::New.to_proto() as i32,
            status: ticket.status.clone(),
            actor: "routing".into(),
            at: Some(pos_proto::time::to_proto(ticket.created_at)),
            region_code: ticket.region_code.clone(),
            action: pos_proto::v1::events::TicketAction::Created as i32,
            assignee_id: ticket.assignee_id.clone(),
            time_zone: routed.time_zone.clone(),
            ..Default::default()
        };
        outbox::enqueue(tx, &Envelope::new(&changed, &ticket.region_code).with_appeal(&ticket.appeal_id)).await?;
        Ok(())
    }
}

/// `sla.armed` and `sla.overdue`: the deadlines the list filters and sorts by. The SLA service owns
/// the clocks; the cabinet only mirrors them.
pub struct SlaHandler;

#[async_trait]
impl Handler for SlaHandler {
    async fn handle(&self, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandleError> {
        let (deadline, overdue) = match envelope.type_name.as_str() {
            "pos.v1.events.SlaArmed" => (envelope.decode::<ev::SlaArmed>()?.deadline, false),
            "pos.v1.events.SlaOverdue" => (envelope.decode::<ev::SlaOverdue>()?.deadline, true),
            // Other sla.* events carry nothing the cabinet lists by.
            _ => return Ok(()),
        };
        let Some(deadline) = deadline else {
            return Err(HandleError::poison(anyhow::anyhow!("sla event without a deadline")));
        };
        let clock = match ev::SlaClock::try_from(deadline.clock) {
            Ok(ev::SlaClock::Answer) => Clock::Answer,
            Ok(ev::SlaClock::Execution) => Clock::Execution,
            _ => return Err(HandleError::poison(anyhow::anyhow!("sla event with an unknown clock"))),
        };
        let (ticket_id, appeal_id, organization_id) =
            (&deadline.ticket_id, &deadline.appeal_id, &deadline.organization_id);
        let changed = if overdue {
            if clock != Clock::Answer {
                return Ok(());
            }
            store::set_overdue(tx, ticket_id, appeal_id, organization_id).await?
        } else {
            let Some(due) = deadline.due.as_ref().and_then(pos_proto::time::from_proto) else {
                return Err(HandleError::poison(anyhow::anyhow!("sla.armed without a due time")));
            };
            store::set_due(tx, ticket_id, appeal_id, organization_id, clock, pos_platform::db::to_micros(due)).await?
        };
        if changed == 0 {
            // The SLA service may arm before the ticket exists or after it moved on; nothing to mirror.
            tracing::info!(appeal_id = %appeal_id, event = %envelope.type_name, "no ticket for the deadline");
        }
        Ok(())
    }
}

//! Reactions to events: a routed appeal becomes a ticket in the addressee's New folder, and the
//! SLA service's deadlines are mirrored for the list.
//!
//! The SLA service arms a deadline from the same `appeal.routed` that creates the ticket, so its
//! `sla.*` events often arrive first (always a race with replicas). Such an event is parked,
//! keyed by the appeal and the organization whose stint it is about, and applied in the
//! transaction that creates that ticket. A deadline of a stint that already ended (one that
//! arrives after a reroute moved the appeal on) waits there too, listed by
//! `pos_platform::parking::waiting`: the new ticket carries the appeal's deadline over and gets
//! its own `sla.armed` when the SLA service sets a new one.

use async_trait::async_trait;
use pos_platform::consumer::{HandleError, Handler};
use pos_platform::{Envelope, EventSet, Tx, parking};
use pos_proto::v1::events::{self as ev, AppealRouted, SlaArmed, SlaOverdue, TicketAction};

use crate::events::{self, StatusChange};
use crate::store::deadlines::{self, Clock};
use crate::store::tickets::{self, Routed, Ticket};

/// The consumer of `appeal.routed` (its queue and inbox name).
pub const ROUTED_QUEUE: &str = "ticketing.appeal-routed";
/// The consumer of the SLA service's deadlines; also the name its early events are parked under.
pub const SLA_QUEUE: &str = "ticketing.sla";

/// `appeal.routed` → a ticket in New, its history's first line, and `ticket.status_changed`.
pub struct AppealRoutedHandler;

#[async_trait]
impl Handler for AppealRoutedHandler {
    type Event = AppealRouted;

    async fn handle(&self, tx: &mut Tx, routed: AppealRouted, envelope: &Envelope) -> Result<(), HandleError> {
        if routed.appeal_id.is_empty() || routed.organization.as_ref().is_none_or(|o| o.id.is_empty()) {
            return Err(HandleError::poison(anyhow::anyhow!("appeal.routed without an appeal or an organization")));
        }
        let trace_id = pos_platform::telemetry::event_trace_id(&envelope.headers);
        let (ticket, previous) = match tickets::create_from_routed(tx, &routed, &trace_id).await? {
            Routed::Duplicate => {
                tracing::info!(appeal_id = %routed.appeal_id, "ticket already exists, nothing to do");
                return Ok(());
            }
            Routed::Created { ticket, previous } => (ticket, previous),
        };
        let first = previous.is_none();
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
        crate::measures::ticket_created(&ticket, first);
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
        apply_parked(tx, &ticket).await
    }
}

/// The deadlines that arrived before `ticket`, just created, applied to it in arrival order.
async fn apply_parked(tx: &mut Tx, ticket: &Ticket) -> Result<(), HandleError> {
    for envelope in parking::take(tx, SLA_QUEUE, &stint(&ticket.appeal_id, &ticket.organization_id)).await? {
        let event = SlaEvent::decode(&envelope)?;
        match mirror(tx, event).await? {
            Mirrored::Applied | Mirrored::Unlisted => {}
            // Parked under this ticket's appeal and organization, so it cannot miss the ticket.
            Mirrored::NoTicket => {
                tracing::error!(appeal_id = %ticket.appeal_id, ticket_id = %ticket.id, "a parked deadline does not match its ticket");
            }
        }
    }
    Ok(())
}

/// The parking key of an appeal's stint at an organization: what an `sla.*` event is about.
fn stint(appeal_id: &str, organization_id: &str) -> String {
    format!("{appeal_id}/{organization_id}")
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
        let (appeal_id, organization_id) = match &event {
            SlaEvent::Armed(SlaArmed { deadline, .. }) | SlaEvent::Overdue(SlaOverdue { deadline, .. }) => {
                let deadline = deadline.clone().unwrap_or_default();
                (deadline.appeal_id, deadline.organization_id)
            }
        };
        if appeal_id.is_empty() || organization_id.is_empty() {
            return Err(HandleError::poison(anyhow::anyhow!("sla event without its appeal or organization")));
        }
        if let Mirrored::Applied | Mirrored::Unlisted = mirror(tx, event.clone()).await? {
            return Ok(());
        }
        // No ticket of this stint yet: ticketing has not handled its appeal.routed. Look again
        // under the stint's lock (the creating transaction may be committing now), then park.
        let key = stint(&appeal_id, &organization_id);
        parking::lock(tx, SLA_QUEUE, &key).await?;
        match mirror(tx, event).await? {
            Mirrored::Applied | Mirrored::Unlisted => {}
            Mirrored::NoTicket => {
                parking::park(tx, SLA_QUEUE, &key, envelope).await?;
            }
        }
        Ok(())
    }
}

/// What mirroring a deadline did.
enum Mirrored {
    Applied,
    /// A deadline the list does not show.
    Unlisted,
    /// The appeal has no current ticket at the deadline's organization.
    NoTicket,
}

/// Mirrors the deadline of `event` on the appeal's current ticket at its organization. The
/// ticket id an `sla.*` event carries may be a stint's predecessor (the SLA service keeps its
/// clock through a reroute), so the ticket is found by appeal and organization.
async fn mirror(tx: &mut Tx, event: SlaEvent) -> Result<Mirrored, HandleError> {
    let changed = match event {
        SlaEvent::Armed(armed) => {
            let (deadline, clock) = deadline(armed.deadline)?;
            let Some(due) = deadline.due.as_ref().and_then(pos_proto::time::from_proto) else {
                return Err(HandleError::poison(anyhow::anyhow!("sla.armed without a due time")));
            };
            let due = pos_platform::db::to_micros(due);
            let (ticket_id, appeal_id, organization_id) =
                (&deadline.ticket_id, &deadline.appeal_id, &deadline.organization_id);
            deadlines::set_due(tx, ticket_id, appeal_id, organization_id, clock, due).await?
        }
        SlaEvent::Overdue(overdue) => {
            let (deadline, clock) = deadline(overdue.deadline)?;
            let (ticket_id, appeal_id, organization_id) =
                (&deadline.ticket_id, &deadline.appeal_id, &deadline.organization_id);
            match clock {
                Clock::Answer => deadlines::set_overdue(tx, ticket_id, appeal_id, organization_id).await?,
                // The list filters by the answer deadline only.
                Clock::Execution => return Ok(Mirrored::Unlisted),
            }
        }
    };
    Ok(if changed == 0 { Mirrored::NoTicket } else { Mirrored::Applied })
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

//! Reactions to events: a routed appeal becomes a ticket in the addressee's New folder.

use async_trait::async_trait;
use pos_platform::consumer::{HandleError, Handler};
use pos_platform::{Envelope, Tx, outbox};
use pos_proto::v1::events::{AppealRouted, TicketStatusChanged};

use crate::folder::Folder;
use crate::store;

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
        let Some(ticket) = store::create_from_routed(tx, &routed, &trace_id).await? else {
            tracing::info!(appeal_id = %routed.appeal_id, "ticket already exists, nothing to do");
            return Ok(());
        };
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

//! Keeps the applicant's view of an appeal: routing from `appeal.routed`, the status from
//! `ticket.status_changed`. Idempotent through the platform's inbox; reordering-safe because
//! each change carries its event time and older ones are ignored.

use async_trait::async_trait;
use pos_platform::bus::Envelope;
use pos_platform::config::PlatformConfig;
use pos_platform::consumer::{Consumer, HandleError, Handler};
use pos_platform::db::Tx;
use pos_proto::v1::Folder;
use pos_proto::v1::events::{AppealRouted, TicketStatusChanged};

use crate::store::{self, Applied, RoutingRecord};

pub const ROUTED_QUEUE: &str = "intake.appeal-routed";
pub const STATUS_QUEUE: &str = "intake.ticket-status";

/// The two consumers intake runs, each bound to its own event in the configured regions.
pub fn consumers(config: &PlatformConfig) -> Vec<Consumer> {
    vec![
        Consumer::new(ROUTED_QUEUE, &config.regions, RoutedHandler),
        Consumer::new(STATUS_QUEUE, &config.regions, StatusHandler),
    ]
}

/// Applies `appeal.routed` to the appeal's view: who answers, and by when.
pub struct RoutedHandler;

#[async_trait]
impl Handler for RoutedHandler {
    type Event = AppealRouted;

    async fn handle(&self, tx: &mut Tx, event: AppealRouted, envelope: &Envelope) -> Result<(), HandleError> {
        let routed_at = event.routed_at.as_ref().and_then(pos_proto::time::from_proto).unwrap_or(envelope.timestamp);
        let routing = RoutingRecord {
            organization: event.organization.clone().unwrap_or_default(),
            period_days: event.period_days,
            working_days: event.working_days,
            fast_track: event.fast_track,
            delegated_by_auto_rule: event.delegated_by_auto_rule,
            explanation: event.explanation.clone(),
            routed_at,
        };
        if routing.organization.id.is_empty() {
            return Err(HandleError::poison(anyhow::anyhow!(
                "appeal.routed for appeal {} names no organization",
                event.appeal_id
            )));
        }
        let applied = store::apply_routing(tx, &event.appeal_id, &routing).await?;
        view_updated(&event.appeal_id, applied, envelope)
    }
}

/// Applies `ticket.status_changed` to the appeal's view: the status the applicant reads.
pub struct StatusHandler;

#[async_trait]
impl Handler for StatusHandler {
    type Event = TicketStatusChanged;

    async fn handle(&self, tx: &mut Tx, event: TicketStatusChanged, envelope: &Envelope) -> Result<(), HandleError> {
        let at = event.at.as_ref().and_then(pos_proto::time::from_proto).unwrap_or(envelope.timestamp);
        let status = applicant_status(&event);
        let applied = store::apply_status(tx, &event.appeal_id, &status, at).await?;
        view_updated(&event.appeal_id, applied, envelope)
    }
}

/// What a change to the view means for the delivery.
fn view_updated(appeal_id: &str, applied: Applied, envelope: &Envelope) -> Result<(), HandleError> {
    match applied {
        Applied::Changed => {
            tracing::debug!(%appeal_id, event = envelope.event(), "appeal view updated");
            Ok(())
        }
        Applied::Stale => {
            tracing::debug!(%appeal_id, event = envelope.event(), "older than the appeal view, ignored");
            Ok(())
        }
        // Intake commits an appeal before its event can be published, so every later event
        // names an appeal intake has: an unknown one was never registered here.
        Applied::UnknownAppeal => Err(HandleError::poison(anyhow::anyhow!(
            "{} names appeal {appeal_id:?}, which intake never registered",
            envelope.event()
        ))),
    }
}

/// The ticket's status line, or the folder when the line is empty.
fn applicant_status(event: &TicketStatusChanged) -> String {
    if !event.status.trim().is_empty() {
        return event.status.clone();
    }
    match event.to_folder() {
        Folder::New => "new",
        Folder::InWork => "in work",
        Folder::Returned => "returned",
        Folder::Processed => "processed",
        Folder::SentForApproval => "sent for approval",
        Folder::ReturnedToCoordination => "returned to coordination",
        Folder::Unspecified => "in work",
    }
    .to_owned()
}

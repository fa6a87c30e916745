//! What the SLA service does with the events it consumes: `appeal.routed` arms the answer
//! deadline (a reroute hands it to the new addressee, kept or anew as the policy says), `ticket.status_changed` pauses, resumes, stops
//! and sets the executor's stage, `ticket.reopened` arms a re-review round.
//!
//! Ticketing creates its ticket from the same `appeal.routed`, so its status events can reach
//! this service before the appeal's clock exists (always a race with replicas). They are parked,
//! keyed by the appeal, and applied in the transaction that arms the appeal's first clock.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pos_platform::consumer::{HandleError, Handler};
use pos_platform::db::Dialect;
use pos_platform::{Envelope, EventSet, Tx, parking};
use pos_proto::v1::events::{self as ev, AppealRouted, TicketAction, TicketReopened, TicketStatusChanged};
use tokio::sync::Notify;

use crate::deadline;
use crate::engine::{self, EngineError};
use crate::store::{self, Clock, ClockKind, LogKind, State};

pub const ROUTED_QUEUE: &str = "sla.appeal-routed";
pub const STATUS_QUEUE: &str = "sla.ticket-status";
pub const REOPENED_QUEUE: &str = "sla.ticket-reopened";

impl From<EngineError> for HandleError {
    fn from(error: EngineError) -> HandleError {
        match error {
            EngineError::UnknownZone(_) | EngineError::Uncomputable(_) => HandleError::poison(error),
            EngineError::Store(error) => HandleError::from(error),
        }
    }
}

/// What every handler shares: the dialect (row locks) and the timer loop's doorbell.
#[derive(Clone)]
pub struct Shared {
    pub dialect: Dialect,
    pub timers: Arc<Notify>,
}

impl Shared {
    /// Rings once the handler's transaction is about to commit; the timer loop rereads the
    /// next due time (and polls anyway, so a ring before the commit is not lost).
    fn ring(&self) {
        self.timers.notify_one();
    }
}

fn time(ts: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(pos_proto::time::from_proto)
}

/// `appeal.routed` → the answer deadline, round 1.
pub struct RoutedHandler(pub Shared);

#[async_trait]
impl Handler for RoutedHandler {
    type Event = AppealRouted;

    async fn handle(&self, tx: &mut Tx, mut routed: AppealRouted, _: &Envelope) -> Result<(), HandleError> {
        let organization = routed.organization.clone().unwrap_or_default();
        if routed.appeal_id.is_empty() || organization.id.is_empty() {
            return Err(HandleError::poison(anyhow::anyhow!("appeal.routed without an appeal or an organization")));
        }
        // The addressee's region decides the calendar and the policy; the applicant's region
        // is the fallback for an addressee without one (federal bodies).
        let region = if organization.region_code.is_empty() {
            routed.region_code.clone()
        } else {
            organization.region_code.clone()
        };
        if routed.time_zone.is_empty()
            && let Some(zone) = pos_regions::zone(&region)
        {
            // An event without the addressee's zone: the region's own.
            routed.time_zone = zone.name().to_owned();
        }
        let tz = engine::zone(&routed.time_zone)?;
        let (answer, execution) = engine::lock_both(tx, self.0.dialect, &routed.appeal_id).await?;
        let policy = store::policy_for(tx, &region).await?;
        let calendar = store::calendar_for(tx, &region).await?;
        let at = time(routed.routed_at.as_ref()).unwrap_or_else(Utc::now);

        if let Some(existing) = answer {
            if !routed.reroute {
                // A first routing once the clock runs (a re-publish, or one that a reroute
                // overtook): the clock already has its addressee.
                return Ok(());
            }
            return redirected(&self.0, tx, &routed, existing, execution, (&region, tz, at), &policy, &calendar).await;
        }

        // The first clock of the appeal: its period runs from the registration (a reroute that
        // overtook the first routing carries it as well).
        let registered_at = time(routed.registered_at.as_ref())
            .ok_or_else(|| HandleError::poison(anyhow::anyhow!("appeal.routed without registered_at")))?;
        let decision = policy.resolve(&routed.fact_id, routed.fast_track);
        let due = deadline::due(registered_at, tz, decision.period, decision.move_to_next_working_day, &calendar)
            .ok_or_else(|| EngineError::Uncomputable(format!("{} from {registered_at}", decision.period)))?;
        let mut detail = decision.reason.clone();
        let routed_period = crate::policy::Period {
            days: u32::try_from(routed.period_days).unwrap_or(0),
            working_days: routed.working_days,
        };
        if routed_period != decision.period {
            // The policy decides; a difference from routing's classifier is worth a look.
            tracing::warn!(
                appeal_id = %routed.appeal_id, fact_id = %routed.fact_id, routing = %routed_period,
                sla = %decision.period, "sla policy period differs from the classifier's"
            );
            detail.push_str(&format!("; routing proposed {routed_period}"));
        }
        let last_year = due.with_timezone(&tz).date_naive();
        if decision.period.working_days && !calendar.covers(chrono::Datelike::year(&last_year)) {
            tracing::warn!(appeal_id = %routed.appeal_id, region = %region, "no production calendar for the deadline's year: weekends only");
            detail.push_str("; no production calendar for the year: only weekends counted");
        }
        let clock = Clock {
            appeal_id: routed.appeal_id.clone(),
            kind: ClockKind::Answer,
            ticket_id: String::new(),
            organization_id: organization.id,
            region_code: region,
            time_zone: routed.time_zone.clone(),
            fact_id: routed.fact_id.clone(),
            assignee_id: routed.target_executor_id.clone(),
            round: 1,
            fast_track: decision.fast_track,
            period: decision.period,
            started_at: registered_at,
            due_at: due,
            span: due - registered_at,
            state: State::Running,
            paused_at: None,
            overdue: false,
            met: false,
            stopped_at: None,
            generation: 0,
            warnings: policy.warnings.clone(),
        };
        engine::arm(tx, clock, None, &calendar, at, &detail).await?;
        self.0.ring();
        apply_parked(&self.0, tx, &routed.appeal_id).await
    }
}

/// A reroute (a redirect or a return to coordination) of an appeal whose answer clock runs:
/// the new addressee takes the clock over. The policy keeps the deadline, or starts a new period
/// at the redirect; either way `sla.armed` names the new organization (so its ticket shows the
/// deadline, and warnings and the breach go to it), the executor's stage ends, and the log
/// records the redirect once.
#[allow(clippy::too_many_arguments)]
async fn redirected(
    shared: &Shared,
    tx: &mut Tx,
    routed: &AppealRouted,
    existing: Clock,
    execution: Option<Clock>,
    (region, tz, at): (&str, chrono_tz::Tz, DateTime<Utc>),
    policy: &crate::policy::Policy,
    calendar: &crate::calendar::Calendar,
) -> Result<(), HandleError> {
    let organization = routed.organization.clone().unwrap_or_default();
    let from = existing.organization_id.clone();
    let mut stage = String::new();
    if let Some(execution) = execution.filter(|c| c.state != State::Stopped) {
        // Ends with the stint at the old organization; the redirect's one log entry says so.
        engine::stop_unlogged(tx, execution, false, at).await?;
        stage = "; the executor's stage ended".to_owned();
    }
    if policy.redirect_keeps_deadline || existing.state == State::Stopped {
        let kept = Clock {
            organization_id: organization.id.clone(),
            region_code: region.to_owned(),
            time_zone: routed.time_zone.clone(),
            ..existing
        };
        store::save_clock(tx, &kept).await?;
        let detail = format!("rerouted from {from} to {}: the deadline is kept{stage}", organization.id);
        store::append_log(tx, &kept, LogKind::Kept, at, &detail).await?;
        // The clock's timers read its row when they fire, so they follow the new addressee; the
        // new organization's ticket learns the deadline from this event.
        let stamp = Some(pos_proto::time::to_proto(at));
        engine::publish(tx, &kept, &ev::SlaArmed { deadline: Some(engine::sla_deadline(&kept)), at: stamp }).await?;
        tracing::info!(appeal_id = %routed.appeal_id, from = %from, to = %organization.id, "deadline kept through a redirect");
        return Ok(());
    }
    let decision = policy.resolve(&routed.fact_id, routed.fast_track);
    let due = deadline::due(at, tz, decision.period, decision.move_to_next_working_day, calendar)
        .ok_or_else(|| EngineError::Uncomputable(format!("{} from {at}", decision.period)))?;
    let clock = Clock {
        organization_id: organization.id.clone(),
        region_code: region.to_owned(),
        time_zone: routed.time_zone.clone(),
        fact_id: routed.fact_id.clone(),
        fast_track: decision.fast_track,
        period: decision.period,
        started_at: at,
        due_at: due,
        span: due - at,
        warnings: policy.warnings.clone(),
        ..existing.clone()
    };
    let detail = format!("rerouted from {from} to {}: a new period, {}{stage}", organization.id, decision.reason);
    engine::arm(tx, clock, Some(&existing), calendar, at, &detail).await?;
    shared.ring();
    Ok(())
}

pos_platform::event_set! {
    /// The ticket's events that change an appeal's clocks, as they wait for it.
    pub enum TicketEvent {
        StatusChanged(TicketStatusChanged),
        Reopened(TicketReopened),
    }
}

/// The ticket's events that arrived before the appeal's clock, just armed, applied to it in the
/// order ticketing published them (its two queues are taken back together).
async fn apply_parked(shared: &Shared, tx: &mut Tx, appeal_id: &str) -> Result<(), HandleError> {
    let mut parked = parking::take(tx, STATUS_QUEUE, appeal_id).await?;
    parked.extend(parking::take(tx, REOPENED_QUEUE, appeal_id).await?);
    // Stable: one consumer's events keep their arrival order when published at the same instant.
    parked.sort_by_key(|envelope| envelope.timestamp);
    for envelope in parked {
        match apply(shared, tx, TicketEvent::decode(&envelope)?).await? {
            Clocked::Applied => {}
            // Just armed in this transaction, so it cannot be missing.
            Clocked::NoClock => {
                tracing::error!(%appeal_id, event = envelope.event(), "a parked ticket event found no clock");
            }
        }
    }
    Ok(())
}

/// Whether a ticket's event found the appeal's clock.
enum Clocked {
    Applied,
    NoClock,
}

/// Applies a ticket's event to the appeal's clocks.
async fn apply(shared: &Shared, tx: &mut Tx, event: TicketEvent) -> Result<Clocked, HandleError> {
    match event {
        TicketEvent::StatusChanged(changed) => status_changed(shared, tx, changed).await,
        TicketEvent::Reopened(reopened) => reopened_round(shared, tx, reopened).await,
    }
}

/// Applies a ticket's event; when the appeal has no clock yet, looks again under the appeal's
/// parking lock (the transaction arming it may be committing) and parks the event for
/// `consumer` if there still is none.
async fn apply_or_park(
    shared: &Shared,
    tx: &mut Tx,
    consumer: &str,
    event: TicketEvent,
    envelope: &Envelope,
) -> Result<(), HandleError> {
    let appeal_id = match &event {
        TicketEvent::StatusChanged(changed) => changed.appeal_id.clone(),
        TicketEvent::Reopened(reopened) => reopened.appeal_id.clone(),
    };
    if let Clocked::Applied = apply(shared, tx, event.clone()).await? {
        return Ok(());
    }
    parking::lock(tx, consumer, &appeal_id).await?;
    match apply(shared, tx, event).await? {
        Clocked::Applied => {}
        Clocked::NoClock => {
            parking::park(tx, consumer, &appeal_id, envelope).await?;
        }
    }
    Ok(())
}

/// `ticket.status_changed` → pause, resume, stop, the executor's stage.
pub struct StatusHandler(pub Shared);

#[async_trait]
impl Handler for StatusHandler {
    type Event = TicketStatusChanged;

    async fn handle(&self, tx: &mut Tx, changed: TicketStatusChanged, envelope: &Envelope) -> Result<(), HandleError> {
        apply_or_park(&self.0, tx, STATUS_QUEUE, TicketEvent::StatusChanged(changed), envelope).await
    }
}

/// Applies a ticket's status change to the appeal's clocks.
async fn status_changed(shared: &Shared, tx: &mut Tx, changed: TicketStatusChanged) -> Result<Clocked, HandleError> {
    let at = time(changed.at.as_ref()).unwrap_or_else(Utc::now);
    let action = TicketAction::try_from(changed.action).unwrap_or(TicketAction::Unspecified);
    let (answer, execution) = engine::lock_both(tx, shared.dialect, &changed.appeal_id).await?;
    let Some(mut answer) = answer else {
        // Ticketing acts only on a routed appeal: this change overtook our appeal.routed.
        // Even one that changes no clock carries the ticket's id, which the clock keeps.
        return Ok(Clocked::NoClock);
    };
    if answer.ticket_id.is_empty() && !changed.ticket_id.is_empty() {
        answer.ticket_id = changed.ticket_id.clone();
        store::save_clock(tx, &answer).await?;
    }
    let region = answer.region_code.clone();
    match action {
        TicketAction::ExecutorAssigned => {
            let calendar = store::calendar_for(tx, &region).await?;
            let policy = store::policy_for(tx, &region).await?;
            let tz = engine::zone(&answer.time_zone)?;
            let (due, source) = match time(changed.execution_due.as_ref()) {
                // The coordinator names a day: the stage ends with it, like every deadline
                // (whatever time of day, and fraction of a second, the request carried).
                Some(due) => {
                    let day = due.with_timezone(&tz).date_naive();
                    let due = deadline::end_of_local_day(day, tz)
                        .ok_or_else(|| EngineError::Uncomputable(format!("the end of {day}")))?;
                    (due.min(answer.due_at), "set by the coordinator".to_owned())
                }
                None => {
                    let due =
                        deadline::execution_due(answer.started_at, answer.due_at, policy.execution_share_percent, tz)
                            .ok_or_else(|| EngineError::Uncomputable("execution deadline".into()))?;
                    (due, format!("{}% of the answer period", policy.execution_share_percent))
                }
            };
            let clock = Clock {
                kind: ClockKind::Execution,
                ticket_id: changed.ticket_id.clone(),
                assignee_id: changed.assignee_id.clone(),
                started_at: at,
                due_at: due,
                span: due - at,
                warnings: Vec::new(),
                ..answer.clone()
            };
            let detail = format!("executor {} assigned; stage deadline {source}", changed.assignee_id);
            engine::arm(tx, clock, execution.as_ref(), &calendar, at, &detail).await?;
            shared.ring();
        }
        TicketAction::InformationRequested => {
            engine::pause(tx, answer, at, "information requested from the applicant").await?;
            if let Some(execution) = execution {
                engine::pause(tx, execution, at, "information requested from the applicant").await?;
            }
        }
        TicketAction::InformationReceived => {
            let calendar = store::calendar_for(tx, &region).await?;
            engine::resume(tx, answer, &calendar, at, "information received").await?;
            if let Some(execution) = execution {
                engine::resume(tx, execution, &calendar, at, "information received").await?;
            }
            shared.ring();
        }
        TicketAction::AnswerPrepared | TicketAction::SentForApproval | TicketAction::SentForAgreement => {
            if let Some(execution) = execution {
                engine::stop(tx, execution, true, at, "answer prepared").await?;
            }
        }
        TicketAction::Approved => {
            if let Some(execution) = execution {
                engine::stop(tx, execution, true, at, "answer approved").await?;
            }
            engine::stop(tx, answer, true, at, "answer approved").await?;
        }
        TicketAction::Rejected | TicketAction::ReviewStopped => {
            let why = if action == TicketAction::Rejected { "rejected by the coordinator" } else { "review stopped" };
            if let Some(execution) = execution {
                engine::stop(tx, execution, false, at, why).await?;
            }
            engine::stop(tx, answer, false, at, why).await?;
        }
        TicketAction::Unspecified
        | TicketAction::Redirected
        | TicketAction::ReturnedToCoordination
        | TicketAction::Created
        | TicketAction::TakenInWork
        | TicketAction::HandedOver
        | TicketAction::ReturnedToCoordinator
        | TicketAction::Agreed
        | TicketAction::ReturnedForRework
        | TicketAction::AcceptedByApplicant
        | TicketAction::RejectedByApplicant
        | TicketAction::Escalated => {
            // No clock changes: a redirect or a return to coordination moves the clock once, when
            // the new addressee's appeal.routed arrives; a re-review arrives as ticket.reopened.
        }
    }
    Ok(Clocked::Applied)
}

/// `ticket.reopened` → a new answer deadline, the next round.
pub struct ReopenedHandler(pub Shared);

#[async_trait]
impl Handler for ReopenedHandler {
    type Event = TicketReopened;

    async fn handle(&self, tx: &mut Tx, reopened: TicketReopened, envelope: &Envelope) -> Result<(), HandleError> {
        apply_or_park(&self.0, tx, REOPENED_QUEUE, TicketEvent::Reopened(reopened), envelope).await
    }
}

/// Arms the re-review round a reopened ticket asks for.
async fn reopened_round(shared: &Shared, tx: &mut Tx, reopened: TicketReopened) -> Result<Clocked, HandleError> {
    let at = time(reopened.reopened_at.as_ref()).unwrap_or_else(Utc::now);
    let (answer, execution) = engine::lock_both(tx, shared.dialect, &reopened.appeal_id).await?;
    let Some(previous) = answer else {
        // Ticketing reopens only a ticket it created from a routed appeal: this overtook ours.
        return Ok(Clocked::NoClock);
    };
    let round = reopened.review_round.max(previous.round + 1);
    if reopened.review_round > 0 && reopened.review_round <= previous.round {
        // This round is armed already (a duplicate with a new message id).
        return Ok(Clocked::Applied);
    }
    if let Some(execution) = execution {
        engine::stop(tx, execution, false, at, "re-review: a new stage follows assignment").await?;
    }
    let previous = if previous.state == State::Stopped {
        previous
    } else {
        engine::stop(tx, previous, false, at, "re-review replaces this round").await?
    };
    let region = previous.region_code.clone();
    let policy = store::policy_for(tx, &region).await?;
    let calendar = store::calendar_for(tx, &region).await?;
    let zone_name = if reopened.time_zone.is_empty() { previous.time_zone.clone() } else { reopened.time_zone.clone() };
    let tz = engine::zone(&zone_name)?;
    let period = policy.rereview_period(previous.period);
    let due = deadline::due(at, tz, period, policy.move_to_next_working_day, &calendar)
        .ok_or_else(|| EngineError::Uncomputable(format!("{period} from {at}")))?;
    let clock = Clock {
        round,
        ticket_id: if reopened.ticket_id.is_empty() { previous.ticket_id.clone() } else { reopened.ticket_id.clone() },
        time_zone: zone_name,
        period,
        started_at: at,
        due_at: due,
        span: due - at,
        warnings: policy.warnings.clone(),
        ..previous.clone()
    };
    engine::arm(tx, clock, Some(&previous), &calendar, at, &format!("re-review round {round}: {period}")).await?;
    shared.ring();
    Ok(Clocked::Applied)
}

//! Changes of clocks, each inside the caller's transaction: the clock row, its log entry, its
//! timers and its `sla.*` events are written together or not at all.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use pos_platform::db::Dialect;
use pos_platform::{Envelope, Tx, outbox};
use pos_proto::BusEvent;
use pos_proto::v1::events as ev;

use crate::calendar::Calendar;
use crate::deadline;
use crate::store::{self, Clock, ClockKind, LogKind, State, Timer, TimerKind};

/// Why a change could not be made; the consumer dead-letters these.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown time zone {0:?}")]
    UnknownZone(String),
    #[error("the deadline cannot be computed: {0}")]
    Uncomputable(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

pub fn zone(name: &str) -> Result<Tz, EngineError> {
    name.parse().map_err(|_| EngineError::UnknownZone(name.to_owned()))
}

/// The deadline as `sla.*` events carry it.
pub fn sla_deadline(clock: &Clock) -> ev::SlaDeadline {
    ev::SlaDeadline {
        appeal_id: clock.appeal_id.clone(),
        ticket_id: clock.ticket_id.clone(),
        organization_id: clock.organization_id.clone(),
        region_code: clock.region_code.clone(),
        clock: match clock.kind {
            ClockKind::Answer => ev::SlaClock::Answer as i32,
            ClockKind::Execution => ev::SlaClock::Execution as i32,
        },
        due: Some(pos_proto::time::to_proto(clock.due_at)),
        time_zone: clock.time_zone.clone(),
        fast_track: clock.fast_track,
        round: clock.round,
        assignee_id: clock.assignee_id.clone(),
    }
}

/// Enqueues `event` about `clock` in the transaction's outbox.
pub async fn publish<E: BusEvent>(tx: &mut Tx, clock: &Clock, event: &E) -> Result<(), sqlx::Error> {
    // The routing key needs a region; an appeal without one is still published, under "00".
    let region = if clock.region_code.is_empty() { "00" } else { clock.region_code.as_str() };
    let envelope = Envelope::new(event, region).with_appeal(&clock.appeal_id);
    outbox::enqueue(tx, &envelope).await
}

/// The timers of a running clock's current generation: overdue, and the policy's warnings
/// (answer clocks) that fall after the clock started.
pub fn timers_for(clock: &Clock, calendar: &Calendar) -> Vec<Timer> {
    let mut timers = vec![Timer::new(clock, TimerKind::Overdue, "", deadline::overdue_at(clock.due_at))];
    if clock.kind == ClockKind::Answer
        && let Ok(tz) = zone(&clock.time_zone)
    {
        for point in &clock.warnings {
            if let Some(at) = deadline::warning_at(*point, clock.due_at, clock.span, tz, calendar)
                && at > clock.started_at
                && at <= clock.due_at
            {
                timers.push(Timer::new(clock, TimerKind::Warning, &point.name(), at));
            }
        }
    }
    timers
}

/// Starts (or restarts) `clock` as given: a new generation, its timers, `armed` in the log,
/// `sla.armed` (and `sla.fast_track` for a first answer round that is fast-track).
pub async fn arm(
    tx: &mut Tx,
    mut clock: Clock,
    previous: Option<&Clock>,
    calendar: &Calendar,
    at: DateTime<Utc>,
    detail: &str,
) -> Result<Clock, EngineError> {
    clock.generation = previous.map_or(1, |p| p.generation + 1);
    clock.state = State::Running;
    clock.paused_at = None;
    clock.overdue = false;
    clock.met = false;
    clock.stopped_at = None;
    store::save_clock(tx, &clock).await?;
    store::insert_timers(tx, &timers_for(&clock, calendar)).await?;
    store::append_log(tx, &clock, LogKind::Armed, at, detail).await?;
    let deadline = sla_deadline(&clock);
    let stamp = Some(pos_proto::time::to_proto(at));
    publish(tx, &clock, &ev::SlaArmed { deadline: Some(deadline.clone()), at: stamp }).await?;
    if clock.kind == ClockKind::Answer && clock.fast_track && clock.round == 1 {
        publish(tx, &clock, &ev::SlaFastTrack { deadline: Some(deadline), at: stamp }).await?;
    }
    tracing::info!(
        appeal_id = %clock.appeal_id, clock = clock.kind.as_str(), round = clock.round, due = %clock.due_at,
        fast_track = clock.fast_track, "deadline armed"
    );
    Ok(clock)
}

/// Pauses a running clock: its timers go stale; the time left is kept.
pub async fn pause(tx: &mut Tx, mut clock: Clock, at: DateTime<Utc>, detail: &str) -> Result<Clock, EngineError> {
    if clock.state != State::Running {
        return Ok(clock);
    }
    clock.state = State::Paused;
    clock.paused_at = Some(at);
    clock.generation += 1;
    store::save_clock(tx, &clock).await?;
    store::append_log(tx, &clock, LogKind::Paused, at, detail).await?;
    tracing::info!(appeal_id = %clock.appeal_id, clock = clock.kind.as_str(), "deadline paused");
    Ok(clock)
}

/// Resumes a paused clock with the time that was left; new timers; `sla.armed` with the new due.
pub async fn resume(
    tx: &mut Tx,
    mut clock: Clock,
    calendar: &Calendar,
    at: DateTime<Utc>,
    detail: &str,
) -> Result<Clock, EngineError> {
    let Some(paused_at) = clock.paused_at.filter(|_| clock.state == State::Paused) else {
        return Ok(clock);
    };
    let resumed_at = at.max(paused_at);
    clock.due_at = deadline::resumed_due(clock.due_at, paused_at, resumed_at);
    clock.state = State::Running;
    clock.paused_at = None;
    clock.generation += 1;
    store::save_clock(tx, &clock).await?;
    store::insert_timers(tx, &timers_for(&clock, calendar)).await?;
    let paused_for = resumed_at - paused_at;
    let detail = format!("{detail}; paused for {} min", paused_for.num_minutes());
    store::append_log(tx, &clock, LogKind::Resumed, at, &detail).await?;
    let stamp = Some(pos_proto::time::to_proto(at));
    publish(tx, &clock, &ev::SlaArmed { deadline: Some(sla_deadline(&clock)), at: stamp }).await?;
    tracing::info!(appeal_id = %clock.appeal_id, clock = clock.kind.as_str(), due = %clock.due_at, "deadline resumed");
    Ok(clock)
}

/// Stops a clock. `met` when `answered` and it was neither overdue nor past due at `at`:
/// then `sla.met` goes out.
pub async fn stop(
    tx: &mut Tx,
    mut clock: Clock,
    answered: bool,
    at: DateTime<Utc>,
    detail: &str,
) -> Result<Clock, EngineError> {
    if clock.state == State::Stopped {
        return Ok(clock);
    }
    // A paused clock is judged by the time that was left when it paused.
    let effective_due = match (clock.state, clock.paused_at) {
        (State::Paused, Some(paused_at)) => deadline::resumed_due(clock.due_at, paused_at, at),
        _ => clock.due_at,
    };
    let met = answered && !clock.overdue && at <= effective_due;
    clock.state = State::Stopped;
    clock.stopped_at = Some(at);
    clock.paused_at = None;
    clock.met = met;
    clock.generation += 1;
    store::save_clock(tx, &clock).await?;
    let kind = if met { LogKind::Met } else { LogKind::Stopped };
    store::append_log(tx, &clock, kind, at, detail).await?;
    if met {
        let stamp = Some(pos_proto::time::to_proto(at));
        publish(tx, &clock, &ev::SlaMet { deadline: Some(sla_deadline(&clock)), at: stamp }).await?;
    }
    tracing::info!(appeal_id = %clock.appeal_id, clock = clock.kind.as_str(), met, "deadline stopped");
    Ok(clock)
}

/// Locks the appeal's clocks in one order (answer, then execution), so that two writers of
/// one appeal never wait on each other crosswise.
pub async fn lock_both(
    tx: &mut Tx,
    dialect: Dialect,
    appeal_id: &str,
) -> Result<(Option<Clock>, Option<Clock>), sqlx::Error> {
    let answer = store::lock_clock(tx, dialect, appeal_id, ClockKind::Answer).await?;
    let execution = store::lock_clock(tx, dialect, appeal_id, ClockKind::Execution).await?;
    Ok((answer, execution))
}

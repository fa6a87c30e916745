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
    if clock.kind == ClockKind::Answer {
        // The appeal's deadlines, not the executor's stages: what the fast-track share is of.
        let fast_track = if clock.fast_track { "true" } else { "false" };
        metrics::counter!("pos_sla_armed_total", "region" => clock.region_code.clone(), "fast_track" => fast_track)
            .increment(1);
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

/// Resumes a paused clock: the deadline moves by the local days the clock stood still (see
/// `deadline::resumed_due`); new timers; `sla.armed` with the new due.
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
    let tz = zone(&clock.time_zone)?;
    // By whole local days, in the period's unit: see `deadline::resumed_due`.
    let moved_by = deadline::paused_days(paused_at, resumed_at, tz, clock.period.working_days, calendar);
    clock.due_at = deadline::resumed_due(clock.due_at, paused_at, resumed_at, tz, clock.period.working_days, calendar)
        .ok_or_else(|| EngineError::Uncomputable(format!("{} moved by {moved_by} days", clock.due_at)))?;
    clock.state = State::Running;
    clock.paused_at = None;
    clock.generation += 1;
    store::save_clock(tx, &clock).await?;
    store::insert_timers(tx, &timers_for(&clock, calendar)).await?;
    let unit = if clock.period.working_days { "working " } else { "" };
    let detail = format!("{detail}; the clock stood still on {moved_by} {unit}days, the deadline moves by as many");
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
    clock: Clock,
    answered: bool,
    at: DateTime<Utc>,
    detail: &str,
) -> Result<Clock, EngineError> {
    stop_logged(tx, clock, answered, at, Some(detail)).await
}

/// Stops a clock as [`stop`] does, without a log entry of its own: for a change that the log
/// records once, on another clock (a redirect ends the executor's stage and says so on the
/// answer deadline's entry).
pub async fn stop_unlogged(tx: &mut Tx, clock: Clock, answered: bool, at: DateTime<Utc>) -> Result<Clock, EngineError> {
    stop_logged(tx, clock, answered, at, None).await
}

async fn stop_logged(
    tx: &mut Tx,
    mut clock: Clock,
    answered: bool,
    at: DateTime<Utc>,
    detail: Option<&str>,
) -> Result<Clock, EngineError> {
    if clock.state == State::Stopped {
        return Ok(clock);
    }
    // A paused clock is judged by where it stood when it paused: had it not run out then, the
    // days it stood still would have moved the deadline past today.
    let judged_at = match (clock.state, clock.paused_at) {
        (State::Paused, Some(paused_at)) => paused_at.min(at),
        _ => at,
    };
    let met = answered && !clock.overdue && judged_at <= clock.due_at;
    clock.state = State::Stopped;
    clock.stopped_at = Some(at);
    clock.paused_at = None;
    clock.met = met;
    clock.generation += 1;
    store::save_clock(tx, &clock).await?;
    if let Some(detail) = detail {
        let kind = if met { LogKind::Met } else { LogKind::Stopped };
        store::append_log(tx, &clock, kind, at, detail).await?;
    }
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

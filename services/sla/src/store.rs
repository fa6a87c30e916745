//! The SLA store, written once for PostgreSQL and SQLite (see `docs/adr/0002-*`): clocks,
//! the append-only log, timers and their ledger, policies and calendar years.

use chrono::{DateTime, Utc};
use pos_platform::db::{Db, Dialect, RowExt, from_micros, now_micros, to_micros};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::calendar::{self, Calendar, CalendarYear};
use crate::policy::{self, Period, Policy, WarningPoint};

/// Which deadline of an appeal; stored as `answer` / `execution`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
pub enum ClockKind {
    /// срок ответа: registration (or re-review) to the approved answer.
    Answer,
    /// срок на исполнение: the executor's stage inside the answer deadline.
    Execution,
}

impl ClockKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where a clock is; stored as `running` / `paused` / `stopped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum State {
    Running,
    Paused,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One deadline as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Clock {
    pub appeal_id: String,
    pub kind: ClockKind,
    pub ticket_id: String,
    pub organization_id: String,
    pub region_code: String,
    pub time_zone: String,
    pub fact_id: String,
    pub assignee_id: String,
    pub round: i32,
    pub fast_track: bool,
    pub period: Period,
    pub started_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// `due_at - started_at` when armed; pauses move `due_at` but not this.
    pub span: chrono::Duration,
    pub state: State,
    pub paused_at: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub met: bool,
    pub stopped_at: Option<DateTime<Utc>>,
    /// Changes whenever the deadline moves, pauses or stops; older timers are stale.
    pub generation: i32,
    pub warnings: Vec<WarningPoint>,
}

const CLOCK_COLUMNS: &str = "appeal_id, clock, ticket_id, organization_id, region_code, time_zone, fact_id, \
     assignee_id, round, fast_track, period_days, working_days, started_at, due_at, span_micros, state, paused_at, \
     overdue, met, stopped_at, generation, warnings";

fn clock_from_row(row: &AnyRow) -> Result<Clock, sqlx::Error> {
    let decode =
        |column: &str, problem: String| sqlx::Error::ColumnDecode { index: column.to_owned(), source: problem.into() };
    let kind: String = row.try_get("clock")?;
    let state: String = row.try_get("state")?;
    let warnings: String = row.try_get("warnings")?;
    let period_days: i32 = row.try_get("period_days")?;
    Ok(Clock {
        appeal_id: row.try_get("appeal_id")?,
        kind: kind.parse().map_err(|_| decode("clock", format!("unknown clock {kind:?}")))?,
        ticket_id: row.try_get("ticket_id")?,
        organization_id: row.try_get("organization_id")?,
        region_code: row.try_get("region_code")?,
        time_zone: row.try_get("time_zone")?,
        fact_id: row.try_get("fact_id")?,
        assignee_id: row.try_get("assignee_id")?,
        round: row.try_get("round")?,
        fast_track: row.flag("fast_track")?,
        period: Period { days: period_days.max(0) as u32, working_days: row.flag("working_days")? },
        started_at: row.time("started_at")?,
        due_at: row.time("due_at")?,
        span: chrono::Duration::microseconds(row.try_get("span_micros")?),
        state: state.parse().map_err(|_| decode("state", format!("unknown state {state:?}")))?,
        paused_at: row.time_opt("paused_at")?,
        overdue: row.flag("overdue")?,
        met: row.flag("met")?,
        stopped_at: row.time_opt("stopped_at")?,
        generation: row.try_get("generation")?,
        warnings: serde_json::from_str(&warnings).map_err(|e| decode("warnings", e.to_string()))?,
    })
}

/// ` FOR UPDATE` where the database has row locks: a clock is changed by one writer at a time
/// (consumers and timer firing), so that a deadline cannot be both met and breached.
fn for_update(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    }
}

/// Reads a clock, locked until the transaction ends (PostgreSQL; SQLite's writer is alone).
pub async fn lock_clock(
    conn: &mut AnyConnection,
    dialect: Dialect,
    appeal_id: &str,
    kind: ClockKind,
) -> Result<Option<Clock>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CLOCK_COLUMNS} FROM sla_clocks WHERE appeal_id = $1 AND clock = $2{}",
        for_update(dialect)
    )))
    .bind(appeal_id)
    .bind(kind.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(clock_from_row).transpose()
}

/// The appeal's clocks, answer first.
pub async fn clocks(conn: &mut AnyConnection, appeal_id: &str) -> Result<Vec<Clock>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CLOCK_COLUMNS} FROM sla_clocks WHERE appeal_id = $1 ORDER BY clock"
    )))
    .bind(appeal_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(clock_from_row).collect()
}

pub async fn save_clock(conn: &mut AnyConnection, clock: &Clock) -> Result<(), sqlx::Error> {
    let warnings = serde_json::to_string(&clock.warnings).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(
        "INSERT INTO sla_clocks (appeal_id, clock, ticket_id, organization_id, region_code, time_zone, fact_id, \
         assignee_id, round, fast_track, period_days, working_days, started_at, due_at, span_micros, state, paused_at, \
         overdue, met, stopped_at, generation, warnings, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) \
         ON CONFLICT (appeal_id, clock) DO UPDATE SET ticket_id = $3, organization_id = $4, region_code = $5, \
         time_zone = $6, fact_id = $7, assignee_id = $8, round = $9, fast_track = $10, period_days = $11, \
         working_days = $12, started_at = $13, due_at = $14, span_micros = $15, state = $16, paused_at = $17, \
         overdue = $18, met = $19, stopped_at = $20, generation = $21, warnings = $22, updated_at = $23",
    )
    .bind(&clock.appeal_id)
    .bind(clock.kind.as_str())
    .bind(&clock.ticket_id)
    .bind(&clock.organization_id)
    .bind(&clock.region_code)
    .bind(&clock.time_zone)
    .bind(&clock.fact_id)
    .bind(&clock.assignee_id)
    .bind(clock.round)
    .bind(clock.fast_track)
    .bind(i32::try_from(clock.period.days).unwrap_or(i32::MAX))
    .bind(clock.period.working_days)
    .bind(to_micros(clock.started_at))
    .bind(to_micros(clock.due_at))
    .bind(clock.span.num_microseconds().unwrap_or(i64::MAX))
    .bind(clock.state.as_str())
    .bind(clock.paused_at.map(to_micros))
    .bind(clock.overdue)
    .bind(clock.met)
    .bind(clock.stopped_at.map(to_micros))
    .bind(clock.generation)
    .bind(warnings)
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `($1, $2), ($3, $4), …` for `n` pairs starting at placeholder `first`.
fn pairs(n: usize, first: usize) -> String {
    (0..n).map(|i| format!("(${}, ${})", first + 2 * i, first + 2 * i + 1)).collect::<Vec<_>>().join(", ")
}

/// Locks the clocks of `keys` (sorted by the caller) in that order, in one statement.
pub async fn lock_clocks(
    conn: &mut AnyConnection,
    dialect: Dialect,
    keys: &[(String, ClockKind)],
) -> Result<Vec<Clock>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // Only placeholders are formatted into the statement; the values are bound.
    let sql = format!(
        "SELECT {CLOCK_COLUMNS} FROM sla_clocks WHERE (appeal_id, clock) IN ({}) ORDER BY appeal_id, clock{}",
        pairs(keys.len(), 1),
        for_update(dialect)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (appeal_id, kind) in keys {
        query = query.bind(appeal_id.clone()).bind(kind.as_str());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(clock_from_row).collect()
}

/// Flags clocks overdue (their overdue timers fired); nothing else changes.
pub async fn mark_overdue(conn: &mut AnyConnection, keys: &[(String, ClockKind)]) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE sla_clocks SET overdue = $1, updated_at = $2 WHERE (appeal_id, clock) IN ({})",
        pairs(keys.len(), 3)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(true).bind(now_micros());
    for (appeal_id, kind) in keys {
        query = query.bind(appeal_id.clone()).bind(kind.as_str());
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// What happened to a clock, for the append-only log; stored (and shown) in snake case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum LogKind {
    Armed,
    Paused,
    Resumed,
    /// The deadline was kept through a redirect.
    Kept,
    Warned,
    Breached,
    Met,
    /// Stopped without meeting (late approval, rejection, review stopped, redirect).
    Stopped,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

pub async fn append_log(
    conn: &mut AnyConnection,
    clock: &Clock,
    kind: LogKind,
    at: DateTime<Utc>,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sla_log (appeal_id, clock, round, kind, at, due_at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&clock.appeal_id)
    .bind(clock.kind.as_str())
    .bind(clock.round)
    .bind(kind.as_str())
    .bind(to_micros(at))
    .bind(Some(to_micros(clock.due_at)))
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Appends several log entries in one statement, in order.
pub async fn append_logs(
    conn: &mut AnyConnection,
    entries: &[(&Clock, LogKind, String)],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let values = (0..entries.len())
        .map(|i| {
            let b = i * 7;
            format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("INSERT INTO sla_log (appeal_id, clock, round, kind, at, due_at, detail) VALUES {values}");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (clock, kind, detail) in entries {
        query = query
            .bind(clock.appeal_id.clone())
            .bind(clock.kind.as_str())
            .bind(clock.round)
            .bind(kind.as_str())
            .bind(to_micros(at))
            .bind(Some(to_micros(clock.due_at)))
            .bind(detail.clone());
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// One entry of the SLA log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub id: i64,
    pub clock: String,
    pub round: i32,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub detail: String,
}

pub async fn log(conn: &mut AnyConnection, appeal_id: &str) -> Result<Vec<LogEntry>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, clock, round, kind, at, due_at, detail FROM sla_log WHERE appeal_id = $1 ORDER BY id")
            .bind(appeal_id)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter()
        .map(|row| {
            Ok(LogEntry {
                id: row.try_get("id")?,
                clock: row.try_get("clock")?,
                round: row.try_get("round")?,
                kind: row.try_get("kind")?,
                at: row.time("at")?,
                due_at: row.time_opt("due_at")?,
                detail: row.try_get("detail")?,
            })
        })
        .collect()
}

/// What a timer does when it fires; stored as `warning` / `overdue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum TimerKind {
    Warning,
    Overdue,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Timer {
    pub id: String,
    pub appeal_id: String,
    pub clock: ClockKind,
    pub generation: i32,
    pub kind: TimerKind,
    pub point: String,
    pub due_at: DateTime<Utc>,
}

impl Timer {
    pub fn new(clock: &Clock, kind: TimerKind, point: &str, due_at: DateTime<Utc>) -> Timer {
        Timer {
            // Deterministic: arming the same generation twice writes the same rows.
            id: format!(
                "{}:{}:{}:{}:{}:{point}",
                clock.appeal_id,
                clock.kind.as_str(),
                clock.round,
                clock.generation,
                kind.as_str()
            ),
            appeal_id: clock.appeal_id.clone(),
            clock: clock.kind,
            generation: clock.generation,
            kind,
            point: point.to_owned(),
            due_at,
        }
    }
}

pub async fn insert_timers(conn: &mut AnyConnection, timers: &[Timer]) -> Result<(), sqlx::Error> {
    let now = now_micros();
    for timer in timers {
        sqlx::query(
            "INSERT INTO timers (id, appeal_id, clock, generation, kind, point, due_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&timer.id)
        .bind(&timer.appeal_id)
        .bind(timer.clock.as_str())
        .bind(timer.generation)
        .bind(timer.kind.as_str())
        .bind(&timer.point)
        .bind(to_micros(timer.due_at))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn timer_from_row(row: &AnyRow) -> Result<Timer, sqlx::Error> {
    let clock: String = row.try_get("clock")?;
    let kind: String = row.try_get("kind")?;
    let bad = |column: &str, value: &str| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("unknown value {value:?}").into(),
    };
    Ok(Timer {
        id: row.try_get("id")?,
        appeal_id: row.try_get("appeal_id")?,
        clock: clock.parse().map_err(|_| bad("clock", &clock))?,
        generation: row.try_get("generation")?,
        kind: kind.parse().map_err(|_| bad("kind", &kind))?,
        point: row.try_get("point")?,
        due_at: row.time("due_at")?,
    })
}

/// Claims up to `limit` timers due at `now`, locked and skipped by other instances until the
/// transaction ends. Never one due later than `now`: firing early is a bug.
pub async fn claim_due_timers(
    conn: &mut AnyConnection,
    dialect: Dialect,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Timer>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, appeal_id, clock, generation, kind, point, due_at FROM timers \
         WHERE fired_at IS NULL AND due_at <= $1 ORDER BY due_at LIMIT $2{}",
        dialect.skip_locked()
    )))
    .bind(to_micros(now))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(timer_from_row).collect()
}

/// Records firings in the ledger and marks the timers fired, in two statements. A timer
/// already in the ledger makes this fail (primary key): it can never fire twice.
pub async fn record_firings(
    conn: &mut AnyConnection,
    firings: &[(&Timer, &str)],
    fired_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if firings.is_empty() {
        return Ok(());
    }
    let values = (0..firings.len())
        .map(|i| {
            let b = i * 5;
            format!("(${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("INSERT INTO timer_ledger (timer_id, outcome, due_at, fired_at, lateness_micros) VALUES {values}");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (timer, outcome) in firings {
        let lateness = (fired_at - timer.due_at).num_microseconds().unwrap_or(i64::MAX);
        query = query
            .bind(timer.id.clone())
            .bind(*outcome)
            .bind(to_micros(timer.due_at))
            .bind(to_micros(fired_at))
            .bind(lateness);
    }
    query.execute(&mut *conn).await?;
    let ids = (0..firings.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE timers SET fired_at = $1 WHERE id IN ({ids})")))
        .bind(to_micros(fired_at));
    for (timer, _) in firings {
        query = query.bind(timer.id.clone());
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// The earliest pending timer, for the firing loop's sleep.
pub async fn next_due(db: &Db) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let next: Option<i64> =
        sqlx::query_scalar("SELECT MIN(due_at) FROM timers WHERE fired_at IS NULL").fetch_one(db.pool()).await?;
    Ok(next.map(from_micros))
}

/// Whether a warning of the clock's current generation has come due.
pub async fn warning_reached(conn: &mut AnyConnection, clock: &Clock, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM timers WHERE appeal_id = $1 AND clock = $2 AND generation = $3 \
         AND kind = 'warning' AND due_at <= $4",
    )
    .bind(&clock.appeal_id)
    .bind(clock.kind.as_str())
    .bind(clock.generation)
    .bind(to_micros(now))
    .fetch_one(&mut *conn)
    .await?;
    Ok(count > 0)
}

// --- Policies and calendars ---------------------------------------------------------------

/// The region's policy, else the default one, else the built-in default.
pub async fn policy_for(conn: &mut AnyConnection, region_code: &str) -> Result<Policy, sqlx::Error> {
    let rows = sqlx::query("SELECT region_code, body FROM policies WHERE region_code = $1 OR region_code = '*'")
        .bind(region_code)
        .fetch_all(&mut *conn)
        .await?;
    let mut default = None;
    for row in &rows {
        let region: String = row.try_get("region_code")?;
        let body: String = row.try_get("body")?;
        let policy: Policy = serde_json::from_str(&body)
            .map_err(|e| sqlx::Error::ColumnDecode { index: "body".into(), source: e.into() })?;
        if region == region_code {
            return Ok(policy);
        }
        default = Some(policy);
    }
    Ok(match default {
        Some(policy) => policy,
        None => policy::embedded()
            .into_iter()
            .find(|p| p.region == policy::DEFAULT_REGION)
            .unwrap_or_else(|| unreachable!("the built-in policies have a default (checked by a unit test)")),
    })
}

/// The stored policy of exactly `region_code`.
pub async fn stored_policy(conn: &mut AnyConnection, region_code: &str) -> Result<Option<Policy>, sqlx::Error> {
    let body: Option<String> = sqlx::query_scalar("SELECT body FROM policies WHERE region_code = $1")
        .bind(region_code)
        .fetch_optional(&mut *conn)
        .await?;
    body.map(|body| {
        serde_json::from_str(&body).map_err(|e| sqlx::Error::ColumnDecode { index: "body".into(), source: e.into() })
    })
    .transpose()
}

pub async fn put_policy(conn: &mut AnyConnection, policy: &Policy, actor: &str) -> Result<(), sqlx::Error> {
    let body = serde_json::to_string(policy).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(
        "INSERT INTO policies (region_code, body, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (region_code) DO UPDATE SET body = $2, updated_at = $3, updated_by = $4",
    )
    .bind(&policy.region)
    .bind(body)
    .bind(now_micros())
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The calendar of a region: the federal years and the region's own.
pub async fn calendar_for(conn: &mut AnyConnection, region_code: &str) -> Result<Calendar, sqlx::Error> {
    let rows = sqlx::query("SELECT body FROM calendar_years WHERE region_code = '*' OR region_code = $1")
        .bind(region_code)
        .fetch_all(&mut *conn)
        .await?;
    let mut years = Vec::with_capacity(rows.len());
    for row in &rows {
        let body: String = row.try_get("body")?;
        let year: CalendarYear = serde_json::from_str(&body)
            .map_err(|e| sqlx::Error::ColumnDecode { index: "body".into(), source: e.into() })?;
        years.push(year);
    }
    Ok(Calendar::build(&years))
}

pub async fn calendar_year(
    conn: &mut AnyConnection,
    region_code: &str,
    year: i32,
) -> Result<Option<CalendarYear>, sqlx::Error> {
    let body: Option<String> =
        sqlx::query_scalar("SELECT body FROM calendar_years WHERE region_code = $1 AND year = $2")
            .bind(region_code)
            .bind(year)
            .fetch_optional(&mut *conn)
            .await?;
    body.map(|body| {
        serde_json::from_str(&body).map_err(|e| sqlx::Error::ColumnDecode { index: "body".into(), source: e.into() })
    })
    .transpose()
}

/// Writes a year; `replace = false` keeps a stored year (seeding never undoes a correction).
pub async fn put_calendar_year(
    conn: &mut AnyConnection,
    year: &CalendarYear,
    actor: &str,
    replace: bool,
) -> Result<(), sqlx::Error> {
    let body = serde_json::to_string(year).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let on_conflict = if replace { "DO UPDATE SET body = $3, updated_at = $4, updated_by = $5" } else { "DO NOTHING" };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO calendar_years (region_code, year, body, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (region_code, year) {on_conflict}"
    )))
    .bind(&year.region)
    .bind(year.year)
    .bind(body)
    .bind(now_micros())
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Loads the built-in calendars and policies that the database lacks. Instances starting
/// together may both run it: rows are keyed and kept when present.
pub async fn seed(db: &Db) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    for year in calendar::embedded() {
        put_calendar_year(&mut tx, &year, "seed", false).await?;
    }
    for policy in policy::embedded() {
        let body = serde_json::to_string(&policy)?;
        sqlx::query(
            "INSERT INTO policies (region_code, body, updated_at, updated_by) VALUES ($1, $2, $3, 'seed') \
             ON CONFLICT (region_code) DO NOTHING",
        )
        .bind(&policy.region)
        .bind(body)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    /// The stored names are a contract with the rows already written: each one, and the way back.
    #[test]
    fn stored_names_round_trip() {
        let clocks: Vec<&str> = ClockKind::VARIANTS.iter().map(|k| k.as_str()).collect();
        assert_eq!(clocks, ["answer", "execution"]);
        for kind in ClockKind::VARIANTS {
            assert_eq!(kind.as_str().parse::<ClockKind>(), Ok(*kind));
        }
        let states: Vec<&str> = State::VARIANTS.iter().map(|s| s.as_str()).collect();
        assert_eq!(states, ["running", "paused", "stopped"]);
        for state in State::VARIANTS {
            assert_eq!(state.as_str().parse::<State>(), Ok(*state));
        }
        let logs: Vec<&str> = LogKind::VARIANTS.iter().map(|k| k.as_str()).collect();
        assert_eq!(logs, ["armed", "paused", "resumed", "kept", "warned", "breached", "met", "stopped"]);
        for kind in LogKind::VARIANTS {
            assert_eq!(kind.as_str().parse::<LogKind>(), Ok(*kind));
        }
        let timers: Vec<&str> = TimerKind::VARIANTS.iter().map(|k| k.as_str()).collect();
        assert_eq!(timers, ["warning", "overdue"]);
        for kind in TimerKind::VARIANTS {
            assert_eq!(kind.as_str().parse::<TimerKind>(), Ok(*kind));
        }
        assert!("Answer".parse::<ClockKind>().is_err(), "stored names are lowercase only");
    }
}

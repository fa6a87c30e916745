//! `pos.v1.SlaService`: deadlines and their log for the cabinet and external systems; policies
//! and calendars for operators.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use pos_platform::audit;
use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::db::Db;
use pos_platform::error::{ApiError, ApiResult, FieldViolations};
use pos_proto::v1 as pb;
use pos_proto::v1::sla_service_server::SlaService;
use tonic::{Request, Response, Status};

use crate::calendar::{self, Calendar, CalendarYear, Holiday, Transfer};
use crate::deadline;
use crate::policy::{self, FactPeriod, Period, Policy, WarningPoint};
use crate::store::{self, Clock, ClockKind, State};

pub struct Sla {
    db: Db,
}

impl Sla {
    pub fn new(db: Db) -> Sla {
        Sla { db }
    }

    async fn conn(&self) -> ApiResult<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.db.pool().acquire().await?)
    }
}

fn local_time(at: DateTime<Utc>, zone_name: &str, zone: Tz) -> pb::LocalTime {
    pb::LocalTime {
        utc: Some(pos_proto::time::to_proto(at)),
        time_zone: zone_name.to_owned(),
        local: at.with_timezone(&zone).to_rfc3339(),
    }
}

/// Staff see their organization's appeals; systems see all. Applicants follow their appeal in
/// intake; deadlines are the cabinet's and the systems'.
fn check_access(caller: &Caller, clock: &Clock, method: &str) -> ApiResult<()> {
    if caller.has(Role::System) { Ok(()) } else { caller.require_organization(&clock.organization_id, method) }
}

/// The appeal's answer clock: the one that says whose appeal it is.
fn answer_clock(clocks: &[Clock]) -> ApiResult<&Clock> {
    clocks
        .iter()
        .find(|c| c.kind == ClockKind::Answer)
        .ok_or_else(|| ApiError::not_found("no deadline is armed for this appeal"))
}

/// How a clock reads in the cabinet at `now`.
pub fn describe(clock: &Clock, now: DateTime<Utc>, at_risk: bool, calendar: &Calendar) -> ApiResult<pb::Deadline> {
    let zone: Tz = clock.time_zone.parse().map_err(|_| {
        ApiError::internal("stored time zone", anyhow::anyhow!("unknown time zone {:?}", clock.time_zone))
    })?;
    let remaining = match (clock.state, clock.paused_at) {
        // A paused clock shows the deadline it would have if it resumed now (moved by the days
        // it has stood still so far).
        (State::Paused, Some(paused_at)) => {
            let due = deadline::resumed_due(clock.due_at, paused_at, now, zone, clock.period.working_days, calendar)
                .unwrap_or(clock.due_at);
            format!("paused: {}", deadline::remaining(now, due, zone))
        }
        (State::Stopped, _) if clock.met => "met".to_owned(),
        (State::Stopped, _) => "stopped".to_owned(),
        _ => deadline::remaining(now, clock.due_at, zone),
    };
    let open = clock.state != State::Stopped;
    // Overdue the moment the due time passes; the overdue timer publishes it a moment later.
    let overdue = clock.overdue || (clock.state == State::Running && now > clock.due_at);
    Ok(pb::Deadline {
        due: Some(local_time(clock.due_at, &clock.time_zone, zone)),
        remaining,
        paused: clock.state == State::Paused,
        at_risk: open && !overdue && at_risk,
        overdue,
        met: clock.met,
        stopped: !open,
        round: clock.round,
        period: clock.period.to_string(),
        started: Some(local_time(clock.started_at, &clock.time_zone, zone)),
    })
}

/// The methods, in the one error model; [`SlaService`] below only converts their errors.
impl Sla {
    async fn deadlines(&self, request: Request<pb::GetDeadlinesRequest>) -> ApiResult<pb::Deadlines> {
        const METHOD: &str = "pos.v1.SlaService/GetDeadlines";
        let caller = authorize(&request, METHOD, Role::ALL)?;
        let appeal_id = request.into_inner().appeal_id;
        if appeal_id.trim().is_empty() {
            return Err(ApiError::invalid("appeal_id", "must not be empty"));
        }
        let mut conn = self.conn().await?;
        let clocks = store::clocks(&mut conn, &appeal_id).await?;
        let answer = answer_clock(&clocks)?;
        check_access(&caller, answer, METHOD)?;
        let now = Utc::now();
        let calendar = store::calendar_for(&mut conn, &answer.region_code).await?;
        let mut deadlines = pb::Deadlines { appeal_id, fast_track: answer.fast_track, ..Default::default() };
        for clock in &clocks {
            let at_risk = store::warning_reached(&mut conn, clock, now).await?;
            let described = describe(clock, now, at_risk, &calendar)?;
            match clock.kind {
                ClockKind::Answer => deadlines.answer = Some(described),
                ClockKind::Execution => deadlines.execution = Some(described),
            }
        }
        Ok(deadlines)
    }

    async fn sla_log(&self, request: Request<pb::GetSlaLogRequest>) -> ApiResult<pb::SlaLog> {
        const METHOD: &str = "pos.v1.SlaService/GetSlaLog";
        let mut allowed = Role::STAFF.to_vec();
        allowed.push(Role::System);
        let caller = authorize(&request, METHOD, &allowed)?;
        let appeal_id = request.into_inner().appeal_id;
        let mut conn = self.conn().await?;
        let clocks = store::clocks(&mut conn, &appeal_id).await?;
        check_access(&caller, answer_clock(&clocks)?, METHOD)?;
        let entries = store::log(&mut conn, &appeal_id).await?;
        Ok(pb::SlaLog {
            appeal_id,
            entries: entries
                .into_iter()
                .map(|e| pb::SlaLogEntry {
                    id: e.id,
                    clock: e.clock,
                    round: e.round,
                    kind: e.kind,
                    at: Some(pos_proto::time::to_proto(e.at)),
                    due: e.due_at.map(pos_proto::time::to_proto),
                    detail: e.detail,
                })
                .collect(),
        })
    }

    async fn periods(&self, request: Request<pb::ResolvePeriodsRequest>) -> ApiResult<pb::ResolvePeriodsResponse> {
        const METHOD: &str = "pos.v1.SlaService/ResolvePeriods";
        authorize(&request, METHOD, Role::ALL)?;
        let request = request.into_inner();
        let region = if request.region_code.is_empty() { policy::DEFAULT_REGION } else { request.region_code.as_str() };
        let mut conn = self.conn().await?;
        // The very policy and decision the `appeal.routed` consumer arms a deadline with.
        let policy = store::policy_for(&mut conn, region).await?;
        let periods = request
            .facts
            .into_iter()
            .map(|query| {
                let decision = policy.resolve(&query.fact_id, query.classifier_fast_track);
                pb::ResolvedPeriod {
                    fact_id: query.fact_id,
                    period: Some(period_to_proto(decision.period)),
                    fast_track: decision.fast_track,
                    move_to_next_working_day: decision.move_to_next_working_day,
                    reason: decision.reason,
                }
            })
            .collect();
        Ok(pb::ResolvePeriodsResponse { policy_region: policy.region, periods })
    }

    async fn policy(&self, request: Request<pb::GetPolicyRequest>) -> ApiResult<pb::SlaPolicy> {
        const METHOD: &str = "pos.v1.SlaService/GetPolicy";
        authorize(&request, METHOD, Role::ALL)?;
        let region = request.into_inner().region_code;
        let region = if region.is_empty() { policy::DEFAULT_REGION.to_owned() } else { region };
        let mut conn = self.conn().await?;
        let policy = store::policy_for(&mut conn, &region).await?;
        Ok(policy_to_proto(&policy))
    }

    async fn replace_policy(&self, request: Request<pb::SlaPolicy>) -> ApiResult<pb::SlaPolicy> {
        const METHOD: &str = "pos.v1.SlaService/PutPolicy";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin])?;
        let message = request.into_inner();
        // An organization admin edits only the policy of the own region; the default and
        // other regions are the platform operators'. Checked before the body: who may not
        // change it learns nothing about what a valid one looks like.
        let region = message.region_code.as_str();
        if !caller.has(Role::System) && (region == policy::DEFAULT_REGION || region != caller.region_code) {
            tracing::warn!(
                target: "security",
                subject = %caller.subject,
                caller_region = %caller.region_code,
                region = %region,
                method = METHOD,
                "policy change denied outside the caller's region"
            );
            // The default policy is no region's: changing it is a matter of role, not of region.
            return Err(if region == policy::DEFAULT_REGION {
                ApiError::denied("ROLE_NOT_ALLOWED", "only the platform's operators may change the default policy")
            } else {
                ApiError::denied("OTHER_REGION", "an organization admin may change only the own region's policy")
            });
        }
        let policy = policy_from_proto(message)?;
        let mut tx = self.db.begin().await?;
        store::put_policy(&mut tx, &policy, &caller.subject).await?;
        let organization = caller.organization_id.as_str();
        let details = serde_json::json!({ "region_code": policy.region });
        audit::record(&mut tx, &caller, audit::Kind::PolicyChanged, METHOD, organization, &policy.region, details)
            .await?;
        tx.commit().await?;
        tracing::info!(region = %policy.region, actor = %caller.subject, "sla policy replaced");
        Ok(policy_to_proto(&policy))
    }

    async fn calendar_year(&self, request: Request<pb::GetCalendarYearRequest>) -> ApiResult<pb::CalendarYear> {
        const METHOD: &str = "pos.v1.SlaService/GetCalendarYear";
        authorize(&request, METHOD, Role::ALL)?;
        let request = request.into_inner();
        let region = if request.region_code.is_empty() { calendar::FEDERAL.to_owned() } else { request.region_code };
        let mut conn = self.conn().await?;
        let year = store::calendar_year(&mut conn, &region, request.year)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no calendar for region {region} and year {}", request.year)))?;
        Ok(calendar_to_proto(&year))
    }

    async fn replace_calendar_year(&self, request: Request<pb::CalendarYear>) -> ApiResult<pb::CalendarYear> {
        const METHOD: &str = "pos.v1.SlaService/PutCalendarYear";
        let caller = authorize(&request, METHOD, &[Role::System])?;
        let year = calendar_from_proto(request.into_inner())?;
        let mut tx = self.db.begin().await?;
        store::put_calendar_year(&mut tx, &year, &caller.subject, true).await?;
        let object = format!("{}/{}", year.region, year.year);
        let details = serde_json::json!({ "region_code": year.region, "year": year.year });
        audit::record(&mut tx, &caller, audit::Kind::CalendarChanged, METHOD, "", &object, details).await?;
        tx.commit().await?;
        tracing::info!(region = %year.region, year = year.year, actor = %caller.subject, "calendar year loaded");
        Ok(calendar_to_proto(&year))
    }
}

#[tonic::async_trait]
impl SlaService for Sla {
    async fn get_deadlines(
        &self,
        request: Request<pb::GetDeadlinesRequest>,
    ) -> Result<Response<pb::Deadlines>, Status> {
        Ok(Response::new(self.deadlines(request).await?))
    }

    async fn get_sla_log(&self, request: Request<pb::GetSlaLogRequest>) -> Result<Response<pb::SlaLog>, Status> {
        Ok(Response::new(self.sla_log(request).await?))
    }

    async fn resolve_periods(
        &self,
        request: Request<pb::ResolvePeriodsRequest>,
    ) -> Result<Response<pb::ResolvePeriodsResponse>, Status> {
        Ok(Response::new(self.periods(request).await?))
    }

    async fn get_policy(&self, request: Request<pb::GetPolicyRequest>) -> Result<Response<pb::SlaPolicy>, Status> {
        Ok(Response::new(self.policy(request).await?))
    }

    async fn put_policy(&self, request: Request<pb::SlaPolicy>) -> Result<Response<pb::SlaPolicy>, Status> {
        Ok(Response::new(self.replace_policy(request).await?))
    }

    async fn get_calendar_year(
        &self,
        request: Request<pb::GetCalendarYearRequest>,
    ) -> Result<Response<pb::CalendarYear>, Status> {
        Ok(Response::new(self.calendar_year(request).await?))
    }

    async fn put_calendar_year(
        &self,
        request: Request<pb::CalendarYear>,
    ) -> Result<Response<pb::CalendarYear>, Status> {
        Ok(Response::new(self.replace_calendar_year(request).await?))
    }
}

fn period_to_proto(period: Period) -> pb::SlaPeriod {
    pb::SlaPeriod { days: period.days, working_days: period.working_days }
}

fn period_from_proto(period: Option<pb::SlaPeriod>, field: &str, violations: &mut FieldViolations) -> Period {
    match period {
        Some(p) => Period { days: p.days, working_days: p.working_days },
        None => {
            violations.add(field, "is required");
            Period::calendar(0)
        }
    }
}

pub fn policy_to_proto(policy: &Policy) -> pb::SlaPolicy {
    pb::SlaPolicy {
        region_code: policy.region.clone(),
        standard: Some(period_to_proto(policy.standard)),
        fast_track: Some(period_to_proto(policy.fast_track)),
        fast_track_facts_set: policy.fast_track_facts.is_some(),
        fast_track_facts: policy.fast_track_facts.clone().unwrap_or_default(),
        facts: policy
            .facts
            .iter()
            .map(|f| pb::SlaFactPeriod {
                fact_id: f.fact_id.clone(),
                period: Some(period_to_proto(f.period)),
                move_to_next_working_day: f.move_to_next_working_day,
            })
            .collect(),
        move_to_next_working_day: policy.move_to_next_working_day,
        rereview: policy.rereview.map(period_to_proto),
        execution_share_percent: policy.execution_share_percent,
        warnings: policy
            .warnings
            .iter()
            .map(|w| pb::SlaWarningPoint {
                point: Some(match *w {
                    WarningPoint::WorkingDaysBefore { working_days_before } => {
                        pb::sla_warning_point::Point::WorkingDaysBefore(working_days_before)
                    }
                    WarningPoint::PercentOfPeriod { percent_of_period } => {
                        pb::sla_warning_point::Point::PercentOfPeriod(percent_of_period)
                    }
                }),
            })
            .collect(),
        redirect_keeps_deadline: policy.redirect_keeps_deadline,
    }
}

pub fn policy_from_proto(message: pb::SlaPolicy) -> ApiResult<Policy> {
    let mut violations = FieldViolations::new();
    let standard = period_from_proto(message.standard, "standard", &mut violations);
    let fast_track = period_from_proto(message.fast_track, "fast_track", &mut violations);
    let mut facts = Vec::new();
    for (i, fact) in message.facts.into_iter().enumerate() {
        let period = period_from_proto(fact.period, &format!("facts[{i}].period"), &mut violations);
        facts.push(FactPeriod {
            fact_id: fact.fact_id,
            period,
            move_to_next_working_day: fact.move_to_next_working_day,
        });
    }
    let mut warnings = Vec::new();
    for (i, warning) in message.warnings.into_iter().enumerate() {
        match warning.point {
            Some(pb::sla_warning_point::Point::WorkingDaysBefore(n)) => {
                warnings.push(WarningPoint::WorkingDaysBefore { working_days_before: n })
            }
            Some(pb::sla_warning_point::Point::PercentOfPeriod(n)) => {
                warnings.push(WarningPoint::PercentOfPeriod { percent_of_period: n })
            }
            None => violations.add(format!("warnings[{i}]"), "set working_days_before or percent_of_period"),
        }
    }
    let policy = Policy {
        region: message.region_code,
        standard,
        fast_track,
        fast_track_facts: message.fast_track_facts_set.then_some(message.fast_track_facts),
        facts,
        move_to_next_working_day: message.move_to_next_working_day,
        rereview: message.rereview.map(|p| Period { days: p.days, working_days: p.working_days }),
        execution_share_percent: message.execution_share_percent,
        warnings,
        redirect_keeps_deadline: message.redirect_keeps_deadline,
    };
    if policy.region != policy::DEFAULT_REGION && !pos_regions::is_known(&policy.region) {
        violations.add("region_code", "must be \"*\" or one of the 89 region codes");
    }
    if violations.is_empty() {
        for (field, problem) in policy.problems() {
            violations.add(field, problem);
        }
    }
    violations.into_result()?;
    Ok(policy)
}

pub fn calendar_to_proto(year: &CalendarYear) -> pb::CalendarYear {
    pb::CalendarYear {
        region_code: year.region.clone(),
        year: year.year,
        decree: year.decree.clone(),
        holidays: year
            .holidays
            .iter()
            .map(|h| pb::CalendarHoliday { date: h.date.to_string(), name: h.name.clone() })
            .collect(),
        transfers: year
            .transfers
            .iter()
            .map(|t| pb::CalendarTransfer { from: t.from.to_string(), to: t.to.to_string() })
            .collect(),
        shortened: year.shortened.iter().map(NaiveDate::to_string).collect(),
    }
}

pub fn calendar_from_proto(message: pb::CalendarYear) -> ApiResult<CalendarYear> {
    let mut violations = FieldViolations::new();
    let mut date = |field: String, text: &str| match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) => Some(date),
        Err(_) => {
            violations.add(field, "must be a date YYYY-MM-DD");
            None
        }
    };
    let holidays: Vec<Holiday> = message
        .holidays
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            date(format!("holidays[{i}].date"), &h.date).map(|date| Holiday { date, name: h.name.clone() })
        })
        .collect();
    let transfers: Vec<Transfer> = message
        .transfers
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let from = date(format!("transfers[{i}].from"), &t.from);
            let to = date(format!("transfers[{i}].to"), &t.to);
            Some(Transfer { from: from?, to: to? })
        })
        .collect();
    let shortened: Vec<NaiveDate> =
        message.shortened.iter().enumerate().filter_map(|(i, s)| date(format!("shortened[{i}]"), s)).collect();
    let year = CalendarYear {
        region: message.region_code,
        year: message.year,
        decree: message.decree,
        holidays,
        transfers,
        shortened,
    };
    if year.region != calendar::FEDERAL && !pos_regions::is_known(&year.region) {
        violations.add("region_code", "must be \"*\" or one of the 89 region codes");
    }
    if violations.is_empty()
        && let Err(problem) = year.validate()
    {
        violations.add("calendar", problem);
    }
    violations.into_result()?;
    Ok(year)
}

//! Tickets: read one, create one from a routed appeal, and change one by a versioned workflow
//! transition. The ticket's state is one column, `stage`; its folder and status line are derived
//! in code ([`crate::workflow::Stage`]).

use chrono::{DateTime, Utc};
use pos_platform::Tx;
use pos_platform::db::{Db, RowExt, now_micros, to_micros};
use pos_proto::v1 as pb;
use pos_proto::v1::events::AppealRouted;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::history::{self, HistoryLine};
use super::{listing, reminders, undecodable};
use crate::folder::Folder;
use crate::workflow::{Answer, AnswerKind, Effect, Refusal, Snapshot, Stage, State, Transition};

/// Every ticket column, in the order [`Ticket::from_row`] reads them.
pub const COLUMNS: &str = "id, appeal_id, number, organization_id, organization_short_name, organization_type, stage, \
    fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, fact_id, \
    public_text, problem_address, period_days, working_days, assignee_id, received_at, created_at, updated_at, \
    version, trace_id, applicant_account_id, applicant_name, time_zone, superseded_by, answer_due, execution_due, \
    overdue, review_round, answer_type, answer_text, answer_attachment_ids, answer_follow_up_at, answer_basis, rating, \
    incident_open";

#[derive(Clone, Debug, PartialEq)]
pub struct Ticket {
    pub id: String,
    pub appeal_id: String,
    pub number: i64,
    pub organization_id: String,
    pub organization_short_name: String,
    pub organization_type: i32,
    /// The stage and the answer (or draft) it holds.
    pub state: State,
    pub fast_track: bool,
    pub delegated_by_auto_rule: bool,
    pub source: i32,
    pub region_code: String,
    pub category_id: String,
    pub subcategory_id: String,
    pub fact_id: String,
    pub public_text: String,
    pub problem_address: String,
    pub period_days: i32,
    pub working_days: bool,
    /// The executor it is with; `None` while it is with the coordinator.
    pub assignee_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub trace_id: String,
    pub applicant_account_id: String,
    pub applicant_name: String,
    pub time_zone: String,
    /// The ticket that took over after a reroute; empty while this one is current.
    pub superseded_by: String,
    pub answer_due: Option<DateTime<Utc>>,
    pub execution_due: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub review_round: i32,
    /// 1..5 once the applicant accepted; 0 before.
    pub rating: i32,
    /// An incident on this ticket is not yet confirmed by the applicant.
    pub incident_open: bool,
}

impl Ticket {
    pub fn from_row(row: &AnyRow) -> Result<Ticket, sqlx::Error> {
        let code: String = row.try_get("stage")?;
        let stage: Stage = code.parse().map_err(|_| undecodable("stage", format!("unknown stage {code:?}")))?;
        let state = State::new(stage, answer_from_row(row)?)
            .ok_or_else(|| undecodable("answer_type", format!("a ticket {code} without its answer")))?;
        Ok(Ticket {
            id: row.try_get("id")?,
            appeal_id: row.try_get("appeal_id")?,
            number: row.try_get("number")?,
            organization_id: row.try_get("organization_id")?,
            organization_short_name: row.try_get("organization_short_name")?,
            organization_type: row.try_get::<i64, _>("organization_type")? as i32,
            state,
            fast_track: row.flag("fast_track")?,
            delegated_by_auto_rule: row.flag("delegated_by_auto_rule")?,
            source: row.try_get::<i64, _>("source")? as i32,
            region_code: row.try_get("region_code")?,
            category_id: row.try_get("category_id")?,
            subcategory_id: row.try_get("subcategory_id")?,
            fact_id: row.try_get("fact_id")?,
            public_text: row.try_get("public_text")?,
            problem_address: row.try_get("problem_address")?,
            period_days: row.try_get::<i64, _>("period_days")? as i32,
            working_days: row.flag("working_days")?,
            assignee_id: row.try_get("assignee_id")?,
            received_at: row.time("received_at")?,
            created_at: row.time("created_at")?,
            updated_at: row.time("updated_at")?,
            version: row.try_get("version")?,
            trace_id: row.try_get("trace_id")?,
            applicant_account_id: row.try_get("applicant_account_id")?,
            applicant_name: row.try_get("applicant_name")?,
            time_zone: row.try_get("time_zone")?,
            superseded_by: row.try_get("superseded_by")?,
            answer_due: row.time_opt("answer_due")?,
            execution_due: row.time_opt("execution_due")?,
            overdue: row.flag("overdue")?,
            review_round: row.try_get::<i64, _>("review_round")? as i32,
            rating: row.try_get::<i64, _>("rating")? as i32,
            incident_open: row.flag("incident_open")?,
        })
    }

    pub fn stage(&self) -> Stage {
        self.state.stage()
    }

    pub fn folder(&self) -> Folder {
        self.stage().folder()
    }

    /// The answer, or the draft an earlier round left.
    pub fn answer(&self) -> Option<&Answer> {
        self.state.answer()
    }

    /// See [`State::sent_answer`].
    pub fn sent_answer(&self) -> Option<&Answer> {
        self.state.sent_answer()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot { state: self.state.clone(), assignee_id: self.assignee_id.clone() }
    }
}

fn answer_from_row(row: &AnyRow) -> Result<Option<Answer>, sqlx::Error> {
    let kind: String = row.try_get("answer_type")?;
    // The kinds carry data, so they are matched here rather than parsed by name.
    let kind = match kind.as_str() {
        "" => return Ok(None),
        "resolved" => AnswerKind::Resolved,
        "not_resolved" => AnswerKind::NotResolved,
        "postponed" => AnswerKind::Postponed {
            follow_up_at: row.time_opt("answer_follow_up_at")?.ok_or_else(|| {
                undecodable("answer_follow_up_at", "a postponed answer without its follow-up date".into())
            })?,
        },
        "rejected" => AnswerKind::Rejected { basis: row.try_get("answer_basis")? },
        other => return Err(undecodable("answer_type", format!("unknown answer type {other:?}"))),
    };
    let attachments: String = row.try_get("answer_attachment_ids")?;
    Ok(Some(Answer {
        kind,
        text: row.try_get("answer_text")?,
        attachment_ids: attachments.split_whitespace().map(str::to_owned).collect(),
    }))
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tickets WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(Ticket::from_row)
        .transpose()
}

/// The tickets of `ids` (those that exist), in one query.
pub async fn get_many(db: &Db, ids: &[String]) -> Result<Vec<Ticket>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let params: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql = format!("SELECT {COLUMNS} FROM tickets WHERE id IN ({})", params.join(", "));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id);
    }
    query.fetch_all(db.pool()).await?.iter().map(Ticket::from_row).collect()
}

/// The appeal's current ticket (the one no reroute superseded).
pub async fn get_by_appeal(db: &Db, appeal_id: &str) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tickets WHERE appeal_id = $1 AND superseded_by = ''"
    )))
    .bind(appeal_id)
    .fetch_optional(db.pool())
    .await?
    .as_ref()
    .map(Ticket::from_row)
    .transpose()
}

async fn get_in(tx: &mut Tx, id: &str) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tickets WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(Ticket::from_row)
        .transpose()
}

/// What a routed appeal did to the cabinet.
#[derive(Debug)]
pub enum Routed {
    /// A repeated delivery of a decision already applied: nothing changed.
    Duplicate,
    /// A new ticket in New; `previous` is the ticket it replaced after a reroute, as it ended.
    Created { ticket: Box<Ticket>, previous: Option<Box<Ticket>> },
}

/// Creates the ticket for a routed appeal in the addressee's New folder, with its first history
/// entry.
///
/// A ticket belongs to one (appeal, organization) stint. When routing sends an appeal that
/// already has a current ticket somewhere else (a redirect, a return to coordination, or a
/// routing correction), the old ticket ends — it stays in its organization's folders, marked
/// superseded — and the new addressee gets a fresh ticket that keeps the original received time.
/// The same decision delivered twice finds the current ticket at the same organization, still
/// open, and changes nothing.
#[tracing::instrument(skip_all, fields(appeal_id = %routed.appeal_id))]
pub async fn create_from_routed(tx: &mut Tx, routed: &AppealRouted, trace_id: &str) -> Result<Routed, sqlx::Error> {
    let organization = routed.organization.clone().unwrap_or_default();
    let now = now_micros();
    let current = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tickets WHERE appeal_id = $1 AND superseded_by = ''"
    )))
    .bind(&routed.appeal_id)
    .fetch_optional(&mut **tx)
    .await?
    .as_ref()
    .map(Ticket::from_row)
    .transpose()?;
    let left = |stage: Stage| matches!(stage, Stage::Redirected | Stage::ReturnedToCoordination);
    if let Some(current) = &current
        && current.organization_id == organization.id
        && !left(current.stage())
    {
        return Ok(Routed::Duplicate);
    }
    // A reroute decision carries the addressee, not the appeal's content: that comes from the
    // ticket being replaced, which has it from the first decision.
    let mut routed = routed.clone();
    if let Some(p) = &current {
        let fill = |field: &mut String, from: &str| {
            if field.is_empty() {
                *field = from.to_owned();
            }
        };
        fill(&mut routed.region_code, &p.region_code);
        fill(&mut routed.category_id, &p.category_id);
        fill(&mut routed.subcategory_id, &p.subcategory_id);
        fill(&mut routed.fact_id, &p.fact_id);
        fill(&mut routed.public_text, &p.public_text);
        fill(&mut routed.problem_address, &p.problem_address);
        fill(&mut routed.time_zone, &p.time_zone);
        if routed.number == 0 {
            routed.number = p.number;
        }
        if routed.source == 0 {
            routed.source = p.source;
        }
        if routed.period_days == 0 {
            (routed.period_days, routed.working_days) = (p.period_days, p.working_days);
        }
        if routed.applicant.as_ref().is_none_or(|a| a.account_id.is_empty()) {
            routed.applicant = Some(pb::Applicant {
                account_id: p.applicant_account_id.clone(),
                full_name: p.applicant_name.clone(),
                ..Default::default()
            });
        }
    }
    let routed = &routed;
    // A reroute keeps the time the appeal first arrived: the deadlines run from it.
    let received_at = match &current {
        Some(previous) => to_micros(previous.received_at),
        None => routed.registered_at.as_ref().and_then(pos_proto::time::from_proto).map(to_micros).unwrap_or(now),
    };
    let id = uuid::Uuid::now_v7().to_string();
    if let Some(previous) = &current {
        // Ending the old stint first frees the appeal's current slot for the new ticket. Both
        // stages it can end in keep whatever draft it had.
        let ended = if left(previous.stage()) { previous.stage() } else { Stage::Redirected };
        sqlx::query(
            "UPDATE tickets SET superseded_by = $1, stage = $2, updated_at = $3, version = version + 1 WHERE id = $4",
        )
        .bind(&id)
        .bind(ended.code())
        .bind(now)
        .bind(&previous.id)
        .execute(&mut **tx)
        .await?;
        let to = organization.id.as_str();
        let line = HistoryLine {
            action: "redirected",
            from: Some(previous.stage()),
            to: ended,
            comment: &format!("routed to {to}"),
        };
        history::append(tx, &previous.id, "routing", line).await?;
    }
    let assignee_id = Some(routed.target_executor_id.clone()).filter(|executor| !executor.is_empty());
    // The appeal's answer deadline follows it until the SLA service's `sla.armed` for the new
    // organization arrives: that event names the kept deadline or a new one, and overwrites this.
    let (answer_due, overdue) = current.as_ref().map_or((None, false), |p| (p.answer_due.map(to_micros), p.overdue));
    sqlx::query(
        "INSERT INTO tickets (id, appeal_id, number, organization_id, organization_short_name, organization_type, \
         stage, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, \
         fact_id, public_text, problem_address, period_days, working_days, assignee_id, received_at, created_at, \
         updated_at, version, trace_id, applicant_account_id, applicant_name, time_zone, answer_due, overdue, \
         search_text) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
         $21, 1, $22, $23, $24, $25, $26, $27, $28)",
    )
    .bind(&id)
    .bind(&routed.appeal_id)
    .bind(routed.number)
    .bind(&organization.id)
    .bind(&organization.short_name)
    .bind(i64::from(organization.r#type))
    .bind(Stage::New.code())
    .bind(routed.fast_track)
    .bind(routed.delegated_by_auto_rule)
    .bind(i64::from(routed.source))
    .bind(&routed.region_code)
    .bind(&routed.category_id)
    .bind(&routed.subcategory_id)
    .bind(&routed.fact_id)
    .bind(&routed.public_text)
    .bind(&routed.problem_address)
    .bind(i64::from(routed.period_days))
    .bind(routed.working_days)
    .bind(assignee_id)
    .bind(received_at)
    .bind(now)
    .bind(trace_id)
    .bind(routed.applicant.as_ref().map(|a| a.account_id.clone()).unwrap_or_default())
    .bind(routed.applicant.as_ref().map(|a| a.full_name.clone()).unwrap_or_default())
    .bind(&routed.time_zone)
    .bind(answer_due)
    .bind(overdue)
    .bind(listing::search_text(&routed.public_text))
    .execute(&mut **tx)
    .await?;
    // Routing's explanation already says, in Russian, when an auto-rule passed the appeal on,
    // and only as much of the rule as the addressee may read (the rule may be a parent's).
    let line = HistoryLine { action: "received", from: None, to: Stage::New, comment: &routed.explanation };
    history::append(tx, &id, "routing", line).await?;
    let ticket = get_in(tx, &id).await?.ok_or(sqlx::Error::RowNotFound)?;
    let previous = match &current {
        Some(previous) => get_in(tx, &previous.id).await?.map(Box::new),
        None => None,
    };
    Ok(Routed::Created { ticket: Box::new(ticket), previous })
}

/// Records on the ticket that one of its incidents moved: the version goes up (a card open in a
/// browser notices), and `incident_open` says whether any incident is still not confirmed. Runs
/// in the incident step's transaction, after the incident's own row changed; returns the ticket
/// as it is now.
pub async fn incident_stepped(tx: &mut Tx, ticket_id: &str) -> Result<Ticket, sqlx::Error> {
    sqlx::query(
        "UPDATE tickets SET version = version + 1, updated_at = $1, incident_open = EXISTS \
         (SELECT 1 FROM incidents i WHERE i.ticket_id = $2 AND i.state <> 'confirmed') WHERE id = $2",
    )
    .bind(now_micros())
    .bind(ticket_id)
    .execute(&mut **tx)
    .await?;
    get_in(tx, ticket_id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// Why a command was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("no such ticket")]
    NotFound,
    /// The ticket changed since the caller read it.
    #[error("the ticket changed: version {current}, the command expected {expected}")]
    StaleVersion { current: i64, expected: i64 },
    #[error(transparent)]
    Workflow(#[from] Refusal),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The columns a transition's effects change, as they will be written.
struct Changes {
    assignee_id: Option<String>,
    execution_due: Option<i64>,
    rating: i32,
    review_round: i32,
    overdue: bool,
    /// A postponed answer's promise to come back.
    reminder: Option<DateTime<Utc>>,
}

impl Changes {
    fn of(ticket: &Ticket) -> Changes {
        Changes {
            assignee_id: ticket.assignee_id.clone(),
            execution_due: ticket.execution_due.map(to_micros),
            rating: ticket.rating,
            review_round: ticket.review_round,
            overdue: ticket.overdue,
            reminder: None,
        }
    }

    fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::Assign(assignee_id) => self.assignee_id = assignee_id.clone(),
            Effect::SetExecutionDue(due) => self.execution_due = Some(to_micros(*due)),
            Effect::Rate(rating) => self.rating = rating.get(),
            Effect::Reopen => {
                self.review_round += 1;
                // A re-review starts a new answer clock: the old round's overdue flag no longer
                // applies.
                self.overdue = false;
            }
            Effect::ReleaseAnswer(answer) => {
                if let AnswerKind::Postponed { follow_up_at } = answer.kind {
                    self.reminder = Some(follow_up_at);
                }
            }
            // Routing's business: the event published with the transition asks for it.
            Effect::Reroute { .. } => {}
        }
    }
}

/// Reads the ticket inside the transaction, checks the caller's version, asks the workflow, and
/// persists the transition: the new state, each effect, a history line. `decide` sees the ticket
/// as stored, so two commands racing on one version cannot both pass: the conditional UPDATE lets
/// exactly one through and the other gets [`ApplyError::StaleVersion`].
pub async fn apply(
    tx: &mut Tx,
    ticket_id: &str,
    expected_version: i64,
    actor: &str,
    decide: impl FnOnce(&Ticket) -> Result<Transition, Refusal>,
) -> Result<(Ticket, Transition), ApplyError> {
    let before = get_in(tx, ticket_id).await?.ok_or(ApplyError::NotFound)?;
    if before.version != expected_version {
        return Err(ApplyError::StaleVersion { current: before.version, expected: expected_version });
    }
    let transition = decide(&before)?;
    let mut changes = Changes::of(&before);
    for effect in &transition.effects {
        changes.apply(effect);
    }
    let now = now_micros();
    let answer = transition.to.answer();
    let (follow_up, basis) = match answer.map(|a| &a.kind) {
        Some(AnswerKind::Postponed { follow_up_at }) => (Some(to_micros(*follow_up_at)), ""),
        Some(AnswerKind::Rejected { basis }) => (None, basis.as_str()),
        Some(AnswerKind::Resolved | AnswerKind::NotResolved) | None => (None, ""),
    };
    let updated = sqlx::query(
        "UPDATE tickets SET stage = $1, assignee_id = $2, answer_type = $3, answer_text = $4, \
         answer_attachment_ids = $5, answer_follow_up_at = $6, answer_basis = $7, execution_due = $8, \
         rating = $9, review_round = $10, overdue = $11, updated_at = $12, version = version + 1 \
         WHERE id = $13 AND version = $14",
    )
    .bind(transition.to.stage().code())
    .bind(changes.assignee_id)
    .bind(answer.map(|a| a.kind.code()).unwrap_or_default())
    .bind(answer.map(|a| a.text.clone()).unwrap_or_default())
    .bind(answer.map(|a| a.attachment_ids.join(" ")).unwrap_or_default())
    .bind(follow_up)
    .bind(basis)
    .bind(changes.execution_due)
    .bind(i64::from(changes.rating))
    .bind(i64::from(changes.review_round))
    .bind(changes.overdue)
    .bind(now)
    .bind(ticket_id)
    .bind(expected_version)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 0 {
        let current = get_in(tx, ticket_id).await?.map(|t| t.version).unwrap_or_default();
        return Err(ApplyError::StaleVersion { current, expected: expected_version });
    }
    let line = HistoryLine {
        action: transition.history_action,
        from: Some(transition.from),
        to: transition.to.stage(),
        comment: &transition.comment,
    };
    history::append(tx, ticket_id, actor, line).await?;
    if let Some(due_at) = changes.reminder {
        reminders::add(tx, ticket_id, due_at).await?;
    }
    let after = get_in(tx, ticket_id).await?.ok_or(ApplyError::NotFound)?;
    Ok((after, transition))
}

//! Tickets and their history, written once for both dialects.

use chrono::{DateTime, Utc};
use pos_platform::Tx;
use pos_platform::db::{Db, RowExt, now_micros, to_micros};
use pos_proto::v1 as pb;
use pos_proto::v1::events::AppealRouted;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::folder::Folder;
use crate::workflow::{Answer, AnswerKind, Snapshot, Stage, Transition};
use pos_platform::auth::Role;

/// Every ticket column, in the order [`Ticket::from_row`] reads them.
pub const COLUMNS: &str = "id, appeal_id, number, organization_id, organization_short_name, organization_type, folder, \
    status, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, fact_id, \
    public_text, problem_address, period_days, working_days, assignee_id, received_at, created_at, updated_at, \
    version, trace_id, applicant_account_id, applicant_name, time_zone, superseded_by, answer_due, execution_due, \
    overdue, review_round, answer_type, answer_text, answer_attachment_ids, answer_follow_up_at, answer_basis, rating";

#[derive(Clone, Debug, PartialEq)]
pub struct Ticket {
    pub id: String,
    pub appeal_id: String,
    pub number: i64,
    pub organization_id: String,
    pub organization_short_name: String,
    pub organization_type: i32,
    pub folder: Folder,
    pub status: String,
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
    pub assignee_id: String,
    pub received_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub trace_id: String,
    pub stage: Stage,
    pub applicant_account_id: String,
    pub applicant_name: String,
    pub time_zone: String,
    /// The ticket that took over after a reroute; empty while this one is current.
    pub superseded_by: String,
    pub answer_due: Option<DateTime<Utc>>,
    pub execution_due: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub review_round: i32,
    pub answer: Option<Answer>,
    /// 1..5 once the applicant accepted; 0 before.
    pub rating: i32,
}

impl Ticket {
    pub fn from_row(row: &AnyRow) -> Result<Ticket, sqlx::Error> {
        let folder: String = row.try_get("folder")?;
        let status: String = row.try_get("status")?;
        Ok(Ticket {
            id: row.try_get("id")?,
            appeal_id: row.try_get("appeal_id")?,
            number: row.try_get("number")?,
            organization_id: row.try_get("organization_id")?,
            organization_short_name: row.try_get("organization_short_name")?,
            organization_type: row.try_get::<i64, _>("organization_type")? as i32,
            folder: Folder::parse(&folder).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "folder".into(),
                source: format!("unknown folder {folder:?}").into(),
            })?,
            status: status.clone(),
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
            stage: Stage::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "status".into(),
                source: format!("unknown status {status:?}").into(),
            })?,
            applicant_account_id: row.try_get("applicant_account_id")?,
            applicant_name: row.try_get("applicant_name")?,
            time_zone: row.try_get("time_zone")?,
            superseded_by: row.try_get("superseded_by")?,
            answer_due: row.time_opt("answer_due")?,
            execution_due: row.time_opt("execution_due")?,
            overdue: row.flag("overdue")?,
            review_round: row.try_get::<i64, _>("review_round")? as i32,
            answer: answer_from_row(row)?,
            rating: row.try_get::<i64, _>("rating")? as i32,
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot { stage: self.stage, assignee_id: self.assignee_id.clone(), answer: self.answer.clone() }
    }

    pub fn to_proto(&self) -> pb::Ticket {
        pb::Ticket {
            id: self.id.clone(),
            appeal_id: self.appeal_id.clone(),
            number: self.number,
            organization: Some(pb::OrganizationRef {
                id: self.organization_id.clone(),
                short_name: self.organization_short_name.clone(),
                r#type: self.organization_type,
                region_code: self.region_code.clone(),
            }),
            folder: self.folder.to_proto() as i32,
            status: self.status.clone(),
            fast_track: self.fast_track,
            delegated_by_auto_rule: self.delegated_by_auto_rule,
            source: self.source,
            region_code: self.region_code.clone(),
            category_id: self.category_id.clone(),
            subcategory_id: self.subcategory_id.clone(),
            fact_id: self.fact_id.clone(),
            public_text: self.public_text.clone(),
            problem_address: self.problem_address.clone(),
            received_at: Some(pos_proto::time::to_proto(self.received_at)),
            created_at: Some(pos_proto::time::to_proto(self.created_at)),
            period_days: self.period_days,
            working_days: self.working_days,
            assignee_id: self.assignee_id.clone(),
            version: self.version,
            trace_id: self.trace_id.clone(),
            answer_due: self.answer_due.map(pos_proto::time::to_proto),
            execution_due: self.execution_due.map(pos_proto::time::to_proto),
            overdue: self.overdue,
            review_round: self.review_round,
            answer: self.answer.as_ref().map(answer_to_proto),
            rating: self.rating,
            superseded_by: self.superseded_by.clone(),
            time_zone: self.time_zone.clone(),
        }
    }
}

fn answer_from_row(row: &AnyRow) -> Result<Option<Answer>, sqlx::Error> {
    let kind: String = row.try_get("answer_type")?;
    let kind = match kind.as_str() {
        "" => return Ok(None),
        "resolved" => AnswerKind::Resolved,
        "not_resolved" => AnswerKind::NotResolved,
        "postponed" => AnswerKind::Postponed {
            follow_up_at: row.time_opt("answer_follow_up_at")?.ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "answer_follow_up_at".into(),
                source: "a postponed answer without its follow-up date".into(),
            })?,
        },
        "rejected" => AnswerKind::Rejected { basis: row.try_get("answer_basis")? },
        other => {
            return Err(sqlx::Error::ColumnDecode {
                index: "answer_type".into(),
                source: format!("unknown answer type {other:?}").into(),
            });
        }
    };
    let attachments: String = row.try_get("answer_attachment_ids")?;
    Ok(Some(Answer {
        kind,
        text: row.try_get("answer_text")?,
        attachment_ids: attachments.split_whitespace().map(str::to_owned).collect(),
    }))
}

pub fn answer_to_proto(answer: &Answer) -> pb::Answer {
    let (follow_up_at, basis) = match &answer.kind {
        AnswerKind::Postponed { follow_up_at } => (Some(pos_proto::time::to_proto(*follow_up_at)), String::new()),
        AnswerKind::Rejected { basis } => (None, basis.clone()),
        AnswerKind::Resolved | AnswerKind::NotResolved => (None, String::new()),
    };
    pb::Answer {
        r#type: answer.kind.to_proto() as i32,
        text: answer.text.clone(),
        attachment_ids: answer.attachment_ids.clone(),
        follow_up_at,
        basis,
    }
}

/// What a routed appeal did to the cabinet.
#[derive(Debug)]
pub enum Routed {
    /// A repeated delivery of a decision already applied: nothing changed.
    Duplicate,
    /// A new ticket in New; `previous` is the ticket it replaced after a reroute.
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
        && !left(current.stage)
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
        // Ending the old stint first frees the appeal's current slot for the new ticket.
        let ended = if left(previous.stage) { previous.stage } else { Stage::Redirected };
        sqlx::query(
            "UPDATE tickets SET superseded_by = $1, status = $2, folder = $3, updated_at = $4, \
             version = version + 1 WHERE id = $5",
        )
        .bind(&id)
        .bind(ended.as_str())
        .bind(ended.folder().as_str())
        .bind(now)
        .bind(&previous.id)
        .execute(&mut **tx)
        .await?;
        let to = organization.id.as_str();
        append_history(
            tx,
            &previous.id,
            "routing",
            HistoryLine {
                action: "redirected",
                from: Some(previous.stage),
                to: ended,
                comment: &format!("routed to {to}"),
            },
        )
        .await?;
    }
    sqlx::query(
        "INSERT INTO tickets (id, appeal_id, number, organization_id, organization_short_name, organization_type, \
         folder, status, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, \
         fact_id, public_text, problem_address, period_days, working_days, assignee_id, received_at, created_at, \
         updated_at, version, trace_id, applicant_account_id, applicant_name, time_zone) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
         $22, $22, 1, $23, $24, $25, $26)",
    )
    .bind(&id)
    .bind(&routed.appeal_id)
    .bind(routed.number)
    .bind(&organization.id)
    .bind(&organization.short_name)
    .bind(i64::from(organization.r#type))
    .bind(Folder::New.as_str())
    .bind(Stage::New.as_str())
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
    .bind(&routed.target_executor_id)
    .bind(received_at)
    .bind(now)
    .bind(trace_id)
    .bind(routed.applicant.as_ref().map(|a| a.account_id.clone()).unwrap_or_default())
    .bind(routed.applicant.as_ref().map(|a| a.full_name.clone()).unwrap_or_default())
    .bind(&routed.time_zone)
    .execute(&mut **tx)
    .await?;
    let comment = if routed.delegated_by_auto_rule {
        format!("delegated by auto-rule {}: {}", routed.auto_rule_id, routed.explanation)
    } else {
        routed.explanation.clone()
    };
    append_history(
        tx,
        &id,
        "routing",
        HistoryLine { action: "received", from: None, to: Stage::New, comment: &comment },
    )
    .await?;
    let ticket = get_in(tx, &id).await?.ok_or(sqlx::Error::RowNotFound)?;
    let previous = match &current {
        Some(previous) => get_in(tx, &previous.id).await?.map(Box::new),
        None => None,
    };
    Ok(Routed::Created { ticket: Box::new(ticket), previous })
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

/// One line of a ticket's history.
pub struct HistoryLine<'a> {
    pub action: &'a str,
    pub from: Option<Stage>,
    pub to: Stage,
    pub comment: &'a str,
}

/// Why a command was not stored.
#[derive(Debug)]
pub enum ApplyError {
    NotFound,
    /// The ticket changed since the caller read it (or the command was refused by the workflow,
    /// which the caller reports itself).
    StaleVersion {
        current: i64,
    },
    Workflow(crate::workflow::Refusal),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for ApplyError {
    fn from(error: sqlx::Error) -> ApplyError {
        ApplyError::Db(error)
    }
}

/// Reads the ticket inside the transaction, checks the caller's version, asks the workflow, and
/// persists the transition. `decide` sees the ticket as stored, so two commands racing on one
/// version cannot both pass: the conditional UPDATE lets exactly one through and the other gets
/// [`ApplyError::StaleVersion`].
pub async fn apply(
    tx: &mut Tx,
    ticket_id: &str,
    expected_version: i64,
    actor: &str,
    decide: impl FnOnce(&Ticket) -> Result<Transition, crate::workflow::Refusal>,
) -> Result<(Ticket, Transition), ApplyError> {
    let before = get_in(tx, ticket_id).await?.ok_or(ApplyError::NotFound)?;
    if before.version != expected_version {
        return Err(ApplyError::StaleVersion { current: before.version });
    }
    let transition = decide(&before).map_err(ApplyError::Workflow)?;
    let now = now_micros();
    let answer = transition.answer.as_ref();
    let (answer_type, follow_up, basis) = match answer.map(|a| &a.kind) {
        None => ("", None, String::new()),
        Some(kind @ AnswerKind::Postponed { follow_up_at }) => {
            (kind.as_str(), Some(to_micros(*follow_up_at)), String::new())
        }
        Some(kind @ AnswerKind::Rejected { basis }) => (kind.as_str(), None, basis.clone()),
        Some(kind) => (kind.as_str(), None, String::new()),
    };
    let execution_due = match transition.execution_due {
        Some(due) => Some(to_micros(due)),
        None => before.execution_due.map(to_micros),
    };
    let updated = sqlx::query(
        "UPDATE tickets SET status = $1, folder = $2, assignee_id = $3, answer_type = $4, answer_text = $5, \
         answer_attachment_ids = $6, answer_follow_up_at = $7, answer_basis = $8, execution_due = $9, \
         rating = $10, review_round = $11, overdue = $12, \
         updated_at = $13, version = version + 1 WHERE id = $14 AND version = $15",
    )
    .bind(transition.to.as_str())
    .bind(transition.to.folder().as_str())
    .bind(&transition.assignee_id)
    .bind(answer_type)
    .bind(answer.map(|a| a.text.clone()).unwrap_or_default())
    .bind(answer.map(|a| a.attachment_ids.join(" ")).unwrap_or_default())
    .bind(follow_up)
    .bind(basis)
    .bind(execution_due)
    .bind(i64::from(transition.rating.map(|r| r.get()).unwrap_or(before.rating)))
    .bind(i64::from(before.review_round + i32::from(transition.reopens)))
    // A re-review starts a new answer clock: the old round's overdue flag no longer applies.
    .bind(before.overdue && !transition.reopens)
    .bind(now)
    .bind(ticket_id)
    .bind(expected_version)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 0 {
        let current = get_in(tx, ticket_id).await?.map(|t| t.version).unwrap_or_default();
        return Err(ApplyError::StaleVersion { current });
    }
    append_history(
        tx,
        ticket_id,
        actor,
        HistoryLine {
            action: transition.history_action,
            from: Some(transition.from),
            to: transition.to,
            comment: &transition.comment,
        },
    )
    .await?;
    if let Some(Answer { kind: AnswerKind::Postponed { follow_up_at }, .. }) = &transition.approved {
        // The promise to come back becomes a tracked reminder.
        sqlx::query(
            "INSERT INTO reminders (ticket_id, due_at, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (ticket_id, due_at) DO NOTHING",
        )
        .bind(ticket_id)
        .bind(to_micros(*follow_up_at))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    let after = get_in(tx, ticket_id).await?.ok_or(ApplyError::NotFound)?;
    Ok((after, transition))
}

/// Appends one entry to a ticket's history.
pub async fn append_history(
    tx: &mut Tx,
    ticket_id: &str,
    actor: &str,
    line: HistoryLine<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ticket_history (ticket_id, seq, at, actor, action, from_folder, to_folder, comment, from_status, \
         to_status) VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ticket_history WHERE ticket_id = $1), $2, $3, \
         $4, $5, $6, $7, $8, $9)",
    )
    .bind(ticket_id)
    .bind(now_micros())
    .bind(actor)
    .bind(line.action)
    .bind(line.from.map(|s| s.folder().as_str()).unwrap_or(""))
    .bind(line.to.folder().as_str())
    .bind(line.comment)
    .bind(line.from.map(Stage::as_str).unwrap_or(""))
    .bind(line.to.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
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

/// Where a page starts: after this (sort key, id) in the list's order. The key is the received
/// time or the answer deadline (a ticket without a deadline sorts as the latest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub key: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        hex::encode(format!("{}|{}", self.key, self.id))
    }

    pub fn decode(token: &str) -> Option<Cursor> {
        let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
        let (key, id) = text.split_once('|')?;
        Some(Cursor { key: key.parse().ok()?, id: id.to_owned() })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Received,
    Due,
}

/// A deadline that is not set sorts after every real one.
const NO_DEADLINE: i64 = i64::MAX;

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Received => "received_at",
            SortKey::Due => "COALESCE(answer_due, 9223372036854775807)",
        }
    }

    fn of(self, ticket: &Ticket) -> i64 {
        match self {
            SortKey::Received => to_micros(ticket.received_at),
            SortKey::Due => ticket.answer_due.map(to_micros).unwrap_or(NO_DEADLINE),
        }
    }
}

/// Whose tickets: an organization's cabinet, or an applicant's own appeals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Organization(String),
    Applicant(String),
}

#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub folder: Option<Folder>,
    pub fast_track_only: bool,
    pub delegated_only: bool,
    pub overdue_only: bool,
    /// Answer deadline within [from, to), microseconds.
    pub due_from: Option<i64>,
    pub due_to: Option<i64>,
    pub sources: Vec<i32>,
    pub category_ids: Vec<String>,
    pub fact_ids: Vec<String>,
    pub region_code: Option<String>,
    /// A substring of the appeal's text or number.
    pub text: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ListQuery {
    pub scope: Scope,
    pub filters: Filters,
    pub sort: SortKey,
    pub descending: bool,
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// A parameterised WHERE clause: SQL text with `$N` placeholders and the values to bind.
enum Value {
    Text(String),
    Int(i64),
}

struct Where {
    sql: String,
    values: Vec<Value>,
}

impl Where {
    fn new() -> Where {
        Where { sql: String::new(), values: Vec::new() }
    }

    fn param(&mut self, value: Value) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    fn and(&mut self, clause: &str) {
        self.sql.push_str(if self.sql.is_empty() { " WHERE " } else { " AND " });
        self.sql.push_str(clause);
    }

    fn any_of(&mut self, column: &str, values: Vec<Value>) {
        let params: Vec<String> = values.into_iter().map(|v| self.param(v)).collect();
        self.and(&format!("{column} IN ({})", params.join(", ")));
    }

    fn bind<'q>(
        self,
        mut statement: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        for value in self.values {
            statement = match value {
                Value::Text(text) => statement.bind(text),
                Value::Int(n) => statement.bind(n),
            };
        }
        statement
    }
}

/// The scope and filters, without the folder when `with_folder` is false (folder counts).
fn filter_clause(db: &Db, scope: &Scope, filters: &Filters, with_folder: bool) -> Where {
    let mut w = Where::new();
    match scope {
        Scope::Organization(id) => {
            let p = w.param(Value::Text(id.clone()));
            w.and(&format!("organization_id = {p}"));
        }
        Scope::Applicant(account) => {
            let p = w.param(Value::Text(account.clone()));
            // An applicant follows the appeal, not each organization's stint: only current tickets.
            w.and(&format!("applicant_account_id = {p} AND superseded_by = ''"));
        }
    }
    if let (true, Some(folder)) = (with_folder, filters.folder) {
        let p = w.param(Value::Text(folder.as_str().to_owned()));
        w.and(&format!("folder = {p}"));
    }
    if filters.fast_track_only {
        w.and("fast_track = TRUE");
    }
    if filters.delegated_only {
        w.and("delegated_by_auto_rule = TRUE");
    }
    if filters.overdue_only {
        w.and("overdue = TRUE");
    }
    if let Some(from) = filters.due_from {
        let p = w.param(Value::Int(from));
        w.and(&format!("answer_due >= {p}"));
    }
    if let Some(to) = filters.due_to {
        let p = w.param(Value::Int(to));
        w.and(&format!("answer_due < {p}"));
    }
    if !filters.sources.is_empty() {
        w.any_of("source", filters.sources.iter().map(|s| Value::Int(i64::from(*s))).collect());
    }
    if !filters.category_ids.is_empty() {
        w.any_of("category_id", filters.category_ids.iter().cloned().map(Value::Text).collect());
    }
    if !filters.fact_ids.is_empty() {
        w.any_of("fact_id", filters.fact_ids.iter().cloned().map(Value::Text).collect());
    }
    if let Some(region) = &filters.region_code {
        let p = w.param(Value::Text(region.clone()));
        w.and(&format!("region_code = {p}"));
    }
    if let Some(text) = &filters.text {
        let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let p = w.param(Value::Text(format!("%{escaped}%")));
        let like = db.dialect().ilike();
        // The number matches exactly, so "15" does not find 150.
        let n = w.param(Value::Text(text.trim().to_owned()));
        w.and(&format!("(public_text {like} {p} ESCAPE '\\' OR CAST(number AS TEXT) = {n})"));
    }
    w
}

/// One page of a list, and the cursor of the next page if there is one.
#[tracing::instrument(skip(db))]
pub async fn list(db: &Db, query: &ListQuery) -> Result<(Vec<Ticket>, Option<Cursor>), sqlx::Error> {
    let mut w = filter_clause(db, &query.scope, &query.filters, true);
    let key = query.sort.column();
    let (compare, direction) = if query.descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(after) = &query.after {
        let at = w.param(Value::Int(after.key));
        let id = w.param(Value::Text(after.id.clone()));
        // A row-value comparison: both dialects turn it into one index range.
        w.and(&format!("({key}, id) {compare} ({at}, {id})"));
    }
    // One extra row tells whether there is a next page.
    let limit = w.param(Value::Int(query.limit + 1));
    let sql =
        format!("SELECT {COLUMNS} FROM tickets{} ORDER BY {key} {direction}, id {direction} LIMIT {limit}", w.sql);
    let rows = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_all(db.pool()).await?;
    let mut tickets = rows.iter().map(Ticket::from_row).collect::<Result<Vec<_>, _>>()?;
    let next = if tickets.len() as i64 > query.limit {
        tickets.truncate(query.limit as usize);
        tickets.last().map(|t| Cursor { key: query.sort.of(t), id: t.id.clone() })
    } else {
        None
    };
    Ok((tickets, next))
}

/// Tickets per folder under the same scope and filters as the list (the folder filter aside);
/// folders without tickets count zero.
pub async fn folder_counts(db: &Db, scope: &Scope, filters: &Filters) -> Result<Vec<(Folder, i64)>, sqlx::Error> {
    let w = filter_clause(db, scope, filters, false);
    let sql = format!("SELECT folder, COUNT(*) AS n FROM tickets{} GROUP BY folder", w.sql);
    let rows = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_all(db.pool()).await?;
    let mut counts: Vec<(Folder, i64)> = Folder::ALL.iter().map(|f| (*f, 0)).collect();
    for row in rows {
        let folder: String = row.try_get("folder")?;
        let n: i64 = row.try_get("n")?;
        if let Some(slot) = counts.iter_mut().find(|(f, _)| f.as_str() == folder) {
            slot.1 = n;
        }
    }
    Ok(counts)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub from_folder: String,
    pub to_folder: String,
    pub comment: String,
    pub from_status: String,
    pub to_status: String,
}

pub async fn history(db: &Db, ticket_id: &str) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, from_folder, to_folder, comment, from_status, to_status FROM ticket_history \
         WHERE ticket_id = $1 ORDER BY seq",
    )
    .bind(ticket_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HistoryEntry {
                seq: row.try_get("seq")?,
                at: row.time("at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                from_folder: row.try_get("from_folder")?,
                to_folder: row.try_get("to_folder")?,
                comment: row.try_get("comment")?,
                from_status: row.try_get("from_status")?,
                to_status: row.try_get("to_status")?,
            })
        })
        .collect()
}

/// Which deadline an `sla.*` event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    Answer,
    Execution,
}

/// Records a deadline the SLA service armed (or moved). Tickets are found by id, or by appeal and
/// organization when the SLA event predates the ticket id (it is keyed by the appeal).
pub async fn set_due(
    tx: &mut Tx,
    ticket_id: &str,
    appeal_id: &str,
    organization_id: &str,
    clock: Clock,
    due: i64,
) -> Result<u64, sqlx::Error> {
    let column = match clock {
        Clock::Answer => "answer_due",
        Clock::Execution => "execution_due",
    };
    // A newly armed answer clock is a fresh deadline: the overdue flag belongs to the old one.
    let reset = if clock == Clock::Answer { ", overdue = FALSE" } else { "" };
    let sql = format!(
        "UPDATE tickets SET {column} = $1{reset} WHERE (id = $2 OR ($2 = '' AND appeal_id = $3 AND organization_id = $4 \
         AND superseded_by = ''))"
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(due)
        .bind(ticket_id)
        .bind(appeal_id)
        .bind(organization_id)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// `sla.overdue` for the answer clock: the list's overdue filter.
pub async fn set_overdue(
    tx: &mut Tx,
    ticket_id: &str,
    appeal_id: &str,
    organization_id: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE tickets SET overdue = TRUE WHERE (id = $1 OR ($1 = '' AND appeal_id = $2 AND organization_id = $3 \
         AND superseded_by = ''))",
    )
    .bind(ticket_id)
    .bind(appeal_id)
    .bind(organization_id)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// One member of an organization's staff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffMember {
    pub organization_id: String,
    pub subject: String,
    pub full_name: String,
    pub email: String,
    pub roles: Vec<Role>,
    pub active: bool,
}

pub async fn upsert_staff(db: &Db, member: &StaffMember) -> Result<(), sqlx::Error> {
    let roles: Vec<&str> = member.roles.iter().map(|r| r.as_str()).collect();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO staff (organization_id, subject, full_name, email, roles, active, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (organization_id, subject) DO UPDATE SET \
         full_name = excluded.full_name, email = excluded.email, roles = excluded.roles, active = excluded.active, \
         updated_at = excluded.updated_at",
    )
    .bind(&member.organization_id)
    .bind(&member.subject)
    .bind(&member.full_name)
    .bind(&member.email)
    .bind(roles.join(" "))
    .bind(member.active)
    .bind(now_micros())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// An organization's staff, optionally only those holding `role`, ordered by name.
pub async fn list_staff(db: &Db, organization_id: &str, role: Option<Role>) -> Result<Vec<StaffMember>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT organization_id, subject, full_name, email, roles, active FROM staff WHERE organization_id = $1 \
         ORDER BY full_name, subject",
    )
    .bind(organization_id)
    .fetch_all(db.pool())
    .await?;
    let mut staff = Vec::with_capacity(rows.len());
    for row in &rows {
        let roles: String = row.try_get("roles")?;
        let member = StaffMember {
            organization_id: row.try_get("organization_id")?,
            subject: row.try_get("subject")?,
            full_name: row.try_get("full_name")?,
            email: row.try_get("email")?,
            // A role this build does not know is skipped, not fatal: directories outlive builds.
            roles: roles.split_whitespace().filter_map(|r| r.parse().ok()).collect(),
            active: row.flag("active")?,
        };
        if role.is_none_or(|r| member.roles.contains(&r)) {
            staff.push(member);
        }
    }
    Ok(staff)
}

/// Whether `subject` is an active member of the organization with `role` (assignment targets).
pub async fn is_active_staff(db: &Db, organization_id: &str, subject: &str, role: Role) -> Result<bool, sqlx::Error> {
    let staff = list_staff(db, organization_id, Some(role)).await?;
    Ok(staff.iter().any(|m| m.subject == subject && m.active))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub body: String,
}

/// Saves a template by (organization, name); the caller has already checked its placeholders.
pub async fn save_template(db: &Db, organization_id: &str, name: &str, body: &str) -> Result<Template, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO answer_templates (id, organization_id, name, body, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (organization_id, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(organization_id)
    .bind(name)
    .bind(body)
    .bind(now_micros())
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(
        "SELECT id, organization_id, name, body FROM answer_templates WHERE organization_id = $1 AND name = $2",
    )
    .bind(organization_id)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    template_from_row(&row)
}

fn template_from_row(row: &AnyRow) -> Result<Template, sqlx::Error> {
    Ok(Template {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        name: row.try_get("name")?,
        body: row.try_get("body")?,
    })
}

pub async fn list_templates(db: &Db, organization_id: &str) -> Result<Vec<Template>, sqlx::Error> {
    sqlx::query("SELECT id, organization_id, name, body FROM answer_templates WHERE organization_id = $1 ORDER BY name")
        .bind(organization_id)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(template_from_row)
        .collect()
}

pub async fn get_template(db: &Db, id: &str) -> Result<Option<Template>, sqlx::Error> {
    sqlx::query("SELECT id, organization_id, name, body FROM answer_templates WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(template_from_row)
        .transpose()
}

/// A postponed answer's promise to come back, tracked until the organization does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reminder {
    pub ticket_id: String,
    pub appeal_id: String,
    pub number: i64,
    pub due_at: DateTime<Utc>,
}

/// An organization's open follow-ups due before `until` (microseconds), soonest first.
pub async fn due_reminders(db: &Db, organization_id: &str, until: i64) -> Result<Vec<Reminder>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.ticket_id, t.appeal_id, t.number, r.due_at FROM reminders r JOIN tickets t ON t.id = r.ticket_id \
         WHERE t.organization_id = $1 AND r.done = FALSE AND r.due_at < $2 ORDER BY r.due_at, r.ticket_id",
    )
    .bind(organization_id)
    .bind(until)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Reminder {
                ticket_id: row.try_get("ticket_id")?,
                appeal_id: row.try_get("appeal_id")?,
                number: row.try_get("number")?,
                due_at: row.time("due_at")?,
            })
        })
        .collect()
}

/// An escalation of a ticket, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    pub ticket_id: String,
    pub appeal_id: String,
    pub organization_id: String,
    pub kind: crate::incident::Kind,
    pub state: crate::incident::State,
    pub service: String,
    pub request_type: String,
    pub system: String,
    pub priority: String,
    pub subject: String,
    pub attachment_ids: Vec<String>,
    pub user_account: String,
    pub external_id: String,
    pub resolution: String,
    pub last_comment: String,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const INCIDENT_COLUMNS: &str = "id, ticket_id, appeal_id, organization_id, kind, state, service, request_type, system, \
    priority, subject, attachment_ids, user_account, external_id, resolution, last_comment, opened_by, opened_at, \
    updated_at, version";

fn incident_from_row(row: &AnyRow) -> Result<Incident, sqlx::Error> {
    let decode = |index: &str, value: String| sqlx::Error::ColumnDecode {
        index: index.into(),
        source: format!("unknown value {value:?}").into(),
    };
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let attachments: String = row.try_get("attachment_ids")?;
    Ok(Incident {
        id: row.try_get("id")?,
        ticket_id: row.try_get("ticket_id")?,
        appeal_id: row.try_get("appeal_id")?,
        organization_id: row.try_get("organization_id")?,
        kind: crate::incident::Kind::parse(&kind).ok_or_else(|| decode("kind", kind.clone()))?,
        state: crate::incident::State::parse(&state).ok_or_else(|| decode("state", state.clone()))?,
        service: row.try_get("service")?,
        request_type: row.try_get("request_type")?,
        system: row.try_get("system")?,
        priority: row.try_get("priority")?,
        subject: row.try_get("subject")?,
        attachment_ids: attachments.split_whitespace().map(str::to_owned).collect(),
        user_account: row.try_get("user_account")?,
        external_id: row.try_get("external_id")?,
        resolution: row.try_get("resolution")?,
        last_comment: row.try_get("last_comment")?,
        opened_by: row.try_get("opened_by")?,
        opened_at: row.time("opened_at")?,
        updated_at: row.time("updated_at")?,
        version: row.try_get("version")?,
    })
}

pub async fn insert_incident(tx: &mut Tx, incident: &Incident) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO incidents ({INCIDENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15, $16, $17, $18, $19, $20)"
    )))
    .bind(&incident.id)
    .bind(&incident.ticket_id)
    .bind(&incident.appeal_id)
    .bind(&incident.organization_id)
    .bind(incident.kind.as_str())
    .bind(incident.state.as_str())
    .bind(&incident.service)
    .bind(&incident.request_type)
    .bind(&incident.system)
    .bind(&incident.priority)
    .bind(&incident.subject)
    .bind(incident.attachment_ids.join(" "))
    .bind(&incident.user_account)
    .bind(&incident.external_id)
    .bind(&incident.resolution)
    .bind(&incident.last_comment)
    .bind(&incident.opened_by)
    .bind(to_micros(incident.opened_at))
    .bind(to_micros(incident.updated_at))
    .bind(incident.version)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get_incident(db: &Db, id: &str) -> Result<Option<Incident>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(incident_from_row)
        .transpose()
}

pub async fn incidents_of_ticket(db: &Db, ticket_id: &str) -> Result<Vec<Incident>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE ticket_id = $1 ORDER BY opened_at, id"
    )))
    .bind(ticket_id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(incident_from_row)
    .collect()
}

/// Stores an incident's transition if nobody changed it since `expected_version`; `false` when
/// the version is stale (the caller answers FAILED_PRECONDITION).
pub async fn update_incident(
    tx: &mut Tx,
    id: &str,
    expected_version: i64,
    state: crate::incident::State,
    resolution: Option<&str>,
    comment: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE incidents SET state = $1, resolution = CASE WHEN $2 = '' THEN resolution ELSE $2 END, \
         last_comment = $3, updated_at = $4, version = version + 1 WHERE id = $5 AND version = $6",
    )
    .bind(state.as_str())
    .bind(resolution.unwrap_or(""))
    .bind(comment)
    .bind(now_micros())
    .bind(id)
    .bind(expected_version)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor { key: 1_737_000_000_000_000, id: "0193-abc".into() };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("abc"), None);
    }
}

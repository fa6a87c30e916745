//! Reports (отчёты) for the head, the coordinator and the curator: the tickets an organization
//! received in a period and what became of them, in total, by category and by executor.
//!
//! One aggregate query, written once for both dialects, groups the period's tickets by
//! (category, executor); the totals and the two breakdowns are sums of those groups, so the
//! three always agree. A ticket is judged by its current review round, as the cabinet knows it:
//! its stage, the round's answer deadline and overdue mark (mirrored from the SLA service), and
//! the approvals in its history (the lines that enter `answered`).

use std::collections::BTreeMap;

use pos_platform::db::Db;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::folder::Folder;
use crate::workflow::Stage;

/// Which tickets a report covers.
#[derive(Clone, Debug)]
pub struct ReportQuery {
    pub organization_id: String,
    /// Received in [from, to), microseconds.
    pub from: i64,
    pub to: i64,
    /// Only the tickets now in this folder.
    pub folder: Option<Folder>,
    pub category_id: Option<String>,
    /// Only the tickets with this executor.
    pub executor_id: Option<String>,
}

/// What became of a set of tickets (see `ReportFigures` in `ticketing.proto` for each meaning).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub received: i64,
    pub answered: i64,
    pub answered_on_time: i64,
    pub overdue: i64,
    pub fast_track: i64,
    pub re_reviews: i64,
    pub redirected: i64,
    pub rejected: i64,
    /// Seconds from receipt to the first answer, summed over `timed` answered tickets.
    pub answer_seconds: i64,
    /// Answered tickets whose first approval the history holds (all of them, for tickets this
    /// build wrote): the average's denominator.
    pub timed: i64,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.received += other.received;
        self.answered += other.answered;
        self.answered_on_time += other.answered_on_time;
        self.overdue += other.overdue;
        self.fast_track += other.fast_track;
        self.re_reviews += other.re_reviews;
        self.redirected += other.redirected;
        self.rejected += other.rejected;
        self.answer_seconds += other.answer_seconds;
        self.timed += other.timed;
    }

    /// Mean seconds from receipt to the first answer; 0 when nothing was answered.
    pub fn average_answer_seconds(&self) -> i64 {
        if self.timed == 0 { 0 } else { self.answer_seconds / self.timed }
    }

    fn from_row(row: &AnyRow) -> Result<Figures, sqlx::Error> {
        Ok(Figures {
            received: row.try_get("received")?,
            answered: row.try_get("answered")?,
            answered_on_time: row.try_get("answered_on_time")?,
            overdue: row.try_get("overdue")?,
            fast_track: row.try_get("fast_track")?,
            re_reviews: row.try_get("re_reviews")?,
            redirected: row.try_get("redirected")?,
            rejected: row.try_get("rejected")?,
            answer_seconds: row.try_get("answer_seconds")?,
            timed: row.try_get("timed")?,
        })
    }
}

/// A report: the totals, and the same figures per category and per executor (an empty executor
/// is the coordinator's, unassigned), most received first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub totals: Figures,
    pub by_category: Vec<(String, Figures)>,
    pub by_executor: Vec<(String, Figures)>,
}

/// The stages whose answer is out and stands.
const ANSWERED: [Stage; 3] = [Stage::Answered, Stage::Accepted, Stage::ReviewStopped];
/// The stages of a ticket that left the organization.
const LEFT: [Stage; 2] = [Stage::Redirected, Stage::ReturnedToCoordination];
/// Stands for a deadline not armed yet: later than any approval.
const NO_DEADLINE: i64 = i64::MAX;

/// `'a', 'b'`: stage codes are fixed identifiers of this build, not input.
fn codes(stages: &[Stage]) -> String {
    stages.iter().map(|stage| format!("'{}'", stage.code())).collect::<Vec<_>>().join(", ")
}

/// The query grouped by (category, executor). The inner select reads each ticket of the period
/// (the `tickets_received` index's range) and its first and last approval (one probe each into
/// `ticket_history_answers`); the outer one judges and sums. Sums are cast to BIGINT because
/// PostgreSQL's SUM of a BIGINT is NUMERIC.
fn sql(query: &ReportQuery, organization_ids: &[String]) -> (String, Vec<Param>) {
    let mut params: Vec<Param> = organization_ids.iter().map(|id| Param::Text(id.clone())).collect();
    let organizations = (1..=params.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
    params.push(Param::Int(query.from));
    let from = params.len();
    params.push(Param::Int(query.to));
    let to = params.len();
    let mut filters = String::new();
    if let Some(folder) = query.folder {
        let mut placeholders = Vec::new();
        for stage in folder.stages() {
            params.push(Param::Text(stage.code().to_owned()));
            placeholders.push(format!("${}", params.len()));
        }
        filters.push_str(&format!(" AND t.stage IN ({})", placeholders.join(", ")));
    }
    if let Some(category) = &query.category_id {
        params.push(Param::Text(category.clone()));
        filters.push_str(&format!(" AND t.category_id = ${}", params.len()));
    }
    if let Some(executor) = &query.executor_id {
        params.push(Param::Text(executor.clone()));
        filters.push_str(&format!(" AND t.assignee_id = ${}", params.len()));
    }
    let answered_stages = codes(&ANSWERED);
    let left = codes(&LEFT);
    let answered = Stage::Answered.code();
    let rejected = Stage::Rejected.code();
    let count = |condition: &str| format!("CAST(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END) AS BIGINT)");
    // The round's deadline missed: marked overdue by the SLA service, or the standing answer
    // approved after the deadline. Without a deadline (none armed yet) or an approval line, only
    // the mark counts.
    let missed = format!("(overdue = TRUE OR COALESCE(last_answer_at, 0) > COALESCE(answer_due, {NO_DEADLINE}))");
    let sql = format!(
        "SELECT organization_id, category_id, executor_id, COUNT(*) AS received, \
         {answered_count} AS answered, \
         {on_time} AS answered_on_time, \
         {overdue} AS overdue, \
         {fast_track} AS fast_track, \
         {re_reviews} AS re_reviews, \
         {redirected} AS redirected, \
         {rejected_count} AS rejected, \
         CAST(COALESCE(SUM(CASE WHEN answered = 1 THEN (first_answer_at - received_at) / 1000000 END), 0) AS BIGINT) \
         AS answer_seconds, \
         {timed} AS timed \
         FROM (SELECT t.organization_id, t.category_id, COALESCE(t.assignee_id, '') AS executor_id, t.stage, t.fast_track, t.overdue, \
         t.review_round, t.received_at, t.answer_due, \
         CASE WHEN t.stage IN ({answered_stages}) THEN 1 ELSE 0 END AS answered, \
         (SELECT MIN(h.at) FROM ticket_history h WHERE h.ticket_id = t.id AND h.to_stage = '{answered}') \
         AS first_answer_at, \
         (SELECT MAX(h.at) FROM ticket_history h WHERE h.ticket_id = t.id AND h.to_stage = '{answered}') \
         AS last_answer_at \
         FROM tickets t WHERE t.organization_id IN ({organizations}) AND t.received_at >= ${from} \
         AND t.received_at < ${to}{filters}) judged \
         GROUP BY organization_id, category_id, executor_id",
        answered_count = count("answered = 1"),
        on_time = count(&format!("answered = 1 AND NOT {missed}")),
        overdue = count(&format!("overdue = TRUE OR (answered = 1 AND {missed})")),
        fast_track = count("fast_track = TRUE"),
        re_reviews = count("review_round > 1"),
        redirected = count(&format!("stage IN ({left})")),
        rejected_count = count(&format!("stage = '{rejected}'")),
        timed = count("answered = 1 AND first_answer_at IS NOT NULL"),
    );
    (sql, params)
}

enum Param {
    Text(String),
    Int(i64),
}

/// The report of `query`: one pass over the period's tickets.
#[tracing::instrument(skip(db), fields(organization_id = %query.organization_id))]
pub async fn build(db: &Db, query: &ReportQuery) -> Result<Report, sqlx::Error> {
    let (report, _) = build_over(db, query, std::slice::from_ref(&query.organization_id)).await?;
    Ok(report)
}

/// The report of `query` over several organizations (a curator's supervised ones; the
/// query's own `organization_id` is not added): the totals and breakdowns over all of them,
/// and each organization's figures, in the order of `organization_ids` (an organization
/// without tickets has zeros). One pass over the period's tickets, as [`build`].
#[tracing::instrument(skip(db, organization_ids), fields(organizations = organization_ids.len()))]
pub async fn build_over(
    db: &Db,
    query: &ReportQuery,
    organization_ids: &[String],
) -> Result<(Report, Vec<(String, Figures)>), sqlx::Error> {
    let mut by_organization: Vec<(String, Figures)> =
        organization_ids.iter().map(|id| (id.clone(), Figures::default())).collect();
    if organization_ids.is_empty() {
        return Ok((Report::default(), by_organization));
    }
    let position: std::collections::HashMap<&str, usize> =
        organization_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let (sql, params) = sql(query, organization_ids);
    let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
    for param in params {
        statement = match param {
            Param::Text(text) => statement.bind(text),
            Param::Int(n) => statement.bind(n),
        };
    }
    let rows = statement.fetch_all(db.pool()).await?;
    let mut report = Report::default();
    let mut by_category: BTreeMap<String, Figures> = BTreeMap::new();
    let mut by_executor: BTreeMap<String, Figures> = BTreeMap::new();
    for row in &rows {
        let figures = Figures::from_row(row)?;
        let category: String = row.try_get("category_id")?;
        let executor: String = row.try_get("executor_id")?;
        let organization: String = row.try_get("organization_id")?;
        if let Some(&i) = position.get(organization.as_str()) {
            by_organization[i].1.add(&figures);
        }
        report.totals.add(&figures);
        by_category.entry(category).or_default().add(&figures);
        by_executor.entry(executor).or_default().add(&figures);
    }
    report.by_category = most_received_first(by_category);
    report.by_executor = most_received_first(by_executor);
    Ok((report, by_organization))
}

fn most_received_first(groups: BTreeMap<String, Figures>) -> Vec<(String, Figures)> {
    let mut rows: Vec<(String, Figures)> = groups.into_iter().collect();
    // The map gave them in key order; a stable sort keeps it among equals.
    rows.sort_by_key(|(_, figures)| std::cmp::Reverse(figures.received));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_bound_not_written_into_the_sql() {
        let query = ReportQuery {
            organization_id: "school-1".into(),
            from: 1,
            to: 2,
            folder: Some(Folder::InWork),
            category_id: Some("cat' OR 1=1 --".into()),
            executor_id: Some("exec-1".into()),
        };
        let (sql, params) = sql(&query, std::slice::from_ref(&query.organization_id));
        assert!(!sql.contains("OR 1=1"), "{sql}");
        // The organization, the period, the folder's four stages, the category, the executor.
        assert_eq!(params.len(), 3 + 4 + 2);
        assert!(sql.contains("t.stage IN ($4, $5, $6, $7) AND t.category_id = $8 AND t.assignee_id = $9"), "{sql}");
    }

    #[test]
    fn the_average_is_over_the_timed_answers() {
        let mut figures = Figures { answer_seconds: 300, timed: 2, answered: 3, ..Figures::default() };
        assert_eq!(figures.average_answer_seconds(), 150);
        figures.add(&Figures { answer_seconds: 600, timed: 1, ..Figures::default() });
        assert_eq!(figures.average_answer_seconds(), 300);
        assert_eq!(Figures::default().average_answer_seconds(), 0);
    }
}

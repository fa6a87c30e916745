//! The cabinet's list: one organization's tickets (or an applicant's own appeals) under filters,
//! sorted by the received time or the answer deadline, paged by a keyset cursor; and the
//! per-folder counts the cabinet shows beside it. A folder filter is `stage IN (its stages)`.

use pos_platform::db::{Db, Dialect, to_micros};
use sqlx::Row;
use strum::VariantArray;

use super::tickets::{COLUMNS, Ticket};
use super::undecodable;
use crate::folder::Folder;
use crate::workflow::Stage;

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
    /// The indexed expression (see the migrations' `tickets_*_answer_due` indexes).
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
    /// Only tickets with an incident not yet closed (the ticket's own `incident_open` column).
    pub incident_open_only: bool,
    /// Answer deadline within [from, to), microseconds.
    pub due_from: Option<i64>,
    pub due_to: Option<i64>,
    pub sources: Vec<i32>,
    pub category_ids: Vec<String>,
    pub fact_ids: Vec<String>,
    pub region_code: Option<String>,
    /// A substring of the appeal's text (in any case, `е` finding `ё`) or its exact number.
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
fn filter_clause(scope: &Scope, filters: &Filters, with_folder: bool, text_plan: TextPlan) -> Where {
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
        // Served by the (organization_id, stage, key, id) indexes for a one-stage folder, and by
        // (organization_id, key, id) with a filter for the folders of several stages.
        w.any_of("stage", folder.stages().map(|stage| Value::Text(stage.code().to_owned())).collect());
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
    if filters.incident_open_only {
        w.and("incident_open = TRUE");
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
        // Both sides normalized in Rust, so a plain LIKE means the same on both dialects.
        let needle = search_text(text);
        let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let p = w.param(Value::Text(format!("%{escaped}%")));
        let holds_text = match text_plan {
            TextPlan::Like => format!("search_text LIKE {p} ESCAPE '\\'"),
            // Only a needle without LIKE's own characters comes this way: the trigram index takes
            // no ESCAPE.
            TextPlan::SearchIndex => {
                format!("id IN (SELECT ticket_id FROM _pos_ticket_search WHERE search_text LIKE {p})")
            }
        };
        // The number matches exactly, so "15" does not find 150. Only a text that is a number
        // written plainly can be one, and comparing the column itself lets an index find it.
        let trimmed = text.trim();
        match trimmed.parse::<i64>().ok().filter(|n| n.to_string() == trimmed) {
            Some(number) => {
                let n = w.param(Value::Int(number));
                w.and(&format!("({holds_text} OR number = {n})"));
            }
            None => w.and(&holds_text),
        }
    }
    w
}

/// How the text filter finds its tickets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextPlan {
    /// `search_text LIKE` on the tickets: PostgreSQL's trigram index serves it where that pays
    /// (its planner sees the words); on SQLite it is read down the list's order.
    Like,
    /// SQLite: the tickets its search index (`_pos_ticket_search`, migration 0006) names.
    SearchIndex,
}

/// At most this many tickets named by SQLite's search index make it the way in: fetching them
/// costs less than reading down the list. More, and the words are common enough that the
/// list's own order fills a page sooner.
const FEW_MATCHES: i64 = 1_000;

/// How to find the tickets of the text filter, if any. SQLite's planner cannot tell a rare word
/// from a common one, so a first look through the index, stopped after [`FEW_MATCHES`], tells.
async fn text_plan(db: &Db, filters: &Filters) -> Result<TextPlan, sqlx::Error> {
    let Some(text) = &filters.text else { return Ok(TextPlan::Like) };
    let needle = search_text(text);
    // Trigrams need three letters; the index takes no ESCAPE, so LIKE's own characters stay out.
    let indexable = needle.chars().count() >= 3 && !needle.contains(['%', '_', '\\']);
    if db.dialect() != Dialect::Sqlite || !indexable {
        return Ok(TextPlan::Like);
    }
    let found: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM _pos_ticket_search WHERE search_text LIKE $1 LIMIT $2) AS first",
    )
    .bind(format!("%{needle}%"))
    .bind(FEW_MATCHES + 1)
    .fetch_one(db.pool())
    .await?
    .try_get("n")?;
    Ok(if found <= FEW_MATCHES { TextPlan::SearchIndex } else { TextPlan::Like })
}

/// What the text filter compares, for a ticket's public text and for the searched words alike:
/// lower case by Unicode's rules, with `ё` as `е` (people write either). Stored with each ticket
/// (`search_text`), because neither database folds case the same way: SQLite's LIKE and lower()
/// know ASCII only, PostgreSQL's follow the database's locale.
pub fn search_text(text: &str) -> String {
    text.to_lowercase().replace('ё', "е")
}

/// One page of a list, and the cursor of the next page if there is one.
///
/// A text search's best plan depends on the words: a rare one (or a number) through a trigram
/// index, a common one down the list's own order until the page is full. PostgreSQL's planner
/// chooses from the words when the statement is planned anew each time (not kept prepared: a
/// prepared one settles on one generic plan for every word); on SQLite, [`text_plan`] chooses.
#[tracing::instrument(skip(db))]
pub async fn page(db: &Db, query: &ListQuery) -> Result<(Vec<Ticket>, Option<Cursor>), sqlx::Error> {
    let mut w = filter_clause(&query.scope, &query.filters, true, text_plan(db, &query.filters).await?);
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
    let searched = query.filters.text.is_some();
    let rows = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(!searched)).fetch_all(db.pool()).await?;
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
    let w = filter_clause(scope, filters, false, text_plan(db, filters).await?);
    let sql = format!("SELECT stage, COUNT(*) AS n FROM tickets{} GROUP BY stage", w.sql);
    let searched = filters.text.is_some();
    let rows = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(!searched)).fetch_all(db.pool()).await?;
    let mut counts: Vec<(Folder, i64)> = Folder::VARIANTS.iter().map(|f| (*f, 0)).collect();
    for row in rows {
        let code: String = row.try_get("stage")?;
        let stage: Stage = code.parse().map_err(|_| undecodable("stage", format!("unknown stage {code:?}")))?;
        let n: i64 = row.try_get("n")?;
        if let Some(slot) = counts.iter_mut().find(|(f, _)| *f == stage.folder()) {
            slot.1 += n;
        }
    }
    Ok(counts)
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

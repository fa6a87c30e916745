//! Tickets and their history, written once for both dialects.

use chrono::{DateTime, Utc};
use pos_platform::Tx;
use pos_platform::db::{Db, RowExt, now_micros, to_micros};
use pos_proto::v1 as pb;
use pos_proto::v1::events::AppealRouted;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::folder::Folder;

const COLUMNS: &str = "id, appeal_id, number, organization_id, organization_short_name, organization_type, folder, \
    status, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, fact_id, \
    public_text, problem_address, period_days, working_days, assignee_id, received_at, created_at, updated_at, \
    version, trace_id";

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
}

impl Ticket {
    fn from_row(row: &AnyRow) -> Result<Ticket, sqlx::Error> {
        let folder: String = row.try_get("folder")?;
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
            status: row.try_get("status")?,
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
        })
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
        }
    }
}

/// Creates the ticket for a routed appeal in the addressee's New folder, with its first history
/// entry. Returns `None` when the appeal already has a ticket (a repeated event).
#[tracing::instrument(skip_all, fields(appeal_id = %routed.appeal_id))]
pub async fn create_from_routed(
    tx: &mut Tx,
    routed: &AppealRouted,
    trace_id: &str,
) -> Result<Option<Ticket>, sqlx::Error> {
    let organization = routed.organization.clone().unwrap_or_default();
    let now = now_micros();
    let received_at = routed.registered_at.as_ref().and_then(pos_proto::time::from_proto).map(to_micros).unwrap_or(now);
    let id = uuid::Uuid::now_v7().to_string();
    let inserted = sqlx::query(
        "INSERT INTO tickets (id, appeal_id, number, organization_id, organization_short_name, organization_type, \
         folder, status, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, \
         fact_id, public_text, problem_address, period_days, working_days, assignee_id, received_at, created_at, \
         updated_at, version, trace_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
         $22, $22, 1, $23) ON CONFLICT (appeal_id) DO NOTHING",
    )
    .bind(&id)
    .bind(&routed.appeal_id)
    .bind(routed.number)
    .bind(&organization.id)
    .bind(&organization.short_name)
    .bind(i64::from(organization.r#type))
    .bind(Folder::New.as_str())
    .bind("new")
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
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let comment = if routed.delegated_by_auto_rule {
        format!("delegated by auto-rule {}: {}", routed.auto_rule_id, routed.explanation)
    } else {
        routed.explanation.clone()
    };
    append_history(tx, &id, "routing", "received", None, Folder::New, &comment).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tickets WHERE id = $1")))
        .bind(&id)
        .fetch_one(&mut **tx)
        .await?;
    Ticket::from_row(&row).map(Some)
}

/// Appends one entry to a ticket's history.
pub async fn append_history(
    tx: &mut Tx,
    ticket_id: &str,
    actor: &str,
    action: &str,
    from: Option<Folder>,
    to: Folder,
    comment: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ticket_history (ticket_id, seq, at, actor, action, from_folder, to_folder, comment) \
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ticket_history WHERE ticket_id = $1), $2, $3, $4, $5, $6, $7)",
    )
    .bind(ticket_id)
    .bind(now_micros())
    .bind(actor)
    .bind(action)
    .bind(from.map(Folder::as_str).unwrap_or(""))
    .bind(to.as_str())
    .bind(comment)
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
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tickets WHERE appeal_id = $1")))
        .bind(appeal_id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(Ticket::from_row)
        .transpose()
}

/// Where a page starts: after this (received_at, id) in the list's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub received_at: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        hex::encode(format!("{}|{}", self.received_at, self.id))
    }

    pub fn decode(token: &str) -> Option<Cursor> {
        let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
        let (received_at, id) = text.split_once('|')?;
        Some(Cursor { received_at: received_at.parse().ok()?, id: id.to_owned() })
    }
}

#[derive(Clone, Debug)]
pub struct ListQuery {
    pub organization_id: String,
    pub folder: Option<Folder>,
    pub newest_first: bool,
    pub fast_track_only: bool,
    pub delegated_only: bool,
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// One page of an organization's list, and the cursor of the next page if there is one.
#[tracing::instrument(skip(db))]
pub async fn list(db: &Db, query: &ListQuery) -> Result<(Vec<Ticket>, Option<Cursor>), sqlx::Error> {
    let mut sql = format!("SELECT {COLUMNS} FROM tickets WHERE organization_id = $1");
    let mut next_param = 2;
    if query.folder.is_some() {
        sql.push_str(&format!(" AND folder = ${next_param}"));
        next_param += 1;
    }
    if query.fast_track_only {
        sql.push_str(" AND fast_track = TRUE");
    }
    if query.delegated_only {
        sql.push_str(" AND delegated_by_auto_rule = TRUE");
    }
    let (compare, direction) = if query.newest_first { ("<", "DESC") } else { (">", "ASC") };
    if query.after.is_some() {
        let (at, id) = (next_param, next_param + 1);
        sql.push_str(&format!(" AND (received_at {compare} ${at} OR (received_at = ${at} AND id {compare} ${id}))"));
        next_param += 2;
    }
    sql.push_str(&format!(" ORDER BY received_at {direction}, id {direction} LIMIT ${next_param}"));

    let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&query.organization_id);
    if let Some(folder) = query.folder {
        statement = statement.bind(folder.as_str());
    }
    if let Some(after) = &query.after {
        statement = statement.bind(after.received_at).bind(after.id.clone());
    }
    // One extra row tells whether there is a next page.
    let rows = statement.bind(query.limit + 1).fetch_all(db.pool()).await?;
    let mut tickets = rows.iter().map(Ticket::from_row).collect::<Result<Vec<_>, _>>()?;
    let next = if tickets.len() as i64 > query.limit {
        tickets.truncate(query.limit as usize);
        tickets.last().map(|t| Cursor { received_at: to_micros(t.received_at), id: t.id.clone() })
    } else {
        None
    };
    Ok((tickets, next))
}

/// Tickets per folder of one organization; folders without tickets count zero.
pub async fn folder_counts(db: &Db, organization_id: &str) -> Result<Vec<(Folder, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT folder, COUNT(*) AS n FROM tickets WHERE organization_id = $1 GROUP BY folder")
        .bind(organization_id)
        .fetch_all(db.pool())
        .await?;
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
}

pub async fn history(db: &Db, ticket_id: &str) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, from_folder, to_folder, comment FROM ticket_history \
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
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor { received_at: 1_737_000_000_000_000, id: "0193-abc".into() };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("abc"), None);
    }
}

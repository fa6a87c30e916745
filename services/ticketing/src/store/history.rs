//! A ticket's history (ход работ): who did what, when, from which stage to which. Append-only;
//! the folders and status lines shown are derived from the stored stage codes.

use chrono::{DateTime, Utc};
use pos_platform::Tx;
use pos_platform::db::{Db, RowExt, now_micros};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::undecodable;
use crate::workflow::Stage;

/// One line to append.
pub struct HistoryLine<'a> {
    pub action: &'a str,
    /// `None` for the ticket's first line.
    pub from: Option<Stage>,
    pub to: Stage,
    pub comment: &'a str,
}

/// Appends one entry to a ticket's history.
pub async fn append(tx: &mut Tx, ticket_id: &str, actor: &str, line: HistoryLine<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ticket_history (ticket_id, seq, at, actor, action, from_stage, to_stage, comment) \
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ticket_history WHERE ticket_id = $1), $2, $3, $4, $5, \
         $6, $7)",
    )
    .bind(ticket_id)
    .bind(now_micros())
    .bind(actor)
    .bind(line.action)
    .bind(line.from.map(Stage::code))
    .bind(line.to.code())
    .bind(line.comment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Names the files sent with the ticket's latest history line (written in the same transaction).
pub async fn attach_files(tx: &mut Tx, ticket_id: &str, attachment_ids: &[String]) -> Result<(), sqlx::Error> {
    if attachment_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE ticket_history SET attachment_ids = $1 WHERE ticket_id = $2 \
         AND seq = (SELECT MAX(seq) FROM ticket_history WHERE ticket_id = $2)",
    )
    .bind(attachment_ids.join(" "))
    .bind(ticket_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub from: Option<Stage>,
    pub to: Stage,
    pub comment: String,
    pub attachment_ids: Vec<String>,
}

fn stage(row: &AnyRow, column: &str) -> Result<Option<Stage>, sqlx::Error> {
    let Some(code) = row.try_get::<Option<String>, _>(column)? else { return Ok(None) };
    code.parse().map(Some).map_err(|_| undecodable(column, format!("unknown stage {code:?}")))
}

/// A ticket's history, oldest first.
pub async fn of_ticket(db: &Db, ticket_id: &str) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, from_stage, to_stage, comment, attachment_ids FROM ticket_history WHERE ticket_id = $1 \
         ORDER BY seq",
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
                from: stage(row, "from_stage")?,
                to: stage(row, "to_stage")?
                    .ok_or_else(|| undecodable("to_stage", "a line without its stage".into()))?,
                comment: row.try_get("comment")?,
                attachment_ids: row
                    .try_get::<String, _>("attachment_ids")?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

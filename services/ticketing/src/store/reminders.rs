//! Postponed answers' promises to come back, tracked until the organization does.

use chrono::{DateTime, Utc};
use pos_platform::Tx;
use pos_platform::db::{Db, RowExt, now_micros, to_micros};
use sqlx::Row;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reminder {
    pub ticket_id: String,
    pub appeal_id: String,
    pub number: i64,
    pub due_at: DateTime<Utc>,
}

/// Tracks the follow-up a postponed answer promised; the same date twice is one reminder.
pub async fn add(tx: &mut Tx, ticket_id: &str, due_at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reminders (ticket_id, due_at, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (ticket_id, due_at) DO NOTHING",
    )
    .bind(ticket_id)
    .bind(to_micros(due_at))
    .bind(now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An organization's open follow-ups due before `until` (microseconds), soonest first.
pub async fn due(db: &Db, organization_id: &str, until: i64) -> Result<Vec<Reminder>, sqlx::Error> {
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

//! The `journal`: every event notify follows, in the order subscribers read it.

use pos_platform::Dialect;
use pos_platform::db::RowExt;
use pos_proto::v1 as pb;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

/// One event as journaled.
#[derive(Debug)]
pub struct NewEntry<'a> {
    pub message_id: &'a str,
    pub event: &'a str,
    pub region_code: &'a str,
    pub appeal_id: &'a str,
    pub organization_id: &'a str,
    pub type_name: &'a str,
    pub payload: &'a [u8],
    pub received_at: i64,
}

/// Appends an event once (a second time changes nothing), in the caller's transaction.
#[tracing::instrument(skip_all, fields(message_id = entry.message_id))]
pub async fn append(tx: &mut AnyConnection, dialect: Dialect, entry: &NewEntry<'_>) -> Result<(), sqlx::Error> {
    // The journal's order is the stream's order: on PostgreSQL a sequence value taken by one
    // transaction may commit after a larger one, and a subscriber that already read the
    // larger would skip it. Holding this lock from taking the value to the commit makes
    // commit order equal sequence order. SQLite has one writer at a time anyway.
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.journal'))").execute(&mut *tx).await?;
    }
    sqlx::query(
        "INSERT INTO journal (message_id, event, region_code, appeal_id, organization_id, type_name, payload, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(entry.message_id)
    .bind(entry.event)
    .bind(entry.region_code)
    .bind(entry.appeal_id)
    .bind(entry.organization_id)
    .bind(entry.type_name)
    .bind(entry.payload)
    .bind(entry.received_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Up to `limit` entries after `cursor`, in order.
pub async fn after<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    cursor: i64,
    limit: i64,
) -> Result<Vec<pb::JournalEntry>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, message_id, event, region_code, appeal_id, organization_id, type_name, payload, received_at \
         FROM journal WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(cursor)
    .bind(limit)
    .fetch_all(executor)
    .await?
    .iter()
    .map(entry_from_row)
    .collect()
}

fn entry_from_row(row: &AnyRow) -> Result<pb::JournalEntry, sqlx::Error> {
    Ok(pb::JournalEntry {
        cursor: row.try_get("seq")?,
        event_id: row.try_get("message_id")?,
        event_type: row.try_get("event")?,
        region_code: row.try_get("region_code")?,
        appeal_id: row.try_get("appeal_id")?,
        organization_id: row.try_get("organization_id")?,
        type_name: row.try_get("type_name")?,
        payload: row.try_get::<Vec<u8>, _>("payload")?,
        received_at: Some(pos_proto::time::to_proto(row.time("received_at")?)),
    })
}

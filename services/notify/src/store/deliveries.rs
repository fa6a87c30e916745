//! The `deliveries` ledger: one row per (event, recipient, channel), so that a message is sent
//! at most once per row. Statuses: `pending` (due at `next_attempt_at`), `digest` (held for the
//! daily digest), `sending`, `sent`, `digested` (went out in a digest), `dead`.

use pos_platform::Db;
use pos_platform::db::RowExt;
use pos_proto::v1 as pb;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Executor, Row};

/// The ledger columns [`delivery_from_row`] reads.
const COLUMNS: &str = "id, message_id, appeal_id, organization_id, event, audience, channel, recipient, subject, \
    status, attempts, last_error, created_at, next_attempt_at, delivered_at";

/// A ledger row about to be written.
#[derive(Debug)]
pub struct NewDelivery<'a> {
    /// The event's message id: with the recipient, what makes the row unique.
    pub message_id: &'a str,
    pub appeal_id: &'a str,
    pub organization_id: &'a str,
    pub event: &'a str,
    pub audience: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub status: &'a str,
    pub created_at: i64,
    pub next_attempt_at: i64,
    /// The own time of what the row tells (see [`claim`]).
    pub event_at: i64,
    /// The W3C `traceparent` of the handling that planned it: its sending continues that trace.
    /// Empty when it belongs to no one trace.
    pub traceparent: &'a str,
}

/// Writes an e-mail to the ledger unless its event already has one for the recipient; returns
/// the rows written (0 or 1).
#[tracing::instrument(skip_all, fields(message_id = delivery.message_id))]
pub async fn insert<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    delivery: &NewDelivery<'_>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO deliveries (id, message_id, appeal_id, organization_id, event, audience, channel, recipient, \
         subject, body, status, created_at, next_attempt_at, event_at, traceparent) \
         VALUES ($1, $2, $3, $4, $5, $6, 'email', $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (message_id, recipient, channel) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(delivery.message_id)
    .bind(delivery.appeal_id)
    .bind(delivery.organization_id)
    .bind(delivery.event)
    .bind(delivery.audience)
    .bind(delivery.recipient)
    .bind(delivery.subject)
    .bind(delivery.body)
    .bind(delivery.status)
    .bind(delivery.created_at)
    .bind(delivery.next_attempt_at)
    .bind(delivery.event_at)
    .bind(delivery.traceparent)
    .execute(executor)
    .await?
    .rows_affected())
}

fn delivery_from_row(row: &AnyRow) -> Result<pb::Delivery, sqlx::Error> {
    Ok(pb::Delivery {
        id: row.try_get("id")?,
        event_id: row.try_get("message_id")?,
        event_type: row.try_get("event")?,
        channel: row.try_get("channel")?,
        recipient: row.try_get("recipient")?,
        status: row.try_get("status")?,
        attempts: row.try_get::<i64, _>("attempts")? as i32,
        last_error: row.try_get("last_error")?,
        created_at: Some(pos_proto::time::to_proto(row.time("created_at")?)),
        delivered_at: row.time_opt("delivered_at")?.map(pos_proto::time::to_proto),
        appeal_id: row.try_get("appeal_id")?,
        organization_id: row.try_get("organization_id")?,
        audience: row.try_get("audience")?,
        subject: row.try_get("subject")?,
        next_attempt_at: Some(pos_proto::time::to_proto(row.time("next_attempt_at")?)),
    })
}

/// Which rows of the log to read; empty fields do not filter.
#[derive(Debug, Default)]
pub struct LogFilter<'a> {
    pub appeal_id: &'a str,
    pub status: &'a str,
    pub organization_id: &'a str,
    /// The last id of the previous page.
    pub after_id: &'a str,
}

/// A page of the log in creation order: ids are UUIDv7.
#[tracing::instrument(skip(executor))]
pub async fn list<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    filter: &LogFilter<'_>,
    limit: i64,
) -> Result<Vec<pb::Delivery>, sqlx::Error> {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    for (column, value) in [
        ("appeal_id = ", filter.appeal_id),
        ("status = ", filter.status),
        ("organization_id = ", filter.organization_id),
        ("id > ", filter.after_id),
    ] {
        if !value.is_empty() {
            binds.push(value);
            conditions.push(format!("{column}${}", binds.len()));
        }
    }
    let conditions = if conditions.is_empty() { "1 = 1".to_owned() } else { conditions.join(" AND ") };
    // Only fixed column names and placeholders go into the text; the values are bound.
    let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE {conditions} ORDER BY id LIMIT ${}", binds.len() + 1);
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in binds {
        query = query.bind(value);
    }
    query.bind(limit).fetch_all(executor).await?.iter().map(delivery_from_row).collect()
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    id: &str,
) -> Result<Option<pb::Delivery>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(executor)
        .await?
        .as_ref()
        .map(delivery_from_row)
        .transpose()
}

/// Puts a dead row back in the queue with fresh attempts; a row in any other status is left.
#[tracing::instrument(skip(executor))]
pub async fn requeue_dead<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    id: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1 WHERE id = $2 AND status = 'dead'",
    )
    .bind(now)
    .bind(id)
    .execute(executor)
    .await?
    .rows_affected())
}

/// Lets the organization's mail held for a digest go now.
#[tracing::instrument(skip(executor))]
pub async fn release_held<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    organization_id: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE deliveries SET status = 'pending' WHERE organization_id = $1 AND status = 'digest'")
        .bind(organization_id)
        .execute(executor)
        .await?
        .rows_affected())
}

/// Counts by status and the measured sending window.
#[tracing::instrument(skip_all)]
pub async fn stats(pool: &AnyPool) -> Result<pb::DeliveryStats, sqlx::Error> {
    let mut stats = pb::DeliveryStats::default();
    for row in sqlx::query("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status").fetch_all(pool).await? {
        let n: i64 = row.try_get("n")?;
        match row.try_get::<String, _>("status")?.as_str() {
            "pending" | "digest" => stats.pending += n,
            "sending" => stats.sending = n,
            "sent" | "digested" => stats.sent += n,
            "dead" => stats.dead = n,
            other => tracing::warn!(status = other, "unknown delivery status"),
        }
    }
    stats.resent_after_crash = sqlx::query("SELECT COALESCE(SUM(resent), 0) AS n FROM deliveries")
        .fetch_one(pool)
        .await?
        .try_get::<i64, _>("n")?;
    let mut windows: Vec<i64> = sqlx::query(
        "SELECT delivered_at - sending_at AS w FROM deliveries \
         WHERE status = 'sent' AND sending_at IS NOT NULL ORDER BY delivered_at DESC LIMIT 100000",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| row.try_get::<i64, _>("w"))
    .collect::<Result<_, _>>()?;
    windows.sort_unstable();
    let at = |q: f64| windows.get(((windows.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    stats.window_p50_micros = at(0.5);
    stats.window_p99_micros = at(0.99);
    stats.window_max_micros = windows.last().copied().unwrap_or(0);
    Ok(stats)
}

/// A row held for the digest.
#[derive(Debug)]
pub struct Held {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// The organization's rows held for its digest, oldest first.
#[tracing::instrument(skip(executor))]
pub async fn held_for_digest<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    organization_id: &str,
) -> Result<Vec<Held>, sqlx::Error> {
    sqlx::query(
        "SELECT id, recipient, subject, body FROM deliveries \
         WHERE organization_id = $1 AND status = 'digest' ORDER BY created_at, id",
    )
    .bind(organization_id)
    .fetch_all(executor)
    .await?
    .iter()
    .map(|row| {
        Ok(Held {
            id: row.try_get("id")?,
            recipient: row.try_get("recipient")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
        })
    })
    .collect()
}

/// Marks a held row as gone out in a digest.
pub async fn mark_digested<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deliveries SET status = 'digested', delivered_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(executor)
        .await?;
    Ok(())
}

/// A row taken for sending.
#[derive(Debug)]
pub struct Claimed {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// Attempts including this one.
    pub attempts: i64,
    /// Found `sending` after its lease: a crash between sending and marking, maybe a duplicate.
    pub recovered: bool,
    /// See [`NewDelivery::traceparent`].
    pub traceparent: String,
}

/// Takes up to `batch` rows due at `now`, and `sending` rows marked before `stale` (their lease
/// ran out: a crash), and marks them `sending` in one committed transaction.
///
/// An applicant's letters about one appeal go out one at a time in the order of what they tell
/// (`event_at`, then id): a letter waits while an earlier one is still to be sent or being sent,
/// retries and backoff included, so "В работе" never arrives before "Зарегистрировано". A dead
/// letter no longer holds the later ones back.
#[tracing::instrument(skip(db))]
pub async fn claim(db: &Db, now: i64, stale: i64, batch: i64) -> Result<Vec<Claimed>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let sql = format!(
        "SELECT id, recipient, subject, body, attempts, status, traceparent FROM deliveries d \
         WHERE ((status = 'pending' AND next_attempt_at <= $1) OR (status = 'sending' AND sending_at < $2)) \
         AND (audience <> 'applicant' OR NOT EXISTS (SELECT 1 FROM deliveries e \
           WHERE e.appeal_id = d.appeal_id AND e.recipient = d.recipient AND e.audience = 'applicant' \
           AND e.status IN ('pending', 'sending') \
           AND (e.event_at < d.event_at OR (e.event_at = d.event_at AND e.id < d.id)))) \
         ORDER BY next_attempt_at LIMIT $3{}",
        db.dialect().skip_locked()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(stale).bind(batch).fetch_all(&mut *tx).await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        let recovered = row.try_get::<String, _>("status")? == "sending";
        sqlx::query(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, sending_at = $1, \
             resent = resent + $2 WHERE id = $3",
        )
        .bind(now)
        .bind(i32::from(recovered))
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        claimed.push(Claimed {
            id,
            recipient: row.try_get("recipient")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            attempts: row.try_get::<i64, _>("attempts")? + 1,
            recovered,
            traceparent: row.try_get("traceparent")?,
        });
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Marks a row sent. `sending_at` becomes the moment the message was handed to the relay, so
/// that `delivered_at - sending_at` is the double-send window itself (the SMTP exchange plus
/// the wait to mark), not the time the row waited in its batch.
pub async fn mark_sent<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    id: &str,
    sending_at: i64,
    delivered_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET status = 'sent', sending_at = $1, delivered_at = $2, last_error = '' \
         WHERE id = $3 AND status = 'sending'",
    )
    .bind(sending_at)
    .bind(delivered_at)
    .bind(id)
    .execute(executor)
    .await?;
    Ok(())
}

/// Puts a row that failed back in the queue, due at `next_attempt_at`.
pub async fn mark_retry<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    id: &str,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, last_error = $2 \
         WHERE id = $3 AND status = 'sending'",
    )
    .bind(next_attempt_at)
    .bind(error)
    .bind(id)
    .execute(executor)
    .await?;
    Ok(())
}

/// Gives up on a row.
pub async fn mark_dead<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    id: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deliveries SET status = 'dead', last_error = $1 WHERE id = $2 AND status = 'sending'")
        .bind(error)
        .bind(id)
        .execute(executor)
        .await?;
    Ok(())
}

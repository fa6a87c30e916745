//! The daily digest: an organization that asked for one gets its non-urgent notifications of
//! the day as one e-mail per recipient at its local digest time, instead of one by one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pos_platform::db::{Db, now_micros};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::Wake;
use crate::plan::ORGANIZATION;
use crate::settings::settings_from_row;

pub async fn run(db: Db, wake: Arc<Wake>, poll: Duration, shutdown: CancellationToken) -> anyhow::Result<()> {
    while !shutdown.is_cancelled() {
        match round(&db, Utc::now()).await {
            Ok(0) => {}
            Ok(digests) => {
                tracing::info!(digests, "digests queued");
                wake.wake();
            }
            Err(error) => tracing::warn!(%error, "digest round failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = shutdown.cancelled() => {}
        }
    }
    Ok(())
}

/// Queues the digests due at `now`; returns how many e-mails it queued.
pub async fn round(db: &Db, now: DateTime<Utc>) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT organization_id, time_zone, quiet_from, quiet_until, digest_enabled, digest_at, last_digest_on \
         FROM org_settings WHERE digest_enabled = $1",
    )
    .bind(true)
    .fetch_all(db.pool())
    .await?;
    let mut queued = 0;
    for row in rows {
        let settings = settings_from_row(&row)?;
        let Some(today) = settings.digest_due(now) else { continue };
        let organization_id = settings.organization_id.as_str();
        let mut tx = db.begin().await?;
        // Read again under the write lock: another instance may have sent today's already.
        let last: String = sqlx::query("SELECT last_digest_on FROM org_settings WHERE organization_id = $1")
            .bind(organization_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("last_digest_on")?;
        if last == today {
            continue;
        }
        let held = sqlx::query(
            "SELECT id, recipient, subject, body FROM deliveries \
             WHERE organization_id = $1 AND status = 'digest' ORDER BY created_at, id",
        )
        .bind(organization_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut by_recipient: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for row in &held {
            by_recipient
                .entry(row.try_get("recipient")?)
                .or_default()
                .push((row.try_get("subject")?, row.try_get("body")?));
        }
        let now_us = now_micros();
        for (recipient, items) in &by_recipient {
            let body = items
                .iter()
                .enumerate()
                .map(|(i, (subject, body))| format!("{}. {subject}\n{body}", i + 1))
                .collect::<Vec<_>>()
                .join("\n----------\n");
            sqlx::query(
                "INSERT INTO deliveries (id, message_id, appeal_id, organization_id, event, audience, channel, recipient, \
                 subject, body, status, created_at, next_attempt_at) \
                 VALUES ($1, $2, '', $3, 'digest', $4, 'email', $5, $6, $7, 'pending', $8, $8) \
                 ON CONFLICT (message_id, recipient, channel) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(format!("digest:{organization_id}:{today}"))
            .bind(organization_id)
            .bind(ORGANIZATION)
            .bind(recipient)
            .bind(format!("Сводка уведомлений за {today}: {}", items.len()))
            .bind(body)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
            queued += 1;
        }
        for row in &held {
            sqlx::query("UPDATE deliveries SET status = 'digested', delivered_at = $1 WHERE id = $2")
                .bind(now_us)
                .bind(row.try_get::<String, _>("id")?)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE org_settings SET last_digest_on = $1 WHERE organization_id = $2")
            .bind(&today)
            .bind(organization_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(queued)
}

//! The daily digest: an organization that asked for one gets its non-urgent notifications of
//! the day as one e-mail per recipient at its local digest time, instead of one by one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pos_platform::db::{Db, now_micros};
use tokio_util::sync::CancellationToken;

use crate::Wake;
use crate::plan::ORGANIZATION;
use crate::store;
use crate::store::deliveries::{Held, NewDelivery};
use crate::texts;

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
    let mut queued = 0;
    for settings in store::settings::with_digest(db.pool()).await? {
        let Some(today) = settings.digest_due(now) else { continue };
        let organization_id = settings.organization_id.as_str();
        let mut tx = db.begin().await?;
        // Read again under the write lock: another instance may have sent today's already.
        if store::settings::last_digest_on(&mut *tx, organization_id).await? == today {
            continue;
        }
        let held = store::deliveries::held_for_digest(&mut *tx, organization_id).await?;
        let mut by_recipient: BTreeMap<&str, Vec<&Held>> = BTreeMap::new();
        for row in &held {
            by_recipient.entry(row.recipient.as_str()).or_default().push(row);
        }
        let now_us = now_micros();
        let message_id = format!("digest:{organization_id}:{today}");
        for (recipient, items) in &by_recipient {
            let body = items
                .iter()
                .enumerate()
                .map(|(i, item)| format!("{}. {}\n{}", i + 1, item.subject, item.body))
                .collect::<Vec<_>>()
                .join("\n----------\n");
            let subject = texts::digest_subject(&today, items.len());
            let digest = NewDelivery {
                message_id: &message_id,
                appeal_id: "",
                organization_id,
                event: "digest",
                audience: ORGANIZATION,
                recipient,
                subject: &subject,
                body: &body,
                status: "pending",
                created_at: now_us,
                next_attempt_at: now_us,
                event_at: now_us,
                // Gathered from many events, so from many traces.
                traceparent: "",
            };
            store::deliveries::insert(&mut *tx, &digest).await?;
            queued += 1;
        }
        for row in &held {
            store::deliveries::mark_digested(&mut *tx, &row.id, now_us).await?;
        }
        store::settings::set_last_digest_on(&mut *tx, organization_id, &today).await?;
        tx.commit().await?;
    }
    Ok(queued)
}

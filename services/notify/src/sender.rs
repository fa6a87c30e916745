//! The sender: claims due ledger rows, hands each to the mailer, and marks the outcome.
//!
//! A row is marked `sending` (with the time) in its own committed transaction before the SMTP
//! call and `sent` right after it, one row at a time: the only way an e-mail goes twice is a
//! crash between those two writes. A row left `sending` longer than the lease (longer than
//! any SMTP call may take) is taken again and counted in `resent`; the time between the two
//! marks is kept per row (`delivered_at - sending_at`) so the window is measured, not assumed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pos_platform::db::{Db, now_micros};
use tokio_util::sync::CancellationToken;

use crate::Wake;
use crate::mailer::{Mail, MailError, Mailer};
use crate::store;
use crate::store::deliveries::Claimed;

#[derive(Clone, Debug)]
pub struct SenderConfig {
    pub from: String,
    /// Rows claimed per round.
    pub batch: i64,
    /// Messages in flight at once.
    pub concurrency: usize,
    /// Attempts before a row is dead-lettered.
    pub max_attempts: i64,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a `sending` row may stay so before it is presumed lost in a crash.
    pub lease: Duration,
    /// How often to look for due rows when nothing wakes the sender.
    pub poll: Duration,
}

impl SenderConfig {
    /// Exponential backoff after the `attempts`-th failed attempt, capped.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        self.backoff_base.saturating_mul(2u32.saturating_pow(exponent)).min(self.backoff_max)
    }
}

/// Sends until `shutdown`; a message in flight is finished and marked before returning.
pub async fn run(
    db: Db,
    mailer: Arc<dyn Mailer>,
    wake: Arc<Wake>,
    config: SenderConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(mailer = mailer.kind(), "sender started");
    while !shutdown.is_cancelled() {
        let claimed = match claim(&db, &config).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "failed to claim deliveries");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            tokio::select! {
                () = wake.deliveries.notified() => {}
                () = tokio::time::sleep(config.poll) => {}
                () = shutdown.cancelled() => {}
            }
            continue;
        }
        futures::stream::iter(claimed)
            .for_each_concurrent(config.concurrency, |row| {
                let (db, mailer, config) = (&db, mailer.as_ref(), &config);
                async move {
                    if let Err(error) = send_one(db, mailer, config, row).await {
                        // The row stays `sending`; the lease brings it back.
                        tracing::warn!(%error, "failed to mark a delivery");
                    }
                }
            })
            .await;
    }
    tracing::info!("sender stopped");
    Ok(())
}

/// Takes due rows (and `sending` rows whose lease ran out: a crash) and marks them `sending`.
async fn claim(db: &Db, config: &SenderConfig) -> Result<Vec<Claimed>, sqlx::Error> {
    let now = now_micros();
    let stale = now - i64::try_from(config.lease.as_micros()).unwrap_or(i64::MAX);
    let claimed = store::deliveries::claim(db, now, stale, config.batch).await?;
    for row in claimed.iter().filter(|row| row.recovered) {
        tracing::warn!(delivery_id = %row.id, "delivery found sending after its lease, sending again");
        metrics::counter!("pos_notify_resent_after_crash_total").increment(1);
    }
    Ok(claimed)
}

async fn send_one(db: &Db, mailer: &dyn Mailer, config: &SenderConfig, row: Claimed) -> Result<(), sqlx::Error> {
    let mail =
        Mail { id: row.id.clone(), from: config.from.clone(), to: row.recipient, subject: row.subject, body: row.body };
    let started = now_micros();
    let result = mailer.send(&mail).await;
    let now = now_micros();
    match result {
        Ok(()) => {
            store::deliveries::mark_sent(db.pool(), &row.id, started, now).await?;
            metrics::counter!("pos_notify_deliveries_total", "outcome" => "sent").increment(1);
            // The double-send window, including the mark's own round trip.
            metrics::histogram!("pos_notify_send_window_seconds").record((now_micros() - started) as f64 / 1e6);
        }
        Err(MailError::Transient(error)) if row.attempts < config.max_attempts => {
            let next = now + i64::try_from(config.backoff(row.attempts).as_micros()).unwrap_or(i64::MAX / 2);
            // The error text may quote the address: it goes to the ledger, not the log.
            tracing::info!(delivery_id = %row.id, attempts = row.attempts, "delivery failed, will retry");
            store::deliveries::mark_retry(db.pool(), &row.id, next, &error).await?;
            metrics::counter!("pos_notify_deliveries_total", "outcome" => "retried").increment(1);
        }
        Err(MailError::Transient(error) | MailError::Permanent(error)) => {
            tracing::warn!(delivery_id = %row.id, attempts = row.attempts, "delivery dead-lettered");
            store::deliveries::mark_dead(db.pool(), &row.id, &error).await?;
            metrics::counter!("pos_notify_deliveries_total", "outcome" => "dead").increment(1);
        }
    }
    Ok(())
}

//! The sender: claims due ledger rows, hands each to the mailer, and marks the outcome.
//!
//! A row is marked `sending` (with the time) in its own committed transaction before the SMTP
//! call and `sent` right after it, one row at a time: the only way an e-mail goes twice is a
//! crash between those two writes. A row left `sending` longer than the lease (longer than
//! any SMTP call may take) is taken again and counted in `resent`; the time between the two
//! marks is kept per row (`delivered_at - sending_at`) so the window is measured, not assumed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pos_platform::db::{Db, now_micros};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
    // The outcomes nothing has had yet read zero rather than nothing: a dashboard that asks how
    // many e-mails were given up, or sent again after a crash, gets an answer from the start.
    for outcome in ["sent", "retried", "dead"] {
        metrics::counter!("pos_notify_deliveries_total", "outcome" => outcome).increment(0);
    }
    metrics::counter!("pos_notify_resent_after_crash_total").increment(0);
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
                let span = send_span(&row, mailer.kind());
                async move {
                    if let Err(error) = send_one(db, mailer, config, row).await {
                        // The row stays `sending`; the lease brings it back.
                        tracing::warn!(%error, "failed to mark a delivery");
                    }
                }
                .instrument(span)
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

/// The CLIENT span of one attempt to send a ledger row: a child of the handling that planned it
/// (its stored `traceparent`), so that the appeal's trace reaches the e-mail though it goes out
/// later, from another task; a new trace when the row has none (a digest).
fn send_span(row: &Claimed, mailer: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "email send",
        otel.kind = "client",
        notify.mailer = mailer,
        notify.delivery.id = %row.id,
        notify.attempt = row.attempts,
        notify.outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    if !row.traceparent.is_empty() {
        let carrier = BTreeMap::from([(pos_platform::bus::HEADER_TRACEPARENT.to_owned(), row.traceparent.clone())]);
        pos_platform::telemetry::set_parent_from(&span, &carrier);
    }
    span
}

/// Marks the attempt's outcome on the current (send) span.
fn record_outcome(outcome: &'static str) {
    let span = tracing::Span::current();
    span.record("notify.outcome", outcome);
    if outcome != "sent" {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", outcome);
    }
}

async fn send_one(db: &Db, mailer: &dyn Mailer, config: &SenderConfig, row: Claimed) -> Result<(), sqlx::Error> {
    let mail =
        Mail { id: row.id.clone(), from: config.from.clone(), to: row.recipient, subject: row.subject, body: row.body };
    let started = now_micros();
    let result = mailer.send(&mail).await;
    let now = now_micros();
    match result {
        Ok(()) => {
            record_outcome("sent");
            store::deliveries::mark_sent(db.pool(), &row.id, started, now).await?;
            metrics::counter!("pos_notify_deliveries_total", "outcome" => "sent").increment(1);
            // The double-send window, including the mark's own round trip.
            metrics::histogram!("pos_notify_send_window_seconds").record((now_micros() - started) as f64 / 1e6);
        }
        Err(MailError::Transient(error)) if row.attempts < config.max_attempts => {
            let next = now + i64::try_from(config.backoff(row.attempts).as_micros()).unwrap_or(i64::MAX / 2);
            // The error text may quote the address: it goes to the ledger, not the log.
            tracing::info!(delivery_id = %row.id, attempts = row.attempts, "delivery failed, will retry");
            record_outcome("retried");
            store::deliveries::mark_retry(db.pool(), &row.id, next, &error).await?;
            metrics::counter!("pos_notify_deliveries_total", "outcome" => "retried").increment(1);
        }
        Err(MailError::Transient(error) | MailError::Permanent(error)) => {
            tracing::warn!(delivery_id = %row.id, attempts = row.attempts, "delivery dead-lettered");
            record_outcome("dead");
            store::deliveries::mark_dead(db.pool(), &row.id, &error).await?;
            metrics::counter!("pos_notify_deliveries_total", "outcome" => "dead").increment(1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pos_platform::testing;

    use super::*;
    use crate::store::deliveries::NewDelivery;

    const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

    /// An applicant's letter about appeal `message_id` (one letter per appeal, so that neither
    /// waits for the other).
    fn delivery<'a>(message_id: &'a str, traceparent: &'a str) -> NewDelivery<'a> {
        NewDelivery {
            message_id,
            appeal_id: message_id,
            organization_id: "",
            event: "appeal.received",
            audience: "applicant",
            recipient: "maria@example.org",
            subject: "Обращение зарегистрировано",
            body: "Ваше обращение зарегистрировано.",
            status: "pending",
            created_at: 1,
            next_attempt_at: 1,
            event_at: 1,
            traceparent,
        }
    }

    #[tokio::test]
    async fn an_email_is_sent_in_the_trace_that_planned_it() {
        pos_platform::telemetry::init_for_tests();
        let (db, _dir) = testing::sqlite_db("notify", &crate::MIGRATIONS).await;
        let traceparent = format!("00-{TRACE_ID}-b7ad6b7169203331-01");
        store::deliveries::insert(db.pool(), &delivery("m-traced", &traceparent)).await.unwrap();
        store::deliveries::insert(db.pool(), &delivery("m-digest", "")).await.unwrap();
        let mut claimed = store::deliveries::claim(&db, now_micros(), 0, 10).await.unwrap();
        claimed.sort_by(|a, b| b.traceparent.cmp(&a.traceparent));
        assert_eq!(claimed.len(), 2);
        assert_eq!(claimed[0].traceparent, traceparent);

        let traced = send_span(&claimed[0], "mailbox").in_scope(pos_platform::telemetry::current_trace_id);
        assert_eq!(traced, TRACE_ID, "the send span continues the planning's trace");
        let untraced = send_span(&claimed[1], "mailbox").in_scope(pos_platform::telemetry::current_trace_id);
        assert!(!untraced.is_empty() && untraced != TRACE_ID, "a row of no trace starts its own: {untraced}");
        db.close().await;
    }
}

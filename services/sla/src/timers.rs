//! Firing durable timers. A timer fires by inserting its ledger row, its log entry and its
//! `sla.*` event in one transaction, so it fires at most once whatever crashes; it is claimed
//! with `FOR UPDATE SKIP LOCKED`, so instances side by side share the work without firing
//! twice; it is never claimed before its due time; timers that came due while the service was
//! down are simply due at start-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pos_platform::db::Db;
use pos_proto::v1::events as ev;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::engine;
use crate::store::{self, Clock, ClockKind, LogKind, State, TimerKind};

/// The loop that fires due timers.
#[derive(Clone)]
pub struct TimerLoop {
    db: Db,
    wake: Arc<Notify>,
    batch_size: i64,
    /// Fallback poll: timers armed by other instances, and rings that came before a commit.
    poll_interval: Duration,
    /// Firing loops in this instance. Firing is bound by round trips to the database, so a
    /// few loops side by side (sharing the work through SKIP LOCKED, as instances do) keep up
    /// when many timers come due at once.
    workers: usize,
}

impl TimerLoop {
    pub fn new(db: Db, wake: Arc<Notify>) -> TimerLoop {
        // SQLite has one writer: more loops would only queue on its lock.
        let workers = match db.dialect() {
            pos_platform::Dialect::Postgres => 4,
            pos_platform::Dialect::Sqlite => 1,
        };
        TimerLoop { db, wake, batch_size: 200, poll_interval: Duration::from_secs(1), workers }
    }

    pub fn with_poll_interval(mut self, interval: Duration) -> TimerLoop {
        self.poll_interval = interval;
        self
    }

    pub fn with_workers(mut self, workers: usize) -> TimerLoop {
        self.workers = workers.max(1);
        self
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(schema = self.db.schema(), workers = self.workers, "sla timers started");
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..self.workers {
            workers.spawn(self.clone().work(worker, shutdown.clone()));
        }
        while let Some(joined) = workers.join_next().await {
            joined??;
        }
        tracing::info!("sla timers stopped");
        Ok(())
    }

    async fn work(self, worker: usize, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        let mut last_housekeeping: Option<std::time::Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if worker == 0 && last_housekeeping.is_none_or(|at| at.elapsed() > HOUSEKEEPING_EVERY) {
                last_housekeeping = Some(std::time::Instant::now());
                if let Err(error) = housekeeping(&self.db).await {
                    tracing::warn!(%error, "purging fired timers failed");
                }
            }
            let claimed = match fire_due(&self.db, self.batch_size).await {
                Ok(claimed) if claimed as i64 >= self.batch_size => continue,
                Ok(claimed) => {
                    backoff = Duration::from_millis(100);
                    claimed
                }
                Err(error) => {
                    tracing::warn!(%error, "firing timers failed, retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let sleep = match store::next_due(&self.db).await {
                Ok(Some(next)) => (next - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(self.poll_interval),
                Ok(None) => self.poll_interval,
                Err(error) => {
                    tracing::warn!(%error, "reading the next timer failed");
                    self.poll_interval
                }
            };
            if sleep.is_zero() {
                if claimed > 0 {
                    continue;
                }
                // Due but claimed by another loop (here or in another instance) that is
                // firing them: look again shortly instead of spinning on the database.
                tokio::time::sleep(BUSY_RETRY).await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
                () = shutdown.cancelled() => break,
            }
        }
        Ok(())
    }
}

/// The wait when every due timer is held by another firing loop.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// How often fired timers are purged. (The gauges are sampled by the host: [`crate::gauges`].)
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);

/// Fired timers are kept this long for inspection; the ledger keeps every firing for good.
const FIRED_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// Purges old fired timers, except those of a clock's current generation still open: a passed
/// warning is what makes its deadline "at risk" for as long as it runs (the cabinet and the
/// gauges read it), however long ago it fired.
pub(crate) async fn housekeeping(db: &Db) -> Result<(), sqlx::Error> {
    let cutoff = pos_platform::db::to_micros(Utc::now() - FIRED_RETENTION);
    sqlx::query(
        "DELETE FROM timers WHERE fired_at IS NOT NULL AND fired_at < $1 AND NOT EXISTS (SELECT 1 FROM sla_clocks c \
         WHERE c.appeal_id = timers.appeal_id AND c.clock = timers.clock AND c.generation = timers.generation \
         AND c.state <> 'stopped')",
    )
    .bind(cutoff)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Fires one batch of due timers; returns how many were claimed.
#[tracing::instrument(skip(db), fields(schema = db.schema()))]
pub async fn fire_due(db: &Db, limit: i64) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let now = Utc::now();
    let mut timers = store::claim_due_timers(&mut tx, db.dialect(), now, limit).await?;
    if timers.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    // The batch is written with a handful of statements, not a few per timer: firing is
    // bound by round trips when many timers come due at once. Clocks are locked in one
    // statement, ordered (appeal, then answer before execution) as consumers lock them, so
    // that two firing batches and a consumer never wait on each other crosswise.
    timers.sort_by(|a, b| (&a.appeal_id, a.clock).cmp(&(&b.appeal_id, b.clock)));
    let claimed = timers.len();
    let mut keys: Vec<(String, ClockKind)> = timers.iter().map(|t| (t.appeal_id.clone(), t.clock)).collect();
    keys.dedup();
    let mut clocks: HashMap<(String, ClockKind), Clock> = store::lock_clocks(&mut tx, db.dialect(), &keys)
        .await?
        .into_iter()
        .map(|c| ((c.appeal_id.clone(), c.kind), c))
        .collect();
    let fired_at = Utc::now();
    let mut firings = Vec::with_capacity(claimed);
    let mut fired = Vec::new();
    for timer in &timers {
        // Claimed only when due: a timer is never early, and `fired_at >= due_at` holds.
        debug_assert!(timer.due_at <= fired_at);
        let key = (timer.appeal_id.clone(), timer.clock);
        let live = clocks
            .get(&key)
            .filter(|c| c.generation == timer.generation && c.state == State::Running && !c.overdue)
            // A warning that comes due after the deadline itself (the service was down, or the
            // appeal arrived late) would only confuse: the overdue event says it all.
            .filter(|c| timer.kind == TimerKind::Overdue || fired_at <= c.due_at)
            .cloned();
        let Some(clock) = live else {
            // The deadline moved, paused or stopped since (or the warning is too late): a stale
            // timer fires as a no-op.
            firings.push((timer, "stale"));
            continue;
        };
        firings.push((timer, "published"));
        if timer.kind == TimerKind::Overdue
            && let Some(c) = clocks.get_mut(&key)
        {
            // Later warnings of this clock in the batch are stale now.
            c.overdue = true;
        }
        fired.push((timer, clock));
    }
    // The ledger's primary key makes a second firing of a timer fail the whole batch rather
    // than publish twice; the claim (unfired, locked) means it never happens.
    store::record_firings(&mut tx, &firings, fired_at).await?;
    let stamp = Some(pos_proto::time::to_proto(fired_at));
    let mut entries = Vec::with_capacity(fired.len());
    let mut overdue_keys = Vec::new();
    for (timer, clock) in &fired {
        let lateness = (fired_at - timer.due_at).to_std().unwrap_or_default();
        metrics::histogram!("pos_sla_timer_lateness_seconds", "kind" => timer.kind.as_str())
            .record(lateness.as_secs_f64());
        let deadline = Some(engine::sla_deadline(clock));
        match timer.kind {
            TimerKind::Warning => {
                entries.push((clock, LogKind::Warned, format!("warning point {}", timer.point)));
                engine::publish(&mut tx, clock, &ev::SlaWarning { deadline, at: stamp, point: timer.point.clone() })
                    .await?;
            }
            TimerKind::Overdue => {
                entries.push((clock, LogKind::Breached, "the deadline passed without an answer".to_owned()));
                overdue_keys.push((clock.appeal_id.clone(), clock.kind));
                engine::publish(&mut tx, clock, &ev::SlaOverdue { deadline, at: stamp }).await?;
                tracing::info!(appeal_id = %clock.appeal_id, clock = clock.kind.as_str(), "deadline breached");
            }
        }
    }
    store::append_logs(&mut tx, &entries, fired_at).await?;
    store::mark_overdue(&mut tx, &overdue_keys).await?;
    tx.commit().await?;
    if !fired.is_empty() {
        db.wake_outbox();
    }
    metrics::counter!("pos_sla_timers_fired_total").increment(fired.len() as u64);
    Ok(claimed)
}

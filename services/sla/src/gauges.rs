//! The deadlines dashboards watch, sampled from the store (see `pos_platform::host::Sampler`):
//! open answer deadlines by region and state, the organizations with the most overdue and the
//! most at-risk ones, and the timers still to fire.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pos_platform::db::{Db, to_micros};
use pos_platform::host::Sampler;
use pos_platform::metrics::{Series, replace_gauges};
use sqlx::Row;

/// The per-organization family: replaced whole at each sample, so that an organization that
/// left a ranking leaves `/metrics` with it.
const ORGANIZATION_DEADLINES: &str = "pos_sla_organization_deadlines";
const ORGANIZATION_DEADLINES_HELP: &str = "Open answer deadlines of the organizations ranked first by overdue and by \
     at-risk ones, each ranking as long as sla.top_organizations [organization, region, state: overdue, at_risk].";

/// The open answer deadlines of one organization in one region (a federal body answers in many).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub region: String,
    pub organization: String,
    /// Not stopped: running or paused.
    pub open: i64,
    /// Past due without an answer.
    pub overdue: i64,
    /// Running, not overdue, and due before the end of the local day.
    pub due_today: i64,
    /// Not overdue, and a warning point of the deadline passed.
    pub at_risk: i64,
}

/// Open answer deadlines by region and organization at `now`: one grouped query, over the open
/// clocks (a partial index holds them) and the warning timers already due.
///
/// A deadline is the end of a local day, so "due today" is "due within 24 hours": no time zone
/// needs reading (Russia keeps no daylight saving time). "At risk" is what the cabinet shows: a
/// warning timer of the clock's current generation has come due (a pause or a move makes the
/// earlier ones stale).
pub async fn open_deadlines(db: &Db, now: DateTime<Utc>) -> Result<Vec<Counts>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.region_code, c.organization_id, COUNT(*) AS open, \
         SUM(CASE WHEN c.overdue OR (c.state = 'running' AND c.due_at < $1) THEN 1 ELSE 0 END) AS overdue, \
         SUM(CASE WHEN NOT c.overdue AND c.state = 'running' AND c.due_at >= $1 AND c.due_at < $2 \
           THEN 1 ELSE 0 END) AS due_today, \
         SUM(CASE WHEN NOT c.overdue AND NOT (c.state = 'running' AND c.due_at < $1) AND w.appeal_id IS NOT NULL \
           THEN 1 ELSE 0 END) AS at_risk \
         FROM sla_clocks c \
         LEFT JOIN (SELECT DISTINCT appeal_id, clock, generation FROM timers WHERE kind = 'warning' AND due_at <= $1) w \
           ON w.appeal_id = c.appeal_id AND w.clock = c.clock AND w.generation = c.generation \
         WHERE c.clock = 'answer' AND c.state <> 'stopped' \
         GROUP BY c.region_code, c.organization_id",
    )
    .bind(to_micros(now))
    .bind(to_micros(now + chrono::Duration::hours(24)))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Counts {
                region: row.try_get("region_code")?,
                organization: row.try_get("organization_id")?,
                open: row.try_get("open")?,
                overdue: row.try_get("overdue")?,
                due_today: row.try_get("due_today")?,
                at_risk: row.try_get("at_risk")?,
            })
        })
        .collect()
}

/// The `top` organizations by `measure`, largest first, then by open deadlines and name so that
/// equal ones rank the same way at every sample. Organizations with none rank too: a dashboard
/// with nothing overdue shows the busiest at zero rather than nothing.
pub fn ranked(counts: &[Counts], top: usize, measure: fn(&Counts) -> i64) -> Vec<&Counts> {
    let mut ranked: Vec<&Counts> = counts.iter().collect();
    ranked.sort_by_key(|c| (Reverse(measure(c)), Reverse(c.open), &c.organization, &c.region));
    ranked.truncate(top);
    ranked
}

/// `pos_sla_deadlines{region,state}`, `pos_sla_organization_deadlines{organization,region,state}`
/// and `pos_sla_timers_pending`.
pub struct DeadlineGauges {
    top_organizations: usize,
    /// Every region seen since start: one whose deadlines all closed reads zero, not its last count.
    regions: BTreeSet<String>,
}

impl DeadlineGauges {
    pub fn new(top_organizations: usize) -> DeadlineGauges {
        DeadlineGauges { top_organizations, regions: BTreeSet::new() }
    }

    fn publish(&mut self, counts: &[Counts]) {
        self.regions.extend(counts.iter().map(|c| c.region.clone()));
        for region in &self.regions {
            let of_region = counts.iter().filter(|c| &c.region == region);
            let mut total = Counts::default();
            for c in of_region {
                total.open += c.open;
                total.overdue += c.overdue;
                total.due_today += c.due_today;
                total.at_risk += c.at_risk;
            }
            for (state, n) in [
                ("open", total.open),
                ("due_today", total.due_today),
                ("at_risk", total.at_risk),
                ("overdue", total.overdue),
            ] {
                metrics::gauge!("pos_sla_deadlines", "region" => region.clone(), "state" => state).set(n as f64);
            }
        }
        let mut series = Vec::new();
        for (state, measure) in
            [("overdue", (|c: &Counts| c.overdue) as fn(&Counts) -> i64), ("at_risk", |c| c.at_risk)]
        {
            for c in ranked(counts, self.top_organizations, measure) {
                series.push(Series {
                    labels: vec![
                        ("organization", c.organization.clone()),
                        ("region", c.region.clone()),
                        ("state", state.to_owned()),
                    ],
                    value: measure(c) as f64,
                });
            }
        }
        replace_gauges(ORGANIZATION_DEADLINES, ORGANIZATION_DEADLINES_HELP, series);
    }
}

#[async_trait]
impl Sampler for DeadlineGauges {
    async fn sample(&mut self, db: &Db) -> anyhow::Result<()> {
        let counts = open_deadlines(db, Utc::now()).await?;
        self.publish(&counts);
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM timers WHERE fired_at IS NULL").fetch_one(db.pool()).await?;
        metrics::gauge!("pos_sla_timers_pending").set(pending as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use pos_platform::testing;

    use super::*;
    use crate::policy::Period;
    use crate::store::{self, Clock, ClockKind, State, Timer, TimerKind};

    fn counts(organization: &str, open: i64, overdue: i64, at_risk: i64) -> Counts {
        Counts { region: "41".into(), organization: organization.into(), open, overdue, due_today: 0, at_risk }
    }

    #[test]
    fn rankings_are_bounded_stable_and_list_organizations_with_none_last() {
        let all = [counts("a", 10, 0, 1), counts("b", 5, 3, 0), counts("c", 7, 3, 4), counts("d", 1, 0, 0)];
        let by_overdue: Vec<&str> = ranked(&all, 3, |c| c.overdue).iter().map(|c| c.organization.as_str()).collect();
        assert_eq!(by_overdue, ["c", "b", "a"], "most overdue first, ties by open deadlines");
        let by_risk: Vec<&str> = ranked(&all, 2, |c| c.at_risk).iter().map(|c| c.organization.as_str()).collect();
        assert_eq!(by_risk, ["c", "a"]);
        assert!(ranked(&all, 0, |c| c.overdue).is_empty());
    }

    #[test]
    fn an_organization_that_left_the_ranking_leaves_metrics() {
        let mut gauges = DeadlineGauges::new(1);
        gauges.publish(&[counts("41-school-1", 4, 2, 0), counts("41-school-2", 1, 1, 0)]);
        let text = pos_platform::metrics::render();
        assert!(
            text.contains(
                "pos_sla_organization_deadlines{organization=\"41-school-1\",region=\"41\",state=\"overdue\"} 2"
            ),
            "{text}"
        );
        assert!(!text.contains("41-school-2"), "only the top one is listed: {text}");
        gauges.publish(&[counts("41-school-2", 1, 1, 0)]);
        let text = pos_platform::metrics::render();
        assert!(!text.contains("41-school-1"), "the organization whose deadlines closed is gone: {text}");
        assert!(text.contains("pos_sla_deadlines{region=\"41\",state=\"overdue\"} 1"), "{text}");
    }

    fn clock(appeal_id: &str, organization: &str, due_at: DateTime<Utc>, now: DateTime<Utc>) -> Clock {
        Clock {
            appeal_id: appeal_id.into(),
            kind: ClockKind::Answer,
            ticket_id: String::new(),
            organization_id: organization.into(),
            region_code: "41".into(),
            time_zone: "Asia/Kamchatka".into(),
            fact_id: "education.e-diary.access".into(),
            assignee_id: String::new(),
            round: 1,
            fast_track: true,
            period: Period { days: 10, working_days: false },
            started_at: now - Duration::days(9),
            due_at,
            span: due_at - (now - Duration::days(9)),
            state: State::Running,
            paused_at: None,
            overdue: false,
            met: false,
            stopped_at: None,
            generation: 1,
            warnings: Vec::new(),
        }
    }

    async fn counted_in(db: &Db) -> Vec<Counts> {
        let now = Utc::now();
        let mut tx = db.begin().await.unwrap();
        // Due in three days, a warning of its generation passed: at risk.
        let risky = clock("a-risk", "41-school", now + Duration::days(3), now);
        store::save_clock(&mut tx, &risky).await.unwrap();
        store::insert_timers(&mut tx, &[Timer::new(&risky, TimerKind::Warning, "50pct", now - Duration::hours(1))])
            .await
            .unwrap();
        // The same, but the warning belongs to an earlier generation (the deadline moved since).
        let moved = Clock { generation: 2, ..clock("a-moved", "41-school", now + Duration::days(3), now) };
        let stale = Clock { generation: 1, ..moved.clone() };
        store::save_clock(&mut tx, &moved).await.unwrap();
        store::insert_timers(&mut tx, &[Timer::new(&stale, TimerKind::Warning, "50pct", now - Duration::hours(1))])
            .await
            .unwrap();
        // Due within the day; past due and not yet marked; marked overdue; paused; stopped.
        store::save_clock(&mut tx, &clock("a-today", "41-school", now + Duration::hours(5), now)).await.unwrap();
        store::save_clock(&mut tx, &clock("a-late", "41-clinic", now - Duration::minutes(1), now)).await.unwrap();
        let marked = Clock { overdue: true, ..clock("a-marked", "41-clinic", now - Duration::days(1), now) };
        store::save_clock(&mut tx, &marked).await.unwrap();
        let paused = Clock {
            state: State::Paused,
            paused_at: Some(now - Duration::days(2)),
            ..clock("a-paused", "41-clinic", now + Duration::hours(5), now)
        };
        store::save_clock(&mut tx, &paused).await.unwrap();
        let stopped = Clock { state: State::Stopped, stopped_at: Some(now), ..clock("a-done", "41-clinic", now, now) };
        store::save_clock(&mut tx, &stopped).await.unwrap();
        tx.commit().await.unwrap();
        let mut counts = open_deadlines(db, now).await.unwrap();
        counts.sort_by(|a, b| a.organization.cmp(&b.organization));
        counts
    }

    #[tokio::test]
    async fn a_warning_long_fired_keeps_its_open_deadline_at_risk_through_the_purge() {
        let (db, _dir) = testing::sqlite_db("sla", &crate::MIGRATIONS).await;
        let now = Utc::now();
        let open = clock("a-open", "41-school", now + Duration::days(2), now);
        let stopped =
            Clock { state: State::Stopped, stopped_at: Some(now), ..clock("a-stopped", "41-school", now, now) };
        let long_ago = now - Duration::days(10);
        let warnings = [
            Timer::new(&open, TimerKind::Warning, "50pct", long_ago),
            Timer::new(&stopped, TimerKind::Warning, "50pct", long_ago),
        ];
        let mut tx = db.begin().await.unwrap();
        store::save_clock(&mut tx, &open).await.unwrap();
        store::save_clock(&mut tx, &stopped).await.unwrap();
        store::insert_timers(&mut tx, &warnings).await.unwrap();
        let firings: Vec<(&Timer, &str)> = warnings.iter().map(|timer| (timer, "published")).collect();
        store::record_firings(&mut tx, &firings, long_ago).await.unwrap();
        tx.commit().await.unwrap();

        crate::timers::housekeeping(&db).await.unwrap();
        let left: Vec<String> = sqlx::query_scalar("SELECT appeal_id FROM timers").fetch_all(db.pool()).await.unwrap();
        assert_eq!(left, ["a-open"], "the stopped clock's timer is purged, the open one's kept");
        let counts = open_deadlines(&db, now).await.unwrap();
        assert_eq!(counts.iter().map(|c| c.at_risk).sum::<i64>(), 1);
        db.close().await;
    }

    #[tokio::test]
    async fn deadlines_are_counted_by_state_in_one_query_on_both_databases() {
        let expected = vec![
            Counts {
                region: "41".into(),
                organization: "41-clinic".into(),
                open: 3,
                overdue: 2,
                due_today: 0,
                at_risk: 0,
            },
            Counts {
                region: "41".into(),
                organization: "41-school".into(),
                open: 3,
                overdue: 0,
                due_today: 1,
                at_risk: 1,
            },
        ];
        let (sqlite, _dir) = testing::sqlite_db("sla", &crate::MIGRATIONS).await;
        assert_eq!(counted_in(&sqlite).await, expected, "sqlite");
        sqlite.close().await;
        let postgres = testing::postgres_db("sla", &crate::MIGRATIONS).await;
        assert_eq!(counted_in(&postgres).await, expected, "postgres");
        postgres.drop_schema().await.unwrap();
        postgres.close().await;
    }
}

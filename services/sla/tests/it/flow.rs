//! Clocks through their events, on PostgreSQL and on SQLite.

use chrono::{DateTime, Duration, Utc};
use pos_proto::BusEvent;
use pos_proto::v1::events::{AppealRouted, SlaArmed, SlaOverdue, TicketAction, TicketReopened};
use pos_sla::policy::Policy;
use pos_sla::store::{self, ClockKind, State};
use sqlx::Row;

use crate::helpers::{SlaDb, routed, status, ts, utc};

const KAMCHATKA: &str = "Asia/Kamchatka";

#[tokio::test]
async fn the_worked_example_arms_a_fast_track_deadline_with_its_timers_and_events() {
    for t in SlaDb::both().await {
        // Received 23:18 15.01.2025 Kamchatka time (11:18 UTC), fast-track.
        let received = utc(2025, 1, 15, 11, 18);
        t.routed(&routed("a-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        let clock = t.clock("a-1", ClockKind::Answer).await;
        assert_eq!(clock.due_at, utc(2025, 1, 25, 11, 59) + Duration::seconds(59), "{}", t.name());
        assert_eq!(clock.due_at.with_timezone(&chrono_tz::Asia::Kamchatka).to_rfc3339(), "2025-01-25T23:59:59+12:00");
        assert!(clock.fast_track);
        assert_eq!((clock.round, clock.state), (1, State::Running));
        assert_eq!(t.log_kinds("a-1").await, vec!["answer:armed"]);
        assert_eq!(t.published("a-1").await, vec!["sla.armed.41", "sla.fast_track.41"]);
        // Overdue one second after 23:59:59, and the two warning points of the default policy.
        assert_eq!(t.count("SELECT COUNT(*) FROM timers WHERE kind = 'overdue'").await, 1);
        assert_eq!(t.count("SELECT COUNT(*) FROM timers WHERE kind = 'warning'").await, 2);
        // The same event again (a re-publish by routing) changes nothing.
        t.routed(&routed("a-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        assert_eq!(t.log_kinds("a-1").await, vec!["answer:armed"]);
        t.drop().await;
    }
}

#[tokio::test]
async fn a_fact_period_from_the_policy_and_the_next_working_day_flag() {
    for t in SlaDb::both().await {
        // 2 calendar days for a seed-001 fact: Thursday 23.01.2025 10:00 Moscow → Saturday 25.01.
        let at = utc(2025, 1, 23, 7, 0);
        t.routed(&routed("f-1", "77", "Europe/Moscow", "org-77", "edu-records.documents.other", false, at)).await;
        let clock = t.clock("f-1", ClockKind::Answer).await;
        assert_eq!(clock.due_at.with_timezone(&chrono_tz::Europe::Moscow).to_rfc3339(), "2025-01-25T23:59:59+03:00");
        // The same with the flag on for region 78: moved to Monday 27.01.
        let mut conn = t.db.pool().acquire().await.unwrap();
        let default = store::policy_for(&mut conn, "*").await.unwrap();
        let spb = Policy { region: "78".into(), move_to_next_working_day: true, ..default };
        store::put_policy(&mut conn, &spb, "test").await.unwrap();
        drop(conn);
        t.routed(&routed("f-2", "78", "Europe/Moscow", "org-78", "edu-records.documents.other", false, at)).await;
        let clock = t.clock("f-2", ClockKind::Answer).await;
        assert_eq!(clock.due_at.with_timezone(&chrono_tz::Europe::Moscow).to_rfc3339(), "2025-01-27T23:59:59+03:00");
        t.drop().await;
    }
}

#[tokio::test]
async fn working_day_periods_follow_the_regional_calendar() {
    for t in SlaDb::both().await {
        let mut conn = t.db.pool().acquire().await.unwrap();
        let default = store::policy_for(&mut conn, "*").await.unwrap();
        for region in ["16", "77"] {
            let policy =
                Policy { region: region.into(), standard: pos_sla::policy::Period::working(1), ..default.clone() };
            store::put_policy(&mut conn, &policy, "test").await.unwrap();
        }
        drop(conn);
        // Wednesday 05.11.2025 12:00 Moscow; 1 working day; Nov 6 is Tatarstan's Constitution Day.
        let at = utc(2025, 11, 5, 9, 0);
        t.routed(&routed("w-16", "16", "Europe/Moscow", "org-16", "education.meals.quality", false, at)).await;
        t.routed(&routed("w-77", "77", "Europe/Moscow", "org-77", "education.meals.quality", false, at)).await;
        let kazan = t.clock("w-16", ClockKind::Answer).await.due_at.with_timezone(&chrono_tz::Europe::Moscow);
        let moscow = t.clock("w-77", ClockKind::Answer).await.due_at.with_timezone(&chrono_tz::Europe::Moscow);
        assert_eq!(kazan.date_naive().to_string(), "2025-11-07", "{}", t.name());
        assert_eq!(moscow.date_naive().to_string(), "2025-11-06", "{}", t.name());
        t.drop().await;
    }
}

#[tokio::test]
async fn a_pause_moves_the_deadline_by_the_local_days_it_covered() {
    for t in SlaDb::both().await {
        let received = utc(2025, 1, 15, 11, 18);
        t.routed(&routed("p-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        let before = t.clock("p-1", ClockKind::Answer).await;
        // Wednesday 22.01.2025 16:00 to Saturday 25.01 10:00 Kamchatka time: Wednesday, Thursday
        // and Friday stood still, so the deadline moves three days, to the end of a local day.
        let paused = utc(2025, 1, 22, 4, 0);
        t.status(&status("p-1", "41", TicketAction::InformationRequested, paused)).await;
        let clock = t.clock("p-1", ClockKind::Answer).await;
        assert_eq!(clock.state, State::Paused);
        t.status(&status("p-1", "41", TicketAction::InformationReceived, utc(2025, 1, 24, 22, 0))).await;
        let after = t.clock("p-1", ClockKind::Answer).await;
        assert_eq!(after.state, State::Running);
        assert_eq!(after.due_at, before.due_at + Duration::days(3), "{}", t.name());
        assert_eq!(after.due_at.with_timezone(&chrono_tz::Asia::Kamchatka).to_rfc3339(), "2025-01-28T23:59:59+12:00");
        assert_eq!(after.generation, before.generation + 2, "paused and resumed");
        assert_eq!(t.log_kinds("p-1").await, vec!["answer:armed", "answer:paused", "answer:resumed"]);
        // The first generation's timers are stale; the new ones are due three days later.
        let pending: i64 = sqlx::query_scalar("SELECT MAX(due_at) FROM timers WHERE generation = $1")
            .bind(after.generation)
            .fetch_one(t.db.pool())
            .await
            .unwrap();
        assert_eq!(pending, crate::helpers::micros(after.due_at + Duration::seconds(1)));

        // Three seconds across midnight (with a fraction of a second): one more day, and the
        // deadline stays the end of a local day, in whole seconds.
        let paused = utc(2025, 1, 26, 11, 59) + Duration::milliseconds(58_250);
        t.status(&status("p-1", "41", TicketAction::InformationRequested, paused)).await;
        t.status(&status("p-1", "41", TicketAction::InformationReceived, paused + Duration::seconds(3))).await;
        let across = t.clock("p-1", ClockKind::Answer).await;
        assert_eq!(across.due_at.with_timezone(&chrono_tz::Asia::Kamchatka).to_rfc3339(), "2025-01-29T23:59:59+12:00");
        assert_eq!(across.due_at.timestamp_subsec_nanos(), 0, "{}", t.name());
        // A pause begun and ended on one local day moves nothing.
        t.status(&status("p-1", "41", TicketAction::InformationRequested, utc(2025, 1, 27, 0, 0))).await;
        t.status(&status("p-1", "41", TicketAction::InformationReceived, utc(2025, 1, 27, 9, 0))).await;
        assert_eq!(t.clock("p-1", ClockKind::Answer).await.due_at, across.due_at);
        t.drop().await;
    }
}

#[tokio::test]
async fn approval_in_time_is_met_and_the_timers_go_stale() {
    for t in SlaDb::both().await {
        let received = utc(2025, 1, 15, 11, 18);
        t.routed(&routed("m-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        // The coordinator assigns with a stage deadline of its own, then the head approves.
        let mut assigned = status("m-1", "41", TicketAction::ExecutorAssigned, received + Duration::hours(2));
        assigned.assignee_id = "exec-1".into();
        assigned.execution_due = ts(utc(2025, 1, 20, 11, 59));
        t.status(&assigned).await;
        let execution = t.clock("m-1", ClockKind::Execution).await;
        // The end of the day the coordinator named (Kamchatka time), as every deadline.
        assert_eq!(execution.due_at, utc(2025, 1, 20, 11, 59) + Duration::seconds(59));
        assert_eq!(execution.assignee_id, "exec-1");
        t.status(&status("m-1", "41", TicketAction::AnswerPrepared, received + Duration::days(2))).await;
        t.status(&status("m-1", "41", TicketAction::Approved, received + Duration::days(3))).await;
        let answer = t.clock("m-1", ClockKind::Answer).await;
        assert!(answer.met && answer.state == State::Stopped);
        assert!(t.clock("m-1", ClockKind::Execution).await.met);
        assert_eq!(
            t.published("m-1").await,
            vec!["sla.armed.41", "sla.fast_track.41", "sla.armed.41", "sla.met.41", "sla.met.41"]
        );
        // Firing now (long after the 2025 due times) publishes nothing: every timer is stale.
        let claimed = pos_sla::timers::fire_due(&t.db, 100).await.unwrap();
        assert!(claimed >= 3);
        assert_eq!(t.count("SELECT COUNT(*) FROM timer_ledger WHERE outcome = 'published'").await, 0);
        assert_eq!(t.published("m-1").await.len(), 5);
        t.drop().await;
    }
}

#[tokio::test]
async fn the_default_execution_deadline_is_a_share_of_the_answer_period() {
    for t in SlaDb::both().await {
        let received = utc(2025, 3, 3, 6, 0);
        t.routed(&routed("e-1", "77", "Europe/Moscow", "org-77", "education.e-diary.access", true, received)).await;
        t.status(&status("e-1", "77", TicketAction::ExecutorAssigned, received + Duration::hours(1))).await;
        let execution = t.clock("e-1", ClockKind::Execution).await;
        let answer = t.clock("e-1", ClockKind::Answer).await;
        assert!(execution.due_at < answer.due_at);
        assert_eq!(
            execution.due_at.with_timezone(&chrono_tz::Europe::Moscow).to_rfc3339(),
            "2025-03-10T23:59:59+03:00"
        );
        t.drop().await;
    }
}

#[tokio::test]
async fn a_re_review_arms_a_new_deadline_in_round_two() {
    for t in SlaDb::both().await {
        let received = utc(2025, 1, 15, 11, 18);
        t.routed(&routed("r-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        t.status(&status("r-1", "41", TicketAction::Approved, received + Duration::days(2))).await;
        let reopened_at = utc(2025, 2, 3, 0, 0);
        let reopened = TicketReopened {
            ticket_id: "t-r-1".into(),
            appeal_id: "r-1".into(),
            region_code: "41".into(),
            time_zone: KAMCHATKA.into(),
            review_round: 2,
            reopened_at: ts(reopened_at),
            ..Default::default()
        };
        t.reopened(&reopened).await;
        let clock = t.clock("r-1", ClockKind::Answer).await;
        assert_eq!((clock.round, clock.state, clock.met), (2, State::Running, false), "{}", t.name());
        // 03.02.2025 12:00 Kamchatka + 10 calendar days (the first period again).
        assert_eq!(clock.due_at.with_timezone(&chrono_tz::Asia::Kamchatka).to_rfc3339(), "2025-02-13T23:59:59+12:00");
        assert_eq!(t.log_kinds("r-1").await, vec!["answer:armed", "answer:met", "answer:armed"]);
        // The same re-review again changes nothing.
        t.reopened(&reopened).await;
        assert_eq!(t.clock("r-1", ClockKind::Answer).await.generation, clock.generation);
        t.drop().await;
    }
}

/// The events of type `E` in the outbox for `appeal_id`, oldest first, decoded.
async fn outbox<E: BusEvent>(t: &SlaDb, appeal_id: &str) -> Vec<E> {
    let rows =
        sqlx::query("SELECT type_name, payload, headers FROM outbox ORDER BY id").fetch_all(t.db.pool()).await.unwrap();
    rows.iter()
        .filter(|r| r.get::<String, _>("type_name") == E::full_name())
        .filter(|r| r.get::<String, _>("headers").contains(&format!("\"{appeal_id}\"")))
        .map(|r| E::decode(r.get::<Vec<u8>, _>("payload").as_slice()).unwrap())
        .collect()
}

/// The last `sla.armed` in the outbox for `appeal_id`.
async fn last_armed(t: &SlaDb, appeal_id: &str) -> SlaArmed {
    outbox::<SlaArmed>(t, appeal_id).await.pop().expect("an sla.armed")
}

/// A reroute of `appeal_id` to `organization` at `at`, as routing announces it.
fn reroute(appeal_id: &str, organization: &str, received: DateTime<Utc>, at: DateTime<Utc>) -> AppealRouted {
    let mut event = routed(appeal_id, "41", KAMCHATKA, organization, "education.e-diary.access", true, received);
    event.reroute = true;
    event.routed_at = ts(at);
    event
}

#[tokio::test]
async fn a_redirect_keeps_the_deadline_unless_the_policy_says_otherwise() {
    for t in SlaDb::both().await {
        let received = utc(2025, 1, 15, 11, 18);
        t.routed(&routed("d-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        let before = t.clock("d-1", ClockKind::Answer).await;
        // An executor was working on it when the coordinator redirected it.
        t.status(&status("d-1", "41", TicketAction::ExecutorAssigned, received + Duration::hours(1))).await;
        t.status(&status("d-1", "41", TicketAction::Redirected, received + Duration::days(1))).await;
        t.routed(&reroute("d-1", "41-other", received, received + Duration::days(1))).await;
        let after = t.clock("d-1", ClockKind::Answer).await;
        assert_eq!(after.due_at, before.due_at, "{}", t.name());
        assert_eq!(after.organization_id, "41-other");
        assert_eq!(t.clock("d-1", ClockKind::Execution).await.state, State::Stopped);
        // One redirect, one entry: the executor's stage ending is part of it.
        let log = t.log("d-1").await;
        assert_eq!(t.log_kinds("d-1").await, vec!["answer:armed", "execution:armed", "answer:kept"], "{}", t.name());
        assert!(log[2].detail.contains("41-other") && log[2].detail.contains("executor's stage"), "{}", log[2].detail);
        // The new organization's ticket learns the kept deadline: sla.armed names it.
        let armed = last_armed(&t, "d-1").await.deadline.unwrap();
        assert_eq!(armed.organization_id, "41-other");
        assert_eq!(armed.due.and_then(|d| pos_proto::time::from_proto(&d)), Some(before.due_at));
        // The first routing, redelivered late, does not take the appeal back.
        t.routed(&routed("d-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        assert_eq!(t.clock("d-1", ClockKind::Answer).await.organization_id, "41-other");

        // Region 41 now gives a redirected appeal a new period from the redirect.
        let mut conn = t.db.pool().acquire().await.unwrap();
        let default = store::policy_for(&mut conn, "*").await.unwrap();
        let policy = Policy { region: "41".into(), redirect_keeps_deadline: false, ..default };
        store::put_policy(&mut conn, &policy, "test").await.unwrap();
        drop(conn);
        t.routed(&reroute("d-1", "41-third", received, received + Duration::days(2))).await;
        let moved = t.clock("d-1", ClockKind::Answer).await;
        assert_eq!(moved.due_at, before.due_at + Duration::days(2));
        assert_eq!(moved.organization_id, "41-third");
        assert_eq!(
            t.log_kinds("d-1").await,
            vec!["answer:armed", "execution:armed", "answer:kept", "answer:armed"],
            "{}",
            t.name()
        );
        let armed = last_armed(&t, "d-1").await.deadline.unwrap();
        assert_eq!(armed.organization_id, "41-third");

        // The breach goes to the organization that holds the appeal now.
        let claimed = pos_sla::timers::fire_due(&t.db, 100).await.unwrap();
        assert!(claimed > 0);
        let overdue = outbox::<SlaOverdue>(&t, "d-1").await;
        let organizations: Vec<String> = overdue.into_iter().map(|o| o.deadline.unwrap().organization_id).collect();
        assert_eq!(organizations, vec!["41-third".to_owned()], "{}", t.name());
        t.drop().await;
    }
}

#[tokio::test]
async fn a_reroute_needs_no_registration_time_once_the_clock_runs() {
    for t in SlaDb::both().await {
        let received = utc(2025, 1, 15, 11, 18);
        t.routed(&routed("n-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        // A return to coordination announced by an older routing, without the registration
        // time: the clock moves on all the same (it is not poison).
        let mut back = reroute("n-1", "41-minobr", received, received + Duration::days(1));
        back.registered_at = None;
        t.routed(&back).await;
        assert_eq!(t.clock("n-1", ClockKind::Answer).await.organization_id, "41-minobr");
        assert_eq!(t.log_kinds("n-1").await, vec!["answer:armed", "answer:kept"]);
        t.drop().await;
    }
}

#[tokio::test]
async fn an_event_without_a_zone_takes_the_region_s_own() {
    for t in SlaDb::both().await {
        let received = utc(2025, 1, 15, 11, 18);
        t.routed(&routed("z-1", "41", "", "41-kcioko", "education.e-diary.access", true, received)).await;
        let clock = t.clock("z-1", ClockKind::Answer).await;
        assert_eq!(clock.time_zone, KAMCHATKA);
        assert_eq!(clock.due_at.with_timezone(&chrono_tz::Asia::Kamchatka).to_rfc3339(), "2025-01-25T23:59:59+12:00");
        t.drop().await;
    }
}

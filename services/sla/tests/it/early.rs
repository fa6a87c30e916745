//! Ticket events that arrive before the appeal's clock, on both databases: ticketing creates its
//! ticket from the same `appeal.routed`, so with replicas its status events often come first.
//! They are parked and applied, in order and once, when `appeal.routed` arms the clock.

use chrono::Duration;
use pos_platform::Envelope;
use pos_platform::parking;
use pos_proto::v1::events::{TicketAction, TicketReopened};
use pos_sla::consumer::{ReopenedHandler, StatusHandler};
use pos_sla::store::{ClockKind, State};

use crate::helpers::{SlaDb, routed, status, ts, utc};

const KAMCHATKA: &str = "Asia/Kamchatka";

async fn parked(t: &SlaDb) -> i64 {
    parking::waiting(&t.db).await.expect("waiting").iter().map(|w| w.events).sum()
}

#[tokio::test]
async fn status_changes_before_the_clock_are_applied_when_it_is_armed() {
    for t in SlaDb::both().await {
        let received = utc(2025, 1, 15, 11, 18);
        let mut assigned = status("s-1", "41", TicketAction::ExecutorAssigned, received + Duration::hours(2));
        assigned.assignee_id = "exec-1".into();
        assigned.execution_due = ts(utc(2025, 1, 20, 11, 59));
        let assigned = Envelope::new(&assigned, "41");
        let paused =
            Envelope::new(&status("s-1", "41", TicketAction::InformationRequested, received + Duration::days(1)), "41");
        let handler = StatusHandler(t.shared());
        t.handle(&handler, &assigned).await;
        t.handle(&handler, &paused).await;
        // The same message again (a redelivery to another replica): kept once.
        t.handle(&handler, &assigned).await;
        assert_eq!(parked(&t).await, 2, "{}", t.name());
        assert!(t.log_kinds("s-1").await.is_empty());

        t.routed(&routed("s-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        let answer = t.clock("s-1", ClockKind::Answer).await;
        let execution = t.clock("s-1", ClockKind::Execution).await;
        assert_eq!((answer.state, answer.ticket_id.as_str()), (State::Paused, "t-s-1"), "{}", t.name());
        assert_eq!((execution.state, execution.assignee_id.as_str()), (State::Paused, "exec-1"));
        // The end of the day the coordinator named.
        assert_eq!(execution.due_at, utc(2025, 1, 20, 11, 59) + chrono::Duration::seconds(59));
        assert_eq!(
            t.log_kinds("s-1").await,
            vec!["answer:armed", "execution:armed", "answer:paused", "execution:paused"],
            "in the order ticketing published them"
        );
        assert_eq!(parked(&t).await, 0);
        t.drop().await;
    }
}

#[tokio::test]
async fn a_reopened_ticket_before_the_clock_gets_its_round_when_it_is_armed() {
    for t in SlaDb::both().await {
        let received = utc(2025, 1, 15, 11, 18);
        let approved = Envelope::new(&status("r-1", "41", TicketAction::Approved, received + Duration::days(2)), "41");
        let reopened = TicketReopened {
            ticket_id: "t-r-1".into(),
            appeal_id: "r-1".into(),
            region_code: "41".into(),
            time_zone: KAMCHATKA.into(),
            review_round: 2,
            reopened_at: ts(utc(2025, 2, 3, 0, 0)),
            ..Default::default()
        };
        t.handle(&StatusHandler(t.shared()), &approved).await;
        t.handle(&ReopenedHandler(t.shared()), &Envelope::new(&reopened, "41")).await;
        assert_eq!(parked(&t).await, 2);

        t.routed(&routed("r-1", "41", KAMCHATKA, "41-kcioko", "education.e-diary.access", true, received)).await;
        let clock = t.clock("r-1", ClockKind::Answer).await;
        assert_eq!((clock.round, clock.state, clock.met), (2, State::Running, false), "{}", t.name());
        assert_eq!(t.log_kinds("r-1").await, vec!["answer:armed", "answer:met", "answer:armed"]);
        assert_eq!(parked(&t).await, 0);
        t.drop().await;
    }
}

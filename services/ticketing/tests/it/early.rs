//! Deadlines that arrive before their ticket, on both databases: the SLA service arms from the
//! same `appeal.routed` that creates the ticket, so with replicas its `sla.*` events often come
//! first. They are parked and applied when the ticket is created, once, through redeliveries,
//! reroutes and concurrent consumers.

use chrono::{DateTime, Duration, Utc};
use pos_platform::bus::{BusError, Delivery, Disposition, Envelope, QueueSpec, Settle};
use pos_platform::consumer::{self, Handler, Outcome};
use pos_platform::db::Db;
use pos_platform::parking;
use pos_proto::v1::events::{AppealRouted, SlaArmed, SlaClock, SlaDeadline, SlaOverdue};
use pos_ticketing::consumer::{AppealRoutedHandler, ROUTED_QUEUE, SLA_QUEUE, SlaEvent, SlaHandler};
use pos_ticketing::store::tickets;

use crate::helpers::{REGISTERED_AT, current, databases, outbox_count, release, routed};

/// The bus's side of a delivery, not needed here: the outcome is what the test reads.
struct Settled;

#[async_trait::async_trait]
impl Settle for Settled {
    async fn settle(self: Box<Self>, _: &Envelope, _: Disposition) -> Result<(), BusError> {
        Ok(())
    }
}

/// Delivers `envelope` to `handler` as a running consumer would: inbox, handler, commit.
async fn process<H: Handler>(db: &Db, queue: &str, handler: &H, envelope: &Envelope) -> Outcome {
    let spec = QueueSpec::for_events::<H::Event>(queue, &["*".to_owned()]);
    consumer::process(db, handler, &spec, Delivery::new(envelope.clone(), 0, Box::new(Settled))).await.expect("settled")
}

async fn sla(db: &Db, envelope: &Envelope) -> Outcome {
    process(db, SLA_QUEUE, &SlaHandler, envelope).await
}

async fn route(db: &Db, envelope: &Envelope) -> Outcome {
    process(db, ROUTED_QUEUE, &AppealRoutedHandler, envelope).await
}

fn registered() -> DateTime<Utc> {
    DateTime::from_timestamp(REGISTERED_AT, 0).expect("time")
}

/// The answer deadline of `appeal_id` at `organization_id`, as the SLA service publishes it
/// (the ticket id is unknown to it until ticketing reports one).
fn deadline(appeal_id: &str, organization_id: &str, due: DateTime<Utc>) -> SlaDeadline {
    SlaDeadline {
        appeal_id: appeal_id.into(),
        organization_id: organization_id.into(),
        region_code: "41".into(),
        clock: SlaClock::Answer as i32,
        due: Some(pos_proto::time::to_proto(due)),
        round: 1,
        ..Default::default()
    }
}

fn armed(deadline: SlaDeadline) -> Envelope {
    Envelope::new(&SlaArmed { deadline: Some(deadline), at: None }, "41")
}

fn overdue(deadline: SlaDeadline) -> Envelope {
    Envelope::new(&SlaOverdue { deadline: Some(deadline), at: None }, "41")
}

fn routed_envelope(routed: &AppealRouted) -> Envelope {
    Envelope::new(routed, "41")
}

async fn parked(db: &Db) -> i64 {
    parking::waiting(db).await.expect("waiting").iter().map(|w| w.events).sum()
}

#[tokio::test]
async fn a_deadline_before_its_ticket_is_applied_when_the_ticket_is_created() {
    for (db, _dir) in databases().await {
        let due = registered() + Duration::days(30);
        assert_eq!(sla(&db, &armed(deadline("a-1", "school-1", due))).await, Outcome::Done);
        assert_eq!(sla(&db, &overdue(deadline("a-1", "school-1", due))).await, Outcome::Done);
        assert!(tickets::get_by_appeal(&db, "a-1").await.expect("read").is_none());
        assert_eq!(parked(&db).await, 2, "kept until the ticket exists");

        assert_eq!(route(&db, &routed_envelope(&routed("a-1", "school-1", "citizen-1"))).await, Outcome::Done);
        let ticket = current(&db, "a-1").await;
        assert_eq!((ticket.answer_due, ticket.overdue), (Some(due), true), "applied in arrival order");
        assert_eq!(parked(&db).await, 0);
        release(db).await;
    }
}

#[tokio::test]
async fn events_delivered_twice_are_applied_once() {
    for (db, _dir) in databases().await {
        let due = registered() + Duration::days(30);
        let first = armed(deadline("a-1", "school-1", due));
        // The same deadline published again under another message id (an outbox replay).
        let again = armed(deadline("a-1", "school-1", due));
        assert_eq!(sla(&db, &first).await, Outcome::Done);
        assert_eq!(sla(&db, &first).await, Outcome::Duplicate);
        assert_eq!(parked(&db).await, 1, "a redelivery is not parked twice");
        assert_eq!(sla(&db, &again).await, Outcome::Done);
        let routed = routed_envelope(&routed("a-1", "school-1", "citizen-1"));
        assert_eq!(route(&db, &routed).await, Outcome::Done);
        assert_eq!(route(&db, &routed).await, Outcome::Duplicate);
        assert_eq!(sla(&db, &first).await, Outcome::Duplicate);
        assert_eq!(sla(&db, &again).await, Outcome::Duplicate);

        let ticket = current(&db, "a-1").await;
        assert_eq!((ticket.answer_due, ticket.overdue), (Some(due), false));
        assert_eq!(parked(&db).await, 0);
        assert_eq!(outbox_count(&db, "pos.v1.events.TicketStatusChanged").await, 1, "one ticket, created once");

        // Applying a parked event twice by hand (not through the inbox) still parks it once.
        let early = armed(deadline("a-2", "school-1", due));
        for _ in 0..2 {
            let mut tx = db.begin().await.expect("begin");
            consumer::deliver(&SlaHandler, &mut tx, &early).await.expect("handled");
            tx.commit().await.expect("commit");
        }
        assert_eq!(parked(&db).await, 1);
        release(db).await;
    }
}

#[tokio::test]
async fn a_reroute_gets_its_own_deadline_or_keeps_the_appeals() {
    for (db, _dir) in databases().await {
        let first_due = registered() + Duration::days(30);
        route(&db, &routed_envelope(&routed("a-1", "school-1", "citizen-1"))).await;
        sla(&db, &armed(deadline("a-1", "school-1", first_due))).await;
        let first = current(&db, "a-1").await;
        assert_eq!(first.answer_due, Some(first_due));

        // The new addressee's deadline overtakes the reroute; the SLA service still names the
        // first ticket. It waits for the new ticket and leaves the first one as it was.
        let second_due = registered() + Duration::days(45);
        let moved = SlaDeadline { ticket_id: first.id.clone(), ..deadline("a-1", "school-2", second_due) };
        assert_eq!(sla(&db, &armed(moved)).await, Outcome::Done);
        assert_eq!(current(&db, "a-1").await.answer_due, Some(first_due));
        assert_eq!(parked(&db).await, 1);
        route(&db, &routed_envelope(&routed("a-1", "school-2", "citizen-1"))).await;
        let second = current(&db, "a-1").await;
        assert_eq!((second.organization_id.as_str(), second.answer_due), ("school-2", Some(second_due)));
        let superseded = tickets::get(&db, &first.id).await.expect("read").expect("kept");
        assert_eq!(superseded.answer_due, Some(first_due));

        // A reroute whose deadline the SLA service keeps (no new sla.armed): the ticket shows it.
        sla(&db, &overdue(deadline("a-1", "school-2", second_due))).await;
        route(&db, &routed_envelope(&routed("a-1", "school-3", "citizen-1"))).await;
        let third = current(&db, "a-1").await;
        assert_eq!(
            (third.organization_id.as_str(), third.answer_due, third.overdue),
            ("school-3", Some(second_due), true)
        );
        assert_eq!(parked(&db).await, 0);
        release(db).await;
    }
}

/// Replicas: each appeal's deadline and its routing are handled at the same moment by two
/// consumers; whichever commits first, every ticket shows its deadline.
#[tokio::test]
async fn concurrent_consumers_never_lose_a_deadline() {
    for (db, _dir) in databases().await {
        let due = registered() + Duration::days(30);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let appeal_id = format!("a-{i:02}");
            let deadline = armed(deadline(&appeal_id, "school-1", due));
            let routed = routed_envelope(&routed(&appeal_id, "school-1", "citizen-1"));
            let (sla_db, routed_db) = (db.clone(), db.clone());
            tasks.push(tokio::spawn(async move { sla(&sla_db, &deadline).await }));
            tasks.push(tokio::spawn(async move { route(&routed_db, &routed).await }));
        }
        for task in tasks {
            assert_eq!(task.await.expect("task"), Outcome::Done);
        }
        for i in 0..40 {
            let ticket = current(&db, &format!("a-{i:02}")).await;
            assert_eq!(ticket.answer_due, Some(due), "{}", ticket.appeal_id);
        }
        assert_eq!(parked(&db).await, 0);
        release(db).await;
    }
}

#[test]
fn the_sla_consumer_binds_both_deadline_events() {
    use pos_platform::EventSet;
    assert_eq!(SlaEvent::EVENTS, &["sla.armed", "sla.overdue"]);
}

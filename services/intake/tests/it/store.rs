//! One contract suite for intake's store and event handling, run against PostgreSQL and SQLite.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use pos_intake::consumer::{ROUTED_QUEUE, RoutedHandler, STATUS_QUEUE, StatusHandler};
use pos_intake::masking::mask;
use pos_intake::store::{
    Applied, AttachmentRecord, AttachmentReference, NewAppeal, ReferenceKind, RegisterError, Registration,
    RoutingRecord, Store, apply_routing, apply_status,
};
use pos_platform::bus::{BusError, Delivery, Disposition, Envelope, QueueSpec, Settle};
use pos_platform::consumer::Outcome;
use pos_platform::db::{Db, from_micros, to_micros};
use pos_proto::v1::events::{AppealReceived, AppealRouted, TicketStatusChanged};
use pos_proto::v1::{Applicant, Folder, OrganizationRef, OrganizationType};
use prost::Name;
use sqlx::Row;

use pos_platform::consumer::process;

macro_rules! store_contract {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = pos_platform::testing::postgres_db("intake", &pos_intake::MIGRATIONS).await;
                    super::$case(db.clone()).await;
                    db.drop_schema().await.expect("schema dropped");
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (db, _dir) = pos_platform::testing::sqlite_db("intake", &pos_intake::MIGRATIONS).await;
                    super::$case(db).await;
                }
            )*
        }
    };
}

store_contract!(
    registers_and_replays,
    concurrent_duplicates_make_one_appeal,
    numbers_are_unique_under_concurrency,
    attachments_are_claimed_once_by_their_uploader,
    status_never_goes_backwards,
    redelivered_events_change_nothing,
    events_for_unknown_appeals_are_dead_lettered,
    orphan_attachments_are_found_and_deleted,
    referenced_attachments_survive_the_sweep,
);

fn now() -> DateTime<Utc> {
    from_micros(to_micros(Utc::now()))
}

fn new_appeal(subject: &str, request_id: &str) -> NewAppeal {
    let text = "СНИЛС 123-345-678 90, паспорт 1234 123456".to_owned();
    NewAppeal {
        id: uuid::Uuid::now_v7().to_string(),
        submitted_by: subject.into(),
        request_id: request_id.into(),
        request_sha256: "a".repeat(64),
        registered_at: now(),
        source: 1,
        applicant: Applicant {
            full_name: "Иванов".into(),
            email: "i@example.ru".into(),
            phone: String::new(),
            account_id: subject.into(),
        },
        region_code: "41".into(),
        category_id: "c".into(),
        subcategory_id: "s".into(),
        fact_id: "f".into(),
        names: Default::default(),
        picked_organization_id: String::new(),
        public_text: mask(&text),
        original_text: text,
        problem_address: String::new(),
        attachment_ids: Vec::new(),
        public: false,
        portal_number: String::new(),
    }
}

fn attachment(uploaded_by: &str) -> AttachmentRecord {
    AttachmentRecord {
        id: uuid::Uuid::now_v7().to_string(),
        uploaded_by: uploaded_by.into(),
        file_name: "scan.pdf".into(),
        content_type: "application/pdf".into(),
        size: 10,
        sha256: "b".repeat(64),
        object_path: "2025/01/15/x".into(),
        uploaded_at: now(),
        appeal_id: None,
        uploaded_for_organization: String::new(),
    }
}

async fn count(db: &Db, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(db.pool()).await.unwrap()
}

async fn registers_and_replays(db: Db) {
    let store = Store::new(db.clone());
    let appeal = new_appeal("esia-1", "r-1");
    let Registration::Created(first) = store.register(&appeal).await.unwrap() else { panic!("first registration") };
    assert_eq!(first.appeal_id, appeal.id);
    assert_eq!(first.number, 250_000_001, "numbers start at 250000001");
    assert_eq!(first.registered_at, appeal.registered_at);

    // The same key again, even with another appeal id: the first answer, nothing new.
    let again = NewAppeal { id: uuid::Uuid::now_v7().to_string(), ..appeal.clone() };
    assert_eq!(
        store.register(&again).await.unwrap(),
        Registration::Existing { registered: first.clone(), request_sha256: appeal.request_sha256.clone() }
    );
    assert_eq!(store.find_registration("esia-1", "r-1").await.unwrap(), Some((first.clone(), "a".repeat(64))));
    // Keys are per caller: another subject's "r-1" is a different appeal.
    let Registration::Created(other) = store.register(&new_appeal("esia-2", "r-1")).await.unwrap() else {
        panic!("another caller's key")
    };
    assert_eq!(other.number, first.number + 1);
    assert_eq!(count(&db, "appeals").await, 2);

    // The outbox holds AppealReceived with the masked text only; the original stays in the row.
    let rows = sqlx::query("SELECT routing_key, type_name, payload, headers FROM outbox ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let row = &rows[0];
    assert_eq!(row.get::<String, _>("routing_key"), "appeal.received.41");
    assert_eq!(row.get::<String, _>("type_name"), AppealReceived::full_name());
    assert!(row.get::<String, _>("headers").contains(&appeal.id));
    let event = <AppealReceived as prost::Message>::decode(row.get::<Vec<u8>, _>("payload").as_slice()).unwrap();
    assert_eq!(event.appeal_id, appeal.id);
    assert_eq!(event.number, first.number);
    assert_eq!(event.public_text, "СНИЛС ***-***-*** **, паспорт **** ******");
    let stored = store.appeal(&appeal.id).await.unwrap().unwrap();
    assert_eq!(stored.public_text, event.public_text);
    assert_eq!(stored.status, "registered");
    assert!(stored.routing.is_none());
    let original: String = sqlx::query_scalar("SELECT original_text FROM appeals WHERE id = $1")
        .bind(&appeal.id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(original, appeal.original_text);
}

async fn concurrent_duplicates_make_one_appeal(db: Db) {
    let store = Store::new(db.clone());
    let base = new_appeal("esia-1", "same");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let appeal = NewAppeal { id: uuid::Uuid::now_v7().to_string(), ..base.clone() };
            tokio::spawn(async move { store.register(&appeal).await.unwrap() })
        })
        .collect();
    let mut created = Vec::new();
    let mut answers = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Registration::Created(registered) => {
                created.push(registered.clone());
                answers.push(registered);
            }
            Registration::Existing { registered, .. } => answers.push(registered),
        }
    }
    assert_eq!(created.len(), 1, "exactly one submission creates the appeal");
    assert!(answers.iter().all(|a| a == &created[0]), "all ten get the same answer");
    assert_eq!(count(&db, "appeals").await, 1);
    assert_eq!(count(&db, "outbox").await, 1);
}

async fn numbers_are_unique_under_concurrency(db: Db) {
    let store = Store::new(db.clone());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                match store.register(&new_appeal("esia-1", &format!("r-{i}"))).await.unwrap() {
                    Registration::Created(registered) => registered.number,
                    Registration::Existing { .. } => panic!("distinct keys"),
                }
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 20);
    assert!(numbers[0] >= 250_000_001);
}

async fn attachments_are_claimed_once_by_their_uploader(db: Db) {
    let store = Store::new(db.clone());
    let mine = attachment("esia-1");
    store.insert_attachment(&mine).await.unwrap();
    assert_eq!(store.attachments(std::slice::from_ref(&mine.id)).await.unwrap(), vec![mine.clone()]);

    // Another caller cannot attach it.
    let theirs = NewAppeal { attachment_ids: vec![mine.id.clone()], ..new_appeal("esia-2", "r-x") };
    assert!(matches!(store.register(&theirs).await, Err(RegisterError::AttachmentTaken { index: 0 })));
    // The refused submission left nothing behind, its key included.
    assert_eq!(count(&db, "appeals").await, 0);
    assert_eq!(count(&db, "idempotency_keys").await, 0);
    assert_eq!(count(&db, "outbox").await, 0);

    let first = NewAppeal { attachment_ids: vec![mine.id.clone()], ..new_appeal("esia-1", "r-1") };
    assert!(matches!(store.register(&first).await.unwrap(), Registration::Created(_)));
    let second = NewAppeal { attachment_ids: vec![mine.id.clone()], ..new_appeal("esia-1", "r-2") };
    assert!(matches!(store.register(&second).await, Err(RegisterError::AttachmentTaken { index: 0 })));

    let stored = store.appeal(&first.id).await.unwrap().unwrap();
    assert_eq!(stored.attachments.len(), 1);
    assert_eq!(stored.attachments[0].appeal_id.as_deref(), Some(first.id.as_str()));
}

fn routing(organization: &str, at: DateTime<Utc>) -> RoutingRecord {
    RoutingRecord {
        organization: OrganizationRef {
            id: organization.into(),
            short_name: format!("{organization} short"),
            r#type: OrganizationType::School as i32,
            region_code: "41".into(),
        },
        period_days: 10,
        working_days: false,
        fast_track: true,
        delegated_by_auto_rule: false,
        explanation: "the school the applicant picked".into(),
        routed_at: at,
    }
}

async fn status_never_goes_backwards(db: Db) {
    let store = Store::new(db.clone());
    let appeal = new_appeal("esia-1", "r-1");
    store.register(&appeal).await.unwrap();
    let t0 = appeal.registered_at;

    // The ticket's status arrives before the routing decision that preceded it.
    let mut tx = db.begin().await.unwrap();
    assert_eq!(apply_status(&mut tx, &appeal.id, "new", t0 + Duration::seconds(2)).await.unwrap(), Applied::Changed);
    assert_eq!(
        apply_routing(&mut tx, &appeal.id, &routing("school-1", t0 + Duration::seconds(1))).await.unwrap(),
        Applied::Changed,
        "the routing is recorded"
    );
    tx.commit().await.unwrap();
    let view = store.appeal(&appeal.id).await.unwrap().unwrap();
    assert_eq!(view.status, "new", "the older routed status does not replace the ticket's");
    assert_eq!(view.status_changed_at, t0 + Duration::seconds(2));
    let shown = view.routing.expect("routing shown");
    assert_eq!(shown.organization.id, "school-1");
    assert!(shown.fast_track);
    assert_eq!(shown.routed_at, t0 + Duration::seconds(1));

    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        apply_status(&mut tx, &appeal.id, "executor assigned", t0 + Duration::seconds(5)).await.unwrap(),
        Applied::Changed
    );
    assert_eq!(apply_status(&mut tx, &appeal.id, "in work", t0 + Duration::seconds(3)).await.unwrap(), Applied::Stale);
    // An older routing decision does not replace a newer one either.
    assert_eq!(
        apply_routing(&mut tx, &appeal.id, &routing("school-0", t0 + Duration::milliseconds(500))).await.unwrap(),
        Applied::Stale
    );
    tx.commit().await.unwrap();
    let view = store.appeal(&appeal.id).await.unwrap().unwrap();
    assert_eq!(view.status, "executor assigned");
    assert_eq!(view.routing.unwrap().organization.id, "school-1");

    // A redirect: a newer routing decision replaces the older and shows "routed" again.
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        apply_routing(&mut tx, &appeal.id, &routing("school-2", t0 + Duration::seconds(9))).await.unwrap(),
        Applied::Changed
    );
    tx.commit().await.unwrap();
    let view = store.appeal(&appeal.id).await.unwrap().unwrap();
    assert_eq!((view.status.as_str(), view.routing.unwrap().organization.id.as_str()), ("routed", "school-2"));
}

/// Settles by remembering the disposition.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Disposition>>>);

#[async_trait]
impl Settle for Recorder {
    async fn settle(self: Box<Self>, _envelope: &Envelope, disposition: Disposition) -> Result<(), BusError> {
        self.0.lock().unwrap().push(disposition);
        Ok(())
    }
}

fn routed_event(appeal_id: &str, at: DateTime<Utc>) -> Envelope {
    let event = AppealRouted {
        appeal_id: appeal_id.into(),
        organization: Some(routing("school-1", at).organization),
        period_days: 10,
        fast_track: true,
        explanation: "picked".into(),
        routed_at: Some(pos_proto::time::to_proto(at)),
        ..AppealRouted::default()
    };
    Envelope::new(&event, "41").with_appeal(appeal_id)
}

fn status_event(appeal_id: &str, status: &str, at: DateTime<Utc>) -> Envelope {
    let event = TicketStatusChanged {
        ticket_id: "t-1".into(),
        appeal_id: appeal_id.into(),
        organization_id: "school-1".into(),
        from_folder: Folder::New as i32,
        to_folder: Folder::InWork as i32,
        status: status.into(),
        at: Some(pos_proto::time::to_proto(at)),
        region_code: "41".into(),
        ..TicketStatusChanged::default()
    };
    Envelope::new(&event, "41").with_appeal(appeal_id)
}

/// Delivers to the consumer of the envelope's event, as its queue would.
async fn deliver(db: &Db, envelope: &Envelope) -> (Outcome, Disposition) {
    let recorder = Recorder::default();
    let every_region = ["*".to_owned()];
    let delivery = Delivery::new(envelope.clone(), 0, Box::new(recorder.clone()));
    let outcome = if envelope.is::<AppealRouted>() {
        let spec = QueueSpec::for_events::<AppealRouted>(ROUTED_QUEUE, &every_region);
        process(db, &RoutedHandler, &spec, delivery).await.expect("settled")
    } else {
        let spec = QueueSpec::for_events::<TicketStatusChanged>(STATUS_QUEUE, &every_region);
        process(db, &StatusHandler, &spec, delivery).await.expect("settled")
    };
    let disposition = recorder.0.lock().unwrap().pop().expect("settled");
    (outcome, disposition)
}

async fn redelivered_events_change_nothing(db: Db) {
    let store = Store::new(db.clone());
    let appeal = new_appeal("esia-1", "r-1");
    store.register(&appeal).await.unwrap();
    let t0 = appeal.registered_at;

    let in_work = status_event(&appeal.id, "in work", t0 + Duration::seconds(3));
    assert_eq!(deliver(&db, &in_work).await, (Outcome::Done, Disposition::Ack));
    let routed = routed_event(&appeal.id, t0 + Duration::seconds(1));
    assert_eq!(deliver(&db, &routed).await, (Outcome::Done, Disposition::Ack));
    let before = store.appeal(&appeal.id).await.unwrap().unwrap();
    assert_eq!(before.status, "in work");

    // The same messages again: acknowledged as duplicates, the view untouched.
    assert_eq!(deliver(&db, &in_work).await, (Outcome::Duplicate, Disposition::Ack));
    assert_eq!(deliver(&db, &routed).await, (Outcome::Duplicate, Disposition::Ack));
    assert_eq!(store.appeal(&appeal.id).await.unwrap().unwrap(), before);
}

async fn events_for_unknown_appeals_are_dead_lettered(db: Db) {
    let unknown = uuid::Uuid::now_v7().to_string();
    let (outcome, disposition) = deliver(&db, &routed_event(&unknown, Utc::now())).await;
    assert_eq!(outcome, Outcome::DeadLettered);
    let Disposition::DeadLetter { reason } = disposition else { panic!("dead-lettered") };
    assert!(reason.contains("never registered") && reason.contains(&unknown), "{reason}");

    let (outcome, _) = deliver(&db, &status_event(&unknown, "new", Utc::now())).await;
    assert_eq!(outcome, Outcome::DeadLettered);
    // Nothing was recorded in the inbox for them: a replay after a fix would be handled.
    assert_eq!(count(&db, "inbox").await, 0);
}

async fn orphan_attachments_are_found_and_deleted(db: Db) {
    let store = Store::new(db.clone());
    let old = AttachmentRecord { uploaded_at: now() - Duration::days(2), ..attachment("esia-1") };
    let fresh = attachment("esia-1");
    let claimed = AttachmentRecord { uploaded_at: now() - Duration::days(2), ..attachment("esia-1") };
    for a in [&old, &fresh, &claimed] {
        store.insert_attachment(a).await.unwrap();
    }
    let appeal = NewAppeal { attachment_ids: vec![claimed.id.clone()], ..new_appeal("esia-1", "r-1") };
    store.register(&appeal).await.unwrap();

    let orphans = store.unattached_before(now() - Duration::days(1), 100).await.unwrap();
    assert_eq!(orphans.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [old.id.as_str()]);
    assert!(store.delete_unattached(&old.id).await.unwrap());
    assert!(!store.delete_unattached(&claimed.id).await.unwrap(), "an attached file is never deleted");
    assert_eq!(count(&db, "attachments").await, 2);
}

/// An attachment referred to only by an incident (or an answer) is no orphan, however old.
async fn referenced_attachments_survive_the_sweep(db: Db) {
    use pos_intake::attachments::{AttachmentStorage, sweep_orphans};
    let store = Store::new(db.clone());
    let storage = AttachmentStorage::new(std::sync::Arc::new(object_store::memory::InMemory::new()), 1024);
    let earlier = now() - Duration::seconds(1);
    let screenshot = AttachmentRecord {
        uploaded_at: earlier,
        uploaded_for_organization: "school-41-1".into(),
        ..attachment("coordinator-1")
    };
    let answer = AttachmentRecord { uploaded_at: earlier, ..attachment("coordinator-1") };
    let orphan = AttachmentRecord { uploaded_at: earlier, ..attachment("coordinator-1") };
    for a in [&screenshot, &answer, &orphan] {
        store.insert_attachment(a).await.unwrap();
    }
    let appeal_id = uuid::Uuid::now_v7().to_string();
    let reference = |attachment_id: &str, kind| AttachmentReference {
        attachment_id: attachment_id.into(),
        kind,
        object_id: uuid::Uuid::now_v7().to_string(),
        appeal_id: appeal_id.clone(),
        organization_id: "school-41-1".into(),
        claimed_by: "coordinator-1".into(),
        claimed_at: now(),
    };
    let incident = reference(&screenshot.id, ReferenceKind::Incident);
    store.claim(&[incident.clone(), reference(&answer.id, ReferenceKind::Answer)]).await.unwrap();
    // Claimed again (a retried command): one reference still.
    store.claim(std::slice::from_ref(&incident)).await.unwrap();
    assert_eq!(store.references(&screenshot.id).await.unwrap(), [incident]);

    assert_eq!(sweep_orphans(&store, &storage, std::time::Duration::ZERO).await.unwrap(), 1);
    let left: Vec<String> = store
        .attachments(&[screenshot.id.clone(), answer.id.clone(), orphan.id.clone()])
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert!(left.contains(&screenshot.id) && left.contains(&answer.id) && !left.contains(&orphan.id), "{left:?}");
    let kept = store.attachments(std::slice::from_ref(&screenshot.id)).await.unwrap();
    assert_eq!(kept[0].uploaded_for_organization, "school-41-1");
}

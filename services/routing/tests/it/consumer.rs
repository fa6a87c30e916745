//! `appeal.received` → `appeal.routed`: the full flow over the bus, idempotency, and appeals
//! that cannot be routed as asked but are never lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use pos_platform::bus::{BusError, Delivery, Disposition, Settle};
use pos_platform::cache::MemoryCache;
use pos_platform::consumer::{Outcome, process};
use pos_platform::db::Db;
use pos_platform::{Envelope, QueueSpec};
use pos_proto::v1 as pb;
use pos_proto::v1::events::{AppealReceived, AppealRouted};
use pos_routing::consumer::{AppealReceivedHandler, QUEUE};
use pos_routing::model::{AutoRule, Scope};
use pos_routing::snapshot::Snapshots;
use pos_routing::store;
use pos_routing::{OnConflict, RoutingConfig, Seed, load_seed};
use prost::{Message, Name};
use sqlx::Row;

use crate::helpers::spawn_app;

fn appeal(id: &str, region: &str, fact: &str, picked: &str) -> AppealReceived {
    AppealReceived {
        appeal_id: id.into(),
        number: 251819982,
        registered_at: Some(prost_types::Timestamp { seconds: 1_736_943_480, nanos: 0 }),
        source: pb::Source::PortalWidget as i32,
        applicant: Some(pb::Applicant {
            full_name: "Иванова Мария Петровна".into(),
            email: "applicant@example.org".into(),
            phone: "+79990000000".into(),
            account_id: "esia-1".into(),
        }),
        region_code: region.into(),
        category_id: "education".into(),
        subcategory_id: "education.e-diary".into(),
        fact_id: fact.into(),
        picked_organization_id: picked.into(),
        public_text: "Здравствуйте. Прошу предоставить доступ к электронному дневнику".into(),
        problem_address: "г Петропавловск-Камчатский".into(),
        attachment_ids: vec![],
        public: false,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_received_appeal_is_routed_over_the_bus_with_everything_downstream_needs() {
    let app = spawn_app().await;
    // The consumer's queue exists already: the server serves only once it does.
    let watcher = QueueSpec::new("test.appeal-routed", &["appeal.routed.#"]);
    let mut routed_stream = app.bus().consume(&watcher).await.unwrap();

    let received = appeal("a-1", "41", "education.e-diary.access", "");
    app.bus().publish(&Envelope::new(&received, "41").with_appeal("a-1")).await.unwrap();

    let delivery = tokio::time::timeout(Duration::from_secs(20), routed_stream.next())
        .await
        .expect("appeal.routed within 20 s")
        .expect("a delivery");
    let envelope = delivery.envelope.clone();
    delivery.settle(Disposition::Ack).await.unwrap();
    assert_eq!(envelope.routing_key, "appeal.routed.41");
    assert_eq!(envelope.appeal_id(), Some("a-1"));
    let routed: AppealRouted = envelope.decode().unwrap();
    let organization = routed.organization.clone().unwrap();
    assert_eq!(organization.id, "41-kcioko");
    assert_eq!(routed.time_zone, "Asia/Kamchatka");
    assert_eq!((routed.period_days, routed.working_days, routed.fast_track), (10, false, true));
    assert!(!routed.delegated_by_auto_rule);
    assert_eq!(routed.appeal_id, "a-1");
    assert_eq!(routed.number, received.number);
    assert_eq!(routed.registered_at, received.registered_at);
    assert_eq!(routed.source, received.source);
    assert_eq!(routed.region_code, "41");
    assert_eq!((routed.category_id.as_str(), routed.subcategory_id.as_str()), ("education", "education.e-diary"));
    assert_eq!(routed.fact_id, "education.e-diary.access");
    assert_eq!(routed.public_text, received.public_text);
    assert_eq!(routed.problem_address, received.problem_address);
    assert_eq!(routed.applicant, received.applicant);
    assert!(routed.routed_at.is_some());
    assert!(
        routed.explanation.ends_with(
            "Обращение направлено в КГАУ \"КАМЧАТСКИЙ ЦЕНТР ИНФОРМАТИЗАЦИИ И ОЦЕНКИ КАЧЕСТВА ОБРАЗОВАНИЯ\"."
        ),
        "{}",
        routed.explanation
    );

    let mut conn = app.db.pool().acquire().await.unwrap();
    let decision = pos_routing::store::decision(&mut conn, "a-1").await.unwrap().expect("decision recorded");
    assert_eq!(decision.organization_id, "41-kcioko");
    assert_eq!(decision.message_id, app_message_id(&app.db, "a-1").await);
    drop(conn);
    app.stop().await;
}

async fn app_message_id(db: &Db, appeal_id: &str) -> String {
    sqlx::query("SELECT message_id FROM routing_decisions WHERE appeal_id = $1")
        .bind(appeal_id)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get::<String, _>("message_id")
}

/// Settles into a list, so that a test can see what the consumer decided.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Disposition>>>);

#[async_trait]
impl Settle for Recorded {
    async fn settle(self: Box<Self>, _envelope: &Envelope, disposition: Disposition) -> Result<(), BusError> {
        self.0.lock().unwrap().push(disposition);
        Ok(())
    }
}

/// The consumer without a server: a seeded database, a handler, and deliveries made by hand.
struct Harness {
    db: Db,
    handler: AppealReceivedHandler,
    spec: QueueSpec,
    settled: Recorded,
}

impl Harness {
    async fn new(db: Db) -> Harness {
        load_seed(&db, &Seed::embedded().unwrap(), OnConflict::Keep).await.unwrap();
        let snapshots = Arc::new(Snapshots::new(Arc::new(MemoryCache::new()), Duration::from_secs(60)));
        Harness {
            db,
            handler: AppealReceivedHandler::new(snapshots, Arc::new(RoutingConfig::default())),
            spec: QueueSpec::for_events::<AppealReceived>(QUEUE, &["*".to_owned()]),
            settled: Recorded::default(),
        }
    }

    async fn deliver(&self, envelope: &Envelope) -> Outcome {
        let delivery = Delivery::new(envelope.clone(), 0, Box::new(self.settled.clone()));
        process(&self.db, &self.handler, &self.spec, delivery).await.expect("settled")
    }

    /// The routed events in the outbox, with their routing keys.
    async fn routed(&self) -> Vec<(String, AppealRouted)> {
        sqlx::query("SELECT routing_key, type_name, payload FROM outbox ORDER BY id")
            .fetch_all(self.db.pool())
            .await
            .unwrap()
            .into_iter()
            .map(|row| {
                assert_eq!(row.get::<String, _>("type_name"), AppealRouted::full_name());
                let payload: Vec<u8> = row.get("payload");
                (row.get("routing_key"), AppealRouted::decode(payload.as_slice()).unwrap())
            })
            .collect()
    }

    async fn decisions(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM routing_decisions").fetch_one(self.db.pool()).await.unwrap()
    }

    async fn route(&self, appeal: &AppealReceived) -> AppealRouted {
        let region = if appeal.region_code.is_empty() { "00" } else { appeal.region_code.as_str() };
        let outcome = self.deliver(&Envelope::new(appeal, region).with_appeal(&appeal.appeal_id)).await;
        assert_eq!(outcome, Outcome::Done);
        self.routed().await.into_iter().map(|(_, r)| r).find(|r| r.appeal_id == appeal.appeal_id).expect("routed")
    }
}

async fn postgres() -> Db {
    pos_platform::testing::postgres_db("routing", &pos_routing::MIGRATIONS).await
}

#[tokio::test]
async fn the_same_appeal_twice_is_routed_once() {
    let harness = Harness::new(postgres().await).await;
    let envelope = Envelope::new(&appeal("a-1", "41", "education.e-diary.access", ""), "41").with_appeal("a-1");
    assert_eq!(harness.deliver(&envelope).await, Outcome::Done);
    // Redelivered: the inbox knows the message.
    assert_eq!(harness.deliver(&envelope).await, Outcome::Duplicate);
    // Republished under a new message id: the decision table knows the appeal.
    let again = Envelope::new(&appeal("a-1", "41", "education.e-diary.access", ""), "41").with_appeal("a-1");
    assert_ne!(again.message_id, envelope.message_id);
    assert_eq!(harness.deliver(&again).await, Outcome::Done);
    assert_eq!(harness.decisions().await, 1);
    assert_eq!(harness.routed().await.len(), 1);
    assert!(harness.settled.0.lock().unwrap().iter().all(|d| *d == Disposition::Ack));
    harness.db.drop_schema().await.unwrap();
}

#[tokio::test]
async fn appeals_that_cannot_be_routed_as_asked_still_reach_a_cabinet_with_the_reason() {
    let harness = Harness::new(postgres().await).await;

    // A fact routing does not know: the region's cabinet, standard period.
    let routed = harness.route(&appeal("unknown-fact", "41", "no-such-fact", "")).await;
    assert_eq!(routed.organization.as_ref().unwrap().id, "cabinet-41");
    assert_eq!((routed.period_days, routed.fast_track), (30, false));
    assert_eq!(routed.time_zone, "Asia/Kamchatka");
    assert!(routed.explanation.contains("Факта [no-such-fact] нет в классификаторе"), "{}", routed.explanation);
    assert!(
        routed.explanation.contains("кабинет региона «Камчатский край»: «ЦУР Камчатского края»"),
        "{}",
        routed.explanation
    );
    assert!(
        routed.explanation.ends_with("Ошибки в обращении: факта [no-such-fact] нет в классификаторе."),
        "{}",
        routed.explanation
    );

    // A region routing does not know: the platform's fallback, in Moscow time.
    let routed = harness.route(&appeal("unknown-region", "42x", "education.e-diary.access", "")).await;
    assert_eq!(routed.organization.as_ref().unwrap().id, "mintsifry-sc");
    assert_eq!(routed.time_zone, "Europe/Moscow");
    assert!(
        routed.explanation.contains(
            "Региона [42x] нет в справочнике; обращение рассматривает резервный кабинет платформы «Ситуационный центр \
             Минцифры России»"
        ),
        "{}",
        routed.explanation
    );

    // A college picked for a school fact: the region's cabinet, and why.
    let routed = harness
        .route(&appeal("wrong-type", "41", "edu-records.documents.school-certificate-missing", "41-college-polytech"))
        .await;
    assert_eq!(routed.organization.as_ref().unwrap().id, "cabinet-41");
    assert_eq!(routed.period_days, 2, "the fact's period still holds");
    assert!(
        routed
            .explanation
            .contains("но заявитель выбрал КГПОАУ «Камчатский политехнический техникум» — организацию типа «колледж»"),
        "{}",
        routed.explanation
    );
    assert!(
        routed.explanation.ends_with(
            "Ошибки в обращении: факт относится к подкатегории «Проблемы с документами об образовании в личном \
             кабинете на портале Госуслуг», а указана подкатегория «Электронный дневник»; выбрана организация КГПОАУ \
             «Камчатский политехнический техникум» типа «колледж», а факт требует организацию типа «школа»."
        ),
        "{}",
        routed.explanation
    );

    // A school that is not connected: its department answers.
    let routed = harness
        .route(&appeal("offline", "41", "edu-records.documents.school-certificate-missing", "41-school-pk-33"))
        .await;
    assert_eq!(routed.organization.as_ref().unwrap().id, "41-uo-petropavlovsk");
    assert!(routed.explanation.contains("не подключена к платформе"), "{}", routed.explanation);

    assert_eq!(harness.decisions().await, 4);
    assert!(harness.settled.0.lock().unwrap().iter().all(|d| *d == Disposition::Ack));
    harness.db.drop_schema().await.unwrap();
}

#[tokio::test]
async fn the_event_is_keyed_and_timed_by_the_addressees_region() {
    let harness = Harness::new(postgres().await).await;
    // An applicant in Kamchatka whose school is in Tatarstan.
    let routed = harness
        .route(&appeal("cross", "41", "edu-records.documents.school-certificate-missing", "16-school-kazan-131"))
        .await;
    assert_eq!(routed.organization.as_ref().unwrap().id, "16-school-kazan-131");
    assert_eq!(routed.time_zone, "Europe/Moscow");
    assert_eq!(routed.region_code, "41", "the applicant's region stays on the appeal");
    // Рособрнадзор has no region: the applicant's zone and region key.
    let routed = harness.route(&appeal("federal", "41", "edu-records.documents.other", "")).await;
    assert_eq!(routed.organization.as_ref().unwrap().id, "rosobrnadzor");
    assert_eq!(routed.time_zone, "Asia/Kamchatka");
    let keys: Vec<String> = harness.routed().await.into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, ["appeal.routed.16", "appeal.routed.41"]);
    harness.db.drop_schema().await.unwrap();
}

#[tokio::test]
async fn only_an_unreadable_payload_is_poison() {
    let harness = Harness::new(postgres().await).await;
    let mut garbage = Envelope::new(&appeal("x", "41", "education.e-diary.access", ""), "41");
    garbage.payload = bytes::Bytes::from_static(&[0xff, 0xff, 0xff]);
    assert_eq!(harness.deliver(&garbage).await, Outcome::DeadLettered);
    let nameless = Envelope::new(&appeal("", "41", "education.e-diary.access", ""), "41");
    assert_eq!(harness.deliver(&nameless).await, Outcome::DeadLettered);
    assert_eq!(harness.decisions().await, 0);
    assert!(harness.routed().await.is_empty());
    assert!(matches!(
        harness.settled.0.lock().unwrap()[..],
        [Disposition::DeadLetter { .. }, Disposition::DeadLetter { .. }]
    ));
    harness.db.drop_schema().await.unwrap();
}

#[tokio::test]
async fn the_consumer_works_the_same_on_sqlite() {
    let (db, _dir) = pos_platform::testing::sqlite_db("routing", &pos_routing::MIGRATIONS).await;
    let harness = Harness::new(db).await;
    let routed = harness.route(&appeal("s-1", "41", "education.e-diary.access", "")).await;
    assert_eq!(routed.organization.as_ref().unwrap().id, "41-kcioko");
    let envelope = Envelope::new(&appeal("s-1", "41", "education.e-diary.access", ""), "41").with_appeal("s-1");
    assert_eq!(harness.deliver(&envelope).await, Outcome::Done);
    assert_eq!(harness.decisions().await, 1);
    assert_eq!(harness.routed().await.len(), 1);
}

/// The applicant and the addressee's staff read the published explanation: an auto-rule shows
/// there only as whose rule sent the appeal where. Its id and executor travel as the event's own
/// fields, for ticketing to assign; the full reasons stay in the stored decision.
#[tokio::test]
async fn a_delegation_is_published_without_the_rules_details() {
    let harness = Harness::new(postgres().await).await;
    let mut tx = harness.db.begin().await.unwrap();
    let rule = AutoRule {
        id: "kcioko-passwords".into(),
        organization_id: "41-kcioko".into(),
        priority: 1,
        fact_id: String::new(),
        keywords: vec!["дневник".into()],
        target_organization_id: "41-kcioko".into(),
        target_executor_id: "executor-17".into(),
        active: true,
    };
    store::upsert_auto_rule(&mut tx, &rule).await.unwrap();
    store::bump(&mut tx, Scope::Directory).await.unwrap();
    tx.commit().await.unwrap();

    let routed = harness.route(&appeal("delegated", "41", "education.e-diary.access", "")).await;
    assert!(routed.delegated_by_auto_rule);
    assert_eq!((routed.auto_rule_id.as_str(), routed.target_executor_id.as_str()), ("kcioko-passwords", "executor-17"));
    assert!(
        routed.explanation.contains(
            "По авто-правилу организации КГАУ \"КАМЧАТСКИЙ ЦЕНТР ИНФОРМАТИЗАЦИИ И ОЦЕНКИ \
             КАЧЕСТВА ОБРАЗОВАНИЯ\" обращение передано её исполнителю"
        ),
        "{}",
        routed.explanation
    );
    for secret in ["kcioko-passwords", "executor-17", "«дневник»", "приоритет"] {
        assert!(!routed.explanation.contains(secret), "{secret}: {}", routed.explanation);
    }
    let mut conn = harness.db.pool().acquire().await.unwrap();
    let stored = pos_routing::store::decision(&mut conn, "delegated").await.unwrap().expect("decision recorded");
    let step = stored.steps.iter().find(|s| s.auto_rule.is_some()).expect("the rule's step");
    assert!(step.reason.contains("[kcioko-passwords]") && step.reason.contains("исполнитель [executor-17]"));
    drop(conn);
    harness.db.drop_schema().await.unwrap();
}

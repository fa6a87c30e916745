//! The store's contract suite: every test runs against PostgreSQL and SQLite.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use pos_platform::cache::MemoryCache;
use pos_platform::db::Db;
use pos_routing::model::{Addressee, AutoRule, OrgType, Scope};
use pos_routing::resolve::{RuleStep, Step, StepRule};
use pos_routing::snapshot::Snapshots;
use pos_routing::store::{self, StoredDecision};
use pos_routing::{OnConflict, Seed, load_seed};

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = pos_platform::testing::postgres_db("routing", &pos_routing::MIGRATIONS).await;
                    super::$name(&db).await;
                    db.drop_schema().await.unwrap();
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (db, _dir) = pos_platform::testing::sqlite_db("routing", &pos_routing::MIGRATIONS).await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}

contract!(
    seeding_twice_duplicates_nothing,
    snapshots_round_trip_every_field,
    auto_rules_are_saved_ordered_and_deleted,
    a_decision_is_recorded_once,
    versions_only_grow_and_snapshots_follow_them,
);

async fn count(db: &Db, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(db.pool()).await.unwrap()
}

async fn seeding_twice_duplicates_nothing(db: &Db) {
    let mut conn = db.pool().acquire().await.unwrap();
    assert!(store::is_empty(&mut conn).await.unwrap());
    let seed = Seed::embedded().unwrap();
    let first = load_seed(db, &seed, OnConflict::Keep).await.unwrap();
    assert_eq!(first.regions, 89);
    assert_eq!(first.facts, 13);
    assert_eq!(first.organizations, seed.organizations.len());
    let counts = [count(db, "regions").await, count(db, "organizations").await, count(db, "facts").await];

    let second = load_seed(db, &seed, OnConflict::Keep).await.unwrap();
    assert_eq!(second.total(), 0, "rows that exist are kept");
    let overwrite = load_seed(db, &seed, OnConflict::Update).await.unwrap();
    assert_eq!(overwrite.total(), first.total(), "an overwrite rewrites every row");
    assert_eq!(counts, [count(db, "regions").await, count(db, "organizations").await, count(db, "facts").await]);
    assert!(!store::is_empty(&mut conn).await.unwrap());
}

async fn snapshots_round_trip_every_field(db: &Db) {
    let seed = Seed::embedded().unwrap();
    load_seed(db, &seed, OnConflict::Keep).await.unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    let (classifier_version, directory_version) = store::versions(&mut conn).await.unwrap();
    let classifier = store::load_classifier(&mut conn, classifier_version).await.unwrap();
    assert_eq!(classifier.categories, seed.categories, "in seed order");
    assert_eq!(classifier.subcategories, seed.subcategories);
    assert_eq!(classifier.facts, seed.facts);
    let diary = classifier.facts.iter().find(|f| f.id == "education.e-diary.access").unwrap();
    assert_eq!(diary.addressee, Addressee::Regional { organization_type: OrgType::RegionalCenter });
    assert!(diary.fast_track_default);
    let other = classifier.facts.iter().find(|f| f.id == "edu-records.documents.other").unwrap();
    assert_eq!(other.addressee, Addressee::Federal { organization_id: "rosobrnadzor".into() });
    let enrolment = classifier.facts.iter().find(|f| f.id == "education.enrolment.first-grade").unwrap();
    assert_eq!(enrolment.not_fast_track_regions, ["16"]);

    let directory = store::load_directory(&mut conn, directory_version).await.unwrap();
    assert_eq!(directory.regions.len(), 89);
    let mut expected = seed.organizations.clone();
    expected.sort_by(|a, b| a.region_code.cmp(&b.region_code).then_with(|| a.id.cmp(&b.id)));
    assert_eq!(directory.organizations, expected);
    let offline = directory.organizations.iter().find(|o| o.id == "41-school-pk-33").unwrap();
    assert!(!offline.connected);
    assert_eq!(offline.parent_id, "41-uo-petropavlovsk");
}

fn rule(id: &str, priority: i32, keywords: &[&str]) -> AutoRule {
    AutoRule {
        id: id.into(),
        organization_id: "41-minobr".into(),
        priority,
        fact_id: String::new(),
        keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        target_organization_id: "41-uo-elizovo".into(),
        target_executor_id: String::new(),
        active: true,
    }
}

async fn auto_rules_are_saved_ordered_and_deleted(db: &Db) {
    let mut conn = db.pool().acquire().await.unwrap();
    store::upsert_auto_rule(&mut conn, &rule("b", 5, &["Дневник", "пароль"])).await.unwrap();
    store::upsert_auto_rule(&mut conn, &rule("a", 5, &[])).await.unwrap();
    let mut edited = rule("c", 9, &[]);
    store::upsert_auto_rule(&mut conn, &edited).await.unwrap();
    edited.priority = 1;
    edited.active = false;
    edited.target_executor_id = "executor-1".into();
    store::upsert_auto_rule(&mut conn, &edited).await.unwrap();

    let directory = pos_routing::model::Directory::new(store::load_directory(&mut conn, 1).await.unwrap());
    let order: Vec<&str> = directory.rules_of("41-minobr").map(|r| r.id.as_str()).collect();
    assert_eq!(order, ["c", "a", "b"], "by priority, then id");
    assert_eq!(directory.auto_rule("c"), Some(&edited));
    assert_eq!(directory.auto_rule("b").unwrap().keywords, ["Дневник", "пароль"]);

    assert!(store::delete_auto_rule(&mut conn, "a").await.unwrap());
    assert!(!store::delete_auto_rule(&mut conn, "a").await.unwrap());
    assert_eq!(count(db, "auto_rules").await, 2);
}

async fn a_decision_is_recorded_once(db: &Db) {
    let decision = StoredDecision {
        appeal_id: "appeal-1".into(),
        message_id: "message-1".into(),
        number: 251819982,
        region_code: "41".into(),
        fact_id: "education.e-diary.access".into(),
        organization_id: "41-kcioko".into(),
        organization_region: "41".into(),
        time_zone: "Asia/Kamchatka".into(),
        period_days: 10,
        working_days: false,
        fast_track: true,
        delegated_by_auto_rule: true,
        auto_rule_id: "rule-1".into(),
        target_executor_id: "executor-1".into(),
        steps: vec![
            Step {
                rule: StepRule::AddresseeRule,
                organization_id: "41-kcioko".into(),
                reason: "why".into(),
                auto_rule: None,
            },
            // A rule's step keeps whose rule it is and what others read of it.
            Step {
                rule: StepRule::AutoRule,
                organization_id: "41-kcioko".into(),
                reason: "rule-1 in full".into(),
                auto_rule: Some(RuleStep {
                    organization_id: "41-kcioko".into(),
                    public_reason: Some("a rule of the center".into()),
                }),
            },
        ],
        explanation: "because".into(),
        decided_at: Utc.timestamp_opt(1_736_943_480, 123_000).unwrap(),
        content: store::AppealContent {
            registered_at: Some(Utc.timestamp_opt(1_736_943_400, 0).unwrap()),
            source: 2,
            category_id: "education".into(),
            subcategory_id: "education.e-diary".into(),
            public_text: "Прошу предоставить доступ".into(),
            problem_address: "Петропавловск-Камчатский".into(),
            applicant: Some(store::StoredApplicant {
                full_name: "Иванова Мария Петровна".into(),
                email: "maria@example.org".into(),
                phone: "+7 914 000-00-00".into(),
                account_id: "esia-1001".into(),
            }),
        },
    };
    let mut conn = db.pool().acquire().await.unwrap();
    assert!(store::insert_decision(&mut conn, &decision).await.unwrap());
    let mut second = decision.clone();
    second.organization_id = "cabinet-41".into();
    assert!(!store::insert_decision(&mut conn, &second).await.unwrap());
    assert_eq!(store::decision(&mut conn, "appeal-1").await.unwrap(), Some(decision));
    assert_eq!(store::decision(&mut conn, "nope").await.unwrap(), None);
}

async fn versions_only_grow_and_snapshots_follow_them(db: &Db) {
    let snapshots = Snapshots::new(Arc::new(MemoryCache::new()), Duration::from_secs(60));
    load_seed(db, &Seed::embedded().unwrap(), OnConflict::Keep).await.unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    let before = snapshots.current(&mut conn).await.unwrap();
    assert!(before.classifier.version() > 0 && before.directory.version() > 0);
    assert!(before.directory.organization("41-kcioko").unwrap().connected);

    let mut tx = db.begin().await.unwrap();
    let mut center = before.directory.organization("41-kcioko").unwrap().clone();
    center.connected = false;
    store::upsert_organization(&mut tx, &center, OnConflict::Update).await.unwrap();
    store::bump(&mut tx, Scope::Directory).await.unwrap();
    // Not yet committed: readers still get the old version.
    assert_eq!(snapshots.current(&mut conn).await.unwrap().directory.version(), before.directory.version());
    tx.commit().await.unwrap();

    let after = snapshots.current(&mut conn).await.unwrap();
    assert!(after.directory.version() > before.directory.version());
    assert!(!after.directory.organization("41-kcioko").unwrap().connected);
    assert_eq!(after.classifier.version(), before.classifier.version(), "scopes move independently");
    assert!(Arc::ptr_eq(&after.classifier, &before.classifier), "an unchanged scope is not reloaded");
}

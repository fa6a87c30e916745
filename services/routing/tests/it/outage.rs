//! The database gone: every method of `pos.v1.RoutingService`, called as a system (allowed
//! everywhere) with a body that passes validation, answers UNAVAILABLE with retry info and the
//! reason DATABASE_UNAVAILABLE, so that callers retry instead of giving up.
//!
//! None answers from memory: the snapshots (in this process and in the cache) are only ever
//! taken at the versions read from the database first, so that no instance can serve a
//! classifier or directory older than the last committed change.

use pos_platform::rpc_call;
use pos_platform::testing::{self, Call, TestDb, TestOptions, TestServer};
use pos_proto::v1 as pb;

use pos_platform::auth::Role;

use crate::helpers::{req, routing_client, system};

/// One rpc on its own clone of the client.
async fn every_method_is_unavailable_without_the_database(db: TestDb) {
    let server = TestServer::spawn(
        "routing",
        &pos_routing::MIGRATIONS,
        TestOptions { db, ..TestOptions::default() },
        pos_routing::component,
    )
    .await;
    let c = routing_client(&server);
    // The snapshots are warm in this process: they still must not answer.
    let organization = c
        .clone()
        .get_organization(system(pb::GetOrganizationRequest { id: "41-kcioko".into() }))
        .await
        .expect("served while the database is up")
        .into_inner();
    let resolve = pb::ResolveRequest {
        region_code: "41".into(),
        fact_id: "education.e-diary.access".into(),
        ..Default::default()
    };
    let category = pb::Category { id: "health".into(), name: "Здравоохранение".into(), active: true };
    let subcategory = pb::Subcategory {
        id: "education.other".into(),
        category_id: "education".into(),
        name: "Другое".into(),
        active: true,
    };
    let fact = pb::Fact {
        id: "health.appointments.no-slots".into(),
        subcategory_id: "education.e-diary".into(),
        name: "Нет свободных талонов".into(),
        addressee: Some(pb::AddresseeRule {
            kind: pb::AddresseeKind::Regional as i32,
            organization_type: pb::OrganizationType::RegionalMinistry as i32,
            organization_id: String::new(),
        }),
        period_days: 5,
        working_days: true,
        ..Default::default()
    };
    let organizations = pb::ListOrganizationsRequest { region_code: "41".into(), ..Default::default() };
    let rule = pb::AutoRule {
        id: "r1".into(),
        organization_id: "41-minobr".into(),
        priority: 1,
        target_organization_id: "41-uo-elizovo".into(),
        active: true,
        ..Default::default()
    };
    let calls: Vec<(&str, Call)> = vec![
        ("Resolve", rpc_call!(c, resolve, system(resolve))),
        ("ListClassifier", rpc_call!(c, list_classifier, system(pb::ListClassifierRequest {}))),
        ("UpsertCategory", rpc_call!(c, upsert_category, system(category))),
        ("UpsertSubcategory", rpc_call!(c, upsert_subcategory, system(subcategory))),
        ("UpsertFact", rpc_call!(c, upsert_fact, system(fact))),
        ("ListOrganizations", rpc_call!(c, list_organizations, system(organizations))),
        (
            "GetOrganization",
            rpc_call!(c, get_organization, system(pb::GetOrganizationRequest { id: "41-kcioko".into() })),
        ),
        ("UpsertOrganization", rpc_call!(c, upsert_organization, system(organization))),
        (
            "ListAutoRules",
            rpc_call!(c, list_auto_rules, system(pb::ListAutoRulesRequest { organization_id: "41-minobr".into() })),
        ),
        ("UpsertAutoRule", rpc_call!(c, upsert_auto_rule, system(rule))),
        ("DeleteAutoRule", rpc_call!(c, delete_auto_rule, system(pb::DeleteAutoRuleRequest { id: "r1".into() }))),
        ("ListRegions", rpc_call!(c, list_regions, system(pb::ListRegionsRequest {}))),
        (
            "ListSubordinates",
            rpc_call!(
                c,
                list_subordinates,
                system(pb::ListSubordinatesRequest { organization_id: "41-minobr".into() })
            ),
        ),
        // Only the organization's own head or coordinator confirms its onboarding.
        (
            "ConfirmOnboarding",
            rpc_call!(
                c,
                confirm_onboarding,
                req(
                    pb::ConfirmOnboardingRequest {
                        organization_id: "41-kcioko".into(),
                        step: pb::OnboardingStep::TrainingDone as i32,
                    },
                    "41-kcioko",
                    &[Role::Head],
                )
            ),
        ),
    ];
    testing::assert_unavailable_without_database(&server, "RoutingService", calls).await;
    server.stop().await;
}

#[tokio::test]
async fn every_method_is_unavailable_when_postgres_is_gone() {
    every_method_is_unavailable_without_the_database(TestDb::Postgres).await;
}

#[tokio::test]
async fn every_method_is_unavailable_when_sqlite_is_gone() {
    every_method_is_unavailable_without_the_database(TestDb::Sqlite).await;
}

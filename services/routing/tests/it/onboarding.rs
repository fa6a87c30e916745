//! Onboarding (seed 004): a school the directory import brings in not connected has its
//! appeals answered by its parent until its own head or coordinator confirms both steps; then
//! its new appeals reach it. Run on PostgreSQL and on SQLite, served as `pos up` serves it.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use pos_platform::auth::Role;
use pos_platform::bus::{Delivery, Disposition};
use pos_platform::testing::{TestDb, TestOptions, TestServer};
use pos_platform::{Envelope, QueueSpec};
use pos_proto::v1 as pb;
use pos_proto::v1::events::{AppealReceived, AppealRouted};
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use tonic::transport::Channel;

use crate::helpers::{req, routing_client, system};

const SCHOOL: &str = "41-school-pk-45";
const PARENT: &str = "41-uo-petropavlovsk";
/// A seed 001 fact addressed to the school the applicant picked.
const CERTIFICATE_MISSING: &str = "edu-records.documents.school-certificate-missing";

async fn spawn(db: TestDb) -> TestServer {
    let options = TestOptions { db, redis: true, ..TestOptions::default() };
    TestServer::spawn("routing", &pos_routing::MIGRATIONS, options, pos_routing::component).await
}

/// The new school as the directory import brings it in: not connected yet.
fn imported_school() -> pb::Organization {
    pb::Organization {
        id: SCHOOL.into(),
        full_name: "МБОУ «Средняя школа № 45»".into(),
        short_name: "СШ № 45".into(),
        region_code: "41".into(),
        parent_id: PARENT.into(),
        r#type: pb::OrganizationType::School as i32,
        connected: false,
        ..Default::default()
    }
}

fn appeal(id: &str) -> AppealReceived {
    AppealReceived {
        appeal_id: id.into(),
        number: 250000045,
        registered_at: Some(prost_types::Timestamp { seconds: 1_736_943_480, nanos: 0 }),
        source: pb::Source::Epgu as i32,
        region_code: "41".into(),
        category_id: "edu-records".into(),
        subcategory_id: "edu-records.documents".into(),
        fact_id: CERTIFICATE_MISSING.into(),
        picked_organization_id: SCHOOL.into(),
        public_text: "Аттестат не отображается в личном кабинете".into(),
        ..Default::default()
    }
}

/// Publishes `appeal.received` for `id` and returns the organization its `appeal.routed` names.
async fn routed_to(app: &TestServer, routed: &mut BoxStream<'static, Delivery>, id: &str) -> AppealRouted {
    app.bus().publish(&Envelope::new(&appeal(id), "41").with_appeal(id)).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(20), routed.next())
        .await
        .expect("appeal.routed within 20 s")
        .expect("a delivery");
    let event: AppealRouted = delivery.envelope.decode().unwrap();
    delivery.settle(Disposition::Ack).await.unwrap();
    assert_eq!(event.appeal_id, id);
    event
}

fn confirm(
    step: pb::OnboardingStep,
    organization_id: &str,
    roles: &[Role],
) -> tonic::Request<pb::ConfirmOnboardingRequest> {
    req(pb::ConfirmOnboardingRequest { organization_id: String::new(), step: step as i32 }, organization_id, roles)
}

async fn school(client: &mut RoutingServiceClient<Channel>) -> pb::Organization {
    client
        .get_organization(req(pb::GetOrganizationRequest { id: SCHOOL.into() }, SCHOOL, &[Role::Executor]))
        .await
        .expect("the school")
        .into_inner()
}

async fn a_school_is_answered_by_its_parent_until_both_steps_are_confirmed(db: TestDb) {
    let app = spawn(db).await;
    let mut client = routing_client(&app);
    let watcher = QueueSpec::new("test.onboarding-routed", &["appeal.routed.#"]);
    let mut routed = app.bus().consume(&watcher).await.unwrap();
    client.upsert_organization(system(imported_school())).await.expect("the import");

    // Not connected: the parent answers, and the school's staff are told who.
    let before = routed_to(&app, &mut routed, "appeal-before").await;
    assert_eq!(before.organization.as_ref().map(|o| o.id.as_str()), Some(PARENT), "{}", before.explanation);
    let shown = school(&mut client).await;
    assert!(!shown.connected && !shown.training_done && !shown.cabinet_ready, "{shown:?}");

    // A coordinator of another organization cannot confirm for the school, not even naming it.
    let foreign =
        pb::ConfirmOnboardingRequest { organization_id: SCHOOL.into(), step: pb::OnboardingStep::TrainingDone as i32 };
    let status = client
        .confirm_onboarding(req(foreign, "41-school-pk-1", &[Role::Coordinator]))
        .await
        .expect_err("another organization's coordinator");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(pos_platform::error::reason(&status), "OTHER_ORGANIZATION");
    // Nor can the school's own executor.
    let status = client
        .confirm_onboarding(confirm(pb::OnboardingStep::TrainingDone, SCHOOL, &[Role::Executor]))
        .await
        .expect_err("an executor");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(!school(&mut client).await.training_done, "nothing recorded by the refused calls");

    // One step: still not connected, still the parent.
    let after_one = client
        .confirm_onboarding(confirm(pb::OnboardingStep::TrainingDone, SCHOOL, &[Role::Coordinator]))
        .await
        .expect("the coordinator confirms the training")
        .into_inner();
    assert!(after_one.training_done && !after_one.cabinet_ready && !after_one.connected, "{after_one:?}");
    // Confirming it again changes nothing.
    client
        .confirm_onboarding(confirm(pb::OnboardingStep::TrainingDone, SCHOOL, &[Role::Head]))
        .await
        .expect("a repeated confirmation");
    let middle = routed_to(&app, &mut routed, "appeal-middle").await;
    assert_eq!(middle.organization.as_ref().map(|o| o.id.as_str()), Some(PARENT));

    // Both: connected, and new appeals reach the school.
    let connected = client
        .confirm_onboarding(confirm(pb::OnboardingStep::CabinetReady, SCHOOL, &[Role::Head]))
        .await
        .expect("the head confirms the cabinet")
        .into_inner();
    assert!(connected.training_done && connected.cabinet_ready && connected.connected, "{connected:?}");
    let after = routed_to(&app, &mut routed, "appeal-after").await;
    assert_eq!(after.organization.as_ref().map(|o| o.id.as_str()), Some(SCHOOL), "{}", after.explanation);

    // Who and when are kept.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT step, confirmed_by FROM onboarding_confirmations WHERE organization_id = $1 ORDER BY step",
    )
    .bind(SCHOOL)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        [("cabinet_ready".to_owned(), "tester".to_owned()), ("training_done".to_owned(), "tester".to_owned())]
    );

    // The import disconnecting the school clears the confirmations: its staff confirm again.
    client.upsert_organization(system(imported_school())).await.expect("disconnected by the import");
    let again = school(&mut client).await;
    assert!(!again.connected && !again.training_done && !again.cabinet_ready, "{again:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_school_is_answered_by_its_parent_until_onboarded_on_postgres() {
    a_school_is_answered_by_its_parent_until_both_steps_are_confirmed(TestDb::Postgres).await;
}

#[tokio::test]
async fn a_school_is_answered_by_its_parent_until_onboarded_on_sqlite() {
    a_school_is_answered_by_its_parent_until_both_steps_are_confirmed(TestDb::Sqlite).await;
}

#[tokio::test]
async fn subordinates_are_the_whole_subtree() {
    let app = spawn(TestDb::Postgres).await;
    let mut client = routing_client(&app);
    client.upsert_organization(system(imported_school())).await.expect("the import");
    let request =
        req(pb::ListSubordinatesRequest { organization_id: "41-minobr".into() }, "41-minobr", &[Role::Curator]);
    let ids: Vec<String> =
        client.list_subordinates(request).await.unwrap().into_inner().organizations.into_iter().map(|o| o.id).collect();
    for expected in [PARENT, SCHOOL, "41-school-pk-1", "41-uo-ust-kamchatsk", "41-school-klyuchi-1"] {
        assert!(ids.iter().any(|id| id == expected), "{expected} under the ministry: {ids:?}");
    }
    assert!(!ids.iter().any(|id| id == "41-minobr"), "not itself");
    assert!(!ids.iter().any(|id| id.starts_with("16-")), "nothing of another region: {ids:?}");
    let unknown = req(pb::ListSubordinatesRequest { organization_id: "nope".into() }, "", &[Role::Applicant]);
    assert_eq!(client.list_subordinates(unknown).await.unwrap_err().code(), tonic::Code::NotFound);
    app.stop().await;
}

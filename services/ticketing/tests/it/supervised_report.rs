//! A curator's reports over the organizations they supervise: ticketing served beside routing
//! (its directory names the subtree), as in a deployment of separate processes, on PostgreSQL
//! and SQLite.

use pos_platform::auth::Role;
use pos_platform::testing::{TestDb, TestOptions, TestServer};
use pos_proto::v1 as pb;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use tonic::Code;

use crate::helpers::{REGISTERED_AT, as_, deliver, routed};

/// The curator's own: the municipal education department of Petropavlovsk-Kamchatsky.
const DEPARTMENT: &str = "41-uo-petropavlovsk";
/// Two schools under it (seed directory).
const SCHOOL_1: &str = "41-school-pk-1";
const SCHOOL_33: &str = "41-school-pk-33";
/// A school under another department.
const ELIZOVO: &str = "41-school-elizovo-2";

async fn routing() -> TestServer {
    TestServer::spawn("routing", &pos_routing::MIGRATIONS, TestOptions::default(), pos_routing::component).await
}

async fn ticketing_beside(routing: &TestServer, db: TestDb) -> TestServer {
    let endpoint = routing.endpoint.clone();
    let options = TestOptions {
        db,
        configure: Box::new(move |config| config.peers.routing = vec![endpoint]),
        ..TestOptions::default()
    };
    TestServer::spawn("ticketing", &pos_ticketing::MIGRATIONS, options, pos_ticketing::component).await
}

fn period(organization_id: &str, include_supervised: bool) -> pb::GetReportRequest {
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    pb::GetReportRequest {
        organization_id: organization_id.into(),
        period_from: at(REGISTERED_AT - 3_600),
        period_to: at(REGISTERED_AT + 86_400),
        include_supervised,
        ..Default::default()
    }
}

fn curator<T>(message: T) -> tonic::Request<T> {
    as_(message, "curator-uo", DEPARTMENT, &[Role::Curator])
}

fn received(report: &pb::Report) -> i64 {
    report.totals.as_ref().map_or(-1, |t| t.received)
}

async fn a_curator_reports_over_the_organizations_they_supervise(db: TestDb) {
    let routing = routing().await;
    let app = ticketing_beside(&routing, db).await;
    // One appeal for the department, two for school 1, one for school 33, one for Elizovo.
    for (appeal, organization) in
        [("a-1", DEPARTMENT), ("a-2", SCHOOL_1), ("a-3", SCHOOL_1), ("a-4", SCHOOL_33), ("a-5", ELIZOVO)]
    {
        deliver(&app.db, &routed(appeal, organization, "citizen")).await;
    }
    let mut c = TicketingServiceClient::new(app.channel());

    // Own organization only, as before.
    let own = c.get_report(curator(period("", false))).await.expect("own").into_inner();
    assert_eq!((own.organization_id.as_str(), received(&own)), (DEPARTMENT, 1));
    assert!(own.by_organization.is_empty());

    // All supervised: the department first, then its schools by received; Elizovo is not there.
    let all = c.get_report(curator(period("", true))).await.expect("all supervised").into_inner();
    assert_eq!(received(&all), 4, "{all:?}");
    let rows: Vec<(&str, i64)> = all
        .by_organization
        .iter()
        .map(|r| (r.organization_id.as_str(), r.figures.as_ref().map_or(-1, |f| f.received)))
        .collect();
    assert_eq!(&rows[..3], [(DEPARTMENT, 1), (SCHOOL_1, 2), (SCHOOL_33, 1)], "{rows:?}");
    assert!(rows[3..].iter().all(|(_, n)| *n == 0), "other schools under it received nothing: {rows:?}");
    assert!(!rows.iter().any(|(id, _)| *id == ELIZOVO));
    let sum: i64 = rows.iter().map(|(_, n)| n).sum();
    assert_eq!(sum, received(&all), "the rows add up to the totals");
    let school = all.by_organization.iter().find(|r| r.organization_id == SCHOOL_1).unwrap();
    assert_eq!(school.short_name, "МАОУ «Средняя школа № 1»", "named as the directory names it");
    assert_eq!(all.by_organization[0].short_name, "Управление образования ПКГО", "the first row is named too");

    // One supervised school.
    let one = c.get_report(curator(period(SCHOOL_1, false))).await.expect("one school").into_inner();
    assert_eq!((one.organization_id.as_str(), received(&one)), (SCHOOL_1, 2));

    // A school outside the curator's subtree, alone or with its own subtree.
    for include in [false, true] {
        let refused = c.get_report(curator(period(ELIZOVO, include))).await.expect_err("outside the subtree");
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_eq!(pos_platform::error::reason(&refused), "OTHER_ORGANIZATION");
    }

    // A head supervises nobody: their own organization only.
    let head = |m| as_(m, "head-uo", DEPARTMENT, &[Role::Head]);
    for request in [period("", true), period(SCHOOL_1, false)] {
        let refused = c.get_report(head(request)).await.expect_err("a head's report of the schools");
        assert_eq!(pos_platform::error::reason(&refused), "OTHER_ORGANIZATION");
    }
    // The school's own head still gets the school's.
    let school_head = c.get_report(as_(period("", false), "head-1", SCHOOL_1, &[Role::Head])).await.expect("school");
    assert_eq!(received(school_head.get_ref()), 2);

    app.stop().await;
    routing.stop().await;
}

#[tokio::test]
async fn a_curator_reports_over_supervised_organizations_on_postgres() {
    a_curator_reports_over_the_organizations_they_supervise(TestDb::Postgres).await;
}

#[tokio::test]
async fn a_curator_reports_over_supervised_organizations_on_sqlite() {
    a_curator_reports_over_the_organizations_they_supervise(TestDb::Sqlite).await;
}

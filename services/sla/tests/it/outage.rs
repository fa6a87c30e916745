//! The database gone: every method of `pos.v1.SlaService`, called as a system (allowed
//! everywhere) with a body that passes validation, answers UNAVAILABLE with retry info and the
//! reason DATABASE_UNAVAILABLE, so that callers retry instead of giving up.

use pos_platform::auth::Role;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Call, TestDb, TestOptions, TestServer};
use pos_proto::v1 as pb;
use pos_proto::v1::sla_service_client::SlaServiceClient;
use tonic::Request;

/// A system caller: every method allows it, so the database is the only thing in the way.
fn system<T>(message: T) -> Request<T> {
    pos_platform::grpc::outgoing(message, &testing::token("outage", "", "", &[Role::System]))
}

/// One rpc on its own clone of the client.
async fn every_method_is_unavailable_without_the_database(db: TestDb) {
    let server = TestServer::spawn(
        "sla",
        &pos_sla::MIGRATIONS,
        TestOptions { db, ..TestOptions::default() },
        pos_sla::component,
    )
    .await;
    let c = SlaServiceClient::new(server.channel());
    let policy = pos_sla::grpc::policy_to_proto(&pos_sla::policy::embedded()[0]);
    let year = pos_sla::grpc::calendar_to_proto(&pos_sla::calendar::embedded()[0]);
    let calls: Vec<(&str, Call)> = vec![
        ("GetDeadlines", rpc_call!(c, get_deadlines, system(pb::GetDeadlinesRequest { appeal_id: "a-1".into() }))),
        ("GetSlaLog", rpc_call!(c, get_sla_log, system(pb::GetSlaLogRequest { appeal_id: "a-1".into() }))),
        ("GetPolicy", rpc_call!(c, get_policy, system(pb::GetPolicyRequest { region_code: "41".into() }))),
        ("PutPolicy", rpc_call!(c, put_policy, system(policy))),
        (
            "GetCalendarYear",
            rpc_call!(c, get_calendar_year, system(pb::GetCalendarYearRequest { region_code: "*".into(), year: 2025 })),
        ),
        ("PutCalendarYear", rpc_call!(c, put_calendar_year, system(year))),
        (
            "ResolvePeriods",
            rpc_call!(
                c,
                resolve_periods,
                system(pb::ResolvePeriodsRequest {
                    region_code: "41".into(),
                    facts: vec![pb::PeriodQuery {
                        fact_id: "education.e-diary.access".into(),
                        classifier_fast_track: true
                    }],
                })
            ),
        ),
    ];
    testing::assert_unavailable_without_database(&server, "SlaService", calls).await;
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

//! Every method of `pos.v1.SlaService` keeps to the caller's scope: staff of another organization
//! (with every cabinet role, in another region) read no deadline or log of the first
//! organization's appeal and change no policy or calendar but their own region's; a caller
//! without the method's role is denied before the body is read. Policies and the production
//! calendar are public: they are the rules every deadline is computed by.

use chrono::Utc;
use pos_platform::auth::Role;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Scoped, TestOptions, TestServer};
use pos_proto::v1 as pb;
use pos_proto::v1::sla_service_client::SlaServiceClient;
use tonic::transport::Channel;

use crate::helpers::{SlaDb, routed};

const CENTER: &str = "41-kcioko";
const OTHER: &str = "25-school-1";
const APPEAL: &str = "scope-1";

const POLICY_IS_PUBLIC: &str = "the review periods of each region are law and published";
const PERIODS_ARE_PUBLIC: &str = "the period each fact gets is the published policy applied";
const CALENDAR_IS_PUBLIC: &str = "the production calendar is published by the government";

/// Staff of an organization of another region holding every cabinet role.
fn intruder<T>(message: T) -> tonic::Request<T> {
    pos_platform::grpc::outgoing(message, &testing::token("intruder", OTHER, "25", &Role::STAFF))
}

/// A caller of the first organization holding every role but `allowed`.
fn without<T>(allowed: &[Role], message: T) -> tonic::Request<T> {
    let roles: Vec<Role> = Role::ALL.iter().copied().filter(|role| !allowed.contains(role)).collect();
    pos_platform::grpc::outgoing(message, &testing::token("outsider", CENTER, "41", &roles))
}

async fn spawn() -> (TestServer, SlaServiceClient<Channel>) {
    let server = TestServer::spawn("sla", &pos_sla::MIGRATIONS, TestOptions::default(), pos_sla::component).await;
    let client = SlaServiceClient::new(server.channel());
    (server, client)
}

/// Region 41's policy with nothing in it: refused for its fields, if the body were read.
fn empty_policy(region: &str) -> pb::SlaPolicy {
    pb::SlaPolicy { region_code: region.into(), ..Default::default() }
}

fn empty_year(region: &str) -> pb::CalendarYear {
    pb::CalendarYear { region_code: region.into(), year: 1, ..Default::default() }
}

#[tokio::test]
async fn another_organization_reaches_nothing_of_the_first() {
    let (server, c) = spawn().await;
    let t = SlaDb::of(server.db.clone());
    t.routed(&routed(APPEAL, "41", "Asia/Kamchatka", CENTER, "education.e-diary.access", false, Utc::now())).await;
    let appeal = || APPEAL.to_owned();
    let rows: Vec<(&str, Scoped)> = vec![
        (
            "GetDeadlines",
            Scoped::Denied(rpc_call!(c, get_deadlines, intruder(pb::GetDeadlinesRequest { appeal_id: appeal() }))),
        ),
        (
            "GetSlaLog",
            Scoped::Denied(rpc_call!(c, get_sla_log, intruder(pb::GetSlaLogRequest { appeal_id: appeal() }))),
        ),
        ("ResolvePeriods", Scoped::Public(PERIODS_ARE_PUBLIC)),
        ("GetPolicy", Scoped::Public(POLICY_IS_PUBLIC)),
        // An organization admin of region 25 on region 41's policy, and on the default.
        ("PutPolicy", Scoped::Denied(rpc_call!(c, put_policy, intruder(empty_policy("41"))))),
        ("PutPolicy", Scoped::Denied(rpc_call!(c, put_policy, intruder(empty_policy("*"))))),
        ("GetCalendarYear", Scoped::Public(CALENDAR_IS_PUBLIC)),
        ("PutCalendarYear", Scoped::Denied(rpc_call!(c, put_calendar_year, intruder(empty_year("41"))))),
    ];
    testing::assert_every_method_scoped("SlaService", rows).await;
    server.stop().await;
}

#[tokio::test]
async fn a_caller_without_the_role_is_denied_before_the_body_is_read() {
    let (server, c) = spawn().await;
    let staff_and_systems: Vec<Role> = Role::STAFF.iter().copied().chain([Role::System]).collect();
    let rows: Vec<(&str, Scoped)> = vec![
        (
            "GetDeadlines",
            Scoped::Public("every caller may ask; the answer is checked against the appeal's organization"),
        ),
        (
            "GetSlaLog",
            Scoped::Denied(rpc_call!(c, get_sla_log, without(&staff_and_systems, pb::GetSlaLogRequest::default()))),
        ),
        ("ResolvePeriods", Scoped::Public(PERIODS_ARE_PUBLIC)),
        ("GetPolicy", Scoped::Public(POLICY_IS_PUBLIC)),
        (
            "PutPolicy",
            Scoped::Denied(rpc_call!(c, put_policy, without(&[Role::System, Role::OrgAdmin], empty_policy("41")))),
        ),
        ("GetCalendarYear", Scoped::Public(CALENDAR_IS_PUBLIC)),
        (
            "PutCalendarYear",
            Scoped::Denied(rpc_call!(c, put_calendar_year, without(&[Role::System], empty_year("41")))),
        ),
    ];
    testing::assert_every_method_scoped("SlaService", rows).await;
    server.stop().await;
}

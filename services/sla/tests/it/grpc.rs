//! `pos.v1.SlaService` over the wire: deadlines as the cabinet shows them, the log, policies
//! and calendars, and who may see and change what.

use std::time::Duration;

use chrono::Utc;
use pos_platform::auth::Role;
use pos_platform::testing::{self, TestOptions, TestServer};
use pos_proto::v1 as pb;
use pos_proto::v1::events::TicketAction;
use pos_proto::v1::sla_service_client::SlaServiceClient;
use tonic::transport::Channel;

use crate::helpers::{SlaDb, routed, status, utc};

struct App {
    server: TestServer,
    t: SlaDb,
    client: SlaServiceClient<Channel>,
}

async fn spawn_app() -> App {
    let server = TestServer::spawn("sla", &pos_sla::MIGRATIONS, TestOptions::default(), pos_sla::component).await;
    let t = SlaDb::of(server.db.clone());
    let client = SlaServiceClient::new(server.channel());
    App { server, t, client }
}

impl App {
    async fn stop(self) {
        self.server.stop().await;
    }
}

fn req<T>(message: T, organization_id: &str, region: &str, roles: &[Role]) -> tonic::Request<T> {
    pos_platform::grpc::outgoing(message, &testing::token("tester", organization_id, region, roles))
}

#[tokio::test]
async fn deadlines_read_like_the_cabinet_in_local_time_and_utc() {
    let mut app = spawn_app().await;
    // Registered a minute ago in Kamchatka, fast-track: 10 days and the rest of today.
    let now = Utc::now();
    app.t.routed(&routed("g-1", "41", "Asia/Kamchatka", "41-kcioko", "education.e-diary.access", true, now)).await;
    let deadlines = app
        .client
        .get_deadlines(req(pb::GetDeadlinesRequest { appeal_id: "g-1".into() }, "41-kcioko", "41", &[Role::Executor]))
        .await
        .unwrap()
        .into_inner();
    assert!(deadlines.fast_track);
    let answer = deadlines.answer.unwrap();
    let due = answer.due.clone().unwrap();
    assert_eq!(due.time_zone, "Asia/Kamchatka");
    assert!(due.local.ends_with("T23:59:59+12:00"), "{}", due.local);
    assert!(due.utc.is_some());
    assert!(answer.remaining.starts_with("10 days") || answer.remaining.starts_with("9 days"), "{}", answer.remaining);
    assert!(answer.remaining.contains(" / until 23:59 "), "{}", answer.remaining);
    assert!(!answer.paused && !answer.overdue && !answer.at_risk);
    assert_eq!((answer.round, answer.period.as_str()), (1, "10 calendar days"));
    assert!(deadlines.execution.is_none());

    // Paused: the cabinet sees it paused with the time that is left.
    app.t.status(&status("g-1", "41", TicketAction::InformationRequested, Utc::now())).await;
    let answer = app
        .client
        .get_deadlines(req(pb::GetDeadlinesRequest { appeal_id: "g-1".into() }, "", "", &[Role::System]))
        .await
        .unwrap()
        .into_inner()
        .answer
        .unwrap();
    assert!(answer.paused && answer.remaining.starts_with("paused: "), "{}", answer.remaining);

    // Another organization's staff see nothing; an unknown appeal is NOT_FOUND.
    let denied = app
        .client
        .get_deadlines(req(pb::GetDeadlinesRequest { appeal_id: "g-1".into() }, "other", "41", &[Role::Coordinator]))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let missing = app
        .client
        .get_deadlines(req(pb::GetDeadlinesRequest { appeal_id: "nope".into() }, "", "", &[Role::System]))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let log = app
        .client
        .get_sla_log(req(pb::GetSlaLogRequest { appeal_id: "g-1".into() }, "41-kcioko", "41", &[Role::Curator]))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<&str> = log.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, vec!["armed", "paused"]);
    app.stop().await;
}

#[tokio::test]
async fn an_overdue_deadline_is_flagged_after_its_timer_fires() {
    let mut app = spawn_app().await;
    // Registered in 2025: long overdue; the timer loop fires at start-up and on arming.
    app.t
        .routed(&routed(
            "o-1",
            "41",
            "Asia/Kamchatka",
            "41-kcioko",
            "education.e-diary.access",
            true,
            utc(2025, 1, 15, 11, 18),
        ))
        .await;
    // Computed at once from the due time, published when the overdue timer fires.
    let answer = app
        .client
        .get_deadlines(req(pb::GetDeadlinesRequest { appeal_id: "o-1".into() }, "", "", &[Role::System]))
        .await
        .unwrap()
        .into_inner()
        .answer
        .unwrap();
    assert!(answer.overdue && !answer.at_risk);
    assert!(answer.remaining.starts_with("overdue / was due 23:59 25.01.2025"), "{}", answer.remaining);
    assert_eq!(answer.due.unwrap().local, "2025-01-25T23:59:59+12:00");
    let mut kinds = Vec::new();
    for _ in 0..100 {
        let log = app
            .client
            .get_sla_log(req(pb::GetSlaLogRequest { appeal_id: "o-1".into() }, "", "", &[Role::System]))
            .await
            .unwrap()
            .into_inner();
        kinds = log.entries.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();
        if kinds.len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The warnings came due after the deadline: only the breach is published.
    assert_eq!(kinds, vec!["armed", "breached"]);
    assert_eq!(app.t.published("o-1").await, vec!["sla.armed.41", "sla.fast_track.41", "sla.overdue.41"]);
    app.stop().await;
}

#[tokio::test]
async fn policies_and_calendars_are_edited_over_grpc() {
    let mut app = spawn_app().await;
    let mut policy = app
        .client
        .get_policy(req(pb::GetPolicyRequest { region_code: "16".into() }, "", "", &[Role::Coordinator]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(policy.region_code, "*", "no policy of its own: the default");
    assert_eq!(policy.standard.unwrap().days, 30);
    policy.region_code = "16".into();
    policy.standard = Some(pb::SlaPeriod { days: 20, working_days: true });
    policy.move_to_next_working_day = true;
    // An organization admin of another region may not; of the region may.
    let denied = app.client.put_policy(req(policy.clone(), "org-77", "77", &[Role::OrgAdmin])).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    app.client.put_policy(req(policy.clone(), "org-16", "16", &[Role::OrgAdmin])).await.unwrap();
    let stored = app
        .client
        .get_policy(req(pb::GetPolicyRequest { region_code: "16".into() }, "", "", &[Role::System]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.standard, Some(pb::SlaPeriod { days: 20, working_days: true }));
    // Bad values name their fields.
    let mut bad = stored.clone();
    bad.standard = Some(pb::SlaPeriod { days: 0, working_days: false });
    bad.execution_share_percent = 0;
    let status = app.client.put_policy(req(bad, "", "", &[Role::System])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let fields = pos_platform::error::violated_fields(&status);
    assert!(fields.contains(&"standard.days".to_owned()) && fields.contains(&"execution_share_percent".to_owned()));

    let mut unknown = stored.clone();
    unknown.region_code = "99".into();
    let status = app.client.put_policy(req(unknown, "", "", &[Role::System])).await.unwrap_err();
    assert_eq!(pos_platform::error::violated_fields(&status), vec!["region_code"]);

    // Calendars: the built-in 2025 is there; a corrected year replaces it.
    let year = app
        .client
        .get_calendar_year(req(
            pb::GetCalendarYearRequest { region_code: "*".into(), year: 2025 },
            "",
            "",
            &[Role::Head],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(year.decree.contains("1335"));
    assert_eq!(year.holidays.len(), 14);
    let mut tatarstan_2028 = pb::CalendarYear {
        region_code: "16".into(),
        year: 2028,
        decree: "test".into(),
        holidays: vec![pb::CalendarHoliday {
            date: "2028-08-30".into(), name: "День Республики Татарстан".into()
        }],
        ..Default::default()
    };
    let denied = app.client.put_calendar_year(req(tatarstan_2028.clone(), "org-16", "16", &[Role::OrgAdmin])).await;
    assert_eq!(denied.unwrap_err().code(), tonic::Code::PermissionDenied);
    app.client.put_calendar_year(req(tatarstan_2028.clone(), "", "", &[Role::System])).await.unwrap();
    let read = app
        .client
        .get_calendar_year(req(
            pb::GetCalendarYearRequest { region_code: "16".into(), year: 2028 },
            "",
            "",
            &[Role::System],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, tatarstan_2028);
    tatarstan_2028.holidays[0].date = "2027-08-30".into();
    let status = app.client.put_calendar_year(req(tatarstan_2028, "", "", &[Role::System])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    app.stop().await;
}

//! GetAppeal: who may read an appeal, and the applicant's view following the events.

use std::time::Duration;

use pos_platform::bus::Envelope;
use pos_platform::testing::eventually;
use pos_proto::v1::events::{AppealRouted, TicketStatusChanged};
use pos_proto::v1::{Appeal, Folder, GetAppealRequest, OrganizationRef, OrganizationType};
use tonic::{Code, Status};

use crate::helpers::*;

async fn get(app: &TestApp, appeal_id: &str, token: &str) -> Result<Appeal, Status> {
    let mut client = app.client.clone();
    client
        .get_appeal(call(GetAppealRequest { appeal_id: appeal_id.into() }, token))
        .await
        .map(tonic::Response::into_inner)
}

async fn submit(app: &TestApp) -> String {
    let mut client = app.client.clone();
    client.submit_appeal(call(submission("req-1"), &applicant_token())).await.unwrap().into_inner().appeal_id
}

async fn route(app: &TestApp, appeal_id: &str, organization: &str, at: chrono::DateTime<chrono::Utc>) {
    let event = AppealRouted {
        appeal_id: appeal_id.into(),
        organization: Some(OrganizationRef {
            id: organization.into(),
            short_name: "Школа № 1".into(),
            r#type: OrganizationType::School as i32,
            region_code: REGION.into(),
        }),
        time_zone: "Asia/Kamchatka".into(),
        period_days: 10,
        fast_track: true,
        explanation: "the school the applicant picked is connected".into(),
        routed_at: Some(pos_proto::time::to_proto(at)),
        ..AppealRouted::default()
    };
    app.server.bus().publish(&Envelope::new(&event, REGION).with_appeal(appeal_id)).await.unwrap();
}

async fn ticket_status(app: &TestApp, appeal_id: &str, status: &str, at: chrono::DateTime<chrono::Utc>) {
    let event = TicketStatusChanged {
        ticket_id: "ticket-1".into(),
        appeal_id: appeal_id.into(),
        organization_id: SCHOOL.into(),
        to_folder: Folder::InWork as i32,
        status: status.into(),
        at: Some(pos_proto::time::to_proto(at)),
        region_code: REGION.into(),
        ..TicketStatusChanged::default()
    };
    app.server.bus().publish(&Envelope::new(&event, REGION).with_appeal(appeal_id)).await.unwrap();
}

#[tokio::test]
async fn the_owner_operators_and_systems_read_others_do_not() {
    let app = TestApp::spawn().await;
    let id = submit(&app).await;
    assert_eq!(get(&app, &id, &applicant_token()).await.unwrap().id, id);
    assert_eq!(get(&app, &id, &system_token()).await.unwrap().id, id);
    let operator = pos_platform::testing::token("operator-1", "", REGION, &[pos_platform::auth::Role::Operator]);
    assert_eq!(get(&app, &id, &operator).await.unwrap().id, id);

    assert_eq!(get(&app, &id, &other_applicant_token()).await.unwrap_err().code(), Code::PermissionDenied);
    // Staff see nothing before the appeal is routed to their organization.
    assert_eq!(get(&app, &id, &staff_token(SCHOOL)).await.unwrap_err().code(), Code::PermissionDenied);

    let forged = pos_platform::auth::Authenticator::from_config(&pos_platform::config::AuthConfig {
        hs256_secret: Some(pos_platform::config::Secret::new("forged")),
        ..pos_platform::config::AuthConfig::default()
    })
    .unwrap()
    .mint(APPLICANT, "", REGION, &[pos_platform::auth::Role::Applicant], Duration::from_secs(60))
    .unwrap();
    assert_eq!(get(&app, &id, &forged).await.unwrap_err().code(), Code::Unauthenticated);

    assert_eq!(get(&app, &uuid::Uuid::now_v7().to_string(), &system_token()).await.unwrap_err().code(), Code::NotFound);
    let status = get(&app, "not-an-id", &system_token()).await.unwrap_err();
    assert_eq!(pos_platform::error::violated_fields(&status), ["appeal_id"]);
    app.stop().await;
}

#[tokio::test]
async fn the_view_follows_routing_and_ticket_events_and_never_goes_back() {
    let app = TestApp::spawn().await;
    let id = submit(&app).await;
    let registered = get(&app, &id, &applicant_token()).await.unwrap();
    let t0 = pos_proto::time::from_proto(registered.registered_at.as_ref().unwrap()).unwrap();

    route(&app, &id, SCHOOL, t0 + chrono::Duration::seconds(1)).await;
    eventually(Duration::from_secs(5), "the routing is shown", || async {
        get(&app, &id, &applicant_token()).await.unwrap().routing.is_some()
    })
    .await;
    let routed = get(&app, &id, &applicant_token()).await.unwrap();
    assert_eq!(routed.status, "routed");
    let routing = routed.routing.unwrap();
    assert_eq!(routing.organization.unwrap().id, SCHOOL);
    assert_eq!(routing.period_days, 10);
    assert!(routing.fast_track);
    assert_eq!(routing.explanation, "the school the applicant picked is connected");

    // Now the school's staff may read it; another school's may not.
    assert_eq!(get(&app, &id, &staff_token(SCHOOL)).await.unwrap().id, id);
    assert_eq!(get(&app, &id, &staff_token("school-41-2")).await.unwrap_err().code(), Code::PermissionDenied);

    ticket_status(&app, &id, "executor assigned", t0 + chrono::Duration::seconds(5)).await;
    eventually(Duration::from_secs(5), "the ticket's status is shown", || async {
        get(&app, &id, &applicant_token()).await.unwrap().status == "executor assigned"
    })
    .await;
    // An older status arriving late is ignored.
    ticket_status(&app, &id, "new", t0 + chrono::Duration::seconds(2)).await;
    let dead_or_done = || async {
        app.server.bus().queue_depth(&app.server.queue(pos_intake::consumer::STATUS_QUEUE)).await.unwrap() == 0
            && app.count("inbox").await == 3
    };
    eventually(Duration::from_secs(5), "the late event is handled", dead_or_done).await;
    let view = get(&app, &id, &applicant_token()).await.unwrap();
    assert_eq!(view.status, "executor assigned");
    assert_eq!(view.status_changed_at, Some(pos_proto::time::to_proto(t0 + chrono::Duration::seconds(5))));
    app.stop().await;
}

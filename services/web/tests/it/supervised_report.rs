//! A curator's report over the organizations under theirs, through the cabinet's router on the
//! embedded platform: the ministry's curator picks «все подведомственные» or one of them, the CSV
//! follows, an organization outside the ministry is refused, and a head gets only their own.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode, header};
use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform, e_diary_appeal};
use pos_platform::auth::Role;
use pos_platform::cache::MemoryCache;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_web::{App, WebConfig};
use tower::ServiceExt;

/// The Kamchatka ministry of education: the regional center lies under it.
const MINISTRY: &str = "41-minobr";

/// A session of `role` at the ministry, and its cookie.
async fn signed_in(app: &App, role: Role) -> String {
    let subject = format!("ministry-{role}");
    let token = testing::token(&subject, MINISTRY, "41", &[role]);
    let session = serde_json::from_value(serde_json::json!({
        "token": token, "subject": subject, "display_name": "Волков Сергей",
        "organization_id": MINISTRY, "organization_name": "Минобразования Камчатского края",
        "region_code": "41", "roles": [role], "csrf": testing::unique("csrf"),
        "expires_at": chrono::Utc::now().timestamp() + 3600,
    }))
    .expect("a session");
    let id = app.sessions.create(&session).await.expect("session stored");
    format!("{}={id}", app.cookies.session_name())
}

/// A page (or file) of the cabinet: its status, its Content-Disposition and its text.
async fn get(router: &axum::Router, uri: &str, cookie: &str) -> (StatusCode, String, String) {
    let request = Request::get(uri).header(header::COOKIE, cookie).body(Body::empty()).expect("a request");
    let response = router.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let disposition =
        response.headers().get(header::CONTENT_DISPOSITION).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body");
    (status, disposition, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curator_reports_over_all_supervised_or_one_and_the_csv_follows() {
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let run = testing::unique("supervised");
    let appeals = platform.submit_many(2, 2, |i| e_diary_appeal(&format!("{run}-{i}"))).await.expect("submitted");
    for appeal_id in &appeals {
        platform.wait_for_ticket(appeal_id, KAMCHATKA_CENTER, Duration::from_secs(30)).await.expect("a ticket");
    }
    let system = testing::token("ops", "", "", &[Role::System]);
    let center = pb::GetOrganizationRequest { id: KAMCHATKA_CENTER.into() };
    let center = platform.routing().get_organization(outgoing(center, &system)).await.expect("center").into_inner();

    let addr = "127.0.0.1:0".parse().expect("an address");
    let config = WebConfig { grpc_endpoint: platform.endpoint.clone(), ..WebConfig::default() };
    let app = App::new(config, platform.channel(), Arc::new(MemoryCache::new()), None, addr);
    let router = pos_web::router(app.clone());
    let zone = chrono_tz::Asia::Kamchatka;
    let today = chrono::Utc::now().with_timezone(&zone).date_naive();
    let period = format!("from={}&to={}", today - chrono::Duration::days(1), today + chrono::Duration::days(1));
    let curator = signed_in(&app, Role::Curator).await;

    // The choice is offered, with the center among the supervised.
    let (status, _, page) = get(&router, &format!("/cabinet/reports?{period}"), &curator).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(r#"<option value="supervised">Все подведомственные</option>"#), "{page}");
    assert!(page.contains(&format!(r#"<option value="{KAMCHATKA_CENTER}">"#)), "{page}");

    // All supervised: a table by organization; the CSV has the same rows.
    let (status, _, page) = get(&router, &format!("/cabinet/reports?{period}&scope=supervised"), &curator).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(r#"data-section="Организация""#), "{page}");
    assert!(page.contains("Минобразования Камчатского края и подведомственные организации"), "{page}");
    let (status, disposition, csv) =
        get(&router, &format!("/cabinet/reports.csv?{period}&scope=supervised"), &curator).await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert!(disposition.contains(&format!("report_{MINISTRY}_supervised_")), "{disposition}");
    let line = |prefix: String| csv.lines().find(|l| l.starts_with(&prefix)).map(str::to_owned);
    assert!(line("Итого;Все сообщения;2;".into()).is_some(), "{csv}");
    // The center's name has quotes of its own: CSV doubles them inside a quoted field.
    let quoted = format!("\"{}\"", center.short_name.replace('"', "\"\""));
    assert!(line(format!("Организация;{quoted};2;")).is_some(), "{csv}");
    assert!(line("Организация;Минобразования Камчатского края;0;".into()).is_some(), "{csv}");

    // One of them: the center's figures alone.
    let (status, disposition, csv) =
        get(&router, &format!("/cabinet/reports.csv?{period}&scope={KAMCHATKA_CENTER}"), &curator).await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert!(disposition.contains(&format!("report_{KAMCHATKA_CENTER}_")), "{disposition}");
    assert!(line_of(&csv, "Итого;Все сообщения;2;"), "{csv}");
    assert!(!csv.contains("Организация;"), "{csv}");

    // Outside the ministry: refused.
    let (status, _, page) = get(&router, &format!("/cabinet/reports?{period}&scope=16-rcmko"), &curator).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");

    // The ministry's head: their own organization, whatever the URL says.
    let head = signed_in(&app, Role::Head).await;
    let (status, _, csv) = get(&router, &format!("/cabinet/reports.csv?{period}&scope=supervised"), &head).await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert!(line_of(&csv, "Итого;Все сообщения;0;"), "{csv}");
    assert!(!csv.contains("Организация;"), "{csv}");

    platform.stop().await.expect("platform stops");
}

fn line_of(csv: &str, prefix: &str) -> bool {
    csv.lines().any(|l| l.starts_with(prefix))
}

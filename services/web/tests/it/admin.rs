//! The organization's settings in Debian's Chromium (`browser/admin.mjs`): the org admin keeps
//! the staff directory, an auto-rule, the notifications and takes the site form's snippet; the
//! head writes a template with the live preview; an executor is refused; forms without the CSRF
//! token are refused. Afterwards the services are asked what the pages saved. Screenshots go to
//! `target/screenshots/admin-*.png`.

use std::time::Duration;

use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_client::NotifyServiceClient;

use crate::browser::{run_story, serve_cabinet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_pages_in_chromium() {
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let (addr, shutdown, server) = serve_cabinet(&platform, |_| {}).await;
    let shots =
        ["admin-staff.png", "admin-rules.png", "admin-notifications.png", "admin-widget.png", "admin-templates.png"];
    run_story("admin.mjs", addr, &[], &shots, Duration::from_secs(240)).await;

    // What the pages saved is what the services hold.
    let admin = testing::token("ops", KAMCHATKA_CENTER, "41", &[Role::OrgAdmin]);
    let staff = platform
        .ticketing()
        .list_staff(outgoing(
            pb::ListStaffRequest { organization_id: KAMCHATKA_CENTER.into(), role: String::new() },
            &admin,
        ))
        .await
        .expect("staff")
        .into_inner()
        .staff;
    let sidorov = staff.iter().find(|m| m.subject == "sidorov-p").expect("the executor added in the browser");
    assert_eq!(
        (sidorov.full_name.as_str(), sidorov.email.as_str(), sidorov.active),
        ("Сидоров Пётр", "sidorov@kcioko.example", false)
    );
    let mut roles = sidorov.roles.clone();
    roles.sort();
    assert_eq!(roles, ["approver", "executor"]);
    assert!(staff.iter().all(|m| m.subject != "intruder"), "a form without the CSRF token changed nothing");

    let rules = platform
        .routing()
        .list_auto_rules(outgoing(pb::ListAutoRulesRequest { organization_id: KAMCHATKA_CENTER.into() }, &admin))
        .await
        .expect("auto-rules")
        .into_inner()
        .rules;
    let rule = rules.iter().find(|r| r.target_executor_id == "sidorov-p").expect("the auto-rule made in the browser");
    assert_eq!(
        (rule.fact_id.as_str(), rule.keywords.clone(), rule.target_organization_id.as_str(), rule.active),
        ("education.e-diary.access", vec!["дневник".to_owned(), "пароль".to_owned()], KAMCHATKA_CENTER, true)
    );

    let mut notify = NotifyServiceClient::new(platform.channel());
    let settings = notify
        .get_settings(outgoing(pb::GetSettingsRequest { organization_id: KAMCHATKA_CENTER.into() }, &admin))
        .await
        .expect("settings")
        .into_inner();
    assert_eq!((settings.quiet_from.as_str(), settings.quiet_until.as_str()), ("22:00", "08:00"));
    let notifications = notify
        .list_notifications(outgoing(pb::ListNotificationsRequest { organization_id: KAMCHATKA_CENTER.into() }, &admin))
        .await
        .expect("notifications")
        .into_inner()
        .notifications;
    let mailing = notifications.iter().find(|n| n.name == "Новое сообщение № {number}").expect("the mailing list");
    assert_eq!(
        (mailing.r#type, mailing.addresses.clone(), mailing.roles.clone()),
        (
            pb::NotificationType::MessageArrived as i32,
            vec!["pos@kcioko.example".to_owned()],
            vec!["coordinator".to_owned()]
        )
    );

    let templates = platform
        .ticketing()
        .list_answer_templates(outgoing(
            pb::ListAnswerTemplatesRequest { organization_id: KAMCHATKA_CENTER.into() },
            &admin,
        ))
        .await
        .expect("templates")
        .into_inner()
        .templates;
    let template = templates.iter().find(|t| t.name == "Доступ к дневнику").expect("the template saved in the browser");
    assert_eq!(
        template.body,
        "Уважаемый(ая) {{applicant_name}}! По сообщению № {{message_number}} доступ предоставлен."
    );

    shutdown.cancel();
    server.await.unwrap().unwrap();
    platform.stop().await.unwrap();
}

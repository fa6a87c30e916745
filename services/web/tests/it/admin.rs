//! The organization's settings in Debian's Chromium (`browser/admin.mjs`): the org admin keeps
//! the staff directory, an auto-rule, the notifications and takes the site form's snippet; the
//! head writes a template with the live preview; an executor is refused; forms without the CSRF
//! token are refused. Afterwards the services are asked what the pages saved. Screenshots go to
//! `target/screenshots/admin-*.png`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform};
use pos_platform::auth::Role;
use pos_platform::cache::MemoryCache;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_client::NotifyServiceClient;
use pos_web::{App, WebConfig};
use tokio_util::sync::CancellationToken;

use crate::browser::{browser_dir, ensure_node_modules, screenshots_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_pages_in_chromium() {
    let chromium = std::env::var("POS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "no Chromium at {chromium}: deploy/local/tools.sh installs Debian's");
    ensure_node_modules();

    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config =
        WebConfig { addr, grpc_endpoint: platform.endpoint.clone(), dev_sign_in: true, ..WebConfig::default() };
    let app = App::new(config, platform.channel(), Arc::new(MemoryCache::new()), Some(testing::authenticator()), addr);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(pos_web::serve(app, listener, shutdown.clone()));

    let screenshots = screenshots_dir();
    let shots =
        ["admin-staff.png", "admin-rules.png", "admin-notifications.png", "admin-widget.png", "admin-templates.png"];
    for shot in shots {
        let _ = std::fs::remove_file(screenshots.join(shot));
    }
    let node = tokio::process::Command::new("node")
        .arg("admin.mjs")
        .current_dir(browser_dir())
        .env("BASE_URL", format!("http://{addr}"))
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), node)
        .await
        .expect("the browser finishes in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        println!("browser: {line}");
    }
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the admin pages' story failed: {}", output.status);
    assert_eq!(stdout.lines().last(), Some("DONE"));
    for shot in shots {
        assert!(screenshots.join(shot).metadata().map(|m| m.len() > 10_000).unwrap_or(false), "{shot} saved");
    }

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

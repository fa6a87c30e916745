//! The onboarding confirmation in Chromium (`browser/onboarding.mjs`): a school imported not
//! connected; its coordinator signs in, is asked to confirm, confirms both steps and lands in the
//! cabinet, while an executor of the school sees the cabinet with a banner until then. Routing
//! recorded both steps by the coordinator and connected the school. The screenshot is saved to
//! `target/screenshots/onboarding.png`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use pos_e2e::{Mode, Platform};
use pos_platform::auth::Role;
use pos_platform::cache::MemoryCache;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_web::{App, WebConfig};
use tokio_util::sync::CancellationToken;

use crate::browser::{browser_dir, ensure_node_modules, screenshots_dir};

const SCHOOL: &str = "41-school-pk-45";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_confirms_onboarding_in_chromium() {
    let chromium = std::env::var("POS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "no Chromium at {chromium}: deploy/local/tools.sh installs Debian's");
    ensure_node_modules();

    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    // The directory import brings the school in before it has onboarded.
    let school = pb::Organization {
        id: SCHOOL.into(),
        full_name: "Муниципальное бюджетное общеобразовательное учреждение «Средняя школа № 45»".into(),
        short_name: "МБОУ «Средняя школа № 45»".into(),
        region_code: "41".into(),
        parent_id: "41-uo-petropavlovsk".into(),
        r#type: pb::OrganizationType::School as i32,
        connected: false,
        ..Default::default()
    };
    let system = testing::token("directory-import", "", "", &[Role::System]);
    platform.routing().upsert_organization(outgoing(school, &system)).await.expect("the school imported");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config =
        WebConfig { addr, grpc_endpoint: platform.endpoint.clone(), dev_sign_in: true, ..WebConfig::default() };
    let app = App::new(config, platform.channel(), Arc::new(MemoryCache::new()), Some(testing::authenticator()), addr);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(pos_web::serve(app, listener, shutdown.clone()));
    let screenshots = screenshots_dir();
    let _ = std::fs::remove_file(screenshots.join("onboarding.png"));
    let node = tokio::process::Command::new("node")
        .arg("onboarding.mjs")
        .current_dir(browser_dir())
        .env("BASE_URL", format!("http://{addr}"))
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .env("SCHOOL", SCHOOL)
        .env("PARENT", "Управление образования ПКГО")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), node)
        .await
        .expect("the browser onboarding finishes in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        println!("browser: {line}");
    }
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser onboarding failed: {}", output.status);
    assert_eq!(stdout.lines().last(), Some("DONE"));
    let shot = screenshots.join("onboarding.png");
    assert!(shot.metadata().map(|m| m.len() > 10_000).unwrap_or(false), "onboarding.png saved");

    // What the browser did is what routing recorded: both steps, and the school connected.
    let request = pb::GetOrganizationRequest { id: SCHOOL.into() };
    let school = platform.routing().get_organization(outgoing(request, &system)).await.expect("school").into_inner();
    assert!(school.connected && school.training_done && school.cabinet_ready, "{school:?}");

    shutdown.cancel();
    server.await.unwrap().unwrap();
    platform.stop().await.unwrap();
}

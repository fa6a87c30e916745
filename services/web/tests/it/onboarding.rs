//! The onboarding confirmation in Chromium (`browser/onboarding.mjs`): a school imported not
//! connected; its coordinator signs in, is asked to confirm, confirms both steps and lands in the
//! cabinet, while an executor of the school sees the cabinet with a banner until then. Routing
//! recorded both steps by the coordinator and connected the school. The screenshot is saved to
//! `target/screenshots/onboarding.png`.

use std::time::Duration;

use pos_e2e::{Mode, Platform};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;

use crate::browser::{run_story, serve_cabinet};

const SCHOOL: &str = "41-school-pk-45";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_confirms_onboarding_in_chromium() {
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

    let (addr, shutdown, server) = serve_cabinet(&platform, |_| {}).await;
    let env = [("SCHOOL", SCHOOL), ("PARENT", "Управление образования ПКГО")];
    run_story("onboarding.mjs", addr, &env, &["onboarding.png"], Duration::from_secs(180)).await;

    // What the browser did is what routing recorded: both steps, and the school connected.
    let request = pb::GetOrganizationRequest { id: SCHOOL.into() };
    let school = platform.routing().get_organization(outgoing(request, &system)).await.expect("school").into_inner();
    assert!(school.connected && school.training_done && school.cabinet_ready, "{school:?}");

    shutdown.cancel();
    server.await.unwrap().unwrap();
    platform.stop().await.unwrap();
}

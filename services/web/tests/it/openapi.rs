//! The JSON API against the embedded platform: an appeal submitted with a partner's key (a
//! field error first, named by its field), its status read back by id and by number, refused
//! without a credential and not found with another partner's; the public reads. Then its
//! OpenAPI document checked by PyPI's `openapi-spec-validator`, and `schemathesis` run against
//! the live server (bounded: a few examples per operation), finding no server error.
//!
//! The Python tools live in a virtualenv under `target/` (deploy/local/tools.sh makes it; the
//! test makes it too when it is missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pos_e2e::{Mode, Platform};
use pos_platform::appeal_link::{AppealLink, LinkKey};
use pos_platform::auth::Role;
use pos_platform::testing;
use serde_json::{Value, json};

use super::open311::{LINK_KEY, OTHER_KEY, PARTNER_KEY, serve_web, serve_web_with};

/// The virtualenv with openapi-spec-validator and schemathesis, made if missing.
fn tools() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/openapi-venv");
    // The version deploy/local/tools.sh pins: 3.x has another command line.
    let ready = |venv: &Path| {
        venv.join("bin/openapi-spec-validator").exists()
            && Command::new(venv.join("bin/schemathesis"))
                .arg("--version")
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("4.32.5"))
    };
    if !ready(&venv) {
        let status = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/tools.sh"))
            .status()
            .expect("deploy/local/tools.sh runs");
        assert!(status.success(), "deploy/local/tools.sh failed");
    }
    assert!(ready(&venv), "no openapi tools in {}", venv.display());
    venv
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_submits_and_follows_an_appeal() {
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let (base, web) = serve_web(&platform).await;
    let client = reqwest::Client::new();
    let api = format!("{base}/api/v1");

    // The public reads.
    let (status, regions) = send(client.get(format!("{api}/regions"))).await;
    assert_eq!(status, 200);
    let kamchatka = regions.as_array().unwrap().iter().find(|r| r["code"] == "41").expect("region 41");
    assert_eq!(kamchatka["time_zone"], "Asia/Kamchatka");
    let (status, classifier) = send(client.get(format!("{api}/classifier"))).await;
    assert_eq!(status, 200);
    let facts: Vec<&Value> = classifier["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["subcategories"].as_array().unwrap())
        .flat_map(|s| s["facts"].as_array().unwrap())
        .collect();
    let meals = facts.iter().find(|f| f["id"] == "education.meals.quality").expect("the meals fact");
    assert_eq!(
        (meals["needs_organization"].clone(), meals["organization_type"].clone()),
        (json!(true), json!("school"))
    );
    let (status, found) =
        send(client.get(format!("{api}/organizations?region_code=41&type=school&query=%E2%84%96%201"))).await;
    assert_eq!(status, 200, "{found}");
    assert!(found["organizations"].as_array().unwrap().iter().any(|o| o["id"] == "41-school-pk-1"), "{found}");
    let (status, problem) = send(client.get(format!("{api}/organizations"))).await;
    assert_eq!((status, problem["fields"][0]["field"].clone()), (400, json!("region_code")), "{problem}");

    // Submitting needs a credential.
    let submission = json!({
        "request_id": "api-test-1",
        "region_code": "41",
        "fact_id": "education.meals.quality",
        "picked_organization_id": "41-school-pk-1",
        "text": "В столовой школы № 1 холодные обеды.",
        "applicant": { "full_name": "Сидорова Анна", "email": "not-an-email" },
    });
    let (status, problem) = send(client.post(format!("{api}/appeals")).json_body(&submission)).await;
    assert_eq!((status, problem["error"].clone()), (401, json!("unauthenticated")), "{problem}");

    // A field intake refuses, by its name in the body.
    let (status, problem) =
        send(client.post(format!("{api}/appeals")).header("x-api-key", PARTNER_KEY).json_body(&submission)).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["fields"][0]["field"], "applicant.email", "{problem}");

    let mut submission = submission;
    submission["applicant"]["email"] = json!("anna.sidorova@example.ru");
    let (status, registered) =
        send(client.post(format!("{api}/appeals")).header("x-api-key", PARTNER_KEY).json_body(&submission)).await;
    assert_eq!(status, 201, "{registered}");
    let appeal_id = registered["appeal_id"].as_str().unwrap().to_owned();
    let number = registered["number"].as_i64().unwrap();
    assert!(registered["registered_at"].as_str().unwrap().ends_with("+12:00"), "{registered}");
    // The same request id again: the same appeal.
    let (status, again) =
        send(client.post(format!("{api}/appeals")).header("x-api-key", PARTNER_KEY).json_body(&submission)).await;
    assert_eq!((status, again["number"].as_i64()), (201, Some(number)), "{again}");

    // Its status, by id at once, by number once routed; nothing of the applicant in it.
    let (status, appeal) =
        send(client.get(format!("{api}/appeals/{appeal_id}")).header("x-api-key", PARTNER_KEY)).await;
    assert_eq!(status, 200, "{appeal}");
    assert_eq!((appeal["number"].as_i64(), appeal["state"].as_str()), (Some(number), Some("open")));
    let deadline = Instant::now() + Duration::from_secs(30);
    let appeal = loop {
        let (status, appeal) =
            send(client.get(format!("{api}/appeals/{number}")).header("x-api-key", PARTNER_KEY)).await;
        if status == 200 && appeal["organization"]["id"] == "41-school-pk-1" {
            break appeal;
        }
        assert!(Instant::now() < deadline, "not routed in time: {status} {appeal}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(appeal["appeal_id"], appeal_id.as_str());
    let text = appeal.to_string();
    assert!(!text.contains("Сидорова") && !text.contains("anna.sidorova"), "{text}");

    // Without a credential, refused; with another partner's key, not found.
    let (status, _) = send(client.get(format!("{api}/appeals/{appeal_id}"))).await;
    assert_eq!(status, 401);
    let (status, _) = send(client.get(format!("{api}/appeals/{appeal_id}")).header("x-api-key", OTHER_KEY)).await;
    assert_eq!(status, 404);
    let (status, _) = send(client.get(format!("{api}/appeals/{number}")).header("x-api-key", OTHER_KEY)).await;
    assert_eq!(status, 404);

    // The applicant's link (as notify signs it for the registration e-mail) reads this appeal
    // and no other; a forged one is refused.
    let links = LinkKey::new(LINK_KEY.as_bytes());
    let link = |appeal_id: &str| {
        let expires_at = chrono::Utc::now().timestamp() + 3600;
        links.sign(&AppealLink { appeal_id: appeal_id.into(), subject: "partner-fixmystreet".into(), expires_at })
    };
    let (status, appeal) =
        send(client.get(format!("{api}/appeals/{appeal_id}")).header("x-appeal-link", link(&appeal_id))).await;
    assert_eq!((status, appeal["number"].as_i64()), (200, Some(number)), "{appeal}");
    let (status, _) =
        send(client.get(format!("{api}/appeals/{number}")).header("x-appeal-link", link(&appeal_id))).await;
    assert_eq!(status, 200, "by number too");
    let (status, _) = send(
        client
            .get(format!("{api}/appeals/{number}"))
            .header("x-appeal-link", link("0193f2a4-0000-7000-8000-000000000000")),
    )
    .await;
    assert_eq!(status, 404, "a link opens its own appeal only");
    let forged = LinkKey::new(b"not the key").sign(&AppealLink {
        appeal_id: appeal_id.clone(),
        subject: "partner-fixmystreet".into(),
        expires_at: chrono::Utc::now().timestamp() + 3600,
    });
    let (status, _) = send(client.get(format!("{api}/appeals/{appeal_id}")).header("x-appeal-link", forged)).await;
    assert_eq!(status, 401);

    // A platform token is passed on: the services decide. The answering school's staff read it.
    let coordinator = testing::token("school-coordinator", "41-school-pk-1", "41", &[Role::Coordinator]);
    let (status, _) =
        send(client.get(format!("{api}/appeals/{appeal_id}")).header("authorization", format!("Bearer {coordinator}")))
            .await;
    assert_eq!(status, 200);
    let (status, _) =
        send(client.get(format!("{api}/appeals/{appeal_id}")).header("authorization", "Bearer not-a-token")).await;
    assert_eq!(status, 401);

    web.cancel();
    platform.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_and_schemathesis_finds_no_server_error() {
    let venv = tools();
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    // Hundreds of requests in seconds from one address: above the rate limit, which would only
    // answer 429s (documented, and no server error, but not what is tested here).
    let (base, web) = serve_web_with(&platform, |open311| {
        open311.per_minute = 100_000;
        open311.burst = 10_000;
    })
    .await;
    let client = reqwest::Client::new();

    let response = client.get(format!("{base}/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let document = response.text().await.unwrap();
    let parsed: Value = serde_json::from_str(&document).unwrap();
    assert!(parsed["openapi"].as_str().unwrap().starts_with("3."), "{parsed}");
    let file = std::env::temp_dir().join(testing::unique("openapi")).with_extension("json");
    std::fs::write(&file, &document).unwrap();

    let validator = Command::new(venv.join("bin/openapi-spec-validator")).arg(&file).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&validator.stdout), String::from_utf8_lossy(&validator.stderr));
    assert!(validator.status.success(), "openapi-spec-validator: {said}");
    assert!(said.contains("OK"), "{said}");

    // Against the live server, with a partner's key so that submissions reach intake. The run is
    // blocking: off the runtime's threads, which serve it.
    let started = Instant::now();
    let schemathesis = venv.join("bin/schemathesis");
    let url = format!("{base}/api/v1/openapi.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            // Its example database goes to the working directory: the build's, not the sources.
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .args(["run", &url, "--url", &base])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--max-examples", "12", "--generation-deterministic", "--request-timeout", "10", "--workers", "1"])
            .args(["--header", &format!("X-Api-Key: {PARTNER_KEY}")])
            .arg("--no-color")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{said}");
    assert!(output.status.success(), "schemathesis found failures:\n{said}");
    assert!(said.contains("passed"), "{said}");
    assert!(!said.contains("Server error"), "{said}");
    println!("schemathesis took {:.1} s", started.elapsed().as_secs_f64());
    assert!(started.elapsed() < Duration::from_secs(60), "schemathesis is kept under a minute");

    let _ = std::fs::remove_file(file);
    web.cancel();
    platform.stop().await.unwrap();
}

/// A JSON body without reqwest's `json` feature.
trait JsonBody {
    fn json_body(self, value: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, value: &Value) -> Self {
        self.header("content-type", "application/json").body(value.to_string())
    }
}

//! The registration letter's link to the appeal's page with nothing configured for it but the
//! web's section and the development secret, as under `pos up`: notify takes the web's public
//! address and derives the key the web derives, so the link opens.

use std::sync::Arc;

use pos_notify::directory::StaticDirectory;
use pos_notify::plan::AppealLinks;
use pos_notify::{NotifyConfig, Wake};
use pos_platform::appeal_link::LinkKey;
use pos_platform::config::{AuthConfig, Secret};
use pos_platform::testing::{TempDir, postgres_db};
use sqlx::Row;

use crate::helpers::*;

/// The registration letter's body for a new appeal of the account `widget-ab`, planned under
/// the notify section `file` yields.
async fn registration_letter(file: &std::path::Path, auth: &AuthConfig) -> (String, String) {
    let config = NotifyConfig::load(Some(file)).expect("the configuration reads");
    let db = postgres_db("notify", &pos_notify::MIGRATIONS).await;
    let mut planner = planner(&db, Arc::new(Wake::default()), StaticDirectory::default());
    planner.appeal_links = AppealLinks::new(&config, auth);
    let appeal_id = uuid::Uuid::now_v7().to_string();
    let mut event = received(&appeal_id, 1001, "applicant@example.org");
    event.applicant.as_mut().expect("an applicant").account_id = "widget-ab".into();
    deliver(&db, &planner, &event, &appeal_id).await;
    let body: String = sqlx::query("SELECT body FROM deliveries WHERE recipient = 'applicant@example.org'")
        .fetch_one(db.pool())
        .await
        .expect("the registration letter")
        .get("body");
    (appeal_id, body)
}

/// The token of the link under `base` in `body`, checked with the key the web derives from the
/// same auth settings when `web.citizen.appeal_link_key` is unset.
fn opens(body: &str, base: &str, auth: &AuthConfig, appeal_id: &str) {
    let start = body.find(&format!("{base}/appeal/")).unwrap_or_else(|| panic!("no link under {base}: {body}"));
    let token: String = body[start + base.len() + "/appeal/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    let key = LinkKey::from_config(None, auth).expect("derived from auth.hs256_secret");
    let granted = key.verify(&token, chrono::Utc::now().timestamp()).expect("the web accepts the link");
    assert_eq!((granted.appeal_id.as_str(), granted.subject.as_str()), (appeal_id, "widget-ab"));
}

#[tokio::test]
async fn the_registration_letter_links_under_the_webs_address_with_only_web_configured() {
    let dir = TempDir::new();
    let auth = AuthConfig { hs256_secret: Some(Secret::new("development secret")), ..AuthConfig::default() };

    // The web's public URL.
    let file = dir.0.join("public.toml");
    std::fs::write(&file, "[web]\npublic_url = \"https://pos.example.ru/\"\n").unwrap();
    let (appeal_id, body) = registration_letter(&file, &auth).await;
    opens(&body, "https://pos.example.ru", &auth, &appeal_id);

    // No public URL: the address the web listens on, as the web names itself.
    let file = dir.0.join("addr.toml");
    std::fs::write(&file, "[web]\naddr = \"127.0.0.1:18080\"\n").unwrap();
    let (appeal_id, body) = registration_letter(&file, &auth).await;
    opens(&body, "http://127.0.0.1:18080", &auth, &appeal_id);

    // notify's own setting wins.
    let file = dir.0.join("own.toml");
    std::fs::write(&file, "[web]\naddr = \"127.0.0.1:18080\"\n[notify]\npublic_url = \"https://appeals.example.ru\"\n")
        .unwrap();
    let (appeal_id, body) = registration_letter(&file, &auth).await;
    opens(&body, "https://appeals.example.ru", &auth, &appeal_id);

    // Neither a link key nor the development secret: no link, whatever the address.
    let config = NotifyConfig::load(Some(&file)).unwrap();
    assert!(AppealLinks::new(&config, &AuthConfig::default()).is_none());
}

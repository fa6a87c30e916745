//! Open311 GeoReport v2 against the embedded platform, as an Open311 client (FixMyStreet and
//! the like) talks to it over HTTP: discovery, the services list and one service's attributes,
//! a request posted with the partner's key and read back (and its retry, one appeal), the answer
//! approved in the cabinet (gRPC as staff) and the request then closed with the answer as its
//! notes. No key, a wrong key, another partner's key: refused or not found. The XML variants say
//! the same as the JSON ones.

use std::sync::Arc;
use std::time::Duration;

use pos_e2e::{Mode, Platform};
use pos_platform::auth::Role;
use pos_platform::cache::MemoryCache;
use pos_platform::config::Secret;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_web::citizen::CitizenConfig;
use pos_web::open311::Open311Config;
use pos_web::open311::config::PartnerConfig;
use pos_web::{App, WebConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const PARTNER_KEY: &str = "fixmystreet-test-key-0123456789";
pub const OTHER_KEY: &str = "another-partner-key-9876543210";
/// The appeal links' key (notify's `appeal_link_key`), for the JSON API's `X-Appeal-Link`.
pub const LINK_KEY: &str = "open311-test-link-key";
const CENTER: &str = "41-kcioko";
const FACT: &str = "education.e-diary.access";

/// The web service with two partners on the embedded `platform`; its base URL, and the token
/// that stops it.
pub async fn serve_web(platform: &Platform) -> (String, CancellationToken) {
    serve_web_with(platform, |_| {}).await
}

/// [`serve_web`] with the doors' settings changed by `change`.
pub async fn serve_web_with(
    platform: &Platform,
    change: impl FnOnce(&mut Open311Config),
) -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let partner = |name: &str, key: &str| PartnerConfig {
        name: name.into(),
        key_sha256: hex::encode(Sha256::digest(key.as_bytes())),
        source: String::new(),
    };
    let mut open311 = Open311Config {
        partners: vec![partner("fixmystreet", PARTNER_KEY), partner("other", OTHER_KEY)],
        ..Open311Config::default()
    };
    change(&mut open311);
    let config = WebConfig {
        addr,
        grpc_endpoint: platform.endpoint.clone(),
        open311,
        citizen: CitizenConfig { appeal_link_key: Some(Secret::new(LINK_KEY)), ..CitizenConfig::default() },
        ..WebConfig::default()
    };
    let app = App::new(config, platform.channel(), Arc::new(MemoryCache::new()), Some(testing::authenticator()), addr);
    let shutdown = CancellationToken::new();
    tokio::spawn(pos_web::serve(app, listener, shutdown.clone()));
    (format!("http://{addr}"), shutdown)
}

/// GET `url`: the status and the body.
async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

async fn post_form(client: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let body = serde_urlencoded::to_string(fields).unwrap();
    let response =
        client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The request `number` as the partner with `key` reads it, once `ready` says so (routing and
/// the status events take a moment); the last answer otherwise.
async fn request_until(
    client: &reqwest::Client,
    base: &str,
    number: &str,
    key: &str,
    ready: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let url = format!("{base}/open311/v2/requests/{number}.json?api_key={key}");
    let mut last = (0, String::new());
    for _ in 0..150 {
        last = get(client, &url).await;
        if ready(last.0, &last.1) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open311_client_posts_a_request_and_follows_it_to_the_answer() {
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let (base, web) = serve_web(&platform).await;
    let client = reqwest::Client::new();
    let v2 = format!("{base}/open311/v2");

    // Discovery.
    let (status, body) = get(&client, &format!("{v2}/discovery.json")).await;
    assert_eq!(status, 200, "{body}");
    let discovery = json(&body);
    assert_eq!(discovery["endpoints"][0]["url"], format!("{base}/open311/v2"));
    assert!(discovery["endpoints"][0]["formats"].as_array().unwrap().contains(&"text/xml".into()));

    // The services: the facts, grouped by category and subcategory; metadata where the
    // applicant picks the organization.
    let (status, body) = get(&client, &format!("{v2}/services.json?jurisdiction_id=41")).await;
    assert_eq!(status, 200, "{body}");
    let services = json(&body);
    let service = |code: &str| services.as_array().unwrap().iter().find(|s| s["service_code"] == code).cloned();
    let diary = service(FACT).expect("the e-diary fact is a service");
    assert_eq!(diary["service_name"], "Проблемы с доступом к электронному дневнику");
    assert_eq!(diary["group"], "Образование / Электронный дневник");
    assert_eq!(diary["metadata"], false);
    assert_eq!(service("education.meals.quality").expect("a picked-school fact")["metadata"], true);

    // A picked-school service lists the region's schools to pick from.
    let (status, body) = get(&client, &format!("{v2}/services/education.meals.quality.json?jurisdiction_id=41")).await;
    assert_eq!(status, 200, "{body}");
    let attribute = &json(&body)["attributes"][0];
    assert_eq!(attribute["code"], "organization_id");
    assert_eq!(attribute["required"], true);
    assert_eq!(attribute["datatype"], "singlevaluelist");
    assert!(attribute["values"].as_array().unwrap().iter().any(|v| v["key"] == "41-school-pk-1"), "{body}");
    let (status, body) = get(&client, &format!("{v2}/services/no.such.fact.json")).await;
    assert_eq!((status, json(&body)[0]["code"].clone()), (404, 404.into()), "{body}");

    // The XML variant of the same list.
    let response = client.get(format!("{v2}/services.xml?jurisdiction_id=41")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/xml"));
    let xml = response.text().await.unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<services><service>"), "{xml}");
    assert!(xml.contains(&format!("<service_code>{FACT}</service_code>")), "{xml}");
    assert_eq!(xml.matches("<service>").count(), services.as_array().unwrap().len());

    // Posting needs a partner's key: none, or a wrong one, is refused with Open311's error body.
    let request = [
        ("jurisdiction_id", "41"),
        ("service_code", FACT),
        ("first_name", "Иван"),
        ("last_name", "Петров"),
        ("email", "ivan.petrov@example.ru"),
        ("phone", "+7 914 000-00-00"),
        ("description", "Не могу войти в электронный дневник сына. Мой СНИЛС 123-456-789 01."),
        ("address_string", "Петропавловск-Камчатский, ул. Ленина, 1"),
        ("request_id", "fms-report-1001"),
    ];
    for key in [None, Some("not-a-key")] {
        let mut fields = request.to_vec();
        if let Some(key) = key {
            fields.push(("api_key", key));
        }
        let (status, body) = post_form(&client, &format!("{v2}/requests.json"), &fields).await;
        assert_eq!(status, 403, "{body}");
        let error = json(&body);
        assert_eq!(error[0]["code"], 403);
        assert!(error[0]["description"].as_str().unwrap().contains("api_key"), "{body}");
    }
    let (status, body) = get(&client, &format!("{v2}/requests.json")).await;
    assert_eq!(status, 403, "reading requests needs the key too: {body}");

    // A field intake refuses comes back under its Open311 name.
    let mut wrong = request.to_vec();
    wrong.retain(|(k, _)| *k != "service_code" && *k != "request_id");
    wrong.extend([("service_code", "no.such.fact"), ("api_key", PARTNER_KEY)]);
    let (status, body) = post_form(&client, &format!("{v2}/requests.json"), &wrong).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body).as_array().unwrap().iter().any(|e| e["description"].as_str().unwrap().starts_with("service_code:")),
        "{body}"
    );

    // With the key: registered, the number as service_request_id; a retry is the same request.
    let mut fields = request.to_vec();
    fields.push(("api_key", PARTNER_KEY));
    let (status, body) = post_form(&client, &format!("{v2}/requests.json"), &fields).await;
    assert_eq!(status, 200, "{body}");
    let posted = json(&body);
    let number = posted[0]["service_request_id"].as_str().expect("service_request_id").to_owned();
    let appeal_id = posted[0]["token"].as_str().expect("token").to_owned();
    assert!(number.parse::<i64>().is_ok(), "{body}");
    let (status, body) = post_form(&client, &format!("{v2}/requests.json"), &fields).await;
    assert_eq!((status, json(&body)[0]["service_request_id"].as_str()), (200, Some(number.as_str())), "{body}");

    // Without a token of the client's own, a retry of the same form is recognised too.
    let untokened: Vec<_> = fields.iter().copied().filter(|(k, _)| *k != "request_id").collect();
    let (status, body) = post_form(&client, &format!("{v2}/requests.json"), &untokened).await;
    assert_eq!(status, 200, "{body}");
    let first = json(&body)[0]["service_request_id"].clone();
    assert_ne!(first.as_str(), Some(number.as_str()), "another request of the partner: {body}");
    let (status, body) = post_form(&client, &format!("{v2}/requests.json"), &untokened).await;
    assert_eq!((status, json(&body)[0]["service_request_id"].clone()), (200, first), "{body}");

    // The token tells the number at once.
    let (status, body) = get(&client, &format!("{v2}/tokens/{appeal_id}.json?api_key={PARTNER_KEY}")).await;
    assert_eq!((status, json(&body)[0]["service_request_id"].as_str()), (200, Some(number.as_str())), "{body}");

    // Read back by number once routed: open, with the answering organization; the SNILS masked,
    // and nothing of the applicant (name, e-mail, phone) in it.
    let (status, body) = request_until(&client, &base, &number, PARTNER_KEY, |s, b| {
        s == 200 && json(b)[0]["agency_responsible"].as_str().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(status, 200, "{body}");
    let read = &json(&body)[0];
    assert_eq!(read["service_request_id"], number.as_str());
    assert_eq!(read["status"], "open");
    assert_eq!(read["service_code"], FACT);
    assert_eq!(read["service_name"], "Проблемы с доступом к электронному дневнику");
    assert!(read["requested_datetime"].as_str().unwrap().ends_with("+12:00"), "Kamchatka time: {body}");
    assert!(read["updated_datetime"].as_str().unwrap().ends_with("+12:00"), "{body}");
    assert!(read["description"].as_str().unwrap().contains("***-***-*** **"), "masked: {body}");
    for personal in ["123-456-789", "Петров", "ivan.petrov", "+7 914"] {
        assert!(!body.contains(personal), "{personal} leaked: {body}");
    }

    // Another partner does not see it; without a key, refused.
    let (status, body) = get(&client, &format!("{v2}/requests/{number}.json?api_key={OTHER_KEY}")).await;
    assert_eq!(status, 404, "another partner's request: {body}");
    let (status, _) = get(&client, &format!("{v2}/tokens/{appeal_id}.json?api_key={OTHER_KEY}")).await;
    assert_eq!(status, 404);
    let (status, body) = get(&client, &format!("{v2}/requests/{number}.json")).await;
    assert_eq!((status, json(&body)[0]["code"].clone()), (403, 403.into()), "{body}");

    // The center answers: taken in work, prepared, sent for approval, approved by the head.
    let coordinator = testing::token("kcioko-coordinator", CENTER, "41", &[Role::Coordinator]);
    let head = testing::token("kcioko-head", CENTER, "41", &[Role::Head]);
    let mut ticketing = platform.ticketing();
    let key = Some(pb::get_ticket_request::Key::AppealId(appeal_id.clone()));
    let ticket = ticketing.get_ticket(outgoing(pb::GetTicketRequest { key }, &coordinator)).await.unwrap().into_inner();
    assert_eq!(ticket.organization.as_ref().unwrap().id, CENTER);
    assert_eq!(ticket.source, pb::Source::ExternalSystem as i32, "a partner's channel");
    let answer = "Здравствуйте! Доступ к электронному дневнику восстановлен, войдите через Госуслуги.";
    let v = |t: pb::Ticket| (t.id, t.version);
    let (id, version) = v(ticket);
    let request = pb::TakeInWorkRequest { ticket_id: id, expected_version: version };
    let (id, version) = v(ticketing.take_in_work(outgoing(request, &coordinator)).await.unwrap().into_inner());
    let request = pb::PrepareAnswerRequest {
        ticket_id: id,
        expected_version: version,
        answer: Some(pb::Answer {
            r#type: pb::events::AnswerType::Resolved as i32,
            text: answer.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (id, version) = v(ticketing.prepare_answer(outgoing(request, &coordinator)).await.unwrap().into_inner());
    let (status, body) = get(&client, &format!("{v2}/requests/{number}.json?api_key={PARTNER_KEY}")).await;
    assert_eq!((status, json(&body)[0]["status"].as_str()), (200, Some("open")), "a draft is not an answer: {body}");
    assert!(!body.contains(answer), "the draft is not shown: {body}");
    let request = pb::VersionRequest { ticket_id: id, expected_version: version };
    let (id, version) = v(ticketing.send_for_approval(outgoing(request, &coordinator)).await.unwrap().into_inner());
    let request = pb::ApproveRequest { ticket_id: id, expected_version: version, edited: None };
    ticketing.approve(outgoing(request, &head)).await.expect("approved");

    // Closed, the answer as the notes.
    let (status, body) =
        request_until(&client, &base, &number, PARTNER_KEY, |s, b| s == 200 && json(b)[0]["status"] == "closed").await;
    assert_eq!(status, 200, "{body}");
    let read = &json(&body)[0];
    assert_eq!(read["status"], "closed", "{body}");
    assert_eq!(read["status_notes"], answer);
    assert!(read["updated_datetime"].as_str().unwrap() >= read["requested_datetime"].as_str().unwrap(), "{body}");

    // The list: the partner's closed requests include it; another partner's list is empty.
    let (status, body) = get(&client, &format!("{v2}/requests.json?api_key={PARTNER_KEY}&status=closed")).await;
    assert_eq!(status, 200, "{body}");
    assert!(json(&body).as_array().unwrap().iter().any(|r| r["service_request_id"] == number.as_str()), "{body}");
    let (status, body) = get(&client, &format!("{v2}/requests.json?api_key={PARTNER_KEY}&status=open")).await;
    assert!(
        status == 200 && !json(&body).as_array().unwrap().iter().any(|r| r["service_request_id"] == number.as_str())
    );
    let (status, body) = get(&client, &format!("{v2}/requests.json?api_key={OTHER_KEY}")).await;
    assert_eq!((status, json(&body)), (200, serde_json::json!([])), "{body}");

    // And in XML.
    let (status, xml) = get(&client, &format!("{v2}/requests/{number}.xml?api_key={PARTNER_KEY}")).await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<service_requests><request>"), "{xml}");
    assert!(xml.contains("<status>closed</status>"), "{xml}");
    assert!(xml.contains(&format!("<service_request_id>{number}</service_request_id>")), "{xml}");
    let (status, xml) = get(&client, &format!("{v2}/requests/{number}.xml")).await;
    assert_eq!(status, 403);
    assert!(xml.contains("<errors><error><code>403</code>"), "{xml}");

    web.cancel();

    // A client over its quota gets Open311's error with Retry-After; the limit is per door.
    let (base, web) = serve_web_with(&platform, |open311| {
        open311.per_minute = 1;
        open311.burst = 2;
    })
    .await;
    let url = format!("{base}/open311/v2/discovery.xml");
    for _ in 0..2 {
        assert_eq!(get(&client, &url).await.0, 200);
    }
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(response.text().await.unwrap().contains("<errors><error><code>429</code>"));
    assert_eq!(get(&client, &format!("{base}/api/v1/regions")).await.0, 200, "the JSON API counts apart");
    web.cancel();
    platform.stop().await.unwrap();
}

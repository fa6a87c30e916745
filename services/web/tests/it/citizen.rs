//! The citizen's side against the embedded platform.
//!
//! - In Debian's Chromium (`browser/citizen.mjs`): a plain "school site" served from another
//!   port embeds the widget with the script snippet; a citizen fills it, sees a field error from
//!   intake beside its field, double-clicks submit, and gets one appeal, which lands in the
//!   school's New folder. The registration e-mail's link opens the appeal's page; after the
//!   school approves an answer (gRPC), the applicant rejects it with a comment and the ticket
//!   comes back as Returned. axe finds no serious violations on either page; screenshots
//!   `target/screenshots/widget.png` and `appeal-page.png`.
//! - The abuse limits under load from loopback: one contact hammering the form gets 429s with
//!   `Retry-After`, its forwarded IP is limited too, while another contact from another
//!   forwarded IP still registers an appeal; robots (the honeypot, a form sent too fast, a
//!   forged token) are refused politely; the same form sent twice is one appeal.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pos_e2e::{Mode, Options, Platform};
use pos_platform::auth::Role;
use pos_platform::cache::MemoryCache;
use pos_platform::config::Secret;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_web::citizen::CitizenConfig;
use pos_web::citizen::form_token::solve;
use pos_web::{App, WebConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::browser::{browser_dir, ensure_node_modules, screenshots_dir};

const SCHOOL: &str = "41-school-pk-1";
const LINK_KEY: &str = "citizen-test-link-key";

/// The web service on `listener` with `citizen` settings; stops with the token.
fn serve_web(platform: &Platform, listener: TcpListener, citizen: CitizenConfig) -> CancellationToken {
    let addr = listener.local_addr().unwrap();
    let config = WebConfig { addr, grpc_endpoint: platform.endpoint.clone(), citizen, ..WebConfig::default() };
    let app = App::new(config, platform.channel(), Arc::new(MemoryCache::new()), Some(testing::authenticator()), addr);
    let shutdown = CancellationToken::new();
    tokio::spawn(pos_web::serve(app, listener, shutdown.clone()));
    shutdown
}

/// A school's own site on another port (another origin): one page embedding the widget.
async fn school_site(widget_base: &str) -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let page = format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>МАОУ «Средняя школа № 1»</title></head>\
         <body><header><h1>МАОУ «Средняя школа № 1» Петропавловск-Камчатского</h1></header>\
         <main><h2>Обратная связь</h2><p>Напишите нам — ответим в срок.</p>\
         <script src=\"{widget_base}/widget.js\" data-organization=\"{SCHOOL}\" async></script></main></body></html>"
    );
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                () = token.cancelled() => return,
            };
            let page = page.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, stop)
}

fn config_file(dir: &Path, web_base: &str) -> PathBuf {
    let file = dir.join("citizen.toml");
    std::fs::write(
        &file,
        format!("[notify]\npoll_ms = 50\npublic_url = \"{web_base}\"\nappeal_link_key = \"{LINK_KEY}\"\n"),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_citizen_story_in_chromium() {
    let chromium = std::env::var("POS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "no Chromium at {chromium}: deploy/local/tools.sh installs Debian's");
    ensure_node_modules();

    let web_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_base = format!("http://{}", web_listener.local_addr().unwrap());
    let scratch = std::env::temp_dir().join(testing::unique("citizen"));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut options = Options::new(Mode::Embedded);
    options.config_file = Some(config_file(&scratch, &web_base));
    let platform = Platform::start_with(options).await.expect("platform starts");
    let citizen = CitizenConfig {
        appeal_link_key: Some(Secret::new(LINK_KEY)),
        // The browser fills the form faster than a person; the timing itself is tested below.
        min_fill_secs: 1,
        pow_bits: 14,
        ..CitizenConfig::default()
    };
    let web = serve_web(&platform, web_listener, citizen);
    let (site, site_stop) = school_site(&web_base).await;

    let screenshots = screenshots_dir();
    for shot in ["widget.png", "appeal-page.png"] {
        let _ = std::fs::remove_file(screenshots.join(shot));
    }
    let mut node = tokio::process::Command::new("node")
        .arg("citizen.mjs")
        .current_dir(browser_dir())
        .env("BASE_URL", &web_base)
        .env("SITE_URL", &site)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = node.stdin.take().unwrap();
    let mut stdout = BufReader::new(node.stdout.take().unwrap()).lines();
    let coordinator = testing::token("school-coordinator", SCHOOL, "41", &[Role::Coordinator]);
    let head = testing::token("school-head", SCHOOL, "41", &[Role::Head]);
    let system = testing::token("ops", "", "", &[Role::System]);
    let mut ticketing = platform.ticketing();
    let mut appeal_id = String::new();
    let mut output = Vec::new();
    let story = async {
        while let Some(line) = stdout.next_line().await.expect("node's output") {
            println!("browser: {line}");
            if let Some(number) = line.strip_prefix("SUBMITTED ") {
                let number: i64 = number.trim().parse().expect("a number");
                // One appeal, in the school's New folder.
                let mut new = Vec::new();
                for _ in 0..150 {
                    let request = pb::ListTicketsRequest {
                        organization_id: SCHOOL.into(),
                        folder: pb::Folder::New as i32,
                        ..Default::default()
                    };
                    new = ticketing.list_tickets(outgoing(request, &coordinator)).await.unwrap().into_inner().tickets;
                    if !new.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                assert_eq!(new.len(), 1, "a double click makes one appeal: {new:?}");
                let ticket = new.remove(0);
                assert_eq!(ticket.number, number);
                assert_eq!(ticket.source, pb::Source::SiteWidget as i32);
                assert_eq!(ticket.fact_id, "education.meals.quality");
                appeal_id = ticket.appeal_id.clone();
                let appeal = platform
                    .intake()
                    .get_appeal(outgoing(pb::GetAppealRequest { appeal_id: appeal_id.clone() }, &system))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(appeal.attachments.len(), 1, "the uploaded file came with the appeal");
                assert!(appeal.applicant.unwrap().account_id.starts_with("widget-"));

                // The registration e-mail carries the link to the appeal's page.
                let mut link = None;
                for _ in 0..150 {
                    link = pos_e2e::mail::messages_in(&platform.infra.config.data_dir.join("mailbox"))
                        .into_iter()
                        .find_map(|(_, body)| {
                            (body.contains(&number.to_string()))
                                .then(|| body.split_whitespace().find(|w| w.contains("/appeal/v1.")).map(str::to_owned))
                                .flatten()
                        });
                    if link.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let link = link.expect("the registration e-mail has the appeal's link");
                assert!(link.starts_with(&format!("{web_base}/appeal/v1.")), "{link}");

                // The school takes it in work and asks the applicant for more.
                let v = |t: pb::Ticket| (t.id, t.version);
                let (id, version) = v(ticket);
                let request = pb::TakeInWorkRequest { ticket_id: id, expected_version: version };
                let (id, version) =
                    v(ticketing.take_in_work(outgoing(request, &coordinator)).await.unwrap().into_inner());
                let request = pb::CommentRequest {
                    ticket_id: id,
                    expected_version: version,
                    comment: "Уточните, пожалуйста, в какую смену учится ребёнок.".into(),
                    attachment_ids: Vec::new(),
                };
                ticketing.request_information(outgoing(request, &coordinator)).await.expect("information requested");
                stdin.write_all(format!("LINK {link}\n").as_bytes()).await.unwrap();
                stdin.flush().await.unwrap();
            }
            if line == "INFORMED" {
                // The applicant's information is in the history, in their words.
                let key = || Some(pb::get_ticket_request::Key::AppealId(appeal_id.clone()));
                let history = ticketing
                    .get_ticket_history(outgoing(pb::GetTicketRequest { key: key() }, &system))
                    .await
                    .unwrap()
                    .into_inner()
                    .entries;
                let received =
                    history.iter().find(|e| e.action == "information received").expect("information received");
                assert!(received.actor.starts_with("widget-"), "the applicant themselves: {received:?}");
                assert_eq!(received.comment, "Во вторую смену, 3 «Б» класс.");

                // The school answers with a file: prepared, sent for approval, approved.
                let file = b"Akt proverki stolovoi: narushenii net.\n".to_vec();
                let parts = vec![
                    pb::UploadAttachmentRequest {
                        part: Some(pb::upload_attachment_request::Part::Meta(pb::AttachmentMeta {
                            file_name: "акт-проверки.txt".into(),
                            size: file.len() as i64,
                        })),
                    },
                    pb::UploadAttachmentRequest { part: Some(pb::upload_attachment_request::Part::Chunk(file)) },
                ];
                let uploaded = platform
                    .intake()
                    .upload_attachment(outgoing(futures::stream::iter(parts), &coordinator))
                    .await
                    .expect("the school's file uploaded")
                    .into_inner();
                let ticket = ticketing
                    .get_ticket(outgoing(pb::GetTicketRequest { key: key() }, &system))
                    .await
                    .unwrap()
                    .into_inner();
                let v = |t: pb::Ticket| (t.id, t.version);
                let (id, version) = v(ticket);
                let request = pb::PrepareAnswerRequest {
                    ticket_id: id,
                    expected_version: version,
                    answer: Some(pb::Answer {
                        r#type: pb::events::AnswerType::Resolved as i32,
                        text: "Здравствуйте! Меню столовой проверено, повар заменён. Приглашаем вас на дегустацию в четверг.".into(),
                        attachment_ids: vec![uploaded.attachment_id],
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let (id, version) =
                    v(ticketing.prepare_answer(outgoing(request, &coordinator)).await.unwrap().into_inner());
                let request = pb::VersionRequest { ticket_id: id, expected_version: version };
                let (id, version) =
                    v(ticketing.send_for_approval(outgoing(request, &coordinator)).await.unwrap().into_inner());
                let request = pb::ApproveRequest { ticket_id: id, expected_version: version, edited: None };
                ticketing.approve(outgoing(request, &head)).await.expect("approved");
                stdin.write_all(b"ANSWERED\n").await.unwrap();
                stdin.flush().await.unwrap();
            }
            output.push(line);
        }
        node.wait().await.expect("node exits")
    };
    let status =
        tokio::time::timeout(Duration::from_secs(240), story).await.expect("the browser story finishes in time");
    assert!(status.success(), "the browser story failed: {status}");
    assert_eq!(output.last().map(String::as_str), Some("DONE"));
    for shot in ["widget.png", "appeal-page.png"] {
        assert!(screenshots.join(shot).metadata().map(|m| m.len() > 10_000).unwrap_or(false), "{shot} saved");
    }

    // The applicant's rejection sent the ticket back for re-review.
    let key = Some(pb::get_ticket_request::Key::AppealId(appeal_id.clone()));
    let ticket = ticketing.get_ticket(outgoing(pb::GetTicketRequest { key }, &system)).await.unwrap().into_inner();
    assert_eq!(ticket.folder, pb::Folder::Returned as i32, "{ticket:?}");
    assert_eq!(ticket.review_round, 2);

    site_stop.cancel();
    web.cancel();
    platform.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(scratch);
}

/// A fresh form from the widget: its token and the page's HTML.
async fn fresh_form(client: &reqwest::Client, base: &str, forwarded: &str) -> String {
    let page = client
        .get(format!("{base}/widget?organization={SCHOOL}"))
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors *"), "the widget may be framed: {csp}");
    assert!(!page.headers().contains_key("x-frame-options"));
    assert!(!page.headers().contains_key("set-cookie"), "the widget sets no cookies");
    let html = page.text().await.unwrap();
    let start = html.find("name=\"token\" value=\"").expect("a token field") + "name=\"token\" value=\"".len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

fn submission(token: &str, pow: &str, email: &str, extra: &[(&str, &str)]) -> String {
    let mut fields = vec![
        ("token", token),
        ("pow", pow),
        ("organization", SCHOOL),
        ("category_id", "education"),
        ("subcategory_id", "education.meals"),
        ("fact_id", "education.meals.quality"),
        ("picked_organization_id", SCHOOL),
        ("text", "В столовой холодные обеды."),
        ("full_name", "Иванова Мария Петровна"),
        ("email", email),
        ("consent", "yes"),
        ("website", ""),
    ];
    for (name, value) in extra {
        fields.retain(|(n, _)| n != name);
        fields.push((name, value));
    }
    serde_urlencoded::to_string(fields).unwrap()
}

async fn post(client: &reqwest::Client, base: &str, forwarded: &str, body: String) -> (u16, Option<u64>, String) {
    let response = client
        .post(format!("{base}/widget"))
        .header("x-forwarded-for", forwarded)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, response.text().await.unwrap())
}

fn number_in(html: &str) -> Option<String> {
    let start = html.find("id=\"appeal-number\">")? + "id=\"appeal-number\">".len();
    Some(html[start..start + html[start..].find('<')?].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_form_abuse_limits_hold_under_load() {
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let citizen = CitizenConfig {
        // The test talks through "a load balancer" on loopback, so each request names its client.
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        min_fill_secs: 1,
        pow_bits: 10,
        ..CitizenConfig::default()
    };
    let (ip_burst, contact_burst) = (citizen.ip_burst, citizen.contact_burst);
    let web = serve_web(&platform, listener, citizen);
    let client = reqwest::Client::new();

    // Only the widget may be framed: the cabinet keeps refusing frames.
    let cabinet = client.get(format!("{base}/cabinet/sign-in")).send().await.unwrap();
    assert_eq!(cabinet.headers()["x-frame-options"], "DENY");
    assert!(cabinet.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let script = client.get(format!("{base}/widget.js")).send().await.unwrap();
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(script.text().await.unwrap().contains("'/widget' + query"));

    // A federal body's form asks for the citizen's region.
    let federal = client.get(format!("{base}/widget?organization=rosobrnadzor")).send().await.unwrap();
    let federal = federal.text().await.unwrap();
    assert!(
        federal.contains("<select id=\"region\" name=\"region_code\" required") && federal.contains("Камчатский край")
    );
    let missing = client.get(format!("{base}/widget?organization=no-such-school")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // Robots are refused politely: a forged token, the honeypot, a form sent at once.
    let token = fresh_form(&client, &base, "198.51.100.1").await;
    let pow = solve(&token, 10);
    let (status, _, html) = post(&client, &base, "198.51.100.1", submission(&token, &pow, "a@example.org", &[])).await;
    assert_eq!(status, 422, "sent too fast");
    assert!(html.contains("слишком быстро"), "{html}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let honeypot = submission(&token, &pow, "a@example.org", &[("website", "http://spam.example")]);
    let (status, _, html) = post(&client, &base, "198.51.100.1", honeypot).await;
    assert_eq!(status, 403);
    assert!(html.contains("Форма не принята"));
    let forged = format!("{}0", &token[..token.len() - 1]);
    let (status, ..) = post(&client, &base, "198.51.100.1", submission(&forged, &pow, "a@example.org", &[])).await;
    assert_eq!(status, 403);
    let (status, _, html) = post(&client, &base, "198.51.100.1", submission(&token, "1", "a@example.org", &[])).await;
    assert_eq!(status, 422, "no proof of work");
    assert!(html.contains("защита от роботов"));

    // The same form twice is one appeal.
    let (status, _, first) = post(&client, &base, "198.51.100.1", submission(&token, &pow, "a@example.org", &[])).await;
    assert_eq!(status, 200, "{first}");
    let (_, _, second) = post(&client, &base, "198.51.100.1", submission(&token, &pow, "a@example.org", &[])).await;
    assert_eq!(number_in(&first), number_in(&second));
    assert!(number_in(&first).is_some());

    // One contact hammers the form from one forwarded IP.
    let hammer_token = fresh_form(&client, &base, "203.0.113.5").await;
    let hammer_pow = solve(&hammer_token, 10);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let requests = 200;
    let mut tasks = Vec::new();
    for _ in 0..requests {
        let (client, base, body) =
            (client.clone(), base.clone(), submission(&hammer_token, &hammer_pow, "spam@example.org", &[]));
        tasks.push(tokio::spawn(async move { post(&client, &base, "203.0.113.5", body).await }));
    }
    let (mut ok, mut limited) = (0, 0);
    for task in tasks {
        let (status, retry, _) = task.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert!(retry.is_some_and(|s| s >= 1), "429 says when to come back");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let elapsed = started.elapsed();
    println!(
        "load: {requests} submissions of one contact from one IP in {elapsed:?} ({:.0}/s): {ok} accepted, {limited} limited (429)",
        requests as f64 / elapsed.as_secs_f64()
    );
    assert!(ok as u32 <= contact_burst.min(ip_burst), "at most the burst got through: {ok}");
    assert_eq!(ok + limited, requests);

    // The hammering IP is limited whatever contact it names (right away: the limit refills at
    // one request a second).
    let other = submission(&hammer_token, &hammer_pow, "other@example.org", &[]);
    let (status, retry, html) = post(&client, &base, "203.0.113.5", other).await;
    assert_eq!((status, retry.is_some()), (429, true));
    assert!(html.contains("Слишком много обращений"));

    // Meanwhile a citizen elsewhere registers an appeal.
    let token = fresh_form(&client, &base, "203.0.113.77").await;
    let pow = solve(&token, 10);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, html) =
        post(&client, &base, "203.0.113.77", submission(&token, &pow, "maria@example.org", &[])).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Обращение зарегистрировано") && number_in(&html).is_some());

    // And the contact that hammered is limited from any IP.
    let token = fresh_form(&client, &base, "192.0.2.10").await;
    let pow = solve(&token, 10);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, ..) = post(&client, &base, "192.0.2.10", submission(&token, &pow, "SPAM@example.org", &[])).await;
    assert_eq!(status, 429, "the contact's limit follows it to another IP");

    web.cancel();
    platform.stop().await.unwrap();
}

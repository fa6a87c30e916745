//! The cabinet's story in Debian's Chromium (`browser/cabinet.mjs`, playwright-core): sign-in,
//! a new message appearing live in New with ⚡ and its deadline, assignment, a stale command,
//! the answer returned once and approved, the history, another organization refused by URL, and
//! forms without the CSRF token refused; and the report (`browser/report.mjs`). Screenshots of
//! the sign-in, the list, the card and the report are saved to `target/screenshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform, e_diary_appeal};
use pos_platform::auth::Role;
use pos_platform::cache::MemoryCache;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_client::NotifyServiceClient;
use pos_web::{App, WebConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// `npm ci` when the node modules are missing (deploy/local/tools.sh runs it too).
pub fn ensure_node_modules() {
    let dir = browser_dir();
    if dir.join("node_modules/playwright-core/package.json").exists() && dir.join("node_modules/axe-core").exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm runs (Node.js is installed by deploy/local/tools.sh)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

/// Debian's Chromium (or `POS_CHROMIUM`), with the browser tests' node modules in place.
pub fn chromium() -> String {
    let chromium = std::env::var("POS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "no Chromium at {chromium}: deploy/local/tools.sh installs Debian's");
    ensure_node_modules();
    chromium
}

/// The web service of `platform` on a free loopback port, with the development sign-in and
/// `change` made to its settings: its address, and what stops it.
pub async fn serve_cabinet(
    platform: &Platform,
    change: impl FnOnce(&mut WebConfig),
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config =
        WebConfig { addr, grpc_endpoint: platform.endpoint.clone(), dev_sign_in: true, ..WebConfig::default() };
    change(&mut config);
    let app = App::new(config, platform.channel(), Arc::new(MemoryCache::new()), Some(testing::authenticator()), addr);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(pos_web::serve(app, listener, shutdown.clone()));
    (addr, shutdown, server)
}

/// Runs `browser/<script>` in Chromium against the cabinet at `addr` with `env`, within
/// `limit`: its output printed, its success and its last line `DONE` required, and each of
/// `shots` (removed before) saved in the screenshots folder. Returns what it printed.
pub async fn run_story(
    script: &str,
    addr: SocketAddr,
    env: &[(&str, &str)],
    shots: &[&str],
    limit: Duration,
) -> String {
    let chromium = chromium();
    let screenshots = screenshots_dir();
    for shot in shots {
        let _ = std::fs::remove_file(screenshots.join(shot));
    }
    let node = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(browser_dir())
        .env("BASE_URL", format!("http://{addr}"))
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(limit, node).await.expect("the browser story finishes in time").expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    for line in stdout.lines() {
        println!("browser: {line}");
    }
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{script} failed: {}", output.status);
    assert_eq!(stdout.lines().last(), Some("DONE"));
    for shot in shots {
        assert!(screenshots.join(shot).metadata().map(|m| m.len() > 10_000).unwrap_or(false), "{shot} saved");
    }
    stdout
}

pub fn screenshots_dir() -> PathBuf {
    // target/tmp → target/screenshots
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cabinet_story_in_chromium() {
    let chromium = std::env::var("POS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "no Chromium at {chromium}: deploy/local/tools.sh installs Debian's");
    ensure_node_modules();

    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = WebConfig {
        addr,
        grpc_endpoint: platform.endpoint.clone(),
        dev_sign_in: true,
        live_poll_secs: 1,
        ..WebConfig::default()
    };
    let app = App::new(config, platform.channel(), Arc::new(MemoryCache::new()), Some(testing::authenticator()), addr);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(pos_web::serve(app, listener, shutdown.clone()));

    let screenshots = screenshots_dir();
    println!("screenshots: {}", screenshots.display());
    let mut node = tokio::process::Command::new("node")
        .arg("cabinet.mjs")
        .current_dir(browser_dir())
        .env("BASE_URL", format!("http://{addr}"))
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
    let mut appeal_id = String::new();
    let mut output = Vec::new();
    let story = async {
        while let Some(line) = stdout.next_line().await.expect("node's output") {
            println!("browser: {line}");
            if line == "SUBMIT" {
                let operator = testing::token("operator-1", "", "41", &[Role::Operator]);
                let submitted = platform
                    .intake()
                    .submit_appeal(outgoing(e_diary_appeal(&testing::unique("web")), &operator))
                    .await
                    .expect("appeal accepted")
                    .into_inner();
                appeal_id = submitted.appeal_id;
                stdin.write_all(format!("SUBMITTED {}\n", submitted.number).as_bytes()).await.unwrap();
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
    for shot in ["sign-in.png", "list.png", "card.png"] {
        assert!(screenshots.join(shot).metadata().map(|m| m.len() > 10_000).unwrap_or(false), "{shot} saved");
    }

    // What the browser did is what the services recorded, each step by its own person.
    let system = testing::token("ops", KAMCHATKA_CENTER, "", &[Role::System]);
    let key = pb::get_ticket_request::Key::AppealId(appeal_id.clone());
    let history = platform
        .ticketing()
        .get_ticket_history(outgoing(pb::GetTicketRequest { key: Some(key) }, &system))
        .await
        .expect("history")
        .into_inner()
        .entries;
    let steps: Vec<(&str, &str)> = history.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
    assert_eq!(
        steps[1..],
        [
            ("executor assigned", "dev-coordinator"),
            ("taken in work", "dev-executor"),
            ("answer prepared", "dev-executor"),
            ("sent for approval", "dev-executor"),
            ("returned for rework", "dev-head"),
            ("answer prepared", "dev-executor"),
            ("sent for approval", "dev-executor"),
            ("approved", "dev-head"),
        ]
    );

    // The approved answer goes to the applicant.
    let notify = NotifyServiceClient::new(platform.channel());
    let ops = testing::token("ops", "", "", &[Role::System]);
    testing::eventually(Duration::from_secs(30), "the applicant is e-mailed the answer", || {
        let (mut notify, ops, appeal_id) = (notify.clone(), ops.clone(), appeal_id.clone());
        async move {
            let request = pb::ListDeliveriesRequest { appeal_id, page_size: 100, ..Default::default() };
            notify.list_deliveries(outgoing(request, &ops)).await.is_ok_and(|r| {
                r.into_inner().deliveries.iter().any(|d| d.event_type == "ticket.answer_approved" && d.status == "sent")
            })
        }
    })
    .await;

    shutdown.cancel();
    server.await.unwrap().unwrap();
    platform.stop().await.unwrap();
}

/// The report in Chromium (`browser/report.mjs`): three appeals of the Kamchatka center taken
/// through the services first — one answered by the executor, one answered by the coordinator
/// and sent back by the applicant for re-review, one left new — then the head reaches Отчёты by
/// keyboard, finds these figures on the page and in the downloaded CSV, filters by executor, and
/// an executor is refused. The screenshot is saved to `target/screenshots/report.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_in_chromium() {
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let center = KAMCHATKA_CENTER;
    let token = |subject: &str, role: Role| testing::token(subject, center, "41", &[role]);
    let (coordinator, head, executor) = (
        token("dev-coordinator", Role::Coordinator),
        token("dev-head", Role::Head),
        token("dev-executor", Role::Executor),
    );
    let applicant = testing::token("esia-1001", "", "41", &[Role::Applicant]);
    let member = pb::StaffMember {
        subject: "dev-executor".into(),
        organization_id: center.into(),
        full_name: "Петров Иван".into(),
        email: "petrov@example.org".into(),
        roles: vec!["executor".into()],
        active: true,
    };
    let mut ticketing = platform.ticketing();
    ticketing.upsert_staff(outgoing(member, &token("dev-org_admin", Role::OrgAdmin))).await.expect("executor added");
    let run = testing::unique("report");
    let appeals = platform.submit_many(3, 3, |i| e_diary_appeal(&format!("{run}-{i}"))).await.expect("submitted");
    let mut tickets = Vec::new();
    for appeal_id in &appeals {
        tickets.push(platform.wait_for_ticket(appeal_id, center, Duration::from_secs(30)).await.expect("a ticket"));
    }
    let answer = || pb::Answer {
        r#type: pos_proto::v1::events::AnswerType::Resolved as i32,
        text: "Здравствуйте! Доступ к электронному дневнику предоставлен.".into(),
        ..Default::default()
    };
    // Prepared by `by` (taken in work first), sent for approval, approved by the head.
    let answered = |ticket: pb::Ticket, by: String| {
        let (mut c, head) = (ticketing.clone(), head.clone());
        async move {
            let v = |t: &pb::Ticket| (t.id.clone(), t.version);
            let (id, version) = v(&ticket);
            let t = c.take_in_work(outgoing(pb::TakeInWorkRequest { ticket_id: id, expected_version: version }, &by));
            let (id, version) = v(&t.await.expect("taken in work").into_inner());
            let request = pb::PrepareAnswerRequest {
                ticket_id: id,
                expected_version: version,
                answer: Some(answer()),
                ..Default::default()
            };
            let (id, version) = v(&c.prepare_answer(outgoing(request, &by)).await.expect("prepared").into_inner());
            let request = pb::VersionRequest { ticket_id: id, expected_version: version };
            let (id, version) = v(&c.send_for_approval(outgoing(request, &by)).await.expect("sent").into_inner());
            let request = pb::ApproveRequest { ticket_id: id, expected_version: version, edited: None };
            c.approve(outgoing(request, &head)).await.expect("approved").into_inner()
        }
    };
    // One answered by the executor the coordinator assigned.
    let first = tickets[0].clone();
    let request = pb::AssignExecutorRequest {
        ticket_id: first.id.clone(),
        expected_version: first.version,
        executor_id: "dev-executor".into(),
        execution_due: None,
    };
    let assigned =
        platform.ticketing().assign_executor(outgoing(request, &coordinator)).await.expect("assigned").into_inner();
    answered(assigned, executor.clone()).await;
    // One answered by the coordinator, then sent back by the applicant: a re-review.
    let second = answered(tickets[1].clone(), coordinator.clone()).await;
    let request = pb::CommentRequest {
        ticket_id: second.id.clone(),
        expected_version: second.version,
        comment: "Доступа по-прежнему нет.".into(),
        attachment_ids: Vec::new(),
    };
    platform.ticketing().reject_answer(outgoing(request, &applicant)).await.expect("sent back for re-review");
    // The third stays new.

    // What the page and the CSV must show, by column heading: e-diary appeals are fast-track in
    // Kamchatka, answered well before their deadlines.
    let expected = serde_json::json!({
        "totals": {
            "Поступило": "3", "Отвечено": "1", "Отвечено в срок": "1", "Доля в срок, %": "100,0 %",
            "Просрочено": "0", "Фаст-трек": "3", "Доля фаст-треков, %": "100,0 %",
            "Повторное рассмотрение": "1", "Перенаправлено": "0", "Отклонено": "0",
        },
        "category": { "name": "Образование", "figures": { "Поступило": "3", "Отвечено": "1" } },
        "executors": [
            {
                "name": "Петров Иван", "subject": "dev-executor",
                "figures": { "Поступило": "1", "Отвечено": "1", "Отвечено в срок": "1", "Повторное рассмотрение": "0" },
            },
            {
                "name": "Не назначен (у координатора)",
                "figures": { "Поступило": "2", "Отвечено": "0", "Повторное рассмотрение": "1", "Доля в срок, %": "—" },
            },
        ],
    });

    let (addr, shutdown, server) = serve_cabinet(&platform, |_| {}).await;
    let expected = expected.to_string();
    let env = [("ZONE", "Asia/Kamchatka"), ("EXPECTED", expected.as_str())];
    run_story("report.mjs", addr, &env, &["report.png"], Duration::from_secs(180)).await;

    shutdown.cancel();
    server.await.unwrap().unwrap();
    platform.stop().await.unwrap();
}

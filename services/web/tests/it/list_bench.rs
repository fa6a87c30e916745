//! The list page's server time over a cabinet of 100,000 tickets, on PostgreSQL (the platform on
//! its servers) and on SQLite (the embedded `pos up`): the web handler end to end — the session
//! from the cache, ListTickets (with the folder counts) and the classifier over gRPC to the
//! running platform, the HTML — called in-process on the cabinet's router, so that the figures
//! are the server's own time without a client's. Per scenario: p50/p95/p99 of sequential
//! requests, then the throughput of four concurrent ones. Ignored by default (the fill and the
//! runs take minutes); run them one at a time, so that neither takes the other's cores:
//! `cargo nextest run -p pos-web --run-ignored only -E 'test(/list_bench/)' --test-threads 1 --no-capture`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode, header};
use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform};
use pos_platform::auth::Role;
use pos_platform::cache::MemoryCache;
use pos_platform::db::{Db, Dialect};
use pos_platform::testing;
use pos_web::{App, WebConfig};
use tower::ServiceExt;

/// Tickets in the benchmarked cabinet; as many again belong to nine other cabinets of the same
/// database.
const CABINET: i64 = 100_000;
const SEQUENTIAL: usize = 100;
const CONCURRENT: usize = 4;
const THROUGHPUT_FOR: Duration = Duration::from_secs(3);

/// The pages, as a coordinator (the list) or the head (the report) opens them.
fn scenarios(today: &str, month_ago: &str) -> Vec<(&'static str, String, Role)> {
    vec![
        ("New (the default folder, 2,000 tickets)", "/cabinet".into(), Role::Coordinator),
        ("Processed (the largest folder, 90,000)", "/cabinet?folder=processed".into(), Role::Coordinator),
        (
            "Processed, filtered: fast-track + category + source",
            "/cabinet?folder=processed&fast=1&category=education&source=portal-widget".into(),
            Role::Coordinator,
        ),
        ("In work, overdue only", "/cabinet?folder=in-work&overdue=1".into(), Role::Coordinator),
        (
            "Processed, text search (1 in 50 match)",
            "/cabinet?folder=processed&q=%D0%B3%D0%BE%D1%80%D1%8F%D1%87%D0%B5%D0%B9+%D0%B2%D0%BE%D0%B4%D1%8B".into(),
            Role::Coordinator,
        ),
        ("Processed, text search: no match", "/cabinet?folder=processed&q=zzzz".into(), Role::Coordinator),
        (
            "Processed, text search: a word every ticket holds",
            "/cabinet?folder=processed&q=%D0%BF%D1%80%D0%BE%D1%88%D1%83".into(),
            Role::Coordinator,
        ),
        ("Processed, by appeal number", "/cabinet?folder=processed&q=300123450".into(), Role::Coordinator),
        ("Report, the last 30 days", format!("/cabinet/reports?from={month_ago}&to={today}"), Role::Head),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: fills a cabinet with 100,000 tickets on PostgreSQL"]
async fn list_bench_on_postgres() {
    run(Mode::Servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: fills a cabinet with 100,000 tickets on SQLite"]
async fn list_bench_on_sqlite() {
    run(Mode::Embedded).await;
}

async fn run(mode: Mode) {
    let platform = Platform::start(mode).await.expect("platform starts");
    let db = ticketing_db(&platform).await;
    let started = Instant::now();
    fill(&db).await;
    println!("{mode:?}: filled {} tickets in {:.1}s", 2 * CABINET, started.elapsed().as_secs_f64());

    let addr = "127.0.0.1:0".parse().expect("an address");
    let config = WebConfig { grpc_endpoint: platform.endpoint.clone(), ..WebConfig::default() };
    let app = App::new(config, platform.channel(), Arc::new(MemoryCache::new()), None, addr);
    let router = pos_web::router(app.clone());
    let zone = chrono_tz::Asia::Kamchatka;
    let today = chrono::Utc::now().with_timezone(&zone).date_naive();
    let month_ago = today - chrono::Duration::days(30);
    println!("| page | p50 | p95 | p99 | max | pages/s ({CONCURRENT} at once) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, uri, role) in scenarios(&today.to_string(), &month_ago.to_string()) {
        let cookie = signed_in(&app, role).await;
        let request = || {
            Request::get(uri.as_str()).header(header::COOKIE, cookie.as_str()).body(Body::empty()).expect("a request")
        };
        // The first answers warm the pools, the caches and the database's pages.
        for _ in 0..5 {
            let page = call(&router, request()).await;
            assert!(page.contains("<table") || page.contains("class=\"empty\""), "{name}: {page}");
        }
        let mut times = Vec::with_capacity(SEQUENTIAL);
        for _ in 0..SEQUENTIAL {
            let started = Instant::now();
            call(&router, request()).await;
            times.push(started.elapsed());
        }
        times.sort();
        let done = Arc::new(AtomicUsize::new(0));
        let until = Instant::now() + THROUGHPUT_FOR;
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENT {
            let (router, done, uri, cookie) = (router.clone(), done.clone(), uri.clone(), cookie.clone());
            workers.spawn(async move {
                while Instant::now() < until {
                    let request = Request::get(uri.as_str())
                        .header(header::COOKIE, cookie.as_str())
                        .body(Body::empty())
                        .expect("a request");
                    call(&router, request).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while let Some(finished) = workers.join_next().await {
            finished.expect("a worker");
        }
        let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        let ms = |p: f64| format!("{:.1} ms", percentile(&times, p).as_secs_f64() * 1e3);
        println!("| {name} | {} | {} | {} | {} | {rate:.0} |", ms(0.50), ms(0.95), ms(0.99), ms(1.0));
    }
    db.close().await;
    platform.stop().await.expect("platform stops");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One page through the cabinet's router, read to its end.
async fn call(router: &axum::Router, request: Request<Body>) -> String {
    let response = router.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body");
    let page = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

/// A session of the development user of `role` at the Kamchatka center, and its cookie.
async fn signed_in(app: &App, role: Role) -> String {
    let subject = format!("dev-{role}");
    let token = testing::token(&subject, KAMCHATKA_CENTER, "41", &[role]);
    let session = serde_json::from_value(serde_json::json!({
        "token": token, "subject": subject, "display_name": "Смирнова Ольга",
        "organization_id": KAMCHATKA_CENTER, "organization_name": "КГАУ «Камчатский ЦИОКО»",
        "region_code": "41", "roles": [role], "csrf": testing::unique("csrf"),
        "expires_at": chrono::Utc::now().timestamp() + 3600,
    }))
    .expect("a session");
    let id = app.sessions.create(&session).await.expect("session stored");
    format!("{}={id}", app.cookies.session_name())
}

/// The ticketing database the platform runs on: its PostgreSQL schema, or its SQLite file.
async fn ticketing_db(platform: &Platform) -> Db {
    let config = &platform.infra.config;
    let (url, schema) = match &config.database_url {
        Some(url) => (url.expose().to_owned(), format!("{}ticketing", config.schema_prefix)),
        None => (pos_platform::host::sqlite_url(&config.data_dir, "ticketing"), "ticketing".to_owned()),
    };
    Db::connect(&url, &schema, 2).await.expect("the ticketing database")
}

/// 100,000 tickets of the Kamchatka center and as many of nine other cabinets, straight into the
/// table in one statement of SQL both dialects speak (per-ticket inserts through the store would
/// take most of an hour here), received over the last 140 days. As in a cabinet that has worked
/// a while, most are processed: per hundred, 2 new, 5 in work, 1 returned for re-review, 1 on
/// approval, 1 returned to coordination, 50 answered, 30 accepted, 5 rejected, 5 redirected. A
/// third are fast-track; one in 17 is overdue; one in 50 has no deadline yet; texts of a few
/// hundred characters, one in 50 about hot water. Each answered ticket has its approval in the
/// history, for the report.
async fn fill(db: &Db) {
    let now = chrono::Utc::now().timestamp_micros();
    let first = now - 140 * 86_400_000_000;
    let minute = 60_000_000_i64;
    let text = |topic: &str| {
        format!(
            "'Здравствуйте. {topic}. Прошу разобраться и сообщить о принятых мерах в установленный срок. Ранее \
             обращался устно, ответа не получил. Прошу ответить по электронной почте. Обращение ' || i"
        )
    };
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO tickets (id, appeal_id, number, organization_id, organization_short_name, organization_type, \
         stage, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, fact_id, \
         public_text, search_text, problem_address, period_days, working_days, assignee_id, received_at, \
         created_at, updated_at, version, trace_id, applicant_account_id, applicant_name, time_zone, answer_due, \
         overdue, review_round, answer_type, answer_text) \
         SELECT 'bench-' || i, 'bench-appeal-' || i, 300000000 + i, \
         CASE WHEN i % 2 = 0 THEN '{KAMCHATKA_CENTER}' ELSE 'bench-org-' || (i % 9) END, 'bench', 1, \
         CASE WHEN m < 2 THEN 'new' WHEN m < 5 THEN 'in_work' WHEN m < 6 THEN 'executor_assigned' \
         WHEN m < 7 THEN 'answer_prepared' WHEN m < 8 THEN 'returned' WHEN m < 9 THEN 'on_approval' \
         WHEN m < 10 THEN 'returned_to_coordination' WHEN m < 60 THEN 'answered' WHEN m < 90 THEN 'accepted' \
         WHEN m < 95 THEN 'rejected' ELSE 'redirected' END, \
         i % 3 = 0, i % 11 = 0, 1 + i % 8, '41', \
         CASE WHEN i % 4 = 0 THEN 'edu-records' ELSE 'education' END, \
         CASE WHEN i % 4 = 0 THEN 'edu-records.documents' ELSE 'education.e-diary' END, \
         CASE WHEN i % 4 = 0 THEN 'edu-records.documents.other' ELSE 'education.e-diary.access' END, \
         CASE WHEN i % 50 = 0 THEN {hot} ELSE {diary} END, \
         CASE WHEN i % 50 = 0 THEN {hot_lower} ELSE {diary_lower} END, \
         '', 30, FALSE, CASE WHEN i % 5 = 0 THEN 'dev-executor' END, \
         {first} + i * {step}, {first} + i * {step}, {first} + i * {step}, 1, '', 'citizen-' || (i % 50000), \
         'Иванова Мария', 'Asia/Kamchatka', \
         CASE WHEN i % 50 = 7 THEN NULL ELSE {first} + i * {step} + (10 + i % 21) * 86400000000 END, \
         i % 17 = 0, CASE WHEN m = 7 THEN 2 ELSE 1 END, 'resolved', 'Здравствуйте! Меры приняты.' \
         FROM (SELECT i, (i / 2) % 100 AS m FROM n) s",
        hot = text("В школе нет горячей воды третью неделю"),
        diary = text("Прошу предоставить доступ к электронному дневнику для сына"),
        hot_lower = text("в школе нет горячей воды третью неделю").to_lowercase(),
        diary_lower = text("прошу предоставить доступ к электронному дневнику для сына").to_lowercase(),
        // 200,000 tickets over 140 days.
        step = 140 * 24 * 60 * minute / (2 * CABINET),
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(2 * CABINET).execute(db.pool()).await.expect("tickets");
    sqlx::query(
        "INSERT INTO ticket_history (ticket_id, seq, at, actor, action, from_stage, to_stage, comment) \
         SELECT id, 1, received_at + (number % 9 + 1) * 86400000000, 'dev-head', 'approved', 'on_approval', \
         'answered', '' FROM tickets WHERE stage IN ('answered', 'accepted', 'returned')",
    )
    .execute(db.pool())
    .await
    .expect("history");
    // A steady state: the statistics autovacuum (or SQLite's optimize) would have gathered.
    // (One statement each: PostgreSQL runs VACUUM outside a transaction only.)
    let analyze: &[&str] = match db.dialect() {
        Dialect::Postgres => &["VACUUM ANALYZE tickets", "VACUUM ANALYZE ticket_history"],
        Dialect::Sqlite => &["ANALYZE"],
    };
    for statement in analyze {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*statement)).execute(db.pool()).await.expect("analyze");
    }
}

//! The list over 1,000,000 tickets through gRPC: p50/p99 per filter mix. Ignored by default (it
//! seeds for about a minute); run it with
//! `cargo nextest run -p pos-ticketing --run-ignored only -E 'test(list_latency)' --no-capture`.

use std::time::{Duration, Instant};

use pos_platform::auth::Role;
use pos_proto::v1 as pb;

use crate::helpers::{as_, spawn_app};

const TICKETS: i64 = 1_000_000;
/// Every tenth ticket is the big organization's: 100,000 tickets in one cabinet.
const BIG: &str = "org-big";
/// First pages (with folder counts), then pages followed by cursor.
const FIRST_PAGES: usize = 50;
const NEXT_PAGES: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
#[ignore = "a benchmark: seeds 1,000,000 tickets"]
async fn list_latency_over_a_million_tickets() {
    let app = spawn_app().await;
    let started = Instant::now();
    // Straight into the table: the list reads what the store writes, and per-ticket inserts would
    // take an hour here. Stages, sources, categories, facts, regions and deadlines vary by i; every
    // ticket has a draft, so that the stages that need an answer have one. Nobody is assigned.
    // The texts are in lower case already, so their search copy is the text itself.
    sqlx::query(
        "INSERT INTO tickets (id, appeal_id, number, organization_id, organization_short_name, organization_type, \
         stage, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, \
         fact_id, public_text, problem_address, period_days, working_days, received_at, created_at, \
         updated_at, version, trace_id, applicant_account_id, answer_due, overdue, answer_type, answer_text, \
         search_text) \
         SELECT 't-' || lpad(i::text, 7, '0'), 'a-' || i, 100000 + i, \
                CASE WHEN i % 10 = 0 THEN 'org-big' ELSE 'org-' || (i % 90) END, 'school', 1, \
                (ARRAY['new','in_work','executor_assigned','answer_prepared','returned','answered','accepted','rejected','redirected','on_approval','returned_to_coordination'])[1 + i % 11], \
                i % 13 = 0, i % 4 = 1, 1 + i % 8, CASE WHEN i % 3 = 0 THEN '41' ELSE '25' END, 'cat-' || (i % 20), '', \
                'fact-' || (i % 150), CASE WHEN i % 97 = 0 THEN 'нет горячей воды в школе' ELSE 'обращение о питании' END, \
                '', 30, FALSE, 1700000000000000 + i * 30000000, 1700000000000000 + i * 30000000, \
                1700000000000000 + i * 30000000, 1, '', 'citizen-' || (i % 50000), \
                CASE WHEN i % 10 = 5 THEN NULL ELSE 1700000000000000 + i * 30000000 + (i % 40) * 86400000000 END, \
                i % 7 = 0, 'resolved', 'Проверим', \
                CASE WHEN i % 97 = 0 THEN 'нет горячей воды в школе' ELSE 'обращение о питании' END \
         FROM generate_series(1, $1) AS i",
    )
    .bind(TICKETS)
    .execute(app.db.pool())
    .await
    .expect("seed");
    // A steady state: autovacuum would have set the visibility map and statistics by now.
    sqlx::raw_sql("VACUUM ANALYZE tickets").execute(app.db.pool()).await.expect("analyze");
    println!("seeded {TICKETS} tickets in {:.1}s", started.elapsed().as_secs_f64());

    let mut client = app.client();
    let base = pb::ListTicketsRequest { organization_id: BIG.into(), page_size: 50, ..Default::default() };
    let day = 86_400;
    let at = |offset_days: i64| Some(prost_types::Timestamp { seconds: 1_700_000_000 + offset_days * day, nanos: 0 });
    let scenarios: Vec<(&str, pb::ListTicketsRequest)> = vec![
        ("in work, newest first", pb::ListTicketsRequest { folder: pb::Folder::InWork as i32, ..base.clone() }),
        (
            "all folders, received asc",
            pb::ListTicketsRequest { sort: pb::SortOrder::ReceivedAsc as i32, ..base.clone() },
        ),
        (
            "overdue, by deadline",
            pb::ListTicketsRequest { overdue_only: true, sort: pb::SortOrder::DueAsc as i32, ..base.clone() },
        ),
        (
            "deadline range (30 days) + 2 sources",
            pb::ListTicketsRequest { due_from: at(100), due_to: at(130), sources: vec![1, 2], ..base.clone() },
        ),
        (
            "3 categories + 3 facts + region",
            pb::ListTicketsRequest {
                category_ids: vec!["cat-0".into(), "cat-10".into(), "cat-5".into()],
                fact_ids: vec!["fact-10".into(), "fact-20".into(), "fact-40".into()],
                region_code: "25".into(),
                ..base.clone()
            },
        ),
        (
            "fast-track, in work",
            pb::ListTicketsRequest { fast_track_only: true, folder: pb::Folder::InWork as i32, ..base.clone() },
        ),
        ("text search", pb::ListTicketsRequest { text: "горячей воды".into(), ..base.clone() }),
        (
            "small cabinet (10,000 tickets), in work",
            pb::ListTicketsRequest {
                organization_id: "org-1".into(),
                folder: pb::Folder::InWork as i32,
                ..base.clone()
            },
        ),
    ];
    println!("| query | first page p50 | first page p99 | next pages p50 | next pages p99 |");
    println!("|---|---:|---:|---:|---:|");
    for (name, request) in scenarios {
        let mut first = Vec::with_capacity(FIRST_PAGES);
        let mut next = Vec::with_capacity(NEXT_PAGES);
        let mut token = String::new();
        let call = |page_token: String| {
            as_(
                pb::ListTicketsRequest { page_token, ..request.clone() },
                "coord",
                &request.organization_id,
                &[Role::Coordinator],
            )
        };
        for _ in 0..FIRST_PAGES {
            let started = Instant::now();
            let response = client.list_tickets(call(String::new())).await.expect("list").into_inner();
            first.push(started.elapsed());
            assert_eq!(response.folder_counts.len(), 6);
            token = response.next_page_token;
        }
        for _ in 0..NEXT_PAGES {
            if token.is_empty() {
                break;
            }
            let started = Instant::now();
            let response = client.list_tickets(call(std::mem::take(&mut token))).await.expect("list").into_inner();
            next.push(started.elapsed());
            token = response.next_page_token;
        }
        first.sort();
        next.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let (next_p50, next_p99) = if next.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (ms(percentile(&next, 0.5)), ms(percentile(&next, 0.99)))
        };
        println!(
            "| {name} | {} | {} | {next_p50} | {next_p99} |",
            ms(percentile(&first, 0.5)),
            ms(percentile(&first, 0.99))
        );
    }
    app.stop().await;
}

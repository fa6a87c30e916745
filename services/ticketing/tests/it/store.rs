//! The store's contract, run on PostgreSQL and SQLite alike.

use chrono::Duration;
use pos_platform::auth::Role;
use pos_platform::db::{Db, Dialect, from_micros, to_micros};
use pos_platform::testing::{self, TempDir};
use pos_ticketing::folder::Folder;
use pos_ticketing::store::listing::{self, Filters, ListQuery, Scope, SortKey};
use pos_ticketing::store::tickets::{self, ApplyError, Ticket};
use pos_ticketing::store::{deadlines, history, staff, templates};
use pos_ticketing::workflow::{self, Actor, Command, Stage};
use strum::VariantArray;

use crate::helpers::{REGISTERED_AT, current, databases, deliver, outbox_count, release, routed};

const COORDINATOR: Actor<'static> = Actor { subject: "coord", roles: &[Role::Coordinator] };

async fn command(db: &Db, ticket: &Ticket, command: Command, actor: Actor<'_>) -> Result<Ticket, ApplyError> {
    let mut tx = db.begin().await.expect("begin");
    let (after, _) = tickets::apply(&mut tx, &ticket.id, ticket.version, actor.subject, |t| {
        workflow::decide(&t.snapshot(), command, actor)
    })
    .await?;
    tx.commit().await.expect("commit");
    Ok(after)
}

#[tokio::test]
async fn a_routed_appeal_becomes_one_ticket_in_new() {
    for (db, _dir) in databases().await {
        deliver(&db, &routed("a-1", "school-1", "citizen-1")).await;
        deliver(&db, &routed("a-1", "school-1", "citizen-1")).await;
        let ticket = current(&db, "a-1").await;
        assert_eq!((ticket.stage(), ticket.folder(), ticket.version), (Stage::New, Folder::New, 1));
        assert_eq!(ticket.applicant_account_id, "citizen-1");
        assert_eq!(ticket.received_at.timestamp(), REGISTERED_AT);
        assert_eq!(outbox_count(&db, "pos.v1.events.TicketStatusChanged").await, 1, "a repeat changes nothing");
        release(db).await;
    }
}

#[tokio::test]
async fn a_stale_version_changes_nothing() {
    for (db, _dir) in databases().await {
        deliver(&db, &routed("a-1", "school-1", "citizen-1")).await;
        let ticket = current(&db, "a-1").await;
        let taken = command(&db, &ticket, Command::TakeInWork, COORDINATOR).await.expect("taken");
        assert_eq!((taken.stage(), taken.version), (Stage::InWork, 2));
        // The same command on the version read before: refused, nothing written.
        let stale = command(&db, &ticket, Command::Reject { reason: "spam".into() }, COORDINATOR).await;
        assert!(matches!(stale, Err(ApplyError::StaleVersion { current: 2, .. })), "{stale:?}");
        let after = current(&db, "a-1").await;
        assert_eq!((after.stage(), after.version), (Stage::InWork, 2));
        let history = history::of_ticket(&db, &ticket.id).await.expect("history");
        assert_eq!(history.iter().map(|h| h.action.as_str()).collect::<Vec<_>>(), ["received", "taken in work"]);
        assert_eq!((history[1].from.map(Stage::label), history[1].to.label()), (Some("new"), "in work"));
        release(db).await;
    }
}

#[tokio::test]
async fn a_reroute_ends_the_old_ticket_and_opens_a_new_one_keeping_the_received_time() {
    for (db, _dir) in databases().await {
        deliver(&db, &routed("a-1", "school-1", "citizen-1")).await;
        let old = current(&db, "a-1").await;
        let redirect = Command::Redirect { to_organization_id: "school-2".into(), reason: "their pupil".into() };
        let redirected = command(&db, &old, redirect, COORDINATOR).await.expect("redirected");
        assert_eq!((redirected.stage(), redirected.folder()), (Stage::Redirected, Folder::Processed));
        // Routing answers with a new decision; it is registered later than the first.
        let mut again = routed("a-1", "school-2", "citizen-1");
        again.registered_at = Some(prost_types::Timestamp { seconds: REGISTERED_AT + 86_400, nanos: 0 });
        deliver(&db, &again).await;
        deliver(&db, &again).await;
        let new = current(&db, "a-1").await;
        assert_ne!(new.id, old.id);
        assert_eq!((new.organization_id.as_str(), new.stage(), new.version), ("school-2", Stage::New, 1));
        assert_eq!(new.received_at, old.received_at, "the original received time is kept");
        let old = tickets::get(&db, &old.id).await.expect("read").expect("old ticket kept");
        assert_eq!((old.superseded_by.as_str(), old.stage()), (new.id.as_str(), Stage::Redirected));
        let history = history::of_ticket(&db, &old.id).await.expect("history");
        assert_eq!(history.last().map(|h| h.action.as_str()), Some("redirected"));
        // What routing's reroute carries: the addressee, not the content.
        assert_eq!(
            (new.public_text.as_str(), new.applicant_account_id.as_str()),
            (old.public_text.as_str(), "citizen-1")
        );
        let bare = pos_proto::v1::events::AppealRouted {
            appeal_id: "a-2".into(),
            organization: again.organization.clone(),
            ..Default::default()
        };
        deliver(&db, &routed("a-2", "school-1", "citizen-2")).await;
        let first = current(&db, "a-2").await;
        command(&db, &first, Command::ReturnToCoordination { reason: "not ours".into() }, COORDINATOR)
            .await
            .expect("returned");
        deliver(&db, &bare).await;
        let moved = current(&db, "a-2").await;
        assert_eq!(moved.organization_id, "school-2");
        assert_eq!(
            (moved.number, moved.public_text.as_str(), moved.applicant_account_id.as_str(), moved.period_days),
            (first.number, first.public_text.as_str(), "citizen-2", first.period_days)
        );
        assert_eq!((moved.category_id.as_str(), moved.received_at), (first.category_id.as_str(), first.received_at));
        // A routing correction without a request also moves the appeal on.
        deliver(&db, &routed("a-1", "school-3", "citizen-1")).await;
        let third = current(&db, "a-1").await;
        assert_eq!(third.organization_id, "school-3");
        let second = tickets::get(&db, &new.id).await.expect("read").expect("kept");
        assert_eq!((second.stage(), second.superseded_by.as_str()), (Stage::Redirected, third.id.as_str()));
        // Returned to coordination, the appeal may even come back to the same organization.
        let back = command(&db, &third, Command::ReturnToCoordination { reason: "not ours".into() }, COORDINATOR)
            .await
            .expect("returned");
        assert_eq!(back.folder(), Folder::ReturnedToCoordination);
        deliver(&db, &routed("a-1", "school-3", "citizen-1")).await;
        let fourth = current(&db, "a-1").await;
        assert_ne!(fourth.id, third.id);
        assert_eq!(fourth.stage(), Stage::New);
        release(db).await;
    }
}

#[tokio::test]
async fn sla_deadlines_are_mirrored_for_the_list() {
    for (db, _dir) in databases().await {
        deliver(&db, &routed("a-1", "school-1", "citizen-1")).await;
        let ticket = current(&db, "a-1").await;
        let due = to_micros(ticket.received_at + Duration::days(30));
        let mut tx = db.begin().await.expect("begin");
        let by_appeal =
            deadlines::set_due(&mut tx, "", "a-1", "school-1", deadlines::Clock::Answer, due).await.expect("set");
        let overdue = deadlines::set_overdue(&mut tx, &ticket.id, "", "").await.expect("overdue");
        tx.commit().await.expect("commit");
        assert_eq!((by_appeal, overdue), (1, 1));
        let ticket = current(&db, "a-1").await;
        assert_eq!(ticket.answer_due, Some(from_micros(due)));
        assert!(ticket.overdue);
        release(db).await;
    }
}

/// The text filter finds Cyrillic text in either case, `е` for `ё` and back, the same on both
/// databases: what it compares is folded once, in the service, not by the database.
#[tokio::test]
async fn text_search_ignores_the_case_of_cyrillic_on_both_databases() {
    for (db, _dir) in databases().await {
        let texts = [
            ("a-1", "Прошу ПРОВЕРИТЬ оценки в электронном дневнике"),
            ("a-2", "Ёлка во дворе школы"),
            ("a-3", "Нет учебников"),
        ];
        for (appeal, text) in texts {
            let mut r = routed(appeal, "school-1", "citizen-1");
            r.public_text = text.into();
            deliver(&db, &r).await;
        }
        for (query, expected) in [
            ("прошу", vec!["a-1"]),
            ("ПРОШУ", vec!["a-1"]),
            ("проверить Оценки", vec!["a-1"]),
            ("ЭЛЕКТРОННОМ", vec!["a-1"]),
            ("ёлка", vec!["a-2"]),
            ("елка", vec!["a-2"]),
            ("ЕЛКА", vec!["a-2"]),
            ("учебник", vec!["a-3"]),
            ("о", vec!["a-1", "a-2", "a-3"]),
            ("прошу учебник", vec![]),
        ] {
            let filters = Filters { text: Some(query.into()), ..Filters::default() };
            let list = ListQuery {
                scope: Scope::Organization("school-1".into()),
                filters: filters.clone(),
                sort: SortKey::Received,
                descending: false,
                after: None,
                limit: 50,
            };
            let (page, _) = listing::page(&db, &list).await.expect("page");
            let mut found: Vec<&str> = page.iter().map(|t| t.appeal_id.as_str()).collect();
            found.sort_unstable();
            assert_eq!(found, expected, "{query:?} on {:?}", db.dialect());
            let counts = listing::folder_counts(&db, &list.scope, &filters).await.expect("counts");
            let counted: i64 = counts.iter().map(|(_, n)| n).sum();
            assert_eq!(counted, expected.len() as i64, "{query:?} counted on {:?}", db.dialect());
        }
        release(db).await;
    }
}

/// Tickets stored before the search column existed are found as well: the migration fills it the
/// way the service does for Russian text.
#[tokio::test]
async fn tickets_stored_before_the_search_column_are_found_in_either_case() {
    for (db, _dir) in empty_databases().await {
        let service = match db.dialect() {
            Dialect::Postgres => pos_ticketing::MIGRATIONS.postgres,
            Dialect::Sqlite => pos_ticketing::MIGRATIONS.sqlite,
        };
        service.run_to(4, db.pool()).await.expect("migrations up to 0004");
        let text = "ПРОШУ разобраться: Ёлка, ЩИ и КОМПОТ в СТОЛОВОЙ, School №5";
        sqlx::query(
            "INSERT INTO tickets (id, appeal_id, number, organization_id, organization_short_name, \
             organization_type, stage, fast_track, delegated_by_auto_rule, source, region_code, category_id, \
             subcategory_id, fact_id, public_text, problem_address, period_days, working_days, received_at, \
             created_at, updated_at, version, trace_id) \
             VALUES ('t-1', 'a-1', 1501, 'school-1', 'school', 1, 'new', FALSE, FALSE, 1, '41', 'cat', '', \
             'fact', $1, '', 30, FALSE, 1737000000000000, 1737000000000000, 1737000000000000, 1, '')",
        )
        .bind(text)
        .execute(db.pool())
        .await
        .expect("a ticket of 0004");
        db.migrate(&pos_ticketing::MIGRATIONS).await.expect("the remaining migrations");
        let stored: String = sqlx::query_scalar("SELECT search_text FROM tickets WHERE id = 't-1'")
            .fetch_one(db.pool())
            .await
            .expect("search text");
        assert_eq!(stored, listing::search_text(text), "filled as the service fills it on {:?}", db.dialect());
        for query in ["прошу", "елка", "щи и компот", "school №5"] {
            let filters = Filters { text: Some(query.into()), ..Filters::default() };
            let list = ListQuery {
                scope: Scope::Organization("school-1".into()),
                filters,
                sort: SortKey::Received,
                descending: false,
                after: None,
                limit: 10,
            };
            let (page, _) = listing::page(&db, &list).await.expect("page");
            assert_eq!(page.len(), 1, "{query:?} on {:?}", db.dialect());
        }
        release(db).await;
    }
}

/// Fresh, unmigrated databases of both dialects.
async fn empty_databases() -> Vec<(Db, Option<TempDir>)> {
    testing::init_for_tests_once();
    let postgres = Db::connect(&testing::database_url(), &testing::unique("ticketing"), 2).await.expect("postgres");
    let dir = TempDir::new();
    let sqlite =
        Db::connect(&pos_platform::host::sqlite_url(&dir.0, "ticketing"), "ticketing", 2).await.expect("sqlite");
    vec![(postgres, None), (sqlite, Some(dir))]
}

/// Seeds `n` tickets across two organizations with every filterable attribute varied.
async fn seed(db: &Db, n: i64) {
    let base = REGISTERED_AT * 1_000_000;
    let mut tx = db.begin().await.expect("begin");
    for i in 0..n {
        let mut r = routed(&format!("appeal-{i:05}"), if i % 5 == 0 { "other" } else { "school-1" }, "citizen");
        r.number = 10_000 + i;
        r.registered_at = Some(pos_proto::time::to_proto(from_micros(base + (i * 7919 % n) * 60_000_000)));
        r.source = [1, 2, 4, 7][(i % 4) as usize];
        r.category_id = format!("cat-{}", i % 7);
        r.fact_id = format!("fact-{}", i % 11);
        r.region_code = if i % 3 == 0 { "41".into() } else { "25".into() };
        r.fast_track = i % 13 == 0;
        r.delegated_by_auto_rule = i % 4 == 1;
        r.public_text = if i % 17 == 0 {
            "Холодная ЕДА в столовой, ЁЛКА".into()
        } else {
            "Нет учебников".into()
        };
        tickets::create_from_routed(&mut tx, &r, "").await.expect("seed");
    }
    tx.commit().await.expect("commit");
    // Stages, deadlines and overdue flags spread by number; a tenth have no deadline yet. Every
    // ticket has a draft, so that the stages that need an answer have one.
    sqlx::query("UPDATE tickets SET answer_type = 'resolved', answer_text = 'Проверим'")
        .execute(db.pool())
        .await
        .expect("drafts");
    for (k, stage) in Stage::VARIANTS.iter().enumerate() {
        sqlx::query("UPDATE tickets SET stage = $1 WHERE number % 13 = $2")
            .bind(stage.code())
            .bind(k as i64)
            .execute(db.pool())
            .await
            .expect("stage");
    }
    sqlx::query(
        "UPDATE tickets SET answer_due = CASE WHEN number % 10 = 0 THEN NULL ELSE received_at + (number % 37) * 86400000000 END, \
         overdue = (number % 6 = 0)",
    )
    .execute(db.pool())
    .await
    .expect("deadlines");
}

async fn all_tickets(db: &Db) -> Vec<Ticket> {
    let sql = format!("SELECT {} FROM tickets", tickets::COLUMNS);
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(db.pool()).await.expect("all tickets");
    rows.iter().map(|row| Ticket::from_row(row).expect("ticket")).collect()
}

/// Whether `t` passes `f` (the folder aside), by hand.
fn passes(t: &Ticket, f: &Filters) -> bool {
    let due = t.answer_due.map(to_micros);
    (!f.fast_track_only || t.fast_track)
        && (!f.delegated_only || t.delegated_by_auto_rule)
        && (!f.overdue_only || t.overdue)
        && f.due_from.is_none_or(|from| due.is_some_and(|d| d >= from))
        && f.due_to.is_none_or(|to| due.is_some_and(|d| d < to))
        && (f.sources.is_empty() || f.sources.contains(&t.source))
        && (f.category_ids.is_empty() || f.category_ids.contains(&t.category_id))
        && (f.fact_ids.is_empty() || f.fact_ids.contains(&t.fact_id))
        && f.region_code.as_ref().is_none_or(|r| *r == t.region_code)
        && f.text.as_ref().is_none_or(|q| {
            let fold = |text: &str| text.to_lowercase().replace('ё', "е");
            fold(&t.public_text).contains(&fold(q)) || t.number.to_string() == q.trim()
        })
}

#[tokio::test]
async fn folder_counts_and_filters_agree_with_a_brute_force_count() {
    const N: i64 = 10_000;
    for (db, _dir) in databases().await {
        seed(&db, N).await;
        let all = all_tickets(&db).await;
        assert_eq!(all.len() as i64, N);
        let base = REGISTERED_AT * 1_000_000;
        let day = 86_400_000_000;
        let filter_sets = vec![
            Filters::default(),
            Filters { fast_track_only: true, ..Filters::default() },
            Filters { delegated_only: true, ..Filters::default() },
            Filters { overdue_only: true, ..Filters::default() },
            Filters { due_from: Some(base + 10 * day), due_to: Some(base + 20 * day), ..Filters::default() },
            Filters { sources: vec![1, 7], ..Filters::default() },
            Filters { category_ids: vec!["cat-1".into(), "cat-3".into()], ..Filters::default() },
            Filters { fact_ids: vec!["fact-2".into(), "fact-5".into(), "fact-9".into()], ..Filters::default() },
            Filters { region_code: Some("41".into()), ..Filters::default() },
            Filters { text: Some("10042".into()), ..Filters::default() },
            Filters { text: Some("Нет учебников".into()), ..Filters::default() },
            // Cyrillic in the other case than written, on both databases.
            Filters { text: Some("холодная еда".into()), ..Filters::default() },
            Filters { text: Some("НЕТ УЧЕБНИКОВ".into()), ..Filters::default() },
            Filters {
                overdue_only: true,
                sources: vec![2, 4],
                category_ids: vec!["cat-0".into(), "cat-2".into(), "cat-4".into()],
                region_code: Some("25".into()),
                due_from: Some(base),
                ..Filters::default()
            },
        ];
        for filters in filter_sets {
            let scope = Scope::Organization("school-1".into());
            let mine: Vec<&Ticket> =
                all.iter().filter(|t| t.organization_id == "school-1" && passes(t, &filters)).collect();
            let counts = listing::folder_counts(&db, &scope, &filters).await.expect("counts");
            for (folder, count) in &counts {
                let expected = mine.iter().filter(|t| t.folder() == *folder).count() as i64;
                assert_eq!(*count, expected, "{folder:?} under {filters:?}");
            }
            // Every folder and sort, paged through with cursors, lists exactly the brute-force set in order.
            for folder in [None, Some(Folder::InWork), Some(Folder::Processed)] {
                for (sort, descending) in
                    [(SortKey::Received, true), (SortKey::Received, false), (SortKey::Due, false), (SortKey::Due, true)]
                {
                    let filters = Filters { folder, ..filters.clone() };
                    let mut expected: Vec<&Ticket> =
                        mine.iter().copied().filter(|t| folder.is_none_or(|f| t.folder() == f)).collect();
                    let key = |t: &Ticket| match sort {
                        SortKey::Received => to_micros(t.received_at),
                        SortKey::Due => t.answer_due.map(to_micros).unwrap_or(i64::MAX),
                    };
                    expected.sort_by(|a, b| (key(a), &a.id).cmp(&(key(b), &b.id)));
                    if descending {
                        expected.reverse();
                    }
                    let mut listed = Vec::new();
                    let mut after = None;
                    loop {
                        let query = ListQuery {
                            scope: scope.clone(),
                            filters: filters.clone(),
                            sort,
                            descending,
                            after,
                            limit: 500,
                        };
                        let (page, next) = listing::page(&db, &query).await.expect("list");
                        listed.extend(page.into_iter().map(|t| t.id));
                        match next {
                            Some(cursor) => after = Some(cursor),
                            None => break,
                        }
                    }
                    let expected: Vec<String> = expected.iter().map(|t| t.id.clone()).collect();
                    assert_eq!(listed.len(), expected.len(), "{sort:?} desc={descending} {filters:?}");
                    assert_eq!(listed, expected, "{sort:?} desc={descending} {filters:?}");
                }
            }
        }
        release(db).await;
    }
}

#[tokio::test]
async fn staff_and_templates_round_trip() {
    for (db, _dir) in databases().await {
        let member = staff::StaffMember {
            organization_id: "school-1".into(),
            subject: "exec-1".into(),
            full_name: "Петрова Анна".into(),
            email: "petrova@example.org".into(),
            roles: vec![Role::Executor],
            active: true,
        };
        staff::upsert(&db, &member).await.expect("insert");
        staff::upsert(&db, &staff::StaffMember { roles: vec![Role::Executor, Role::Head], ..member.clone() })
            .await
            .expect("update");
        assert_eq!(staff::list(&db, "school-1", Some(Role::Head)).await.expect("list").len(), 1);
        assert!(staff::list(&db, "school-2", None).await.expect("list").is_empty());
        assert!(staff::is_active(&db, "school-1", "exec-1", Role::Executor).await.expect("check"));
        staff::upsert(&db, &staff::StaffMember { active: false, ..member }).await.expect("deactivate");
        assert!(!staff::is_active(&db, "school-1", "exec-1", Role::Executor).await.expect("check"));

        let saved =
            templates::save(&db, "school-1", "greeting", "Здравствуйте, {{applicant_name}}!").await.expect("save");
        let resaved =
            templates::save(&db, "school-1", "greeting", "Добрый день, {{applicant_name}}!").await.expect("save");
        assert_eq!(saved.id, resaved.id);
        assert_eq!(templates::list(&db, "school-1").await.expect("list"), vec![resaved]);
        release(db).await;
    }
}

#[tokio::test]
async fn the_sla_consumer_mirrors_armed_and_overdue_answer_deadlines() {
    use pos_proto::v1::events::{SlaArmed, SlaClock, SlaDeadline, SlaOverdue};
    for (db, _dir) in databases().await {
        deliver(&db, &routed("a-1", "school-1", "citizen-1")).await;
        let ticket = current(&db, "a-1").await;
        let due = ticket.received_at + Duration::days(30);
        let deadline = |clock: SlaClock| SlaDeadline {
            appeal_id: "a-1".into(),
            ticket_id: ticket.id.clone(),
            organization_id: "school-1".into(),
            clock: clock as i32,
            due: Some(pos_proto::time::to_proto(due)),
            round: 1,
            ..Default::default()
        };
        for envelope in [
            pos_platform::Envelope::new(&SlaArmed { deadline: Some(deadline(SlaClock::Answer)), at: None }, "41"),
            pos_platform::Envelope::new(&SlaArmed { deadline: Some(deadline(SlaClock::Execution)), at: None }, "41"),
            pos_platform::Envelope::new(&SlaOverdue { deadline: Some(deadline(SlaClock::Answer)), at: None }, "41"),
        ] {
            let mut tx = db.begin().await.expect("begin");
            pos_platform::consumer::deliver(&pos_ticketing::consumer::SlaHandler, &mut tx, &envelope)
                .await
                .expect("handled");
            tx.commit().await.expect("commit");
        }
        let ticket = current(&db, "a-1").await;
        assert_eq!((ticket.answer_due, ticket.execution_due, ticket.overdue), (Some(due), Some(due), true));
        release(db).await;
    }
}

/// Takes `ticket` through to an approved answer: by `executor` when given (assigned, taken in
/// work, prepared and sent for approval by them), else by the coordinator; the head approves.
async fn answered(db: &Db, ticket: &Ticket, executor: Option<&str>) -> Ticket {
    const HEAD: Actor<'static> = Actor { subject: "head", roles: &[Role::Head] };
    let answer = workflow::Answer {
        kind: workflow::AnswerKind::Resolved,
        text: "Здравствуйте! Проблема решена.".into(),
        attachment_ids: Vec::new(),
    };
    let by = match executor {
        Some(subject) => {
            let assign = Command::AssignExecutor { executor_id: subject.into(), execution_due: None };
            let assigned = command(db, ticket, assign, COORDINATOR).await.expect("assigned");
            let executor = Actor { subject, roles: &[Role::Executor] };
            (command(db, &assigned, Command::TakeInWork, executor).await.expect("taken"), executor)
        }
        None => (command(db, ticket, Command::TakeInWork, COORDINATOR).await.expect("taken"), COORDINATOR),
    };
    let (taken, actor) = by;
    let prepared = command(db, &taken, Command::PrepareAnswer { answer }, actor).await.expect("prepared");
    let sent = command(db, &prepared, Command::SendForApproval, actor).await.expect("sent");
    command(db, &sent, Command::Approve { edited: None }, HEAD).await.expect("approved")
}

/// When the ticket's answers were approved, as its history says.
async fn approvals(db: &Db, ticket: &Ticket) -> Vec<i64> {
    let lines = history::of_ticket(db, &ticket.id).await.expect("history");
    lines.iter().filter(|line| line.to == Stage::Answered).map(|line| to_micros(line.at)).collect()
}

#[tokio::test]
async fn a_report_counts_what_became_of_the_periods_tickets() {
    use pos_ticketing::store::report::{self, ReportQuery};
    const APPLICANT: Actor<'static> = Actor { subject: "citizen-1", roles: &[Role::Applicant] };
    for (db, _dir) in databases().await {
        let appeal = |id: &str, category: &str, fast: bool| {
            let mut r = routed(id, "school-1", "citizen-1");
            r.category_id = category.into();
            r.fast_track = fast;
            r
        };
        for r in [
            appeal("on-time", "cat-a", true),
            appeal("late", "cat-a", false),
            appeal("overdue", "cat-b", false),
            appeal("re-review", "cat-b", true),
            appeal("redirected", "cat-b", false),
            appeal("rejected", "cat-a", false),
            appeal("open", "cat-c", false),
        ] {
            deliver(&db, &r).await;
        }
        // Outside the report: received a day before the period, and another school's.
        let mut early = appeal("early", "cat-a", false);
        early.registered_at = Some(prost_types::Timestamp { seconds: REGISTERED_AT - 86_400, nanos: 0 });
        deliver(&db, &early).await;
        deliver(&db, &routed("elsewhere", "school-2", "citizen-2")).await;

        let set_due = |appeal_id: &'static str, due: i64| {
            let db = db.clone();
            async move {
                let mut tx = db.begin().await.expect("begin");
                deadlines::set_due(&mut tx, "", appeal_id, "school-1", deadlines::Clock::Answer, due)
                    .await
                    .expect("due");
                tx.commit().await.expect("commit");
            }
        };
        let received = to_micros(current(&db, "on-time").await.received_at);
        let far = to_micros(chrono::Utc::now() + Duration::days(30));
        // On time: the deadline is a month away. Late: the deadline passed before the approval,
        // with no overdue mark (the approval time alone tells). Overdue: marked by the SLA
        // service, not answered.
        set_due("on-time", far).await;
        let on_time = answered(&db, &current(&db, "on-time").await, Some("exec-1")).await;
        set_due("late", received + 86_400_000_000).await;
        let late = answered(&db, &current(&db, "late").await, Some("exec-1")).await;
        set_due("overdue", received + 86_400_000_000).await;
        let mut tx = db.begin().await.expect("begin");
        deadlines::set_overdue(&mut tx, "", "overdue", "school-1").await.expect("overdue");
        tx.commit().await.expect("commit");
        // Answered, then sent back by the applicant: a re-review, not answered in its round.
        set_due("re-review", far).await;
        let first = answered(&db, &current(&db, "re-review").await, None).await;
        command(&db, &first, Command::RejectAnswer { comment: "Не помогло".into() }, APPLICANT)
            .await
            .expect("re-review");
        let redirect = Command::Redirect { to_organization_id: "school-2".into(), reason: "их ученик".into() };
        command(&db, &current(&db, "redirected").await, redirect, COORDINATOR).await.expect("redirected");
        let reject = Command::Reject { reason: "Спам".into() };
        command(&db, &current(&db, "rejected").await, reject, COORDINATOR).await.expect("rejected");

        let period = ReportQuery {
            organization_id: "school-1".into(),
            from: REGISTERED_AT * 1_000_000,
            to: (REGISTERED_AT + 86_400) * 1_000_000,
            folder: None,
            category_id: None,
            executor_id: None,
        };
        let built = report::build(&db, &period).await.expect("report");
        let t = built.totals;
        assert_eq!(
            (
                t.received,
                t.answered,
                t.answered_on_time,
                t.overdue,
                t.fast_track,
                t.re_reviews,
                t.redirected,
                t.rejected
            ),
            (7, 2, 1, 2, 2, 1, 1, 1),
            "{t:?}"
        );
        // The mean of receipt to first answer over the two answered tickets, to the second.
        let seconds = |ticket: &Ticket, at: i64| (at - to_micros(ticket.received_at)) / 1_000_000;
        let expected =
            (seconds(&on_time, approvals(&db, &on_time).await[0]) + seconds(&late, approvals(&db, &late).await[0])) / 2;
        assert_eq!(t.average_answer_seconds(), expected);
        assert!(expected > 0);

        let rows = |groups: &[(String, report::Figures)]| {
            groups.iter().map(|(key, f)| (key.clone(), f.received, f.answered, f.overdue)).collect::<Vec<_>>()
        };
        assert_eq!(
            rows(&built.by_category),
            [("cat-a".into(), 3, 2, 1), ("cat-b".into(), 3, 0, 1), ("cat-c".into(), 1, 0, 0)]
        );
        assert_eq!(rows(&built.by_executor), [(String::new(), 5, 0, 1), ("exec-1".into(), 2, 2, 1)]);
        // Every breakdown adds up to the totals.
        for groups in [&built.by_category, &built.by_executor] {
            assert_eq!(groups.iter().map(|(_, f)| f.received).sum::<i64>(), t.received);
            assert_eq!(groups.iter().map(|(_, f)| f.answered_on_time).sum::<i64>(), t.answered_on_time);
        }

        // Filters: the folder now, a category, an executor.
        let filtered = |query: ReportQuery| {
            let db = db.clone();
            async move { report::build(&db, &query).await.expect("report").totals }
        };
        let processed = filtered(ReportQuery { folder: Some(Folder::Processed), ..period.clone() }).await;
        assert_eq!((processed.received, processed.answered), (4, 2), "answered ×2, redirected, rejected");
        let returned = filtered(ReportQuery { folder: Some(Folder::Returned), ..period.clone() }).await;
        assert_eq!((returned.received, returned.re_reviews), (1, 1));
        let cat_b = filtered(ReportQuery { category_id: Some("cat-b".into()), ..period.clone() }).await;
        assert_eq!((cat_b.received, cat_b.overdue, cat_b.fast_track), (3, 1, 1));
        let exec = filtered(ReportQuery { executor_id: Some("exec-1".into()), ..period.clone() }).await;
        assert_eq!((exec.received, exec.answered, exec.answered_on_time), (2, 2, 1));
        // A period with nothing in it, and another organization's.
        let empty = filtered(ReportQuery { from: 0, to: 1, ..period.clone() }).await;
        assert_eq!(empty, report::Figures::default());
        let other = report::build(&db, &ReportQuery { organization_id: "school-2".into(), ..period.clone() })
            .await
            .expect("report");
        assert_eq!(other.totals.received, 1, "school-2's own ticket only");
        release(db).await;
    }
}

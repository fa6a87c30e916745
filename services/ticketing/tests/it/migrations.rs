//! The migrations: both trees build the same schema, and 0004 turns the stored labels of earlier
//! versions into stage codes without losing a ticket's state, its answer or its history.

use pos_platform::db::{Db, Dialect};
use pos_platform::testing::{self, TempDir};
use pos_ticketing::store::{history, tickets};
use pos_ticketing::workflow::Stage;

#[tokio::test]
async fn both_trees_build_the_same_schema() {
    testing::assert_schema_parity("ticketing", &pos_ticketing::MIGRATIONS).await;
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

/// A ticket as versions 0002–0003 stored it: a folder and a status label, '' for unassigned.
async fn insert_old_ticket(db: &Db, id: &str, folder: &str, status: &str, assignee: &str, answered: bool) {
    sqlx::query(
        "INSERT INTO tickets (id, appeal_id, number, organization_id, organization_short_name, organization_type, \
         folder, status, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, \
         fact_id, public_text, problem_address, period_days, working_days, assignee_id, received_at, created_at, \
         updated_at, version, trace_id, answer_type, answer_text) \
         VALUES ($1, $2, 1501, 'school-1', 'school', 1, $3, $4, FALSE, FALSE, 1, '41', 'cat', '', 'fact', 'text', \
         '', 30, FALSE, $5, 1737000000000000, 1737000000000000, 1737000000000000, 3, '', $6, $7)",
    )
    .bind(id)
    .bind(format!("appeal-{id}"))
    .bind(folder)
    .bind(status)
    .bind(assignee)
    .bind(if answered { "resolved" } else { "" })
    .bind(if answered { "Проверим" } else { "" })
    .execute(db.pool())
    .await
    .expect("old ticket");
}

async fn insert_old_line(db: &Db, seq: i64, from: (&str, &str), to: (&str, &str)) {
    sqlx::query(
        "INSERT INTO ticket_history (ticket_id, seq, at, actor, action, from_folder, to_folder, comment, \
         from_status, to_status) VALUES ('t-1', $1, 1737000000000000, 'coord', 'step', $2, $3, '', $4, $5)",
    )
    .bind(seq)
    .bind(from.0)
    .bind(to.0)
    .bind(from.1)
    .bind(to.1)
    .execute(db.pool())
    .await
    .expect("old history line");
}

#[tokio::test]
async fn stored_labels_become_stage_codes() {
    for (db, _dir) in empty_databases().await {
        let service = match db.dialect() {
            Dialect::Postgres => pos_ticketing::MIGRATIONS.postgres,
            Dialect::Sqlite => pos_ticketing::MIGRATIONS.sqlite,
        };
        service.run_to(3, db.pool()).await.expect("migrations up to 0003");
        insert_old_ticket(&db, "t-1", "sent_for_approval", "on approval", "", true).await;
        insert_old_ticket(&db, "t-2", "in_work", "in work", "exec-1", false).await;
        insert_old_line(&db, 1, ("", ""), ("new", "new")).await;
        insert_old_line(&db, 2, ("new", "new"), ("in_work", "in work")).await;
        // Written before 0002 recorded statuses: only the folders are known.
        insert_old_line(&db, 3, ("in_work", ""), ("sent_for_approval", "")).await;

        db.migrate(&pos_ticketing::MIGRATIONS).await.expect("the remaining migrations");
        let on_approval = tickets::get(&db, "t-1").await.expect("read").expect("t-1");
        assert_eq!((on_approval.stage(), on_approval.assignee_id.as_deref()), (Stage::OnApproval, None));
        assert_eq!(on_approval.answer().map(|a| a.text.as_str()), Some("Проверим"));
        let in_work = tickets::get(&db, "t-2").await.expect("read").expect("t-2");
        assert_eq!((in_work.stage(), in_work.assignee_id.as_deref()), (Stage::InWork, Some("exec-1")));
        let lines = history::of_ticket(&db, "t-1").await.expect("history");
        let steps: Vec<(Option<Stage>, Stage)> = lines.iter().map(|line| (line.from, line.to)).collect();
        assert_eq!(
            steps,
            [(None, Stage::New), (Some(Stage::New), Stage::InWork), (Some(Stage::InWork), Stage::OnApproval)]
        );
        if db.dialect() == Dialect::Postgres {
            db.drop_schema().await.expect("drop schema");
        }
        db.close().await;
    }
}

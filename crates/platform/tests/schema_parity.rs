//! The schema-parity check sees a column added to one migration tree only, a type or a
//! nullability that differs, and accepts trees that differ only in how they are written.

use pos_platform::db::Migrations;
use pos_platform::testing::{TempDir, schema_drift};
use sqlx::migrate::Migrator;

/// Migrations from two literal trees (leaked: `Migrations` holds `'static` migrators).
async fn trees(postgres: &str, sqlite: &str) -> (Migrations, TempDir) {
    let dir = TempDir::new();
    let mut migrators = Vec::new();
    for (name, sql) in [("postgres", postgres), ("sqlite", sqlite)] {
        let tree = dir.0.join(name);
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("0001_things.sql"), sql).unwrap();
        let migrator: &'static Migrator = Box::leak(Box::new(Migrator::new(tree.as_path()).await.unwrap()));
        migrators.push(migrator);
    }
    (Migrations { postgres: migrators[0], sqlite: migrators[1] }, dir)
}

#[tokio::test]
async fn trees_that_mean_the_same_schema_agree() {
    let (migrations, _dir) = trees(
        "CREATE TABLE things (id TEXT PRIMARY KEY, at BIGINT NOT NULL, done BOOLEAN NOT NULL DEFAULT FALSE, \
         note TEXT);\nCREATE INDEX things_at ON things (at);",
        // Written differently: INTEGER for BIGINT and for a boolean, a different index name.
        "CREATE TABLE things (\n  id TEXT NOT NULL PRIMARY KEY,\n  at INTEGER NOT NULL,\n  done INTEGER NOT NULL DEFAULT 0,\n  note TEXT\n);",
    )
    .await;
    let drift = schema_drift("parity", &migrations).await.unwrap();
    assert!(drift.0.is_empty(), "unexpected drift: {drift}");
}

#[tokio::test]
async fn a_column_added_to_one_tree_only_is_drift() {
    let (migrations, _dir) = trees(
        "CREATE TABLE things (id TEXT PRIMARY KEY, at BIGINT NOT NULL, stage TEXT NOT NULL);",
        "CREATE TABLE things (id TEXT PRIMARY KEY, at INTEGER NOT NULL);",
    )
    .await;
    let drift = schema_drift("parity", &migrations).await.unwrap();
    assert_eq!(drift.0, vec!["things.stage: only in the postgres tree".to_owned()]);
}

#[tokio::test]
async fn a_different_type_or_nullability_is_drift() {
    let (migrations, _dir) = trees(
        "CREATE TABLE things (id TEXT PRIMARY KEY, at BIGINT NOT NULL, note TEXT);\nCREATE TABLE extra (id TEXT);",
        "CREATE TABLE things (id TEXT PRIMARY KEY, at TEXT NOT NULL, note TEXT NOT NULL);",
    )
    .await;
    let drift = schema_drift("parity", &migrations).await.unwrap();
    assert_eq!(
        drift.0,
        vec![
            "table extra: only in the postgres tree".to_owned(),
            "things.at: postgres Integer NOT NULL, sqlite Text NOT NULL".to_owned(),
            "things.note: postgres Text NULL, sqlite Text NOT NULL".to_owned(),
        ]
    );
}

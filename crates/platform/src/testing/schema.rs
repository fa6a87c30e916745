//! Schema parity: a service's PostgreSQL and SQLite migration trees must build the same tables
//! with the same columns, of the same kind and nullability, since one store speaks to both.
//! Each tree is applied to a fresh database and the result read back from the catalog
//! (`information_schema` and `pragma_table_info`), so what is compared is what the migrations
//! built, not how they are written.

use std::collections::BTreeMap;
use std::fmt;

use sqlx::Row;

use super::{TempDir, database_url, unique};
use crate::db::{Db, Migrations};

/// What both dialects can say of a column's type.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Integer,
    Boolean,
    Text,
    Bytes,
    Real,
    Other(String),
}

impl Kind {
    /// PostgreSQL's `information_schema.columns.data_type`.
    fn postgres(data_type: &str) -> Kind {
        match data_type {
            "smallint" | "integer" | "bigint" => Kind::Integer,
            "boolean" => Kind::Boolean,
            "text" | "character varying" | "character" => Kind::Text,
            "bytea" => Kind::Bytes,
            "real" | "double precision" | "numeric" => Kind::Real,
            other => Kind::Other(other.to_owned()),
        }
    }

    /// SQLite's declared type, by its affinity rules (https://sqlite.org/datatype3.html).
    fn sqlite(declared: &str) -> Kind {
        let declared = declared.to_ascii_uppercase();
        if declared.contains("INT") {
            Kind::Integer
        } else if declared.contains("BOOL") {
            Kind::Boolean
        } else if declared.contains("CHAR") || declared.contains("CLOB") || declared.contains("TEXT") {
            Kind::Text
        } else if declared.is_empty() || declared.contains("BLOB") {
            Kind::Bytes
        } else if declared.contains("REAL") || declared.contains("FLOA") || declared.contains("DOUB") {
            Kind::Real
        } else {
            Kind::Other(declared)
        }
    }

    /// SQLite has no boolean type: a PostgreSQL `BOOLEAN` is an `INTEGER` 0/1 there.
    fn matches(postgres: &Kind, sqlite: &Kind) -> bool {
        postgres == sqlite || (*postgres == Kind::Boolean && *sqlite == Kind::Integer)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Column {
    kind: Kind,
    not_null: bool,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}{}", self.kind, if self.not_null { " NOT NULL" } else { " NULL" })
    }
}

/// table → column → its description.
type Schema = BTreeMap<String, BTreeMap<String, Column>>;

/// Migration bookkeeping differs by design and is not part of the service's schema.
fn is_bookkeeping(table: &str) -> bool {
    table.starts_with("_sqlx") || table.starts_with("_pos_") || table.starts_with("sqlite_")
}

async fn postgres_schema(db: &Db) -> Result<Schema, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, \
                c.data_type::text AS data_type, c.is_nullable::text AS is_nullable \
         FROM information_schema.columns c \
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'",
    )
    .bind(db.schema())
    .fetch_all(db.pool())
    .await?;
    let mut schema = Schema::new();
    for row in rows {
        let table: String = row.try_get("table_name")?;
        if is_bookkeeping(&table) {
            continue;
        }
        let column = Column {
            kind: Kind::postgres(&row.try_get::<String, _>("data_type")?),
            not_null: row.try_get::<String, _>("is_nullable")? == "NO",
        };
        schema.entry(table).or_default().insert(row.try_get("column_name")?, column);
    }
    Ok(schema)
}

async fn sqlite_schema(db: &Db) -> Result<Schema, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type, \
                p.\"notnull\" AS not_null, p.pk AS pk \
         FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table'",
    )
    .fetch_all(db.pool())
    .await?;
    let mut schema = Schema::new();
    for row in rows {
        let table: String = row.try_get("table_name")?;
        if is_bookkeeping(&table) {
            continue;
        }
        // A primary key is NOT NULL in PostgreSQL whether or not it says so.
        let not_null = row.try_get::<i64, _>("not_null")? != 0 || row.try_get::<i64, _>("pk")? != 0;
        let column = Column { kind: Kind::sqlite(&row.try_get::<String, _>("data_type")?), not_null };
        schema.entry(table).or_default().insert(row.try_get("column_name")?, column);
    }
    Ok(schema)
}

/// Every difference between the two schemas, one line each.
fn compare(postgres: &Schema, sqlite: &Schema) -> Vec<String> {
    let mut drift = Vec::new();
    for table in postgres.keys().filter(|t| !sqlite.contains_key(*t)) {
        drift.push(format!("table {table}: only in the postgres tree"));
    }
    for table in sqlite.keys().filter(|t| !postgres.contains_key(*t)) {
        drift.push(format!("table {table}: only in the sqlite tree"));
    }
    for (table, pg_columns) in postgres {
        let Some(lite_columns) = sqlite.get(table) else { continue };
        for (name, pg) in pg_columns {
            match lite_columns.get(name) {
                None => drift.push(format!("{table}.{name}: only in the postgres tree")),
                Some(lite) if !Kind::matches(&pg.kind, &lite.kind) || pg.not_null != lite.not_null => {
                    drift.push(format!("{table}.{name}: postgres {pg}, sqlite {lite}"));
                }
                Some(_) => {}
            }
        }
        for name in lite_columns.keys().filter(|c| !pg_columns.contains_key(*c)) {
            drift.push(format!("{table}.{name}: only in the sqlite tree"));
        }
    }
    drift
}

/// The differences between what a service's two migration trees build.
#[derive(Debug)]
pub struct SchemaDrift(pub Vec<String>);

impl fmt::Display for SchemaDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

/// Applies both trees of `migrations` to a fresh PostgreSQL schema (on the local server) and a
/// fresh SQLite file, and lists where the results differ.
pub async fn schema_drift(service: &str, migrations: &Migrations) -> anyhow::Result<SchemaDrift> {
    crate::telemetry::init_for_tests();
    let postgres = Db::connect(&database_url(), &unique(service), 2).await?;
    let dir = TempDir::new();
    let sqlite = Db::connect(&crate::host::sqlite_url(&dir.0, service), service, 2).await?;
    let result = async {
        postgres.migrate(migrations).await?;
        sqlite.migrate(migrations).await?;
        let (pg, lite) = (postgres_schema(&postgres).await?, sqlite_schema(&sqlite).await?);
        anyhow::ensure!(!pg.is_empty(), "the {service} migrations built no table");
        Ok(SchemaDrift(compare(&pg, &lite)))
    }
    .await;
    let _ = postgres.drop_schema().await;
    postgres.close().await;
    sqlite.close().await;
    result
}

/// Panics, listing every difference, unless both trees of `migrations` build the same schema.
pub async fn assert_schema_parity(service: &str, migrations: &Migrations) {
    let drift = schema_drift(service, migrations).await.expect("both migration trees apply");
    assert!(drift.0.is_empty(), "the {service} migration trees drifted apart:\n{drift}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_compared_by_kind() {
        assert_eq!(Kind::postgres("bigint"), Kind::sqlite("INTEGER"));
        assert_eq!(Kind::postgres("text"), Kind::sqlite("TEXT"));
        assert!(Kind::matches(&Kind::postgres("boolean"), &Kind::sqlite("INTEGER")));
        assert!(!Kind::matches(&Kind::postgres("boolean"), &Kind::sqlite("TEXT")));
        assert!(!Kind::matches(&Kind::postgres("text"), &Kind::sqlite("BIGINT")));
    }
}

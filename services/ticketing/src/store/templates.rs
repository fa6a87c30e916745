//! Answer templates per organization; their placeholders are checked before saving
//! ([`crate::template::check`]).

use pos_platform::db::{Db, now_micros};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub body: String,
}

fn from_row(row: &AnyRow) -> Result<Template, sqlx::Error> {
    Ok(Template {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        name: row.try_get("name")?,
        body: row.try_get("body")?,
    })
}

/// Saves a template by (organization, name); the caller has already checked its placeholders.
pub async fn save(db: &Db, organization_id: &str, name: &str, body: &str) -> Result<Template, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO answer_templates (id, organization_id, name, body, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (organization_id, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(organization_id)
    .bind(name)
    .bind(body)
    .bind(now_micros())
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(
        "SELECT id, organization_id, name, body FROM answer_templates WHERE organization_id = $1 AND name = $2",
    )
    .bind(organization_id)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    from_row(&row)
}

pub async fn list(db: &Db, organization_id: &str) -> Result<Vec<Template>, sqlx::Error> {
    sqlx::query("SELECT id, organization_id, name, body FROM answer_templates WHERE organization_id = $1 ORDER BY name")
        .bind(organization_id)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Template>, sqlx::Error> {
    sqlx::query("SELECT id, organization_id, name, body FROM answer_templates WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

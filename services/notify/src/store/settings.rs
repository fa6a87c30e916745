//! The `org_settings` and `org_notifications` tables: what each organization's admin chose.

use chrono_tz::Tz;
use pos_platform::db::RowExt;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::settings::{Kind, NotificationRule, OrgSettings, defaults, parse_hhmm};

/// The columns [`settings_from_row`] reads.
const COLUMNS: &str = "organization_id, time_zone, quiet_from, quiet_until, digest_enabled, digest_at, last_digest_on";

fn settings_from_row(row: &AnyRow) -> Result<OrgSettings, sqlx::Error> {
    let time_zone: String = row.try_get("time_zone")?;
    let quiet_from: String = row.try_get("quiet_from")?;
    let quiet_until: String = row.try_get("quiet_until")?;
    let digest_at: String = row.try_get("digest_at")?;
    Ok(OrgSettings {
        organization_id: row.try_get("organization_id")?,
        time_zone: time_zone.parse().unwrap_or(Tz::Europe__Moscow),
        quiet: parse_hhmm(&quiet_from).zip(parse_hhmm(&quiet_until)),
        digest_at: if row.flag("digest_enabled")? { parse_hhmm(&digest_at) } else { None },
        last_digest_on: row.try_get("last_digest_on")?,
    })
}

/// The organization's quiet hours and digest; the defaults when its admin saved none.
pub async fn load<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    organization_id: &str,
) -> Result<OrgSettings, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM org_settings WHERE organization_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(organization_id).fetch_optional(executor).await?;
    match row {
        Some(row) => settings_from_row(&row),
        None => Ok(OrgSettings::default_for(organization_id)),
    }
}

/// The digest time as the admin saved it, kept while the digest is off; empty when none.
pub async fn saved_digest_at<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    organization_id: &str,
) -> Result<String, sqlx::Error> {
    let row = sqlx::query("SELECT digest_at FROM org_settings WHERE organization_id = $1")
        .bind(organization_id)
        .fetch_optional(executor)
        .await?;
    Ok(row.map(|row| row.try_get::<String, _>("digest_at")).transpose()?.unwrap_or_default())
}

/// What the admin sets (times as local `HH:MM`, validated before).
#[derive(Debug)]
pub struct SettingsUpdate<'a> {
    pub organization_id: &'a str,
    pub time_zone: &'a str,
    pub quiet_from: &'a str,
    pub quiet_until: &'a str,
    pub digest_enabled: bool,
    pub digest_at: &'a str,
}

#[tracing::instrument(skip(executor))]
pub async fn save<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    update: &SettingsUpdate<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO org_settings (organization_id, time_zone, quiet_from, quiet_until, digest_enabled, digest_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (organization_id) DO UPDATE SET time_zone = excluded.time_zone, \
         quiet_from = excluded.quiet_from, quiet_until = excluded.quiet_until, digest_enabled = excluded.digest_enabled, \
         digest_at = excluded.digest_at, updated_at = excluded.updated_at",
    )
    .bind(update.organization_id)
    .bind(update.time_zone)
    .bind(update.quiet_from)
    .bind(update.quiet_until)
    .bind(update.digest_enabled)
    .bind(update.digest_at)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

/// Every organization with a digest.
pub async fn with_digest<'e, E: Executor<'e, Database = Any>>(executor: E) -> Result<Vec<OrgSettings>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM org_settings WHERE digest_enabled = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(true).fetch_all(executor).await?.iter().map(settings_from_row).collect()
}

/// The local date of the organization's last digest.
pub async fn last_digest_on<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    organization_id: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query("SELECT last_digest_on FROM org_settings WHERE organization_id = $1")
        .bind(organization_id)
        .fetch_one(executor)
        .await?
        .try_get("last_digest_on")
}

pub async fn set_last_digest_on<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    organization_id: &str,
    date: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE org_settings SET last_digest_on = $1 WHERE organization_id = $2")
        .bind(date)
        .bind(organization_id)
        .execute(executor)
        .await?;
    Ok(())
}

fn rule_from_row(row: &AnyRow) -> Result<NotificationRule, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let list = |column: &str| -> Result<Vec<String>, sqlx::Error> {
        let text: String = row.try_get(column)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    Ok(NotificationRule {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        kind: Kind::parse(&kind).unwrap_or(Kind::MessageArrived),
        name: row.try_get("name")?,
        addresses: list("addresses")?,
        roles: list("roles")?,
        template: row.try_get("template")?,
        enabled: row.flag("enabled")?,
        description: row.try_get("description")?,
    })
}

/// The organization's notifications: its saved ones, or the defaults when it saved none.
#[tracing::instrument(skip(connection))]
pub async fn rules(
    connection: &mut AnyConnection,
    organization_id: &str,
) -> Result<Vec<NotificationRule>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, organization_id, kind, name, addresses, roles, template, enabled, description \
         FROM org_notifications WHERE organization_id = $1 ORDER BY kind, id",
    )
    .bind(organization_id)
    .fetch_all(&mut *connection)
    .await?;
    if rows.is_empty() && !customized(connection, organization_id).await? {
        return Ok(defaults(organization_id));
    }
    rows.iter().map(rule_from_row).collect()
}

/// Whether the admin saved notifications: from then on no rows means none, not the defaults.
async fn customized(connection: &mut AnyConnection, organization_id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT customized FROM org_settings WHERE organization_id = $1")
        .bind(organization_id)
        .fetch_optional(&mut *connection)
        .await?;
    row.map_or(Ok(false), |row| row.flag("customized"))
}

/// Before the admin's first change, the defaults become the organization's own rows, so that
/// changing one keeps the others and deleting all leaves none.
#[tracing::instrument(skip(tx))]
pub async fn materialize(tx: &mut AnyConnection, organization_id: &str, now: i64) -> Result<(), sqlx::Error> {
    let current = rules(tx, organization_id).await?;
    if customized(tx, organization_id).await? {
        return Ok(());
    }
    for rule in &current {
        save_rule(&mut *tx, rule, now).await?;
    }
    sqlx::query(
        "INSERT INTO org_settings (organization_id, time_zone, customized, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (organization_id) DO UPDATE SET customized = excluded.customized",
    )
    .bind(organization_id)
    .bind(Tz::Europe__Moscow.name())
    .bind(true)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(organization_id = %rule.organization_id, id = %rule.id))]
pub async fn save_rule<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    rule: &NotificationRule,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO org_notifications (id, organization_id, kind, name, addresses, roles, template, enabled, description, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (organization_id, id) DO UPDATE SET kind = excluded.kind, name = excluded.name, addresses = excluded.addresses, \
         roles = excluded.roles, template = excluded.template, enabled = excluded.enabled, \
         description = excluded.description, updated_at = excluded.updated_at",
    )
    .bind(&rule.id)
    .bind(&rule.organization_id)
    .bind(rule.kind.as_str())
    .bind(&rule.name)
    .bind(serde_json::to_string(&rule.addresses).unwrap_or_default())
    .bind(serde_json::to_string(&rule.roles).unwrap_or_default())
    .bind(&rule.template)
    .bind(rule.enabled)
    .bind(&rule.description)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

/// Deletes one notification; returns the rows deleted (0 or 1).
#[tracing::instrument(skip(executor))]
pub async fn delete_rule<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    organization_id: &str,
    id: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM org_notifications WHERE organization_id = $1 AND id = $2")
        .bind(organization_id)
        .bind(id)
        .execute(executor)
        .await?
        .rows_affected())
}

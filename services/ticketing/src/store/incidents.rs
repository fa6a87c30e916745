//! Incidents: a ticket's escalations, each with its versioned state ([`crate::incident`]).

use chrono::{DateTime, Utc};
use pos_platform::Tx;
use pos_platform::db::{Db, RowExt, now_micros, to_micros};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::undecodable;
use crate::incident::{Kind, State};

/// An escalation of a ticket, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    pub ticket_id: String,
    pub appeal_id: String,
    pub organization_id: String,
    pub kind: Kind,
    pub state: State,
    pub service: String,
    pub request_type: String,
    pub system: String,
    pub priority: String,
    pub subject: String,
    pub attachment_ids: Vec<String>,
    pub user_account: String,
    pub external_id: String,
    pub resolution: String,
    pub last_comment: String,
    pub opened_by: String,
    /// The federal body a supervisor's escalation is addressed to; empty otherwise.
    pub handler_organization_id: String,
    /// Its short name as the directory gave it when the escalation was opened.
    pub handler_organization_name: String,
    /// The appeal's own files, as intake listed them when the escalation was addressed to a
    /// handling body (who cannot open the appeal itself).
    pub appeal_attachment_ids: Vec<String>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const COLUMNS: &str = "id, ticket_id, appeal_id, organization_id, kind, state, service, request_type, system, \
    priority, subject, attachment_ids, user_account, external_id, resolution, last_comment, opened_by, opened_at, \
    updated_at, version, handler_organization_id, handler_organization_name, \
    appeal_attachment_ids";

fn from_row(row: &AnyRow) -> Result<Incident, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let attachments: String = row.try_get("attachment_ids")?;
    let appeal_attachments: String = row.try_get("appeal_attachment_ids")?;
    Ok(Incident {
        id: row.try_get("id")?,
        ticket_id: row.try_get("ticket_id")?,
        appeal_id: row.try_get("appeal_id")?,
        organization_id: row.try_get("organization_id")?,
        kind: kind.parse().map_err(|_| undecodable("kind", format!("unknown value {kind:?}")))?,
        state: State::parse(&state).ok_or_else(|| undecodable("state", format!("unknown value {state:?}")))?,
        service: row.try_get("service")?,
        request_type: row.try_get("request_type")?,
        system: row.try_get("system")?,
        priority: row.try_get("priority")?,
        subject: row.try_get("subject")?,
        attachment_ids: attachments.split_whitespace().map(str::to_owned).collect(),
        user_account: row.try_get("user_account")?,
        external_id: row.try_get("external_id")?,
        resolution: row.try_get("resolution")?,
        last_comment: row.try_get("last_comment")?,
        opened_by: row.try_get("opened_by")?,
        handler_organization_id: row.try_get("handler_organization_id")?,
        handler_organization_name: row.try_get("handler_organization_name")?,
        appeal_attachment_ids: appeal_attachments.split_whitespace().map(str::to_owned).collect(),
        opened_at: row.time("opened_at")?,
        updated_at: row.time("updated_at")?,
        version: row.try_get("version")?,
    })
}

pub async fn insert(tx: &mut Tx, incident: &Incident) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO incidents ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
    )))
    .bind(&incident.id)
    .bind(&incident.ticket_id)
    .bind(&incident.appeal_id)
    .bind(&incident.organization_id)
    .bind(incident.kind.as_str())
    .bind(incident.state.as_str())
    .bind(&incident.service)
    .bind(&incident.request_type)
    .bind(&incident.system)
    .bind(&incident.priority)
    .bind(&incident.subject)
    .bind(incident.attachment_ids.join(" "))
    .bind(&incident.user_account)
    .bind(&incident.external_id)
    .bind(&incident.resolution)
    .bind(&incident.last_comment)
    .bind(&incident.opened_by)
    .bind(to_micros(incident.opened_at))
    .bind(to_micros(incident.updated_at))
    .bind(incident.version)
    .bind(&incident.handler_organization_id)
    .bind(&incident.handler_organization_name)
    .bind(incident.appeal_attachment_ids.join(" "))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Incident>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM incidents WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// The incident as the transaction sees it (after its own update).
pub async fn get_in(tx: &mut Tx, id: &str) -> Result<Option<Incident>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM incidents WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub async fn of_ticket(db: &Db, ticket_id: &str) -> Result<Vec<Incident>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM incidents WHERE ticket_id = $1 ORDER BY opened_at, id"
    )))
    .bind(ticket_id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// The escalations addressed to `handler_organization_id`, newest first; with `open_only`, those
/// the handling body still has to answer (not resolved, not confirmed).
pub async fn addressed_to(
    db: &Db,
    handler_organization_id: &str,
    open_only: bool,
) -> Result<Vec<Incident>, sqlx::Error> {
    let open = if open_only { " AND state NOT LIKE 'resolved%' AND state <> 'confirmed'" } else { "" };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM incidents WHERE handler_organization_id = $1{open} ORDER BY opened_at DESC, id DESC \
         LIMIT 500"
    )))
    .bind(handler_organization_id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// Stores an incident's transition if nobody changed it since `expected_version`; `false` when
/// the version is stale. Files given with the step (the information provided, the resolution's)
/// join the incident's own.
pub async fn update(
    tx: &mut Tx,
    id: &str,
    expected_version: i64,
    state: State,
    resolution: Option<&str>,
    comment: &str,
    added_attachment_ids: &[String],
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE incidents SET state = $1, resolution = CASE WHEN $2 = '' THEN resolution ELSE $2 END, \
         last_comment = $3, updated_at = $4, version = version + 1, \
         attachment_ids = TRIM(attachment_ids || ' ' || $7) WHERE id = $5 AND version = $6",
    )
    .bind(state.as_str())
    .bind(resolution.unwrap_or(""))
    .bind(comment)
    .bind(now_micros())
    .bind(id)
    .bind(expected_version)
    .bind(added_attachment_ids.join(" "))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

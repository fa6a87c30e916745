//! The organization's staff directory: who works in the cabinet, with which roles (the org admin
//! keeps it; notify reads it; assignments must name an active executor from it).

use pos_platform::auth::Role;
use pos_platform::db::{Db, RowExt, now_micros};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// One member of an organization's staff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffMember {
    pub organization_id: String,
    pub subject: String,
    pub full_name: String,
    pub email: String,
    pub roles: Vec<Role>,
    pub active: bool,
}

pub async fn upsert(db: &Db, member: &StaffMember) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    save(&mut tx, member).await?;
    tx.commit().await
}

/// Saves `member` in the caller's transaction (which records the change beside it); returns the
/// entry it replaced, if any.
pub async fn save(conn: &mut AnyConnection, member: &StaffMember) -> Result<Option<StaffMember>, sqlx::Error> {
    let previous = sqlx::query(
        "SELECT organization_id, subject, full_name, email, roles, active FROM staff \
         WHERE organization_id = $1 AND subject = $2",
    )
    .bind(&member.organization_id)
    .bind(&member.subject)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| from_row(&row))
    .transpose()?;
    let roles: Vec<&str> = member.roles.iter().map(|r| r.as_str()).collect();
    sqlx::query(
        "INSERT INTO staff (organization_id, subject, full_name, email, roles, active, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (organization_id, subject) DO UPDATE SET \
         full_name = excluded.full_name, email = excluded.email, roles = excluded.roles, active = excluded.active, \
         updated_at = excluded.updated_at",
    )
    .bind(&member.organization_id)
    .bind(&member.subject)
    .bind(&member.full_name)
    .bind(&member.email)
    .bind(roles.join(" "))
    .bind(member.active)
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(previous)
}

fn from_row(row: &AnyRow) -> Result<StaffMember, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    Ok(StaffMember {
        organization_id: row.try_get("organization_id")?,
        subject: row.try_get("subject")?,
        full_name: row.try_get("full_name")?,
        email: row.try_get("email")?,
        // A role this build does not know is skipped, not fatal: directories outlive builds.
        roles: roles.split_whitespace().filter_map(|r| r.parse().ok()).collect(),
        active: row.flag("active")?,
    })
}

/// An organization's staff, optionally only those holding `role`, ordered by name.
pub async fn list(db: &Db, organization_id: &str, role: Option<Role>) -> Result<Vec<StaffMember>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT organization_id, subject, full_name, email, roles, active FROM staff WHERE organization_id = $1 \
         ORDER BY full_name, subject",
    )
    .bind(organization_id)
    .fetch_all(db.pool())
    .await?;
    let mut staff = Vec::with_capacity(rows.len());
    for row in &rows {
        let member = from_row(row)?;
        if role.is_none_or(|r| member.roles.contains(&r)) {
            staff.push(member);
        }
    }
    Ok(staff)
}

/// Whether `subject` is an active member of the organization with `role` (assignment targets).
pub async fn is_active(db: &Db, organization_id: &str, subject: &str, role: Role) -> Result<bool, sqlx::Error> {
    let staff = list(db, organization_id, Some(role)).await?;
    Ok(staff.iter().any(|m| m.subject == subject && m.active))
}

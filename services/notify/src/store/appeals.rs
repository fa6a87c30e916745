//! The `appeals` and `arrivals` tables.

use pos_platform::db::RowExt;
use pos_proto::v1::events as ev;
use sqlx::{Any, Executor, Row};

use crate::appeal::Appeal;

/// Records a registered appeal; its routing may have been recorded already.
#[tracing::instrument(skip_all, fields(appeal_id = %event.appeal_id))]
pub async fn record_received<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    event: &ev::AppealReceived,
    registered_at: i64,
    status: &str,
) -> Result<(), sqlx::Error> {
    let applicant = event.applicant.clone().unwrap_or_default();
    sqlx::query(
        "INSERT INTO appeals (appeal_id, number, applicant_name, applicant_email, category_id, region_code, \
         created_at, status, received, category_name, subcategory_name, fact_name, applicant_time_zone) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (appeal_id) DO UPDATE SET number = excluded.number, applicant_name = excluded.applicant_name, \
         applicant_email = excluded.applicant_email, category_id = excluded.category_id, \
         region_code = excluded.region_code, created_at = excluded.created_at, received = excluded.received, \
         category_name = CASE WHEN excluded.category_name = '' THEN appeals.category_name \
         ELSE excluded.category_name END, \
         subcategory_name = CASE WHEN excluded.subcategory_name = '' THEN appeals.subcategory_name \
         ELSE excluded.subcategory_name END, \
         fact_name = CASE WHEN excluded.fact_name = '' THEN appeals.fact_name ELSE excluded.fact_name END, \
         applicant_time_zone = excluded.applicant_time_zone",
    )
    .bind(&event.appeal_id)
    .bind(event.number)
    .bind(&applicant.full_name)
    .bind(&applicant.email)
    .bind(&event.category_id)
    .bind(&event.region_code)
    .bind(registered_at)
    .bind(status)
    .bind(true)
    .bind(&event.category_name)
    .bind(&event.subcategory_name)
    .bind(&event.fact_name)
    .bind(&event.applicant_time_zone)
    .execute(executor)
    .await?;
    Ok(())
}

/// Records where an appeal went; its registration may not be recorded yet. Names the event
/// lacks (an older event, a reroute from a deployment that does not carry them) keep the ones
/// known from earlier events.
#[tracing::instrument(skip_all, fields(appeal_id = %event.appeal_id))]
pub async fn record_routed<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    event: &ev::AppealRouted,
    status: &str,
) -> Result<(), sqlx::Error> {
    let organization = event.organization.clone().unwrap_or_default();
    sqlx::query(
        "INSERT INTO appeals (appeal_id, number, category_id, region_code, organization_id, organization_name, \
         time_zone, status, category_name, subcategory_name, fact_name) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (appeal_id) DO UPDATE SET organization_id = excluded.organization_id, \
         organization_name = excluded.organization_name, time_zone = excluded.time_zone, \
         category_name = CASE WHEN excluded.category_name = '' THEN appeals.category_name \
         ELSE excluded.category_name END, \
         subcategory_name = CASE WHEN excluded.subcategory_name = '' THEN appeals.subcategory_name \
         ELSE excluded.subcategory_name END, \
         fact_name = CASE WHEN excluded.fact_name = '' THEN appeals.fact_name ELSE excluded.fact_name END",
    )
    .bind(&event.appeal_id)
    .bind(event.number)
    .bind(&event.category_id)
    .bind(&event.region_code)
    .bind(&organization.id)
    .bind(&organization.short_name)
    .bind(&event.time_zone)
    .bind(status)
    .bind(&event.category_name)
    .bind(&event.subcategory_name)
    .bind(&event.fact_name)
    .execute(executor)
    .await?;
    Ok(())
}

/// Sets the answer deadline.
pub async fn set_deadline<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    appeal_id: &str,
    due: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE appeals SET deadline = $1 WHERE appeal_id = $2")
        .bind(due)
        .bind(appeal_id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Sets the execution deadline.
pub async fn set_execution_due<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    appeal_id: &str,
    due: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE appeals SET execution_due = $1 WHERE appeal_id = $2")
        .bind(due)
        .bind(appeal_id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Whether this is the first time the appeal arrives at `organization_id` (and notes it).
pub async fn first_arrival<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    appeal_id: &str,
    organization_id: &str,
) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query("INSERT INTO arrivals (appeal_id, organization_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(appeal_id)
            .bind(organization_id)
            .execute(executor)
            .await?
            .rows_affected();
    Ok(inserted == 1)
}

/// Sets the status as of `at` unless a later one is recorded: events of one appeal may be
/// handled out of order.
pub async fn update_status<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    appeal_id: &str,
    status: &str,
    at: i64,
    execution_due: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE appeals SET status = $1, status_at = $2, execution_due = COALESCE($3, execution_due) \
         WHERE appeal_id = $4 AND status_at <= $2",
    )
    .bind(status)
    .bind(at)
    .bind(execution_due)
    .bind(appeal_id)
    .execute(executor)
    .await?;
    Ok(())
}

/// Notes that the applicant is told of something that happened at `at`, unless they were already
/// told of something later: then it is not told (after the later news it would mislead), and
/// this returns false. Row-locked on PostgreSQL, so two events of one appeal handled at once
/// are decided one after the other.
pub async fn advance_letter<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    appeal_id: &str,
    at: i64,
) -> Result<bool, sqlx::Error> {
    let advanced = sqlx::query("UPDATE appeals SET last_letter_at = $1 WHERE appeal_id = $2 AND last_letter_at <= $1")
        .bind(at)
        .bind(appeal_id)
        .execute(executor)
        .await?
        .rows_affected();
    Ok(advanced == 1)
}

pub async fn load<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    appeal_id: &str,
) -> Result<Option<Appeal>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT appeal_id, number, applicant_name, applicant_email, category_id, category_name, subcategory_name, \
         fact_name, region_code, applicant_time_zone, organization_id, organization_name, time_zone, created_at, \
         deadline, execution_due, status, received FROM appeals WHERE appeal_id = $1",
    )
    .bind(appeal_id)
    .fetch_optional(executor)
    .await?;
    row.map(|row| -> Result<Appeal, sqlx::Error> {
        Ok(Appeal {
            appeal_id: row.try_get("appeal_id")?,
            number: row.try_get("number")?,
            applicant_name: row.try_get("applicant_name")?,
            applicant_email: row.try_get("applicant_email")?,
            category_id: row.try_get("category_id")?,
            category_name: row.try_get("category_name")?,
            subcategory_name: row.try_get("subcategory_name")?,
            fact_name: row.try_get("fact_name")?,
            region_code: row.try_get("region_code")?,
            applicant_time_zone: row.try_get("applicant_time_zone")?,
            organization_id: row.try_get("organization_id")?,
            organization_name: row.try_get("organization_name")?,
            time_zone: row.try_get("time_zone")?,
            created_at: row.try_get("created_at")?,
            deadline: row.try_get("deadline")?,
            execution_due: row.try_get("execution_due")?,
            status: row.try_get("status")?,
            received: row.flag("received")?,
        })
    })
    .transpose()
}

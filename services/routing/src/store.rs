//! The routing store, written once over `sqlx::Any` for PostgreSQL and SQLite: `$N`
//! placeholders, TEXT ids, BIGINT integers and microsecond times, JSON arrays in TEXT.
//!
//! Every function takes a connection, so callers choose the transaction: a change and the bump
//! of its scope's version are committed together ([`bump`]).

use chrono::{DateTime, Utc};
use pos_platform::db::{RowExt, now_micros};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::model::{
    Addressee, AddresseeKind, AutoRule, Category, ClassifierData, DirectoryData, Fact, OnboardingConfirmation,
    OnboardingStep, OrgType, Organization, Region, Scope, Subcategory,
};
use crate::resolve::Step;

/// What an insert does with a row that already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConflict {
    /// Replace its content (an admin edit, a reseed that overwrites).
    Update,
    /// Keep it (a seed that only adds what is missing).
    Keep,
}

fn decode_error(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

fn to_json(list: &[String]) -> Result<String, sqlx::Error> {
    serde_json::to_string(list).map_err(|e| sqlx::Error::Encode(e.into()))
}

fn from_json(row: &AnyRow, column: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| decode_error(format!("{column}: {e}")))
}

fn org_type(row: &AnyRow, column: &str) -> Result<OrgType, sqlx::Error> {
    let name: String = row.try_get(column)?;
    name.parse().map_err(|_| decode_error(format!("{column}: unknown organization type {name:?}")))
}

fn int(row: &AnyRow, column: &str) -> Result<i32, sqlx::Error> {
    let value: i64 = row.try_get(column)?;
    i32::try_from(value).map_err(|e| decode_error(format!("{column}: {e}")))
}

// --- Versions ----------------------------------------------------------------------------------

/// The current versions of the classifier and the directory.
pub async fn versions(conn: &mut AnyConnection) -> Result<(i64, i64), sqlx::Error> {
    let rows = sqlx::query("SELECT scope, version FROM routing_versions").fetch_all(&mut *conn).await?;
    let (mut classifier, mut directory) = (0, 0);
    for row in rows {
        let scope: String = row.try_get("scope")?;
        let version: i64 = row.try_get("version")?;
        match scope.parse::<Scope>() {
            Ok(Scope::Classifier) => classifier = version,
            Ok(Scope::Directory) => directory = version,
            // A scope of a newer build: nothing this one reads.
            Err(_) => {}
        }
    }
    Ok((classifier, directory))
}

/// Moves `scope` to a new version, in the caller's transaction. The new version is at least
/// the current time in microseconds, so versions stay unique even across a database that was
/// recreated while the cache kept entries of the old one.
pub async fn bump(conn: &mut AnyConnection, scope: Scope) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE routing_versions SET version = CASE WHEN version + 1 > $2 THEN version + 1 ELSE $2 END \
         WHERE scope = $1",
    )
    .bind(scope.as_str())
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether neither classifier nor directory has anything yet (a fresh database).
pub async fn is_empty(conn: &mut AnyConnection) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM facts) + (SELECT COUNT(*) FROM organizations) + (SELECT COUNT(*) FROM regions)",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(count == 0)
}

// --- Loading the snapshots ---------------------------------------------------------------------

#[tracing::instrument(skip(conn))]
pub async fn load_classifier(conn: &mut AnyConnection, version: i64) -> Result<ClassifierData, sqlx::Error> {
    let categories = sqlx::query("SELECT id, name, active FROM categories ORDER BY position, id")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok(Category { id: row.try_get("id")?, name: row.try_get("name")?, active: row.flag("active")? }))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let subcategories = sqlx::query("SELECT id, category_id, name, active FROM subcategories ORDER BY position, id")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(Subcategory {
                id: row.try_get("id")?,
                category_id: row.try_get("category_id")?,
                name: row.try_get("name")?,
                active: row.flag("active")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let facts = sqlx::query(
        "SELECT id, subcategory_id, name, addressee_kind, addressee_type, addressee_organization_id, period_days, \
         working_days, fast_track_default, fast_track_regions, not_fast_track_regions, active \
         FROM facts ORDER BY position, id",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(fact_from_row)
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(ClassifierData { version, categories, subcategories, facts })
}

fn fact_from_row(row: &AnyRow) -> Result<Fact, sqlx::Error> {
    let kind: String = row.try_get("addressee_kind")?;
    let kind: AddresseeKind =
        kind.parse().map_err(|_| decode_error(format!("addressee_kind: unknown kind {kind:?}")))?;
    let addressee = match kind {
        AddresseeKind::Picked => Addressee::Picked { organization_type: org_type(row, "addressee_type")? },
        AddresseeKind::Regional => Addressee::Regional { organization_type: org_type(row, "addressee_type")? },
        AddresseeKind::Federal => Addressee::Federal { organization_id: row.try_get("addressee_organization_id")? },
    };
    Ok(Fact {
        id: row.try_get("id")?,
        subcategory_id: row.try_get("subcategory_id")?,
        name: row.try_get("name")?,
        addressee,
        period_days: int(row, "period_days")?,
        working_days: row.flag("working_days")?,
        fast_track_default: row.flag("fast_track_default")?,
        fast_track_regions: from_json(row, "fast_track_regions")?,
        not_fast_track_regions: from_json(row, "not_fast_track_regions")?,
        active: row.flag("active")?,
    })
}

#[tracing::instrument(skip(conn))]
pub async fn load_directory(conn: &mut AnyConnection, version: i64) -> Result<DirectoryData, sqlx::Error> {
    let regions = sqlx::query("SELECT code, name, time_zone, cabinet_organization_id FROM regions ORDER BY code")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(Region {
                code: row.try_get("code")?,
                name: row.try_get("name")?,
                time_zone: row.try_get("time_zone")?,
                cabinet_organization_id: row.try_get("cabinet_organization_id")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let organizations = sqlx::query(
        "SELECT id, full_name, short_name, address, email, region_code, parent_id, type, connected \
         FROM organizations ORDER BY region_code, id",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(Organization {
            id: row.try_get("id")?,
            full_name: row.try_get("full_name")?,
            short_name: row.try_get("short_name")?,
            address: row.try_get("address")?,
            email: row.try_get("email")?,
            region_code: row.try_get("region_code")?,
            parent_id: row.try_get("parent_id")?,
            org_type: org_type(row, "type")?,
            connected: row.flag("connected")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let auto_rules = sqlx::query(
        "SELECT id, organization_id, priority, fact_id, keywords, target_organization_id, target_executor_id, active \
         FROM auto_rules ORDER BY organization_id, priority, id",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(AutoRule {
            id: row.try_get("id")?,
            organization_id: row.try_get("organization_id")?,
            priority: int(row, "priority")?,
            fact_id: row.try_get("fact_id")?,
            keywords: from_json(row, "keywords")?,
            target_organization_id: row.try_get("target_organization_id")?,
            target_executor_id: row.try_get("target_executor_id")?,
            active: row.flag("active")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let onboarding = sqlx::query(
        "SELECT organization_id, step, confirmed_by, confirmed_at FROM onboarding_confirmations \
         ORDER BY organization_id, step",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let step: String = row.try_get("step")?;
        Ok(OnboardingConfirmation {
            organization_id: row.try_get("organization_id")?,
            step: step.parse().map_err(|_| decode_error(format!("step: unknown onboarding step {step:?}")))?,
            confirmed_by: row.try_get("confirmed_by")?,
            confirmed_at: row.try_get("confirmed_at")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(DirectoryData { version, regions, organizations, auto_rules, onboarding })
}

// --- Writing the classifier and the directory --------------------------------------------------

/// Tables whose rows carry a display position.
#[derive(Clone, Copy, Debug)]
pub enum Ordered {
    Categories,
    Subcategories,
    Facts,
}

/// The position after the last row of `table`, for a row added by an admin.
pub async fn next_position(conn: &mut AnyConnection, table: Ordered) -> Result<i64, sqlx::Error> {
    let table = match table {
        Ordered::Categories => "categories",
        Ordered::Subcategories => "subcategories",
        Ordered::Facts => "facts",
    };
    // The table name is one of three literals above.
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COALESCE(MAX(position), 0) + 1 FROM {table}")))
        .fetch_one(&mut *conn)
        .await
}

fn conflict_clause(on_conflict: OnConflict, update: &str) -> String {
    match on_conflict {
        OnConflict::Update => format!("ON CONFLICT (id) DO UPDATE SET {update}"),
        OnConflict::Keep => "ON CONFLICT (id) DO NOTHING".to_owned(),
    }
}

/// Inserts or updates a category; `position` applies to a new row only. Returns whether a row
/// was written.
pub async fn upsert_category(
    conn: &mut AnyConnection,
    category: &Category,
    position: i64,
    on_conflict: OnConflict,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO categories (id, name, active, position, updated_at) VALUES ($1, $2, $3, $4, $5) {}",
        conflict_clause(
            on_conflict,
            "name = excluded.name, active = excluded.active, updated_at = excluded.updated_at"
        )
    );
    // Built from literals only; every value is bound.
    let written = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&category.id)
        .bind(&category.name)
        .bind(category.active)
        .bind(position)
        .bind(now_micros())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(written > 0)
}

pub async fn upsert_subcategory(
    conn: &mut AnyConnection,
    subcategory: &Subcategory,
    position: i64,
    on_conflict: OnConflict,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO subcategories (id, category_id, name, active, position, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) {}",
        conflict_clause(
            on_conflict,
            "category_id = excluded.category_id, name = excluded.name, active = excluded.active, \
             updated_at = excluded.updated_at"
        )
    );
    let written = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&subcategory.id)
        .bind(&subcategory.category_id)
        .bind(&subcategory.name)
        .bind(subcategory.active)
        .bind(position)
        .bind(now_micros())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(written > 0)
}

pub async fn upsert_fact(
    conn: &mut AnyConnection,
    fact: &Fact,
    position: i64,
    on_conflict: OnConflict,
) -> Result<bool, sqlx::Error> {
    let (addressee_type, addressee_organization_id) = match &fact.addressee {
        Addressee::Picked { organization_type } | Addressee::Regional { organization_type } => {
            (organization_type.as_str(), "")
        }
        Addressee::Federal { organization_id } => ("", organization_id.as_str()),
    };
    let sql = format!(
        "INSERT INTO facts (id, subcategory_id, name, addressee_kind, addressee_type, addressee_organization_id, \
         period_days, working_days, fast_track_default, fast_track_regions, not_fast_track_regions, active, position, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) {}",
        conflict_clause(
            on_conflict,
            "subcategory_id = excluded.subcategory_id, name = excluded.name, addressee_kind = excluded.addressee_kind, \
             addressee_type = excluded.addressee_type, addressee_organization_id = excluded.addressee_organization_id, \
             period_days = excluded.period_days, working_days = excluded.working_days, \
             fast_track_default = excluded.fast_track_default, fast_track_regions = excluded.fast_track_regions, \
             not_fast_track_regions = excluded.not_fast_track_regions, active = excluded.active, \
             updated_at = excluded.updated_at"
        )
    );
    let written = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&fact.id)
        .bind(&fact.subcategory_id)
        .bind(&fact.name)
        .bind(fact.addressee.kind())
        .bind(addressee_type)
        .bind(addressee_organization_id)
        .bind(i64::from(fact.period_days))
        .bind(fact.working_days)
        .bind(fact.fast_track_default)
        .bind(to_json(&fact.fast_track_regions)?)
        .bind(to_json(&fact.not_fast_track_regions)?)
        .bind(fact.active)
        .bind(position)
        .bind(now_micros())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(written > 0)
}

pub async fn upsert_organization(
    conn: &mut AnyConnection,
    organization: &Organization,
    on_conflict: OnConflict,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO organizations (id, full_name, short_name, address, email, region_code, parent_id, type, connected, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) {}",
        conflict_clause(
            on_conflict,
            "full_name = excluded.full_name, short_name = excluded.short_name, address = excluded.address, \
             email = excluded.email, region_code = excluded.region_code, parent_id = excluded.parent_id, \
             type = excluded.type, connected = excluded.connected, updated_at = excluded.updated_at"
        )
    );
    let written = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&organization.id)
        .bind(&organization.full_name)
        .bind(&organization.short_name)
        .bind(&organization.address)
        .bind(&organization.email)
        .bind(&organization.region_code)
        .bind(&organization.parent_id)
        .bind(organization.org_type.as_str())
        .bind(organization.connected)
        .bind(now_micros())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(written > 0)
}

pub async fn upsert_region(
    conn: &mut AnyConnection,
    region: &Region,
    on_conflict: OnConflict,
) -> Result<bool, sqlx::Error> {
    let conflict = match on_conflict {
        OnConflict::Update => {
            "ON CONFLICT (code) DO UPDATE SET name = excluded.name, time_zone = excluded.time_zone, \
             cabinet_organization_id = excluded.cabinet_organization_id, updated_at = excluded.updated_at"
        }
        OnConflict::Keep => "ON CONFLICT (code) DO NOTHING",
    };
    let sql = format!(
        "INSERT INTO regions (code, name, time_zone, cabinet_organization_id, updated_at) VALUES ($1, $2, $3, $4, $5) \
         {conflict}"
    );
    let written = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&region.code)
        .bind(&region.name)
        .bind(&region.time_zone)
        .bind(&region.cabinet_organization_id)
        .bind(now_micros())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(written > 0)
}

pub async fn upsert_auto_rule(conn: &mut AnyConnection, rule: &AutoRule) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auto_rules (id, organization_id, priority, fact_id, keywords, target_organization_id, \
         target_executor_id, active, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (id) DO UPDATE SET organization_id = excluded.organization_id, priority = excluded.priority, \
         fact_id = excluded.fact_id, keywords = excluded.keywords, target_organization_id = excluded.target_organization_id, \
         target_executor_id = excluded.target_executor_id, active = excluded.active, updated_at = excluded.updated_at",
    )
    .bind(&rule.id)
    .bind(&rule.organization_id)
    .bind(i64::from(rule.priority))
    .bind(&rule.fact_id)
    .bind(to_json(&rule.keywords)?)
    .bind(&rule.target_organization_id)
    .bind(&rule.target_executor_id)
    .bind(rule.active)
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Returns whether the rule existed.
pub async fn delete_auto_rule(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let deleted =
        sqlx::query("DELETE FROM auto_rules WHERE id = $1").bind(id).execute(&mut *conn).await?.rows_affected();
    Ok(deleted > 0)
}

// --- Onboarding ------------------------------------------------------------------------------

/// Locks the organization's row for the rest of the caller's transaction (PostgreSQL; SQLite
/// has one writer anyway), so that two steps confirmed at once by two people both see each
/// other and the second connects the organization. Returns whether the organization exists.
pub async fn lock_organization(conn: &mut AnyConnection, organization_id: &str) -> Result<bool, sqlx::Error> {
    let locked = sqlx::query("UPDATE organizations SET updated_at = $2 WHERE id = $1")
        .bind(organization_id)
        .bind(now_micros())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(locked > 0)
}

/// Records the confirmation of `step` unless it was confirmed before (the first one stands).
/// Returns whether it was recorded now.
pub async fn confirm_onboarding(
    conn: &mut AnyConnection,
    organization_id: &str,
    step: OnboardingStep,
    confirmed_by: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO onboarding_confirmations (organization_id, step, confirmed_by, confirmed_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id, step) DO NOTHING",
    )
    .bind(organization_id)
    .bind(step.as_str())
    .bind(confirmed_by)
    .bind(now_micros())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

/// The steps `organization_id` has confirmed, as the caller's transaction sees them.
pub async fn confirmed_steps(
    conn: &mut AnyConnection,
    organization_id: &str,
) -> Result<Vec<OnboardingStep>, sqlx::Error> {
    let rows = sqlx::query("SELECT step FROM onboarding_confirmations WHERE organization_id = $1")
        .bind(organization_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            let step: String = row.try_get("step")?;
            step.parse().map_err(|_| decode_error(format!("step: unknown onboarding step {step:?}")))
        })
        .collect()
}

/// Marks the organization connected (onboarding complete).
pub async fn connect_organization(conn: &mut AnyConnection, organization_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE organizations SET connected = $2, updated_at = $3 WHERE id = $1")
        .bind(organization_id)
        .bind(true)
        .bind(now_micros())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Forgets the organization's confirmations: it was disconnected, and confirms again.
pub async fn clear_onboarding(conn: &mut AnyConnection, organization_id: &str) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM onboarding_confirmations WHERE organization_id = $1")
        .bind(organization_id)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

// --- Decisions ---------------------------------------------------------------------------------

/// A routing decision as recorded for an appeal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDecision {
    pub appeal_id: String,
    pub message_id: String,
    pub number: i64,
    pub region_code: String,
    pub fact_id: String,
    pub organization_id: String,
    pub organization_region: String,
    pub time_zone: String,
    pub period_days: i32,
    pub working_days: bool,
    pub fast_track: bool,
    pub delegated_by_auto_rule: bool,
    pub auto_rule_id: String,
    pub target_executor_id: String,
    pub steps: Vec<Step>,
    pub explanation: String,
    pub decided_at: DateTime<Utc>,
    /// What the appeal carried when first routed, for the appeal.routed of a reroute.
    pub content: AppealContent,
}

/// The appeal as its first routing saw it: what a reroute repeats so that every reader of
/// `appeal.routed` gets a complete event (see migration 0003).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppealContent {
    /// `None` for decisions recorded before the content was kept.
    pub registered_at: Option<DateTime<Utc>>,
    pub source: i32,
    pub category_id: String,
    pub subcategory_id: String,
    pub public_text: String,
    pub problem_address: String,
    pub applicant: Option<StoredApplicant>,
}

/// The applicant as `pos.v1.Applicant`, stored as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredApplicant {
    pub full_name: String,
    pub email: String,
    pub phone: String,
    pub account_id: String,
}

/// Records the decision for an appeal unless one exists; returns whether it was recorded.
#[tracing::instrument(skip(conn, decision), fields(appeal_id = %decision.appeal_id))]
pub async fn insert_decision(conn: &mut AnyConnection, decision: &StoredDecision) -> Result<bool, sqlx::Error> {
    let steps = serde_json::to_string(&decision.steps).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let content = &decision.content;
    let applicant = match &content.applicant {
        Some(applicant) => serde_json::to_string(applicant).map_err(|e| sqlx::Error::Encode(e.into()))?,
        None => String::new(),
    };
    let inserted = sqlx::query(
        "INSERT INTO routing_decisions (appeal_id, message_id, number, region_code, fact_id, organization_id, \
         organization_region, time_zone, period_days, working_days, fast_track, delegated_by_auto_rule, auto_rule_id, \
         target_executor_id, steps, explanation, decided_at, registered_at, source, category_id, subcategory_id, \
         public_text, problem_address, applicant) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
         $22, $23, $24) \
         ON CONFLICT (appeal_id) DO NOTHING",
    )
    .bind(&decision.appeal_id)
    .bind(&decision.message_id)
    .bind(decision.number)
    .bind(&decision.region_code)
    .bind(&decision.fact_id)
    .bind(&decision.organization_id)
    .bind(&decision.organization_region)
    .bind(&decision.time_zone)
    .bind(i64::from(decision.period_days))
    .bind(decision.working_days)
    .bind(decision.fast_track)
    .bind(decision.delegated_by_auto_rule)
    .bind(&decision.auto_rule_id)
    .bind(&decision.target_executor_id)
    .bind(steps)
    .bind(&decision.explanation)
    .bind(pos_platform::db::to_micros(decision.decided_at))
    .bind(content.registered_at.map_or(0, pos_platform::db::to_micros))
    .bind(i64::from(content.source))
    .bind(&content.category_id)
    .bind(&content.subcategory_id)
    .bind(&content.public_text)
    .bind(&content.problem_address)
    .bind(applicant)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

pub async fn decision(conn: &mut AnyConnection, appeal_id: &str) -> Result<Option<StoredDecision>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT appeal_id, message_id, number, region_code, fact_id, organization_id, organization_region, time_zone, \
         period_days, working_days, fast_track, delegated_by_auto_rule, auto_rule_id, target_executor_id, steps, \
         explanation, decided_at, registered_at, source, category_id, subcategory_id, public_text, problem_address, \
         applicant FROM routing_decisions WHERE appeal_id = $1",
    )
    .bind(appeal_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let steps: String = row.try_get("steps")?;
    let registered_at: i64 = row.try_get("registered_at")?;
    let applicant: String = row.try_get("applicant")?;
    let applicant = if applicant.is_empty() {
        None
    } else {
        Some(serde_json::from_str(&applicant).map_err(|e| decode_error(format!("applicant: {e}")))?)
    };
    Ok(Some(StoredDecision {
        appeal_id: row.try_get("appeal_id")?,
        message_id: row.try_get("message_id")?,
        number: row.try_get("number")?,
        region_code: row.try_get("region_code")?,
        fact_id: row.try_get("fact_id")?,
        organization_id: row.try_get("organization_id")?,
        organization_region: row.try_get("organization_region")?,
        time_zone: row.try_get("time_zone")?,
        period_days: int(&row, "period_days")?,
        working_days: row.flag("working_days")?,
        fast_track: row.flag("fast_track")?,
        delegated_by_auto_rule: row.flag("delegated_by_auto_rule")?,
        auto_rule_id: row.try_get("auto_rule_id")?,
        target_executor_id: row.try_get("target_executor_id")?,
        steps: serde_json::from_str(&steps).map_err(|e| decode_error(format!("steps: {e}")))?,
        explanation: row.try_get("explanation")?,
        decided_at: row.time("decided_at")?,
        content: AppealContent {
            registered_at: (registered_at > 0).then(|| pos_platform::db::from_micros(registered_at)),
            source: int(&row, "source")?,
            category_id: row.try_get("category_id")?,
            subcategory_id: row.try_get("subcategory_id")?,
            public_text: row.try_get("public_text")?,
            problem_address: row.try_get("problem_address")?,
            applicant,
        },
    }))
}

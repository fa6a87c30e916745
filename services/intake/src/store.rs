//! Intake's tables, written once over `sqlx::Any` for PostgreSQL and SQLite: `$N` placeholders,
//! TEXT ids, BIGINT microsecond times, booleans read with [`RowExt::flag`].

use chrono::{DateTime, Utc};
use pos_platform::bus::Envelope;
use pos_platform::db::{Db, RowExt, Tx, to_micros};
use pos_proto::v1::events::AppealReceived;
use pos_proto::v1::{Applicant, OrganizationRef};
use sqlx::Row;
use sqlx::any::AnyRow;

/// What the applicant sees right after registration.
pub const STATUS_REGISTERED: &str = "registered";
/// What the applicant sees once routing has decided, until the organization's cabinet moves it.
pub const STATUS_ROUTED: &str = "routed";

/// An appeal about to be registered, validated and masked.
#[derive(Clone, Debug)]
pub struct NewAppeal {
    pub id: String,
    /// The caller's subject: together with `request_id` the idempotency key.
    pub submitted_by: String,
    pub request_id: String,
    pub request_sha256: String,
    pub registered_at: DateTime<Utc>,
    pub source: i32,
    pub applicant: Applicant,
    pub region_code: String,
    pub category_id: String,
    pub subcategory_id: String,
    pub fact_id: String,
    /// Announced with the appeal, not stored (routing's classifier keeps them).
    pub names: ClassifierNames,
    pub picked_organization_id: String,
    /// As written; stays in intake's table.
    pub original_text: String,
    pub public_text: String,
    pub problem_address: String,
    pub attachment_ids: Vec<String>,
    pub public: bool,
    pub portal_number: String,
}

/// The classifier's names of an appeal's category, subcategory and fact, as the applicant picked
/// them: announced with the appeal so that every reader can write them (ADR 0010), not stored,
/// since the classifier (routing's) keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassifierNames {
    pub category: String,
    pub subcategory: String,
    pub fact: String,
}

/// The answer to a submission: the same every time the request is repeated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    pub appeal_id: String,
    pub number: i64,
    pub registered_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    Created(Registered),
    /// The key was taken (before, or by a concurrent duplicate that committed first).
    Existing {
        registered: Registered,
        request_sha256: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Attached to another appeal (or gone) between validation and commit.
    #[error("attachment_ids[{index}] can no longer be attached")]
    AttachmentTaken { index: usize },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// An appeal as the applicant and the organization see it; the original text is not here.
#[derive(Clone, Debug, PartialEq)]
pub struct AppealRecord {
    pub id: String,
    pub number: i64,
    pub registered_at: DateTime<Utc>,
    pub submitted_by: String,
    pub source: i32,
    pub applicant: Applicant,
    pub region_code: String,
    pub category_id: String,
    pub subcategory_id: String,
    pub fact_id: String,
    pub picked_organization_id: String,
    pub public_text: String,
    pub problem_address: String,
    pub public: bool,
    pub portal_number: String,
    pub status: String,
    pub status_changed_at: DateTime<Utc>,
    pub routing: Option<RoutingRecord>,
    pub attachments: Vec<AttachmentRecord>,
}

/// The latest routing decision.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingRecord {
    pub organization: OrganizationRef,
    pub period_days: i32,
    pub working_days: bool,
    pub fast_track: bool,
    pub delegated_by_auto_rule: bool,
    pub explanation: String,
    pub routed_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentRecord {
    pub id: String,
    pub uploaded_by: String,
    pub file_name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub object_path: String,
    pub uploaded_at: DateTime<Utc>,
    pub appeal_id: Option<String>,
    /// The organization a staff member uploaded it for; empty for applicants, operators, systems.
    pub uploaded_for_organization: String,
}

/// What refers to an attachment besides its appeal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum ReferenceKind {
    /// The organization's answer; the object is the ticket.
    Answer,
    /// An escalation; the object is the incident.
    Incident,
    /// The information the applicant sent on the ticket's request; the object is the ticket.
    Information,
}

/// One answer or incident referring to an attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentReference {
    pub attachment_id: String,
    pub kind: ReferenceKind,
    pub object_id: String,
    pub appeal_id: String,
    /// The organization whose staff referred to it.
    pub organization_id: String,
    pub claimed_by: String,
    pub claimed_at: DateTime<Utc>,
}

/// What an event did to the applicant's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// Older than what is already shown: ignored.
    Stale,
    UnknownAppeal,
}

const APPEAL_COLUMNS: &str = "number, id, submitted_by, registered_at, source, applicant_name, applicant_email, \
     applicant_phone, applicant_account_id, region_code, category_id, subcategory_id, fact_id, \
     picked_organization_id, public_text, problem_address, is_public, portal_number, status, status_changed_at, \
     routed_organization_id, routed_organization_name, routed_organization_type, routed_organization_region, \
     period_days, working_days, fast_track, delegated_by_auto_rule, routing_explanation, routed_at";

const ATTACHMENT_COLUMNS: &str = "id, uploaded_by, file_name, content_type, size, sha256, object_path, uploaded_at, \
     appeal_id, uploaded_for_organization";

/// Neither attached to an appeal nor referred to by an answer or an incident.
const ORPHAN: &str = "appeal_id IS NULL AND NOT EXISTS \
     (SELECT 1 FROM attachment_references r WHERE r.attachment_id = attachments.id)";

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Store {
        Store { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The answer already given to `(subject, request_id)`, with the hash of that request.
    #[tracing::instrument(skip(self))]
    pub async fn find_registration(
        &self,
        subject: &str,
        request_id: &str,
    ) -> Result<Option<(Registered, String)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT k.request_sha256, a.id, a.number, a.registered_at FROM idempotency_keys k \
             JOIN appeals a ON a.id = k.appeal_id WHERE k.subject = $1 AND k.request_id = $2",
        )
        .bind(subject)
        .bind(request_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok((
                Registered {
                    appeal_id: row.try_get("id")?,
                    number: row.try_get("number")?,
                    registered_at: row.time("registered_at")?,
                },
                row.try_get("request_sha256")?,
            ))
        })
        .transpose()
    }

    /// Registers the appeal, claims its attachments and writes `AppealReceived` into the
    /// outbox, all in one transaction; wakes the relay after the commit.
    ///
    /// The idempotency key is inserted first: a concurrent duplicate waits on its unique index
    /// (PostgreSQL) or on the write lock (SQLite) and then finds the winner's answer, so ten
    /// identical requests at once make exactly one appeal.
    #[tracing::instrument(skip_all, fields(appeal_id = %appeal.id, request_id = %appeal.request_id))]
    pub async fn register(&self, appeal: &NewAppeal) -> Result<Registration, RegisterError> {
        // A winner that rolled back leaves the key free again: try once more then.
        for _ in 0..3 {
            let mut tx = self.db.begin().await?;
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (subject, request_id, request_sha256, appeal_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject, request_id) DO NOTHING",
            )
            .bind(&appeal.submitted_by)
            .bind(&appeal.request_id)
            .bind(&appeal.request_sha256)
            .bind(&appeal.id)
            .bind(to_micros(appeal.registered_at))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                tx.rollback().await?;
                if let Some((registered, request_sha256)) =
                    self.find_registration(&appeal.submitted_by, &appeal.request_id).await?
                {
                    return Ok(Registration::Existing { registered, request_sha256 });
                }
                continue;
            }
            let number = insert_appeal(&mut tx, appeal).await?;
            for (index, attachment_id) in appeal.attachment_ids.iter().enumerate() {
                let attached = sqlx::query(
                    "UPDATE attachments SET appeal_id = $1, position = $2 \
                     WHERE id = $3 AND uploaded_by = $4 AND appeal_id IS NULL",
                )
                .bind(&appeal.id)
                .bind(index as i64)
                .bind(attachment_id)
                .bind(&appeal.submitted_by)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if attached == 0 {
                    tx.rollback().await?;
                    return Err(RegisterError::AttachmentTaken { index });
                }
            }
            let event = received_event(appeal, number);
            let envelope = Envelope::new(&event, &appeal.region_code).with_appeal(&appeal.id);
            pos_platform::outbox::enqueue(&mut tx, &envelope).await?;
            tx.commit().await?;
            self.db.wake_outbox();
            // Counted here, after the commit that made the appeal, so that a replayed request
            // (answered from its idempotency key) and a rolled-back attempt never count.
            metrics::counter!("pos_appeals_received_total", "region" => appeal.region_code.clone()).increment(1);
            return Ok(Registration::Created(Registered {
                appeal_id: appeal.id.clone(),
                number,
                registered_at: appeal.registered_at,
            }));
        }
        Err(RegisterError::Db(sqlx::Error::Protocol("idempotency key kept changing hands".into())))
    }

    /// The appeal with its routing, status and attachments.
    #[tracing::instrument(skip(self))]
    pub async fn appeal(&self, id: &str) -> Result<Option<AppealRecord>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {APPEAL_COLUMNS} FROM appeals WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut appeal = appeal_from_row(&row)?;
        appeal.attachments = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE appeal_id = $1 ORDER BY position"
        )))
        .bind(id)
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(attachment_from_row)
        .collect::<Result<_, _>>()?;
        Ok(Some(appeal))
    }

    #[tracing::instrument(skip_all, fields(attachment_id = %attachment.id))]
    pub async fn insert_attachment(&self, attachment: &AttachmentRecord) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        insert_attachment_row(&mut tx, attachment).await?;
        tx.commit().await
    }

    /// Attachment bytes `subject` uploaded on `day` (UTC, `YYYY-MM-DD`).
    pub async fn uploaded_bytes(&self, subject: &str, day: &str) -> Result<u64, sqlx::Error> {
        let bytes: Option<i64> = sqlx::query_scalar("SELECT bytes FROM upload_usage WHERE subject = $1 AND day = $2")
            .bind(subject)
            .bind(day)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(bytes.unwrap_or(0).max(0) as u64)
    }

    /// Inserts the attachment and adds its size to its uploader's bytes of `day`, in one
    /// transaction, unless the day's total would pass `cap`: then nothing is written and the
    /// answer is `false`. Concurrent uploads of one caller are counted one after the other (the
    /// conflicting row is locked), so together they cannot pass the cap either.
    #[tracing::instrument(skip_all, fields(attachment_id = %attachment.id))]
    pub async fn insert_attachment_within(
        &self,
        attachment: &AttachmentRecord,
        day: &str,
        cap: u64,
    ) -> Result<bool, sqlx::Error> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        // The first upload of a day inserts its row unconditionally: the condition is the update's.
        if attachment.size > cap {
            return Ok(false);
        }
        let mut tx = self.db.begin().await?;
        let counted = sqlx::query(
            "INSERT INTO upload_usage (subject, day, bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (subject, day) DO UPDATE SET bytes = upload_usage.bytes + excluded.bytes \
             WHERE upload_usage.bytes + excluded.bytes <= $4",
        )
        .bind(&attachment.uploaded_by)
        .bind(day)
        .bind(attachment.size)
        .bind(cap)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if counted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_attachment_row(&mut tx, attachment).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets the upload counts of days before `day` (`YYYY-MM-DD`); returns how many went.
    pub async fn forget_upload_usage_before(&self, day: &str) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query("DELETE FROM upload_usage WHERE day < $1")
            .bind(day)
            .execute(self.db.pool())
            .await?
            .rows_affected())
    }

    /// The attachments among `ids` that exist, in no particular order.
    pub async fn attachments(&self, ids: &[String]) -> Result<Vec<AttachmentRecord>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Only placeholders are formatted into the statement; the ids are bound.
        let placeholders = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE id IN ({placeholders})");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id);
        }
        query.fetch_all(self.db.pool()).await?.iter().map(attachment_from_row).collect()
    }

    /// Records the references (one already recorded is kept as it was), in one transaction.
    pub async fn claim(&self, references: &[AttachmentReference]) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        for reference in references {
            sqlx::query(
                "INSERT INTO attachment_references (attachment_id, kind, object_id, appeal_id, organization_id, \
                 claimed_by, claimed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (attachment_id, kind, object_id) DO NOTHING",
            )
            .bind(&reference.attachment_id)
            .bind(<&str>::from(reference.kind))
            .bind(&reference.object_id)
            .bind(&reference.appeal_id)
            .bind(&reference.organization_id)
            .bind(&reference.claimed_by)
            .bind(to_micros(reference.claimed_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Lets the staff of `organization_id` read (and add to) the files `kind`/`object_id` refers
    /// to; granting twice keeps the first grant.
    pub async fn grant_reader(
        &self,
        kind: ReferenceKind,
        object_id: &str,
        organization_id: &str,
        appeal_id: &str,
        granted_by: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO attachment_readers (kind, object_id, organization_id, appeal_id, granted_by, granted_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, object_id, organization_id) DO NOTHING",
        )
        .bind(<&str>::from(kind))
        .bind(object_id)
        .bind(organization_id)
        .bind(appeal_id)
        .bind(granted_by)
        .bind(to_micros(Utc::now()))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Whether `organization_id` was granted the object `kind`/`object_id` of `appeal_id`.
    pub async fn is_reader(
        &self,
        kind: ReferenceKind,
        object_id: &str,
        appeal_id: &str,
        organization_id: &str,
    ) -> Result<bool, sqlx::Error> {
        if organization_id.is_empty() {
            return Ok(false);
        }
        let row = sqlx::query(
            "SELECT 1 AS granted FROM attachment_readers WHERE kind = $1 AND object_id = $2 AND appeal_id = $3 \
             AND organization_id = $4",
        )
        .bind(<&str>::from(kind))
        .bind(object_id)
        .bind(appeal_id)
        .bind(organization_id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Whether one of the objects referring to the attachment was granted to `organization_id`.
    pub async fn readable_by_grant(&self, attachment_id: &str, organization_id: &str) -> Result<bool, sqlx::Error> {
        if organization_id.is_empty() {
            return Ok(false);
        }
        let row = sqlx::query(
            "SELECT 1 AS granted FROM attachment_references r JOIN attachment_readers g \
             ON g.kind = r.kind AND g.object_id = r.object_id AND g.appeal_id = r.appeal_id \
             WHERE r.attachment_id = $1 AND g.organization_id = $2 LIMIT 1",
        )
        .bind(attachment_id)
        .bind(organization_id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Every answer and incident referring to the attachment.
    pub async fn references(&self, attachment_id: &str) -> Result<Vec<AttachmentReference>, sqlx::Error> {
        sqlx::query(
            "SELECT attachment_id, kind, object_id, appeal_id, organization_id, claimed_by, claimed_at \
             FROM attachment_references WHERE attachment_id = $1 ORDER BY claimed_at",
        )
        .bind(attachment_id)
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            Ok(AttachmentReference {
                attachment_id: row.try_get("attachment_id")?,
                kind: kind
                    .parse()
                    .map_err(|_| sqlx::Error::Decode(format!("unknown reference kind {kind:?}").into()))?,
                object_id: row.try_get("object_id")?,
                appeal_id: row.try_get("appeal_id")?,
                organization_id: row.try_get("organization_id")?,
                claimed_by: row.try_get("claimed_by")?,
                claimed_at: row.time("claimed_at")?,
            })
        })
        .collect()
    }

    /// Attachments uploaded before `cutoff`, never attached and never referred to, oldest first.
    pub async fn unattached_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<AttachmentRecord>, sqlx::Error> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE {ORPHAN} AND uploaded_at < $1 \
             ORDER BY uploaded_at LIMIT $2"
        )))
        .bind(to_micros(cutoff))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(attachment_from_row)
        .collect()
    }

    /// Deletes an attachment's row unless a submission attached it or something referred to it
    /// meanwhile.
    pub async fn delete_unattached(&self, id: &str) -> Result<bool, sqlx::Error> {
        let deleted = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM attachments WHERE id = $1 AND {ORPHAN}")))
            .bind(id)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }
}

async fn insert_attachment_row(tx: &mut Tx, attachment: &AttachmentRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO attachments (id, uploaded_by, file_name, content_type, size, sha256, object_path, \
         uploaded_at, appeal_id, position, uploaded_for_organization) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9)",
    )
    .bind(&attachment.id)
    .bind(&attachment.uploaded_by)
    .bind(&attachment.file_name)
    .bind(&attachment.content_type)
    .bind(attachment.size)
    .bind(&attachment.sha256)
    .bind(&attachment.object_path)
    .bind(to_micros(attachment.uploaded_at))
    .bind(&attachment.uploaded_for_organization)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_appeal(tx: &mut Tx, appeal: &NewAppeal) -> Result<i64, sqlx::Error> {
    let registered_at = to_micros(appeal.registered_at);
    sqlx::query_scalar(
        "INSERT INTO appeals (id, submitted_by, registered_at, source, applicant_name, applicant_email, \
         applicant_phone, applicant_account_id, region_code, category_id, subcategory_id, fact_id, \
         picked_organization_id, original_text, public_text, problem_address, is_public, portal_number, status, \
         status_changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
         RETURNING number",
    )
    .bind(&appeal.id)
    .bind(&appeal.submitted_by)
    .bind(registered_at)
    .bind(i64::from(appeal.source))
    .bind(&appeal.applicant.full_name)
    .bind(&appeal.applicant.email)
    .bind(&appeal.applicant.phone)
    .bind(&appeal.applicant.account_id)
    .bind(&appeal.region_code)
    .bind(&appeal.category_id)
    .bind(&appeal.subcategory_id)
    .bind(&appeal.fact_id)
    .bind(&appeal.picked_organization_id)
    .bind(&appeal.original_text)
    .bind(&appeal.public_text)
    .bind(&appeal.problem_address)
    .bind(appeal.public)
    .bind(&appeal.portal_number)
    .bind(STATUS_REGISTERED)
    .bind(registered_at)
    .fetch_one(&mut **tx)
    .await
}

/// The event routing and the others act upon: the masked text only, the classifier's names and
/// the zone of the applicant's region (empty for a region outside the table of regions).
fn received_event(appeal: &NewAppeal, number: i64) -> AppealReceived {
    AppealReceived {
        appeal_id: appeal.id.clone(),
        number,
        registered_at: Some(pos_proto::time::to_proto(appeal.registered_at)),
        source: appeal.source,
        applicant: Some(appeal.applicant.clone()),
        region_code: appeal.region_code.clone(),
        category_id: appeal.category_id.clone(),
        subcategory_id: appeal.subcategory_id.clone(),
        fact_id: appeal.fact_id.clone(),
        picked_organization_id: appeal.picked_organization_id.clone(),
        public_text: appeal.public_text.clone(),
        problem_address: appeal.problem_address.clone(),
        attachment_ids: appeal.attachment_ids.clone(),
        public: appeal.public,
        category_name: appeal.names.category.clone(),
        subcategory_name: appeal.names.subcategory.clone(),
        fact_name: appeal.names.fact.clone(),
        applicant_time_zone: pos_regions::zone(&appeal.region_code)
            .map(|zone| zone.name().to_owned())
            .unwrap_or_default(),
    }
}

/// Records a routing decision unless a later one is already recorded; shows "routed" unless
/// the status already moved past this moment.
pub async fn apply_routing(tx: &mut Tx, appeal_id: &str, routing: &RoutingRecord) -> Result<Applied, sqlx::Error> {
    let routed_at = to_micros(routing.routed_at);
    let organization = &routing.organization;
    let routed = sqlx::query(
        "UPDATE appeals SET routed_organization_id = $2, routed_organization_name = $3, \
         routed_organization_type = $4, routed_organization_region = $5, period_days = $6, working_days = $7, \
         fast_track = $8, delegated_by_auto_rule = $9, routing_explanation = $10, routed_at = $11 \
         WHERE id = $1 AND (routed_at IS NULL OR routed_at <= $11)",
    )
    .bind(appeal_id)
    .bind(&organization.id)
    .bind(&organization.short_name)
    .bind(i64::from(organization.r#type))
    .bind(&organization.region_code)
    .bind(i64::from(routing.period_days))
    .bind(routing.working_days)
    .bind(routing.fast_track)
    .bind(routing.delegated_by_auto_rule)
    .bind(&routing.explanation)
    .bind(routed_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let status = set_status(tx, appeal_id, STATUS_ROUTED, routing.routed_at).await?;
    if routed > 0 || status == Applied::Changed {
        return Ok(Applied::Changed);
    }
    Ok(status)
}

/// Shows `status` unless the view already shows something newer than `at`.
pub async fn apply_status(
    tx: &mut Tx,
    appeal_id: &str,
    status: &str,
    at: DateTime<Utc>,
) -> Result<Applied, sqlx::Error> {
    set_status(tx, appeal_id, status, at).await
}

async fn set_status(tx: &mut Tx, appeal_id: &str, status: &str, at: DateTime<Utc>) -> Result<Applied, sqlx::Error> {
    let changed =
        sqlx::query("UPDATE appeals SET status = $2, status_changed_at = $3 WHERE id = $1 AND status_changed_at <= $3")
            .bind(appeal_id)
            .bind(status)
            .bind(to_micros(at))
            .execute(&mut **tx)
            .await?
            .rows_affected();
    if changed > 0 {
        return Ok(Applied::Changed);
    }
    let exists: Option<i64> = sqlx::query_scalar("SELECT number FROM appeals WHERE id = $1")
        .bind(appeal_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(if exists.is_some() { Applied::Stale } else { Applied::UnknownAppeal })
}

fn appeal_from_row(row: &AnyRow) -> Result<AppealRecord, sqlx::Error> {
    let routing = match row.time_opt("routed_at")? {
        Some(routed_at) => Some(RoutingRecord {
            organization: OrganizationRef {
                id: row.try_get::<Option<String>, _>("routed_organization_id")?.unwrap_or_default(),
                short_name: row.try_get::<Option<String>, _>("routed_organization_name")?.unwrap_or_default(),
                r#type: row.try_get::<Option<i64>, _>("routed_organization_type")?.unwrap_or_default() as i32,
                region_code: row.try_get::<Option<String>, _>("routed_organization_region")?.unwrap_or_default(),
            },
            period_days: row.try_get::<Option<i64>, _>("period_days")?.unwrap_or_default() as i32,
            working_days: row.flag("working_days")?,
            fast_track: row.flag("fast_track")?,
            delegated_by_auto_rule: row.flag("delegated_by_auto_rule")?,
            explanation: row.try_get::<Option<String>, _>("routing_explanation")?.unwrap_or_default(),
            routed_at,
        }),
        None => None,
    };
    Ok(AppealRecord {
        id: row.try_get("id")?,
        number: row.try_get("number")?,
        registered_at: row.time("registered_at")?,
        submitted_by: row.try_get("submitted_by")?,
        source: row.try_get::<i64, _>("source")? as i32,
        applicant: Applicant {
            full_name: row.try_get("applicant_name")?,
            email: row.try_get("applicant_email")?,
            phone: row.try_get("applicant_phone")?,
            account_id: row.try_get("applicant_account_id")?,
        },
        region_code: row.try_get("region_code")?,
        category_id: row.try_get("category_id")?,
        subcategory_id: row.try_get("subcategory_id")?,
        fact_id: row.try_get("fact_id")?,
        picked_organization_id: row.try_get("picked_organization_id")?,
        public_text: row.try_get("public_text")?,
        problem_address: row.try_get("problem_address")?,
        public: row.flag("is_public")?,
        portal_number: row.try_get("portal_number")?,
        status: row.try_get("status")?,
        status_changed_at: row.time("status_changed_at")?,
        routing,
        attachments: Vec::new(),
    })
}

fn attachment_from_row(row: &AnyRow) -> Result<AttachmentRecord, sqlx::Error> {
    Ok(AttachmentRecord {
        id: row.try_get("id")?,
        uploaded_by: row.try_get("uploaded_by")?,
        file_name: row.try_get("file_name")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        object_path: row.try_get("object_path")?,
        uploaded_at: row.time("uploaded_at")?,
        appeal_id: row.try_get("appeal_id")?,
        uploaded_for_organization: row.try_get("uploaded_for_organization")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample of `pos_appeals_received_total` for `region` on `/metrics` (0 when absent).
    fn received(region: &str) -> f64 {
        let series = format!("pos_appeals_received_total{{region=\"{region}\"}} ");
        pos_platform::metrics::render()
            .lines()
            .find_map(|line| line.strip_prefix(&series).map(|value| value.parse().unwrap()))
            .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn an_appeal_is_counted_once_however_often_its_request_is_repeated() {
        pos_platform::metrics::install();
        let (db, _dir) = pos_platform::testing::sqlite_db("intake", &crate::MIGRATIONS).await;
        let store = Store::new(db.clone());
        // A region of this test's own: other tests in this process count theirs.
        let region = format!("t{}", uuid::Uuid::now_v7().simple());
        let appeal = NewAppeal {
            id: uuid::Uuid::now_v7().to_string(),
            submitted_by: "esia-1".into(),
            request_id: "r-1".into(),
            request_sha256: "a".repeat(64),
            registered_at: pos_platform::db::from_micros(to_micros(Utc::now())),
            source: 1,
            applicant: Applicant { account_id: "esia-1".into(), ..Applicant::default() },
            region_code: region.clone(),
            category_id: "c".into(),
            subcategory_id: "s".into(),
            fact_id: "f".into(),
            names: ClassifierNames::default(),
            picked_organization_id: String::new(),
            original_text: "Прошу помочь".into(),
            public_text: "Прошу помочь".into(),
            problem_address: String::new(),
            attachment_ids: Vec::new(),
            public: false,
            portal_number: String::new(),
        };
        assert!(matches!(store.register(&appeal).await.unwrap(), Registration::Created(_)));
        assert_eq!(received(&region), 1.0);
        let retry = NewAppeal { id: uuid::Uuid::now_v7().to_string(), ..appeal.clone() };
        assert!(matches!(store.register(&retry).await.unwrap(), Registration::Existing { .. }));
        assert_eq!(received(&region), 1.0, "a repeated request is not a new appeal");
        let another = NewAppeal { id: uuid::Uuid::now_v7().to_string(), request_id: "r-2".into(), ..appeal };
        assert!(matches!(store.register(&another).await.unwrap(), Registration::Created(_)));
        assert_eq!(received(&region), 2.0);
        db.close().await;
    }
}

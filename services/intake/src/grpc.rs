//! `pos.v1.IntakeService`: SubmitAppeal, UploadAttachment, GetAppeal, ClaimAttachments,
//! DownloadAttachment, DescribeAttachments.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use futures::{Stream, StreamExt};
use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::db::{from_micros, to_micros};
use pos_platform::error::{ApiError, FieldViolations};
use pos_proto::v1::attachment_chunk::Part as ChunkPart;
use pos_proto::v1::intake_service_server::IntakeService;
use pos_proto::v1::{
    Appeal, AppealRouting, Attachment, AttachmentChunk, AttachmentInfo, AttachmentReferenceKind,
    ClaimAttachmentsRequest, ClaimAttachmentsResponse, DescribeAttachmentsRequest, DescribeAttachmentsResponse,
    DownloadAttachmentRequest, GetAppealRequest, SubmitAppealRequest, SubmitAppealResponse, UploadAttachmentRequest,
    UploadAttachmentResponse,
};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status, Streaming};

use crate::attachments::{self, AttachmentStorage};
use crate::classifier::Catalog;
use crate::config::IntakeConfig;
use crate::error::IntakeError;
use crate::masking::mask;
use crate::store::{
    AppealRecord, AttachmentRecord, AttachmentReference, NewAppeal, ReferenceKind, RegisterError, Registered,
    Registration, Store,
};
use crate::validate::{self, Limits};

/// Whether a submission created the appeal or repeated an earlier request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    Registered,
    Replayed,
}

/// The fields whose violation may come from a stale classifier snapshot.
const CLASSIFIER_FIELDS: [&str; 4] = ["fact_id", "subcategory_id", "category_id", "region_code"];

/// Who may submit appeals and upload their attachments.
const SUBMITTERS: [Role; 3] = [Role::Applicant, Role::Operator, Role::System];
/// Who may read an appeal (each then checked against the appeal itself).
const READERS: [Role; 9] = [
    Role::Applicant,
    Role::Operator,
    Role::System,
    Role::Coordinator,
    Role::Executor,
    Role::Head,
    Role::Curator,
    Role::OrgAdmin,
    Role::Approver,
];
/// Who may upload: submitters for appeals, staff for answers and incidents.
const UPLOADERS: [Role; 9] = READERS;
/// Who records that an answer, an incident or the applicant's information refers to files:
/// ticketing, with the acting person's token (staff, or the applicant answering a request for
/// information), or its own, as a system.
const CLAIMERS: [Role; 8] = [
    Role::Coordinator,
    Role::Executor,
    Role::Head,
    Role::Curator,
    Role::OrgAdmin,
    Role::Approver,
    Role::System,
    Role::Applicant,
];
/// What an attachment id that is not the caller's upload gets, whether it exists or not.
const NO_SUCH_ATTACHMENT: &str = "no such attachment: upload it first";

/// The most ids one DescribeAttachments names: a card or an appeal page lists a few dozen files
/// at most, and each id costs a few queries for its visibility.
pub const DESCRIBE_LIMIT: usize = 100;

/// A download: the description first, then the bytes.
pub type DownloadStream = Pin<Box<dyn Stream<Item = Result<AttachmentChunk, Status>> + Send + 'static>>;

pub struct IntakeApi {
    store: Store,
    catalog: Arc<Catalog>,
    storage: AttachmentStorage,
    config: Arc<IntakeConfig>,
}

impl IntakeApi {
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        storage: AttachmentStorage,
        config: Arc<IntakeConfig>,
    ) -> IntakeApi {
        IntakeApi { store, catalog, storage, config }
    }

    fn limits(&self) -> Limits {
        Limits { max_text_chars: self.config.max_text_chars, max_attachments: self.config.max_attachments }
    }

    #[tracing::instrument(skip_all, fields(request_id = %request.request_id, appeal_id, number))]
    async fn submit(
        &self,
        caller: &Caller,
        mut request: SubmitAppealRequest,
    ) -> Result<(SubmitAppealResponse, Submitted), IntakeError> {
        // An applicant speaks for themselves: the account is the token's, whatever was sent.
        if !caller.has_any(&[Role::Operator, Role::System]) {
            request.applicant.get_or_insert_default().account_id = caller.subject.clone();
        }
        validate::request_id(&request.request_id).map_err(ApiError::Invalid)?;
        let request_sha256 = request_hash(&request);
        if let Some((registered, first_sha256)) =
            self.store.find_registration(&caller.subject, &request.request_id).await?
        {
            return replay(registered, &first_sha256, &request_sha256, &request.request_id);
        }

        let mut snapshot = match self.catalog.snapshot().filter(|s| !s.is_empty()) {
            Some(snapshot) => snapshot,
            None => self.catalog.refresh_on_demand().await.filter(|s| !s.is_empty()).ok_or_else(|| {
                IntakeError::ClassifierUnavailable(
                    "the classifier is not loaded yet (routing has not answered since start-up); retry shortly".into(),
                )
            })?,
        };
        let mut violations = FieldViolations::new();
        let mut classified = validate::submission(&request, &snapshot, &self.limits(), &mut violations);
        // A fact or region the snapshot does not know may be younger than the snapshot.
        if CLASSIFIER_FIELDS.iter().any(|field| has_violation(&violations, field))
            && let Some(fresh) = self.catalog.refresh_on_demand().await
            && !Arc::ptr_eq(&fresh, &snapshot)
            && !fresh.is_empty()
        {
            snapshot = fresh;
            violations = FieldViolations::new();
            classified = validate::submission(&request, &snapshot, &self.limits(), &mut violations);
        }
        if !request.picked_organization_id.is_empty() && !has_violation(&violations, "picked_organization_id") {
            let lookup = self.catalog.organization(&request.picked_organization_id).await;
            let required = classified.as_ref().and_then(|c| c.picked_type);
            validate::picked_organization(&request.picked_organization_id, &lookup, required, &mut violations);
        }
        if !has_violation(&violations, "attachment_ids") {
            self.check_attachments(&caller.subject, &request.attachment_ids, &mut violations).await?;
        }
        let classified = match classified {
            Some(classified) if violations.is_empty() => classified,
            _ => return Err(ApiError::Invalid(violations).into()),
        };

        let applicant = request.applicant.clone().unwrap_or_default();
        let appeal = NewAppeal {
            id: uuid::Uuid::now_v7().to_string(),
            submitted_by: caller.subject.clone(),
            request_id: request.request_id.clone(),
            request_sha256: request_sha256.clone(),
            // Stored in microseconds: the first answer and every replay must be identical.
            registered_at: from_micros(to_micros(Utc::now())),
            source: request.source,
            applicant,
            region_code: request.region_code.clone(),
            category_id: classified.category_id,
            subcategory_id: classified.subcategory_id,
            fact_id: classified.fact_id,
            names: classified.names,
            picked_organization_id: request.picked_organization_id.clone(),
            public_text: mask(&request.text),
            problem_address: mask(&request.problem_address),
            original_text: request.text,
            attachment_ids: request.attachment_ids,
            public: request.public,
            portal_number: request.portal_number,
        };
        match self.store.register(&appeal).await {
            Ok(Registration::Created(registered)) => {
                let span = tracing::Span::current();
                span.record("appeal_id", registered.appeal_id.as_str());
                span.record("number", registered.number);
                tracing::info!(
                    region = %appeal.region_code,
                    fact_id = %appeal.fact_id,
                    attachments = appeal.attachment_ids.len(),
                    masked = appeal.public_text != appeal.original_text,
                    "appeal registered"
                );
                Ok((response(&registered), Submitted::Registered))
            }
            Ok(Registration::Existing { registered, request_sha256: first_sha256 }) => {
                replay(registered, &first_sha256, &request_sha256, &appeal.request_id)
            }
            Err(RegisterError::AttachmentTaken { index }) => Err(IntakeError::invalid(
                &format!("attachment_ids[{index}]"),
                "was attached to another appeal meanwhile",
            )),
            Err(RegisterError::Db(error)) => Err(error.into()),
        }
    }

    /// Each attachment must exist, be the caller's own upload, and not be attached yet. Another
    /// caller's upload is answered as one that does not exist, so that nobody learns which ids
    /// are someone else's.
    async fn check_attachments(
        &self,
        subject: &str,
        ids: &[String],
        violations: &mut FieldViolations,
    ) -> Result<(), IntakeError> {
        let found = self.store.attachments(ids).await?;
        for (index, id) in ids.iter().enumerate() {
            let field = format!("attachment_ids[{index}]");
            match found.iter().find(|a| &a.id == id) {
                None => violations.add(field, NO_SUCH_ATTACHMENT),
                Some(attachment) if attachment.uploaded_by != subject => {
                    tracing::warn!(target: "security", %subject, attachment_id = %id, "another caller's upload named");
                    violations.add(field, NO_SUCH_ATTACHMENT)
                }
                Some(attachment) if attachment.appeal_id.is_some() => {
                    violations.add(field, "already attached to another appeal")
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(attachment_id))]
    async fn upload(
        &self,
        caller: &Caller,
        parts: Streaming<UploadAttachmentRequest>,
    ) -> Result<UploadAttachmentResponse, IntakeError> {
        // Staff attach screenshots to incidents; citizens keep DOMAIN.md's list.
        let staff = caller.has_any(&Role::STAFF);
        let allowed = if staff { &self.config.staff_file_types } else { &self.config.applicant_file_types };
        // The day the upload began counts it, however long it takes.
        let started = Utc::now();
        let day = upload_day(started);
        let cap = self.upload_cap(caller);
        // Refused before a byte is stored when the day is used up already; the last upload
        // that would pass the cap is refused when it is counted, below.
        if let Some(cap) = cap
            && self.store.uploaded_bytes(&caller.subject, &day).await? >= cap
        {
            return Err(over_upload_quota(caller, started));
        }
        let received = match attachments::receive(&self.storage, self.config.max_attachment_bytes, allowed, parts).await
        {
            Ok(received) => received,
            Err(error) => {
                let outcome =
                    if matches!(error, IntakeError::Api(ApiError::Invalid(_))) { "refused" } else { "failed" };
                metrics::counter!("pos_intake_attachments_total", "outcome" => outcome).increment(1);
                return Err(error);
            }
        };
        tracing::Span::current().record("attachment_id", received.id.as_str());
        let record = AttachmentRecord {
            id: received.id.clone(),
            uploaded_by: caller.subject.clone(),
            // People put document numbers into file names too.
            file_name: mask(&received.file_name),
            content_type: received.kind.content_type().to_owned(),
            size: received.size as i64,
            sha256: received.sha256.clone(),
            object_path: received.object_path.clone(),
            uploaded_at: from_micros(to_micros(Utc::now())),
            appeal_id: None,
            uploaded_for_organization: if staff { caller.organization_id.clone() } else { String::new() },
        };
        let inserted = match cap {
            Some(cap) => self.store.insert_attachment_within(&record, &day, cap).await,
            None => self.store.insert_attachment(&record).await.map(|()| true),
        };
        if !matches!(inserted, Ok(true)) {
            // Without its row no sweep would ever find the object.
            if let Err(delete_error) = self.storage.delete(&record.object_path).await {
                tracing::warn!(error = %delete_error, "stored object of a failed upload not deleted");
            }
            return Err(match inserted {
                Err(error) => error.into(),
                Ok(_) => over_upload_quota(caller, started),
            });
        }
        metrics::counter!("pos_intake_attachments_total", "outcome" => "stored").increment(1);
        // The file name is not logged: people name files after themselves.
        tracing::info!(
            content_type = %record.content_type,
            size = record.size,
            organization_id = %record.uploaded_for_organization,
            "attachment stored"
        );
        Ok(UploadAttachmentResponse {
            attachment_id: record.id,
            content_type: record.content_type,
            size: record.size,
            sha256: record.sha256,
        })
    }

    /// The caller's daily upload cap; `None` when uncapped.
    fn upload_cap(&self, caller: &Caller) -> Option<u64> {
        let cap = self.config.max_upload_bytes_per_day;
        (cap > 0 && !caller.has(Role::System)).then_some(cap)
    }

    /// Records that an answer, an incident or the applicant's information refers to the
    /// attachments. Each must exist and be visible to the caller: their own upload (or their
    /// organization's), or a file already on the same appeal; anything else is answered as an
    /// unknown id. Who may claim for the appeal: its organization's staff (and systems); the
    /// staff of a body an incident is addressed to, for that incident; the applicant, for
    /// their own appeal's incident or information. A system may grant an incident's files to
    /// such a body (`reader_organization_id`) and add the appeal's own files to it.
    #[tracing::instrument(skip_all, fields(appeal_id = %request.appeal_id, object_id = %request.object_id))]
    async fn claim(
        &self,
        caller: &Caller,
        request: ClaimAttachmentsRequest,
    ) -> Result<ClaimAttachmentsResponse, IntakeError> {
        // A grant to another organization is the service's own decision, never a person's.
        let grants = !request.reader_organization_id.trim().is_empty() || request.with_appeal_files;
        if grants && !caller.has(Role::System) {
            tracing::warn!(target: "security", subject = %caller.subject, "a person tried to grant an incident's files");
            return Err(ApiError::denied(
                "ROLE_NOT_ALLOWED",
                "only the platform (a system caller) grants an incident to another organization's staff",
            )
            .into());
        }
        let mut violations = FieldViolations::new();
        let kind = match AttachmentReferenceKind::try_from(request.kind) {
            Ok(AttachmentReferenceKind::Answer) => Some(ReferenceKind::Answer),
            Ok(AttachmentReferenceKind::Incident) => Some(ReferenceKind::Incident),
            Ok(AttachmentReferenceKind::Information) => Some(ReferenceKind::Information),
            Ok(AttachmentReferenceKind::Unspecified) | Err(_) => {
                violations.add("kind", "answer, incident or information");
                None
            }
        };
        if grants && kind != Some(ReferenceKind::Incident) {
            violations.add("reader_organization_id", "only an incident is granted to another organization");
        }
        if request.object_id.trim().is_empty() {
            violations.add("object_id", "required: the ticket (answer, information) or the incident");
        }
        if uuid::Uuid::parse_str(&request.appeal_id).is_err() {
            violations.add("appeal_id", "not an appeal id");
        }
        if request.attachment_ids.len() > self.config.max_attachments {
            violations.add("attachment_ids", format!("at most {} files", self.config.max_attachments));
        }
        if !violations.is_empty() {
            return Err(ApiError::Invalid(violations).into());
        }
        let kind = kind.ok_or_else(|| IntakeError::invalid("kind", "required"))?;
        let appeal =
            self.store.appeal(&request.appeal_id).await?.ok_or_else(|| ApiError::not_found("no such appeal"))?;
        let organization_id = appeal.routing.as_ref().map(|r| r.organization.id.clone()).unwrap_or_default();
        self.may_claim(caller, &appeal, &organization_id, kind, &request.object_id).await?;
        let field = if request.field.trim().is_empty() { "attachment_ids" } else { request.field.trim() };
        let found = self.store.attachments(&request.attachment_ids).await?;
        let mut claimed = Vec::with_capacity(request.attachment_ids.len());
        let now = from_micros(to_micros(Utc::now()));
        let reference = |attachment_id: &str| AttachmentReference {
            attachment_id: attachment_id.to_owned(),
            kind,
            object_id: request.object_id.clone(),
            appeal_id: appeal.id.clone(),
            organization_id: organization_id.clone(),
            claimed_by: caller.subject.clone(),
            claimed_at: now,
        };
        for (index, id) in request.attachment_ids.iter().enumerate() {
            let visible = match found.iter().find(|a| &a.id == id) {
                None => None,
                Some(attachment) => {
                    let on_appeal = attachment.appeal_id.as_deref() == Some(appeal.id.as_str())
                        || self.store.references(id).await?.iter().any(|r| r.appeal_id == appeal.id);
                    let unattached = attachment.appeal_id.is_none();
                    let own = attachment.uploaded_by == caller.subject
                        || (!attachment.uploaded_for_organization.is_empty()
                            && attachment.uploaded_for_organization == caller.organization_id);
                    (on_appeal || (own && unattached)).then_some(attachment)
                }
            };
            let Some(attachment) = visible else {
                if found.iter().any(|a| &a.id == id) {
                    tracing::warn!(target: "security", subject = %caller.subject, attachment_id = %id, "a file not visible to the caller claimed");
                }
                violations.add(format!("{field}[{index}]"), NO_SUCH_ATTACHMENT);
                continue;
            };
            claimed.push((reference(id), attachment.clone()));
        }
        if !violations.is_empty() {
            return Err(ApiError::Invalid(violations).into());
        }
        if request.with_appeal_files {
            for attachment in &appeal.attachments {
                if !claimed.iter().any(|(r, _)| r.attachment_id == attachment.id) {
                    claimed.push((reference(&attachment.id), attachment.clone()));
                }
            }
        }
        let references: Vec<AttachmentReference> = claimed.iter().map(|(r, _)| r.clone()).collect();
        self.store.claim(&references).await?;
        let reader = request.reader_organization_id.trim();
        if !reader.is_empty() {
            self.store.grant_reader(kind, &request.object_id, reader, &appeal.id, &caller.subject).await?;
            tracing::info!(reader_organization_id = %reader, "incident's files granted to its handling body");
        }
        tracing::info!(kind = <&str>::from(kind), files = references.len(), "attachments claimed");
        Ok(ClaimAttachmentsResponse {
            attachments: claimed
                .into_iter()
                .map(|(_, a)| Attachment {
                    id: a.id,
                    file_name: a.file_name,
                    content_type: a.content_type,
                    size: a.size,
                })
                .collect(),
        })
    }

    /// Whether the caller may refer to files for this appeal's object, before any id is looked at.
    async fn may_claim(
        &self,
        caller: &Caller,
        appeal: &AppealRecord,
        organization_id: &str,
        kind: ReferenceKind,
        object_id: &str,
    ) -> Result<(), IntakeError> {
        if caller.may_access_organization(organization_id) {
            return Ok(());
        }
        // The body an escalation is addressed to adds its own files (the resolution's) to it.
        if caller.has_any(&Role::STAFF)
            && kind == ReferenceKind::Incident
            && self.store.is_reader(kind, object_id, &appeal.id, &caller.organization_id).await?
        {
            return Ok(());
        }
        // The applicant sends what an incident's line or the organization asked of them.
        let own_appeal = !appeal.applicant.account_id.is_empty() && appeal.applicant.account_id == caller.subject;
        if caller.has(Role::Applicant) && !caller.has_any(&Role::STAFF) {
            if own_appeal && matches!(kind, ReferenceKind::Incident | ReferenceKind::Information) {
                return Ok(());
            }
            tracing::warn!(target: "security", subject = %caller.subject, appeal_id = %appeal.id, "attachments claimed for another applicant's appeal");
            return Err(ApiError::denied("OTHER_APPLICANT", "the appeal belongs to another applicant").into());
        }
        tracing::warn!(target: "security", subject = %caller.subject, appeal_id = %appeal.id, "attachments claimed for an appeal of another organization");
        Err(ApiError::denied("OTHER_ORGANIZATION", "the appeal is not routed to the caller's organization").into())
    }

    /// The description of a file the caller may read, and a stream of its bytes.
    #[tracing::instrument(skip_all, fields(attachment_id = %attachment_id))]
    async fn download(&self, caller: &Caller, attachment_id: &str) -> Result<DownloadStream, IntakeError> {
        if attachment_id.is_empty() {
            return Err(IntakeError::invalid("attachment_id", "required"));
        }
        if uuid::Uuid::parse_str(attachment_id).is_err() {
            return Err(IntakeError::invalid("attachment_id", "not an attachment id"));
        }
        let attachment = self
            .store
            .attachments(&[attachment_id.to_owned()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("no such attachment"))?;
        let appeal_id = self.may_download(caller, &attachment).await?;
        let bytes = attachments::read(&self.storage, &attachment.object_path).await?;
        // Who read which file of which appeal; never the file's name, which may name a person.
        tracing::info!(
            target: "audit",
            subject = %caller.subject,
            organization_id = %caller.organization_id,
            attachment_id = %attachment.id,
            appeal_id = %appeal_id,
            size = attachment.size,
            "attachment downloaded"
        );
        metrics::counter!("pos_intake_attachment_downloads_total").increment(1);
        let info = AttachmentChunk {
            part: Some(ChunkPart::Info(AttachmentInfo {
                attachment_id: attachment.id,
                file_name: attachment.file_name,
                content_type: attachment.content_type,
                size: attachment.size,
                sha256: attachment.sha256,
                appeal_id,
            })),
        };
        let chunks = bytes.map(|chunk| match chunk {
            Ok(bytes) => Ok(AttachmentChunk { part: Some(ChunkPart::Chunk(bytes.to_vec())) }),
            Err(error) => Err(Status::from(ApiError::from(IntakeError::ObjectStore(error)))),
        });
        Ok(Box::pin(futures::stream::once(async move { Ok(info) }).chain(chunks)))
    }

    /// The files' descriptions in the request's order. Each id is checked as a download checks it
    /// (`may_download`), in the request's order, so the first id the caller may not read gets the
    /// refusal its download would get. No content is read, hence no audit line.
    async fn describe(&self, caller: &Caller, ids: &[String]) -> Result<DescribeAttachmentsResponse, IntakeError> {
        if ids.len() > DESCRIBE_LIMIT {
            return Err(IntakeError::invalid("attachment_ids", format!("at most {DESCRIBE_LIMIT} ids")));
        }
        let mut violations = FieldViolations::new();
        for (index, id) in ids.iter().enumerate() {
            if id.is_empty() {
                violations.add(format!("attachment_ids[{index}]"), "required");
            } else if uuid::Uuid::parse_str(id).is_err() {
                violations.add(format!("attachment_ids[{index}]"), "not an attachment id");
            }
        }
        violations.into_result()?;
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        let mut found: HashMap<String, AttachmentRecord> =
            self.store.attachments(&unique).await?.into_iter().map(|a| (a.id.clone(), a)).collect();
        let mut described: HashMap<&str, AttachmentInfo> = HashMap::new();
        for id in ids {
            if described.contains_key(id.as_str()) {
                continue;
            }
            let attachment = found.remove(id).ok_or_else(|| ApiError::not_found("no such attachment"))?;
            let appeal_id = self.may_download(caller, &attachment).await?;
            let info = AttachmentInfo {
                attachment_id: attachment.id,
                file_name: attachment.file_name,
                content_type: attachment.content_type,
                size: attachment.size,
                sha256: attachment.sha256,
                appeal_id,
            };
            described.insert(id, info);
        }
        Ok(DescribeAttachmentsResponse { attachments: ids.iter().map(|id| described[id.as_str()].clone()).collect() })
    }

    /// Whether the caller may read the file, and the appeal it belongs to (empty when none):
    /// operators and systems always; the applicant their own uploads, their appeal's files and
    /// its answer's; staff the files of the appeals, answers and incidents of their organization,
    /// and what their organization uploaded.
    async fn may_download(&self, caller: &Caller, attachment: &AttachmentRecord) -> Result<String, IntakeError> {
        let references = self.store.references(&attachment.id).await?;
        let appeal_id = attachment
            .appeal_id
            .clone()
            .or_else(|| references.first().map(|r| r.appeal_id.clone()))
            .unwrap_or_default();
        if caller.has_any(&[Role::Operator, Role::System]) {
            return Ok(appeal_id);
        }
        if attachment.uploaded_by == caller.subject {
            return Ok(appeal_id);
        }
        let mut appeals = Vec::new();
        for id in attachment.appeal_id.iter().chain(references.iter().map(|r| &r.appeal_id)) {
            if !appeals.iter().any(|a: &AppealRecord| &a.id == id)
                && let Some(appeal) = self.store.appeal(id).await?
            {
                appeals.push(appeal);
            }
        }
        let routed_to = |id: &str| {
            appeals
                .iter()
                .find(|a| a.id == id)
                .and_then(|a| a.routing.as_ref())
                .map(|r| r.organization.id.as_str())
                .unwrap_or_default()
        };
        if caller.has_any(&Role::STAFF) && !caller.organization_id.is_empty() {
            let organization = caller.organization_id.as_str();
            let allowed = attachment.uploaded_for_organization == organization
                || attachment.appeal_id.as_deref().is_some_and(|id| routed_to(id) == organization)
                || references
                    .iter()
                    .any(|r| r.organization_id == organization || routed_to(&r.appeal_id) == organization);
            // The body an escalation is addressed to reads the incident's files and the appeal's.
            if allowed || self.store.readable_by_grant(&attachment.id, organization).await? {
                return Ok(appeal_id);
            }
        }
        if caller.has(Role::Applicant) {
            let applicant_of = |id: &str| {
                appeals
                    .iter()
                    .find(|a| a.id == id)
                    .is_some_and(|a| !a.applicant.account_id.is_empty() && a.applicant.account_id == caller.subject)
            };
            // The applicant's appeal and its answer; an incident is the organization's business.
            let allowed = attachment.appeal_id.as_deref().is_some_and(applicant_of)
                || references.iter().any(|r| r.kind == ReferenceKind::Answer && applicant_of(&r.appeal_id));
            if allowed {
                return Ok(appeal_id);
            }
            if !caller.has_any(&Role::STAFF) {
                tracing::warn!(target: "security", subject = %caller.subject, attachment_id = %attachment.id, "download denied: another applicant's file");
                return Err(
                    ApiError::denied("OTHER_APPLICANT", "the file belongs to another applicant's appeal").into()
                );
            }
        }
        tracing::warn!(target: "security", subject = %caller.subject, organization_id = %caller.organization_id, attachment_id = %attachment.id, "download denied: another organization's file");
        Err(ApiError::denied(
            "OTHER_ORGANIZATION",
            "the file is not of an appeal or incident of the caller's organization",
        )
        .into())
    }

    async fn get(&self, caller: &Caller, appeal_id: &str) -> Result<Appeal, IntakeError> {
        if appeal_id.is_empty() {
            return Err(IntakeError::invalid("appeal_id", "required"));
        }
        if uuid::Uuid::parse_str(appeal_id).is_err() {
            return Err(IntakeError::invalid("appeal_id", "not an appeal id"));
        }
        let appeal = self.store.appeal(appeal_id).await?.ok_or_else(|| ApiError::not_found("no such appeal"))?;
        may_read(caller, &appeal)?;
        Ok(to_proto(appeal))
    }
}

/// The UTC day an upload counts toward, `YYYY-MM-DD`.
pub fn upload_day(at: chrono::DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// `RESOURCE_EXHAUSTED` until the next UTC midnight, when the caller's count starts again.
fn over_upload_quota(caller: &Caller, now: chrono::DateTime<Utc>) -> IntakeError {
    metrics::counter!("pos_intake_attachments_total", "outcome" => "over_quota").increment(1);
    tracing::warn!(target: "security", subject = %caller.subject, "daily upload quota used up");
    let midnight = (now.date_naive() + chrono::Days::new(1)).and_time(chrono::NaiveTime::MIN).and_utc();
    let retry_after = (midnight - now).to_std().unwrap_or_default();
    IntakeError::Api(ApiError::Exhausted {
        reason: "UPLOAD_QUOTA_EXCEEDED",
        message: "the attachment bytes allowed for today are used up; uploads open again at 00:00 UTC".into(),
        retry_after,
    })
}

#[tonic::async_trait]
impl IntakeService for IntakeApi {
    async fn submit_appeal(
        &self,
        request: Request<SubmitAppealRequest>,
    ) -> Result<Response<SubmitAppealResponse>, Status> {
        let caller = authorize(&request, "SubmitAppeal", &SUBMITTERS)?;
        let result = self.submit(&caller, request.into_inner()).await;
        let outcome = match &result {
            Ok((_, Submitted::Registered)) => "registered",
            Ok((_, Submitted::Replayed)) => "replayed",
            Err(IntakeError::Api(ApiError::Invalid(_))) => "invalid",
            Err(IntakeError::RequestIdReused(_)) => "request_id_reused",
            Err(IntakeError::ClassifierUnavailable(_)) => "unavailable",
            Err(
                IntakeError::ObjectStore(_)
                | IntakeError::Api(
                    ApiError::Unauthenticated(_)
                    | ApiError::PermissionDenied { .. }
                    | ApiError::NotFound(_)
                    | ApiError::AlreadyExists { .. }
                    | ApiError::FailedPrecondition { .. }
                    | ApiError::Unavailable { .. }
                    | ApiError::Exhausted { .. }
                    | ApiError::Stream(_)
                    | ApiError::Db(_)
                    | ApiError::Internal { .. },
                ),
            ) => "failed",
        };
        metrics::counter!("pos_intake_submissions_total", "outcome" => outcome).increment(1);
        Ok(Response::new(result.map_err(ApiError::from)?.0))
    }

    async fn upload_attachment(
        &self,
        request: Request<Streaming<UploadAttachmentRequest>>,
    ) -> Result<Response<UploadAttachmentResponse>, Status> {
        let caller = authorize(&request, "UploadAttachment", &UPLOADERS)?;
        Ok(Response::new(self.upload(&caller, request.into_inner()).await.map_err(ApiError::from)?))
    }

    async fn get_appeal(&self, request: Request<GetAppealRequest>) -> Result<Response<Appeal>, Status> {
        let caller = authorize(&request, "GetAppeal", &READERS)?;
        Ok(Response::new(self.get(&caller, &request.get_ref().appeal_id).await.map_err(ApiError::from)?))
    }

    async fn claim_attachments(
        &self,
        request: Request<ClaimAttachmentsRequest>,
    ) -> Result<Response<ClaimAttachmentsResponse>, Status> {
        let caller = authorize(&request, "ClaimAttachments", &CLAIMERS)?;
        Ok(Response::new(self.claim(&caller, request.into_inner()).await.map_err(ApiError::from)?))
    }

    type DownloadAttachmentStream = DownloadStream;

    async fn download_attachment(
        &self,
        request: Request<DownloadAttachmentRequest>,
    ) -> Result<Response<DownloadStream>, Status> {
        let caller = authorize(&request, "DownloadAttachment", &READERS)?;
        Ok(Response::new(self.download(&caller, &request.get_ref().attachment_id).await.map_err(ApiError::from)?))
    }

    async fn describe_attachments(
        &self,
        request: Request<DescribeAttachmentsRequest>,
    ) -> Result<Response<DescribeAttachmentsResponse>, Status> {
        let caller = authorize(&request, "DescribeAttachments", &READERS)?;
        Ok(Response::new(self.describe(&caller, &request.get_ref().attachment_ids).await.map_err(ApiError::from)?))
    }
}

/// The applicant who owns it, operators and systems, or staff of the organization it is
/// routed to.
fn may_read(caller: &Caller, appeal: &AppealRecord) -> Result<(), ApiError> {
    if caller.has_any(&[Role::Operator, Role::System]) {
        return Ok(());
    }
    if caller.has(Role::Applicant)
        && !appeal.applicant.account_id.is_empty()
        && caller.subject == appeal.applicant.account_id
    {
        return Ok(());
    }
    if caller.has_any(&Role::STAFF)
        && let Some(routing) = &appeal.routing
    {
        return caller.require_organization(&routing.organization.id, "GetAppeal");
    }
    if caller.has(Role::Applicant) {
        tracing::warn!(target: "security", subject = %caller.subject, appeal_id = %appeal.id, "access denied to another applicant's appeal");
        return Err(ApiError::denied("OTHER_APPLICANT", "the appeal belongs to another applicant"));
    }
    // Staff before the appeal is routed: no organization of theirs answers it yet.
    tracing::warn!(target: "security", subject = %caller.subject, appeal_id = %appeal.id, "access denied to an appeal not routed to the caller");
    Err(ApiError::denied("OTHER_ORGANIZATION", "the appeal is not routed to the caller's organization"))
}

/// A repeated request gets the first answer; a different request under a used id is refused.
fn replay(
    registered: Registered,
    first_sha256: &str,
    sha256: &str,
    request_id: &str,
) -> Result<(SubmitAppealResponse, Submitted), IntakeError> {
    if first_sha256 != sha256 {
        tracing::warn!(%request_id, appeal_id = %registered.appeal_id, "request id reused for a different request");
        return Err(IntakeError::RequestIdReused(format!(
            "request_id {request_id:?} was already used for a different appeal (number {}); use a new request_id",
            registered.number
        )));
    }
    tracing::debug!(%request_id, appeal_id = %registered.appeal_id, "repeated request answered with the first answer");
    Ok((response(&registered), Submitted::Replayed))
}

fn response(registered: &Registered) -> SubmitAppealResponse {
    SubmitAppealResponse {
        appeal_id: registered.appeal_id.clone(),
        number: registered.number,
        registered_at: Some(pos_proto::time::to_proto(registered.registered_at)),
    }
}

/// SHA-256 of the request without its id. prost writes fields in tag order and skips
/// defaults, so equal requests encode equally.
pub fn request_hash(request: &SubmitAppealRequest) -> String {
    let mut canonical = request.clone();
    canonical.request_id.clear();
    hex::encode(Sha256::digest(canonical.encode_to_vec()))
}

fn has_violation(violations: &FieldViolations, prefix: &str) -> bool {
    violations.fields().any(|field| field.starts_with(prefix))
}

fn to_proto(appeal: AppealRecord) -> Appeal {
    Appeal {
        id: appeal.id,
        number: appeal.number,
        registered_at: Some(pos_proto::time::to_proto(appeal.registered_at)),
        source: appeal.source,
        applicant: Some(appeal.applicant),
        region_code: appeal.region_code,
        category_id: appeal.category_id,
        subcategory_id: appeal.subcategory_id,
        fact_id: appeal.fact_id,
        picked_organization_id: appeal.picked_organization_id,
        public_text: appeal.public_text,
        problem_address: appeal.problem_address,
        attachments: appeal
            .attachments
            .into_iter()
            .map(|a| Attachment { id: a.id, file_name: a.file_name, content_type: a.content_type, size: a.size })
            .collect(),
        public: appeal.public,
        portal_number: appeal.portal_number,
        routing: appeal.routing.map(|r| AppealRouting {
            organization: Some(r.organization),
            period_days: r.period_days,
            working_days: r.working_days,
            fast_track: r.fast_track,
            delegated_by_auto_rule: r.delegated_by_auto_rule,
            explanation: r.explanation,
            routed_at: Some(pos_proto::time::to_proto(r.routed_at)),
        }),
        status: appeal.status,
        status_changed_at: Some(pos_proto::time::to_proto(appeal.status_changed_at)),
    }
}

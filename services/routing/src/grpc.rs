//! `pos.v1.RoutingService`: the dry-run `Resolve`, and the classifier, directory and auto-rule
//! administration. Reads come from the versioned snapshots; every change is written with the
//! bump of its scope's version in one transaction, so the next read anywhere sees it.

use std::sync::Arc;

use pos_platform::audit;
use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::db::Db;
use pos_platform::error::{ApiError, ApiResult, FieldViolations};
use pos_platform::host::Infra;
use pos_proto::v1 as pb;
use pos_proto::v1::routing_service_server::RoutingService;
use pos_proto::v1::sla_service_client::SlaServiceClient;
use serde_json::json;
use sqlx::AnyConnection;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::config::RoutingConfig;
use crate::model::{
    Addressee, AutoRule, Category, Directory, Fact, OnboardingStep, OrgType, Organization, Scope, Subcategory,
    check_id, check_period,
};
use crate::resolve::{self, Decision, StepRule, resolve};
use crate::snapshot::{Snapshot, Snapshots};
use crate::store::{self, OnConflict, Ordered};

/// Roles that administer organizations' auto-rules: the organization's own admin, or a system.
const AUTO_RULE_ADMINS: [Role; 2] = [Role::OrgAdmin, Role::System];

/// Who confirms an organization's onboarding: its own head or coordinator (seed 004).
const ONBOARDING_ROLES: [Role; 2] = [Role::Head, Role::Coordinator];

/// The region the SLA service names when its default policy decided a period.
const DEFAULT_POLICY: &str = "*";

/// An organization's rules (its keywords, the executors it delegates to) are its own: its staff
/// read them, and the platform's operators and systems; nobody else.
fn sees_rules_of(caller: &Caller, organization_id: &str) -> bool {
    caller.has(Role::Operator) || caller.may_access_organization(organization_id)
}

#[derive(Clone)]
pub struct RoutingApi {
    db: Db,
    snapshots: Arc<Snapshots>,
    config: Arc<RoutingConfig>,
    periods: Option<SlaPeriods>,
}

/// The SLA service, asked for the period a deadline will use: its policy is the one source of
/// periods (docs/adr/0003), so the dry run shows what the deadline will be, not a second opinion.
#[derive(Clone)]
pub struct SlaPeriods {
    client: SlaServiceClient<Channel>,
    infra: Infra,
}

impl SlaPeriods {
    pub fn new(channel: Channel, infra: Infra) -> SlaPeriods {
        SlaPeriods { client: SlaServiceClient::new(channel), infra }
    }

    /// The SLA policy's period for `fact_id` in `region_code` (the addressee's), and the region
    /// of the policy that decided it (`*`: the default policy).
    async fn period(
        &self,
        region_code: &str,
        fact_id: &str,
        fast_track: bool,
    ) -> anyhow::Result<(String, pb::ResolvedPeriod)> {
        let token = self.infra.service_token("routing")?;
        let query = pb::PeriodQuery { fact_id: fact_id.to_owned(), classifier_fast_track: fast_track };
        let mut request = pos_platform::grpc::outgoing(
            pb::ResolvePeriodsRequest { region_code: region_code.to_owned(), facts: vec![query] },
            &token,
        );
        request.set_timeout(std::time::Duration::from_secs(5));
        let response = self.client.clone().resolve_periods(request).await?.into_inner();
        let period =
            response.periods.into_iter().next().ok_or_else(|| anyhow::anyhow!("the SLA service answered no period"))?;
        Ok((response.policy_region, period))
    }
}

impl RoutingApi {
    pub fn new(db: Db, snapshots: Arc<Snapshots>, config: Arc<RoutingConfig>) -> RoutingApi {
        RoutingApi { db, snapshots, config, periods: None }
    }

    /// Periods in the dry run come from the SLA service's policy.
    pub fn with_periods(mut self, periods: SlaPeriods) -> RoutingApi {
        self.periods = Some(periods);
        self
    }

    /// The decision with the SLA policy's period; without an answer from the SLA service, the
    /// classifier's proposal, saying that the policy decides the deadline.
    async fn with_sla_period(&self, decision: Decision, region_code: &str, directory: &Directory) -> Decision {
        let region = if decision.organization.region_code.is_empty() {
            region_code.to_owned()
        } else {
            decision.organization.region_code.clone()
        };
        let proposal = decision.steps.iter().find(|s| s.rule == StepRule::Period).map(|s| s.reason.clone());
        let unanswered = || {
            let reason = format!(
                "{} (предложение классификатора: сервис сроков не ответил, срок определит политика сроков)",
                proposal.clone().unwrap_or_default()
            );
            let (days, working, fast_track) = (decision.period_days, decision.working_days, decision.fast_track);
            decision.clone().with_period(days, working, fast_track, reason)
        };
        let Some(periods) = &self.periods else { return unanswered() };
        match periods.period(&region, &decision.fact_id, decision.fast_track).await {
            Ok((policy_region, answer)) => {
                let period = answer.period.unwrap_or_default();
                let days = i32::try_from(period.days).unwrap_or(i32::MAX);
                let policy = if policy_region == DEFAULT_POLICY {
                    "политике сроков по умолчанию".to_owned()
                } else {
                    format!("политике сроков региона {}", resolve::region_name(directory, &policy_region))
                };
                let fast_track = if answer.fast_track { " (фаст-трек)" } else { "" };
                let reason = format!("Срок — {}{fast_track} по {policy}", resolve::days(days, period.working_days));
                decision.clone().with_period(days, period.working_days, answer.fast_track, reason)
            }
            Err(error) => {
                tracing::warn!(%error, "the sla service did not answer the period of a dry run");
                unanswered()
            }
        }
    }

    async fn snapshot(&self) -> ApiResult<Snapshot> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(self.snapshots.current(&mut conn).await?)
    }
}

/// `NOT_FOUND` for the `kind` of object (e.g. "organization") with `id`.
fn not_found(kind: &str, id: impl std::fmt::Debug) -> ApiError {
    ApiError::not_found(format!("{kind} {id:?} not found"))
}

/// The id to store: the one given, checked, or a new one.
fn id_or_new(id: &str, violations: &mut FieldViolations) -> String {
    if id.is_empty() {
        return uuid::Uuid::now_v7().to_string();
    }
    if let Err(why) = check_id(id) {
        violations.add("id", why);
    }
    id.to_owned()
}

fn required(violations: &mut FieldViolations, field: &str, value: &str) {
    if value.trim().is_empty() {
        violations.add(field, "is required");
    }
}

/// Whether making `parent_id` the parent of `id` would close a loop.
fn creates_cycle(snapshot: &Snapshot, id: &str, parent_id: &str) -> bool {
    parent_id == id || snapshot.directory.is_within(parent_id, id)
}

/// A method's full name, as the audit trail keeps it.
fn full(method: &str) -> String {
    format!("pos.v1.RoutingService/{method}")
}

async fn commit_change(mut tx: pos_platform::Tx, scope: Scope) -> ApiResult<()> {
    store::bump(&mut tx, scope).await?;
    tx.commit().await?;
    Ok(())
}

async fn snapshot_in(snapshots: &Snapshots, conn: &mut AnyConnection) -> ApiResult<Snapshot> {
    Ok(snapshots.current(conn).await?)
}

/// The methods, in the one error model; [`RoutingService`] below only converts their errors.
impl RoutingApi {
    async fn dry_run(&self, request: Request<pb::ResolveRequest>) -> ApiResult<pb::Resolution> {
        let caller = authorize(&request, "Resolve", Role::ALL)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        required(&mut violations, "region_code", &request.region_code);
        required(&mut violations, "fact_id", &request.fact_id);
        violations.into_result()?;
        let snapshot = self.snapshot().await?;
        let outcome = resolve(
            &snapshot.classifier,
            &snapshot.directory,
            self.config.periods(),
            &self.config.fallback(),
            &resolve::Request {
                region_code: &request.region_code,
                fact_id: &request.fact_id,
                subcategory_id: &request.subcategory_id,
                picked_organization_id: &request.picked_organization_id,
                text: &request.text,
            },
        );
        // A dry run refuses what an arriving appeal would only be routed around: the caller can
        // still fix it.
        if !outcome.problems.is_empty() {
            let mut violations = FieldViolations::new();
            for problem in &outcome.problems {
                violations.add(problem.field(), problem.description());
            }
            return Err(ApiError::Invalid(violations));
        }
        let decision = self.with_sla_period(outcome.decision, &request.region_code, &snapshot.directory).await;
        // Anyone may ask where an appeal would go; the auto-rules that decide it are shown only
        // to the staff of the organizations they belong to.
        let decision = decision.as_seen_by(|organization_id| sees_rules_of(&caller, organization_id));
        Ok(decision.to_proto(&snapshot.directory))
    }

    async fn classifier(&self, request: Request<pb::ListClassifierRequest>) -> ApiResult<pb::Classifier> {
        authorize(&request, "ListClassifier", Role::ALL)?;
        Ok(self.snapshot().await?.classifier.to_proto())
    }

    async fn save_category(&self, request: Request<pb::Category>) -> ApiResult<pb::Category> {
        let caller = authorize(&request, "UpsertCategory", &[Role::System])?;
        let input = request.into_inner();
        let mut violations = FieldViolations::new();
        let category = Category {
            id: id_or_new(&input.id, &mut violations),
            name: input.name.trim().to_owned(),
            active: input.active,
        };
        required(&mut violations, "name", &category.name);
        violations.into_result()?;
        let mut tx = self.db.begin().await?;
        let position = store::next_position(&mut tx, Ordered::Categories).await?;
        store::upsert_category(&mut tx, &category, position, OnConflict::Update).await?;
        let details = json!({ "what": "category", "active": category.active });
        audit::record(
            &mut tx,
            &caller,
            audit::Kind::ClassifierChanged,
            &full("UpsertCategory"),
            "",
            &category.id,
            details,
        )
        .await?;
        commit_change(tx, Scope::Classifier).await?;
        tracing::info!(subject = %caller.subject, category_id = %category.id, "category saved");
        Ok(category.to_proto())
    }

    async fn save_subcategory(&self, request: Request<pb::Subcategory>) -> ApiResult<pb::Subcategory> {
        let caller = authorize(&request, "UpsertSubcategory", &[Role::System])?;
        let input = request.into_inner();
        let mut violations = FieldViolations::new();
        let subcategory = Subcategory {
            id: id_or_new(&input.id, &mut violations),
            category_id: input.category_id,
            name: input.name.trim().to_owned(),
            active: input.active,
        };
        required(&mut violations, "name", &subcategory.name);
        required(&mut violations, "category_id", &subcategory.category_id);
        let mut tx = self.db.begin().await?;
        let snapshot = snapshot_in(&self.snapshots, &mut tx).await?;
        if !subcategory.category_id.is_empty() && snapshot.classifier.category(&subcategory.category_id).is_none() {
            violations.add("category_id", format!("unknown category {:?}", subcategory.category_id));
        }
        violations.into_result()?;
        let position = store::next_position(&mut tx, Ordered::Subcategories).await?;
        store::upsert_subcategory(&mut tx, &subcategory, position, OnConflict::Update).await?;
        let details =
            json!({ "what": "subcategory", "category_id": subcategory.category_id, "active": subcategory.active });
        let method = full("UpsertSubcategory");
        audit::record(&mut tx, &caller, audit::Kind::ClassifierChanged, &method, "", &subcategory.id, details).await?;
        commit_change(tx, Scope::Classifier).await?;
        tracing::info!(subject = %caller.subject, subcategory_id = %subcategory.id, "subcategory saved");
        Ok(subcategory.to_proto())
    }

    async fn save_fact(&self, request: Request<pb::Fact>) -> ApiResult<pb::Fact> {
        let caller = authorize(&request, "UpsertFact", &[Role::System])?;
        let input = request.into_inner();
        let mut violations = FieldViolations::new();
        let id = id_or_new(&input.id, &mut violations);
        let name = input.name.trim().to_owned();
        required(&mut violations, "name", &name);
        required(&mut violations, "subcategory_id", &input.subcategory_id);
        if let Err(why) = check_period(input.period_days, input.working_days) {
            violations.add("period_days", why);
        }
        let mut tx = self.db.begin().await?;
        let snapshot = snapshot_in(&self.snapshots, &mut tx).await?;
        if !input.subcategory_id.is_empty() && snapshot.classifier.subcategory(&input.subcategory_id).is_none() {
            violations.add("subcategory_id", format!("unknown subcategory {:?}", input.subcategory_id));
        }
        let addressee = addressee_from_proto(input.addressee.as_ref(), &snapshot, &mut violations);
        for (field, codes) in [
            ("fast_track_regions", &input.fast_track_regions),
            ("not_fast_track_regions", &input.not_fast_track_regions),
        ] {
            for code in codes {
                if snapshot.directory.region(code).is_none() {
                    violations.add(field, format!("unknown region {code:?}"));
                }
            }
        }
        if input.fast_track_regions.iter().any(|code| input.not_fast_track_regions.contains(code)) {
            violations.add("not_fast_track_regions", "a region cannot be in both fast-track lists");
        }
        // `addressee_from_proto` names the offending field whenever it gives no addressee.
        let Some(addressee) = addressee else { return Err(ApiError::Invalid(violations)) };
        violations.into_result()?;
        let fact = Fact {
            id,
            subcategory_id: input.subcategory_id,
            name,
            addressee,
            period_days: input.period_days,
            working_days: input.working_days,
            fast_track_default: input.fast_track_default,
            fast_track_regions: input.fast_track_regions,
            not_fast_track_regions: input.not_fast_track_regions,
            active: input.active,
        };
        let position = store::next_position(&mut tx, Ordered::Facts).await?;
        store::upsert_fact(&mut tx, &fact, position, OnConflict::Update).await?;
        let details = json!({ "what": "fact", "subcategory_id": fact.subcategory_id, "active": fact.active });
        audit::record(&mut tx, &caller, audit::Kind::ClassifierChanged, &full("UpsertFact"), "", &fact.id, details)
            .await?;
        commit_change(tx, Scope::Classifier).await?;
        tracing::info!(subject = %caller.subject, fact_id = %fact.id, "fact saved");
        Ok(fact.to_proto())
    }

    async fn organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> ApiResult<pb::ListOrganizationsResponse> {
        authorize(&request, "ListOrganizations", Role::ALL)?;
        let filter = request.into_inner();
        let org_type = match filter.r#type {
            0 => None,
            value => match OrgType::from_proto(value) {
                Some(org_type) => Some(org_type),
                None => {
                    return Err(ApiError::invalid("type", format!("unknown type {value}")));
                }
            },
        };
        let query = filter.query.trim().to_lowercase();
        let snapshot = self.snapshot().await?;
        let mut organizations: Vec<&Organization> = snapshot
            .directory
            .data()
            .organizations
            .iter()
            .filter(|o| filter.region_code.is_empty() || o.region_code == filter.region_code)
            .filter(|o| org_type.is_none_or(|t| o.org_type == t))
            .filter(|o| filter.parent_id.is_empty() || o.parent_id == filter.parent_id)
            .filter(|o| {
                query.is_empty()
                    || o.full_name.to_lowercase().contains(&query)
                    || o.short_name.to_lowercase().contains(&query)
            })
            .collect();
        organizations
            .sort_by(|a, b| a.region_code.cmp(&b.region_code).then_with(|| a.display_name().cmp(b.display_name())));
        Ok(pb::ListOrganizationsResponse {
            organizations: organizations.into_iter().map(|o| snapshot.directory.organization_proto(o)).collect(),
        })
    }

    async fn subordinates(
        &self,
        request: Request<pb::ListSubordinatesRequest>,
    ) -> ApiResult<pb::ListOrganizationsResponse> {
        // The directory and its hierarchy are public, like ListOrganizations with a parent.
        authorize(&request, "ListSubordinates", Role::ALL)?;
        let id = request.into_inner().organization_id;
        if id.is_empty() {
            return Err(ApiError::invalid("organization_id", "is required"));
        }
        let snapshot = self.snapshot().await?;
        if snapshot.directory.organization(&id).is_none() {
            return Err(not_found("organization", id));
        }
        let organizations = snapshot
            .directory
            .subordinates(&id)
            .into_iter()
            .map(|o| snapshot.directory.organization_proto(o))
            .collect();
        Ok(pb::ListOrganizationsResponse { organizations })
    }

    async fn confirm_onboarding_step(
        &self,
        request: Request<pb::ConfirmOnboardingRequest>,
    ) -> ApiResult<pb::Organization> {
        const METHOD: &str = "ConfirmOnboarding";
        // Seed 004: the window is shown to the responsible roles, the head and the coordinator.
        let caller = authorize(&request, METHOD, &ONBOARDING_ROLES)?;
        let input = request.into_inner();
        // Whose organization before what step: nobody confirms for another organization.
        let organization_id =
            if input.organization_id.is_empty() { caller.organization_id.clone() } else { input.organization_id };
        caller.require_organization(&organization_id, METHOD)?;
        let Some(step) = OnboardingStep::from_proto(input.step) else {
            return Err(ApiError::invalid("step", "must be training_done or cabinet_ready"));
        };
        let mut tx = self.db.begin().await?;
        if !store::lock_organization(&mut tx, &organization_id).await? {
            return Err(not_found("organization", organization_id));
        }
        let recorded = store::confirm_onboarding(&mut tx, &organization_id, step, &caller.subject).await?;
        let steps = store::confirmed_steps(&mut tx, &organization_id).await?;
        let complete = OnboardingStep::ALL.iter().all(|s| steps.contains(s));
        let snapshot = snapshot_in(&self.snapshots, &mut tx).await?;
        let was_connected = snapshot.directory.organization(&organization_id).is_some_and(|o| o.connected);
        // Only completing onboarding changes `connected` here, and only ever to true.
        let connects = complete && !was_connected;
        if connects {
            store::connect_organization(&mut tx, &organization_id).await?;
        }
        let details =
            json!({ "what": "onboarding", "step": step.as_str(), "recorded": recorded, "connected": connects });
        let (method, id) = (full("ConfirmOnboarding"), organization_id.as_str());
        audit::record(&mut tx, &caller, audit::Kind::DirectoryChanged, &method, id, id, details).await?;
        commit_change(tx, Scope::Directory).await?;
        tracing::info!(
            subject = %caller.subject,
            organization_id = %organization_id,
            step = step.as_str(),
            recorded,
            connected = complete || was_connected,
            "onboarding step confirmed"
        );
        let snapshot = self.snapshot().await?;
        match snapshot.directory.organization(&organization_id) {
            Some(organization) => Ok(snapshot.directory.organization_proto(organization)),
            None => Err(not_found("organization", organization_id)),
        }
    }

    async fn organization(&self, request: Request<pb::GetOrganizationRequest>) -> ApiResult<pb::Organization> {
        authorize(&request, "GetOrganization", Role::ALL)?;
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(ApiError::invalid("id", "is required"));
        }
        let snapshot = self.snapshot().await?;
        match snapshot.directory.organization(&id) {
            Some(organization) => Ok(snapshot.directory.organization_proto(organization)),
            None => Err(not_found("organization", id)),
        }
    }

    async fn save_organization(&self, request: Request<pb::Organization>) -> ApiResult<pb::Organization> {
        let caller = authorize(&request, "UpsertOrganization", &[Role::System])?;
        let input = request.into_inner();
        let mut violations = FieldViolations::new();
        let id = id_or_new(&input.id, &mut violations);
        required(&mut violations, "full_name", &input.full_name);
        let org_type = OrgType::from_proto(input.r#type);
        if org_type.is_none() {
            violations.add("type", "is required");
        }
        let mut tx = self.db.begin().await?;
        let snapshot = snapshot_in(&self.snapshots, &mut tx).await?;
        if input.region_code.is_empty() {
            if org_type.is_some_and(|t| t != OrgType::FederalAgency) {
                violations.add("region_code", "is required for every organization but a federal body");
            }
        } else if snapshot.directory.region(&input.region_code).is_none() {
            violations.add("region_code", format!("unknown region {:?}", input.region_code));
        }
        if !input.parent_id.is_empty() {
            if snapshot.directory.organization(&input.parent_id).is_none() {
                violations.add("parent_id", format!("unknown organization {:?}", input.parent_id));
            } else if creates_cycle(&snapshot, &id, &input.parent_id) {
                violations.add("parent_id", "the organization would become its own ancestor");
            }
        }
        // A region's cabinet is where everything ends up: it must stay a cabinet of its region.
        if let Some(region) = snapshot.directory.data().regions.iter().find(|r| r.cabinet_organization_id == id)
            && (org_type.is_some_and(|t| t != OrgType::RegionalCabinet) || input.region_code != region.code)
        {
            violations.add(
                "type",
                format!("{id} is the cabinet of region {}: it stays a regional_cabinet there", region.code),
            );
        }
        // A missing type was named as a violation above.
        let Some(org_type) = org_type else { return Err(ApiError::Invalid(violations)) };
        violations.into_result()?;
        let organization = Organization {
            id,
            full_name: input.full_name.trim().to_owned(),
            short_name: input.short_name.trim().to_owned(),
            address: input.address.trim().to_owned(),
            email: input.email.trim().to_owned(),
            region_code: input.region_code,
            parent_id: input.parent_id,
            org_type,
            connected: input.connected,
        };
        store::upsert_organization(&mut tx, &organization, OnConflict::Update).await?;
        // Disconnecting an onboarded organization (staff gone, the cabinet closed) makes its
        // staff confirm again; a not-connected one keeps the steps confirmed so far.
        let disconnects = !organization.connected
            && snapshot.directory.organization(&organization.id).is_some_and(|existing| existing.connected);
        if disconnects {
            store::clear_onboarding(&mut tx, &organization.id).await?;
        }
        let details =
            json!({ "what": "organization", "connected": organization.connected, "disconnected": disconnects });
        let (method, id) = (full("UpsertOrganization"), organization.id.as_str());
        audit::record(&mut tx, &caller, audit::Kind::DirectoryChanged, &method, id, id, details).await?;
        commit_change(tx, Scope::Directory).await?;
        tracing::info!(
            subject = %caller.subject,
            organization_id = %organization.id,
            connected = organization.connected,
            "organization saved"
        );
        Ok(organization.to_proto())
    }

    async fn auto_rules(&self, request: Request<pb::ListAutoRulesRequest>) -> ApiResult<pb::ListAutoRulesResponse> {
        let caller = authorize(&request, "ListAutoRules", Role::ALL)?;
        let organization_id = request.into_inner().organization_id;
        // The check comes before the request's fields, so a stranger learns nothing from an
        // error; `require_organization` logs the denial.
        if !sees_rules_of(&caller, &organization_id) {
            caller.require_organization(&organization_id, "ListAutoRules")?;
        }
        if organization_id.is_empty() {
            return Err(ApiError::invalid("organization_id", "is required"));
        }
        let snapshot = self.snapshot().await?;
        if snapshot.directory.organization(&organization_id).is_none() {
            return Err(not_found("organization", organization_id));
        }
        let rules = snapshot.directory.rules_of(&organization_id).map(AutoRule::to_proto).collect();
        Ok(pb::ListAutoRulesResponse { rules })
    }

    async fn save_auto_rule(&self, request: Request<pb::AutoRule>) -> ApiResult<pb::AutoRule> {
        let caller = authorize(&request, "UpsertAutoRule", &AUTO_RULE_ADMINS)?;
        let input = request.into_inner();
        // Whose rule it is comes before what it says: an admin learns nothing about another
        // organization's rules, not even what a valid one would be.
        caller.require_organization(&input.organization_id, "UpsertAutoRule")?;
        let mut violations = FieldViolations::new();
        required(&mut violations, "organization_id", &input.organization_id);
        violations.into_result()?;
        let mut violations = FieldViolations::new();
        let id = id_or_new(&input.id, &mut violations);
        let mut tx = self.db.begin().await?;
        let snapshot = snapshot_in(&self.snapshots, &mut tx).await?;
        // Editing a rule must not move another organization's rule into the caller's.
        if let Some(existing) = snapshot.directory.auto_rule(&id) {
            caller.require_organization(&existing.organization_id, "UpsertAutoRule")?;
        }
        if snapshot.directory.organization(&input.organization_id).is_none() {
            return Err(not_found("organization", input.organization_id));
        }
        let target = if input.target_organization_id.is_empty() {
            input.organization_id.clone()
        } else {
            input.target_organization_id.clone()
        };
        if snapshot.directory.organization(&target).is_none() {
            violations.add("target_organization_id", format!("unknown organization {target:?}"));
        } else if !snapshot.directory.is_within(&target, &input.organization_id) {
            // Delegation goes down the hierarchy: nobody may push work onto a stranger.
            violations.add("target_organization_id", "must be the organization itself or one of its subordinates");
        } else if target == input.organization_id && input.target_executor_id.is_empty() {
            violations
                .add("target_executor_id", "a rule that keeps the message in the organization must name an executor");
        }
        if !input.fact_id.is_empty() && snapshot.classifier.fact(&input.fact_id).is_none() {
            violations.add("fact_id", format!("unknown fact {:?}", input.fact_id));
        }
        if input.priority < 0 {
            violations.add("priority", "must not be negative");
        }
        let keywords: Vec<String> =
            input.keywords.iter().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect();
        violations.into_result()?;
        let rule = AutoRule {
            id,
            organization_id: input.organization_id,
            priority: input.priority,
            fact_id: input.fact_id,
            keywords,
            target_organization_id: target,
            target_executor_id: input.target_executor_id.trim().to_owned(),
            active: input.active,
        };
        store::upsert_auto_rule(&mut tx, &rule).await?;
        let details = json!({
            "what": "auto_rule",
            "target_organization_id": rule.target_organization_id,
            "active": rule.active,
        });
        let method = full("UpsertAutoRule");
        audit::record(
            &mut tx,
            &caller,
            audit::Kind::DirectoryChanged,
            &method,
            &rule.organization_id,
            &rule.id,
            details,
        )
        .await?;
        commit_change(tx, Scope::Directory).await?;
        tracing::info!(
            subject = %caller.subject,
            organization_id = %rule.organization_id,
            auto_rule_id = %rule.id,
            target_organization_id = %rule.target_organization_id,
            "auto-rule saved"
        );
        Ok(rule.to_proto())
    }

    async fn remove_auto_rule(
        &self,
        request: Request<pb::DeleteAutoRuleRequest>,
    ) -> ApiResult<pb::DeleteAutoRuleResponse> {
        let caller = authorize(&request, "DeleteAutoRule", &AUTO_RULE_ADMINS)?;
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(ApiError::invalid("id", "is required"));
        }
        let mut tx = self.db.begin().await?;
        let snapshot = snapshot_in(&self.snapshots, &mut tx).await?;
        let Some(rule) = snapshot.directory.auto_rule(&id) else {
            return Err(not_found("auto-rule", id));
        };
        caller.require_organization(&rule.organization_id, "DeleteAutoRule")?;
        let organization_id = rule.organization_id.clone();
        if !store::delete_auto_rule(&mut tx, &id).await? {
            return Err(not_found("auto-rule", id));
        }
        let details = json!({ "what": "auto_rule", "deleted": true });
        let method = full("DeleteAutoRule");
        audit::record(&mut tx, &caller, audit::Kind::DirectoryChanged, &method, &organization_id, &id, details).await?;
        commit_change(tx, Scope::Directory).await?;
        tracing::info!(subject = %caller.subject, auto_rule_id = %id, "auto-rule deleted");
        Ok(pb::DeleteAutoRuleResponse {})
    }

    async fn regions(&self, request: Request<pb::ListRegionsRequest>) -> ApiResult<pb::ListRegionsResponse> {
        authorize(&request, "ListRegions", Role::ALL)?;
        let snapshot = self.snapshot().await?;
        let regions = snapshot.directory.data().regions.iter().map(|r| r.to_proto()).collect();
        Ok(pb::ListRegionsResponse { regions })
    }
}

#[tonic::async_trait]
impl RoutingService for RoutingApi {
    async fn resolve(&self, request: Request<pb::ResolveRequest>) -> Result<Response<pb::Resolution>, Status> {
        Ok(Response::new(self.dry_run(request).await?))
    }

    async fn list_classifier(
        &self,
        request: Request<pb::ListClassifierRequest>,
    ) -> Result<Response<pb::Classifier>, Status> {
        Ok(Response::new(self.classifier(request).await?))
    }

    async fn upsert_category(&self, request: Request<pb::Category>) -> Result<Response<pb::Category>, Status> {
        Ok(Response::new(self.save_category(request).await?))
    }

    async fn upsert_subcategory(&self, request: Request<pb::Subcategory>) -> Result<Response<pb::Subcategory>, Status> {
        Ok(Response::new(self.save_subcategory(request).await?))
    }

    async fn upsert_fact(&self, request: Request<pb::Fact>) -> Result<Response<pb::Fact>, Status> {
        Ok(Response::new(self.save_fact(request).await?))
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        Ok(Response::new(self.organizations(request).await?))
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        Ok(Response::new(self.organization(request).await?))
    }

    async fn upsert_organization(
        &self,
        request: Request<pb::Organization>,
    ) -> Result<Response<pb::Organization>, Status> {
        Ok(Response::new(self.save_organization(request).await?))
    }

    async fn list_subordinates(
        &self,
        request: Request<pb::ListSubordinatesRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        Ok(Response::new(self.subordinates(request).await?))
    }

    async fn confirm_onboarding(
        &self,
        request: Request<pb::ConfirmOnboardingRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        Ok(Response::new(self.confirm_onboarding_step(request).await?))
    }

    async fn list_auto_rules(
        &self,
        request: Request<pb::ListAutoRulesRequest>,
    ) -> Result<Response<pb::ListAutoRulesResponse>, Status> {
        Ok(Response::new(self.auto_rules(request).await?))
    }

    async fn upsert_auto_rule(&self, request: Request<pb::AutoRule>) -> Result<Response<pb::AutoRule>, Status> {
        Ok(Response::new(self.save_auto_rule(request).await?))
    }

    async fn delete_auto_rule(
        &self,
        request: Request<pb::DeleteAutoRuleRequest>,
    ) -> Result<Response<pb::DeleteAutoRuleResponse>, Status> {
        Ok(Response::new(self.remove_auto_rule(request).await?))
    }

    async fn list_regions(
        &self,
        request: Request<pb::ListRegionsRequest>,
    ) -> Result<Response<pb::ListRegionsResponse>, Status> {
        Ok(Response::new(self.regions(request).await?))
    }
}

/// The fact's addressee rule from its protobuf form, with violations named after its fields.
fn addressee_from_proto(
    rule: Option<&pb::AddresseeRule>,
    snapshot: &Snapshot,
    violations: &mut FieldViolations,
) -> Option<Addressee> {
    let Some(rule) = rule else {
        violations.add("addressee", "is required");
        return None;
    };
    let org_type = OrgType::from_proto(rule.organization_type);
    match pb::AddresseeKind::try_from(rule.kind) {
        Ok(pb::AddresseeKind::Picked) | Ok(pb::AddresseeKind::Regional) if org_type.is_none() => {
            violations.add("addressee.organization_type", "is required for picked and regional addressees");
            None
        }
        Ok(pb::AddresseeKind::Picked) => org_type.map(|t| Addressee::Picked { organization_type: t }),
        Ok(pb::AddresseeKind::Regional) => org_type.map(|t| Addressee::Regional { organization_type: t }),
        Ok(pb::AddresseeKind::Federal) => {
            if rule.organization_id.is_empty() {
                violations.add("addressee.organization_id", "is required for a federal addressee");
                None
            } else if snapshot.directory.organization(&rule.organization_id).is_none() {
                violations.add("addressee.organization_id", format!("unknown organization {:?}", rule.organization_id));
                None
            } else {
                Some(Addressee::Federal { organization_id: rule.organization_id.clone() })
            }
        }
        Ok(pb::AddresseeKind::Unspecified) | Err(_) => {
            violations.add("addressee.kind", "must be picked, regional or federal");
            None
        }
    }
}

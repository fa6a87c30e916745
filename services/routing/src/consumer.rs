//! `appeal.received` → the routing decision → `appeal.routed`, in one transaction with the
//! inbox row, the decision row and the outbox row.
//!
//! An appeal is never lost: an unknown fact or region, a missing or wrong pick, an addressee
//! that is not connected, all end in some cabinet that can redirect it, with the reason in the
//! explanation. Only a payload that cannot be read is poison.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use pos_platform::consumer::{HandleError, Handler};
use pos_platform::{Envelope, Tx};
use pos_proto::v1::events::{AppealReceived, AppealRouted};

use crate::config::RoutingConfig;
use crate::model::{Names, Organization};
use crate::resolve::{self, resolve};
use crate::snapshot::Snapshots;
use crate::store::{self, AppealContent, StoredApplicant, StoredDecision};

/// The queue of this consumer; also its name in the inbox.
pub const QUEUE: &str = "routing.appeal-received";

/// The routing-key region of an event whose region is not known at all.
const NO_REGION: &str = "00";

pub struct AppealReceivedHandler {
    snapshots: Arc<Snapshots>,
    config: Arc<RoutingConfig>,
}

impl AppealReceivedHandler {
    pub fn new(snapshots: Arc<Snapshots>, config: Arc<RoutingConfig>) -> AppealReceivedHandler {
        AppealReceivedHandler { snapshots, config }
    }
}

#[async_trait]
impl Handler for AppealReceivedHandler {
    type Event = AppealReceived;

    async fn handle(&self, tx: &mut Tx, appeal: AppealReceived, envelope: &Envelope) -> Result<(), HandleError> {
        if appeal.appeal_id.is_empty() {
            // Without its id an appeal can be neither recorded once nor found by anyone
            // downstream: the payload breaks the contract, like an undecodable one.
            return Err(HandleError::poison(anyhow::anyhow!("appeal.received without an appeal_id")));
        }
        let region_code = if appeal.region_code.is_empty() { envelope.region() } else { appeal.region_code.as_str() };
        let snapshot = self.snapshots.current(tx).await?;
        let outcome = resolve(
            &snapshot.classifier,
            &snapshot.directory,
            self.config.periods(),
            &self.config.fallback(),
            &resolve::Request {
                region_code,
                fact_id: &appeal.fact_id,
                subcategory_id: &appeal.subcategory_id,
                picked_organization_id: &appeal.picked_organization_id,
                text: &appeal.public_text,
            },
        );
        let decision = outcome.decision;
        // The applicant and the addressee's staff read it: auto-rules show only whose rule sent
        // the appeal where (their details stay in the stored steps).
        let mut explanation = decision.public_explanation();
        if !outcome.problems.is_empty() {
            let problems: Vec<String> =
                outcome.problems.iter().map(|p| format!("{}: {}", p.field(), p.description())).collect();
            tracing::warn!(
                appeal_id = %appeal.appeal_id,
                problems = %problems.join("; "),
                organization_id = %decision.organization.id,
                "appeal routed around problems in its content"
            );
            let problems = resolve::explain_problems(&outcome.problems, &snapshot.classifier, &snapshot.directory);
            explanation = format!("{explanation} {problems}");
        }

        let routed_at = Utc::now();
        let category_id = if appeal.category_id.is_empty() { decision.category_id.clone() } else { appeal.category_id };
        let subcategory_id =
            if appeal.subcategory_id.is_empty() { decision.subcategory_id.clone() } else { appeal.subcategory_id };
        let content = AppealContent {
            registered_at: appeal.registered_at.as_ref().and_then(pos_proto::time::from_proto),
            source: appeal.source,
            category_id,
            subcategory_id,
            public_text: appeal.public_text,
            problem_address: appeal.problem_address,
            applicant: appeal.applicant.map(|a| StoredApplicant {
                full_name: a.full_name,
                email: a.email,
                phone: a.phone,
                account_id: a.account_id,
            }),
        };
        let recorded = store::insert_decision(
            tx,
            &StoredDecision {
                appeal_id: appeal.appeal_id.clone(),
                message_id: envelope.message_id.to_string(),
                number: appeal.number,
                region_code: region_code.to_owned(),
                fact_id: appeal.fact_id.clone(),
                organization_id: decision.organization.id.clone(),
                organization_region: decision.organization.region_code.clone(),
                time_zone: decision.time_zone.clone(),
                period_days: decision.period_days,
                working_days: decision.working_days,
                fast_track: decision.fast_track,
                delegated_by_auto_rule: decision.delegated_by_auto_rule,
                auto_rule_id: decision.auto_rule_id.clone(),
                target_executor_id: decision.target_executor_id.clone(),
                steps: decision.steps.clone(),
                explanation: explanation.clone(),
                decided_at: routed_at,
                content: content.clone(),
            },
        )
        .await?;
        if !recorded {
            // The same appeal under another message id (republished upstream): the first
            // decision stands and was announced already.
            tracing::info!(appeal_id = %appeal.appeal_id, "appeal already routed, nothing to do");
            return Ok(());
        }

        // The classifier's names (routing owns the tree); the appeal's own where an id is unknown.
        let names = snapshot.classifier.names(&content.category_id, &content.subcategory_id, &appeal.fact_id).or(
            &appeal.category_name,
            &appeal.subcategory_name,
            &appeal.fact_name,
        );
        let routed = routed_event(
            &appeal.appeal_id,
            appeal.number,
            region_code,
            &appeal.fact_id,
            &content,
            names,
            &decision.organization,
            Terms {
                time_zone: decision.time_zone.clone(),
                period_days: decision.period_days,
                working_days: decision.working_days,
                fast_track: decision.fast_track,
            },
            routed_at,
        );
        let routed = AppealRouted {
            delegated_by_auto_rule: decision.delegated_by_auto_rule,
            auto_rule_id: decision.auto_rule_id.clone(),
            target_executor_id: decision.target_executor_id.clone(),
            explanation,
            ..routed
        };
        // The event is keyed by the addressee's region: its cabinet, deadlines and ticket live in
        // that region's deployment (a picked school may lie outside the applicant's region).
        // Federal bodies have none; they are reached through the applicant's region.
        let routing_region = [decision.organization.region_code.as_str(), region_code]
            .into_iter()
            .find(|code| !code.is_empty())
            .unwrap_or(NO_REGION);
        pos_platform::outbox::enqueue(tx, &Envelope::new(&routed, routing_region).with_appeal(&appeal.appeal_id))
            .await?;

        let outcome = match (decision.direct, decision.delegated_by_auto_rule) {
            (_, true) => "delegated",
            (true, false) => "direct",
            (false, false) => "fallback",
        };
        // By the appeal's region, as intake counts it received and ticketing its tickets, so that
        // the three line up per region on the dashboard.
        metrics::counter!("pos_routing_decisions_total", "outcome" => outcome, "region" => region_code.to_owned())
            .increment(1);
        tracing::info!(
            appeal_id = %appeal.appeal_id,
            organization_id = %decision.organization.id,
            fact_id = %routed.fact_id,
            fast_track = decision.fast_track,
            period_days = decision.period_days,
            delegated_by_auto_rule = decision.delegated_by_auto_rule,
            outcome,
            "appeal routed"
        );
        Ok(())
    }
}

/// The deadline terms an `appeal.routed` announces.
pub struct Terms {
    pub time_zone: String,
    pub period_days: i32,
    pub working_days: bool,
    pub fast_track: bool,
}

/// An `appeal.routed` with everything its readers need, the same for a first routing and a
/// reroute: the SLA service arms the deadline from `registered_at`, ticketing shows the text, the
/// names and the applicant, notify writes to the applicant. Its contract test lives with the
/// end-to-end tests (`tests/tests/it/redirect.rs`), where every consumer reads both kinds.
#[allow(clippy::too_many_arguments)]
pub fn routed_event(
    appeal_id: &str,
    number: i64,
    region_code: &str,
    fact_id: &str,
    content: &AppealContent,
    names: Names,
    organization: &Organization,
    terms: Terms,
    routed_at: chrono::DateTime<Utc>,
) -> AppealRouted {
    AppealRouted {
        appeal_id: appeal_id.to_owned(),
        number,
        registered_at: content.registered_at.map(pos_proto::time::to_proto),
        source: content.source,
        region_code: region_code.to_owned(),
        category_id: content.category_id.clone(),
        subcategory_id: content.subcategory_id.clone(),
        fact_id: fact_id.to_owned(),
        organization: Some(organization.to_ref()),
        time_zone: terms.time_zone,
        period_days: terms.period_days,
        working_days: terms.working_days,
        fast_track: terms.fast_track,
        public_text: content.public_text.clone(),
        problem_address: content.problem_address.clone(),
        applicant: content.applicant.clone().map(|a| pos_proto::v1::Applicant {
            full_name: a.full_name,
            email: a.email,
            phone: a.phone,
            account_id: a.account_id,
        }),
        routed_at: Some(pos_proto::time::to_proto(routed_at)),
        category_name: names.category,
        subcategory_name: names.subcategory,
        fact_name: names.fact,
        ..Default::default()
    }
}

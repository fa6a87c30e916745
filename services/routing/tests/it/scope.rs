//! Every method of `pos.v1.RoutingService` keeps to the caller's scope: staff of another
//! organization with every cabinet role reach none of the ministry's auto-rules (not their
//! keywords, not their target executors) and change nothing that is the platform's; a caller
//! without the method's role is denied before the body is read. The classifier, the directory
//! of organizations and the regions are public reference data.

use pos_platform::auth::Role;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Call, Scoped};
use pos_proto::v1 as pb;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use tonic::transport::Channel;

use crate::helpers::{req, routing_client, spawn_app};

const MINISTRY: &str = "41-minobr";
const OTHER: &str = "41-kcioko";
const REFUSAL: &str = "education.enrolment.refusal";
/// The ministry's rule: refusals that mention Elizovo stay in the ministry, with one executor.
const RULE: &str = "minobr-elizovo";
const EXECUTOR: &str = "minobr-exec-7";

const CLASSIFIER_IS_PUBLIC: &str = "the classifier is what every applicant chooses a fact from";
const DIRECTORY_IS_PUBLIC: &str = "the directory of organizations is public: applicants pick their school in it";
const REGIONS_ARE_PUBLIC: &str = "regions and their time zones are reference data";

/// Staff of another organization holding every cabinet role.
fn intruder<T>(message: T) -> tonic::Request<T> {
    req(message, OTHER, &Role::STAFF)
}

/// A caller of the ministry holding every role but `allowed`.
fn without<T>(allowed: &[Role], message: T) -> tonic::Request<T> {
    let roles: Vec<Role> = Role::ALL.iter().copied().filter(|role| !allowed.contains(role)).collect();
    req(message, MINISTRY, &roles)
}

async fn ministry_rule(client: &mut RoutingServiceClient<Channel>) {
    let rule = pb::AutoRule {
        id: RULE.into(),
        organization_id: MINISTRY.into(),
        priority: 1,
        fact_id: REFUSAL.into(),
        keywords: vec!["Елизов".into()],
        target_organization_id: MINISTRY.into(),
        target_executor_id: EXECUTOR.into(),
        active: true,
    };
    client.upsert_auto_rule(req(rule, MINISTRY, &[Role::OrgAdmin])).await.expect("the ministry's rule");
}

/// A dry run by another organization's staff, with text the ministry's rule matches: the
/// decision may show where the appeal goes, not the ministry's rule or its executor.
fn resolve_shows_no_foreign_rule(client: &RoutingServiceClient<Channel>) -> Call {
    let mut client = client.clone();
    testing::call(async move {
        let request = pb::ResolveRequest {
            region_code: "41".into(),
            fact_id: REFUSAL.into(),
            text: "Отказали в приёме в школу в Елизово".into(),
            ..Default::default()
        };
        let resolution = client.resolve(intruder(request)).await?;
        let shown = format!("{:?}", resolution.get_ref());
        for secret in [RULE, EXECUTOR, "«Елизов»", "ключевые слова", "приоритет"] {
            assert!(!shown.contains(secret), "the ministry's rule ({secret}) shown to another organization: {shown}");
        }
        // Where the appeal goes is still answered, and that an auto-rule of the ministry sent it.
        let answer = resolution.get_ref();
        assert_eq!(answer.organization.as_ref().map(|o| o.id.as_str()), Some(MINISTRY));
        assert!(answer.delegated_by_auto_rule);
        assert!(
            answer.explanation.contains("По авто-правилу организации «Минобразования Камчатского края»"),
            "{}",
            answer.explanation
        );
        Ok(resolution)
    })
}

fn rule_of(organization: &str) -> pb::AutoRule {
    pb::AutoRule {
        id: RULE.into(),
        organization_id: organization.into(),
        priority: -1,
        target_organization_id: "nowhere".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn another_organization_reaches_nothing_of_the_ministry() {
    let app = spawn_app().await;
    let mut c = routing_client(&app);
    ministry_rule(&mut c).await;
    let ministry = c
        .get_organization(req(pb::GetOrganizationRequest { id: MINISTRY.into() }, MINISTRY, &[Role::OrgAdmin]))
        .await
        .expect("the ministry")
        .into_inner();
    let rows: Vec<(&str, Scoped)> = vec![
        ("Resolve", Scoped::OwnOnly(resolve_shows_no_foreign_rule(&c))),
        ("ListClassifier", Scoped::Public(CLASSIFIER_IS_PUBLIC)),
        (
            "UpsertCategory",
            Scoped::Denied(rpc_call!(
                c,
                upsert_category,
                intruder(pb::Category { id: "education".into(), ..Default::default() })
            )),
        ),
        (
            "UpsertSubcategory",
            Scoped::Denied(rpc_call!(
                c,
                upsert_subcategory,
                intruder(pb::Subcategory { id: "education.enrolment".into(), ..Default::default() })
            )),
        ),
        (
            "UpsertFact",
            Scoped::Denied(rpc_call!(c, upsert_fact, intruder(pb::Fact { id: REFUSAL.into(), ..Default::default() }))),
        ),
        ("ListOrganizations", Scoped::Public(DIRECTORY_IS_PUBLIC)),
        ("GetOrganization", Scoped::Public(DIRECTORY_IS_PUBLIC)),
        (
            "UpsertOrganization",
            Scoped::Denied(rpc_call!(
                c,
                upsert_organization,
                intruder(pb::Organization { connected: false, ..ministry.clone() })
            )),
        ),
        (
            "ListAutoRules",
            Scoped::Denied(rpc_call!(
                c,
                list_auto_rules,
                intruder(pb::ListAutoRulesRequest { organization_id: MINISTRY.into() })
            )),
        ),
        ("ListSubordinates", Scoped::Public(DIRECTORY_IS_PUBLIC)),
        // Confirming the ministry's onboarding, with a step that is not one: refused for the
        // organization before the step is read.
        (
            "ConfirmOnboarding",
            Scoped::Denied(rpc_call!(
                c,
                confirm_onboarding,
                intruder(pb::ConfirmOnboardingRequest { organization_id: MINISTRY.into(), step: 0 })
            )),
        ),
        ("UpsertAutoRule", Scoped::Denied(rpc_call!(c, upsert_auto_rule, intruder(rule_of(MINISTRY))))),
        // Taking the ministry's rule over under the caller's own organization.
        ("UpsertAutoRule", Scoped::Denied(rpc_call!(c, upsert_auto_rule, intruder(rule_of(OTHER))))),
        (
            "DeleteAutoRule",
            Scoped::Denied(rpc_call!(c, delete_auto_rule, intruder(pb::DeleteAutoRuleRequest { id: RULE.into() }))),
        ),
        ("ListRegions", Scoped::Public(REGIONS_ARE_PUBLIC)),
    ];
    testing::assert_every_method_scoped("RoutingService", rows).await;
    // The rule is still the ministry's, unchanged.
    let rules = c
        .list_auto_rules(req(
            pb::ListAutoRulesRequest { organization_id: MINISTRY.into() },
            MINISTRY,
            &[Role::OrgAdmin],
        ))
        .await
        .expect("the ministry's rules")
        .into_inner()
        .rules;
    assert_eq!(
        rules.iter().map(|r| (r.id.as_str(), r.target_executor_id.as_str())).collect::<Vec<_>>(),
        [(RULE, EXECUTOR)]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_caller_without_the_role_is_denied_before_the_body_is_read() {
    let app = spawn_app().await;
    let c = routing_client(&app);
    let system = [Role::System];
    let admins = [Role::OrgAdmin, Role::System];
    let applicant = |m| req(m, "", &[Role::Applicant]);
    let rows: Vec<(&str, Scoped)> = vec![
        ("Resolve", Scoped::Public("every caller may ask where an appeal would go")),
        ("ListClassifier", Scoped::Public(CLASSIFIER_IS_PUBLIC)),
        ("UpsertCategory", Scoped::Denied(rpc_call!(c, upsert_category, without(&system, pb::Category::default())))),
        (
            "UpsertSubcategory",
            Scoped::Denied(rpc_call!(c, upsert_subcategory, without(&system, pb::Subcategory::default()))),
        ),
        ("UpsertFact", Scoped::Denied(rpc_call!(c, upsert_fact, without(&system, pb::Fact::default())))),
        ("ListOrganizations", Scoped::Public(DIRECTORY_IS_PUBLIC)),
        ("GetOrganization", Scoped::Public(DIRECTORY_IS_PUBLIC)),
        (
            "UpsertOrganization",
            Scoped::Denied(rpc_call!(c, upsert_organization, without(&system, pb::Organization::default()))),
        ),
        ("ListSubordinates", Scoped::Public(DIRECTORY_IS_PUBLIC)),
        (
            "ConfirmOnboarding",
            Scoped::Denied(rpc_call!(
                c,
                confirm_onboarding,
                without(&[Role::Head, Role::Coordinator], pb::ConfirmOnboardingRequest::default())
            )),
        ),
        // An applicant belongs to no organization, so no organization's rules are theirs.
        (
            "ListAutoRules",
            Scoped::Denied(rpc_call!(
                c,
                list_auto_rules,
                applicant(pb::ListAutoRulesRequest { organization_id: MINISTRY.into() })
            )),
        ),
        ("UpsertAutoRule", Scoped::Denied(rpc_call!(c, upsert_auto_rule, without(&admins, rule_of(MINISTRY))))),
        (
            "DeleteAutoRule",
            Scoped::Denied(rpc_call!(c, delete_auto_rule, without(&admins, pb::DeleteAutoRuleRequest::default()))),
        ),
        ("ListRegions", Scoped::Public(REGIONS_ARE_PUBLIC)),
    ];
    testing::assert_every_method_scoped("RoutingService", rows).await;
    app.stop().await;
}

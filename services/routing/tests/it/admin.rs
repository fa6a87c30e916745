//! Classifier, directory and auto-rule administration: who may, what is refused, and that a
//! change is visible to `Resolve` at once (the versioned cache).

use pos_platform::auth::Role;
use pos_proto::v1 as pb;
use pos_routing::model::Scope;
use pos_routing::snapshot::cache_key;

use crate::helpers::{applicant, assert_invalid, req, routing_client, spawn_app, system};

const E_DIARY: &str = "education.e-diary.access";
const REFUSAL: &str = "education.enrolment.refusal";

fn resolve_request(region: &str, fact: &str, picked: &str, text: &str) -> pb::ResolveRequest {
    pb::ResolveRequest {
        region_code: region.into(),
        fact_id: fact.into(),
        subcategory_id: String::new(),
        picked_organization_id: picked.into(),
        text: text.into(),
    }
}

#[tokio::test]
async fn a_directory_change_is_visible_to_resolve_at_once_and_the_snapshot_is_cached_in_redis() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    let before = client.resolve(applicant(resolve_request("41", E_DIARY, "", ""))).await.unwrap().into_inner();
    assert_eq!(before.organization.unwrap().id, "41-kcioko");

    // The snapshot of the current version sits in Redis under a key carrying that version.
    let mut conn = app.db.pool().acquire().await.unwrap();
    let (classifier_version, directory_version) = pos_routing::store::versions(&mut conn).await.unwrap();
    assert!(app.infra.cache.get(&cache_key(Scope::Directory, directory_version)).await.unwrap().is_some());
    assert!(app.infra.cache.get(&cache_key(Scope::Classifier, classifier_version)).await.unwrap().is_some());

    // The regional center is disconnected: the very next Resolve goes to its parent.
    let mut center = client
        .get_organization(applicant(pb::GetOrganizationRequest { id: "41-kcioko".into() }))
        .await
        .unwrap()
        .into_inner();
    center.connected = false;
    let saved = client.upsert_organization(system(center.clone())).await.unwrap().into_inner();
    assert!(!saved.connected);
    let after = client.resolve(applicant(resolve_request("41", E_DIARY, "", ""))).await.unwrap().into_inner();
    assert_eq!(after.organization.unwrap().id, "41-minobr", "{}", after.explanation);

    let (_, new_version) = pos_routing::store::versions(&mut conn).await.unwrap();
    assert!(new_version > directory_version);
    assert!(app.infra.cache.get(&cache_key(Scope::Directory, new_version)).await.unwrap().is_some());

    // And back.
    center.connected = true;
    client.upsert_organization(system(center)).await.unwrap();
    let again = client.resolve(applicant(resolve_request("41", E_DIARY, "", ""))).await.unwrap().into_inner();
    assert_eq!(again.organization.unwrap().id, "41-kcioko");
    drop(conn);
    app.stop().await;
}

#[tokio::test]
async fn the_classifier_is_administered_by_systems_only_and_changes_show_at_once() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    let before = client.list_classifier(applicant(pb::ListClassifierRequest {})).await.unwrap().into_inner();
    assert_eq!(before.facts.len(), 13);
    assert_eq!(before.categories.first().map(|c| c.id.as_str()), Some("edu-records"), "seed order is kept");

    let category = pb::Category { id: "health".into(), name: "Здравоохранение".into(), active: true };
    let status = client.upsert_category(req(category.clone(), "41-minobr", &[Role::OrgAdmin])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    client.upsert_category(system(category)).await.unwrap();
    let subcategory = pb::Subcategory {
        id: "health.appointments".into(),
        category_id: "health".into(),
        name: "Запись к врачу".into(),
        active: true,
    };
    client.upsert_subcategory(system(subcategory)).await.unwrap();
    let mut fact = pb::Fact {
        id: "health.appointments.no-slots".into(),
        subcategory_id: "health.appointments".into(),
        name: "Нет свободных талонов".into(),
        addressee: Some(pb::AddresseeRule {
            kind: pb::AddresseeKind::Regional as i32,
            organization_type: pb::OrganizationType::RegionalMinistry as i32,
            organization_id: String::new(),
        }),
        period_days: 5,
        working_days: true,
        fast_track_default: false,
        fast_track_regions: vec![],
        not_fast_track_regions: vec![],
        active: true,
    };
    client.upsert_fact(system(fact.clone())).await.unwrap();

    let after = client.list_classifier(applicant(pb::ListClassifierRequest {})).await.unwrap().into_inner();
    assert!(after.version > before.version);
    assert_eq!(after.facts.len(), 14);
    assert_eq!(after.facts.last().unwrap().id, "health.appointments.no-slots", "new facts come last");
    let resolution = client
        .resolve(applicant(resolve_request("16", "health.appointments.no-slots", "", "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolution.organization.unwrap().id, "16-minobr");
    assert_eq!((resolution.period_days, resolution.working_days), (5, true));

    // Invalid facts name their fields.
    fact.subcategory_id = "nope".into();
    assert_invalid(&client.upsert_fact(system(fact.clone())).await.unwrap_err(), "subcategory_id");
    fact.subcategory_id = "health.appointments".into();
    fact.period_days = 0;
    assert_invalid(&client.upsert_fact(system(fact.clone())).await.unwrap_err(), "period_days");
    fact.period_days = 5;
    fact.addressee = Some(pb::AddresseeRule {
        kind: pb::AddresseeKind::Federal as i32,
        organization_type: 0,
        organization_id: "nobody".into(),
    });
    assert_invalid(&client.upsert_fact(system(fact.clone())).await.unwrap_err(), "addressee.organization_id");
    fact.addressee = Some(pb::AddresseeRule {
        kind: pb::AddresseeKind::Picked as i32,
        organization_type: 0,
        organization_id: String::new(),
    });
    assert_invalid(&client.upsert_fact(system(fact.clone())).await.unwrap_err(), "addressee.organization_type");
    fact.addressee = None;
    fact.fast_track_regions = vec!["00".into()];
    let status = client.upsert_fact(system(fact)).await.unwrap_err();
    assert_invalid(&status, "addressee");
    assert_invalid(&status, "fast_track_regions");
    let orphan = pb::Subcategory { id: String::new(), category_id: "nope".into(), name: "X".into(), active: true };
    assert_invalid(&client.upsert_subcategory(system(orphan)).await.unwrap_err(), "category_id");
    app.stop().await;
}

#[tokio::test]
async fn the_directory_lists_filters_and_refuses_what_would_break_routing() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    let regions = client.list_regions(applicant(pb::ListRegionsRequest {})).await.unwrap().into_inner().regions;
    assert_eq!(regions.len(), 89);
    let kamchatka = regions.iter().find(|r| r.code == "41").unwrap();
    assert_eq!(
        (kamchatka.time_zone.as_str(), kamchatka.cabinet_organization_id.as_str()),
        ("Asia/Kamchatka", "cabinet-41")
    );

    let schools = client
        .list_organizations(applicant(pb::ListOrganizationsRequest {
            region_code: "41".into(),
            r#type: pb::OrganizationType::School as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .organizations;
    let mut ids: Vec<&str> = schools.iter().map(|o| o.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["41-school-elizovo-2", "41-school-klyuchi-1", "41-school-pk-1", "41-school-pk-33"]);
    let found = client
        .list_organizations(applicant(pb::ListOrganizationsRequest {
            query: "ЦЕНТР ИНФОРМАТИЗАЦИИ".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .organizations;
    assert_eq!(found.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["41-kcioko"]);
    let children = client
        .list_organizations(applicant(pb::ListOrganizationsRequest {
            parent_id: "16-uo-kazan".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .organizations;
    assert_eq!(children.len(), 2);

    let status =
        client.get_organization(applicant(pb::GetOrganizationRequest { id: "nope".into() })).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // A new school, then attempts to break the hierarchy.
    let school = pb::Organization {
        id: "41-school-pk-45".into(),
        full_name: "МБОУ «Средняя школа № 45»".into(),
        short_name: "СШ № 45".into(),
        address: String::new(),
        region_code: "41".into(),
        parent_id: "41-uo-petropavlovsk".into(),
        r#type: pb::OrganizationType::School as i32,
        connected: true,
        email: String::new(),
        ..Default::default()
    };
    let status = client.upsert_organization(req(school.clone(), "41-minobr", &[Role::OrgAdmin])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    client.upsert_organization(system(school.clone())).await.unwrap();
    let resolution = client
        .resolve(applicant(resolve_request("41", "education.meals.free-meals", "41-school-pk-45", "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolution.organization.unwrap().id, "41-school-pk-45");

    let mut department = client
        .get_organization(applicant(pb::GetOrganizationRequest { id: "41-uo-petropavlovsk".into() }))
        .await
        .unwrap()
        .into_inner();
    department.parent_id = "41-school-pk-45".into();
    assert_invalid(&client.upsert_organization(system(department)).await.unwrap_err(), "parent_id");
    let mut stray = school.clone();
    stray.region_code = "00".into();
    assert_invalid(&client.upsert_organization(system(stray)).await.unwrap_err(), "region_code");
    let mut untyped = school;
    untyped.r#type = 0;
    assert_invalid(&client.upsert_organization(system(untyped)).await.unwrap_err(), "type");
    let mut cabinet = client
        .get_organization(applicant(pb::GetOrganizationRequest { id: "cabinet-41".into() }))
        .await
        .unwrap()
        .into_inner();
    cabinet.r#type = pb::OrganizationType::Other as i32;
    assert_invalid(&client.upsert_organization(system(cabinet)).await.unwrap_err(), "type");
    app.stop().await;
}

fn rule(id: &str, organization: &str, priority: i32, fact: &str, keywords: &[&str], target: &str) -> pb::AutoRule {
    pb::AutoRule {
        id: id.into(),
        organization_id: organization.into(),
        priority,
        fact_id: fact.into(),
        keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        target_organization_id: target.into(),
        target_executor_id: String::new(),
        active: true,
    }
}

#[tokio::test]
async fn auto_rules_delegate_by_priority_fact_and_keywords() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    let admin = |message: pb::AutoRule| req(message, "41-minobr", &[Role::OrgAdmin]);
    // Refusals mentioning Elizovo go to its department; every other refusal to the city's.
    client
        .upsert_auto_rule(admin(rule("minobr-elizovo", "41-minobr", 10, REFUSAL, &["Елизов"], "41-uo-elizovo")))
        .await
        .unwrap();
    client
        .upsert_auto_rule(admin(rule("minobr-city", "41-minobr", 20, REFUSAL, &[], "41-uo-petropavlovsk")))
        .await
        .unwrap();
    // A rule for another fact never matches a refusal.
    client
        .upsert_auto_rule(admin(rule(
            "minobr-bus",
            "41-minobr",
            1,
            "education.transport.school-bus",
            &[],
            "41-uo-elizovo",
        )))
        .await
        .unwrap();

    let listed = client
        .list_auto_rules(req(
            pb::ListAutoRulesRequest { organization_id: "41-minobr".into() },
            "41-minobr",
            &[Role::Coordinator],
        ))
        .await
        .unwrap();
    let order: Vec<String> = listed.into_inner().rules.into_iter().map(|r| r.id).collect();
    assert_eq!(order, ["minobr-bus", "minobr-elizovo", "minobr-city"], "in the order they are tried");

    // The ministry's own coordinator reads which of its rules decided, and why.
    let coordinator = |message: pb::ResolveRequest| req(message, "41-minobr", &[Role::Coordinator]);
    let text = "Ребёнку отказали в приёме в школу в ЕЛИЗОВО";
    let resolution = client.resolve(coordinator(resolve_request("41", REFUSAL, "", text))).await.unwrap().into_inner();
    assert_eq!(resolution.organization.clone().unwrap().id, "41-uo-elizovo", "{}", resolution.explanation);
    assert!(resolution.delegated_by_auto_rule);
    assert_eq!(resolution.auto_rule_id, "minobr-elizovo");
    let step = resolution.steps.iter().find(|s| s.rule == "auto-rule").expect("the rule's step");
    assert_eq!(
        step.reason,
        "Авто-правило [minobr-elizovo] организации «Минобразования Камчатского края» (приоритет 10, условие: факт \
         «Отказ в приёме в общеобразовательную организацию» и ключевые слова «Елизов») передаёт обращение в \
         «Управление образования Елизовского района»"
    );
    // An applicant reads where the appeal goes, and that a rule of the ministry sent it there:
    // not the rule, its conditions or its executor.
    let seen = client.resolve(applicant(resolve_request("41", REFUSAL, "", text))).await.unwrap().into_inner();
    assert_eq!(seen.organization, resolution.organization);
    assert_eq!((seen.period_days, seen.fast_track), (resolution.period_days, resolution.fast_track));
    assert!(seen.delegated_by_auto_rule);
    assert_eq!((seen.auto_rule_id.as_str(), seen.target_executor_id.as_str()), ("", ""));
    let step = seen.steps.iter().find(|s| s.rule == "auto-rule").expect("the delegation's step");
    assert_eq!(
        step.reason,
        "По авто-правилу организации «Минобразования Камчатского края» обращение передано в «Управление образования \
         Елизовского района»"
    );
    assert!(
        !seen.explanation.contains("minobr-elizovo") && !seen.explanation.contains("«Елизов»"),
        "{}",
        seen.explanation
    );

    let resolution = client
        .resolve(coordinator(resolve_request("41", REFUSAL, "", "Отказали в приёме")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolution.organization.unwrap().id, "41-uo-petropavlovsk");
    assert_eq!(resolution.auto_rule_id, "minobr-city");
    let seen =
        client.resolve(applicant(resolve_request("41", REFUSAL, "", "Отказали в приёме"))).await.unwrap().into_inner();
    assert!(seen.auto_rule_id.is_empty());

    // Deleting the catch-all leaves unmatched refusals with the ministry itself.
    client.delete_auto_rule(admin_delete("minobr-city")).await.unwrap();
    let resolution =
        client.resolve(applicant(resolve_request("41", REFUSAL, "", "Отказали в приёме"))).await.unwrap().into_inner();
    assert_eq!(resolution.organization.unwrap().id, "41-minobr");
    assert!(!resolution.delegated_by_auto_rule);
    assert!(resolution.auto_rule_id.is_empty());

    // A rule keeping the message in the organization names an executor.
    let mut to_executor = rule("center-exec", "41-kcioko", 1, E_DIARY, &["пароль"], "");
    to_executor.target_executor_id = "executor-17".into();
    client.upsert_auto_rule(req(to_executor, "41-kcioko", &[Role::OrgAdmin])).await.unwrap();
    let center = |message: pb::ResolveRequest| req(message, "41-kcioko", &[Role::Coordinator]);
    let resolution =
        client.resolve(center(resolve_request("41", E_DIARY, "", "Сбросьте ПАРОЛЬ"))).await.unwrap().into_inner();
    assert_eq!(resolution.organization.unwrap().id, "41-kcioko");
    assert!(resolution.delegated_by_auto_rule);
    assert_eq!(
        (resolution.auto_rule_id.as_str(), resolution.target_executor_id.as_str()),
        ("center-exec", "executor-17")
    );
    assert!(resolution.explanation.contains("исполнитель [executor-17]"), "{}", resolution.explanation);
    // The platform's operators read every organization's rules; the ministry above does not.
    let operator = req(resolve_request("41", E_DIARY, "", "Сбросьте ПАРОЛЬ"), "", &[Role::Operator]);
    assert_eq!(client.resolve(operator).await.unwrap().into_inner().target_executor_id, "executor-17");
    for caller in [
        applicant(resolve_request("41", E_DIARY, "", "Сбросьте ПАРОЛЬ")),
        coordinator(resolve_request("41", E_DIARY, "", "Сбросьте ПАРОЛЬ")),
    ] {
        let seen = client.resolve(caller).await.unwrap().into_inner();
        assert!(seen.delegated_by_auto_rule);
        assert_eq!((seen.auto_rule_id.as_str(), seen.target_executor_id.as_str()), ("", ""));
        assert!(!seen.explanation.contains("executor-17"), "{}", seen.explanation);
    }
    app.stop().await;
}

fn admin_delete(id: &str) -> tonic::Request<pb::DeleteAutoRuleRequest> {
    req(pb::DeleteAutoRuleRequest { id: id.into() }, "41-minobr", &[Role::OrgAdmin])
}

#[tokio::test]
async fn auto_rules_belong_to_their_organization_and_delegate_only_downwards() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    let good = rule("r1", "41-minobr", 1, "", &[], "41-uo-elizovo");

    // Another organization's admin, and staff without the admin role, are refused.
    let status = client.upsert_auto_rule(req(good.clone(), "41-kcioko", &[Role::OrgAdmin])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = client.upsert_auto_rule(req(good.clone(), "41-minobr", &[Role::Coordinator])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    client.upsert_auto_rule(system(good.clone())).await.unwrap();
    let status = client
        .delete_auto_rule(req(pb::DeleteAutoRuleRequest { id: "r1".into() }, "41-kcioko", &[Role::OrgAdmin]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    // Nor can another organization take the rule over by its id.
    let mut hijack = good.clone();
    hijack.organization_id = "41-kcioko".into();
    hijack.target_organization_id = String::new();
    hijack.target_executor_id = "x".into();
    let status = client.upsert_auto_rule(req(hijack, "41-kcioko", &[Role::OrgAdmin])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    let admin = |message: pb::AutoRule| req(message, "41-minobr", &[Role::OrgAdmin]);
    // Upwards, sideways, into another region: refused.
    for target in ["cabinet-41", "16-minobr", "rosobrnadzor", "nope"] {
        let status = client.upsert_auto_rule(admin(rule("r2", "41-minobr", 1, "", &[], target))).await.unwrap_err();
        assert_invalid(&status, "target_organization_id");
    }
    let status = client.upsert_auto_rule(admin(rule("r2", "41-minobr", 1, "", &[], ""))).await.unwrap_err();
    assert_invalid(&status, "target_executor_id");
    let status =
        client.upsert_auto_rule(admin(rule("r2", "41-minobr", 1, "nope", &[], "41-uo-elizovo"))).await.unwrap_err();
    assert_invalid(&status, "fact_id");
    let status =
        client.upsert_auto_rule(admin(rule("r2", "41-minobr", -1, "", &[], "41-uo-elizovo"))).await.unwrap_err();
    assert_invalid(&status, "priority");
    // Deep subordinates are fine.
    client.upsert_auto_rule(admin(rule("r3", "41-minobr", 2, "", &["школа"], "41-school-pk-1"))).await.unwrap();

    let status = client.delete_auto_rule(admin_delete("nope")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    client.delete_auto_rule(admin_delete("r1")).await.unwrap();
    let status =
        client.list_auto_rules(system(pb::ListAutoRulesRequest { organization_id: "nope".into() })).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn auto_rules_are_read_by_their_organization_operators_and_systems_only() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    let rule = rule("r1", "41-minobr", 1, "", &["Елизово"], "41-uo-elizovo");
    client.upsert_auto_rule(req(rule, "41-minobr", &[Role::OrgAdmin])).await.unwrap();
    let list = |organization_id: &str| pb::ListAutoRulesRequest { organization_id: organization_id.into() };

    // Its own staff, the platform's operators and systems read them.
    for request in [
        req(list("41-minobr"), "41-minobr", &[Role::Executor]),
        req(list("41-minobr"), "", &[Role::Operator]),
        system(list("41-minobr")),
    ] {
        let rules = client.list_auto_rules(request).await.unwrap().into_inner().rules;
        assert_eq!(rules.len(), 1);
    }
    // Another organization's staff, even its admin, and applicants are denied, before the
    // request is looked at (an unknown or empty organization says nothing more).
    for request in [
        req(list("41-minobr"), "41-kcioko", &[Role::OrgAdmin, Role::Coordinator]),
        applicant(list("41-minobr")),
        req(list("nope"), "41-kcioko", &[Role::Coordinator]),
        req(list(""), "41-kcioko", &[Role::Coordinator]),
    ] {
        let status = client.list_auto_rules(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    }
    app.stop().await;
}

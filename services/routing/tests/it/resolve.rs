//! The dry-run `Resolve` over the seed data: the checks of seeds 001 and 003.

use pos_proto::v1 as pb;
use pos_routing::resolve::quoted;

use crate::helpers::{applicant, assert_invalid, routing_client, spawn_app};

const SPO_INCORRECT: &str = "edu-records.documents.spo-diploma-incorrect";
const SPO_MISSING: &str = "edu-records.documents.spo-diploma-missing";
const OTHER: &str = "edu-records.documents.other";
const CERTIFICATE_INCORRECT: &str = "edu-records.documents.school-certificate-incorrect";
const CERTIFICATE_MISSING: &str = "edu-records.documents.school-certificate-missing";
const E_DIARY: &str = "education.e-diary.access";

fn resolve_request(region: &str, fact: &str, picked: &str) -> pb::ResolveRequest {
    pb::ResolveRequest {
        region_code: region.into(),
        fact_id: fact.into(),
        subcategory_id: String::new(),
        picked_organization_id: picked.into(),
        text: String::new(),
    }
}

fn org_id(resolution: &pb::Resolution) -> &str {
    resolution.organization.as_ref().map(|o| o.id.as_str()).unwrap_or_default()
}

#[tokio::test]
async fn seed_001_facts_go_to_the_picked_college_the_picked_school_or_rosobrnadzor() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    let cases = [
        ("41", SPO_INCORRECT, "41-college-polytech", "41-college-polytech"),
        ("41", SPO_MISSING, "41-college-pedagogical", "41-college-pedagogical"),
        ("41", OTHER, "41-school-pk-1", "rosobrnadzor"),
        ("41", CERTIFICATE_INCORRECT, "41-school-pk-1", "41-school-pk-1"),
        ("41", CERTIFICATE_MISSING, "41-school-elizovo-2", "41-school-elizovo-2"),
        ("16", SPO_MISSING, "16-college-kitis", "16-college-kitis"),
        ("16", CERTIFICATE_MISSING, "16-school-kazan-131", "16-school-kazan-131"),
        ("16", OTHER, "", "rosobrnadzor"),
    ];
    for (region, fact, picked, expected) in cases {
        let resolution = client.resolve(applicant(resolve_request(region, fact, picked))).await.unwrap().into_inner();
        assert_eq!(org_id(&resolution), expected, "{fact} in {region}: {}", resolution.explanation);
        assert_eq!(resolution.fact_id, fact);
        assert_eq!((resolution.period_days, resolution.working_days), (2, false), "seed 001: 2 calendar days");
        assert!(!resolution.fast_track);
        assert!(!resolution.delegated_by_auto_rule);
        assert_eq!(resolution.steps.first().map(|s| s.rule.as_str()), Some("addressee rule"));
        // People read it: the addressee by its name, not its id.
        let name = resolution.organization.as_ref().map(|o| o.short_name.clone()).unwrap_or_default();
        assert!(
            resolution.explanation.contains(&format!("Обращение направлено в {}.", quoted(&name))),
            "{}",
            resolution.explanation
        );
        assert!(!resolution.explanation.contains(expected), "{}", resolution.explanation);
    }
    let rosobrnadzor = client.resolve(applicant(resolve_request("41", OTHER, ""))).await.unwrap().into_inner();
    let organization = rosobrnadzor.organization.unwrap();
    assert_eq!(organization.short_name, "Рособрнадзор");
    assert_eq!(organization.r#type, pb::OrganizationType::FederalAgency as i32);
    assert_eq!(organization.region_code, "");
    assert_eq!(
        rosobrnadzor.steps.iter().map(|s| s.reason.as_str()).collect::<Vec<_>>(),
        [
            "Адресат факта «Другое» — федеральный орган «Рособрнадзор»",
            // Without an SLA service beside it, routing shows the classifier's period and says so.
            "Срок — 2 календарных дня, установлен для факта «Другое» (предложение классификатора: сервис сроков не \
             ответил, срок определит политика сроков)",
        ]
    );
    let college = client
        .resolve(applicant(resolve_request("41", SPO_MISSING, "41-college-polytech")))
        .await
        .unwrap()
        .into_inner();
    assert!(
        college.explanation.starts_with(
            "Адресат факта «Диплом о среднем профессиональном образовании не отображается в личном кабинете на портале \
             Госуслуг» — выбранная заявителем организация типа «колледж»: КГПОАУ «Камчатский политехнический техникум»"
        ),
        "{}",
        college.explanation
    );
    app.stop().await;
}

#[tokio::test]
async fn a_picked_school_that_is_not_connected_goes_to_its_nearest_connected_ancestor() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    // One level up: the school's municipal department is connected.
    let resolution = client
        .resolve(applicant(resolve_request("41", CERTIFICATE_MISSING, "41-school-pk-33")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(org_id(&resolution), "41-uo-petropavlovsk", "{}", resolution.explanation);
    let rules: Vec<&str> = resolution.steps.iter().map(|s| s.rule.as_str()).collect();
    assert_eq!(rules, ["addressee rule", "not connected", "period"]);
    assert_eq!(resolution.steps[0].organization.as_ref().unwrap().id, "41-school-pk-33");
    assert!(
        resolution.explanation.contains(
            "Организация МАОУ «Средняя школа № 33» не подключена к платформе, обращение передано вышестоящей \
             организации «Управление образования ПКГО»"
        ),
        "{}",
        resolution.explanation
    );

    // Two levels up: the school and its department are not connected, the ministry is.
    let resolution = client
        .resolve(applicant(resolve_request("41", CERTIFICATE_INCORRECT, "41-school-klyuchi-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(org_id(&resolution), "41-minobr", "{}", resolution.explanation);
    assert_eq!(resolution.steps.iter().filter(|s| s.rule == "not connected").count(), 2);

    // The same in Tatarstan, and a college whose parent is the ministry.
    let resolution = client
        .resolve(applicant(resolve_request("16", CERTIFICATE_MISSING, "16-school-vysokaya-gora-2")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(org_id(&resolution), "16-minobr", "{}", resolution.explanation);
    let resolution = client
        .resolve(applicant(resolve_request("16", SPO_MISSING, "16-college-chelny-polytech")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(org_id(&resolution), "16-minobr");
    app.stop().await;
}

#[tokio::test]
async fn the_e_diary_goes_to_the_regional_center_on_the_fast_track() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    let mut request = resolve_request("41", E_DIARY, "");
    request.subcategory_id = "education.e-diary".into();
    let resolution = client.resolve(applicant(request)).await.unwrap().into_inner();
    let organization = resolution.organization.clone().unwrap();
    assert_eq!(organization.id, "41-kcioko");
    assert_eq!(organization.short_name, "КГАУ \"КАМЧАТСКИЙ ЦЕНТР ИНФОРМАТИЗАЦИИ И ОЦЕНКИ КАЧЕСТВА ОБРАЗОВАНИЯ\"");
    assert_eq!(organization.r#type, pb::OrganizationType::RegionalCenter as i32);
    assert!(resolution.fast_track);
    assert_eq!((resolution.period_days, resolution.working_days), (10, false), "the standard fast-track period");
    assert_eq!(resolution.time_zone, "Asia/Kamchatka");
    let period = resolution.steps.iter().find(|s| s.rule == "period").map(|s| s.reason.as_str());
    assert_eq!(
        period,
        Some(
            "Срок — 10 календарных дней: факт «Проблемы с доступом к электронному дневнику» в регионе «Камчатский \
             край» относится к фаст-треку (предложение классификатора: сервис сроков не ответил, срок определит \
             политика сроков)"
        )
    );

    let full = client.get_organization(applicant(pb::GetOrganizationRequest { id: "41-kcioko".into() })).await.unwrap();
    let full = full.into_inner();
    assert_eq!(full.address, "г Петропавловск-Камчатский, ул Кавказская, д 40");
    assert_eq!(full.email, "info@kcioko.ru");
    assert_eq!(full.parent_id, "41-minobr");

    let resolution = client.resolve(applicant(resolve_request("16", E_DIARY, ""))).await.unwrap().into_inner();
    assert_eq!(org_id(&resolution), "16-rcmko");
    assert_eq!(resolution.time_zone, "Europe/Moscow");
    assert!(resolution.fast_track);

    // Standard facts: 30 days, and fast-track only where the region says so.
    let meals = "education.meals.quality";
    let resolution =
        client.resolve(applicant(resolve_request("41", meals, "41-school-pk-1"))).await.unwrap().into_inner();
    assert_eq!((resolution.period_days, resolution.fast_track), (10, true));
    let resolution =
        client.resolve(applicant(resolve_request("16", meals, "16-school-kazan-2"))).await.unwrap().into_inner();
    assert_eq!((resolution.period_days, resolution.fast_track), (30, false));
    app.stop().await;
}

#[tokio::test]
async fn requests_the_classifier_cannot_route_are_invalid_with_the_field_named() {
    let app = spawn_app().await;
    let mut client = routing_client(&app);
    let status = client.resolve(applicant(resolve_request("41", "no-such-fact", ""))).await.unwrap_err();
    assert_invalid(&status, "fact_id");
    let status = client.resolve(applicant(resolve_request("41", "", ""))).await.unwrap_err();
    assert_invalid(&status, "fact_id");
    let status = client.resolve(applicant(resolve_request("99", E_DIARY, ""))).await.unwrap_err();
    assert_invalid(&status, "region_code");
    // A college picked for a school fact, a school for a college fact, nothing, or a stranger.
    for (fact, picked) in [
        (CERTIFICATE_MISSING, "41-college-polytech"),
        (SPO_INCORRECT, "41-school-pk-1"),
        (SPO_INCORRECT, ""),
        (SPO_INCORRECT, "no-such-org"),
    ] {
        let status = client.resolve(applicant(resolve_request("41", fact, picked))).await.unwrap_err();
        assert_invalid(&status, "picked_organization_id");
    }
    let mut request = resolve_request("41", E_DIARY, "");
    request.subcategory_id = "edu-records.documents".into();
    assert_invalid(&client.resolve(applicant(request)).await.unwrap_err(), "subcategory_id");

    let status = client.resolve(tonic::Request::new(resolve_request("41", E_DIARY, ""))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    app.stop().await;
}

//! SubmitAppeal over gRPC: registration, idempotency, validation, and routing being down.

use futures::StreamExt;
use pos_intake::config::IntakeConfig;
use pos_platform::QueueSpec;
use pos_platform::error::violated_fields;
use pos_proto::v1::GetAppealRequest;
use pos_proto::v1::events::AppealReceived;
use prost::Name;
use sqlx::Row;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn a_submission_is_registered_with_a_number_and_announced_masked() {
    let app = TestApp::spawn().await;
    // A queue of our own sees what the outbox relay publishes.
    let spec = QueueSpec::new("test.appeal-received", &["appeal.received.*"]);
    let mut received = app.server.bus().consume(&spec).await.unwrap();
    let mut client = app.client.clone();
    let mut request = submission("req-1");
    request.text = "Мой СНИЛС 123-345-678 90, паспорт 1234 123456. Аттестат не виден.".into();
    let before = chrono::Utc::now();
    let answer = client.submit_appeal(call(request.clone(), &applicant_token())).await.unwrap().into_inner();
    assert!(answer.number >= 250_000_001);
    let registered_at = pos_proto::time::from_proto(answer.registered_at.as_ref().unwrap()).unwrap();
    assert!(registered_at >= before - chrono::Duration::milliseconds(1) && registered_at <= chrono::Utc::now());

    // In the outbox, in the same transaction: the event with the masked text.
    let row = sqlx::query("SELECT routing_key, type_name, payload FROM outbox")
        .fetch_one(app.server.db.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("routing_key"), "appeal.received.41");
    assert_eq!(row.get::<String, _>("type_name"), AppealReceived::full_name());
    let event = <AppealReceived as prost::Message>::decode(row.get::<Vec<u8>, _>("payload").as_slice()).unwrap();
    assert_eq!(event.public_text, "Мой СНИЛС ***-***-*** **, паспорт **** ******. Аттестат не виден.");
    assert_eq!((event.appeal_id.as_str(), event.number), (answer.appeal_id.as_str(), answer.number));
    assert_eq!(event.fact_id, "school-certificate-missing");
    assert_eq!(event.picked_organization_id, SCHOOL);
    assert!(event.public);
    // What people read downstream: the classifier's names, and the zone of the applicant's region.
    assert_eq!(
        (event.category_name.as_str(), event.subcategory_name.as_str(), event.fact_name.as_str()),
        ("Сведения об образовании на портале", "Проблемы с документами об образовании", "school-certificate-missing")
    );
    assert_eq!(event.applicant_time_zone, "Asia/Kamchatka");

    // The relay publishes it.
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), received.next()).await.unwrap().unwrap();
    let published: AppealReceived = delivery.envelope.decode().unwrap();
    assert_eq!(published, event);
    assert_eq!(delivery.envelope.appeal_id(), Some(answer.appeal_id.as_str()));

    // GetAppeal shows the registration, masked.
    let appeal = client
        .get_appeal(call(GetAppealRequest { appeal_id: answer.appeal_id.clone() }, &applicant_token()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(appeal.number, answer.number);
    assert_eq!(appeal.registered_at, answer.registered_at);
    assert_eq!(appeal.status, "registered");
    assert_eq!(appeal.public_text, event.public_text);
    assert_eq!(appeal.portal_number, "EPGU-777");
    assert!(appeal.routing.is_none());
    app.stop().await;
}

#[tokio::test]
async fn an_applicant_submits_for_their_own_account_only() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let mut request = submission("req-1");
    request.applicant.as_mut().unwrap().account_id = "somebody-else".into();
    let answer = client.submit_appeal(call(request, &applicant_token())).await.unwrap().into_inner();
    let appeal = client
        .get_appeal(call(GetAppealRequest { appeal_id: answer.appeal_id }, &applicant_token()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(appeal.applicant.unwrap().account_id, APPLICANT);

    // An operator registers on behalf of the account named in the request.
    let mut request = submission("req-1");
    request.applicant.as_mut().unwrap().account_id = OTHER_APPLICANT.into();
    let operator = pos_platform::testing::token("operator-1", "", REGION, &[pos_platform::auth::Role::Operator]);
    let answer = client.submit_appeal(call(request, &operator)).await.unwrap().into_inner();
    let appeal = client
        .get_appeal(call(GetAppealRequest { appeal_id: answer.appeal_id }, &other_applicant_token()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(appeal.applicant.unwrap().account_id, OTHER_APPLICANT);
    app.stop().await;
}

#[tokio::test]
async fn ten_concurrent_duplicates_get_one_appeal_and_the_same_answer() {
    let app = TestApp::spawn().await;
    let request = submission("same-request");
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let mut client = app.client.clone();
            let request = request.clone();
            tokio::spawn(async move { client.submit_appeal(call(request, &applicant_token())).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in calls {
        answers.push(task.await.unwrap().expect("every duplicate succeeds").into_inner());
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(app.count("appeals").await, 1);
    assert_eq!(app.count("outbox").await, 1);
    assert_eq!(app.count("idempotency_keys").await, 1);

    // And once more later: still the first answer.
    let mut client = app.client.clone();
    let again = client.submit_appeal(call(request.clone(), &applicant_token())).await.unwrap().into_inner();
    assert_eq!(again, answers[0]);
    app.stop().await;
}

#[tokio::test]
async fn a_request_id_reused_for_another_appeal_is_refused() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    client.submit_appeal(call(submission("req-1"), &applicant_token())).await.unwrap();
    let mut different = submission("req-1");
    different.text = "Совсем другое обращение".into();
    let status = client.submit_appeal(call(different, &applicant_token())).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(
        status.message().contains("req-1") && status.message().contains("different appeal"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("Совсем"), "the text never appears in errors");
    // Another applicant may use the same request id for their own appeal.
    client.submit_appeal(call(submission("req-1"), &other_applicant_token())).await.unwrap();
    assert_eq!(app.count("appeals").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn each_validation_error_names_its_field() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    type Edit = fn(&mut pos_proto::v1::SubmitAppealRequest);
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("unknown fact", |r| r.fact_id = "no-such-fact".into(), "fact_id"),
        ("unknown region", |r| r.region_code = "99".into(), "region_code"),
        ("fact of another subcategory", |r| r.subcategory_id = "e-diary".into(), "fact_id"),
        ("empty text", |r| r.text = "  \n ".into(), "text"),
        ("oversized text", |r| r.text = "а".repeat(10_001), "text"),
        (
            "picked organization of the wrong type",
            |r| r.picked_organization_id = COLLEGE.into(),
            "picked_organization_id",
        ),
        ("unknown picked organization", |r| r.picked_organization_id = "nowhere".into(), "picked_organization_id"),
        ("unknown attachment", |r| r.attachment_ids = vec![uuid::Uuid::now_v7().to_string()], "attachment_ids[0]"),
        ("malformed attachment id", |r| r.attachment_ids = vec!["../../etc".into()], "attachment_ids[0]"),
        ("no source", |r| r.source = 0, "source"),
        ("no applicant name", |r| r.applicant.as_mut().unwrap().full_name.clear(), "applicant.full_name"),
        ("empty request id", |r| r.request_id.clear(), "request_id"),
    ];
    for (index, (case, edit, field)) in cases.into_iter().enumerate() {
        let mut request = submission(&format!("bad-{index}"));
        edit(&mut request);
        let status = client.submit_appeal(call(request, &applicant_token())).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        assert_eq!(violated_fields(&status), vec![field.to_owned()], "{case}: {}", status.message());
    }
    // Several problems at once are all named.
    let mut request = submission("bad-many");
    request.fact_id = "no-such-fact".into();
    request.region_code = "99".into();
    request.text.clear();
    let status = client.submit_appeal(call(request, &applicant_token())).await.unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["fact_id", "region_code", "text"]);
    assert_eq!(app.count("appeals").await, 0);
    assert_eq!(app.count("idempotency_keys").await, 0, "a refused request does not use up its id");
    app.stop().await;
}

#[tokio::test]
async fn routing_down_never_refuses_a_valid_appeal() {
    // The snapshot was loaded, then routing went away: organizations cannot be checked.
    let routing = SwitchableRouting::new(false, true);
    let app = TestApp::spawn_with(routing.clone(), IntakeConfig::default()).await;
    routing.snapshot_down.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut client = app.client.clone();
    let mut request = submission("req-1");
    // Not checkable now; routing decides later and explains.
    request.picked_organization_id = "school-not-in-cache".into();
    let answer = client.submit_appeal(call(request, &applicant_token())).await.unwrap().into_inner();
    assert!(answer.number >= 250_000_001);
    // What the snapshot can check is still checked.
    let mut request = submission("req-2");
    request.fact_id = "no-such-fact".into();
    let status = client.submit_appeal(call(request, &applicant_token())).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["fact_id"]);
    app.stop().await;
}

#[tokio::test]
async fn without_any_classifier_submissions_are_unavailable_not_guessed() {
    let routing = SwitchableRouting::new(true, true);
    let app =
        TestApp::spawn_with(routing.clone(), IntakeConfig { classifier_refresh_secs: 1, ..IntakeConfig::default() })
            .await;
    let mut client = app.client.clone();
    let status = client.submit_appeal(call(submission("req-1"), &applicant_token())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(app.count("appeals").await, 0);

    // Routing comes back: the background refresh loads the snapshot and the same request works.
    routing.snapshot_down.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut answer = None;
    for _ in 0..100 {
        match client.submit_appeal(call(submission("req-1"), &applicant_token())).await {
            Ok(response) => {
                answer = Some(response.into_inner());
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    assert!(answer.is_some(), "the snapshot was loaded once routing answered");
    app.stop().await;
}

#[tokio::test]
async fn callers_are_authenticated_and_need_a_submitting_role() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let forged = pos_platform::auth::Authenticator::from_config(&pos_platform::config::AuthConfig {
        hs256_secret: Some(pos_platform::config::Secret::new("not-the-secret")),
        ..pos_platform::config::AuthConfig::default()
    })
    .unwrap()
    .mint(APPLICANT, "", REGION, &[pos_platform::auth::Role::Applicant], std::time::Duration::from_secs(60))
    .unwrap();
    let status = client.submit_appeal(call(submission("r"), &forged)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client.submit_appeal(tonic::Request::new(submission("r"))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client.submit_appeal(call(submission("r"), &staff_token(SCHOOL))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(app.count("appeals").await, 0);
    // A system (an external integration) may submit.
    client.submit_appeal(call(submission("r"), &system_token())).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_fact_added_in_routing_is_accepted_at_once() {
    let routing = SwitchableRouting::new(false, false);
    let app = TestApp::spawn_with(routing.clone(), IntakeConfig::default()).await;
    {
        let mut data = routing.data.lock().unwrap();
        let mut fact = data.classifier.facts[2].clone();
        fact.id = "new-fact".into();
        data.classifier.facts.push(fact);
        data.classifier.version = 2;
    }
    // The snapshot is older than the fact: an unknown fact makes intake look again first.
    let mut request = submission("req-1");
    request.fact_id = "new-fact".into();
    let mut client = app.client.clone();
    client.submit_appeal(call(request, &applicant_token())).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn an_empty_classifier_means_routing_is_not_seeded_yet() {
    let routing = SwitchableRouting::new(false, false);
    let full = routing.data.lock().unwrap().clone();
    routing.data.lock().unwrap().classifier.facts.clear();
    let app = TestApp::spawn_with(routing.clone(), IntakeConfig::default()).await;
    let mut client = app.client.clone();
    let status = client.submit_appeal(call(submission("req-1"), &applicant_token())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // Seeded: the refresher, retrying soon while the classifier is empty, picks it up.
    *routing.data.lock().unwrap() = full;
    let mut registered = false;
    for _ in 0..50 {
        if client.submit_appeal(call(submission("req-1"), &applicant_token())).await.is_ok() {
            registered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(registered);
    app.stop().await;
}

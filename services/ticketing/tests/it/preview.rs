//! PreviewAnswerTemplate on both databases: a body filled with a ticket's values is the text an
//! answer prepared from the same template gets; without a ticket, samples stand for each
//! placeholder; an unknown placeholder is a field error for `body` that names it; a ticket of
//! another organization and a role that may not write templates are refused; nothing is saved.

use pos_platform::auth::Role;
use pos_platform::testing::{TestDb, TestOptions, TestServer};
use pos_proto::v1 as pb;
use pos_proto::v1::events::AnswerType;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use tonic::Code;

use crate::helpers::{as_, current, deliver, routed};

const SCHOOL: &str = "school-1";
const OTHER_SCHOOL: &str = "school-2";
const BODY: &str = "Уважаемый(ая) {{applicant_name}}! По сообщению № {{message_number}} от {{created_date}} \
                    ({{category}}) сообщаем. {{user_name}}, {{organization_name}}. № {{ message_number }}";

fn head<T>(m: T) -> tonic::Request<T> {
    as_(m, "head-1", SCHOOL, &[Role::Head])
}

/// The same person acting as the coordinator, who prepares answers.
fn coordinator<T>(m: T) -> tonic::Request<T> {
    as_(m, "head-1", SCHOOL, &[Role::Coordinator])
}

fn preview(body: &str, ticket_id: &str) -> pb::PreviewAnswerTemplateRequest {
    pb::PreviewAnswerTemplateRequest { organization_id: String::new(), body: body.into(), ticket_id: ticket_id.into() }
}

async fn previews_fill_placeholders_as_answers_do(db: TestDb) {
    let app = TestServer::spawn(
        "ticketing",
        &pos_ticketing::MIGRATIONS,
        TestOptions { db, ..TestOptions::default() },
        pos_ticketing::component,
    )
    .await;
    let mut c = TicketingServiceClient::new(app.channel());
    let head_member = pb::StaffMember {
        subject: "head-1".into(),
        full_name: "Кузнецова Анна".into(),
        roles: vec!["head".into()],
        active: true,
        ..Default::default()
    };
    c.upsert_staff(as_(head_member, "admin-1", SCHOOL, &[Role::OrgAdmin])).await.expect("head in the directory");
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    deliver(&app.db, &routed("a-2", OTHER_SCHOOL, "citizen-2")).await;
    let ticket = current(&app.db, "a-1").await;
    let foreign = current(&app.db, "a-2").await;

    // Without a ticket: samples that say what each placeholder is, the caller's own name.
    let sample = c.preview_answer_template(head(preview(BODY, ""))).await.expect("previewed").into_inner();
    let today = chrono::Utc::now().format("%d.%m.%Y").to_string();
    assert_eq!(
        sample.text,
        format!(
            "Уважаемый(ая) Иванов Иван Иванович! По сообщению № 250000001 от {today} (Образование) сообщаем. \
             Кузнецова Анна, МБОУ «Средняя общеобразовательная школа № 1». № 250000001"
        )
    );
    assert_eq!(
        sample.placeholders,
        ["applicant_name", "message_number", "created_date", "category", "user_name", "organization_name"]
    );

    // With a ticket: its own values, the same the answer prepared from the template gets.
    let filled = c.preview_answer_template(head(preview(BODY, &ticket.id))).await.expect("previewed").into_inner();
    assert!(filled.text.starts_with("Уважаемый(ая) Иван Иванов! По сообщению № 1501 от "), "{}", filled.text);
    let template = pb::AnswerTemplate { name: "ответ".into(), body: BODY.into(), ..Default::default() };
    let saved = c.save_answer_template(head(template)).await.expect("saved").into_inner();
    let taken = c
        .take_in_work(coordinator(pb::TakeInWorkRequest { ticket_id: ticket.id.clone(), expected_version: 1 }))
        .await
        .expect("taken")
        .into_inner();
    let prepare = pb::PrepareAnswerRequest {
        ticket_id: ticket.id.clone(),
        expected_version: taken.version,
        answer: Some(pb::Answer { r#type: AnswerType::Resolved as i32, ..Default::default() }),
        template_id: saved.id,
    };
    let prepared = c.prepare_answer(coordinator(prepare)).await.expect("prepared").into_inner();
    assert_eq!(prepared.answer.expect("an answer").text, filled.text, "the preview is the answer");

    // An unknown placeholder: a field error for `body` that names it.
    let error = c
        .preview_answer_template(head(preview("Здравствуйте, {{applicant}}!", "")))
        .await
        .expect_err("unknown placeholder");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(pos_platform::error::violated_fields(&error), ["body"]);
    assert!(error.message().contains("{{applicant}}"), "{}", error.message());

    // Another organization's ticket is refused; so is a role that may not write templates.
    let error = c.preview_answer_template(head(preview(BODY, &foreign.id))).await.expect_err("other school's ticket");
    assert_eq!(error.code(), Code::PermissionDenied);
    let executor = as_(preview(BODY, ""), "exec-1", SCHOOL, &[Role::Executor]);
    assert_eq!(c.preview_answer_template(executor).await.expect_err("executor").code(), Code::PermissionDenied);
    let missing = c.preview_answer_template(head(preview(BODY, "no-such-ticket"))).await.expect_err("no ticket");
    assert_eq!(missing.code(), Code::NotFound);

    // Previews save nothing: only the one template saved above is listed.
    let listed = c
        .list_answer_templates(head(pb::ListAnswerTemplatesRequest { organization_id: String::new() }))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.templates.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn previews_fill_placeholders_as_answers_do_on_postgres() {
    previews_fill_placeholders_as_answers_do(TestDb::Postgres).await;
}

#[tokio::test]
async fn previews_fill_placeholders_as_answers_do_on_sqlite() {
    previews_fill_placeholders_as_answers_do(TestDb::Sqlite).await;
}

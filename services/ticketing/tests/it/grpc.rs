//! The cabinet over gRPC with a token per role: one appeal's whole life, isolation between
//! organizations and applicants, refused tokens, and racing approvals.

use pos_platform::auth::Role;
use pos_proto::v1 as pb;
use pos_proto::v1::events::AnswerType;
use tonic::Code;

use crate::helpers::{App, as_, current, deliver, outbox_count, routed, spawn_app};

const SCHOOL: &str = "school-1";

fn coordinator<T>(m: T) -> tonic::Request<T> {
    as_(m, "coord-1", SCHOOL, &[Role::Coordinator])
}
fn executor<T>(m: T) -> tonic::Request<T> {
    as_(m, "exec-1", SCHOOL, &[Role::Executor])
}
fn head<T>(m: T) -> tonic::Request<T> {
    as_(m, "head-1", SCHOOL, &[Role::Head])
}
fn applicant<T>(m: T) -> tonic::Request<T> {
    as_(m, "citizen-1", "", &[Role::Applicant])
}
fn admin<T>(m: T) -> tonic::Request<T> {
    as_(m, "admin-1", SCHOOL, &[Role::OrgAdmin])
}

fn answer(text: &str) -> pb::Answer {
    pb::Answer { r#type: AnswerType::Resolved as i32, text: text.into(), ..Default::default() }
}

async fn staffed(app: &App) {
    let mut client = app.client();
    for subject in ["exec-1", "exec-2"] {
        let member = pb::StaffMember {
            subject: subject.into(),
            full_name: format!("Executor {subject}"),
            roles: vec!["executor".into()],
            active: true,
            ..Default::default()
        };
        client.upsert_staff(admin(member)).await.expect("staff saved");
    }
}

#[tokio::test]
async fn one_appeal_s_whole_life_through_every_role() {
    let app = spawn_app().await;
    staffed(&app).await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let id = current(&app.db, "a-1").await.id;
    let mut c = app.client();
    let v = |t: &pb::Ticket| t.version;

    let t = c
        .get_ticket(applicant(pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::AppealId("a-1".into())) }))
        .await
        .expect("the applicant reads their appeal")
        .into_inner();
    let t = c
        .assign_executor(coordinator(pb::AssignExecutorRequest {
            ticket_id: id.clone(),
            expected_version: v(&t),
            executor_id: "exec-1".into(),
            execution_due: Some(prost_types::Timestamp { seconds: 1_738_000_000, nanos: 0 }),
        }))
        .await
        .expect("assigned")
        .into_inner();
    assert_eq!((t.status.as_str(), t.assignee_id.as_str()), ("executor assigned", "exec-1"));
    let t = c
        .take_in_work(executor(pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: v(&t) }))
        .await
        .expect("taken")
        .into_inner();
    let prepare = |version, text: &str| pb::PrepareAnswerRequest {
        ticket_id: id.clone(),
        expected_version: version,
        answer: Some(answer(text)),
        template_id: String::new(),
    };
    let t = c.prepare_answer(executor(prepare(v(&t), "Проверим"))).await.expect("prepared").into_inner();
    let send = |version| pb::VersionRequest { ticket_id: id.clone(), expected_version: version };
    let t = c.send_for_approval(executor(send(v(&t)))).await.expect("sent").into_inner();
    assert_eq!(t.folder, pb::Folder::SentForApproval as i32);
    let by_appeal = || pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::AppealId("a-1".into())) };
    let seen = c.get_ticket(applicant(by_appeal())).await.expect("the applicant reads their appeal").into_inner();
    assert_eq!(seen.answer, None, "a draft on approval is the organization's own, not the applicant's");
    let listed = c.list_tickets(applicant(pb::ListTicketsRequest::default())).await.expect("listed").into_inner();
    assert!(listed.tickets.iter().all(|t| t.answer.is_none()), "nor does the applicant's list show it");
    let comment = |version, text: &str| pb::CommentRequest {
        ticket_id: id.clone(),
        expected_version: version,
        comment: text.into(),
        attachment_ids: Vec::new(),
    };
    let t = c.return_for_rework(head(comment(v(&t), "добавьте сроки"))).await.expect("rework").into_inner();
    let t =
        c.prepare_answer(executor(prepare(v(&t), "Починим плиту до 1 марта"))).await.expect("prepared").into_inner();
    let t = c.send_for_approval(executor(send(v(&t)))).await.expect("sent").into_inner();
    let approve = |version| pb::ApproveRequest { ticket_id: id.clone(), expected_version: version, edited: None };
    let t = c.approve(head(approve(v(&t)))).await.expect("approved").into_inner();
    assert_eq!(
        (t.folder, t.answer.as_ref().map(|a| a.text.as_str())),
        (pb::Folder::Processed as i32, Some("Починим плиту до 1 марта"))
    );
    let seen = c.get_ticket(applicant(by_appeal())).await.expect("read").into_inner();
    assert_eq!(seen.answer.map(|a| a.text), Some("Починим плиту до 1 марта".to_owned()), "the sent answer is theirs");
    let history = c.get_ticket_history(applicant(by_appeal())).await.expect("history").into_inner().entries;
    let rework = history.iter().find(|e| e.action == "returned for rework").expect("the rework step is listed");
    assert_eq!((rework.comment.as_str(), rework.actor.as_str()), ("", ""), "the head's note stays in the cabinet");
    let history = c.get_ticket_history(head(by_appeal())).await.expect("history").into_inner().entries;
    let rework = history.iter().find(|e| e.action == "returned for rework").expect("the rework step is listed");
    assert_eq!(rework.comment, "добавьте сроки", "staff read it");
    let t = c.reject_answer(applicant(comment(v(&t), "плита так и не работает"))).await.expect("rejected").into_inner();
    assert_eq!((t.folder, t.review_round), (pb::Folder::Returned as i32, 2));
    let t = c
        .take_in_work(executor(pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: v(&t) }))
        .await
        .expect("re-review")
        .into_inner();
    let t = c.prepare_answer(executor(prepare(v(&t), "Плиту заменили"))).await.expect("prepared").into_inner();
    let t = c.send_for_approval(executor(send(v(&t)))).await.expect("sent").into_inner();
    let edited = pb::ApproveRequest {
        ticket_id: id.clone(),
        expected_version: v(&t),
        edited: Some(answer("Плиту заменили 20 февраля")),
    };
    let t = c.approve(head(edited)).await.expect("edited and approved").into_inner();
    let bad = c
        .accept_answer(applicant(pb::AcceptAnswerRequest { ticket_id: id.clone(), expected_version: v(&t), rating: 6 }))
        .await;
    assert_eq!(bad.expect_err("rating 6").code(), Code::InvalidArgument);
    let t = c
        .accept_answer(applicant(pb::AcceptAnswerRequest { ticket_id: id.clone(), expected_version: v(&t), rating: 5 }))
        .await
        .expect("accepted")
        .into_inner();
    assert_eq!((t.status.as_str(), t.rating), ("accepted by applicant", 5));

    let history = c
        .get_ticket_history(coordinator(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::TicketId(id.clone())),
        }))
        .await
        .expect("history")
        .into_inner();
    let steps: Vec<(&str, &str, &str)> =
        history.entries.iter().map(|e| (e.action.as_str(), e.actor.as_str(), e.to_status.as_str())).collect();
    assert_eq!(
        steps,
        [
            ("received", "routing", "new"),
            ("executor assigned", "coord-1", "executor assigned"),
            ("taken in work", "exec-1", "in work"),
            ("answer prepared", "exec-1", "answer prepared"),
            ("sent for approval", "exec-1", "on approval"),
            ("returned for rework", "head-1", "in work"),
            ("answer prepared", "exec-1", "answer prepared"),
            ("sent for approval", "exec-1", "on approval"),
            ("approved", "head-1", "answered"),
            ("rejected by applicant", "citizen-1", "returned for re-review"),
            ("taken in work", "exec-1", "in work"),
            ("answer prepared", "exec-1", "answer prepared"),
            ("sent for approval", "exec-1", "on approval"),
            ("edited and approved", "head-1", "answered"),
            ("accepted by applicant", "citizen-1", "accepted by applicant"),
        ]
    );
    let key = |at: &Option<prost_types::Timestamp>| at.as_ref().map(|t| (t.seconds, t.nanos));
    assert!(history.entries.windows(2).all(|w| w[0].seq < w[1].seq && key(&w[0].at) <= key(&w[1].at)));
    assert_eq!(outbox_count(&app.db, "pos.v1.events.TicketAnswerApproved").await, 2);
    assert_eq!(outbox_count(&app.db, "pos.v1.events.TicketReopened").await, 1);
    assert_eq!(outbox_count(&app.db, "pos.v1.events.TicketStatusChanged").await, 15);
    app.stop().await;
}

#[tokio::test]
async fn other_schools_other_applicants_and_bad_tokens_are_refused() {
    let app = spawn_app().await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let ticket = current(&app.db, "a-1").await;
    let mut c = app.client();
    let by_id = || pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::TicketId(ticket.id.clone())) };
    let foreign = as_(by_id(), "exec-9", "school-2", &[Role::Executor]);
    assert_eq!(c.get_ticket(foreign).await.expect_err("other school").code(), Code::PermissionDenied);
    let take = pb::TakeInWorkRequest { ticket_id: ticket.id.clone(), expected_version: 1 };
    let foreign = as_(take.clone(), "coord-9", "school-2", &[Role::Coordinator]);
    assert_eq!(c.take_in_work(foreign).await.expect_err("other school").code(), Code::PermissionDenied);
    let stranger = as_(by_id(), "citizen-2", "", &[Role::Applicant]);
    assert_eq!(c.get_ticket(stranger).await.expect_err("other applicant").code(), Code::PermissionDenied);
    let listed = c
        .list_tickets(as_(pb::ListTicketsRequest::default(), "citizen-2", "", &[Role::Applicant]))
        .await
        .expect("list");
    assert!(listed.into_inner().tickets.is_empty(), "an applicant lists only their own appeals");
    let own = c.list_tickets(applicant(pb::ListTicketsRequest::default())).await.expect("list").into_inner();
    assert_eq!(own.tickets.len(), 1);
    // An applicant may not act as staff, an executor may not approve.
    assert_eq!(c.take_in_work(applicant(take.clone())).await.expect_err("applicant").code(), Code::PermissionDenied);
    let approve = pb::ApproveRequest { ticket_id: ticket.id.clone(), expected_version: 1, edited: None };
    assert_eq!(c.approve(executor(approve)).await.expect_err("executor").code(), Code::PermissionDenied);

    let forged = pos_platform::auth::Authenticator::from_config(&pos_platform::config::AuthConfig {
        hs256_secret: Some(pos_platform::config::Secret::new("not-the-secret")),
        ..Default::default()
    })
    .expect("authenticator")
    .mint("coord-1", SCHOOL, "41", &[Role::Coordinator], std::time::Duration::from_secs(60))
    .expect("mint");
    // Expired an hour ago: beyond any clock leeway.
    let now = chrono::Utc::now().timestamp();
    let claims = pos_platform::auth::Claims {
        sub: "coord-1".into(),
        org: SCHOOL.into(),
        region: "41".into(),
        roles: vec![Role::Coordinator],
        iss: "pos".into(),
        aud: "pos".into(),
        exp: now - 3600,
        iat: now - 7200,
        nbf: None,
    };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(pos_platform::testing::TEST_SECRET.as_bytes()),
    )
    .expect("encode");
    for token in [forged, expired] {
        let request = pos_platform::grpc::outgoing(by_id(), &token);
        let status = c.get_ticket(request).await.expect_err("refused token");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let unsigned = tonic::Request::new(by_id());
    assert_eq!(c.get_ticket(unsigned).await.expect_err("no token").code(), Code::Unauthenticated);
    app.stop().await;
}

#[tokio::test]
async fn two_heads_approving_at_once_send_one_answer() {
    let app = spawn_app().await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let id = current(&app.db, "a-1").await.id;
    let mut c = app.client();
    let t = c
        .take_in_work(coordinator(pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: 1 }))
        .await
        .expect("taken")
        .into_inner();
    // A postponed answer: once approved, its follow-up date becomes a tracked reminder.
    let follow_up = prost_types::Timestamp { seconds: 1_740_000_000, nanos: 0 };
    let postponed = pb::Answer {
        r#type: AnswerType::Postponed as i32,
        text: "Ремонт столовой запланирован на март".into(),
        follow_up_at: Some(follow_up),
        ..Default::default()
    };
    let prepare = pb::PrepareAnswerRequest {
        ticket_id: id.clone(),
        expected_version: t.version,
        answer: Some(postponed),
        template_id: String::new(),
    };
    let t = c.prepare_answer(coordinator(prepare)).await.expect("prepared").into_inner();
    let t = c
        .send_for_approval(coordinator(pb::VersionRequest { ticket_id: id.clone(), expected_version: t.version }))
        .await
        .expect("sent")
        .into_inner();
    let approve = |subject: &str| {
        let mut c = c.clone();
        let request = as_(
            pb::ApproveRequest { ticket_id: id.clone(), expected_version: t.version, edited: None },
            subject,
            SCHOOL,
            &[Role::Head],
        );
        async move { c.approve(request).await }
    };
    let (first, second) = tokio::join!(approve("head-1"), approve("head-2"));
    let outcomes = [first.map(|_| ()).map_err(|s| s.code()), second.map(|_| ()).map_err(|s| s.code())];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    assert!(outcomes.contains(&Err(Code::FailedPrecondition)), "{outcomes:?}");
    assert_eq!(outbox_count(&app.db, "pos.v1.events.TicketAnswerApproved").await, 1);
    let reminders = c.list_reminders(coordinator(pb::ListRemindersRequest::default())).await.expect("reminders");
    let reminders = reminders.into_inner().reminders;
    assert_eq!(reminders.len(), 1, "one approval, one reminder");
    assert_eq!((reminders[0].ticket_id.as_str(), reminders[0].due_at), (id.as_str(), Some(follow_up)));
    let before = pb::ListRemindersRequest {
        due_before: Some(prost_types::Timestamp { seconds: 1_739_000_000, nanos: 0 }),
        ..Default::default()
    };
    assert!(c.list_reminders(coordinator(before)).await.expect("reminders").into_inner().reminders.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn templates_are_checked_when_saved_and_filled_when_used() {
    let app = spawn_app().await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let id = current(&app.db, "a-1").await.id;
    let mut c = app.client();
    let bad = pb::AnswerTemplate {
        name: "greeting".into(),
        body: "Здравствуйте, {{applicant}}!".into(),
        ..Default::default()
    };
    assert_eq!(
        c.save_answer_template(admin(bad)).await.expect_err("unknown placeholder").code(),
        Code::InvalidArgument
    );
    let good = pb::AnswerTemplate {
        name: "greeting".into(),
        body: "Здравствуйте, {{applicant_name}}! По обращению № {{message_number}}: ".into(),
        ..Default::default()
    };
    let saved = c.save_answer_template(admin(good)).await.expect("saved").into_inner();
    let t = c
        .take_in_work(coordinator(pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: 1 }))
        .await
        .expect("taken")
        .into_inner();
    let prepare = pb::PrepareAnswerRequest {
        ticket_id: id.clone(),
        expected_version: t.version,
        answer: Some(answer("")),
        template_id: saved.id,
    };
    let t = c.prepare_answer(coordinator(prepare)).await.expect("prepared").into_inner();
    assert_eq!(t.answer.expect("answer").text, "Здравствуйте, Иван Иванов! По обращению № 1501: ");
    // Assigning someone outside the staff directory is refused.
    let assign = pb::AssignExecutorRequest {
        ticket_id: id,
        expected_version: t.version,
        executor_id: "nobody".into(),
        execution_due: None,
    };
    assert_eq!(
        c.assign_executor(coordinator(assign)).await.expect_err("unknown executor").code(),
        Code::InvalidArgument
    );
    app.stop().await;
}

#[tokio::test]
async fn an_incident_goes_through_both_lines_and_the_applicant_confirms_the_result() {
    let app = spawn_app().await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let id = current(&app.db, "a-1").await.id;
    let mut c = app.client();
    let open = pb::OpenIncidentRequest {
        ticket_id: id.clone(),
        kind: pb::IncidentKind::SituationCenter as i32,
        service: "Инциденты ИС ИЭП".into(),
        request_type: "Запрос/инцидент".into(),
        system: "МШ. Платформа ЦОК".into(),
        priority: "3 Приоритет".into(),
        subject: "Нет доступа к Библиотеке ЦОК".into(),
        // Screenshots are intake's files: opening with them is tested with intake beside
        // ticketing (intake's tests, incidents.rs).
        attachment_ids: Vec::new(),
        user_account: "user@example.org".into(),
        external_id: String::new(),
        handler_organization_id: String::new(),
    };
    let incomplete = pb::OpenIncidentRequest { system: String::new(), ..open.clone() };
    assert_eq!(
        c.open_incident(coordinator(incomplete)).await.expect_err("form incomplete").code(),
        Code::InvalidArgument
    );
    let foreign = as_(open.clone(), "coord-9", "school-2", &[Role::Coordinator]);
    assert_eq!(c.open_incident(foreign).await.expect_err("other school").code(), Code::PermissionDenied);
    let i = c.open_incident(coordinator(open)).await.expect("opened").into_inner();
    assert_eq!((i.state.as_str(), i.version), ("open, first line", 1));
    let step = |version, comment: &str| pb::IncidentCommandRequest {
        incident_id: i.id.clone(),
        expected_version: version,
        comment: comment.into(),
        attachment_ids: Vec::new(),
    };
    let itsm = |m| as_(m, "itsm", "", &[Role::System]);
    let i2 = c.request_incident_information(itsm(step(1, "нужен скриншот профиля"))).await.expect("asked").into_inner();
    assert_eq!(i2.state, "information requested, first line");
    let stale = c.incident_information_received(coordinator(step(1, "прислали"))).await;
    assert_eq!(stale.expect_err("stale").code(), Code::FailedPrecondition);
    let i3 = c.incident_information_received(coordinator(step(2, "прислали"))).await.expect("received").into_inner();
    let i4 = c.escalate_incident(itsm(step(i3.version, ""))).await.expect("second line").into_inner();
    let i5 = c
        .resolve_incident(itsm(step(i4.version, "учётная запись перепривязана")))
        .await
        .expect("resolved")
        .into_inner();
    assert_eq!((i5.state.as_str(), i5.resolution.as_str()), ("resolved, second line", "учётная запись перепривязана"));
    let no_reason = c.reject_incident_result(applicant(step(i5.version, ""))).await;
    assert_eq!(no_reason.expect_err("a reason is required").code(), Code::InvalidArgument);
    let stranger = as_(step(i5.version, "нет"), "citizen-2", "", &[Role::Applicant]);
    assert_eq!(c.reject_incident_result(stranger).await.expect_err("not theirs").code(), Code::PermissionDenied);
    let i6 = c
        .reject_incident_result(applicant(step(i5.version, "доступа всё ещё нет")))
        .await
        .expect("rejected")
        .into_inner();
    assert_eq!(i6.state, "open, second line");
    let i7 = c.resolve_incident(itsm(step(i6.version, "кэш очищен"))).await.expect("resolved").into_inner();
    let i8 = c.confirm_incident_result(applicant(step(i7.version, ""))).await.expect("confirmed").into_inner();
    assert_eq!(i8.state, "confirmed");

    let listed = c
        .list_incidents(applicant(pb::ListIncidentsRequest {
            ticket_id: id.clone(),
            handler_organization_id: String::new(),
            open_only: false,
        }))
        .await
        .expect("list");
    assert_eq!(listed.into_inner().incidents.len(), 1);
    let history = c
        .get_ticket_history(coordinator(pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::TicketId(id)) }))
        .await
        .expect("history")
        .into_inner();
    let actions: Vec<&str> = history.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "received",
            "escalated",
            "incident information requested",
            "incident information received",
            "incident escalated to the second line",
            "incident resolved",
            "incident result rejected",
            "incident resolved",
            "incident result confirmed",
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn the_head_the_coordinator_and_the_curator_read_the_report_and_bad_periods_are_refused() {
    let app = spawn_app().await;
    staffed(&app).await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let mut fast = routed("a-2", SCHOOL, "citizen-2");
    fast.fast_track = true;
    fast.category_id = "cat-diary".into();
    deliver(&app.db, &fast).await;
    let mut c = app.client();
    let t = current(&app.db, "a-1").await;
    let t = c
        .take_in_work(coordinator(pb::TakeInWorkRequest { ticket_id: t.id, expected_version: t.version }))
        .await
        .expect("taken")
        .into_inner();
    let request = pb::PrepareAnswerRequest {
        ticket_id: t.id.clone(),
        expected_version: t.version,
        answer: Some(answer("Здравствуйте! Горячее питание налажено.")),
        template_id: String::new(),
    };
    let t = c.prepare_answer(coordinator(request)).await.expect("prepared").into_inner();
    let request = pb::VersionRequest { ticket_id: t.id.clone(), expected_version: t.version };
    let t = c.send_for_approval(coordinator(request)).await.expect("sent").into_inner();
    let request = pb::ApproveRequest { ticket_id: t.id.clone(), expected_version: t.version, edited: None };
    c.approve(head(request)).await.expect("approved");

    let day = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let registered = crate::helpers::REGISTERED_AT;
    let period = pb::GetReportRequest {
        period_from: day(registered - 60),
        period_to: day(registered + 60),
        ..Default::default()
    };
    let curator = |m| as_(m, "curator-1", SCHOOL, &[Role::Curator]);
    for request in [head(period.clone()), coordinator(period.clone()), curator(period.clone())] {
        let report = c.get_report(request).await.expect("report").into_inner();
        assert_eq!(report.organization_id, SCHOOL, "the caller's own organization");
        let totals = report.totals.expect("totals");
        assert_eq!((totals.received, totals.answered, totals.fast_track), (2, 1, 1), "{totals:?}");
        assert!(totals.average_answer_seconds > 0);
        let categories: Vec<(&str, i64)> =
            report.by_category.iter().map(|r| (r.key.as_str(), r.figures.as_ref().map_or(0, |f| f.received))).collect();
        assert_eq!(categories, [("cat-diary", 1), ("cat-school", 1)]);
        assert_eq!(report.by_executor.len(), 1, "both with the coordinator");
    }
    let filtered = pb::GetReportRequest { category_id: "cat-diary".into(), ..period.clone() };
    let totals = c.get_report(head(filtered)).await.expect("report").into_inner().totals.expect("totals");
    assert_eq!((totals.received, totals.answered), (1, 0));

    // The executor builds no reports.
    let refused = c.get_report(executor(period.clone())).await.expect_err("an executor");
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Bad periods, each field named.
    for (request, fields) in [
        (pb::GetReportRequest::default(), vec!["period_from", "period_to"]),
        (
            pb::GetReportRequest { period_from: period.period_to, period_to: period.period_from, ..period.clone() },
            vec!["period_to"],
        ),
        (
            pb::GetReportRequest {
                // Past the last time chrono can hold.
                period_from: Some(prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }),
                folder: 99,
                ..period.clone()
            },
            vec!["period_from", "folder"],
        ),
    ] {
        let status = c.get_report(head(request)).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(pos_platform::error::violated_fields(&status), fields, "{status:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_list_leaves_its_folder_counts_out_when_asked() {
    let app = spawn_app().await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let mut c = app.client();
    let list = |without_folder_counts| pb::ListTicketsRequest {
        text: "столовой".into(),
        without_folder_counts,
        ..Default::default()
    };
    let counted = c.list_tickets(coordinator(list(false))).await.expect("listed").into_inner();
    let new = counted.folder_counts.iter().find(|f| f.folder == pb::Folder::New as i32).map(|f| f.count);
    assert_eq!((counted.tickets.len(), counted.folder_counts.len(), new), (1, 6, Some(1)));
    let bare = c.list_tickets(coordinator(list(true))).await.expect("listed").into_inner();
    assert_eq!((bare.tickets.len(), bare.folder_counts.len()), (1, 0), "the same page, without its counts");
    app.stop().await;
}

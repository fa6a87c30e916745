//! Incidents as the ticket and the applicant see them: every step bumps the ticket's version and
//! keeps its "incident open" marker (shown and filtered in the list, on both databases), writes
//! its history line and publishes `ticket.incident_changed`; the applicant answers the line's
//! request for information with their own token; a supervisor's escalation must name a federal
//! body that the directory confirms. The federal body's own cabinet (its list, its answers, its
//! files) needs routing and intake beside ticketing: intake's tests (`escalations.rs`) and the
//! end-to-end test (`tests/tests/it/incidents.rs`) cover it.

use chrono::Utc;
use pos_platform::auth::Role;
use pos_platform::db::Db;
use pos_platform::error::violated_fields;
use pos_proto::v1 as pb;
use pos_proto::v1::events::{self as ev, IncidentStep, TicketAction};
use pos_ticketing::incident::{Kind, Line, State};
use pos_ticketing::store::incidents::{self as stored, Incident};
use pos_ticketing::store::listing::{self, Filters, ListQuery, Scope, SortKey};
use pos_ticketing::store::tickets;
use prost::Message;
use sqlx::Row;
use tonic::Code;

use crate::helpers::{as_, current, databases, deliver, release, routed, spawn_app};

const SCHOOL: &str = "school-1";

fn coordinator<T>(m: T) -> tonic::Request<T> {
    as_(m, "coord-1", SCHOOL, &[Role::Coordinator])
}

fn itsm<T>(m: T) -> tonic::Request<T> {
    as_(m, "itsm", "", &[Role::System])
}

fn applicant<T>(m: T) -> tonic::Request<T> {
    as_(m, "citizen-1", "", &[Role::Applicant])
}

fn situation_center(ticket_id: &str) -> pb::OpenIncidentRequest {
    pb::OpenIncidentRequest {
        ticket_id: ticket_id.into(),
        kind: pb::IncidentKind::SituationCenter as i32,
        service: "Инциденты ИС ИЭП".into(),
        request_type: "Запрос/инцидент".into(),
        system: "МШ. Платформа ЦОК".into(),
        priority: "3 Приоритет".into(),
        subject: "Нет доступа к Библиотеке ЦОК".into(),
        attachment_ids: Vec::new(),
        user_account: "user@example.org".into(),
        external_id: String::new(),
        handler_organization_id: String::new(),
    }
}

fn step(incident: &pb::Incident, comment: &str) -> pb::IncidentCommandRequest {
    pb::IncidentCommandRequest {
        incident_id: incident.id.clone(),
        expected_version: incident.version,
        comment: comment.into(),
        attachment_ids: Vec::new(),
    }
}

fn open_only() -> pb::ListTicketsRequest {
    pb::ListTicketsRequest { incident_open_only: true, ..Default::default() }
}

/// The payloads of the outbox's events of type `M`, oldest first.
async fn published<M: Message + Default + prost::Name>(db: &Db) -> Vec<M> {
    sqlx::query("SELECT payload FROM outbox WHERE type_name = $1 ORDER BY id")
        .bind(M::full_name())
        .fetch_all(db.pool())
        .await
        .expect("outbox")
        .iter()
        .map(|row| M::decode(row.try_get::<Vec<u8>, _>("payload").expect("payload").as_slice()).expect("decodes"))
        .collect()
}

#[tokio::test]
async fn every_incident_step_moves_the_ticket_and_the_applicant_answers_the_line() {
    let app = spawn_app().await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    deliver(&app.db, &routed("a-2", SCHOOL, "citizen-2")).await;
    let id = current(&app.db, "a-1").await.id;
    let mut c = app.client();
    let ticket = |c: &mut pos_proto::v1::ticketing_service_client::TicketingServiceClient<_>| {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            c.get_ticket(coordinator(pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::TicketId(id)) }))
                .await
                .expect("ticket")
                .into_inner()
        }
    };
    let before = ticket(&mut c).await;
    assert_eq!((before.version, before.incident_open), (1, false));

    let i = c.open_incident(coordinator(situation_center(&id))).await.expect("opened").into_inner();
    let t = ticket(&mut c).await;
    assert_eq!((t.version, t.incident_open), (2, true), "opening bumps the ticket and marks it");
    assert_eq!(i.appeal_number, 1501);
    assert_eq!(i.appeal_text, "В столовой холодная еда");
    let listed = c.list_tickets(coordinator(open_only())).await.expect("list").into_inner();
    let ids: Vec<&str> = listed.tickets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [id.as_str()], "only the ticket with an open incident");
    assert!(listed.tickets[0].incident_open);
    let all = c.list_tickets(coordinator(pb::ListTicketsRequest::default())).await.expect("list").into_inner();
    assert_eq!(all.tickets.iter().filter(|t| t.incident_open).count(), 1);
    assert_eq!(all.tickets.len(), 2);

    // Files go with the information provided or the resolution only.
    let with_files = pb::IncidentCommandRequest { attachment_ids: vec!["f-1".into()], ..step(&i, "") };
    let refused = c.escalate_incident(itsm(with_files)).await.expect_err("files with an escalation");
    assert_eq!(violated_fields(&refused), ["attachment_ids"]);

    let i = c.request_incident_information(itsm(step(&i, "Пришлите скриншот профиля"))).await.expect("asked");
    let i = i.into_inner();
    assert_eq!(ticket(&mut c).await.version, 3);
    // The applicant answers with their own token; another applicant cannot.
    let stranger = as_(step(&i, "вот"), "citizen-2", "", &[Role::Applicant]);
    let denied = c.incident_information_received(stranger).await.expect_err("not their appeal");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let no_text = c.incident_information_received(applicant(step(&i, " "))).await.expect_err("empty");
    assert_eq!(no_text.code(), Code::InvalidArgument);
    let i = c
        .incident_information_received(applicant(step(&i, "Скриншот: вход под учётной записью учителя")))
        .await
        .expect("the applicant answered")
        .into_inner();
    assert_eq!(i.state, "open, first line");
    let i = c.resolve_incident(itsm(step(&i, "Учётная запись перепривязана"))).await.expect("resolved").into_inner();
    let i = c.reject_incident_result(applicant(step(&i, "Доступа всё ещё нет"))).await.expect("rejected");
    let i = c.resolve_incident(itsm(step(&i.into_inner(), "Кэш очищен"))).await.expect("resolved").into_inner();
    assert!(ticket(&mut c).await.incident_open, "resolved is not closed: the applicant confirms");
    let i = c.confirm_incident_result(applicant(step(&i, ""))).await.expect("confirmed").into_inner();
    assert_eq!(i.state, "confirmed");
    let t = ticket(&mut c).await;
    assert_eq!((t.version, t.incident_open), (8, false), "seven steps, seven versions; closed at last");
    assert_eq!(t.folder, pb::Folder::New as i32, "the ticket's stage never moved");
    assert!(c.list_tickets(coordinator(open_only())).await.expect("list").into_inner().tickets.is_empty());

    let by_id = || pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::TicketId(id.clone())) };
    let theirs = c.get_ticket_history(applicant(by_id())).await.expect("history").into_inner();
    assert!(
        theirs.entries.iter().all(|e| e.actor.is_empty() || e.actor == "citizen-1"),
        "the applicant reads who acted only where it was them"
    );
    let history = c.get_ticket_history(coordinator(by_id())).await.expect("history").into_inner();
    let lines: Vec<(&str, &str)> = history.entries.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
    assert_eq!(
        lines,
        [
            ("received", "routing"),
            ("escalated", "coord-1"),
            ("incident information requested", "itsm"),
            ("incident information received", "citizen-1"),
            ("incident resolved", "itsm"),
            ("incident result rejected", "citizen-1"),
            ("incident resolved", "itsm"),
            ("incident result confirmed", "citizen-1"),
        ]
    );

    // What the applicant's letters and the SLA clock are told.
    let steps: Vec<(IncidentStep, String, String, i64)> = published::<ev::TicketIncidentChanged>(&app.db)
        .await
        .into_iter()
        .map(|e| {
            assert_eq!((e.number, e.handler_name.as_str()), (1501, "Ситуационный центр электронного правительства"));
            (e.step(), e.state, e.comment, e.version)
        })
        .collect();
    let s = |step, state: &str, comment: &str, version| (step, state.to_owned(), comment.to_owned(), version);
    assert_eq!(
        steps,
        [
            s(IncidentStep::Opened, "open, first line", "", 1),
            s(IncidentStep::InformationRequested, "information requested, first line", "Пришлите скриншот профиля", 2),
            s(IncidentStep::InformationReceived, "open, first line", "Скриншот: вход под учётной записью учителя", 3),
            s(IncidentStep::Resolved, "resolved, first line", "Учётная запись перепривязана", 4),
            s(IncidentStep::ResultRejected, "open, first line", "Доступа всё ещё нет", 5),
            s(IncidentStep::Resolved, "resolved, first line", "Кэш очищен", 6),
            s(IncidentStep::ResultConfirmed, "confirmed", "", 7),
        ]
    );
    let changes = published::<ev::TicketStatusChanged>(&app.db).await;
    let incident_changes: Vec<TicketAction> =
        changes.iter().filter(|e| e.incident_id == i.id).map(|e| e.action()).collect();
    assert_eq!(incident_changes.len(), 7, "each step is a status change naming the incident");
    assert_eq!(incident_changes[1], TicketAction::InformationRequested, "the answer clock pauses");
    assert_eq!(incident_changes[2], TicketAction::InformationReceived, "and resumes");
    app.stop().await;
}

#[tokio::test]
async fn a_supervisor_escalation_names_a_federal_body_that_the_directory_confirms() {
    let app = spawn_app().await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let id = current(&app.db, "a-1").await.id;
    let mut c = app.client();
    let federal = |handler: &str| pb::OpenIncidentRequest {
        ticket_id: id.clone(),
        kind: pb::IncidentKind::FederalSupervisor as i32,
        subject: "Проверить данные диплома в ФИС ФРДО".into(),
        handler_organization_id: handler.into(),
        ..Default::default()
    };
    let unnamed = c.open_incident(coordinator(federal(""))).await.expect_err("no federal body named");
    assert_eq!(violated_fields(&unnamed), ["handler_organization_id"]);
    let misplaced = pb::OpenIncidentRequest { handler_organization_id: "rosobrnadzor".into(), ..situation_center(&id) };
    let misplaced = c.open_incident(coordinator(misplaced)).await.expect_err("the situation center has no body");
    assert_eq!(violated_fields(&misplaced), ["handler_organization_id"]);
    // This ticketing reaches no routing (its peer is itself): it refuses rather than guess.
    let unchecked = c.open_incident(coordinator(federal("rosobrnadzor"))).await.expect_err("cannot check");
    assert_eq!(unchecked.code(), Code::Unavailable);
    assert_eq!(pos_platform::error::reason(&unchecked), "DIRECTORY_UNAVAILABLE");
    let t = current(&app.db, "a-1").await;
    assert_eq!((t.version, t.incident_open), (1, false), "nothing was opened");
    app.stop().await;
}

#[tokio::test]
async fn the_applicant_answers_the_ticket_s_request_and_only_that_request_carries_files() {
    let app = spawn_app().await;
    deliver(&app.db, &routed("a-1", SCHOOL, "citizen-1")).await;
    let id = current(&app.db, "a-1").await.id;
    let mut c = app.client();
    let t = c
        .take_in_work(coordinator(pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: 1 }))
        .await
        .expect("taken")
        .into_inner();
    let comment = |version, text: &str, files: Vec<String>| pb::CommentRequest {
        ticket_id: id.clone(),
        expected_version: version,
        comment: text.into(),
        attachment_ids: files,
    };
    let with_files = c
        .request_information(coordinator(comment(t.version, "Уточните класс", vec!["f-1".into()])))
        .await
        .expect_err("files with a request");
    assert_eq!(violated_fields(&with_files), ["attachment_ids"]);
    let t = c
        .request_information(coordinator(comment(t.version, "Уточните класс", Vec::new())))
        .await
        .expect("asked")
        .into_inner();
    assert_eq!(t.folder, pb::Folder::InWork as i32);
    let t = c
        .information_received(applicant(comment(t.version, "7Б", Vec::new())))
        .await
        .expect("the applicant answered")
        .into_inner();
    assert_eq!(t.status, "in work", "the clock resumes with the work");
    let actions: Vec<TicketAction> =
        published::<ev::TicketStatusChanged>(&app.db).await.iter().map(|e| e.action()).collect();
    assert!(actions.ends_with(&[TicketAction::InformationRequested, TicketAction::InformationReceived]));
    app.stop().await;
}

fn stored_incident(ticket: &tickets::Ticket, id: &str, handler: &str) -> Incident {
    let now = Utc::now();
    Incident {
        id: id.into(),
        ticket_id: ticket.id.clone(),
        appeal_id: ticket.appeal_id.clone(),
        organization_id: ticket.organization_id.clone(),
        kind: if handler.is_empty() { Kind::SituationCenter } else { Kind::FederalSupervisor },
        state: State::Open(Line::First),
        service: String::new(),
        request_type: String::new(),
        system: String::new(),
        priority: String::new(),
        subject: "Проверка".into(),
        attachment_ids: Vec::new(),
        user_account: String::new(),
        external_id: String::new(),
        resolution: String::new(),
        last_comment: String::new(),
        opened_by: "coord-1".into(),
        opened_at: now,
        updated_at: now,
        version: 1,
        handler_organization_id: handler.into(),
        handler_organization_name: if handler.is_empty() { String::new() } else { "Рособрнадзор".into() },
        appeal_attachment_ids: vec!["f-appeal".into()],
    }
}

#[tokio::test]
async fn the_marker_and_the_handler_s_list_on_both_databases() {
    for (db, _dir) in databases().await {
        deliver(&db, &routed("a-1", SCHOOL, "citizen-1")).await;
        deliver(&db, &routed("a-2", SCHOOL, "citizen-2")).await;
        let first = current(&db, "a-1").await;
        let second = current(&db, "a-2").await;
        let list = |filters: Filters| ListQuery {
            scope: Scope::Organization(SCHOOL.into()),
            filters,
            sort: SortKey::Received,
            descending: true,
            after: None,
            limit: 50,
        };
        let marked = || list(Filters { incident_open_only: true, ..Filters::default() });

        let mut tx = db.begin().await.unwrap();
        stored::insert(&mut tx, &stored_incident(&first, "i-1", "rosobrnadzor")).await.unwrap();
        stored::insert(&mut tx, &stored_incident(&first, "i-2", "")).await.unwrap();
        let after = tickets::incident_stepped(&mut tx, &first.id).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((after.version, after.incident_open), (2, true), "{:?}", db.dialect());
        let (page, _) = listing::page(&db, &marked()).await.unwrap();
        assert_eq!(page.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [first.id.as_str()]);
        let counts = listing::folder_counts(&db, &Scope::Organization(SCHOOL.into()), &marked().filters).await;
        assert_eq!(counts.unwrap().iter().map(|(_, n)| n).sum::<i64>(), 1);

        let addressed = stored::addressed_to(&db, "rosobrnadzor", true).await.unwrap();
        assert_eq!(addressed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["i-1"]);
        assert_eq!(addressed[0].appeal_attachment_ids, ["f-appeal"]);
        assert_eq!(addressed[0].handler_organization_name, "Рособрнадзор");
        assert!(stored::addressed_to(&db, SCHOOL, false).await.unwrap().is_empty());
        let fetched = tickets::get_many(&db, &[first.id.clone(), second.id.clone(), "nothing".into()]).await.unwrap();
        assert_eq!(fetched.len(), 2);

        // One incident confirmed, the other resolved: the ticket stays marked until both close.
        let mut tx = db.begin().await.unwrap();
        let files = ["f-answer".to_owned()];
        assert!(
            stored::update(&mut tx, "i-1", 1, State::Resolved(Line::First), Some("Исправлено"), "", &files)
                .await
                .unwrap()
        );
        assert!(stored::update(&mut tx, "i-2", 1, State::Confirmed, None, "", &[]).await.unwrap());
        let after = tickets::incident_stepped(&mut tx, &first.id).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((after.version, after.incident_open), (3, true));
        assert!(stored::addressed_to(&db, "rosobrnadzor", true).await.unwrap().is_empty(), "answered");
        let resolved = stored::addressed_to(&db, "rosobrnadzor", false).await.unwrap();
        assert_eq!(
            (resolved[0].resolution.as_str(), resolved[0].attachment_ids.clone()),
            ("Исправлено", files.to_vec())
        );
        let mut tx = db.begin().await.unwrap();
        assert!(stored::update(&mut tx, "i-1", 2, State::Confirmed, None, "", &[]).await.unwrap());
        let after = tickets::incident_stepped(&mut tx, &first.id).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((after.version, after.incident_open), (4, false));
        assert!(listing::page(&db, &marked()).await.unwrap().0.is_empty());
        assert_eq!(listing::page(&db, &list(Filters::default())).await.unwrap().0.len(), 2);
        release(db).await;
    }
}

//! One appeal's life produces exactly the expected e-mails, with every placeholder filled: the
//! classifier's names, local times with the applicant's zone said, the chosen letters only.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pos_notify::Wake;
use pos_notify::appeal::Reader;
use pos_notify::directory::StaticDirectory;
use pos_platform::Db;
use pos_platform::testing::{eventually, postgres_db, sqlite_db};
use pos_proto::v1 as pb;
use pos_proto::v1::events as ev;

use crate::helpers::*;

#[tokio::test]
async fn an_appeals_life_on_postgres() {
    let db = postgres_db("notify", &pos_notify::MIGRATIONS).await;
    appeals_life(&db).await;
}

#[tokio::test]
async fn an_appeals_life_on_sqlite() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    appeals_life(&db).await;
}

pub fn status(
    appeal_id: &str,
    action: ev::TicketAction,
    from: pb::Folder,
    to: pb::Folder,
    comment: &str,
) -> ev::TicketStatusChanged {
    ev::TicketStatusChanged {
        ticket_id: format!("t-{appeal_id}"),
        appeal_id: appeal_id.into(),
        number: 1001,
        organization_id: "school-1".into(),
        from_folder: from as i32,
        to_folder: to as i32,
        status: String::new(),
        actor: "exec-1".into(),
        at: ts(Utc::now()),
        region_code: "41".into(),
        action: action as i32,
        assignee_id: "exec-1".into(),
        execution_due: None,
        comment: comment.into(),
        rating: 0,
        time_zone: "Asia/Kamchatka".into(),
        incident_id: String::new(),
        answer_due: None,
    }
}

async fn appeals_life(db: &Db) {
    let sink = SmtpSink::start();
    let domain = unique_domain();
    let at = |name: &str| format!("{name}@{domain}");
    let mut directory = StaticDirectory::default();
    directory.emails.insert("school-1".into(), at("school"));
    directory.staff.insert(
        "school-1".into(),
        vec![
            staff("coord-1", &at("coordinator"), &["coordinator"]),
            staff("exec-1", &at("executor"), &["executor"]),
            staff("head-1", &at("head"), &["head"]),
            staff("cur-1", &at("curator"), &["curator"]),
            staff("appr-1", &at("approver"), &["approver"]),
        ],
    );
    let wake = Arc::new(Wake::default());
    let planner = planner(db, wake.clone(), directory);
    let sender = RunningSender::start(db, sink.mailer(), wake, sender_config());

    let appeal = uuid::Uuid::now_v7().to_string();
    let id = appeal.as_str();
    let now = Utc::now();
    let due = now + chrono::Duration::days(30);
    // Each step a second after the one before, as the statuses happened.
    let step = |n: i64| now + chrono::Duration::seconds(n);
    let applicant =
        pb::Applicant { full_name: "Иван Петров".into(), email: at("applicant"), ..Default::default() };
    deliver(
        db,
        &planner,
        &ev::AppealReceived {
            appeal_id: id.into(),
            number: 1001,
            registered_at: ts(now),
            applicant: Some(applicant.clone()),
            region_code: "41".into(),
            category_id: "food".into(),
            category_name: "Питание в школе".into(),
            subcategory_name: "Качество питания в школьной столовой".into(),
            fact_name: "Невкусно".into(),
            applicant_time_zone: "Asia/Kamchatka".into(),
            ..Default::default()
        },
        id,
    )
    .await;
    deliver(db, &planner, &routed(id, now, 30, applicant), id).await;
    let deadline = |clock: ev::SlaClock| ev::SlaDeadline {
        appeal_id: id.into(),
        ticket_id: format!("t-{id}"),
        organization_id: "school-1".into(),
        region_code: "41".into(),
        clock: clock as i32,
        due: ts(due),
        time_zone: "Asia/Kamchatka".into(),
        round: 1,
        assignee_id: "exec-1".into(),
        ..Default::default()
    };
    let armed = ev::SlaArmed { deadline: Some(deadline(ev::SlaClock::Answer)), at: ts(now) };
    deliver(db, &planner, &armed, id).await;
    // A moved deadline does not announce the message again.
    deliver(db, &planner, &armed, id).await;
    use ev::TicketAction as A;
    use pb::Folder as F;
    for (n, event) in [
        status(id, A::Created, F::Unspecified, F::New, ""),
        status(id, A::TakenInWork, F::New, F::InWork, ""),
        status(id, A::ExecutorAssigned, F::InWork, F::InWork, ""),
        status(id, A::InformationRequested, F::InWork, F::InWork, "Уточните номер класса"),
        status(id, A::SentForAgreement, F::InWork, F::SentForApproval, ""),
        status(id, A::Agreed, F::SentForApproval, F::SentForApproval, ""),
        status(id, A::SentForApproval, F::SentForApproval, F::SentForApproval, ""),
        status(id, A::Approved, F::SentForApproval, F::Processed, ""),
    ]
    .into_iter()
    .enumerate()
    {
        let event = ev::TicketStatusChanged { at: ts(step(n as i64 + 1)), ..event };
        deliver(db, &planner, &event, id).await;
    }
    deliver(
        db,
        &planner,
        &ev::TicketAnswerApproved {
            ticket_id: format!("t-{id}"),
            appeal_id: id.into(),
            number: 1001,
            organization_id: "school-1".into(),
            region_code: "41".into(),
            answer_type: ev::AnswerType::Resolved as i32,
            text: "Меню исправлено {с понедельника}.".into(),
            approved_at: ts(step(10)),
            ..Default::default()
        },
        id,
    )
    .await;
    deliver(
        db,
        &planner,
        &ev::TicketReopened {
            ticket_id: format!("t-{id}"),
            appeal_id: id.into(),
            number: 1001,
            organization_id: "school-1".into(),
            region_code: "41".into(),
            comment: "Не исправлено".into(),
            review_round: 2,
            reopened_at: ts(step(11)),
            ..Default::default()
        },
        id,
    )
    .await;
    deliver(
        db,
        &planner,
        &ev::SlaWarning { deadline: Some(deadline(ev::SlaClock::Answer)), at: ts(now), point: "3d".into() },
        id,
    )
    .await;
    deliver(db, &planner, &ev::SlaOverdue { deadline: Some(deadline(ev::SlaClock::Answer)), at: ts(now) }, id).await;

    // The applicant hears of what concerns them (the default letters): not of the appeal arriving
    // in the New folder, nor of the answer sent for agreement and approval.
    let expected = [
        ("applicant", 5),
        ("school", 1),
        ("head", 2),
        ("coordinator", 2),
        ("curator", 2),
        ("executor", 1),
        ("approver", 1),
    ];
    let total: usize = expected.iter().map(|(_, n)| n).sum();
    eventually(Duration::from_secs(30), "every e-mail arrived", || {
        std::future::ready(expected.iter().map(|(who, _)| sink.messages(&at(who)).len()).sum::<usize>() >= total)
    })
    .await;
    // Nothing more trickles in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (who, count) in expected {
        let subjects: Vec<String> = sink.messages(&at(who)).iter().map(|m| decoded(m).0).collect();
        assert_eq!(subjects.len(), count, "e-mails to {who}: {subjects:?}");
    }
    let mut subjects = Vec::new();
    for (who, _) in expected {
        for message in sink.messages(&at(who)) {
            let (subject, body) = decoded(&message);
            assert!(!subject.contains('{') && !body.contains("{number"), "unfilled placeholder in {subject}: {body}");
            assert!(body.contains("1001") || subject.contains("1001"), "no number in {subject}");
            subjects.push((who, subject, body));
        }
    }
    let applicant_subjects: Vec<&str> =
        subjects.iter().filter(|(who, ..)| *who == "applicant").map(|(_, s, _)| s.as_str()).collect();
    for expected in [
        "Сообщение №1001 зарегистрировано",
        "Статус сообщения №1001: В работе",
        "По сообщению №1001 нужна дополнительная информация",
        "Ответ на сообщение №1001 готов",
        "Сообщение №1001 направлено на повторное рассмотрение",
    ] {
        assert!(applicant_subjects.contains(&expected), "{expected:?} not in {applicant_subjects:?}");
    }
    for (who, subject, body) in &subjects {
        // Names, never the id; no line says "—".
        assert!(!subject.contains("food") && !body.contains("food"), "an id in {subject}: {body}");
        assert!(!body.contains(": —"), "an empty placeholder to {who} in {body}");
        if *who != "applicant" {
            // A head with ten of them waiting tells them apart.
            assert!(subject.ends_with(": №1001, Питание в школе"), "{subject}");
        }
    }
    // The organization's "message arrived" has every one of its placeholders filled.
    let (_, subject, body) = subjects.iter().find(|(who, ..)| *who == "school").unwrap();
    assert_eq!(subject, "Поступление сообщений в ЛКО: №1001, Питание в школе");
    for part in ["1001", "Питание в школе", "МБОУ СОШ №1", "Зарегистрировано", &local(due, Reader::Organization)]
    {
        assert!(body.contains(part), "{part:?} not in {body}");
    }
    let (_, subject, _) = subjects.iter().find(|(who, ..)| *who == "approver").unwrap();
    assert_eq!(subject, "Ответ ожидает согласования или утверждения: №1001, Питание в школе");
    // The registration: the time in the applicant's region, its zone said; the classifier's names.
    let registered = subjects.iter().find(|(_, s, _)| s.contains("зарегистрировано")).unwrap();
    let kamchatka = local(now, Reader::Applicant);
    assert!(kamchatka.ends_with("по местному времени (UTC+12)"), "{kamchatka}");
    for part in [
        kamchatka.as_str(),
        "Категория: Питание в школе.",
        "Подкатегория: Качество питания в школьной столовой.",
        "Факт: Невкусно.",
    ] {
        assert!(registered.2.contains(part), "{part:?} not in {}", registered.2);
    }
    assert!(!registered.2.contains("МСК"), "{}", registered.2);
    // A status letter shows the planned deadline, in the applicant's time.
    let in_work = subjects.iter().find(|(_, s, _)| s.ends_with("В работе")).unwrap();
    let planned = format!("Плановый срок рассмотрения: {}.", local(due, Reader::Applicant));
    assert!(in_work.2.contains(&planned), "{planned:?} not in {}", in_work.2);
    sender.stop().await;
}

/// Appeal №1001 routed to school 1 in Kamchatka with `period_days` to answer.
fn routed(id: &str, registered: chrono::DateTime<Utc>, period_days: i32, applicant: pb::Applicant) -> ev::AppealRouted {
    ev::AppealRouted {
        appeal_id: id.into(),
        number: 1001,
        registered_at: ts(registered),
        region_code: "41".into(),
        category_id: "food".into(),
        organization: Some(pb::OrganizationRef {
            id: "school-1".into(),
            short_name: "МБОУ СОШ №1".into(),
            ..Default::default()
        }),
        time_zone: "Asia/Kamchatka".into(),
        period_days,
        applicant: Some(applicant),
        ..Default::default()
    }
}

fn local(at: chrono::DateTime<Utc>, reader: Reader) -> String {
    pos_notify::plan::local_time(at, "Asia/Kamchatka", reader)
}

/// Each consumer runs at its own pace, so ticketing may know the answer deadline before this
/// consumer's own `sla.armed` comes: the status letter names the deadline its event carries.
#[tokio::test]
async fn a_status_letter_names_the_deadline_the_ticket_knows_before_sla_armed_comes() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    let sink = SmtpSink::start();
    let email = format!("applicant@{}", unique_domain());
    let wake = Arc::new(Wake::default());
    let planner = planner(&db, wake.clone(), StaticDirectory::default());
    let sender = RunningSender::start(&db, sink.mailer(), wake, sender_config());
    let appeal = uuid::Uuid::now_v7().to_string();
    let id = appeal.as_str();
    let (now, due) = (Utc::now(), Utc::now() + chrono::Duration::days(10));
    let applicant =
        pb::Applicant { full_name: "Иван Петров".into(), email: email.clone(), ..Default::default() };
    let received = ev::AppealReceived {
        appeal_id: id.into(),
        number: 1001,
        registered_at: ts(now),
        applicant: Some(applicant),
        region_code: "41".into(),
        category_id: "food".into(),
        category_name: "Питание в школе".into(),
        applicant_time_zone: "Asia/Kamchatka".into(),
        ..Default::default()
    };
    deliver(&db, &planner, &received, id).await;
    deliver(&db, &planner, &routed(id, now, 10, received.applicant.clone().unwrap()), id).await;
    let taken = ev::TicketStatusChanged {
        at: ts(now + chrono::Duration::seconds(1)),
        answer_due: ts(due),
        ..status(id, ev::TicketAction::TakenInWork, pb::Folder::New, pb::Folder::InWork, "")
    };
    deliver(&db, &planner, &taken, id).await;

    let subject = "Статус сообщения №1001: В работе";
    eventually(Duration::from_secs(30), "the status letter arrived", || {
        std::future::ready(sink.messages(&email).iter().any(|m| decoded(m).0 == subject))
    })
    .await;
    let letter = sink.messages(&email).iter().map(|m| decoded(m)).find(|(s, _)| s == subject).unwrap();
    let planned = format!("Плановый срок рассмотрения: {}.", local(due, Reader::Applicant));
    assert!(letter.1.contains(&planned), "{planned:?} not in {}", letter.1);
    sender.stop().await;
}

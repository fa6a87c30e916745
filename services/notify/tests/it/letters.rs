//! The applicant's letters: in the order the statuses happened, whatever the order their events
//! arrive in or the relay's hiccups; only the steps the deployment chose.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pos_notify::Wake;
use pos_notify::directory::StaticDirectory;
use pos_notify::letters::Letters;
use pos_notify::mailer::{Mail, MailError, Mailer};
use pos_platform::Db;
use pos_platform::testing::{eventually, postgres_db, sqlite_db};
use pos_proto::v1 as pb;
use pos_proto::v1::events as ev;

use crate::helpers::*;
use crate::life::status;

/// The relay, refusing the first `failures` attempts at a letter whose subject contains
/// `refused`, and noting the subjects it accepted in order.
struct Hiccups {
    relay: Arc<dyn Mailer>,
    refused: &'static str,
    failures: Mutex<usize>,
    accepted: Mutex<Vec<String>>,
}

#[async_trait]
impl Mailer for Hiccups {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        if mail.subject.contains(self.refused) {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(MailError::Transient("421 try again later".into()));
            }
        }
        self.relay.send(mail).await?;
        self.accepted.lock().unwrap().push(mail.subject.clone());
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "hiccups"
    }
}

fn routed(id: &str, number: i64) -> ev::AppealRouted {
    ev::AppealRouted {
        appeal_id: id.into(),
        number,
        region_code: "41".into(),
        category_id: "food".into(),
        organization: Some(pb::OrganizationRef {
            id: "school-1".into(),
            short_name: "МБОУ СОШ №1".into(),
            ..Default::default()
        }),
        time_zone: "Asia/Kamchatka".into(),
        period_days: 30,
        ..Default::default()
    }
}

fn armed(id: &str, due: DateTime<Utc>) -> ev::SlaArmed {
    let deadline = ev::SlaDeadline {
        appeal_id: id.into(),
        ticket_id: format!("t-{id}"),
        organization_id: "school-1".into(),
        region_code: "41".into(),
        clock: ev::SlaClock::Answer as i32,
        due: ts(due),
        time_zone: "Asia/Kamchatka".into(),
        round: 1,
        ..Default::default()
    };
    ev::SlaArmed { deadline: Some(deadline), at: ts(Utc::now()) }
}

fn at(event: ev::TicketStatusChanged, when: DateTime<Utc>) -> ev::TicketStatusChanged {
    ev::TicketStatusChanged { at: ts(when), number: 1001, ..event }
}

#[tokio::test]
async fn letters_keep_the_order_of_the_statuses_on_postgres() {
    let db = postgres_db("notify", &pos_notify::MIGRATIONS).await;
    letters_keep_the_order_of_the_statuses(&db).await;
}

#[tokio::test]
async fn letters_keep_the_order_of_the_statuses_on_sqlite() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    letters_keep_the_order_of_the_statuses(&db).await;
}

async fn letters_keep_the_order_of_the_statuses(db: &Db) {
    let sink = SmtpSink::start();
    let email = format!("applicant@{}", unique_domain());
    let relay = Arc::new(Hiccups {
        relay: sink.mailer(),
        refused: "зарегистрировано",
        failures: Mutex::new(2),
        accepted: Mutex::new(Vec::new()),
    });
    let wake = Arc::new(Wake::default());
    // "Новое" too, to see it arrive late.
    let mut planner = planner(db, wake.clone(), StaticDirectory::default());
    planner.letters = Letters::new(&["registered", "created", "taken_in_work", "information_requested"]).unwrap();
    let sender = RunningSender::start(db, relay.clone(), wake, sender_config());

    let id = uuid::Uuid::now_v7().to_string();
    let id = id.as_str();
    let t0 = Utc::now();
    let step = |n: i64| t0 + chrono::Duration::seconds(n);
    deliver(
        db,
        &planner,
        &ev::AppealReceived { registered_at: ts(t0), number: 1001, ..received(id, 1001, &email) },
        id,
    )
    .await;
    deliver(db, &planner, &routed(id, 1001), id).await;
    use ev::TicketAction as A;
    use pb::Folder as F;
    // Taken in work is handled before the appeal's arrival in New, and before its deadline is known.
    deliver(db, &planner, &at(status(id, A::TakenInWork, F::New, F::InWork, ""), step(2)), id).await;
    deliver(db, &planner, &at(status(id, A::Created, F::Unspecified, F::New, ""), step(1)), id).await;
    let due = t0 + chrono::Duration::days(10);
    deliver(db, &planner, &armed(id, due), id).await;
    let asked = status(id, A::InformationRequested, F::InWork, F::InWork, "Уточните номер класса");
    deliver(db, &planner, &at(asked, step(3)), id).await;

    let expected = [
        "Сообщение №1001 зарегистрировано",
        "Статус сообщения №1001: В работе",
        "По сообщению №1001 нужна дополнительная информация",
    ];
    eventually(Duration::from_secs(30), "the letters arrived", || {
        std::future::ready(relay.accepted.lock().unwrap().len() >= expected.len())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The registration was refused twice, and the later letters waited for it; "Новое", older
    // than "В работе" already planned, is not told after it.
    assert_eq!(*relay.accepted.lock().unwrap(), expected);
    let bodies: Vec<(String, String)> = sink.messages(&email).iter().map(|m| decoded(m)).collect();
    assert_eq!(bodies.len(), expected.len());
    let (_, in_work) = bodies.iter().find(|(subject, _)| subject == expected[1]).unwrap();
    // Planned before the deadline was known: the line is left out, never "—".
    assert!(!in_work.contains("Плановый срок") && !in_work.contains('—'), "{in_work}");
    assert!(in_work.contains("Категория: Питание в школе."), "{in_work}");
    sender.stop().await;
}

#[tokio::test]
async fn the_applicant_hears_of_the_chosen_steps_only_on_postgres() {
    let db = postgres_db("notify", &pos_notify::MIGRATIONS).await;
    the_applicant_hears_of_the_chosen_steps_only(&db).await;
}

#[tokio::test]
async fn the_applicant_hears_of_the_chosen_steps_only_on_sqlite() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    the_applicant_hears_of_the_chosen_steps_only(&db).await;
}

async fn the_applicant_hears_of_the_chosen_steps_only(db: &Db) {
    let sink = SmtpSink::start();
    let email = format!("applicant@{}", unique_domain());
    let wake = Arc::new(Wake::default());
    let mut planner = planner(db, wake.clone(), StaticDirectory::default());
    // A deployment whose applicants hear of their registration and of the answer going to the head.
    planner.letters = Letters::new(&["registered", "sent_for_approval"]).unwrap();
    let sender = RunningSender::start(db, sink.mailer(), wake, sender_config());

    let id = uuid::Uuid::now_v7().to_string();
    let id = id.as_str();
    let t0 = Utc::now();
    let step = |n: i64| t0 + chrono::Duration::seconds(n);
    deliver(db, &planner, &ev::AppealReceived { registered_at: ts(t0), ..received(id, 1001, &email) }, id).await;
    deliver(db, &planner, &routed(id, 1001), id).await;
    let due = t0 + chrono::Duration::days(30);
    deliver(db, &planner, &armed(id, due), id).await;
    use ev::TicketAction as A;
    use pb::Folder as F;
    for (n, event) in [
        status(id, A::Created, F::Unspecified, F::New, ""),
        status(id, A::TakenInWork, F::New, F::InWork, ""),
        status(id, A::ExecutorAssigned, F::InWork, F::InWork, ""),
        status(id, A::InformationRequested, F::InWork, F::InWork, "Уточните"),
        status(id, A::SentForApproval, F::InWork, F::SentForApproval, ""),
        status(id, A::ReturnedForRework, F::SentForApproval, F::InWork, ""),
    ]
    .into_iter()
    .enumerate()
    {
        deliver(db, &planner, &at(event, step(n as i64 + 1)), id).await;
    }
    let answer = ev::TicketAnswerApproved {
        appeal_id: id.into(),
        number: 1001,
        organization_id: "school-1".into(),
        approved_at: ts(step(10)),
        text: "Ответ".into(),
        ..Default::default()
    };
    deliver(db, &planner, &answer, id).await;

    eventually(Duration::from_secs(30), "the letters arrived", || std::future::ready(sink.messages(&email).len() >= 2))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut subjects: Vec<String> = sink.messages(&email).iter().map(|m| decoded(m).0).collect();
    subjects.sort();
    assert_eq!(subjects, ["Сообщение №1001 зарегистрировано", "Статус сообщения №1001: Ответ на утверждении"]);
    sender.stop().await;
}

#[tokio::test]
async fn the_applicant_hears_of_an_escalation_in_its_own_words_on_postgres() {
    let db = postgres_db("notify", &pos_notify::MIGRATIONS).await;
    the_applicant_hears_of_an_escalation_in_its_own_words(&db).await;
}

#[tokio::test]
async fn the_applicant_hears_of_an_escalation_in_its_own_words_on_sqlite() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    the_applicant_hears_of_an_escalation_in_its_own_words(&db).await;
}

/// An escalation's opening, its request for information and its result each make a letter of
/// their own (the status change an incident step also publishes makes none); the applicant's
/// own steps and the line's internal ones make none; a deployment may leave any of them out.
async fn the_applicant_hears_of_an_escalation_in_its_own_words(db: &Db) {
    let sink = SmtpSink::start();
    let email = format!("applicant@{}", unique_domain());
    let wake = Arc::new(Wake::default());
    let planner = planner(db, wake.clone(), StaticDirectory::default());
    let sender = RunningSender::start(db, sink.mailer(), wake, sender_config());

    let id = uuid::Uuid::now_v7().to_string();
    let id = id.as_str();
    let t0 = Utc::now();
    let step = |n: i64| t0 + chrono::Duration::seconds(n);
    deliver(db, &planner, &ev::AppealReceived { registered_at: ts(t0), ..received(id, 1001, &email) }, id).await;
    deliver(db, &planner, &routed(id, 1001), id).await;
    use ev::IncidentStep as S;
    let incident = |n: i64, step_kind: S, comment: &str| ev::TicketIncidentChanged {
        incident_id: "i-1".into(),
        ticket_id: format!("t-{id}"),
        appeal_id: id.into(),
        number: 1001,
        organization_id: "school-1".into(),
        organization_name: "МБОУ СОШ №1".into(),
        region_code: "41".into(),
        step: step_kind as i32,
        kind: "federal_supervisor".into(),
        handler_organization_id: "rosobrnadzor".into(),
        handler_name: "Рособрнадзор".into(),
        subject: "Проверка данных аттестата в ФИС ФРДО".into(),
        comment: comment.into(),
        at: ts(step(n)),
        ..Default::default()
    };
    use ev::TicketAction as A;
    use pb::Folder as F;
    // The status change an incident step publishes beside it: the incident's letter tells it.
    let beside = ev::TicketStatusChanged {
        incident_id: "i-1".into(),
        ..at(status(id, A::InformationRequested, F::InWork, F::InWork, "Пришлите копию аттестата"), step(2))
    };
    for (event, n) in [
        (incident(1, S::Opened, ""), 1),
        (incident(2, S::InformationRequested, "Пришлите копию аттестата"), 2),
        (incident(3, S::InformationReceived, "Копия во вложении"), 3),
        (incident(4, S::Resolved, "Данные исправлены"), 4),
        (incident(5, S::ResultRejected, "Не исправлено"), 5),
        (incident(6, S::ResultConfirmed, ""), 6),
    ] {
        deliver(db, &planner, &event, id).await;
        if n == 2 {
            deliver(db, &planner, &beside, id).await;
        }
    }
    let expected = [
        "Сообщение №1001 зарегистрировано",
        "По сообщению №1001 направлен запрос: Рособрнадзор",
        "По сообщению №1001 нужна информация от вас",
        "По сообщению №1001 получен результат: Рособрнадзор",
    ];
    eventually(Duration::from_secs(30), "the letters arrived", || {
        std::future::ready(sink.messages(&email).len() >= expected.len())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let letters: Vec<(String, String)> = sink.messages(&email).iter().map(|m| decoded(m)).collect();
    let mut subjects: Vec<&str> = letters.iter().map(|(subject, _)| subject.as_str()).collect();
    subjects.sort();
    let mut sorted = expected.to_vec();
    sorted.sort();
    assert_eq!(subjects, sorted);
    let body = |subject: &str| letters.iter().find(|(s, _)| s == subject).map(|(_, b)| b.clone()).unwrap();
    assert!(body(expected[1]).contains("Тема запроса: Проверка данных аттестата в ФИС ФРДО"));
    assert!(body(expected[2]).contains("Что нужно уточнить: Пришлите копию аттестата"));
    let result = body(expected[3]);
    assert!(result.contains("Данные исправлены") && result.contains("отклоните его и укажите причину"), "{result}");

    // A deployment that leaves the opening out: the applicant hears of what they act on only.
    let mut quiet = planner;
    quiet.letters = Letters::new(&["incident_information_requested", "incident_resolved"]).unwrap();
    let other = uuid::Uuid::now_v7().to_string();
    let other = other.as_str();
    let email2 = format!("second@{}", unique_domain());
    deliver(db, &quiet, &ev::AppealReceived { registered_at: ts(t0), ..received(other, 1002, &email2) }, other).await;
    deliver(db, &quiet, &routed(other, 1002), other).await;
    let opened = ev::TicketIncidentChanged { appeal_id: other.into(), number: 1002, ..incident(1, S::Opened, "") };
    deliver(db, &quiet, &opened, other).await;
    let resolved =
        ev::TicketIncidentChanged { appeal_id: other.into(), number: 1002, ..incident(2, S::Resolved, "Готово") };
    deliver(db, &quiet, &resolved, other).await;
    eventually(Duration::from_secs(30), "the second applicant's letter", || {
        std::future::ready(!sink.messages(&email2).is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let subjects: Vec<String> = sink.messages(&email2).iter().map(|m| decoded(m).0).collect();
    assert_eq!(subjects, ["По сообщению №1002 получен результат: Рособрнадзор"]);
    sender.stop().await;
}

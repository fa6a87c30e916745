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

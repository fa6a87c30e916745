//! From events to ledger rows: who must hear of this event, with what words. Runs inside the
//! consumer's inbox transaction, so an event's journal entry, the appeal facts it carries and
//! its deliveries commit together, once.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use pos_platform::consumer::{HandleError, Handler};
use pos_platform::db::{Dialect, RowExt, now_micros, to_micros};
use pos_platform::{Envelope, Tx};
use pos_proto::time::from_proto;
use pos_proto::v1 as pb;
use pos_proto::v1::events as ev;
use sqlx::Row;

use crate::Wake;
use crate::directory::Directory;
use crate::settings::{self, Kind, NotificationRule};
use crate::template::{Values, render};

/// The events notify journals (and so streams); the ones it mails about are a subset.
pub const EVENTS: [&str; 11] = [
    "appeal.received",
    "appeal.routed",
    "ticket.status_changed",
    "ticket.answer_approved",
    "ticket.reopened",
    "ticket.reroute_requested",
    "sla.armed",
    "sla.fast_track",
    "sla.warning",
    "sla.overdue",
    "sla.met",
];

/// Who of an "approval requested" notification's roles each stage asks.
const APPROVAL_ROLES: &[&str] = &["head"];
const AGREEMENT_ROLES: &[&str] = &["approver"];

pub const APPLICANT: &str = "applicant";
pub const ORGANIZATION: &str = "organization";

/// What notify knows of an appeal.
#[derive(Clone, Debug, Default)]
pub struct Appeal {
    pub appeal_id: String,
    pub number: i64,
    pub applicant_name: String,
    pub applicant_email: String,
    pub category_id: String,
    pub organization_id: String,
    pub organization_name: String,
    pub time_zone: String,
    pub created_at: i64,
    pub deadline: Option<i64>,
    pub execution_due: Option<i64>,
    pub status: String,
    pub received: bool,
}

impl Appeal {
    fn tz(&self) -> Tz {
        self.time_zone.parse().unwrap_or(Tz::Europe__Moscow)
    }

    /// In the appeal's zone once routing named it; before that (the registration e-mail) in
    /// Moscow time, said so, as the platform's applicants are used to.
    fn local(&self, micros: Option<i64>) -> String {
        let suffix = if self.time_zone.is_empty() { " (МСК)" } else { "" };
        micros
            .filter(|m| *m > 0)
            .map(|m| {
                let local = pos_platform::db::from_micros(m).with_timezone(&self.tz());
                format!("{}{suffix}", local.format("%d.%m.%Y %H:%M"))
            })
            .unwrap_or_default()
    }

    /// Every placeholder's value; what is not known yet renders as "—".
    pub fn values(&self) -> Values {
        let mut values = Values::default();
        let number = if self.number > 0 { self.number.to_string() } else { String::new() };
        values.set("number", number.clone());
        values.set("registration_number", number);
        values.set("category", self.category_id.clone());
        values.set("organization", self.organization_name.clone());
        values.set("created_at", self.local(Some(self.created_at)));
        values.set("registration_date", self.local(Some(self.created_at)));
        values.set("deadline", self.local(self.deadline));
        values.set("execution_due", self.local(self.execution_due));
        values.set("status", self.status.clone());
        values.set("applicant_name", self.applicant_name.clone());
        values
    }
}

async fn load_appeal(tx: &mut Tx, appeal_id: &str) -> Result<Option<Appeal>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT appeal_id, number, applicant_name, applicant_email, category_id, organization_id, organization_name, \
         time_zone, created_at, deadline, execution_due, status, received FROM appeals WHERE appeal_id = $1",
    )
    .bind(appeal_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| -> Result<Appeal, sqlx::Error> {
        Ok(Appeal {
            appeal_id: row.try_get("appeal_id")?,
            number: row.try_get("number")?,
            applicant_name: row.try_get("applicant_name")?,
            applicant_email: row.try_get("applicant_email")?,
            category_id: row.try_get("category_id")?,
            organization_id: row.try_get("organization_id")?,
            organization_name: row.try_get("organization_name")?,
            time_zone: row.try_get("time_zone")?,
            created_at: row.try_get("created_at")?,
            deadline: row.try_get("deadline")?,
            execution_due: row.try_get("execution_due")?,
            status: row.try_get("status")?,
            received: row.flag("received")?,
        })
    })
    .transpose()
}

/// An appeal whose earlier events notify has not processed yet: they are in the queue (the
/// consumer handles several at once), so try again shortly.
fn not_yet(appeal_id: &str, what: &str) -> HandleError {
    HandleError::Transient(anyhow::anyhow!("appeal {appeal_id} has no {what} yet"))
}

async fn require_appeal(tx: &mut Tx, appeal_id: &str, need_organization: bool) -> Result<Appeal, HandleError> {
    let appeal = load_appeal(tx, appeal_id).await?.ok_or_else(|| not_yet(appeal_id, "registration"))?;
    if !appeal.received {
        return Err(not_yet(appeal_id, "registration"));
    }
    if need_organization && appeal.organization_name.is_empty() {
        return Err(not_yet(appeal_id, "routing"));
    }
    Ok(appeal)
}

pub fn folder_label(folder: pb::Folder) -> &'static str {
    match folder {
        pb::Folder::Unspecified => "",
        pb::Folder::New => "Новое",
        pb::Folder::InWork => "В работе",
        pb::Folder::Returned => "На повторном рассмотрении",
        pb::Folder::Processed => "Обработано",
        pb::Folder::SentForApproval => "Ответ на утверждении",
        pb::Folder::ReturnedToCoordination => "Возвращено на координацию",
    }
}

fn answer_label(answer: ev::AnswerType) -> &'static str {
    match answer {
        ev::AnswerType::Unspecified => "",
        ev::AnswerType::Resolved => "Решено",
        ev::AnswerType::NotResolved => "Не решено",
        ev::AnswerType::Postponed => "Отложено",
        ev::AnswerType::Rejected => "Отклонено",
    }
}

/// A ledger row about to be written.
#[derive(Debug)]
struct Outgoing {
    audience: &'static str,
    organization_id: String,
    recipient: String,
    subject: String,
    body: String,
    status: &'static str,
    next_attempt_at: i64,
}

pub struct Planner {
    pub directory: Arc<dyn Directory>,
    pub wake: Arc<Wake>,
    pub dialect: Dialect,
}

struct Plan {
    organization_id: String,
    outgoing: Vec<Outgoing>,
}

impl Planner {
    fn applicant(&self, appeal: &Appeal, subject: &str, body: &str) -> Option<Outgoing> {
        if appeal.applicant_email.trim().is_empty() {
            return None;
        }
        let values = appeal.values();
        let greeting = if appeal.applicant_name.is_empty() {
            "Здравствуйте!".to_owned()
        } else {
            format!("Здравствуйте, {}!", appeal.applicant_name)
        };
        Some(Outgoing {
            audience: APPLICANT,
            organization_id: appeal.organization_id.clone(),
            recipient: appeal.applicant_email.trim().to_owned(),
            subject: render(subject, &values),
            body: format!("{greeting}\n\n{}\n\nС уважением, Платформа обратной связи\n", render(body, &values)),
            status: "pending",
            next_attempt_at: now_micros(),
        })
    }

    /// The organization's messages of `kind` for `appeal`, to every recipient its rules name.
    async fn organization(
        &self,
        tx: &mut Tx,
        kind: Kind,
        organization_id: &str,
        appeal: &Appeal,
        assignee: &str,
    ) -> Result<Vec<Outgoing>, HandleError> {
        self.organization_for(tx, kind, organization_id, appeal, assignee, None).await
    }

    /// As [`Self::organization`], asking only those of the rules' roles in `stage` (when given).
    async fn organization_for(
        &self,
        tx: &mut Tx,
        kind: Kind,
        organization_id: &str,
        appeal: &Appeal,
        assignee: &str,
        stage: Option<&[&str]>,
    ) -> Result<Vec<Outgoing>, HandleError> {
        let rules: Vec<NotificationRule> = settings::rules(tx, organization_id)
            .await?
            .into_iter()
            .filter(|rule| rule.kind == kind && rule.enabled)
            .collect();
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let org = settings::load_settings(&mut **tx, organization_id).await?;
        let now = Utc::now();
        // Urgent mail goes now; the rest waits out quiet hours or joins the daily digest.
        let (status, release) = if kind.urgent() {
            ("pending", now)
        } else if org.digest_at.is_some() {
            ("digest", now)
        } else {
            ("pending", org.release_at(now))
        };
        let values = appeal.values();
        let mut outgoing = Vec::new();
        for rule in rules {
            let staged = |role: &String| stage.is_none_or(|stage| stage.contains(&role.as_str()));
            // A rule that names roles, none of them asked at this stage, is not about this stage.
            if rule.addresses.is_empty() && !rule.roles.is_empty() && !rule.roles.iter().any(staged) {
                continue;
            }
            let mut recipients: Vec<String> = rule.addresses.clone();
            for role in &rule.roles {
                if !staged(role) {
                    continue;
                }
                let staff = if role == "assignee" {
                    if assignee.is_empty() {
                        continue;
                    }
                    let all = self.directory.staff(organization_id, "").await;
                    all.map(|all| all.into_iter().filter(|m| m.subject == assignee).collect::<Vec<_>>())
                } else {
                    self.directory.staff(organization_id, role).await
                };
                let staff = staff.map_err(|e| HandleError::Transient(e.into()))?;
                recipients.extend(staff.into_iter().map(|member| member.email));
            }
            // Nobody named (or nobody found): the organization's own address, as the seed's
            // "message arrived" notification does.
            if recipients.is_empty() {
                let email = self
                    .directory
                    .organization_email(organization_id)
                    .await
                    .map_err(|e| HandleError::Transient(e.into()))?;
                if !email.is_empty() {
                    recipients.push(email);
                }
            }
            let subject = render(&rule.name, &values);
            let body = render(&rule.template, &values);
            for recipient in recipients {
                let recipient = recipient.trim().to_lowercase();
                if recipient.is_empty() || outgoing.iter().any(|o: &Outgoing| o.recipient == recipient) {
                    continue;
                }
                outgoing.push(Outgoing {
                    audience: ORGANIZATION,
                    organization_id: organization_id.to_owned(),
                    recipient,
                    subject: subject.clone(),
                    body: body.clone(),
                    status,
                    next_attempt_at: to_micros(release),
                });
            }
        }
        Ok(outgoing)
    }

    async fn plan(&self, tx: &mut Tx, envelope: &Envelope) -> Result<Plan, HandleError> {
        let mut plan = Plan { organization_id: String::new(), outgoing: Vec::new() };
        match envelope.event() {
            "appeal.received" => {
                let event: ev::AppealReceived = envelope.decode()?;
                let applicant = event.applicant.unwrap_or_default();
                let registered = event.registered_at.as_ref().and_then(from_proto).map_or(0, to_micros);
                sqlx::query(
                    "INSERT INTO appeals (appeal_id, number, applicant_name, applicant_email, category_id, region_code, \
                     created_at, status, received) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (appeal_id) DO UPDATE SET number = excluded.number, applicant_name = excluded.applicant_name, \
                     applicant_email = excluded.applicant_email, category_id = excluded.category_id, \
                     region_code = excluded.region_code, created_at = excluded.created_at, received = excluded.received",
                )
                .bind(&event.appeal_id)
                .bind(event.number)
                .bind(&applicant.full_name)
                .bind(&applicant.email)
                .bind(&event.category_id)
                .bind(&event.region_code)
                .bind(registered)
                .bind("Зарегистрировано")
                .bind(true)
                .execute(&mut **tx)
                .await?;
                let appeal = require_appeal(tx, &event.appeal_id, false).await?;
                plan.outgoing.extend(self.applicant(
                    &appeal,
                    "Сообщение №{number} зарегистрировано",
                    "Ваше сообщение зарегистрировано {registration_date} под номером {registration_number}.\n\
                     Категория: {category}.\nО каждом изменении статуса мы сообщим по электронной почте.",
                ));
            }
            "appeal.routed" => {
                let event: ev::AppealRouted = envelope.decode()?;
                let organization = event.organization.unwrap_or_default();
                plan.organization_id = organization.id.clone();
                sqlx::query(
                    "INSERT INTO appeals (appeal_id, number, category_id, region_code, organization_id, organization_name, \
                     time_zone, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (appeal_id) DO UPDATE SET organization_id = excluded.organization_id, \
                     organization_name = excluded.organization_name, time_zone = excluded.time_zone",
                )
                .bind(&event.appeal_id)
                .bind(event.number)
                .bind(&event.category_id)
                .bind(&event.region_code)
                .bind(&organization.id)
                .bind(&organization.short_name)
                .bind(&event.time_zone)
                .bind("Зарегистрировано")
                .execute(&mut **tx)
                .await?;
            }
            "sla.armed" => {
                let event: ev::SlaArmed = envelope.decode()?;
                let deadline = event.deadline.unwrap_or_default();
                plan.organization_id = deadline.organization_id.clone();
                let due = deadline.due.as_ref().and_then(from_proto).map(to_micros);
                let column = match deadline.clock() {
                    ev::SlaClock::Answer => "deadline",
                    ev::SlaClock::Execution => "execution_due",
                    ev::SlaClock::Unspecified => return Ok(plan),
                };
                let appeal = require_appeal(tx, &deadline.appeal_id, true).await?;
                let sql = format!("UPDATE appeals SET {column} = $1 WHERE appeal_id = $2");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(due).bind(&deadline.appeal_id).execute(&mut **tx).await?;
                // The organization hears of a new message once its answer deadline is known, so
                // that "planned review deadline" is filled; once per (appeal, organization).
                if deadline.clock() == ev::SlaClock::Answer {
                    let first = sqlx::query(
                        "INSERT INTO arrivals (appeal_id, organization_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    )
                    .bind(&deadline.appeal_id)
                    .bind(&deadline.organization_id)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if first {
                        let appeal = Appeal { deadline: due, ..appeal };
                        plan.outgoing.extend(
                            self.organization(tx, Kind::MessageArrived, &deadline.organization_id, &appeal, "").await?,
                        );
                    }
                }
            }
            "ticket.status_changed" => {
                let event: ev::TicketStatusChanged = envelope.decode()?;
                plan.organization_id = event.organization_id.clone();
                let mut appeal = require_appeal(tx, &event.appeal_id, true).await?;
                let at = event.at.as_ref().and_then(from_proto).map_or_else(now_micros, to_micros);
                let label = match folder_label(event.to_folder()) {
                    "" => event.status.clone(),
                    label => label.to_owned(),
                };
                let execution_due = event.execution_due.as_ref().and_then(from_proto).map(to_micros);
                // Events of one appeal may be handled out of order: the latest status wins.
                sqlx::query(
                    "UPDATE appeals SET status = $1, status_at = $2, execution_due = COALESCE($3, execution_due) \
                     WHERE appeal_id = $4 AND status_at <= $2",
                )
                .bind(&label)
                .bind(at)
                .bind(execution_due)
                .bind(&event.appeal_id)
                .execute(&mut **tx)
                .await?;
                appeal.status = label;
                appeal.execution_due = execution_due.or(appeal.execution_due);
                use ev::TicketAction as A;
                match event.action() {
                    // These have mails of their own (answer ready, re-review opened).
                    A::Approved | A::RejectedByApplicant => {}
                    A::InformationRequested => {
                        let comment = if event.comment.is_empty() {
                            String::new()
                        } else {
                            format!("\n\nЧто нужно уточнить: {}", event.comment)
                        };
                        plan.outgoing.extend(self.applicant(
                            &appeal,
                            "По сообщению №{number} нужна дополнительная информация",
                            &format!(
                                "Для рассмотрения вашего сообщения №{{number}} организации «{{organization}}» нужна \
                                 дополнительная информация. Срок рассмотрения приостановлен до её получения.{}",
                                escape(&comment)
                            ),
                        ));
                    }
                    _ if event.from_folder != event.to_folder => {
                        plan.outgoing.extend(self.applicant(
                            &appeal,
                            "Статус сообщения №{number}: {status}",
                            "Статус вашего сообщения №{number} изменён: {status}.\n\
                             Организация: {organization}. Плановый срок рассмотрения: {deadline}.",
                        ));
                    }
                    _ => {}
                }
                // One type covers both stages; the stage picks who of the rule's roles is asked:
                // the head approves, an approver agrees.
                let stage = match event.action() {
                    A::SentForApproval => Some(APPROVAL_ROLES),
                    A::SentForAgreement => Some(AGREEMENT_ROLES),
                    _ => None,
                };
                if let Some(stage) = stage {
                    let org = event.organization_id.clone();
                    plan.outgoing.extend(
                        self.organization_for(tx, Kind::ApprovalRequested, &org, &appeal, "", Some(stage)).await?,
                    );
                }
            }
            "ticket.answer_approved" => {
                let event: ev::TicketAnswerApproved = envelope.decode()?;
                plan.organization_id = event.organization_id.clone();
                let appeal = require_appeal(tx, &event.appeal_id, true).await?;
                let kind = answer_label(event.answer_type());
                let result = if kind.is_empty() { String::new() } else { format!("Результат: {kind}.\n\n") };
                plan.outgoing.extend(self.applicant(
                    &appeal,
                    "Ответ на сообщение №{number} готов",
                    &format!(
                        "Организация «{{organization}}» подготовила ответ на ваше сообщение №{{number}}.\n\n{}{}\n\n\
                         Вы можете принять ответ и оценить его или отклонить с комментарием — тогда сообщение \
                         будет рассмотрено повторно.",
                        escape(&result),
                        escape(&event.text)
                    ),
                ));
            }
            "ticket.reopened" => {
                let event: ev::TicketReopened = envelope.decode()?;
                plan.organization_id = event.organization_id.clone();
                let mut appeal = require_appeal(tx, &event.appeal_id, true).await?;
                appeal.status = folder_label(pb::Folder::Returned).to_owned();
                plan.outgoing.extend(self.applicant(
                    &appeal,
                    "Сообщение №{number} направлено на повторное рассмотрение",
                    "Ваше сообщение №{number} направлено на повторное рассмотрение в организацию «{organization}». \
                     Мы сообщим, когда будет готов новый ответ.",
                ));
                let org = event.organization_id.clone();
                plan.outgoing.extend(self.organization(tx, Kind::ReturnedByApplicant, &org, &appeal, "").await?);
            }
            "sla.warning" | "sla.overdue" => {
                let (kind, deadline) = if envelope.event() == "sla.warning" {
                    (Kind::DeadlineWarning, envelope.decode::<ev::SlaWarning>()?.deadline)
                } else {
                    (Kind::Overdue, envelope.decode::<ev::SlaOverdue>()?.deadline)
                };
                let deadline = deadline.unwrap_or_default();
                plan.organization_id = deadline.organization_id.clone();
                let mut appeal = require_appeal(tx, &deadline.appeal_id, true).await?;
                let due = deadline.due.as_ref().and_then(from_proto).map(to_micros);
                match deadline.clock() {
                    ev::SlaClock::Execution => appeal.execution_due = due.or(appeal.execution_due),
                    ev::SlaClock::Answer | ev::SlaClock::Unspecified => appeal.deadline = due.or(appeal.deadline),
                }
                plan.outgoing.extend(
                    self.organization(tx, kind, &deadline.organization_id, &appeal, &deadline.assignee_id).await?,
                );
            }
            "ticket.reroute_requested" => {
                let event: ev::TicketRerouteRequested = envelope.decode()?;
                plan.organization_id = event.from_organization_id;
            }
            "sla.fast_track" => {
                plan.organization_id =
                    envelope.decode::<ev::SlaFastTrack>()?.deadline.unwrap_or_default().organization_id;
            }
            "sla.met" => {
                plan.organization_id = envelope.decode::<ev::SlaMet>()?.deadline.unwrap_or_default().organization_id;
            }
            other => tracing::debug!(event = other, "journaled without messages"),
        }
        Ok(plan)
    }
}

/// Free text from an event put into a template must not be read as placeholders.
fn escape(text: &str) -> String {
    text.replace('{', "(").replace('}', ")")
}

#[async_trait]
impl Handler for Planner {
    async fn handle(&self, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandleError> {
        let plan = self.plan(tx, envelope).await?;
        let appeal_id = envelope.appeal_id().unwrap_or_default().to_owned();
        let message_id = envelope.message_id.to_string();
        let now = now_micros();
        let mut written = 0;
        for outgoing in &plan.outgoing {
            written += sqlx::query(
                "INSERT INTO deliveries (id, message_id, appeal_id, organization_id, event, audience, channel, recipient, \
                 subject, body, status, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'email', $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (message_id, recipient, channel) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&message_id)
            .bind(&appeal_id)
            .bind(&outgoing.organization_id)
            .bind(envelope.event())
            .bind(outgoing.audience)
            .bind(&outgoing.recipient)
            .bind(&outgoing.subject)
            .bind(&outgoing.body)
            .bind(outgoing.status)
            .bind(now)
            .bind(outgoing.next_attempt_at)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        }
        // The journal's order is the stream's order: on PostgreSQL a sequence value taken by one
        // transaction may commit after a larger one, and a subscriber that already read the
        // larger would skip it. Holding this lock from taking the value to the commit makes
        // commit order equal sequence order. SQLite has one writer at a time anyway.
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.journal'))")
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO journal (message_id, event, region_code, appeal_id, organization_id, type_name, payload, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(&message_id)
        .bind(envelope.event())
        .bind(envelope.region())
        .bind(&appeal_id)
        .bind(&plan.organization_id)
        .bind(&envelope.type_name)
        .bind(envelope.payload.to_vec())
        .bind(to_micros(envelope.timestamp).min(now))
        .execute(&mut **tx)
        .await?;
        tracing::debug!(event = envelope.event(), deliveries = written, "event planned");
        // Not committed yet: the woken ones also poll, so an early wake-up costs one query.
        self.wake.wake();
        Ok(())
    }
}

/// For tests: when a time is shown in an appeal's zone.
pub fn local_time(at: DateTime<Utc>, time_zone: &str) -> String {
    Appeal { time_zone: time_zone.to_owned(), ..Appeal::default() }.local(Some(to_micros(at)))
}

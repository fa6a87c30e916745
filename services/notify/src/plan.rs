//! From events to ledger rows: who must hear of this event, with what words. Runs inside the
//! consumer's inbox transaction, so an event's journal entry, the appeal facts it carries and
//! its deliveries commit together, once.
//!
//! # Adding a notification
//!
//! A letter to the applicant is a [`Notice`] variant, its template and one line here:
//!
//! ```text
//! src/texts.rs, in `notices!`:          Withdrawn => "withdrawn.txt",
//! templates/applicant/withdrawn.txt:    Сообщение №{number} отозвано
//!                                       (a blank line)
//!                                       Ваше сообщение №{number} отозвано.
//! here, in the arm of its event:        if self.letters.allows("withdrawn") {
//!                                           let values = appeal.values(Reader::Applicant);
//!                                           self.tell(tx, &mut plan, &appeal, Notice::Withdrawn, &values, at).await?;
//!                                       }
//! src/letters.rs, in `known()`:         "withdrawn" (and in `DEFAULT` if every applicant wants it)
//! ```
//!
//! `at` is the moment the event tells of (not when it arrived): an applicant's letters go out in
//! that order, and one older than a letter already planned is not sent (see [`Planner::tell`]).
//!
//! A notification to an organization's staff is a [`Kind`] variant with its arm in
//! `Kind::profile` (wire value, urgency, default recipients, default template), that template
//! under `templates/organization/`, and one line here:
//! `plan.outgoing.extend(self.organization(tx, Kind::…, organization_id, &appeal, "", None).await?)`.
//!
//! An event to follow is a [`NotifyEvent`] variant: the queue binds it from there, and
//! [`Planner::plan`] does not compile until it has an arm.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pos_platform::consumer::{HandleError, Handler};
use pos_platform::db::{Dialect, now_micros, to_micros};
use pos_platform::{Envelope, Tx};
use pos_proto::time::from_proto;
use pos_proto::v1 as pb;
use pos_proto::v1::events as ev;

use crate::Wake;
use crate::appeal::{Appeal, Reader};
use crate::directory::Directory;
use crate::events::NotifyEvent;
use crate::letters::{self, Letters};
use crate::settings::{ASSIGNEE, Kind, NotificationRule};
use crate::store;
use crate::store::deliveries::NewDelivery;
use crate::store::journal::NewEntry;
use crate::template::{Values, render};
use crate::texts::{self, Notice};

/// Who of an "approval requested" notification's roles each stage asks.
const APPROVAL_ROLES: &[&str] = &["head"];
const AGREEMENT_ROLES: &[&str] = &["approver"];

pub const APPLICANT: &str = "applicant";
pub const ORGANIZATION: &str = "organization";

/// An appeal whose earlier events notify has not processed yet: they are in the queue (the
/// consumer handles several at once), so try again shortly. Retrying, not parking, is enough
/// here: every event notify follows is caused by `appeal.received` or `appeal.routed`, published
/// before it into this same queue, so the missing event is already ahead in the queue or in
/// another replica's hands, and the first retry (a second later) normally finds it applied.
fn not_yet(appeal_id: &str, what: &str) -> HandleError {
    HandleError::Transient(anyhow::anyhow!("appeal {appeal_id} has no {what} yet"))
}

async fn require_appeal(tx: &mut Tx, appeal_id: &str, need_organization: bool) -> Result<Appeal, HandleError> {
    let appeal = store::appeals::load(&mut **tx, appeal_id).await?.ok_or_else(|| not_yet(appeal_id, "registration"))?;
    if !appeal.received {
        return Err(not_yet(appeal_id, "registration"));
    }
    if need_organization && appeal.organization_name.is_empty() {
        return Err(not_yet(appeal_id, "routing"));
    }
    Ok(appeal)
}

/// What the applicant hears of a step in the ticket's workflow, if anything: a step the
/// deployment's [`Letters`] name, as a status change when the appeal changed folders. Whatever
/// step brings the appeal from New (or Returned) into In work, taking it in work or assigning an
/// executor, the applicant reads it as taken in work.
fn notice_of(action: ev::TicketAction, from: pb::Folder, to: pb::Folder, letters: &Letters) -> Option<Notice> {
    use ev::TicketAction as A;
    let entered_work = to == pb::Folder::InWork && matches!(from, pb::Folder::New | pb::Folder::Returned);
    let step = if entered_work { A::TakenInWork } else { action };
    if !letters.allows_step(step) {
        return None;
    }
    let folder_changed = from != to;
    match step {
        // These have letters of their own (answer ready, re-review opened).
        A::Approved | A::RejectedByApplicant => None,
        A::InformationRequested => Some(Notice::InformationRequested),
        // Any other step, when it moves the appeal to another folder.
        A::Unspecified
        | A::Created
        | A::TakenInWork
        | A::ExecutorAssigned
        | A::HandedOver
        | A::ReturnedToCoordinator
        | A::AnswerPrepared
        | A::SentForAgreement
        | A::Agreed
        | A::SentForApproval
        | A::ReturnedForRework
        | A::Redirected
        | A::ReturnedToCoordination
        | A::Rejected
        | A::InformationReceived
        | A::AcceptedByApplicant
        | A::ReviewStopped
        | A::Escalated => folder_changed.then_some(Notice::StatusChanged),
    }
}

/// One type covers both stages of an answer's sign-off; the stage picks who of the rule's
/// roles is asked: the head approves, an approver agrees.
fn approval_stage(action: ev::TicketAction) -> Option<&'static [&'static str]> {
    use ev::TicketAction as A;
    match action {
        A::SentForApproval => Some(APPROVAL_ROLES),
        A::SentForAgreement => Some(AGREEMENT_ROLES),
        A::Unspecified
        | A::Created
        | A::TakenInWork
        | A::ExecutorAssigned
        | A::HandedOver
        | A::ReturnedToCoordinator
        | A::AnswerPrepared
        | A::Agreed
        | A::ReturnedForRework
        | A::Approved
        | A::Redirected
        | A::ReturnedToCoordination
        | A::Rejected
        | A::InformationRequested
        | A::InformationReceived
        | A::AcceptedByApplicant
        | A::RejectedByApplicant
        | A::ReviewStopped
        | A::Escalated => None,
    }
}

/// Free text from an event placed in a letter: braces read as parentheses, as they always have.
fn escape(text: &str) -> String {
    text.replace('{', "(").replace('}', ")")
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
    /// The own time of what it tells.
    event_at: i64,
}

/// What an event causes: the organization it concerns (the stream filters by it) and its e-mails.
#[derive(Debug, Default)]
struct Plan {
    organization_id: String,
    outgoing: Vec<Outgoing>,
}

/// A staff e-mail's subject: the notification's name, then which message it is about (number and
/// category) unless the name already says it, so that ten of them waiting can be told apart.
fn staff_subject(name: &str, values: &Values) -> String {
    let subject = render(name, values);
    if name.replace(' ', "").contains("{number}") {
        return subject;
    }
    let number = values.get("number");
    match values.get("category") {
        "—" => format!("{subject}: №{number}"),
        category => format!("{subject}: №{number}, {category}"),
    }
}

pub struct Planner {
    pub directory: Arc<dyn Directory>,
    pub wake: Arc<Wake>,
    pub dialect: Dialect,
    /// Which letters applicants receive.
    pub letters: Letters,
    /// The applicant's link to the appeal's page in the registration letter; none without a
    /// public URL or a key.
    pub appeal_links: Option<AppealLinks>,
}

/// Signs the registration letter's link to the appeal's page (see [`pos_platform::appeal_link`]).
pub struct AppealLinks {
    public_url: String,
    key: pos_platform::appeal_link::LinkKey,
    ttl: chrono::Duration,
}

impl AppealLinks {
    pub fn new(config: &crate::NotifyConfig, auth: &pos_platform::config::AuthConfig) -> Option<AppealLinks> {
        let public_url = config.public_url.trim();
        if public_url.is_empty() {
            return None;
        }
        let Some(key) = pos_platform::appeal_link::LinkKey::from_config(config.appeal_link_key.as_ref(), auth) else {
            tracing::warn!(
                "no appeal links in the registration letters: set notify.appeal_link_key (and the web's \
                 web.citizen.appeal_link_key) or auth.hs256_secret"
            );
            return None;
        };
        let days = i64::try_from(config.appeal_link_days.max(1)).unwrap_or(365);
        Some(AppealLinks { public_url: public_url.to_owned(), key, ttl: chrono::Duration::days(days) })
    }

    /// The link for the applicant who submitted `event`; none for an appeal without an account
    /// (an operator's registration on someone's behalf).
    fn link(&self, event: &ev::AppealReceived) -> Option<String> {
        let subject = event.applicant.as_ref().map(|a| a.account_id.as_str()).filter(|s| !s.is_empty())?;
        let link = pos_platform::appeal_link::AppealLink {
            appeal_id: event.appeal_id.clone(),
            subject: subject.to_owned(),
            expires_at: (chrono::Utc::now() + self.ttl).timestamp(),
        };
        Some(pos_platform::appeal_link::url(&self.public_url, &self.key.sign(&link)))
    }
}

#[cfg(test)]
mod appeal_link_tests {
    use pos_platform::config::{AuthConfig, Secret};

    use super::*;

    /// The registration letter carries the applicant's link, which the web accepts for that
    /// appeal and subject; no account, no link; no public URL, no links at all.
    #[test]
    fn registration_letter_links_to_the_appeal_page() {
        let config = crate::NotifyConfig {
            public_url: "https://pos.example.ru/".into(),
            appeal_link_key: Some(Secret::new("k")),
            ..crate::NotifyConfig::default()
        };
        let links = AppealLinks::new(&config, &AuthConfig::default()).expect("configured");
        let mut event = ev::AppealReceived { appeal_id: "a-1".into(), number: 1001, ..Default::default() };
        assert_eq!(links.link(&event), None, "an appeal without an account gets no link");
        event.applicant = Some(pos_proto::v1::Applicant { account_id: "widget-ab".into(), ..Default::default() });
        let link = links.link(&event).expect("a link");
        let token = link.strip_prefix("https://pos.example.ru/appeal/").expect("under the public URL");
        let granted =
            pos_platform::appeal_link::LinkKey::new(b"k").verify(token, chrono::Utc::now().timestamp()).unwrap();
        assert_eq!((granted.appeal_id.as_str(), granted.subject.as_str()), ("a-1", "widget-ab"));

        let mut values = crate::template::Values::default();
        values.set("number", "1001");
        let (_, without) = crate::texts::letter(Notice::Registered, &values);
        assert!(!without.contains("/appeal/"), "{without}");
        values.set("appeal_link", link.clone());
        let (_, with) = crate::texts::letter(Notice::Registered, &values);
        assert!(with.contains(&format!("на странице сообщения (ссылка личная, не пересылайте её): {link}")), "{with}");

        let unset = crate::NotifyConfig::default();
        assert!(AppealLinks::new(&unset, &AuthConfig::default()).is_none());
    }
}

impl Planner {
    /// The letter `notice` to the applicant about what happened at `at`, when the appeal has an
    /// address. Events of one appeal may be handled out of order (several at once, retries):
    /// a letter about something older than a letter already planned is not written at all, as
    /// news older than what the applicant already read would mislead; the letters written go
    /// out in the order of `at` (see [`store::deliveries::claim`]).
    async fn tell(
        &self,
        tx: &mut Tx,
        plan: &mut Plan,
        appeal: &Appeal,
        notice: Notice,
        values: &Values,
        at: i64,
    ) -> Result<(), HandleError> {
        if appeal.applicant_email.trim().is_empty() {
            return Ok(());
        }
        if !store::appeals::advance_letter(&mut **tx, &appeal.appeal_id, at).await? {
            tracing::debug!(appeal_id = %appeal.appeal_id, ?notice, "the applicant already heard of something later");
            return Ok(());
        }
        let (subject, body) = texts::letter(notice, values);
        plan.outgoing.push(Outgoing {
            audience: APPLICANT,
            organization_id: appeal.organization_id.clone(),
            recipient: appeal.applicant_email.trim().to_owned(),
            subject,
            body,
            status: "pending",
            next_attempt_at: now_micros(),
            event_at: at,
        });
        Ok(())
    }

    /// The organization's messages of `kind` for `appeal`, to every recipient its rules name;
    /// with a `stage`, only to those of the rules' roles the stage asks.
    async fn organization(
        &self,
        tx: &mut Tx,
        kind: Kind,
        organization_id: &str,
        appeal: &Appeal,
        assignee: &str,
        stage: Option<&[&str]>,
    ) -> Result<Vec<Outgoing>, HandleError> {
        let rules: Vec<NotificationRule> = store::settings::rules(tx, organization_id)
            .await?
            .into_iter()
            .filter(|rule| rule.kind == kind && rule.enabled)
            .collect();
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let org = store::settings::load(&mut **tx, organization_id).await?;
        let now = Utc::now();
        // Urgent mail goes now; the rest waits out quiet hours or joins the daily digest.
        let (status, release) = if kind.urgent() {
            ("pending", now)
        } else if org.digest_at.is_some() {
            ("digest", now)
        } else {
            ("pending", org.release_at(now))
        };
        let values = appeal.values(Reader::Organization);
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
                let staff = if role == ASSIGNEE {
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
            let subject = staff_subject(&rule.name, &values);
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
                    event_at: to_micros(now),
                });
            }
        }
        Ok(outgoing)
    }

    async fn plan(&self, tx: &mut Tx, event: NotifyEvent) -> Result<Plan, HandleError> {
        let mut plan = Plan::default();
        match event {
            NotifyEvent::Received(event) => {
                let registered = event.registered_at.as_ref().and_then(from_proto).map_or(0, to_micros);
                store::appeals::record_received(&mut **tx, &event, registered, texts::REGISTERED).await?;
                let appeal = require_appeal(tx, &event.appeal_id, false).await?;
                if self.letters.allows(letters::REGISTERED) {
                    let mut values = appeal.values(Reader::Applicant);
                    if let Some(link) = self.appeal_links.as_ref().and_then(|links| links.link(&event)) {
                        values.set("appeal_link", link);
                    }
                    self.tell(tx, &mut plan, &appeal, Notice::Registered, &values, registered).await?;
                }
            }
            NotifyEvent::Routed(event) => {
                plan.organization_id = event.organization.as_ref().map(|o| o.id.clone()).unwrap_or_default();
                store::appeals::record_routed(&mut **tx, &event, texts::REGISTERED).await?;
            }
            NotifyEvent::SlaArmed(event) => self.armed(tx, event.deadline.unwrap_or_default(), &mut plan).await?,
            NotifyEvent::StatusChanged(event) => self.status_changed(tx, event, &mut plan).await?,
            NotifyEvent::AnswerApproved(event) => {
                plan.organization_id = event.organization_id.clone();
                let appeal = require_appeal(tx, &event.appeal_id, true).await?;
                if self.letters.allows(letters::ANSWER_READY) {
                    let mut values = appeal.values(Reader::Applicant);
                    values.set("result", texts::answer_label(event.answer_type()));
                    values.set("answer", escape(&event.text));
                    let at = event_time(event.approved_at.as_ref().and_then(from_proto));
                    self.tell(tx, &mut plan, &appeal, Notice::AnswerReady, &values, at).await?;
                }
            }
            NotifyEvent::Reopened(event) => {
                plan.organization_id = event.organization_id.clone();
                let mut appeal = require_appeal(tx, &event.appeal_id, true).await?;
                appeal.status = texts::folder_label(pb::Folder::Returned).to_owned();
                if self.letters.allows(letters::REOPENED) {
                    let values = appeal.values(Reader::Applicant);
                    let at = event_time(event.reopened_at.as_ref().and_then(from_proto));
                    self.tell(tx, &mut plan, &appeal, Notice::Reopened, &values, at).await?;
                }
                let organization = &event.organization_id;
                plan.outgoing
                    .extend(self.organization(tx, Kind::ReturnedByApplicant, organization, &appeal, "", None).await?);
            }
            NotifyEvent::Warning(event) => {
                self.deadline_alert(tx, Kind::DeadlineWarning, event.deadline.unwrap_or_default(), &mut plan).await?;
            }
            NotifyEvent::Overdue(event) => {
                self.deadline_alert(tx, Kind::Overdue, event.deadline.unwrap_or_default(), &mut plan).await?;
            }
            NotifyEvent::IncidentChanged(event) => self.incident_changed(tx, event, &mut plan).await?,
            // Journaled for the stream; nobody is mailed.
            NotifyEvent::RerouteRequested(event) => plan.organization_id = event.from_organization_id,
            NotifyEvent::FastTrack(event) => plan.organization_id = event.deadline.unwrap_or_default().organization_id,
            NotifyEvent::Met(event) => plan.organization_id = event.deadline.unwrap_or_default().organization_id,
        }
        Ok(plan)
    }

    /// A deadline set or moved.
    async fn armed(&self, tx: &mut Tx, deadline: ev::SlaDeadline, plan: &mut Plan) -> Result<(), HandleError> {
        plan.organization_id = deadline.organization_id.clone();
        let due = deadline.due.as_ref().and_then(from_proto).map(to_micros);
        match deadline.clock() {
            ev::SlaClock::Unspecified => {}
            ev::SlaClock::Execution => {
                require_appeal(tx, &deadline.appeal_id, true).await?;
                store::appeals::set_execution_due(&mut **tx, &deadline.appeal_id, due).await?;
            }
            ev::SlaClock::Answer => {
                let appeal = require_appeal(tx, &deadline.appeal_id, true).await?;
                store::appeals::set_deadline(&mut **tx, &deadline.appeal_id, due).await?;
                // The organization hears of a new message once its answer deadline is known, so
                // that "planned review deadline" is filled; once per (appeal, organization).
                if store::appeals::first_arrival(&mut **tx, &deadline.appeal_id, &deadline.organization_id).await? {
                    let appeal = Appeal { deadline: due, ..appeal };
                    let organization = &deadline.organization_id;
                    plan.outgoing
                        .extend(self.organization(tx, Kind::MessageArrived, organization, &appeal, "", None).await?);
                }
            }
        }
        Ok(())
    }

    async fn status_changed(
        &self,
        tx: &mut Tx,
        event: ev::TicketStatusChanged,
        plan: &mut Plan,
    ) -> Result<(), HandleError> {
        plan.organization_id = event.organization_id.clone();
        let mut appeal = require_appeal(tx, &event.appeal_id, true).await?;
        let at = event_time(event.at.as_ref().and_then(from_proto));
        let label = match texts::folder_label(event.to_folder()) {
            "" => event.status.clone(),
            label => label.to_owned(),
        };
        let execution_due = event.execution_due.as_ref().and_then(from_proto).map(to_micros);
        store::appeals::update_status(&mut **tx, &event.appeal_id, &label, at, execution_due).await?;
        appeal.status = label;
        appeal.execution_due = execution_due.or(appeal.execution_due);
        // Ticketing may have heard of the deadline before this consumer's own `sla.armed` came:
        // the letter names it either way (sla.armed stores it when it comes).
        if appeal.deadline.is_none() {
            appeal.deadline = event.answer_due.as_ref().and_then(from_proto).map(to_micros);
        }
        // An escalation's step: the applicant hears of it from `ticket.incident_changed`.
        let notice = if event.incident_id.is_empty() {
            notice_of(event.action(), event.from_folder(), event.to_folder(), &self.letters)
        } else {
            None
        };
        if let Some(notice) = notice {
            let mut values = appeal.values(Reader::Applicant);
            values.set("comment", escape(&event.comment));
            self.tell(tx, plan, &appeal, notice, &values, at).await?;
        }
        if let Some(stage) = approval_stage(event.action()) {
            let organization = &event.organization_id;
            plan.outgoing
                .extend(self.organization(tx, Kind::ApprovalRequested, organization, &appeal, "", Some(stage)).await?);
        }
        Ok(())
    }

    /// An escalation's step: the applicant hears that it was opened, that its handling line
    /// needs information from them, and its result with how to confirm or reject it.
    async fn incident_changed(
        &self,
        tx: &mut Tx,
        event: ev::TicketIncidentChanged,
        plan: &mut Plan,
    ) -> Result<(), HandleError> {
        use ev::IncidentStep as S;
        plan.organization_id = event.organization_id.clone();
        let (notice, letter) = match event.step() {
            S::Opened => (Notice::IncidentOpened, letters::INCIDENT_OPENED),
            S::InformationRequested => (Notice::IncidentInformationRequested, letters::INCIDENT_INFORMATION_REQUESTED),
            S::Resolved => (Notice::IncidentResolved, letters::INCIDENT_RESOLVED),
            // The applicant did these themselves, or they are the line's internal steps.
            S::Unspecified | S::Escalated | S::InformationReceived | S::ResultConfirmed | S::ResultRejected => {
                return Ok(());
            }
        };
        if !self.letters.allows(letter) {
            return Ok(());
        }
        let appeal = require_appeal(tx, &event.appeal_id, true).await?;
        let mut values = appeal.values(Reader::Applicant);
        values.set("handler", escape(&event.handler_name));
        // What it is about when opened; the result when resolved; what is asked otherwise.
        let (word, text) = match notice {
            Notice::IncidentOpened => ("comment", &event.subject),
            Notice::IncidentResolved => ("answer", &event.comment),
            Notice::IncidentInformationRequested
            | Notice::Registered
            | Notice::StatusChanged
            | Notice::InformationRequested
            | Notice::AnswerReady
            | Notice::Reopened => ("comment", &event.comment),
        };
        values.set(word, escape(text));
        let at = event_time(event.at.as_ref().and_then(from_proto));
        self.tell(tx, plan, &appeal, notice, &values, at).await
    }

    /// A deadline close or passed: the organization's staff hear of it.
    async fn deadline_alert(
        &self,
        tx: &mut Tx,
        kind: Kind,
        deadline: ev::SlaDeadline,
        plan: &mut Plan,
    ) -> Result<(), HandleError> {
        plan.organization_id = deadline.organization_id.clone();
        let mut appeal = require_appeal(tx, &deadline.appeal_id, true).await?;
        let due = deadline.due.as_ref().and_then(from_proto).map(to_micros);
        match deadline.clock() {
            ev::SlaClock::Execution => appeal.execution_due = due.or(appeal.execution_due),
            ev::SlaClock::Answer | ev::SlaClock::Unspecified => appeal.deadline = due.or(appeal.deadline),
        }
        let organization = &deadline.organization_id;
        plan.outgoing.extend(self.organization(tx, kind, organization, &appeal, &deadline.assignee_id, None).await?);
        Ok(())
    }
}

#[async_trait]
impl Handler for Planner {
    type Event = NotifyEvent;

    async fn handle(&self, tx: &mut Tx, event: NotifyEvent, envelope: &Envelope) -> Result<(), HandleError> {
        let plan = self.plan(tx, event).await?;
        let appeal_id = envelope.appeal_id().unwrap_or_default();
        let message_id = envelope.message_id.to_string();
        let now = now_micros();
        // The e-mails go out later, from the ledger and outside this handling: each carries the
        // trace context here so that its sending joins the appeal's trace.
        let mut context = std::collections::BTreeMap::new();
        pos_platform::telemetry::inject_current(&mut context);
        let traceparent = context.remove(pos_platform::bus::HEADER_TRACEPARENT).unwrap_or_default();
        let mut written = 0;
        for outgoing in &plan.outgoing {
            let delivery = NewDelivery {
                message_id: &message_id,
                appeal_id,
                organization_id: &outgoing.organization_id,
                event: envelope.event(),
                audience: outgoing.audience,
                recipient: &outgoing.recipient,
                subject: &outgoing.subject,
                body: &outgoing.body,
                status: outgoing.status,
                created_at: now,
                next_attempt_at: outgoing.next_attempt_at,
                event_at: outgoing.event_at,
                traceparent: &traceparent,
            };
            written += store::deliveries::insert(&mut **tx, &delivery).await?;
        }
        let entry = NewEntry {
            message_id: &message_id,
            event: envelope.event(),
            region_code: envelope.region(),
            appeal_id,
            organization_id: &plan.organization_id,
            type_name: &envelope.type_name,
            payload: &envelope.payload,
            received_at: to_micros(envelope.timestamp).min(now),
        };
        store::journal::append(tx, self.dialect, &entry).await?;
        tracing::debug!(event = envelope.event(), deliveries = written, "event planned");
        // Not committed yet: the woken ones also poll, so an early wake-up costs one query.
        self.wake.wake();
        Ok(())
    }
}

/// The moment an event tells of; when it carries none, now.
fn event_time(at: Option<DateTime<Utc>>) -> i64 {
    at.map_or_else(now_micros, to_micros)
}

/// For tests: a time as `reader` reads it, for an appeal whose organization and applicant are in
/// `time_zone` (empty: unknown).
pub fn local_time(at: DateTime<Utc>, time_zone: &str, reader: Reader) -> String {
    let appeal =
        Appeal { time_zone: time_zone.to_owned(), applicant_time_zone: time_zone.to_owned(), ..Appeal::default() };
    appeal.local(Some(to_micros(at)), reader)
}

#[cfg(test)]
mod tests {
    use ev::TicketAction as A;
    use pb::Folder as F;

    use super::*;

    #[test]
    fn the_applicant_hears_of_the_appeal_entering_work_whichever_step_moved_it() {
        let letters = Letters::default();
        let told = |action, from, to| notice_of(action, from, to, &letters);
        assert_eq!(told(A::TakenInWork, F::New, F::InWork), Some(Notice::StatusChanged));
        assert_eq!(told(A::ExecutorAssigned, F::New, F::InWork), Some(Notice::StatusChanged));
        assert_eq!(told(A::TakenInWork, F::Returned, F::InWork), Some(Notice::StatusChanged));
        // Internal steps: an executor taking what the coordinator took, an assignment, rework.
        assert_eq!(told(A::TakenInWork, F::InWork, F::InWork), None);
        assert_eq!(told(A::ExecutorAssigned, F::InWork, F::InWork), None);
        assert_eq!(told(A::ReturnedForRework, F::SentForApproval, F::InWork), None);
        assert_eq!(told(A::SentForApproval, F::InWork, F::SentForApproval), None);
        assert_eq!(told(A::Created, F::Unspecified, F::New), None);
        assert_eq!(told(A::InformationRequested, F::InWork, F::InWork), Some(Notice::InformationRequested));
        assert_eq!(told(A::Rejected, F::New, F::Processed), Some(Notice::StatusChanged));
        assert_eq!(told(A::Approved, F::SentForApproval, F::Processed), None);
    }
}

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
//! here, in the arm of its event:        plan.applicant(&appeal, Notice::Withdrawn, &appeal.values());
//! ```
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
use crate::appeal::Appeal;
use crate::directory::Directory;
use crate::events::NotifyEvent;
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

/// What the applicant hears of a step in the ticket's workflow, if anything.
fn notice_of(action: ev::TicketAction, folder_changed: bool) -> Option<Notice> {
    use ev::TicketAction as A;
    match action {
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
}

/// What an event causes: the organization it concerns (the stream filters by it) and its e-mails.
#[derive(Debug, Default)]
struct Plan {
    organization_id: String,
    outgoing: Vec<Outgoing>,
}

impl Plan {
    /// The letter `notice` to the applicant, when the appeal has an address.
    fn applicant(&mut self, appeal: &Appeal, notice: Notice, values: &Values) {
        if appeal.applicant_email.trim().is_empty() {
            return;
        }
        let (subject, body) = texts::letter(notice, values);
        self.outgoing.push(Outgoing {
            audience: APPLICANT,
            organization_id: appeal.organization_id.clone(),
            recipient: appeal.applicant_email.trim().to_owned(),
            subject,
            body,
            status: "pending",
            next_attempt_at: now_micros(),
        });
    }
}

pub struct Planner {
    pub directory: Arc<dyn Directory>,
    pub wake: Arc<Wake>,
    pub dialect: Dialect,
}

impl Planner {
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

    async fn plan(&self, tx: &mut Tx, event: NotifyEvent) -> Result<Plan, HandleError> {
        let mut plan = Plan::default();
        match event {
            NotifyEvent::Received(event) => {
                let registered = event.registered_at.as_ref().and_then(from_proto).map_or(0, to_micros);
                store::appeals::record_received(&mut **tx, &event, registered, texts::REGISTERED).await?;
                let appeal = require_appeal(tx, &event.appeal_id, false).await?;
                plan.applicant(&appeal, Notice::Registered, &appeal.values());
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
                let mut values = appeal.values();
                values.set("result", texts::answer_label(event.answer_type()));
                values.set("answer", escape(&event.text));
                plan.applicant(&appeal, Notice::AnswerReady, &values);
            }
            NotifyEvent::Reopened(event) => {
                plan.organization_id = event.organization_id.clone();
                let mut appeal = require_appeal(tx, &event.appeal_id, true).await?;
                appeal.status = texts::folder_label(pb::Folder::Returned).to_owned();
                plan.applicant(&appeal, Notice::Reopened, &appeal.values());
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
        let at = event.at.as_ref().and_then(from_proto).map_or_else(now_micros, to_micros);
        let label = match texts::folder_label(event.to_folder()) {
            "" => event.status.clone(),
            label => label.to_owned(),
        };
        let execution_due = event.execution_due.as_ref().and_then(from_proto).map(to_micros);
        store::appeals::update_status(&mut **tx, &event.appeal_id, &label, at, execution_due).await?;
        appeal.status = label;
        appeal.execution_due = execution_due.or(appeal.execution_due);
        if let Some(notice) = notice_of(event.action(), event.from_folder != event.to_folder) {
            let mut values = appeal.values();
            values.set("comment", escape(&event.comment));
            plan.applicant(&appeal, notice, &values);
        }
        if let Some(stage) = approval_stage(event.action()) {
            let organization = &event.organization_id;
            plan.outgoing
                .extend(self.organization(tx, Kind::ApprovalRequested, organization, &appeal, "", Some(stage)).await?);
        }
        Ok(())
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

/// For tests: when a time is shown in an appeal's zone.
pub fn local_time(at: DateTime<Utc>, time_zone: &str) -> String {
    Appeal { time_zone: time_zone.to_owned(), ..Appeal::default() }.local(Some(to_micros(at)))
}

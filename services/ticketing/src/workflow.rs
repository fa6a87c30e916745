//! The ticket's workflow as a pure state machine: a state, a command, the caller's roles in, a
//! transition or a refusal out. Nothing here touches the database, so every legal transition and
//! every refusal is unit-tested below; the store only persists what [`decide`] returned.
//!
//! Three types carry the model:
//!
//! - [`Stage`] is where the ticket is, as a plain code: the database stores it (snake_case), and
//!   the folder and the card's status line are derived from it here, so they cannot disagree.
//! - [`State`] is the stage together with the answer *as that stage has it*. From a prepared
//!   answer on (answer prepared, on agreement, on approval, answered, returned, accepted, review
//!   stopped) the answer is part of the variant: "on approval without an answer" cannot be built,
//!   so `Approve` takes the answer out of `State::OnApproval` and cannot fail for want of one. The
//!   other stages may keep a draft an earlier round left behind (a rework, a request for
//!   information or a reassignment does not throw it away), which is an `Option`.
//! - [`Transition`] is the target state plus a list of [`Effect`]s: what else the command changes
//!   (the assignee, a deadline, a rating, a new review round) or asks of others (the approved
//!   answer goes out, routing takes the appeal elsewhere). The store applies each effect.
//!
//! A new command is one row of the `commands!` table (its data, roles, verb and event action)
//! and one arm of [`decide`]; the gRPC layer maps its request onto it.

use chrono::{DateTime, Utc};
use pos_platform::auth::Role;
use pos_proto::v1::events::{AnswerType, TicketAction};

use crate::folder::Folder;

/// Where a ticket is in its life, stored as its snake_case code. The folder and the card's status
/// line follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Stage {
    /// Routed in; the coordinator has not acted yet.
    New,
    /// Taken in work (by a coordinator, or by the assigned executor).
    InWork,
    /// An executor was assigned (or handed it over) and has not taken it in work yet.
    ExecutorAssigned,
    /// An answer draft exists.
    AnswerPrepared,
    /// The applicant was asked for more information; the answer clock is paused meanwhile (the
    /// SLA service pauses it on `ticket.status_changed` with INFORMATION_REQUESTED).
    InformationRequested,
    /// Waiting for the optional approver's agreement.
    OnAgreement,
    /// Waiting for the head's approval.
    OnApproval,
    /// The approved answer went out; the applicant may accept or reject it.
    Answered,
    /// The applicant rejected the answer: re-review.
    Returned,
    /// The applicant accepted the answer (final).
    Accepted,
    /// A curator stopped the re-review (final).
    ReviewStopped,
    /// The coordinator rejected the appeal with a reason (final).
    Rejected,
    /// Redirected to another organization; routing delivers it there (final here).
    Redirected,
    /// Returned to coordination, i.e. to the parent organization (final here).
    ReturnedToCoordination,
}

impl Stage {
    /// The stored code, e.g. `in_work`.
    pub fn code(self) -> &'static str {
        self.into()
    }

    /// The card's status line (`Ticket.status` and `TicketStatusChanged.status` on the wire, and
    /// what the applicant's view shows), e.g. "in work".
    pub fn label(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::InWork => "in work",
            Stage::ExecutorAssigned => "executor assigned",
            Stage::AnswerPrepared => "answer prepared",
            Stage::InformationRequested => "information requested",
            Stage::OnAgreement => "on agreement",
            Stage::OnApproval => "on approval",
            Stage::Answered => "answered",
            Stage::Returned => "returned for re-review",
            Stage::Accepted => "accepted by applicant",
            Stage::ReviewStopped => "re-review stopped",
            Stage::Rejected => "rejected",
            Stage::Redirected => "redirected",
            Stage::ReturnedToCoordination => "returned to coordination",
        }
    }

    pub fn folder(self) -> Folder {
        match self {
            Stage::New => Folder::New,
            Stage::InWork | Stage::ExecutorAssigned | Stage::AnswerPrepared | Stage::InformationRequested => {
                Folder::InWork
            }
            Stage::OnAgreement | Stage::OnApproval => Folder::SentForApproval,
            Stage::Returned => Folder::Returned,
            Stage::ReturnedToCoordination => Folder::ReturnedToCoordination,
            Stage::Answered | Stage::Accepted | Stage::ReviewStopped | Stage::Rejected | Stage::Redirected => {
                Folder::Processed
            }
        }
    }

    /// The appeal left this organization: nothing more happens to this ticket.
    pub fn is_final(self) -> bool {
        match self {
            Stage::Accepted
            | Stage::ReviewStopped
            | Stage::Rejected
            | Stage::Redirected
            | Stage::ReturnedToCoordination => true,
            Stage::New
            | Stage::InWork
            | Stage::ExecutorAssigned
            | Stage::AnswerPrepared
            | Stage::InformationRequested
            | Stage::OnAgreement
            | Stage::OnApproval
            | Stage::Answered
            | Stage::Returned => false,
        }
    }
}

/// A stage with the answer as that stage has it: the answer itself from a prepared answer on, an
/// optional draft before (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    New { draft: Option<Answer> },
    InWork { draft: Option<Answer> },
    ExecutorAssigned { draft: Option<Answer> },
    InformationRequested { draft: Option<Answer> },
    AnswerPrepared { answer: Answer },
    OnAgreement { answer: Answer },
    OnApproval { answer: Answer },
    Answered { answer: Answer },
    Returned { answer: Answer },
    Accepted { answer: Answer },
    ReviewStopped { answer: Answer },
    Rejected { draft: Option<Answer> },
    Redirected { draft: Option<Answer> },
    ReturnedToCoordination { draft: Option<Answer> },
}

impl State {
    /// The state of `stage` holding `answer`; `None` when the stage needs an answer and there is
    /// none (a stored row that breaks the workflow's invariant).
    pub fn new(stage: Stage, answer: Option<Answer>) -> Option<State> {
        let draft = answer;
        Some(match stage {
            Stage::New => State::New { draft },
            Stage::InWork => State::InWork { draft },
            Stage::ExecutorAssigned => State::ExecutorAssigned { draft },
            Stage::InformationRequested => State::InformationRequested { draft },
            Stage::AnswerPrepared => State::AnswerPrepared { answer: draft? },
            Stage::OnAgreement => State::OnAgreement { answer: draft? },
            Stage::OnApproval => State::OnApproval { answer: draft? },
            Stage::Answered => State::Answered { answer: draft? },
            Stage::Returned => State::Returned { answer: draft? },
            Stage::Accepted => State::Accepted { answer: draft? },
            Stage::ReviewStopped => State::ReviewStopped { answer: draft? },
            Stage::Rejected => State::Rejected { draft },
            Stage::Redirected => State::Redirected { draft },
            Stage::ReturnedToCoordination => State::ReturnedToCoordination { draft },
        })
    }

    pub fn stage(&self) -> Stage {
        match self {
            State::New { .. } => Stage::New,
            State::InWork { .. } => Stage::InWork,
            State::ExecutorAssigned { .. } => Stage::ExecutorAssigned,
            State::InformationRequested { .. } => Stage::InformationRequested,
            State::AnswerPrepared { .. } => Stage::AnswerPrepared,
            State::OnAgreement { .. } => Stage::OnAgreement,
            State::OnApproval { .. } => Stage::OnApproval,
            State::Answered { .. } => Stage::Answered,
            State::Returned { .. } => Stage::Returned,
            State::Accepted { .. } => Stage::Accepted,
            State::ReviewStopped { .. } => Stage::ReviewStopped,
            State::Rejected { .. } => Stage::Rejected,
            State::Redirected { .. } => Stage::Redirected,
            State::ReturnedToCoordination { .. } => Stage::ReturnedToCoordination,
        }
    }

    /// The answer, or the draft an earlier round left.
    pub fn answer(&self) -> Option<&Answer> {
        match self {
            State::New { draft }
            | State::InWork { draft }
            | State::ExecutorAssigned { draft }
            | State::InformationRequested { draft }
            | State::Rejected { draft }
            | State::Redirected { draft }
            | State::ReturnedToCoordination { draft } => draft.as_ref(),
            State::AnswerPrepared { answer }
            | State::OnAgreement { answer }
            | State::OnApproval { answer }
            | State::Answered { answer }
            | State::Returned { answer }
            | State::Accepted { answer }
            | State::ReviewStopped { answer } => Some(answer),
        }
    }

    /// The answer the applicant has received: approved and sent, in this round or in the round
    /// they sent back for re-review. Drafts and answers on agreement or approval are the
    /// organization's own until the head approves them.
    pub fn sent_answer(&self) -> Option<&Answer> {
        match self {
            State::Answered { answer }
            | State::Returned { answer }
            | State::Accepted { answer }
            | State::ReviewStopped { answer } => Some(answer),
            _ => None,
        }
    }
}

/// The answer's substance. Postponed carries its follow-up date and Rejected its basis, so an
/// answer missing either cannot be built. The stored name is snake_case.
#[derive(Clone, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum AnswerKind {
    Resolved,
    NotResolved,
    Postponed { follow_up_at: DateTime<Utc> },
    Rejected { basis: String },
}

impl AnswerKind {
    pub fn to_proto(&self) -> AnswerType {
        match self {
            AnswerKind::Resolved => AnswerType::Resolved,
            AnswerKind::NotResolved => AnswerType::NotResolved,
            AnswerKind::Postponed { .. } => AnswerType::Postponed,
            AnswerKind::Rejected { .. } => AnswerType::Rejected,
        }
    }

    /// The stored name, e.g. `not_resolved`.
    pub fn code(&self) -> &'static str {
        self.into()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub kind: AnswerKind,
    pub text: String,
    pub attachment_ids: Vec<String>,
}

/// An applicant's rating: 1..=5 by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rating(u8);

impl Rating {
    pub fn new(value: i32) -> Option<Rating> {
        u8::try_from(value).ok().filter(|v| (1..=5).contains(v)).map(Rating)
    }

    pub fn get(self) -> i32 {
        i32::from(self.0)
    }
}

/// Declares [`Command`] and [`CommandKind`] from one table, so that what defines a command sits
/// in one row: its data, the roles that may issue it, its history line's verb, and the action
/// `ticket.status_changed` reports. [`decide`] holds what it does.
macro_rules! commands {
    ($(
        $(#[$meta:meta])*
        $name:ident $({ $($field:ident: $type:ty),+ $(,)? })?
            => roles [$($role:ident),+], verb $verb:literal, action $action:ident;
    )+) => {
        /// What a caller asks to do with a ticket; the data each command needs travels with it.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Command {
            $($(#[$meta])* $name $({ $($field: $type),+ })?,)+
        }

        /// A command without its data: what the gRPC layer authorizes before it reads the
        /// request's body. Its name is the rpc's.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum CommandKind {
            $($name,)+
        }

        impl Command {
            pub fn kind(&self) -> CommandKind {
                match self {
                    $(Command::$name { .. } => CommandKind::$name,)+
                }
            }
        }

        impl CommandKind {
            /// The roles that may issue the command at all.
            pub fn roles(self) -> &'static [Role] {
                match self {
                    $(CommandKind::$name => &[$(Role::$role),+],)+
                }
            }

            /// The history line's verb.
            pub fn verb(self) -> &'static str {
                match self {
                    $(CommandKind::$name => $verb,)+
                }
            }

            /// What `ticket.status_changed` reports.
            pub fn action(self) -> TicketAction {
                match self {
                    $(CommandKind::$name => TicketAction::$action,)+
                }
            }

            /// The rpc's name in `pos.v1.TicketingService`.
            pub fn name(self) -> &'static str {
                match self {
                    $(CommandKind::$name => stringify!($name),)+
                }
            }
        }
    };
}

commands! {
    TakeInWork => roles [Coordinator, Executor], verb "taken in work", action TakenInWork;
    AssignExecutor { executor_id: String, execution_due: Option<DateTime<Utc>> }
        => roles [Coordinator, Curator], verb "executor assigned", action ExecutorAssigned;
    HandOver { executor_id: String } => roles [Executor], verb "handed over", action HandedOver;
    ReturnToCoordinator { comment: String }
        => roles [Executor], verb "returned to coordinator", action ReturnedToCoordinator;
    PrepareAnswer { answer: Answer } => roles [Coordinator, Executor], verb "answer prepared", action AnswerPrepared;
    /// Ask the applicant for more information (what is missing goes in the comment).
    RequestInformation { comment: String }
        => roles [Coordinator, Executor], verb "information requested", action InformationRequested;
    /// The information arrived (from the applicant, or recorded by staff).
    InformationReceived { comment: String }
        => roles [Coordinator, Executor, Applicant], verb "information received", action InformationReceived;
    SendForAgreement => roles [Coordinator, Executor], verb "sent for agreement", action SentForAgreement;
    Agree { comment: String } => roles [Approver], verb "agreed", action Agreed;
    SendForApproval => roles [Coordinator, Executor], verb "sent for approval", action SentForApproval;
    ReturnForRework { comment: String } => roles [Head, Approver], verb "returned for rework", action ReturnedForRework;
    /// The head approves, optionally with an edited answer.
    Approve { edited: Option<Answer> } => roles [Head], verb "approved", action Approved;
    Redirect { to_organization_id: String, reason: String } => roles [Coordinator], verb "redirected", action Redirected;
    ReturnToCoordination { reason: String }
        => roles [Coordinator], verb "returned to coordination", action ReturnedToCoordination;
    Reject { reason: String } => roles [Coordinator], verb "rejected", action Rejected;
    AcceptAnswer { rating: Rating } => roles [Applicant], verb "accepted by applicant", action AcceptedByApplicant;
    RejectAnswer { comment: String } => roles [Applicant], verb "rejected by applicant", action RejectedByApplicant;
    StopReview { comment: String } => roles [Curator], verb "re-review stopped", action ReviewStopped;
}

impl Command {
    /// The history line's verb; an edited approval says so.
    pub fn action_name(&self) -> &'static str {
        if let Command::Approve { edited: Some(_) } = self {
            return "edited and approved";
        }
        self.kind().verb()
    }
}

/// The ticket as the workflow sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub state: State,
    /// The executor it is with; `None` while it is with the coordinator.
    pub assignee_id: Option<String>,
}

/// Who is acting: the subject and the roles the token grants.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'a> {
    pub subject: &'a str,
    pub roles: &'a [Role],
}

impl Actor<'_> {
    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// What an accepted command changes beside the state, each applied by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The ticket is with this executor from now on; `None`: back with the coordinator.
    Assign(Option<String>),
    /// The executor's deadline for the assignment.
    SetExecutionDue(DateTime<Utc>),
    /// The applicant's rating of the accepted answer.
    Rate(Rating),
    /// The approved answer goes out (`ticket.answer_approved`); a postponed one leaves a reminder.
    ReleaseAnswer(Answer),
    /// A new review round starts (`ticket.reopened`): the answer clock starts over.
    Reopen,
    /// Routing should take the appeal elsewhere (`ticket.reroute_requested`): to this
    /// organization, or with `None` back up to the parent for coordination.
    Reroute { to_organization_id: Option<String> },
}

/// What the store must persist and publish for an accepted command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Stage,
    pub to: State,
    pub action: TicketAction,
    /// The history line's verb.
    pub history_action: &'static str,
    pub comment: String,
    pub effects: Vec<Effect>,
}

impl Transition {
    fn commented(self, comment: String) -> Transition {
        Transition { comment, ..self }
    }

    fn with(mut self, effect: Effect) -> Transition {
        self.effects.push(effect);
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The command does not apply in the ticket's current stage.
    #[error("{command} is not possible while the ticket is {}", .stage.label())]
    WrongStage { stage: Stage, command: &'static str },
    /// The caller's roles do not allow it.
    #[error("the caller's roles do not allow: {command}")]
    NotAllowed { command: &'static str },
    /// Only the assigned executor may do this.
    #[error("only the assigned executor may do this")]
    NotAssignee,
    /// Missing or malformed command data; `field` is the request's.
    #[error("{why}")]
    Invalid { field: &'static str, why: &'static str },
}

impl Refusal {
    /// Whether the refusal is about who the caller is (a security event), not about the ticket.
    pub fn is_denial(&self) -> bool {
        match self {
            Refusal::NotAllowed { .. } | Refusal::NotAssignee => true,
            Refusal::WrongStage { .. } | Refusal::Invalid { .. } => false,
        }
    }
}

/// Decides whether `command` is legal for `ticket` and `actor`, and what it changes.
pub fn decide(ticket: &Snapshot, command: Command, actor: Actor<'_>) -> Result<Transition, Refusal> {
    use State as S;
    let kind = command.kind();
    let name = command.action_name();
    if !kind.roles().iter().any(|r| actor.has(*r)) {
        return Err(Refusal::NotAllowed { command: name });
    }
    let stage = ticket.state.stage();
    let wrong = || Refusal::WrongStage { stage, command: name };
    // The stages that do not need an answer keep whatever draft there is.
    let draft = || ticket.state.answer().cloned();
    let to = |state: State| Transition {
        from: stage,
        to: state,
        action: kind.action(),
        history_action: name,
        comment: String::new(),
        effects: Vec::new(),
    };
    // An executor works only on what is assigned to them; a coordinator may act on any ticket of
    // the organization.
    let executor_only = !actor.has(Role::Coordinator) && actor.has(Role::Executor);
    let require_assignee = || {
        if executor_only && ticket.assignee_id.as_deref() != Some(actor.subject) {
            Err(Refusal::NotAssignee)
        } else {
            Ok(())
        }
    };
    let non_empty = |text: &str, field: &'static str, why: &'static str| {
        if text.trim().is_empty() { Err(Refusal::Invalid { field, why }) } else { Ok(()) }
    };
    match command {
        Command::TakeInWork => {
            if !matches!(stage, Stage::New | Stage::ExecutorAssigned | Stage::Returned) {
                return Err(wrong());
            }
            // An auto-rule may deliver a new ticket already addressed to an executor; an executor
            // takes only what is theirs, and takes it on.
            require_assignee()?;
            let taken = to(S::InWork { draft: draft() });
            Ok(if executor_only { taken.with(Effect::Assign(Some(actor.subject.to_owned()))) } else { taken })
        }
        Command::AssignExecutor { executor_id, execution_due } => {
            non_empty(&executor_id, "executor_id", "executor_id is required")?;
            if !matches!(
                stage,
                Stage::New | Stage::InWork | Stage::ExecutorAssigned | Stage::Returned | Stage::AnswerPrepared
            ) {
                return Err(wrong());
            }
            let assigned = to(S::ExecutorAssigned { draft: draft() }).with(Effect::Assign(Some(executor_id)));
            Ok(match execution_due {
                Some(due) => assigned.with(Effect::SetExecutionDue(due)),
                None => assigned,
            })
        }
        Command::HandOver { executor_id } => {
            non_empty(&executor_id, "executor_id", "executor_id is required")?;
            if !matches!(stage, Stage::InWork | Stage::ExecutorAssigned | Stage::AnswerPrepared) {
                return Err(wrong());
            }
            require_assignee()?;
            if ticket.assignee_id.as_deref() == Some(executor_id.as_str()) {
                return Err(Refusal::Invalid { field: "executor_id", why: "the ticket is already with this executor" });
            }
            Ok(to(S::ExecutorAssigned { draft: draft() }).with(Effect::Assign(Some(executor_id))))
        }
        Command::ReturnToCoordinator { comment } => {
            non_empty(&comment, "comment", "a comment is required")?;
            if !matches!(stage, Stage::InWork | Stage::ExecutorAssigned | Stage::AnswerPrepared) {
                return Err(wrong());
            }
            require_assignee()?;
            Ok(to(S::New { draft: draft() }).commented(comment).with(Effect::Assign(None)))
        }
        Command::PrepareAnswer { answer } => {
            non_empty(&answer.text, "answer.text", "the answer's text is required")?;
            if let AnswerKind::Rejected { basis } = &answer.kind {
                non_empty(basis, "answer.basis", "a rejected answer needs its basis")?;
            }
            if !matches!(stage, Stage::InWork | Stage::AnswerPrepared) {
                return Err(wrong());
            }
            require_assignee()?;
            Ok(to(S::AnswerPrepared { answer }))
        }
        Command::RequestInformation { comment } => {
            non_empty(&comment, "comment", "say what information is needed")?;
            if !matches!(stage, Stage::InWork | Stage::AnswerPrepared) {
                return Err(wrong());
            }
            require_assignee()?;
            Ok(to(S::InformationRequested { draft: draft() }).commented(comment))
        }
        Command::InformationReceived { comment } => {
            non_empty(&comment, "comment", "a comment is required")?;
            let S::InformationRequested { draft } = &ticket.state else { return Err(wrong()) };
            // Back to work; a draft written before the request stays.
            Ok(to(S::InWork { draft: draft.clone() }).commented(comment))
        }
        Command::SendForAgreement => {
            let S::AnswerPrepared { answer } = &ticket.state else { return Err(wrong()) };
            require_assignee()?;
            Ok(to(S::OnAgreement { answer: answer.clone() }))
        }
        Command::Agree { comment } => {
            let S::OnAgreement { answer } = &ticket.state else { return Err(wrong()) };
            Ok(to(S::OnApproval { answer: answer.clone() }).commented(comment))
        }
        Command::SendForApproval => {
            let S::AnswerPrepared { answer } = &ticket.state else { return Err(wrong()) };
            require_assignee()?;
            Ok(to(S::OnApproval { answer: answer.clone() }))
        }
        Command::ReturnForRework { comment } => {
            non_empty(&comment, "comment", "a comment is required")?;
            // The head returns from approval, the approver from agreement.
            let answer = match &ticket.state {
                S::OnApproval { answer } if actor.has(Role::Head) => answer,
                S::OnAgreement { answer } if actor.has(Role::Approver) => answer,
                S::OnApproval { .. } | S::OnAgreement { .. } => return Err(wrong()),
                S::New { .. }
                | S::InWork { .. }
                | S::ExecutorAssigned { .. }
                | S::InformationRequested { .. }
                | S::AnswerPrepared { .. }
                | S::Answered { .. }
                | S::Returned { .. }
                | S::Accepted { .. }
                | S::ReviewStopped { .. }
                | S::Rejected { .. }
                | S::Redirected { .. }
                | S::ReturnedToCoordination { .. } => return Err(wrong()),
            };
            // The draft stays so the executor reworks it rather than starting over.
            Ok(to(S::InWork { draft: Some(answer.clone()) }).commented(comment))
        }
        Command::Approve { edited } => {
            let S::OnApproval { answer } = &ticket.state else { return Err(wrong()) };
            if let Some(edited) = &edited {
                non_empty(&edited.text, "edited.text", "the answer's text is required")?;
            }
            let answer = edited.unwrap_or_else(|| answer.clone());
            Ok(to(S::Answered { answer: answer.clone() }).with(Effect::ReleaseAnswer(answer)))
        }
        Command::Redirect { to_organization_id, reason } => {
            non_empty(&to_organization_id, "to_organization_id", "to_organization_id is required")?;
            non_empty(&reason, "reason", "a reason is required")?;
            if !matches!(stage, Stage::New | Stage::InWork | Stage::ExecutorAssigned | Stage::Returned) {
                return Err(wrong());
            }
            let reroute = Effect::Reroute { to_organization_id: Some(to_organization_id) };
            Ok(to(S::Redirected { draft: draft() }).commented(reason).with(reroute))
        }
        Command::ReturnToCoordination { reason } => {
            // The request calls the reason its comment.
            non_empty(&reason, "comment", "a reason is required")?;
            if !matches!(stage, Stage::New | Stage::InWork | Stage::ExecutorAssigned | Stage::Returned) {
                return Err(wrong());
            }
            let reroute = Effect::Reroute { to_organization_id: None };
            Ok(to(S::ReturnedToCoordination { draft: draft() }).commented(reason).with(reroute))
        }
        Command::Reject { reason } => {
            non_empty(&reason, "comment", "a reason is required")?;
            if !matches!(stage, Stage::New | Stage::InWork | Stage::ExecutorAssigned) {
                return Err(wrong());
            }
            Ok(to(S::Rejected { draft: draft() }).commented(reason))
        }
        Command::AcceptAnswer { rating } => {
            let S::Answered { answer } = &ticket.state else { return Err(wrong()) };
            Ok(to(S::Accepted { answer: answer.clone() }).with(Effect::Rate(rating)))
        }
        Command::RejectAnswer { comment } => {
            non_empty(&comment, "comment", "a comment is required")?;
            let S::Answered { answer } = &ticket.state else { return Err(wrong()) };
            Ok(to(S::Returned { answer: answer.clone() }).commented(comment).with(Effect::Reopen))
        }
        Command::StopReview { comment } => {
            non_empty(&comment, "comment", "a comment is required")?;
            let S::Returned { answer } = &ticket.state else { return Err(wrong()) };
            Ok(to(S::ReviewStopped { answer: answer.clone() }).commented(comment))
        }
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    const COORDINATOR: Actor<'static> = Actor { subject: "coord", roles: &[Role::Coordinator] };
    const EXECUTOR: Actor<'static> = Actor { subject: "exec-1", roles: &[Role::Executor] };
    const OTHER_EXECUTOR: Actor<'static> = Actor { subject: "exec-2", roles: &[Role::Executor] };
    const HEAD: Actor<'static> = Actor { subject: "head", roles: &[Role::Head] };
    const APPROVER: Actor<'static> = Actor { subject: "approver", roles: &[Role::Approver] };
    const APPLICANT: Actor<'static> = Actor { subject: "citizen", roles: &[Role::Applicant] };
    const CURATOR: Actor<'static> = Actor { subject: "curator", roles: &[Role::Curator] };

    fn answer() -> Answer {
        Answer {
            kind: AnswerKind::Resolved, text: "Здравствуйте! Проблема решена.".into(), attachment_ids: vec![]
        }
    }

    /// A ticket in `stage`, with an answer only where the stage needs one.
    fn at(stage: Stage, assignee: Option<&str>) -> Snapshot {
        let state = State::new(stage, None).or_else(|| State::new(stage, Some(answer()))).expect("a state");
        Snapshot { state, assignee_id: assignee.map(str::to_owned) }
    }

    /// What the transition leaves: its state, and the assignee its effects name.
    fn after(ticket: &Snapshot, t: Transition) -> Snapshot {
        let mut assignee_id = ticket.assignee_id.clone();
        for effect in t.effects {
            if let Effect::Assign(assignee) = effect {
                assignee_id = assignee;
            }
        }
        Snapshot { state: t.to, assignee_id }
    }

    fn apply(ticket: &Snapshot, command: Command, actor: Actor<'_>) -> Snapshot {
        let t = decide(ticket, command, actor).expect("legal transition");
        assert_eq!(t.from, ticket.state.stage());
        after(ticket, t)
    }

    /// Every command, with valid data.
    fn all_commands() -> Vec<Command> {
        vec![
            Command::TakeInWork,
            Command::AssignExecutor { executor_id: "exec-1".into(), execution_due: None },
            Command::HandOver { executor_id: "exec-2".into() },
            Command::ReturnToCoordinator { comment: "not mine".into() },
            Command::PrepareAnswer { answer: answer() },
            Command::RequestInformation { comment: "the class number".into() },
            Command::InformationReceived { comment: "7B".into() },
            Command::SendForAgreement,
            Command::Agree { comment: String::new() },
            Command::SendForApproval,
            Command::ReturnForRework { comment: "more detail".into() },
            Command::Approve { edited: None },
            Command::Redirect { to_organization_id: "org-2".into(), reason: "their school".into() },
            Command::ReturnToCoordination { reason: "came by mistake".into() },
            Command::Reject { reason: "spam".into() },
            Command::AcceptAnswer { rating: Rating::new(5).unwrap() },
            Command::RejectAnswer { comment: "still broken".into() },
            Command::StopReview { comment: "answered in full".into() },
        ]
    }

    /// The legal (stage, command) pairs for an all-powerful actor who is also the assignee.
    fn legal(stage: Stage, command: &Command) -> bool {
        use Stage as S;
        match command {
            Command::TakeInWork => matches!(stage, S::New | S::Returned | S::ExecutorAssigned),
            Command::AssignExecutor { .. } => {
                matches!(stage, S::New | S::InWork | S::ExecutorAssigned | S::Returned | S::AnswerPrepared)
            }
            Command::HandOver { .. } | Command::ReturnToCoordinator { .. } => {
                matches!(stage, S::InWork | S::ExecutorAssigned | S::AnswerPrepared)
            }
            Command::PrepareAnswer { .. } => matches!(stage, S::InWork | S::AnswerPrepared),
            Command::RequestInformation { .. } => matches!(stage, S::InWork | S::AnswerPrepared),
            Command::InformationReceived { .. } => stage == S::InformationRequested,
            Command::SendForAgreement | Command::SendForApproval => stage == S::AnswerPrepared,
            Command::Agree { .. } => stage == S::OnAgreement,
            Command::ReturnForRework { .. } => matches!(stage, S::OnAgreement | S::OnApproval),
            Command::Approve { .. } => stage == S::OnApproval,
            Command::Redirect { .. } | Command::ReturnToCoordination { .. } => {
                matches!(stage, S::New | S::InWork | S::ExecutorAssigned | S::Returned)
            }
            Command::Reject { .. } => matches!(stage, S::New | S::InWork | S::ExecutorAssigned),
            Command::AcceptAnswer { .. } | Command::RejectAnswer { .. } => stage == S::Answered,
            Command::StopReview { .. } => stage == S::Returned,
        }
    }

    #[test]
    fn every_stage_and_command_pair_is_either_legal_or_refused_for_its_stage() {
        // With every role, the stage alone decides; the assignee is the actor.
        let roles = Role::ALL;
        let actor = Actor { subject: "exec-1", roles };
        for &stage in Stage::VARIANTS {
            for command in all_commands() {
                let expected = legal(stage, &command);
                let outcome = decide(&at(stage, Some("exec-1")), command.clone(), actor);
                match outcome {
                    Ok(t) => {
                        assert!(expected, "{command:?} must be refused in {stage:?}");
                        assert!(!t.from.is_final());
                    }
                    Err(Refusal::WrongStage { .. }) => assert!(!expected, "{command:?} must be legal in {stage:?}"),
                    Err(other) => panic!("{command:?} in {stage:?}: unexpected {other:?}"),
                }
            }
        }
    }

    #[test]
    fn final_stages_accept_nothing() {
        let roles = Role::ALL;
        let actor = Actor { subject: "exec-1", roles };
        for stage in Stage::VARIANTS.iter().copied().filter(|s| s.is_final()) {
            for command in all_commands() {
                assert!(decide(&at(stage, Some("exec-1")), command, actor).is_err());
            }
        }
    }

    #[test]
    fn the_whole_life_with_rework_and_re_review() {
        let mut t = at(Stage::New, None);
        let due = Utc::now();
        t = apply(&t, Command::AssignExecutor { executor_id: "exec-1".into(), execution_due: Some(due) }, COORDINATOR);
        assert_eq!((t.state.stage(), t.assignee_id.as_deref()), (Stage::ExecutorAssigned, Some("exec-1")));
        t = apply(&t, Command::TakeInWork, EXECUTOR);
        t = apply(&t, Command::RequestInformation { comment: "which class?".into() }, EXECUTOR);
        assert_eq!((t.state.stage(), t.state.stage().folder()), (Stage::InformationRequested, Folder::InWork));
        assert!(decide(&t, Command::PrepareAnswer { answer: answer() }, EXECUTOR).is_err(), "waits for the reply");
        t = apply(&t, Command::InformationReceived { comment: "7B".into() }, APPLICANT);
        t = apply(&t, Command::PrepareAnswer { answer: answer() }, EXECUTOR);
        t = apply(&t, Command::SendForApproval, EXECUTOR);
        assert_eq!(t.state.stage().folder(), Folder::SentForApproval);
        t = apply(&t, Command::ReturnForRework { comment: "add dates".into() }, HEAD);
        assert_eq!(t.state.stage(), Stage::InWork);
        assert!(t.state.answer().is_some(), "the draft survives rework");
        t = apply(&t, Command::PrepareAnswer { answer: answer() }, EXECUTOR);
        t = apply(&t, Command::SendForAgreement, EXECUTOR);
        t = apply(&t, Command::Agree { comment: String::new() }, APPROVER);
        let approved = decide(&t, Command::Approve { edited: None }, HEAD).unwrap();
        assert!(approved.effects.contains(&Effect::ReleaseAnswer(answer())));
        t = apply(&t, Command::Approve { edited: None }, HEAD);
        assert_eq!(t.state.stage().folder(), Folder::Processed);
        let reopened = decide(&t, Command::RejectAnswer { comment: "nothing changed".into() }, APPLICANT).unwrap();
        assert!(reopened.effects.contains(&Effect::Reopen));
        t = apply(&t, Command::RejectAnswer { comment: "nothing changed".into() }, APPLICANT);
        assert_eq!(t.state.stage().folder(), Folder::Returned);
        t = apply(&t, Command::TakeInWork, EXECUTOR);
        t = apply(&t, Command::PrepareAnswer { answer: answer() }, EXECUTOR);
        t = apply(&t, Command::SendForApproval, EXECUTOR);
        let edited = Answer { text: "edited".into(), ..answer() };
        t = apply(&t, Command::Approve { edited: Some(edited.clone()) }, HEAD);
        assert_eq!(t.state.answer(), Some(&edited));
        let accepted = decide(&t, Command::AcceptAnswer { rating: Rating::new(4).unwrap() }, APPLICANT).unwrap();
        assert!(accepted.effects.contains(&Effect::Rate(Rating::new(4).unwrap())));
        t = apply(&t, Command::AcceptAnswer { rating: Rating::new(4).unwrap() }, APPLICANT);
        assert!(t.state.stage().is_final());
    }

    #[test]
    fn roles_are_enforced() {
        let t = at(Stage::OnApproval, Some("exec-1"));
        assert_eq!(
            decide(&t, Command::Approve { edited: None }, EXECUTOR),
            Err(Refusal::NotAllowed { command: "approved" })
        );
        assert!(decide(&at(Stage::New, None), Command::Reject { reason: "x".into() }, EXECUTOR).is_err());
        assert!(
            decide(&at(Stage::Answered, None), Command::AcceptAnswer { rating: Rating::new(5).unwrap() }, HEAD)
                .is_err()
        );
        // A head may not agree, an approver may not approve.
        assert!(decide(&at(Stage::OnAgreement, None), Command::Agree { comment: String::new() }, HEAD).is_err());
        assert!(decide(&at(Stage::OnApproval, None), Command::Approve { edited: None }, APPROVER).is_err());
        // An approver returns from agreement, not from the head's approval.
        assert!(
            decide(&at(Stage::OnApproval, None), Command::ReturnForRework { comment: "x".into() }, APPROVER).is_err()
        );
        assert!(decide(&at(Stage::Returned, None), Command::StopReview { comment: "x".into() }, CURATOR).is_ok());
        assert!(decide(&at(Stage::Returned, None), Command::StopReview { comment: "x".into() }, COORDINATOR).is_err());
    }

    #[test]
    fn executors_act_only_on_their_own_tickets() {
        let t = at(Stage::ExecutorAssigned, Some("exec-1"));
        assert_eq!(decide(&t, Command::TakeInWork, OTHER_EXECUTOR), Err(Refusal::NotAssignee));
        assert_eq!(decide(&at(Stage::New, None), Command::TakeInWork, EXECUTOR).unwrap_err(), Refusal::NotAssignee);
        // A ticket an auto-rule addressed to this executor they take straight from New.
        assert_eq!(apply(&at(Stage::New, Some("exec-1")), Command::TakeInWork, EXECUTOR).state.stage(), Stage::InWork);
        let t = apply(&t, Command::TakeInWork, EXECUTOR);
        let handed = apply(&t, Command::HandOver { executor_id: "exec-2".into() }, EXECUTOR);
        assert_eq!((handed.state.stage(), handed.assignee_id.as_deref()), (Stage::ExecutorAssigned, Some("exec-2")));
        assert_eq!(
            decide(&handed, Command::ReturnToCoordinator { comment: "x".into() }, EXECUTOR),
            Err(Refusal::NotAssignee)
        );
        let back = apply(&handed, Command::ReturnToCoordinator { comment: "not ours".into() }, OTHER_EXECUTOR);
        assert_eq!((back.state.stage(), back.assignee_id), (Stage::New, None));
    }

    #[test]
    fn command_data_is_validated() {
        assert_eq!(Rating::new(0), None);
        assert_eq!(Rating::new(6), None);
        assert!(Rating::new(1).is_some());
        let t = at(Stage::InWork, Some("exec-1"));
        let blank = Answer { text: "  ".into(), ..answer() };
        assert!(matches!(decide(&t, Command::PrepareAnswer { answer: blank }, EXECUTOR), Err(Refusal::Invalid { .. })));
        let no_basis = Answer { kind: AnswerKind::Rejected { basis: String::new() }, ..answer() };
        assert!(matches!(
            decide(&t, Command::PrepareAnswer { answer: no_basis }, EXECUTOR),
            Err(Refusal::Invalid { .. })
        ));
        assert!(matches!(
            decide(&at(Stage::Answered, None), Command::RejectAnswer { comment: String::new() }, APPLICANT),
            Err(Refusal::Invalid { .. })
        ));
    }

    #[test]
    fn reroutes_leave_the_organization() {
        let t = decide(
            &at(Stage::New, None),
            Command::Redirect { to_organization_id: "org-2".into(), reason: "theirs".into() },
            COORDINATOR,
        )
        .unwrap();
        assert_eq!(t.to.stage(), Stage::Redirected);
        assert!(t.effects.contains(&Effect::Reroute { to_organization_id: Some("org-2".into()) }));
        let t =
            decide(&at(Stage::InWork, None), Command::ReturnToCoordination { reason: "mistake".into() }, COORDINATOR)
                .unwrap();
        assert_eq!(t.to.stage().folder(), Folder::ReturnedToCoordination);
        assert!(t.effects.contains(&Effect::Reroute { to_organization_id: None }), "up to the parent");
    }

    #[test]
    fn stored_names_round_trip() {
        for &stage in Stage::VARIANTS {
            assert_eq!(stage.code().parse::<Stage>(), Ok(stage));
        }
        assert_eq!(Stage::ReturnedToCoordination.code(), "returned_to_coordination");
        assert_eq!(AnswerKind::NotResolved.code(), "not_resolved");
    }

    #[test]
    fn a_stage_that_needs_an_answer_cannot_be_without_one() {
        for &stage in Stage::VARIANTS {
            let with = State::new(stage, Some(answer())).expect("every stage may hold an answer");
            assert_eq!((with.stage(), with.answer()), (stage, Some(&answer())));
            if let Some(without) = State::new(stage, None) {
                assert_eq!((without.stage(), without.answer()), (stage, None));
            }
        }
        assert_eq!(State::new(Stage::OnApproval, None), None);
        assert_eq!(State::new(Stage::AnswerPrepared, None), None);
    }

    #[test]
    fn every_command_names_its_rpc() {
        for command in all_commands() {
            assert!(!command.kind().roles().is_empty());
            assert!(command.kind().name().chars().all(|c| c.is_ascii_alphabetic()));
        }
        assert_eq!(CommandKind::TakeInWork.name(), "TakeInWork");
        assert_eq!(Command::Approve { edited: Some(answer()) }.action_name(), "edited and approved");
    }
}

//! The ticket's workflow as a pure state machine: a stage, a command, the caller's roles in, a
//! transition or a refusal out. Nothing here touches the database, so every legal transition and
//! every refusal is unit-tested below; the store only persists what [`decide`] returned.

use chrono::{DateTime, Utc};
use pos_platform::auth::Role;
use pos_proto::v1::events::{AnswerType, TicketAction};

use crate::folder::Folder;

/// Where a ticket is in its life. The folder and the card's status line follow from it, so they
/// can never disagree with each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    pub const ALL: [Stage; 14] = [
        Stage::New,
        Stage::InWork,
        Stage::ExecutorAssigned,
        Stage::AnswerPrepared,
        Stage::InformationRequested,
        Stage::OnAgreement,
        Stage::OnApproval,
        Stage::Answered,
        Stage::Returned,
        Stage::Accepted,
        Stage::ReviewStopped,
        Stage::Rejected,
        Stage::Redirected,
        Stage::ReturnedToCoordination,
    ];

    /// The stored name, also the card's status line.
    pub fn as_str(self) -> &'static str {
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

    pub fn parse(stored: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == stored)
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
        matches!(
            self,
            Stage::Accepted
                | Stage::ReviewStopped
                | Stage::Rejected
                | Stage::Redirected
                | Stage::ReturnedToCoordination
        )
    }
}

/// The answer's substance. Postponed carries its follow-up date and Rejected its basis, so an
/// answer missing either cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
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

    pub fn as_str(&self) -> &'static str {
        match self {
            AnswerKind::Resolved => "resolved",
            AnswerKind::NotResolved => "not_resolved",
            AnswerKind::Postponed { .. } => "postponed",
            AnswerKind::Rejected { .. } => "rejected",
        }
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

/// What a caller asks to do with a ticket; the data each command needs travels with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    TakeInWork,
    AssignExecutor {
        executor_id: String,
        execution_due: Option<DateTime<Utc>>,
    },
    HandOver {
        executor_id: String,
    },
    ReturnToCoordinator {
        comment: String,
    },
    PrepareAnswer {
        answer: Answer,
    },
    /// Ask the applicant for more information (what is missing goes in the comment).
    RequestInformation {
        comment: String,
    },
    /// The information arrived (from the applicant, or recorded by staff).
    InformationReceived {
        comment: String,
    },
    SendForAgreement,
    Agree {
        comment: String,
    },
    SendForApproval,
    ReturnForRework {
        comment: String,
    },
    /// The head approves, optionally with an edited answer.
    Approve {
        edited: Option<Answer>,
    },
    Redirect {
        to_organization_id: String,
        reason: String,
    },
    ReturnToCoordination {
        reason: String,
    },
    Reject {
        reason: String,
    },
    AcceptAnswer {
        rating: Rating,
    },
    RejectAnswer {
        comment: String,
    },
    StopReview {
        comment: String,
    },
}

impl Command {
    /// The roles that may issue the command at all (the gRPC layer checks these first).
    pub fn roles(&self) -> &'static [Role] {
        match self {
            Command::TakeInWork => &[Role::Coordinator, Role::Executor],
            Command::AssignExecutor { .. } => &[Role::Coordinator, Role::Curator],
            Command::HandOver { .. } | Command::ReturnToCoordinator { .. } => &[Role::Executor],
            Command::PrepareAnswer { .. } | Command::SendForAgreement | Command::SendForApproval => {
                &[Role::Coordinator, Role::Executor]
            }
            Command::Agree { .. } => &[Role::Approver],
            Command::ReturnForRework { .. } => &[Role::Head, Role::Approver],
            Command::Approve { .. } => &[Role::Head],
            Command::Redirect { .. } | Command::ReturnToCoordination { .. } | Command::Reject { .. } => {
                &[Role::Coordinator]
            }
            Command::AcceptAnswer { .. } | Command::RejectAnswer { .. } => &[Role::Applicant],
            Command::RequestInformation { .. } => &[Role::Coordinator, Role::Executor],
            Command::InformationReceived { .. } => &[Role::Coordinator, Role::Executor, Role::Applicant],
            Command::StopReview { .. } => &[Role::Curator],
        }
    }

    pub fn action_name(&self) -> &'static str {
        match self {
            Command::TakeInWork => "taken in work",
            Command::AssignExecutor { .. } => "executor assigned",
            Command::HandOver { .. } => "handed over",
            Command::ReturnToCoordinator { .. } => "returned to coordinator",
            Command::PrepareAnswer { .. } => "answer prepared",
            Command::SendForAgreement => "sent for agreement",
            Command::RequestInformation { .. } => "information requested",
            Command::InformationReceived { .. } => "information received",
            Command::Agree { .. } => "agreed",
            Command::SendForApproval => "sent for approval",
            Command::ReturnForRework { .. } => "returned for rework",
            Command::Approve { edited: None } => "approved",
            Command::Approve { edited: Some(_) } => "edited and approved",
            Command::Redirect { .. } => "redirected",
            Command::ReturnToCoordination { .. } => "returned to coordination",
            Command::Reject { .. } => "rejected",
            Command::AcceptAnswer { .. } => "accepted by applicant",
            Command::RejectAnswer { .. } => "rejected by applicant",
            Command::StopReview { .. } => "re-review stopped",
        }
    }
}

/// The ticket as the workflow sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub stage: Stage,
    pub assignee_id: String,
    pub answer: Option<Answer>,
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

/// What the store must persist and publish for an accepted command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Stage,
    pub to: Stage,
    pub action: TicketAction,
    /// The history line's verb.
    pub history_action: &'static str,
    pub assignee_id: String,
    pub answer: Option<Answer>,
    pub comment: String,
    /// Set by AssignExecutor.
    pub execution_due: Option<DateTime<Utc>>,
    /// Set by AcceptAnswer.
    pub rating: Option<Rating>,
    /// Approve: the answer that goes out.
    pub approved: Option<Answer>,
    /// Redirect / ReturnToCoordination: where routing should send it (empty = the parent).
    pub reroute_to: Option<String>,
    /// RejectAnswer: a new review round starts.
    pub reopens: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The command does not apply in the ticket's current stage.
    WrongStage { stage: Stage, command: &'static str },
    /// The caller's roles do not allow it.
    NotAllowed { command: &'static str },
    /// Only the assigned executor may do this.
    NotAssignee,
    /// Missing or malformed command data.
    Invalid(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::WrongStage { stage, command } => {
                write!(f, "{command} is not possible while the ticket is {}", stage.as_str())
            }
            Refusal::NotAllowed { command } => write!(f, "the caller's roles do not allow: {command}"),
            Refusal::NotAssignee => write!(f, "only the assigned executor may do this"),
            Refusal::Invalid(why) => write!(f, "{why}"),
        }
    }
}

/// Decides whether `command` is legal for `ticket` and `actor`, and what it changes.
pub fn decide(ticket: &Snapshot, command: Command, actor: Actor<'_>) -> Result<Transition, Refusal> {
    use Stage as S;
    let name = command.action_name();
    if !command.roles().iter().any(|r| actor.has(*r)) {
        return Err(Refusal::NotAllowed { command: name });
    }
    let wrong = || Refusal::WrongStage { stage: ticket.stage, command: name };
    let base = Transition {
        from: ticket.stage,
        to: ticket.stage,
        action: TicketAction::Unspecified,
        history_action: name,
        assignee_id: ticket.assignee_id.clone(),
        answer: ticket.answer.clone(),
        comment: String::new(),
        execution_due: None,
        rating: None,
        approved: None,
        reroute_to: None,
        reopens: false,
    };
    // An executor works only on what is assigned to them; a coordinator may act on any ticket of
    // the organization.
    let executor_only = !actor.has(Role::Coordinator) && actor.has(Role::Executor);
    let require_assignee = || {
        if executor_only && ticket.assignee_id != actor.subject { Err(Refusal::NotAssignee) } else { Ok(()) }
    };
    let non_empty = |text: &str, why: &'static str| {
        if text.trim().is_empty() { Err(Refusal::Invalid(why)) } else { Ok(()) }
    };
    match command {
        Command::TakeInWork => {
            match ticket.stage {
                S::New | S::Returned if !executor_only => {}
                // An auto-rule may deliver a new ticket already addressed to an executor.
                S::New | S::ExecutorAssigned | S::Returned => require_assignee()?,
                _ => return Err(wrong()),
            }
            let assignee_id = if executor_only { actor.subject.to_owned() } else { ticket.assignee_id.clone() };
            Ok(Transition { to: S::InWork, action: TicketAction::TakenInWork, assignee_id, ..base })
        }
        Command::AssignExecutor { executor_id, execution_due } => {
            non_empty(&executor_id, "executor_id is required")?;
            match ticket.stage {
                S::New | S::InWork | S::ExecutorAssigned | S::Returned | S::AnswerPrepared => {}
                _ => return Err(wrong()),
            }
            Ok(Transition {
                to: S::ExecutorAssigned,
                action: TicketAction::ExecutorAssigned,
                assignee_id: executor_id,
                execution_due,
                ..base
            })
        }
        Command::HandOver { executor_id } => {
            non_empty(&executor_id, "executor_id is required")?;
            if !matches!(ticket.stage, S::InWork | S::ExecutorAssigned | S::AnswerPrepared) {
                return Err(wrong());
            }
            require_assignee()?;
            if executor_id == ticket.assignee_id {
                return Err(Refusal::Invalid("the ticket is already with this executor"));
            }
            Ok(Transition {
                to: S::ExecutorAssigned,
                action: TicketAction::HandedOver,
                assignee_id: executor_id,
                ..base
            })
        }
        Command::ReturnToCoordinator { comment } => {
            non_empty(&comment, "a comment is required")?;
            if !matches!(ticket.stage, S::InWork | S::ExecutorAssigned | S::AnswerPrepared) {
                return Err(wrong());
            }
            require_assignee()?;
            Ok(Transition {
                to: S::New,
                action: TicketAction::ReturnedToCoordinator,
                assignee_id: String::new(),
                comment,
                ..base
            })
        }
        Command::PrepareAnswer { answer } => {
            non_empty(&answer.text, "the answer's text is required")?;
            if let AnswerKind::Rejected { basis } = &answer.kind {
                non_empty(basis, "a rejected answer needs its basis")?;
            }
            if !matches!(ticket.stage, S::InWork | S::AnswerPrepared) {
                return Err(wrong());
            }
            require_assignee()?;
            Ok(Transition { to: S::AnswerPrepared, action: TicketAction::AnswerPrepared, answer: Some(answer), ..base })
        }
        Command::RequestInformation { comment } => {
            non_empty(&comment, "say what information is needed")?;
            if !matches!(ticket.stage, S::InWork | S::AnswerPrepared) {
                return Err(wrong());
            }
            require_assignee()?;
            Ok(Transition { to: S::InformationRequested, action: TicketAction::InformationRequested, comment, ..base })
        }
        Command::InformationReceived { comment } => {
            non_empty(&comment, "a comment is required")?;
            if ticket.stage != S::InformationRequested {
                return Err(wrong());
            }
            // Back to work; a draft written before the request stays.
            Ok(Transition { to: S::InWork, action: TicketAction::InformationReceived, comment, ..base })
        }
        Command::SendForAgreement => {
            if ticket.stage != S::AnswerPrepared {
                return Err(wrong());
            }
            require_assignee()?;
            Ok(Transition { to: S::OnAgreement, action: TicketAction::SentForAgreement, ..base })
        }
        Command::Agree { comment } => {
            if ticket.stage != S::OnAgreement {
                return Err(wrong());
            }
            Ok(Transition { to: S::OnApproval, action: TicketAction::Agreed, comment, ..base })
        }
        Command::SendForApproval => {
            if ticket.stage != S::AnswerPrepared {
                return Err(wrong());
            }
            require_assignee()?;
            Ok(Transition { to: S::OnApproval, action: TicketAction::SentForApproval, ..base })
        }
        Command::ReturnForRework { comment } => {
            non_empty(&comment, "a comment is required")?;
            let allowed = (ticket.stage == S::OnApproval && actor.has(Role::Head))
                || (ticket.stage == S::OnAgreement && actor.has(Role::Approver));
            if !allowed {
                return Err(wrong());
            }
            // The draft stays so the executor reworks it rather than starting over.
            Ok(Transition { to: S::InWork, action: TicketAction::ReturnedForRework, comment, ..base })
        }
        Command::Approve { edited } => {
            if ticket.stage != S::OnApproval {
                return Err(wrong());
            }
            if let Some(answer) = &edited {
                non_empty(&answer.text, "the answer's text is required")?;
            }
            let answer = edited.or_else(|| ticket.answer.clone()).ok_or(Refusal::Invalid("there is no answer"))?;
            Ok(Transition {
                to: S::Answered,
                action: TicketAction::Approved,
                answer: Some(answer.clone()),
                approved: Some(answer),
                ..base
            })
        }
        Command::Redirect { to_organization_id, reason } => {
            non_empty(&to_organization_id, "to_organization_id is required")?;
            non_empty(&reason, "a reason is required")?;
            if !matches!(ticket.stage, S::New | S::InWork | S::ExecutorAssigned | S::Returned) {
                return Err(wrong());
            }
            Ok(Transition {
                to: S::Redirected,
                action: TicketAction::Redirected,
                comment: reason,
                reroute_to: Some(to_organization_id),
                ..base
            })
        }
        Command::ReturnToCoordination { reason } => {
            non_empty(&reason, "a reason is required")?;
            if !matches!(ticket.stage, S::New | S::InWork | S::ExecutorAssigned | S::Returned) {
                return Err(wrong());
            }
            Ok(Transition {
                to: S::ReturnedToCoordination,
                action: TicketAction::ReturnedToCoordination,
                comment: reason,
                reroute_to: Some(String::new()),
                ..base
            })
        }
        Command::Reject { reason } => {
            non_empty(&reason, "a reason is required")?;
            if !matches!(ticket.stage, S::New | S::InWork | S::ExecutorAssigned) {
                return Err(wrong());
            }
            Ok(Transition { to: S::Rejected, action: TicketAction::Rejected, comment: reason, ..base })
        }
        Command::AcceptAnswer { rating } => {
            if ticket.stage != S::Answered {
                return Err(wrong());
            }
            Ok(Transition { to: S::Accepted, action: TicketAction::AcceptedByApplicant, rating: Some(rating), ..base })
        }
        Command::RejectAnswer { comment } => {
            non_empty(&comment, "a comment is required")?;
            if ticket.stage != S::Answered {
                return Err(wrong());
            }
            Ok(Transition {
                to: S::Returned,
                action: TicketAction::RejectedByApplicant,
                comment,
                reopens: true,
                ..base
            })
        }
        Command::StopReview { comment } => {
            non_empty(&comment, "a comment is required")?;
            if ticket.stage != S::Returned {
                return Err(wrong());
            }
            Ok(Transition { to: S::ReviewStopped, action: TicketAction::ReviewStopped, comment, ..base })
        }
    }
}

#[cfg(test)]
mod tests {
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

    fn at(stage: Stage, assignee: &str) -> Snapshot {
        let answer = matches!(
            stage,
            Stage::AnswerPrepared | Stage::OnAgreement | Stage::OnApproval | Stage::Answered | Stage::Returned
        )
        .then(answer);
        Snapshot { stage, assignee_id: assignee.into(), answer }
    }

    fn apply(ticket: &Snapshot, command: Command, actor: Actor<'_>) -> Snapshot {
        let t = decide(ticket, command, actor).expect("legal transition");
        assert_eq!(t.from, ticket.stage);
        Snapshot { stage: t.to, assignee_id: t.assignee_id, answer: t.answer }
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
        let actor = Actor { subject: "exec-1", roles: &roles };
        for stage in Stage::ALL {
            for command in all_commands() {
                let expected = legal(stage, &command);
                let outcome = decide(&at(stage, "exec-1"), command.clone(), actor);
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
        let actor = Actor { subject: "exec-1", roles: &roles };
        for stage in Stage::ALL.into_iter().filter(|s| s.is_final()) {
            for command in all_commands() {
                assert!(decide(&at(stage, "exec-1"), command, actor).is_err());
            }
        }
    }

    #[test]
    fn the_whole_life_with_rework_and_re_review() {
        let mut t = at(Stage::New, "");
        let due = Utc::now();
        t = apply(&t, Command::AssignExecutor { executor_id: "exec-1".into(), execution_due: Some(due) }, COORDINATOR);
        assert_eq!((t.stage, t.assignee_id.as_str()), (Stage::ExecutorAssigned, "exec-1"));
        t = apply(&t, Command::TakeInWork, EXECUTOR);
        t = apply(&t, Command::RequestInformation { comment: "which class?".into() }, EXECUTOR);
        assert_eq!((t.stage, t.stage.folder()), (Stage::InformationRequested, Folder::InWork));
        assert!(decide(&t, Command::PrepareAnswer { answer: answer() }, EXECUTOR).is_err(), "waits for the reply");
        t = apply(&t, Command::InformationReceived { comment: "7B".into() }, APPLICANT);
        t = apply(&t, Command::PrepareAnswer { answer: answer() }, EXECUTOR);
        t = apply(&t, Command::SendForApproval, EXECUTOR);
        assert_eq!(t.stage.folder(), Folder::SentForApproval);
        t = apply(&t, Command::ReturnForRework { comment: "add dates".into() }, HEAD);
        assert_eq!(t.stage, Stage::InWork);
        assert!(t.answer.is_some(), "the draft survives rework");
        t = apply(&t, Command::PrepareAnswer { answer: answer() }, EXECUTOR);
        t = apply(&t, Command::SendForAgreement, EXECUTOR);
        t = apply(&t, Command::Agree { comment: String::new() }, APPROVER);
        let approved = decide(&t, Command::Approve { edited: None }, HEAD).unwrap();
        assert_eq!(approved.approved, Some(answer()));
        t = apply(&t, Command::Approve { edited: None }, HEAD);
        assert_eq!(t.stage.folder(), Folder::Processed);
        let reopened = decide(&t, Command::RejectAnswer { comment: "nothing changed".into() }, APPLICANT).unwrap();
        assert!(reopened.reopens);
        t = apply(&t, Command::RejectAnswer { comment: "nothing changed".into() }, APPLICANT);
        assert_eq!(t.stage.folder(), Folder::Returned);
        t = apply(&t, Command::TakeInWork, EXECUTOR);
        t = apply(&t, Command::PrepareAnswer { answer: answer() }, EXECUTOR);
        t = apply(&t, Command::SendForApproval, EXECUTOR);
        let edited = Answer { text: "edited".into(), ..answer() };
        t = apply(&t, Command::Approve { edited: Some(edited.clone()) }, HEAD);
        assert_eq!(t.answer, Some(edited));
        let accepted = decide(&t, Command::AcceptAnswer { rating: Rating::new(4).unwrap() }, APPLICANT).unwrap();
        assert_eq!(accepted.rating.map(Rating::get), Some(4));
        t = apply(&t, Command::AcceptAnswer { rating: Rating::new(4).unwrap() }, APPLICANT);
        assert!(t.stage.is_final());
    }

    #[test]
    fn roles_are_enforced() {
        let t = at(Stage::OnApproval, "exec-1");
        assert_eq!(
            decide(&t, Command::Approve { edited: None }, EXECUTOR),
            Err(Refusal::NotAllowed { command: "approved" })
        );
        assert!(decide(&at(Stage::New, ""), Command::Reject { reason: "x".into() }, EXECUTOR).is_err());
        assert!(
            decide(&at(Stage::Answered, ""), Command::AcceptAnswer { rating: Rating::new(5).unwrap() }, HEAD).is_err()
        );
        // A head may not agree, an approver may not approve.
        assert!(decide(&at(Stage::OnAgreement, ""), Command::Agree { comment: String::new() }, HEAD).is_err());
        assert!(decide(&at(Stage::OnApproval, ""), Command::Approve { edited: None }, APPROVER).is_err());
        // An approver returns from agreement, not from the head's approval.
        assert!(
            decide(&at(Stage::OnApproval, ""), Command::ReturnForRework { comment: "x".into() }, APPROVER).is_err()
        );
        assert!(decide(&at(Stage::Returned, ""), Command::StopReview { comment: "x".into() }, CURATOR).is_ok());
        assert!(decide(&at(Stage::Returned, ""), Command::StopReview { comment: "x".into() }, COORDINATOR).is_err());
    }

    #[test]
    fn executors_act_only_on_their_own_tickets() {
        let t = at(Stage::ExecutorAssigned, "exec-1");
        assert_eq!(decide(&t, Command::TakeInWork, OTHER_EXECUTOR), Err(Refusal::NotAssignee));
        assert_eq!(decide(&at(Stage::New, ""), Command::TakeInWork, EXECUTOR).unwrap_err(), Refusal::NotAssignee);
        // A ticket an auto-rule addressed to this executor they take straight from New.
        assert_eq!(apply(&at(Stage::New, "exec-1"), Command::TakeInWork, EXECUTOR).stage, Stage::InWork);
        let t = apply(&t, Command::TakeInWork, EXECUTOR);
        let handed = apply(&t, Command::HandOver { executor_id: "exec-2".into() }, EXECUTOR);
        assert_eq!((handed.stage, handed.assignee_id.as_str()), (Stage::ExecutorAssigned, "exec-2"));
        assert_eq!(
            decide(&handed, Command::ReturnToCoordinator { comment: "x".into() }, EXECUTOR),
            Err(Refusal::NotAssignee)
        );
        let back = apply(&handed, Command::ReturnToCoordinator { comment: "not ours".into() }, OTHER_EXECUTOR);
        assert_eq!((back.stage, back.assignee_id.as_str()), (Stage::New, ""));
    }

    #[test]
    fn command_data_is_validated() {
        assert_eq!(Rating::new(0), None);
        assert_eq!(Rating::new(6), None);
        assert!(Rating::new(1).is_some());
        let t = at(Stage::InWork, "exec-1");
        let blank = Answer { text: "  ".into(), ..answer() };
        assert!(matches!(decide(&t, Command::PrepareAnswer { answer: blank }, EXECUTOR), Err(Refusal::Invalid(_))));
        let no_basis = Answer { kind: AnswerKind::Rejected { basis: String::new() }, ..answer() };
        assert!(matches!(decide(&t, Command::PrepareAnswer { answer: no_basis }, EXECUTOR), Err(Refusal::Invalid(_))));
        assert!(matches!(
            decide(&at(Stage::Answered, ""), Command::RejectAnswer { comment: String::new() }, APPLICANT),
            Err(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn reroutes_leave_the_organization() {
        let t = decide(
            &at(Stage::New, ""),
            Command::Redirect { to_organization_id: "org-2".into(), reason: "theirs".into() },
            COORDINATOR,
        )
        .unwrap();
        assert_eq!((t.to, t.reroute_to.as_deref()), (Stage::Redirected, Some("org-2")));
        let t = decide(&at(Stage::InWork, ""), Command::ReturnToCoordination { reason: "mistake".into() }, COORDINATOR)
            .unwrap();
        assert_eq!((t.to.folder(), t.reroute_to.as_deref()), (Folder::ReturnedToCoordination, Some("")));
    }

    #[test]
    fn stored_names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        }
    }
}

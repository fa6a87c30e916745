//! `pos act` and `pos staff`: the cabinet's workflow commands from the command line.
//!
//! Each command reads the ticket's current version first and sends it along, so a command
//! based on a stale view is refused (FAILED_PRECONDITION) rather than overwriting someone's work.

use pos_platform::auth::Role;
use pos_proto::v1 as pb;
use pos_proto::v1::events::AnswerType;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;

use crate::ops::{Client, describe};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Coordinator or executor: New/Returned → In work.
    TakeInWork,
    /// Coordinator: assign an executor of the organization (from its staff directory).
    Assign {
        #[arg(long)]
        executor: String,
        /// The execution stage's deadline (RFC 3339); the policy's share of the period if omitted.
        #[arg(long)]
        due: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Executor (or coordinator): prepare the answer.
    Prepare {
        /// resolved, not-resolved, postponed, rejected
        #[arg(long, default_value = "resolved", value_parser = parse_answer_type)]
        r#type: AnswerType,
        #[arg(long)]
        text: String,
    },
    /// Executor (or coordinator): send the prepared answer to the head.
    SendForApproval,
    /// Head: approve; only then does the answer go out.
    Approve,
    /// Head: return the answer for rework.
    ReturnForRework {
        #[arg(long)]
        comment: String,
    },
    /// Coordinator: send to another organization.
    Redirect {
        #[arg(long)]
        to: String,
        #[arg(long)]
        reason: String,
    },
    /// Coordinator: reject with a reason.
    Reject {
        #[arg(long)]
        comment: String,
    },
    /// Applicant: accept the answer with a rating from 1 to 5.
    Accept {
        #[arg(long)]
        rating: i32,
    },
    /// Applicant: reject the answer (re-review).
    RejectAnswer {
        #[arg(long)]
        comment: String,
    },
}

fn parse_answer_type(value: &str) -> Result<AnswerType, String> {
    AnswerType::from_str_name(&format!("ANSWER_TYPE_{}", value.replace('-', "_").to_uppercase()))
        .filter(|t| *t != AnswerType::Unspecified)
        .ok_or_else(|| format!("unknown answer type {value:?}: resolved, not-resolved, postponed, rejected"))
}

#[derive(Debug, Clone, clap::Args)]
pub struct ActArgs {
    pub ticket_id: String,
    /// Act as this subject (default: the development user of the command's role, `dev-<role>`,
    /// or the assigned executor for an executor's command).
    #[arg(long = "as")]
    pub subject: Option<String>,
    #[command(subcommand)]
    pub action: Action,
}

pub async fn act(client: &Client, args: ActArgs) -> anyhow::Result<()> {
    let mut ticketing = TicketingServiceClient::new(client.channel());
    let key = pb::get_ticket_request::Key::TicketId(args.ticket_id.clone());
    let ticket = ticketing
        .get_ticket(client.request_as(pb::GetTicketRequest { key: Some(key) }, Role::System, "", None)?)
        .await
        .map_err(describe)?
        .into_inner();
    let organization = ticket.organization.clone().unwrap_or_default().id;
    let (id, version) = (ticket.id.clone(), ticket.version);
    // An executor's commands come from the assigned executor when there is one.
    let worker = if ticket.assignee_id.is_empty() { Role::Coordinator } else { Role::Executor };
    let subject = |role: Role| match (&args.subject, role) {
        (Some(subject), _) => subject.clone(),
        (None, Role::Executor) => ticket.assignee_id.clone(),
        (None, role) => format!("dev-{role}"),
    };
    let as_role = |role: Role| (role, subject(role));
    let comment = |comment: String| pb::CommentRequest {
        ticket_id: id.clone(),
        expected_version: version,
        comment,
        attachment_ids: Vec::new(),
    };
    let version_only = pb::VersionRequest { ticket_id: id.clone(), expected_version: version };
    let updated = match args.action {
        Action::TakeInWork => {
            let message = pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: version };
            ticketing.take_in_work(as_actor(client, &organization, as_role(worker), message)?).await
        }
        Action::Assign { executor, due } => {
            let message = pb::AssignExecutorRequest {
                ticket_id: id.clone(),
                expected_version: version,
                executor_id: executor,
                execution_due: due.map(pos_proto::time::to_proto),
            };
            ticketing.assign_executor(as_actor(client, &organization, as_role(Role::Coordinator), message)?).await
        }
        Action::Prepare { r#type, text } => {
            let answer = pb::Answer { r#type: r#type as i32, text, ..Default::default() };
            let message = pb::PrepareAnswerRequest {
                ticket_id: id.clone(),
                expected_version: version,
                answer: Some(answer),
                template_id: String::new(),
            };
            ticketing.prepare_answer(as_actor(client, &organization, as_role(worker), message)?).await
        }
        Action::SendForApproval => {
            ticketing.send_for_approval(as_actor(client, &organization, as_role(worker), version_only)?).await
        }
        Action::Approve => {
            let message = pb::ApproveRequest { ticket_id: id.clone(), expected_version: version, edited: None };
            ticketing.approve(as_actor(client, &organization, as_role(Role::Head), message)?).await
        }
        Action::ReturnForRework { comment: text } => {
            ticketing.return_for_rework(as_actor(client, &organization, as_role(Role::Head), comment(text))?).await
        }
        Action::Redirect { to, reason } => {
            let message = pb::RedirectRequest {
                ticket_id: id.clone(),
                expected_version: version,
                to_organization_id: to,
                reason,
            };
            ticketing.redirect(as_actor(client, &organization, as_role(Role::Coordinator), message)?).await
        }
        Action::Reject { comment: text } => {
            ticketing.reject(as_actor(client, &organization, as_role(Role::Coordinator), comment(text))?).await
        }
        Action::Accept { rating } => {
            let message = pb::AcceptAnswerRequest { ticket_id: id.clone(), expected_version: version, rating };
            ticketing.accept_answer(as_actor(client, &organization, as_role(Role::Applicant), message)?).await
        }
        Action::RejectAnswer { comment: text } => {
            ticketing.reject_answer(as_actor(client, &organization, as_role(Role::Applicant), comment(text))?).await
        }
    }
    .map_err(describe)?
    .into_inner();
    crate::ops::print_ticket_line(client, &updated)
}

/// A request carrying a token of `(role, subject)` in `organization`.
fn as_actor<T>(
    client: &Client,
    organization: &str,
    (role, subject): (Role, String),
    message: T,
) -> anyhow::Result<tonic::Request<T>> {
    client.request_as(message, role, organization, Some(&subject))
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum StaffCommand {
    /// Add (or update) a member of an organization's staff.
    Add {
        #[arg(long)]
        org: String,
        /// The identity subject, as in the member's tokens.
        #[arg(long)]
        subject: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// coordinator, executor, head, curator, org_admin, approver (comma-separated).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// List an organization's staff.
    List {
        #[arg(long)]
        org: String,
    },
}

pub async fn staff(client: &Client, command: StaffCommand) -> anyhow::Result<()> {
    let mut ticketing = TicketingServiceClient::new(client.channel());
    match command {
        StaffCommand::Add { org, subject, name, email, roles } => {
            let member =
                pb::StaffMember { subject, organization_id: org.clone(), full_name: name, email, roles, active: true };
            let saved = ticketing
                .upsert_staff(client.request_as(member, Role::OrgAdmin, &org, None)?)
                .await
                .map_err(describe)?
                .into_inner();
            println!(
                "{} ({}) in {}: {}",
                saved.full_name,
                saved.subject,
                saved.organization_id,
                saved.roles.join(", ")
            );
        }
        StaffCommand::List { org } => {
            let request = pb::ListStaffRequest { organization_id: org.clone(), role: String::new() };
            let list = ticketing
                .list_staff(client.request_as(request, Role::OrgAdmin, &org, None)?)
                .await
                .map_err(describe)?
                .into_inner();
            for member in list.staff {
                println!(
                    "{:<20} {:<32} {:<28} {}",
                    member.subject,
                    member.full_name,
                    member.email,
                    member.roles.join(", ")
                );
            }
        }
    }
    Ok(())
}

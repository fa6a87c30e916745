//! How a workflow rpc runs: who may act on which ticket is settled first ([`Ticketing::admit`]:
//! the command's roles, then the ticket's organization or the applicant's own appeal), then the
//! request's body becomes a [`Command`], and [`Ticketing::execute`] applies it and publishes its
//! events in one transaction. Most rpcs are one call to [`Ticketing::run`].

use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::{ApiError, ApiResult};
use pos_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Ticketing, check_access, wire};
use crate::events;
use crate::store::tickets::{self, ApplyError, Ticket};
use crate::store::{history, staff};
use crate::workflow::{self, Actor, Command, CommandKind};

/// A workflow request: it names the ticket and the version the caller saw.
pub trait Versioned {
    fn ticket_id(&self) -> &str;
    fn expected_version(&self) -> i64;
    /// Files sent with the command; only the applicant's information carries any.
    fn attachment_ids(&self) -> &[String] {
        &[]
    }
}

macro_rules! versioned {
    ($($message:ty),+ $(,)?) => {
        $(impl Versioned for $message {
            fn ticket_id(&self) -> &str {
                &self.ticket_id
            }

            fn expected_version(&self) -> i64 {
                self.expected_version
            }
        })+
    };
}

impl Versioned for pb::CommentRequest {
    fn ticket_id(&self) -> &str {
        &self.ticket_id
    }

    fn expected_version(&self) -> i64 {
        self.expected_version
    }

    fn attachment_ids(&self) -> &[String] {
        &self.attachment_ids
    }
}

versioned!(
    pb::TakeInWorkRequest,
    pb::AssignExecutorRequest,
    pb::HandOverRequest,
    pb::PrepareAnswerRequest,
    pb::VersionRequest,
    pb::ApproveRequest,
    pb::RedirectRequest,
    pb::AcceptAnswerRequest,
);

/// A caller allowed to issue a command on a ticket, before the command itself is known.
pub struct Admitted {
    pub caller: Caller,
    pub ticket: Ticket,
    pub method: String,
}

impl Ticketing {
    /// Runs the rpc of `kind`: admits the caller, builds the command from the body with `build`
    /// (which validates it), and executes it.
    pub(super) async fn run<T: Versioned>(
        &self,
        request: Request<T>,
        kind: CommandKind,
        build: impl FnOnce(T) -> ApiResult<Command>,
    ) -> Result<Response<pb::Ticket>, Status> {
        let admitted = self.admit(&request, kind).await?;
        let body = request.into_inner();
        if !body.attachment_ids().is_empty() {
            return Err(ApiError::invalid("attachment_ids", "files go with the information provided only").into());
        }
        let expected_version = body.expected_version();
        let command = build(body)?;
        debug_assert_eq!(command.kind(), kind, "an rpc builds its own command");
        Ok(Response::new(self.execute(admitted, expected_version, command).await?))
    }

    /// The command's roles, then the ticket's organization (or, for an applicant, their own
    /// appeal): nothing in the body is looked at before these pass.
    pub(super) async fn admit<T: Versioned>(&self, request: &Request<T>, kind: CommandKind) -> ApiResult<Admitted> {
        let method = format!("pos.v1.TicketingService/{}", kind.name());
        let caller = authorize(request, &method, kind.roles())?;
        let ticket = self.load(request.get_ref().ticket_id()).await?;
        check_access(&caller, &ticket, &method)?;
        Ok(Admitted { caller, ticket, method })
    }

    /// The versioned transition and its events, in one transaction.
    pub(super) async fn execute(
        &self,
        admitted: Admitted,
        expected_version: i64,
        command: Command,
    ) -> ApiResult<pb::Ticket> {
        self.execute_with_files(admitted, expected_version, command, &[]).await
    }

    /// [`Ticketing::execute`], its history line naming the files sent with the command (already
    /// claimed from intake).
    pub(super) async fn execute_with_files(
        &self,
        admitted: Admitted,
        expected_version: i64,
        command: Command,
        attachment_ids: &[String],
    ) -> ApiResult<pb::Ticket> {
        let Admitted { caller, ticket, method } = admitted;
        // Assignment targets must be the organization's own active executors.
        if let Command::AssignExecutor { executor_id, .. } | Command::HandOver { executor_id } = &command
            && !staff::is_active(&self.db, &ticket.organization_id, executor_id, Role::Executor).await?
        {
            return Err(ApiError::invalid("executor_id", "not an active executor of the ticket's organization"));
        }
        let roles: Vec<Role> = caller.roles.iter().copied().collect();
        let actor = Actor { subject: &caller.subject, roles: &roles };
        let mut tx = self.db.begin().await?;
        let (after, transition) = tickets::apply(&mut tx, &ticket.id, expected_version, &caller.subject, |t| {
            workflow::decide(&t.snapshot(), command, actor)
        })
        .await
        .inspect_err(|error| log_refused(error, &caller, &method, &ticket.id))?;
        history::attach_files(&mut tx, &after.id, attachment_ids).await?;
        events::publish(&mut tx, &after, &transition, &caller.subject).await?;
        tx.commit().await?;
        self.db.wake_outbox();
        crate::measures::command_applied(&after, &transition, caller.has_any(&Role::STAFF));
        tracing::info!(
            ticket_id = %after.id,
            from = transition.from.code(),
            to = transition.to.stage().code(),
            version = after.version,
            "workflow command applied"
        );
        Ok(wire::ticket_for(&caller, &after))
    }
}

/// A refusal about who the caller is is a security event; a stale version is routine.
fn log_refused(error: &ApplyError, caller: &Caller, method: &str, ticket_id: &str) {
    match error {
        ApplyError::Workflow(refusal) if refusal.is_denial() => {
            tracing::warn!(target: "security", subject = %caller.subject, %method, "workflow command refused");
        }
        ApplyError::StaleVersion { current, expected } => {
            tracing::info!(%ticket_id, expected_version = expected, current, %method, "stale command refused");
        }
        ApplyError::Workflow(_) | ApplyError::NotFound | ApplyError::Db(_) => {}
    }
}

//! Ticketing's refusals in the platform's one error model: each domain error becomes an
//! [`ApiError`] here, with a stable reason; the platform alone picks the gRPC code.

use pos_platform::ApiError;

use crate::incident;
use crate::store::tickets::ApplyError;
use crate::workflow::Refusal;

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let message = refusal.to_string();
        match refusal {
            Refusal::WrongStage { .. } => ApiError::failed_precondition("WRONG_STAGE", message),
            Refusal::NotAllowed { .. } => ApiError::denied("NOT_ALLOWED", message),
            Refusal::NotAssignee => ApiError::denied("NOT_ASSIGNEE", message),
            Refusal::Invalid { field, why } => ApiError::invalid(field, why),
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(error: ApplyError) -> ApiError {
        match error {
            ApplyError::NotFound => ApiError::not_found("no such ticket"),
            ApplyError::StaleVersion { .. } => ApiError::failed_precondition("STALE_VERSION", error.to_string()),
            ApplyError::Workflow(refusal) => refusal.into(),
            ApplyError::Db(error) => ApiError::Db(error),
        }
    }
}

impl From<incident::Refusal> for ApiError {
    fn from(refusal: incident::Refusal) -> ApiError {
        let message = refusal.to_string();
        match refusal {
            incident::Refusal::WrongState { .. } => ApiError::failed_precondition("WRONG_STATE", message),
            // Every incident command's text is the request's comment.
            incident::Refusal::Invalid(why) => ApiError::invalid("comment", why),
        }
    }
}

#[cfg(test)]
mod tests {
    use pos_platform::error::{reason, violated_fields};
    use tonic::{Code, Status};

    use super::*;
    use crate::workflow::Stage;

    #[test]
    fn refusals_keep_their_messages_and_name_a_reason() {
        let status = Status::from(ApiError::from(Refusal::WrongStage { stage: Stage::InWork, command: "approved" }));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "approved is not possible while the ticket is in work");
        assert_eq!(reason(&status), "WRONG_STAGE");
        let status = Status::from(ApiError::from(ApplyError::StaleVersion { current: 3, expected: 2 }));
        assert_eq!(status.message(), "the ticket changed: version 3, the command expected 2");
        assert_eq!(reason(&status), "STALE_VERSION");
        let status = Status::from(ApiError::from(Refusal::NotAssignee));
        assert_eq!(
            (status.code(), status.message()),
            (Code::PermissionDenied, "only the assigned executor may do this")
        );
        assert_eq!(reason(&status), "NOT_ASSIGNEE");
        let status = Status::from(ApiError::from(Refusal::Invalid { field: "comment", why: "a comment is required" }));
        assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["comment".to_owned()]));
        let status = Status::from(ApiError::from(ApplyError::NotFound));
        assert_eq!((status.code(), status.message()), (Code::NotFound, "no such ticket"));
        let status = Status::from(ApiError::from(incident::Refusal::Invalid("a reason is required")));
        assert_eq!(violated_fields(&status), vec!["comment".to_owned()]);
    }
}

//! Intake's errors and the gRPC status each one becomes. Internal causes are logged here and
//! never sent to the caller; nothing in these messages may carry the appeal's text.

use std::collections::HashMap;
use std::time::Duration;

use pos_platform::grpc::FieldViolations;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `google.rpc.ErrorInfo` domain of intake's errors.
pub const ERROR_DOMAIN: &str = "intake.pos";

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Bad input: `INVALID_ARGUMENT` with every offending field.
    #[error("invalid request: {}", .0.fields().collect::<Vec<_>>().join(", "))]
    Invalid(FieldViolations),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The request id was used before for a different appeal.
    #[error("{0}")]
    RequestIdReused(String),
    /// A dependency is not ready (no classifier yet): the caller should retry.
    #[error("{0}")]
    Unavailable(String),
    /// The client's stream failed or was cancelled; its status goes back as it is.
    #[error("stream failed: {0}")]
    Stream(Status),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("attachment store: {0}")]
    ObjectStore(#[from] object_store::Error),
}

impl IntakeError {
    pub fn invalid(field: &str, description: impl Into<String>) -> IntakeError {
        let mut violations = FieldViolations::new();
        violations.add(field, description);
        IntakeError::Invalid(violations)
    }
}

/// How long a caller should wait before retrying what was unavailable.
const RETRY_AFTER: Duration = Duration::from_secs(2);

impl From<IntakeError> for Status {
    fn from(error: IntakeError) -> Status {
        match error {
            IntakeError::Invalid(violations) => violations.into_status(),
            IntakeError::NotFound(message) => Status::not_found(message),
            IntakeError::PermissionDenied(message) => Status::permission_denied(message),
            IntakeError::RequestIdReused(message) => Status::with_error_details(
                Code::AlreadyExists,
                message,
                ErrorDetails::with_error_info("REQUEST_ID_REUSED", ERROR_DOMAIN, HashMap::new()),
            ),
            IntakeError::Unavailable(message) => {
                Status::with_error_details(Code::Unavailable, message, ErrorDetails::with_retry_info(Some(RETRY_AFTER)))
            }
            IntakeError::Stream(status) => status,
            IntakeError::Db(error) => db_status(&error),
            IntakeError::ObjectStore(error) => {
                tracing::error!(%error, "attachment store failed");
                Status::with_error_details(
                    Code::Unavailable,
                    "the attachment store is unavailable, retry later",
                    ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
                )
            }
        }
    }
}

/// Connection trouble is retryable; anything else is a bug or a broken schema.
fn db_status(error: &sqlx::Error) -> Status {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => {
            tracing::error!(%error, "database unavailable");
            Status::with_error_details(
                Code::Unavailable,
                "the database is unavailable, retry later",
                ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
            )
        }
        _ => pos_platform::grpc::internal("database error", error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_kind_to_its_code() {
        let status = Status::from(IntakeError::invalid("text", "required"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(pos_platform::grpc::violated_fields(&status), vec!["text"]);
        let status = Status::from(IntakeError::RequestIdReused("used".into()));
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(status.get_details_error_info().unwrap().reason, "REQUEST_ID_REUSED");
        let status = Status::from(IntakeError::Unavailable("later".into()));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.get_details_retry_info().is_some());
        assert_eq!(Status::from(IntakeError::Db(sqlx::Error::PoolTimedOut)).code(), Code::Unavailable);
        assert_eq!(Status::from(IntakeError::Db(sqlx::Error::RowNotFound)).code(), Code::Internal);
    }
}

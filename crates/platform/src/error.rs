//! The one error model of pos's gRPC APIs. Services turn their domain errors into an
//! [`ApiError`]; this file alone decides which gRPC code each becomes and what details it
//! carries: every status names a stable reason in `google.rpc.ErrorInfo`, bad input lists its
//! fields in `google.rpc.BadRequest`, and what a retry can fix says when in
//! `google.rpc.RetryInfo`. Internal causes are logged here and never sent to the caller.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `google.rpc.ErrorInfo` domain of every pos error.
pub const ERROR_DOMAIN: &str = "pos";

/// How long a caller should wait before retrying what was unavailable.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Collects field violations: `INVALID_ARGUMENT` with `google.rpc.BadRequest`.
#[derive(Debug, Default)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
}

impl FieldViolations {
    pub fn new() -> FieldViolations {
        FieldViolations::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push((field.into(), description.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.violations.iter().map(|(field, _)| field.as_str())
    }

    /// `Ok` when nothing was violated.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.violations.is_empty() { Ok(()) } else { Err(ApiError::Invalid(self)) }
    }
}

impl fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (field, description)) in self.violations.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{field}: {description}")?;
        }
        Ok(())
    }
}

/// What a gRPC method can fail with. The message of each variant is what the caller reads, so
/// it never carries personal data or an internal cause.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input, with every offending field.
    #[error("{0}")]
    Invalid(FieldViolations),
    /// No token, or one that does not verify.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller's roles or organization do not allow it (`ROLE_NOT_ALLOWED`,
    /// `OTHER_ORGANIZATION`, or the service's own reason, e.g. `NOT_ASSIGNEE`).
    #[error("{message}")]
    PermissionDenied { reason: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The object exists already in another form (e.g. a request id reused for another appeal).
    #[error("{message}")]
    AlreadyExists { reason: &'static str, message: String },
    /// The object's state does not allow it now (a stale version, a wrong stage).
    #[error("{message}")]
    FailedPrecondition { reason: &'static str, message: String },
    /// A dependency is not ready (no classifier yet, the attachment store down): retry later.
    #[error("{message}")]
    Unavailable { reason: &'static str, message: String },
    /// The caller used up a quota or a rate (`RATE_LIMITED`, or the service's own reason, e.g.
    /// `UPLOAD_QUOTA_EXCEEDED`): `RESOURCE_EXHAUSTED`, retryable after `retry_after`.
    #[error("{message}")]
    Exhausted { reason: &'static str, message: String, retry_after: Duration },
    /// The client's stream failed or was cancelled; its status goes back as it is.
    #[error("stream failed: {0}")]
    Stream(Status),
    /// The database: retryable when it is unreachable, our fault otherwise.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Anything else that is our fault. `context` says what failed, e.g. "failed to enqueue".
    #[error("{context}: {source:#}")]
    Internal { context: &'static str, source: anyhow::Error },
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// `INVALID_ARGUMENT` for one field.
    pub fn invalid(field: &str, description: impl Into<String>) -> ApiError {
        let mut violations = FieldViolations::new();
        violations.add(field, description);
        ApiError::Invalid(violations)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::NotFound(message.into())
    }

    pub fn permission_denied(message: impl Into<String>) -> ApiError {
        ApiError::PermissionDenied { reason: "PERMISSION_DENIED", message: message.into() }
    }

    /// `PERMISSION_DENIED` with a reason of its own.
    pub fn denied(reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::PermissionDenied { reason, message: message.into() }
    }

    pub fn already_exists(reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::AlreadyExists { reason, message: message.into() }
    }

    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::FailedPrecondition { reason, message: message.into() }
    }

    pub fn unavailable(reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Unavailable { reason, message: message.into() }
    }

    pub fn internal(context: &'static str, source: impl Into<anyhow::Error>) -> ApiError {
        ApiError::Internal { context, source: source.into() }
    }
}

/// How the database failed, as far as the caller is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFailure {
    /// Unreachable, overloaded, shutting down, busy: the same request may succeed later.
    Unavailable,
    /// The transaction lost a race with another one (serialization failure, deadlock).
    Conflict,
    /// A bug or a broken schema: retrying will not help.
    Fault,
}

/// Classifies a database error; SQLSTATE classes for PostgreSQL, result codes for SQLite.
pub fn classify_db(error: &sqlx::Error) -> DbFailure {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => DbFailure::Unavailable,
        sqlx::Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            match code.as_ref() {
                // PostgreSQL: serialization failure, deadlock.
                "40001" | "40P01" => DbFailure::Conflict,
                // PostgreSQL: too many connections, shutting down, cannot connect now, read-only
                // standby; SQLite: busy (5 and its extended codes), locked (6).
                "53300" | "57P01" | "57P02" | "57P03" | "25006" | "5" | "261" | "517" | "773" | "6" | "262" => {
                    DbFailure::Unavailable
                }
                // PostgreSQL class 08: connection exceptions.
                code if code.starts_with("08") => DbFailure::Unavailable,
                _ => DbFailure::Fault,
            }
        }
        _ => DbFailure::Fault,
    }
}

fn with_info(code: Code, message: impl Into<String>, reason: &str, retry: bool) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    if retry {
        details.set_retry_info(Some(RETRY_AFTER));
    }
    Status::with_error_details(code, message, details)
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        match error {
            ApiError::Invalid(violations) => {
                let message = violations.to_string();
                let mut details = ErrorDetails::new();
                details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::new());
                for (field, description) in violations.violations {
                    details.add_bad_request_violation(field, description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Unauthenticated(message) => with_info(Code::Unauthenticated, message, "UNAUTHENTICATED", false),
            ApiError::PermissionDenied { reason, message } => with_info(Code::PermissionDenied, message, reason, false),
            ApiError::NotFound(message) => with_info(Code::NotFound, message, "NOT_FOUND", false),
            ApiError::AlreadyExists { reason, message } => with_info(Code::AlreadyExists, message, reason, false),
            ApiError::FailedPrecondition { reason, message } => {
                with_info(Code::FailedPrecondition, message, reason, false)
            }
            ApiError::Unavailable { reason, message } => with_info(Code::Unavailable, message, reason, true),
            ApiError::Exhausted { reason, message, retry_after } => {
                crate::limits::exhausted(reason, message, retry_after)
            }
            ApiError::Stream(status) => status,
            ApiError::Db(error) => match classify_db(&error) {
                DbFailure::Unavailable => {
                    tracing::error!(%error, "database unavailable");
                    with_info(
                        Code::Unavailable,
                        "the database is unavailable, retry later",
                        "DATABASE_UNAVAILABLE",
                        true,
                    )
                }
                DbFailure::Conflict => {
                    tracing::warn!(%error, "transaction conflict");
                    with_info(Code::Aborted, "a concurrent change got in the way, retry", "CONFLICT", true)
                }
                DbFailure::Fault => {
                    tracing::error!(%error, "database error");
                    with_info(Code::Internal, "internal error", "INTERNAL", false)
                }
            },
            ApiError::Internal { context, source } => {
                tracing::error!(error = %format!("{source:#}"), "{context}");
                with_info(Code::Internal, format!("{context}: internal error"), "INTERNAL", false)
            }
        }
    }
}

/// The field names of a status's `BadRequest` details (for clients and tests).
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The `ErrorInfo` reason of a status, empty when it has none (for clients and tests).
pub fn reason(status: &Status) -> String {
    status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code_and_reason() {
        let status = Status::from(ApiError::invalid("text", "required"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["text"]);
        assert_eq!(status.message(), "text: required");
        let status = Status::from(ApiError::already_exists("REQUEST_ID_REUSED", "used"));
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(reason(&status), "REQUEST_ID_REUSED");
        assert!(status.get_details_retry_info().is_none());
        let status = Status::from(ApiError::unavailable("NO_CLASSIFIER", "later"));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.get_details_retry_info().is_some());
        assert_eq!(Status::from(ApiError::not_found("no such ticket")).code(), Code::NotFound);
        assert_eq!(Status::from(ApiError::Unauthenticated("missing bearer token")).code(), Code::Unauthenticated);
    }

    #[test]
    fn an_unreachable_database_is_retryable_and_a_fault_is_opaque() {
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed, sqlx::Error::WorkerCrashed] {
            let status = Status::from(ApiError::Db(error));
            assert_eq!(status.code(), Code::Unavailable);
            assert_eq!(reason(&status), "DATABASE_UNAVAILABLE");
            assert!(status.get_details_retry_info().is_some());
        }
        let status = Status::from(ApiError::Db(sqlx::Error::RowNotFound));
        assert_eq!(status.code(), Code::Internal);
        assert!(status.get_details_retry_info().is_none());
        let status = Status::from(ApiError::internal("failed to enqueue", anyhow::anyhow!("secret cause")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret cause"));
    }
}

//! What the gRPC methods can fail with, and the status each maps to.

use pos_platform::grpc::FieldViolations;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("invalid request")]
    Invalid(FieldViolations),
    #[error("routing store failed: {0}")]
    Store(#[from] sqlx::Error),
}

impl ApiError {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> ApiError {
        ApiError::NotFound { kind, id: id.into() }
    }

    /// `Ok` when nothing was violated.
    pub fn check(violations: FieldViolations) -> Result<(), ApiError> {
        if violations.is_empty() { Ok(()) } else { Err(ApiError::Invalid(violations)) }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        match error {
            ApiError::NotFound { .. } => Status::not_found(error.to_string()),
            ApiError::Invalid(violations) => violations.into_status(),
            // The cause is logged; the caller learns only that it was ours.
            ApiError::Store(error) => pos_platform::grpc::internal("routing store failed", error),
        }
    }
}

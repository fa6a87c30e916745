//! What intake's own work can fail with beyond the platform's [`ApiError`], and which of its
//! kinds each becomes. Nothing in these messages may carry the appeal's text.

use pos_platform::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The request id was used before for a different appeal.
    #[error("{0}")]
    RequestIdReused(String),
    /// No classifier snapshot yet (routing has not answered since start-up): retry shortly.
    #[error("{0}")]
    ClassifierUnavailable(String),
    /// The attachment store failed; its cause is logged, never sent.
    #[error("attachment store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// What the platform's error model says already: bad input, access, the database.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl IntakeError {
    /// `INVALID_ARGUMENT` for one field.
    pub fn invalid(field: &str, description: impl Into<String>) -> IntakeError {
        IntakeError::Api(ApiError::invalid(field, description))
    }
}

impl From<sqlx::Error> for IntakeError {
    fn from(error: sqlx::Error) -> IntakeError {
        IntakeError::Api(ApiError::Db(error))
    }
}

impl From<IntakeError> for ApiError {
    fn from(error: IntakeError) -> ApiError {
        match error {
            IntakeError::RequestIdReused(message) => ApiError::already_exists("REQUEST_ID_REUSED", message),
            IntakeError::ClassifierUnavailable(message) => ApiError::unavailable("CLASSIFIER_UNAVAILABLE", message),
            IntakeError::ObjectStore(error) => {
                tracing::error!(%error, "attachment store failed");
                ApiError::unavailable(
                    "ATTACHMENT_STORE_UNAVAILABLE",
                    "the attachment store is unavailable, retry later",
                )
            }
            IntakeError::Api(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use pos_platform::error::{reason, violated_fields};
    use tonic::{Code, Status};
    use tonic_types::StatusExt;

    use super::*;

    fn status(error: IntakeError) -> Status {
        Status::from(ApiError::from(error))
    }

    #[test]
    fn maps_each_kind_to_its_code() {
        let invalid = status(IntakeError::invalid("text", "required"));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&invalid), vec!["text"]);
        let reused = status(IntakeError::RequestIdReused("used".into()));
        assert_eq!(reused.code(), Code::AlreadyExists);
        assert_eq!(reason(&reused), "REQUEST_ID_REUSED");
        let later = status(IntakeError::ClassifierUnavailable("later".into()));
        assert_eq!(later.code(), Code::Unavailable);
        assert_eq!(reason(&later), "CLASSIFIER_UNAVAILABLE");
        assert!(later.get_details_retry_info().is_some());
        let store = status(IntakeError::ObjectStore(object_store::Error::NotImplemented));
        assert_eq!(store.code(), Code::Unavailable);
        assert_eq!(reason(&store), "ATTACHMENT_STORE_UNAVAILABLE");
        assert!(store.get_details_retry_info().is_some());
        assert!(!store.message().contains("not implemented"), "the cause is logged, not sent");
        let down = status(IntakeError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(down.code(), Code::Unavailable);
        assert_eq!(reason(&down), "DATABASE_UNAVAILABLE");
        assert_eq!(status(IntakeError::from(sqlx::Error::RowNotFound)).code(), Code::Internal);
    }
}

//! Typed errors of the node's operations, each mapped to the HTTP status the admin API
//! answers with. Messages say what was wrong and what to do; internals go to the log.

use http::StatusCode;

/// Why a deploy, remove or rollback was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidRoute(String),
    #[error("{0}")]
    InvalidComponent(String),
    #[error("{0}")]
    WrongWorld(String),
    #[error("{0}")]
    MissingImport(String),
    #[error("{0}")]
    MissingGrant(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidLimits(String),
    #[error("{0}")]
    InitFailed(String),
    #[error("{0}")]
    CannotInstantiate(String),
    #[error("{0}")]
    UnknownModel(String),
    #[error("{0}")]
    ModelUnavailable(String),
    #[error(
        "the component is larger than this node's limit of {limit} bytes ([limits] max_component_bytes)"
    )]
    TooLarge { limit: u64 },
    #[error(
        "route {route} is already served by app {owner}; choose another --route or remove {owner} first"
    )]
    RouteConflict { route: String, owner: String },
    #[error("no app named {0} is deployed; see `edge list`")]
    NotFound(String),
    #[error("app {0} has no previous version to roll back to")]
    NoPreviousVersion(String),
    #[error(transparent)]
    Pull(#[from] crate::oci::OciError),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl DeployError {
    pub fn status(&self) -> StatusCode {
        match self {
            DeployError::InvalidName(_)
            | DeployError::InvalidRoute(_)
            | DeployError::InvalidComponent(_)
            | DeployError::InvalidGrant(_)
            | DeployError::InvalidConfig(_)
            | DeployError::InvalidLimits(_) => StatusCode::BAD_REQUEST,
            DeployError::WrongWorld(_)
            | DeployError::MissingImport(_)
            | DeployError::MissingGrant(_)
            | DeployError::InitFailed(_)
            | DeployError::CannotInstantiate(_)
            | DeployError::UnknownModel(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // The request is fine; this node lacks what it needs (OpenVINO, the model files).
            DeployError::ModelUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DeployError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            DeployError::RouteConflict { .. } | DeployError::NoPreviousVersion(_) => {
                StatusCode::CONFLICT
            }
            DeployError::NotFound(_) => StatusCode::NOT_FOUND,
            DeployError::Pull(err) => err.status(),
            DeployError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

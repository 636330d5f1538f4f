//! Errors of the provisioning logic, each with the gRPC code the CO sees.

use tonic::Code;

use super::bricks::BrickError;
use super::params::ParamError;
use super::placement::PlacementError;
use crate::gluster::GlusterError;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Parameter(#[from] ParamError),

    #[error(transparent)]
    Placement(#[from] PlacementError),

    #[error("{0}")]
    AlreadyExists(String),

    #[error("gluster volume {0} was not created by this driver; refusing to delete it")]
    NotOurs(String),

    #[error("{0}")]
    PeersDown(String),

    #[error("gluster volume {0} is being created by another request; retry")]
    CreateRace(String),

    #[error("{action}: {source}")]
    Gluster {
        action: String,
        #[source]
        source: GlusterError,
    },

    #[error("{count} brick director{plural} of {volume} could not be removed: {first}")]
    Bricks {
        volume: String,
        count: usize,
        plural: &'static str,
        first: Box<BrickError>,
    },

    #[error("{error}; cleaning up the half-made volume also failed: {cleanup}")]
    CleanupFailed {
        error: Box<ControllerError>,
        cleanup: Box<ControllerError>,
    },
}

impl ControllerError {
    pub fn code(&self) -> Code {
        match self {
            ControllerError::Parameter(_) => Code::InvalidArgument,
            ControllerError::Placement(PlacementError::UnknownServer(..)) => Code::InvalidArgument,
            ControllerError::Placement(PlacementError::NotEnoughServers { .. }) => {
                Code::ResourceExhausted
            }
            ControllerError::AlreadyExists(_) => Code::AlreadyExists,
            ControllerError::NotOurs(_) => Code::FailedPrecondition,
            ControllerError::PeersDown(_) => Code::Unavailable,
            ControllerError::CreateRace(_) => Code::Aborted,
            ControllerError::Gluster { source, .. } => source.code(),
            ControllerError::Bricks { first, .. } => first.code,
            // The retry must finish the cleanup first: keep the CO retrying.
            ControllerError::CleanupFailed { cleanup, .. } => match cleanup.code() {
                Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition => {
                    Code::Internal
                }
                retryable => retryable,
            },
        }
    }

    pub(crate) fn gluster(action: impl Into<String>) -> impl FnOnce(GlusterError) -> Self {
        let action = action.into();
        move |source| ControllerError::Gluster { action, source }
    }
}

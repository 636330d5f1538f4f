//! Errors of the provisioning logic, each with the gRPC code the CO sees.

use tonic::Code;

use super::bricks::BrickError;
use super::directories::DirectoryError;
use super::params::ParamError;
use super::placement::PlacementError;
use crate::gluster::GlusterError;

/// How to opt in to bricks that share the root file system.
pub const ALLOW_ROOT_FILESYSTEM_HINT: &str = "allow bricks on the root file system with the \
     StorageClass parameter allowRootFilesystemBricks: \"true\" (or the controller flag \
     --allow-root-filesystem-bricks)";

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

    /// ControllerExpandVolume of a volume the driver did not make.
    #[error("gluster volume {0} was not created by this driver; refusing to change its size")]
    NotOursToResize(String),

    #[error("{0}")]
    NotFound(String),

    /// A capacity range the volume cannot meet (it never shrinks).
    #[error("{0}")]
    OutOfRange(String),

    #[error("{0}")]
    PeersDown(String),

    /// A size limit asked of a pool that cannot hold it safely.
    #[error("{0}")]
    QuotaUnsafe(String),

    /// Deleting would pull the data from under clients still using it.
    #[error("{0}")]
    InUse(String),

    /// Subdirectory mode cannot use the pool asked for (not the driver's,
    /// or no pool mounts in this controller).
    #[error("{0}")]
    Pool(String),

    #[error(
        "pool {0} is not started; start it (`gluster volume start {0}`) and the call is retried"
    )]
    PoolNotStarted(String),

    #[error("{0} was not made by this driver; refusing to delete or change it")]
    NotOursDirectory(String),

    #[error("{action}: {source}")]
    Directory {
        action: String,
        #[source]
        source: DirectoryError,
    },

    #[error("gluster volume {0} is being created by another request; retry")]
    CreateRace(String),

    #[error("{action}: {source}")]
    Gluster {
        action: String,
        #[source]
        source: GlusterError,
    },

    /// A brick root that is missing or, unless allowed, not a file system of
    /// its own, on the servers named in the message.
    #[error("{0}")]
    BrickRoot(String),

    #[error("could not check the brick root on {count} server{plural}: {first}")]
    BrickRootUnchecked {
        count: usize,
        plural: &'static str,
        first: Box<BrickError>,
    },

    #[error("creating gluster volume {volume}: {source}; mount the brick disk at the brick root there, or {hint}", hint = ALLOW_ROOT_FILESYSTEM_HINT)]
    RootFilesystem {
        volume: String,
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
            ControllerError::Placement(PlacementError::TooFewZones { .. }) => {
                Code::ResourceExhausted
            }
            ControllerError::AlreadyExists(_) => Code::AlreadyExists,
            ControllerError::NotOurs(_) => Code::FailedPrecondition,
            ControllerError::NotOursToResize(_) => Code::FailedPrecondition,
            ControllerError::NotFound(_) => Code::NotFound,
            ControllerError::OutOfRange(_) => Code::OutOfRange,
            ControllerError::PeersDown(_) => Code::Unavailable,
            ControllerError::QuotaUnsafe(_) => Code::FailedPrecondition,
            ControllerError::InUse(_) => Code::FailedPrecondition,
            ControllerError::CreateRace(_) => Code::Aborted,
            ControllerError::Pool(_) => Code::FailedPrecondition,
            ControllerError::PoolNotStarted(_) => Code::Unavailable,
            ControllerError::NotOursDirectory(_) => Code::FailedPrecondition,
            ControllerError::Directory { source, .. } => source.code,
            ControllerError::BrickRoot(_) => Code::FailedPrecondition,
            ControllerError::BrickRootUnchecked { first, .. } => first.code,
            ControllerError::RootFilesystem { source, .. } => source.code(),
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

    pub(crate) fn directory(action: impl Into<String>) -> impl FnOnce(DirectoryError) -> Self {
        let action = action.into();
        move |source| ControllerError::Directory { action, source }
    }

    pub(crate) fn gluster(action: impl Into<String>) -> impl FnOnce(GlusterError) -> Self {
        let action = action.into();
        move |source| ControllerError::Gluster { action, source }
    }
}

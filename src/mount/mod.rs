//! Mounting: the [`Mounter`] the node logic works through, and the system
//! implementation (mount.glusterfs, bind mounts, mountinfo, statvfs).
//!
//! Where FUSE clients run (and so whether they outlive the node plugin) is
//! the mounter's [`FuseScope`]; [`repair`] puts a fresh mount wherever a dead
//! one is still visible.

mod fd;
pub mod meta;
pub mod mountinfo;
pub mod paths;
pub mod pool;
pub mod repair;
pub mod scope;
pub mod servers;
mod system;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub use meta::BrickLink;
pub use mountinfo::MountEntry;
pub use paths::PathPolicy;
pub use repair::{DeadFileSystem, RepairReport, ReplacedMount};
pub use scope::{FuseScope, ScopeChoice, ScopeSettings};
pub use system::{
    FUSE_DEVICE, MOUNT_HELPER, SystemMounter, fuse_device_usable, mount_helper_present,
};

/// What a gluster FUSE mount connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlusterSource {
    /// Servers that can hand out the volume file, in preference order.
    pub servers: Vec<String>,
    pub volume: String,
}

/// What is at a path, as far as mounting cares.
#[derive(Debug, PartialEq, Eq)]
pub enum PathState {
    Missing,
    /// Reachable (a directory or file, mounted or not).
    Present,
    /// A FUSE mount whose client is gone: every access fails with ENOTCONN.
    Disconnected,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsUsage {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub used_inodes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounting {source_desc} at {target}: {detail}")]
    MountFailed {
        source_desc: String,
        target: PathBuf,
        detail: String,
    },
    #[error("{action} {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("mount.glusterfs did not finish within {0}s")]
    Timeout(u64),
    #[error("no glusterd answers for volume {volume}: tried {servers} on port 24007")]
    NoServer { volume: String, servers: String },
    /// A path the CO gave that leads somewhere it should not.
    #[error("{path}: {reason}")]
    UnsafePath { path: PathBuf, reason: String },
}

impl MountError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |error| MountError::Io {
            action,
            path,
            error,
        }
    }
}

#[async_trait]
pub trait Mounter: Send + Sync {
    /// FUSE-mounts a gluster volume at `target` (an existing directory).
    async fn mount_glusterfs(
        &self,
        source: &GlusterSource,
        target: &Path,
        options: &[String],
    ) -> Result<(), MountError>;
    /// Makes the directory at `path` (and missing parents), refusing a path
    /// that goes through a symbolic link or leaves the kubelet's directory.
    fn prepare_dir(&self, path: &Path) -> Result<(), MountError>;
    /// Bind-mounts `source` at `target`, read-only if asked.
    async fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<(), MountError>;
    /// Unmounts the top mount at `target`.
    async fn unmount(&self, target: &Path) -> Result<(), MountError>;
    /// Replaces every other mount of the dead file system `dead` (bind
    /// mounts on the node and inside running containers' own mount
    /// namespaces) with a clone of the live mount at `fresh`.
    async fn replace_dead(
        &self,
        dead: &DeadFileSystem,
        fresh: &Path,
    ) -> Result<RepairReport, MountError>;
    /// Every mount, in mount order (the kernel's mount table).
    fn mount_table(&self) -> Result<Vec<MountEntry>, MountError>;
    fn path_state(&self, path: &Path) -> PathState;
    fn usage(&self, path: &Path) -> Result<FsUsage, MountError>;
    /// The bricks of `volume` as the FUSE client behind `mount` sees them
    /// (its meta translator). Blocks as long as that client does.
    fn brick_links(&self, mount: &Path, volume: &str) -> Result<Vec<BrickLink>, MountError>;
    /// Ready to mount gluster volumes (mount.glusterfs and /dev/fuse).
    fn check_ready(&self) -> Result<(), String>;
}

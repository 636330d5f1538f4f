//! Node logic: one gluster FUSE mount per volume per node at the staging
//! path, bind mounts from there into pods. Idempotency is read from the
//! kernel's mount table, never remembered.

pub mod options;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::Code;

use crate::gluster::{VolumeLookup, VolumeStatus};
use crate::mount::{FsUsage, GlusterSource, MountEntry, MountError, Mounter, PathState};
use crate::names::VolumeName;
use crate::volume_context::VolumeContext;
pub use options::MountOptions;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: String,
    /// Where FUSE client logs go (one file per mount); gluster's default
    /// (/var/log/glusterfs) when unset.
    pub mount_log_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotStaged(String),
    #[error("{0}")]
    VolumeNotStarted(String),
    #[error("{0}")]
    SingleWriter(String),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("{0}")]
    NotReady(String),
}

impl NodeError {
    pub fn code(&self) -> Code {
        match self {
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::AlreadyExists(_) => Code::AlreadyExists,
            NodeError::NotStaged(_) => Code::FailedPrecondition,
            NodeError::VolumeNotStarted(_) => Code::FailedPrecondition,
            NodeError::SingleWriter(_) => Code::FailedPrecondition,
            NodeError::Mount(MountError::Timeout(_)) => Code::DeadlineExceeded,
            NodeError::Mount(MountError::NoServer { .. }) => Code::Unavailable,
            NodeError::Mount(_) => Code::Internal,
            NodeError::NotReady(_) => Code::FailedPrecondition,
        }
    }
}

pub struct StageRequest {
    pub staging_path: PathBuf,
    pub context: VolumeContext,
    pub options: MountOptions,
}

pub struct PublishRequest {
    pub staging_path: PathBuf,
    pub target_path: PathBuf,
    pub read_only: bool,
    /// SINGLE_NODE_SINGLE_WRITER: at most one target at a time.
    pub single_writer: bool,
}

/// Usage, or why there is none.
#[derive(Debug)]
pub enum VolumeHealth {
    Healthy(FsUsage),
    Abnormal(String),
}

pub struct NodeVolumes {
    mounter: Arc<dyn Mounter>,
    lookup: Arc<dyn VolumeLookup>,
    config: NodeConfig,
}

impl NodeVolumes {
    pub fn new(
        mounter: Arc<dyn Mounter>,
        lookup: Arc<dyn VolumeLookup>,
        config: NodeConfig,
    ) -> Self {
        NodeVolumes {
            mounter,
            lookup,
            config,
        }
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    pub fn probe(&self) -> Result<(), NodeError> {
        self.mounter.check_ready().map_err(NodeError::NotReady)
    }

    /// Mounts the volume at the staging path, unless it already is.
    pub async fn stage(&self, request: &StageRequest) -> Result<(), NodeError> {
        let staging = &request.staging_path;
        let volume = &request.context.volume;
        if let Some(top) = self.top_mount(staging)? {
            if self.mounter.path_state(staging) == PathState::Disconnected {
                tracing::warn!(%volume, path = %staging.display(), "staging mount is dead (ENOTCONN); remounting");
                self.unmount_all(staging).await?;
            } else if top.gluster_volume() == Some(volume.as_str())
                && top.is_read_only() == request.options.read_only()
            {
                return Ok(());
            } else {
                return Err(NodeError::AlreadyExists(format!(
                    "{} is already mounted from {} ({}, {})",
                    staging.display(),
                    top.source,
                    top.fs_type,
                    if top.is_read_only() { "ro" } else { "rw" }
                )));
            }
        }
        ensure_dir(staging)?;
        let mut options = request.options.as_slice().to_vec();
        let log_file = match &self.config.mount_log_dir {
            Some(dir) => {
                let file = mount_log_file(dir, volume, staging);
                options.push(format!("log-file={}", file.display()));
                file
            }
            None => default_client_log(staging),
        };
        let source = GlusterSource {
            servers: request.context.servers(),
            volume: volume.clone(),
        };
        match self
            .mounter
            .mount_glusterfs(&source, staging, &options)
            .await
        {
            Err(MountError::MountFailed {
                source_desc,
                target,
                detail,
            }) => {
                self.explain_missing_volume(&source).await?;
                Err(MountError::MountFailed {
                    source_desc,
                    target,
                    detail: with_client_errors(detail, &log_file),
                }
                .into())
            }
            other => Ok(other?),
        }
    }

    /// Unmounts the staging path, unless another volume of ours is mounted
    /// there (then this volume is not staged there: nothing to do).
    pub async fn unstage(&self, volume_id: &str, staging: &Path) -> Result<(), NodeError> {
        if self.holds_other_volume(volume_id, staging)? {
            return Ok(());
        }
        self.unmount_all(staging).await
    }

    /// Bind-mounts the staged volume at the target path.
    pub async fn publish(&self, request: &PublishRequest) -> Result<(), NodeError> {
        let staging = &request.staging_path;
        let target = &request.target_path;
        // One read of the mount table serves every check below.
        let table = self.mounter.mount_table()?;
        let staged = top_of(&table, staging)
            .filter(|m| m.is_glusterfs())
            .ok_or_else(|| {
                NodeError::NotStaged(format!(
                    "volume is not staged at {} (NodeStageVolume first)",
                    staging.display()
                ))
            })?;
        if let Some(top) = top_of(&table, target) {
            if self.mounter.path_state(target) == PathState::Disconnected {
                self.unmount_all(target).await?;
            } else if top.device == staged.device && top.root == staged.root {
                if top.is_read_only() == request.read_only {
                    return Ok(());
                }
                return Err(NodeError::AlreadyExists(format!(
                    "{} is already published {}",
                    target.display(),
                    if top.is_read_only() {
                        "read-only"
                    } else {
                        "read-write"
                    }
                )));
            } else {
                return Err(NodeError::AlreadyExists(format!(
                    "{} is already mounted from {} ({})",
                    target.display(),
                    top.source,
                    top.fs_type
                )));
            }
        }
        if request.single_writer {
            let other = table
                .iter()
                .filter(|m| m.device == staged.device && m.root == staged.root)
                .map(|m| &m.mount_point)
                .find(|p| p != &staging && p != &target);
            if let Some(other) = other {
                return Err(NodeError::SingleWriter(format!(
                    "the volume's access mode allows one publication and it is published at {}",
                    other.display()
                )));
            }
        }
        ensure_dir(target)?;
        self.mounter
            .bind(staging, target, request.read_only)
            .await?;
        Ok(())
    }

    /// Unmounts the target path and removes the directory publishing made.
    pub async fn unpublish(&self, volume_id: &str, target: &Path) -> Result<(), NodeError> {
        if self.holds_other_volume(volume_id, target)? {
            return Ok(());
        }
        self.unmount_all(target).await?;
        // The SP removes what it created; never anything with content.
        match std::fs::remove_dir(target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                tracing::warn!(path = %target.display(), "target directory not empty after unmount; left in place");
                Ok(())
            }
            Err(e) => Err(MountError::io("removing", target)(e).into()),
        }
    }

    /// Usage of the volume mounted at `path`, or why it is unwell.
    pub fn stats(&self, volume_id: &str, path: &Path) -> Result<VolumeHealth, NodeError> {
        let not_found = || {
            NodeError::NotFound(format!(
                "volume {volume_id} is not mounted at {}",
                path.display()
            ))
        };
        let state = self.mounter.path_state(path);
        if state == PathState::Missing {
            return Err(not_found());
        }
        let top = self
            .top_mount(path)?
            .filter(MountEntry::is_glusterfs)
            .ok_or_else(not_found)?;
        // Our own ids name the gluster volume; a static PV's id may not.
        if VolumeName::parse(volume_id)
            .is_some_and(|name| top.gluster_volume() != Some(name.as_str()))
        {
            return Err(not_found());
        }
        if state == PathState::Disconnected {
            return Ok(VolumeHealth::Abnormal(format!(
                "the gluster FUSE client serving {} is gone (transport endpoint is not \
                 connected); unstage and stage the volume again",
                path.display()
            )));
        }
        match self.mounter.usage(path) {
            Ok(usage) => Ok(VolumeHealth::Healthy(usage)),
            Err(e) => Ok(VolumeHealth::Abnormal(e.to_string())),
        }
    }

    fn top_mount(&self, path: &Path) -> Result<Option<MountEntry>, NodeError> {
        Ok(top_of(&self.mounter.mount_table()?, path).cloned())
    }

    fn mounts_at(&self, path: &Path) -> Result<Vec<MountEntry>, NodeError> {
        Ok(self
            .mounter
            .mount_table()?
            .into_iter()
            .filter(|m| m.mount_point == path)
            .collect())
    }

    /// A gluster mount of a volume other than `volume_id` (one of ours) is
    /// at `path`: the CO asks about a volume that is not there.
    fn holds_other_volume(&self, volume_id: &str, path: &Path) -> Result<bool, NodeError> {
        let Some(name) = VolumeName::parse(volume_id) else {
            return Ok(false);
        };
        let other = self
            .top_mount(path)?
            .and_then(|m| m.gluster_volume().map(str::to_string))
            .filter(|mounted| mounted != name.as_str());
        if let Some(mounted) = &other {
            tracing::warn!(volume = %name, path = %path.display(), %mounted, "another volume is mounted there; leaving it");
        }
        Ok(other.is_some())
    }

    /// Unmounts everything stacked at `path`; nothing mounted is fine.
    async fn unmount_all(&self, path: &Path) -> Result<(), NodeError> {
        for _ in 0..16 {
            if self.mounts_at(path)?.is_empty() {
                return Ok(());
            }
            self.mounter.unmount(path).await?;
        }
        Err(MountError::io("unmounting", path)(std::io::Error::other(
            "still mounted after 16 unmounts",
        ))
        .into())
    }

    /// After a failed mount: a volume glusterd does not have is NOT_FOUND,
    /// a stopped one FAILED_PRECONDITION. Asks the servers in turn; if none
    /// can say, the mount error stands.
    async fn explain_missing_volume(&self, source: &GlusterSource) -> Result<(), NodeError> {
        for server in &source.servers {
            match self.lookup.status(server, &source.volume).await {
                Ok(None) => {
                    return Err(NodeError::NotFound(format!(
                        "gluster volume {} does not exist (asked {server})",
                        source.volume
                    )));
                }
                Ok(Some(VolumeStatus::Started)) => return Ok(()),
                Ok(Some(status)) => {
                    return Err(NodeError::VolumeNotStarted(format!(
                        "gluster volume {} is not started ({status:?} on {server})",
                        source.volume
                    )));
                }
                Err(e) => tracing::debug!(%server, error = %e, "cannot ask about the volume"),
            }
        }
        Ok(())
    }
}

/// The mount on top at `path` (the last one mounted there), if any.
fn top_of<'a>(table: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    table.iter().rev().find(|m| m.mount_point == path)
}

fn mount_log_file(dir: &Path, volume: &str, staging: &Path) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(staging.as_os_str().as_encoded_bytes());
    let tag: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{volume}-{tag}.log"))
}

/// mount.glusterfs only says "Mount failed"; the reason is in the FUSE
/// client's log. Adds its last error lines.
fn with_client_errors(detail: String, log_file: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log_file) else {
        return detail;
    };
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("] E ["))
        .map(|l| l.split_once("] E [").map_or(l, |(_, rest)| rest))
        .collect();
    let last: Vec<&str> = errors.iter().rev().take(3).rev().copied().collect();
    if last.is_empty() {
        detail
    } else {
        format!("{detail}; client log: {}", last.join(" | "))
    }
}

/// Where mount.glusterfs logs when not told: /var/log/glusterfs/ and the
/// mount point with its slashes turned into dashes.
fn default_client_log(mount_point: &Path) -> PathBuf {
    let name = mount_point.to_string_lossy();
    Path::new("/var/log/glusterfs").join(format!(
        "{}.log",
        name.trim_start_matches('/').replace('/', "-")
    ))
}

fn ensure_dir(path: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(path).map_err(|e| MountError::io("creating", path)(e).into())
}

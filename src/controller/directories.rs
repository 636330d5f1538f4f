//! Subdirectory mode: a CSI volume is a directory at the top of a pool (a
//! gluster volume shared by many PVCs), with a gluster directory quota as
//! its size. The volume id `<pool>/<directory>` says where it is, so the
//! controller stays stateless; the directory's own extended attributes say
//! whose it is and how big (the `trusted.` namespace, which tenants without
//! CAP_SYS_ADMIN cannot write through their mounts).
//!
//! glusterd cannot make directories: the controller reaches them through a
//! mount of the pool, behind the [`PoolDirectories`] seam
//! (`mount/pool.rs`). Pools themselves are `controller/pools.rs`.

use async_trait::async_trait;
use tonic::Code;

use super::{CapacityRange, ControllerError, CreateRequest, ProvisionedVolume, Provisioner};
use crate::gluster::VolumeInfo;
use crate::names::{PoolDirectory, VolumeName};
use crate::volume_context::VolumeContext;

/// A pool as its directories are reached: its gluster volume and the
/// servers its mount may fetch the volume file from, primary first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolAccess {
    pub pool: String,
    pub servers: Vec<String>,
}

impl PoolAccess {
    pub fn of(pool: &VolumeInfo) -> PoolAccess {
        let mut servers: Vec<String> = Vec::new();
        for brick in &pool.bricks {
            if !servers.contains(&brick.host) {
                servers.push(brick.host.clone());
            }
        }
        PoolAccess {
            pool: pool.name.clone(),
            servers,
        }
    }
}

/// What is at `/<directory>` of a pool, as its marks say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryState {
    Missing,
    /// Carries the driver's marks.
    Ours {
        csi_name: String,
        size_bytes: u64,
        deleting: bool,
    },
    /// An empty directory without marks: a create cut short between its
    /// `mkdir` and its marks.
    UnmarkedEmpty,
    /// Anything else (not a directory, or unmarked with something in it):
    /// what it is, for the error.
    Foreign(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DirectoryError {
    pub code: Code,
    pub message: String,
}

impl DirectoryError {
    pub fn new(code: Code, message: impl Into<String>) -> DirectoryError {
        DirectoryError {
            code,
            message: message.into(),
        }
    }
}

/// Directories at the top of pools, reached through the controller's own
/// mount of each pool.
#[async_trait]
pub trait PoolDirectories: Send + Sync {
    async fn state(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
    ) -> Result<DirectoryState, DirectoryError>;
    /// Makes the directory if it is missing (owned by `owner`, `uid:gid`,
    /// if given) and marks it (name, size).
    async fn make(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
        csi_name: &str,
        size_bytes: u64,
        owner: Option<(u32, u32)>,
    ) -> Result<(), DirectoryError>;
    async fn record_size(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
        size_bytes: u64,
    ) -> Result<(), DirectoryError>;
    /// Marks it as being deleted; from then on it is never handed out again.
    async fn mark_deleting(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
    ) -> Result<(), DirectoryError>;
    /// Deletes it and everything in it (in a child process, however deep or
    /// wide the tenant made it); missing is success.
    async fn remove(&self, pool: &PoolAccess, directory: &VolumeName)
    -> Result<(), DirectoryError>;
    /// The directories at the top of the pool named as the driver names
    /// them, each with its state (anything else there is not looked at).
    async fn list(
        &self,
        pool: &PoolAccess,
    ) -> Result<Vec<(VolumeName, DirectoryState)>, DirectoryError>;
    /// Lets go of what reaching the pools holds (their mounts), at shutdown.
    async fn release(&self) {}
}

/// Whether a request's size becomes a directory quota: asked, or not said
/// (sizes of 0 never are).
fn enforced(request: &CreateRequest, size: u64) -> bool {
    size > 0 && request.params.enforce_capacity != Some(false)
}

impl Provisioner {
    /// At shutdown: the pools' mounts go (the next controller mounts them again).
    pub async fn release_pools(&self) {
        if let Some(directories) = &self.directories {
            directories.release().await;
        }
    }

    fn directories(&self) -> Result<&dyn PoolDirectories, ControllerError> {
        self.directories.as_deref().ok_or_else(|| {
            ControllerError::Pool(format!(
                "parameters.{}: subdirectory mode needs the controller to mount its pools, and \
                 it was started without --pool-mount-dir (Helm: controller.subdirectoryMode: \
                 true)",
                super::params::POOL
            ))
        })
    }

    /// CreateVolume in subdirectory mode: the pool (made on first use), the
    /// directory with its marks, then its quota limit.
    pub(super) async fn create_directory(
        &self,
        request: &CreateRequest,
        pool_name: &str,
    ) -> Result<ProvisionedVolume, ControllerError> {
        let directories = self.directories()?;
        let directory = VolumeName::for_csi_name(&request.csi_name).map_err(|e| {
            ControllerError::Parameter(super::params::ParamError {
                key: "name".into(),
                reason: e.to_string(),
            })
        })?;
        let id = PoolDirectory::new(pool_name, directory.clone()).ok_or_else(|| {
            ControllerError::Parameter(super::params::ParamError {
                key: super::params::POOL.into(),
                reason: format!("{pool_name:?} is not a pool name"),
            })
        })?;
        let size = request.capacity.size();
        let enforce = enforced(request, size);
        let pool = self.ready_pool(pool_name, request, enforce).await?;
        let access = PoolAccess::of(&pool);
        let action = |what: &str| format!("{what} directory {id}");
        let state = directories
            .state(&access, &directory)
            .await
            .map_err(ControllerError::directory(action("reading")))?;
        let size = match state {
            DirectoryState::Missing | DirectoryState::UnmarkedEmpty => size,
            DirectoryState::Ours { deleting: true, .. } => {
                // A delete cut short: finish it, then start over.
                self.remove_directory(&access, &id).await?;
                size
            }
            DirectoryState::Ours {
                csi_name,
                size_bytes,
                ..
            } => {
                if csi_name != request.csi_name {
                    return Err(ControllerError::AlreadyExists(format!(
                        "directory {id} belongs to CSI volume {csi_name:?}"
                    )));
                }
                if !request.capacity.admits(size_bytes) {
                    return Err(ControllerError::AlreadyExists(format!(
                        "volume {:?} already exists as directory {id} of {size_bytes} bytes, \
                         outside the requested range (required {}, limit {})",
                        request.csi_name,
                        request.capacity.required_bytes,
                        request.capacity.limit_bytes
                    )));
                }
                size_bytes
            }
            DirectoryState::Foreign(what) => {
                return Err(ControllerError::AlreadyExists(format!(
                    "{id} exists in pool {pool_name} and was not made by this driver ({what})"
                )));
            }
        };
        directories
            .make(
                &access,
                &directory,
                &request.csi_name,
                size,
                request.params.directory_owner,
            )
            .await
            .map_err(ControllerError::directory(action("making")))?;
        if enforce {
            self.glusterd
                .set_directory_quota_limit(pool_name, directory.as_str(), size)
                .await
                .map_err(ControllerError::gluster(format!(
                    "setting the quota limit of {id} to {size} bytes"
                )))?;
        }
        let mut volume = self.directory_volume(&pool, &id, size)?;
        volume.context = volume
            .context
            .with_shared_pool_mount(request.params.shared_pool_mount);
        Ok(volume)
    }

    /// ListVolumes' share of a pool: its directories of the driver, those
    /// being deleted too (logged, as volumes being deleted are). Nothing for
    /// a volume that is not a started pool, or without pool mounts.
    pub(super) async fn listed_directories(
        &self,
        pool: &VolumeInfo,
    ) -> Result<Vec<(ProvisionedVolume, VolumeInfo)>, ControllerError> {
        let Some(directories) = self.directories.as_deref() else {
            return Ok(Vec::new());
        };
        if !pool.options.contains_key(crate::ownership::OPT_CSI_POOL)
            || pool.status != crate::gluster::VolumeStatus::Started
        {
            return Ok(Vec::new());
        }
        let found =
            directories
                .list(&PoolAccess::of(pool))
                .await
                .map_err(ControllerError::directory(format!(
                    "listing the directories of pool {}",
                    pool.name
                )))?;
        let mut listed = Vec::new();
        for (directory, state) in found {
            let DirectoryState::Ours {
                size_bytes,
                deleting,
                csi_name,
            } = state
            else {
                continue;
            };
            let Some(id) = PoolDirectory::new(&pool.name, directory) else {
                continue;
            };
            if deleting {
                tracing::warn!(volume = %id, csi_name = %csi_name, "listed directory is being deleted; a DeleteVolume retry finishes it");
            }
            listed.push((self.directory_volume(pool, &id, size_bytes)?, pool.clone()));
        }
        Ok(listed)
    }

    fn directory_volume(
        &self,
        pool: &VolumeInfo,
        id: &PoolDirectory,
        size: u64,
    ) -> Result<ProvisionedVolume, ControllerError> {
        let access = PoolAccess::of(pool);
        let context = VolumeContext::new(
            &id.to_string(),
            &access.servers,
            self.config.mount_options.clone(),
        )
        .ok_or_else(|| ControllerError::Pool(format!("pool {} has no bricks", pool.name)))?;
        Ok(ProvisionedVolume {
            id: id.to_string(),
            capacity_bytes: size,
            context,
        })
    }

    /// DeleteVolume of a directory: marked, its quota limit dropped, moved
    /// out and purged. Anything at that path without the driver's marks is
    /// left alone (FAILED_PRECONDITION).
    pub(super) async fn delete_directory(&self, id: &PoolDirectory) -> Result<(), ControllerError> {
        let directories = self.directories()?;
        let Some(pool) = self.read_pool(id.pool()).await? else {
            return Ok(());
        };
        self.require_pool(&pool)?;
        let access = PoolAccess::of(&pool);
        let state = directories.state(&access, id.directory()).await.map_err(
            ControllerError::directory(format!("reading directory {id}")),
        )?;
        match state {
            DirectoryState::Missing => Ok(()),
            DirectoryState::Ours { .. } => self.remove_directory(&access, id).await,
            DirectoryState::UnmarkedEmpty => Err(ControllerError::NotOursDirectory(format!(
                "{id} (an empty directory without the driver's marks)"
            ))),
            DirectoryState::Foreign(what) => {
                Err(ControllerError::NotOursDirectory(format!("{id} ({what})")))
            }
        }
    }

    /// Every step is idempotent: a retry after a failure anywhere finishes.
    async fn remove_directory(
        &self,
        access: &PoolAccess,
        id: &PoolDirectory,
    ) -> Result<(), ControllerError> {
        let directories = self.directories()?;
        directories
            .mark_deleting(access, id.directory())
            .await
            .map_err(ControllerError::directory(format!(
                "marking directory {id} for deletion"
            )))?;
        match self
            .glusterd
            .remove_directory_quota_limit(id.pool(), id.directory().as_str())
            .await
        {
            Ok(()) => {}
            // A pool without quota has no limit to drop.
            Err(crate::gluster::GlusterError::Rejected { message, .. })
                if crate::gluster::error::is_quota_disabled(&message) => {}
            Err(source) => {
                return Err(ControllerError::Gluster {
                    action: format!("removing the quota limit of {id}"),
                    source,
                });
            }
        }
        directories
            .remove(access, id.directory())
            .await
            .map_err(ControllerError::directory(format!(
                "removing directory {id}"
            )))
    }

    /// The directory volume, if it exists, is ours and is not being deleted.
    pub(super) async fn get_directory(
        &self,
        id: &PoolDirectory,
    ) -> Result<Option<(ProvisionedVolume, VolumeInfo)>, ControllerError> {
        let directories = self.directories()?;
        let Some(pool) = self.read_pool(id.pool()).await? else {
            return Ok(None);
        };
        if self.require_pool(&pool).is_err() {
            return Ok(None);
        }
        let state = directories
            .state(&PoolAccess::of(&pool), id.directory())
            .await
            .map_err(ControllerError::directory(format!(
                "reading directory {id}"
            )))?;
        match state {
            DirectoryState::Ours {
                deleting: false,
                size_bytes,
                ..
            } => Ok(Some((self.directory_volume(&pool, id, size_bytes)?, pool))),
            _ => Ok(None),
        }
    }

    /// ControllerExpandVolume of a directory: the limit first, then the
    /// record (as for volumes, the record is never ahead of the limit).
    pub(super) async fn expand_directory(
        &self,
        id: &PoolDirectory,
        capacity: CapacityRange,
    ) -> Result<u64, ControllerError> {
        let missing = || ControllerError::NotFound(format!("volume {id} does not exist"));
        let directories = self.directories()?;
        let pool = self.read_pool(id.pool()).await?.ok_or_else(missing)?;
        self.require_pool(&pool)?;
        let access = PoolAccess::of(&pool);
        let state = directories.state(&access, id.directory()).await.map_err(
            ControllerError::directory(format!("reading directory {id}")),
        )?;
        let current = match state {
            DirectoryState::Ours {
                deleting: false,
                size_bytes,
                ..
            } => size_bytes,
            DirectoryState::Missing | DirectoryState::Ours { deleting: true, .. } => {
                return Err(missing());
            }
            DirectoryState::UnmarkedEmpty | DirectoryState::Foreign(_) => {
                return Err(ControllerError::NotOursDirectory(id.to_string()));
            }
        };
        if capacity.limit_bytes > 0 && current > capacity.limit_bytes {
            return Err(ControllerError::OutOfRange(format!(
                "volume {id} is {current} bytes, more than capacity_range.limit_bytes {}; \
                 volumes can grow but never shrink",
                capacity.limit_bytes
            )));
        }
        let size = capacity.size().max(current);
        if size == current {
            return Ok(size);
        }
        if pool.quota_enabled() {
            self.glusterd
                .set_directory_quota_limit(id.pool(), id.directory().as_str(), size)
                .await
                .map_err(ControllerError::gluster(format!(
                    "setting the quota limit of {id} to {size} bytes"
                )))?;
        }
        directories
            .record_size(&access, id.directory(), size)
            .await
            .map_err(ControllerError::directory(format!(
                "recording the new size of {id}"
            )))?;
        Ok(size)
    }
}

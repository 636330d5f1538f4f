//! Shared pool mounts (`poolMount: shared`): a node mounts each pool once
//! and stages every volume of it as a bind mount of the volume's directory
//! from that mount, so 20 PVCs of a pool cost one FUSE client, not 20.
//!
//! Nothing is remembered about who uses a pool mount: its users are the
//! other mounts of its file system in the kernel's table (staging paths,
//! targets). A bind from the pool shows its directory as its mountinfo
//! root, so [`MountEntry::gluster_path`] names `pool/dir` for it as for a
//! `server:/pool/dir` mount, and every ownership check reads that.
//!
//! The pool mount lives at `<shared pool dir>/<pool>.<tag>`, the tag a hash
//! of the servers and FUSE options (without `ro`: read-only is set on each
//! bind), so volumes staged with other options get a client of their own.
//! One lock per pool mount, always taken after the staging path's lock.

use std::path::{Path, PathBuf};

use super::{NodeError, NodeVolumes, StageRequest, top_of};
use crate::mount::{
    DeadFileSystem, GlusterSource, MountEntry, MountError, PathState, RepairReport,
};

/// Where and how a pool is mounted for a volume staged in shared mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PoolMount {
    pub path: PathBuf,
    pub source: GlusterSource,
    /// FUSE options of the pool's client (the volume's, without `ro`).
    pub options: Vec<String>,
}

impl PoolMount {
    /// The pool mount serving `request`, or None when it is not staged in
    /// shared mode.
    pub fn of(dir: &Path, request: &StageRequest) -> Option<PoolMount> {
        if !request.context.shared_pool_mount {
            return None;
        }
        let (pool, _) = request.context.directory()?;
        let options: Vec<String> = request
            .options
            .as_slice()
            .iter()
            .filter(|o| *o != "ro")
            .cloned()
            .collect();
        let mut servers = request.context.servers();
        servers.sort();
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for part in servers.iter().chain([String::new()].iter()).chain(&options) {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let tag: String = hash
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(PoolMount {
            path: dir.join(format!("{pool}.{tag}")),
            source: GlusterSource {
                servers: request.context.servers(),
                volume: pool.to_string(),
            },
            options,
        })
    }
}

impl NodeVolumes {
    pub(super) fn pool_mount_of(&self, request: &StageRequest) -> Option<PoolMount> {
        PoolMount::of(&self.config.shared_pool_dir, request)
    }

    /// Stages `request` as a bind of its directory from the pool mount,
    /// mounting (or healing) the pool first. What a heal of the pool mount
    /// put back is returned. A pool mounted for this stage is released
    /// again when the stage fails.
    pub(super) async fn bind_from_pool(
        &self,
        request: &StageRequest,
        pool: &PoolMount,
    ) -> Result<RepairReport, NodeError> {
        let _pool = self.pool_locks.lock(&pool.path).await;
        let replaced = self.ready_pool_mount(pool).await?;
        let bound = self.bind_directory(request, pool).await;
        // The dead client's other mounts are replaced once this staging
        // path is bound again: the repair then knows it as one of ours.
        let report = match &replaced {
            Some(dead) => self.replace_for_pool(dead, pool).await?,
            None => RepairReport::default(),
        };
        if bound.is_err()
            && let Err(e) = self.release_locked(&pool.path).await
        {
            tracing::warn!(path = %pool.path.display(), error = %e, "releasing the pool mount after a failed stage");
        }
        bound.map(|()| report)
    }

    /// Heals the pool mount if its client died, before anything of the
    /// volume being healed is unmounted: every mount of the dead client
    /// (this volume's staging path included) is then still in place, and
    /// the repair knows each as one of ours, not a copy to give a clone.
    /// Nothing when the pool is not mounted or is alive.
    pub(super) async fn heal_pool_mount(
        &self,
        pool: &PoolMount,
    ) -> Result<RepairReport, NodeError> {
        let _pool = self.pool_locks.lock(&pool.path).await;
        if top_of(&self.mounter.mount_table()?, &pool.path).is_none() {
            return Ok(RepairReport::default());
        }
        match self.ready_pool_mount(pool).await? {
            Some(dead) => self.replace_for_pool(&dead, pool).await,
            None => Ok(RepairReport::default()),
        }
    }

    /// Every mount of the dead pool client (other volumes' staging paths,
    /// targets, views in pods) replaced by its own directory of the fresh
    /// pool mount.
    async fn replace_for_pool(
        &self,
        dead: &DeadFileSystem,
        pool: &PoolMount,
    ) -> Result<RepairReport, NodeError> {
        let report = self.mounter.replace_dead(dead, &pool.path).await?;
        tracing::info!(
            pool = %pool.source.volume,
            path = %pool.path.display(),
            mounts_replaced = report.replaced.len(),
            failures = report.failures.len(),
            "dead shared pool mount healed"
        );
        Ok(report)
    }

    async fn bind_directory(
        &self,
        request: &StageRequest,
        pool: &PoolMount,
    ) -> Result<(), NodeError> {
        let staging = &request.staging_path;
        let Some((pool_name, directory)) = request.context.directory() else {
            return Err(NodeError::NotFound(format!(
                "volume {} is not a directory of a pool",
                request.context.volume
            )));
        };
        let source = pool.path.join(directory);
        match self
            .mounter
            .bind(&source, staging, request.options.read_only())
            .await
        {
            Ok(()) => {}
            Err(MountError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(NodeError::NotFound(format!(
                    "directory {directory} of pool {pool_name} does not exist (the volume was \
                     deleted, or a static PV names a directory that was never made)"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        // The bind must show exactly that directory of that pool.
        let top = self.top_mount(staging)?;
        if top
            .as_ref()
            .and_then(MountEntry::gluster_path)
            .is_some_and(|path| path == request.context.volume)
        {
            return Ok(());
        }
        if top.is_some() {
            self.mounter.unmount(staging).await?;
        }
        Err(MountError::MountFailed {
            source_desc: request.context.volume.clone(),
            target: staging.clone(),
            detail: format!(
                "the bind mount from {} does not show that directory",
                pool.path.display()
            ),
        }
        .into())
    }

    /// The pool mounted and alive at its path: mounted when missing;
    /// unmounted and mounted again when its client died (the dead file
    /// system is returned, for its other mounts to be replaced).
    async fn ready_pool_mount(
        &self,
        pool: &PoolMount,
    ) -> Result<Option<DeadFileSystem>, NodeError> {
        let table = self.mounter.mount_table()?;
        let Some(top) = top_of(&table, &pool.path).cloned() else {
            self.mounter.prepare_dir(&pool.path)?;
            self.mount_fuse(&pool.source, &pool.path, &pool.options)
                .await?;
            tracing::info!(pool = %pool.source.volume, path = %pool.path.display(), "pool mounted for shared use");
            return Ok(None);
        };
        if top.gluster_path().as_deref() != Some(pool.source.volume.as_str()) {
            return Err(NodeError::AlreadyExists(format!(
                "{} is mounted from {} ({}), not the pool {}",
                pool.path.display(),
                top.source,
                top.fs_type,
                pool.source.volume
            )));
        }
        if !self.is_dead(&pool.path).await {
            return Ok(None);
        }
        tracing::warn!(pool = %pool.source.volume, path = %pool.path.display(), "shared pool mount is dead (ENOTCONN); mounting it again");
        let dead = DeadFileSystem::of(&top);
        self.mounter.unmount(&pool.path).await?;
        self.mount_fuse(&pool.source, &pool.path, &pool.options)
            .await?;
        Ok(Some(dead))
    }

    /// A dead client is told by statfs, which always reaches it: a stat of
    /// the mount's root can be answered from the kernel's cache.
    async fn is_dead(&self, path: &Path) -> bool {
        let mounter = std::sync::Arc::clone(&self.mounter);
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            mounter.path_state(&path) == PathState::Disconnected
                || matches!(
                    mounter.usage(&path),
                    Err(MountError::Io { error, .. }) if error.raw_os_error() == Some(libc::ENOTCONN)
                )
        })
        .await
        .unwrap_or(false)
    }

    /// The shared pool mount `mount` (a gluster mount) is a bind from.
    pub(super) fn pool_mount_behind(
        &self,
        table: &[MountEntry],
        mount: &MountEntry,
    ) -> Option<PathBuf> {
        if !mount.is_glusterfs() {
            return None;
        }
        table
            .iter()
            .find(|m| {
                m.device == mount.device
                    && m.root == Path::new("/")
                    && m.mount_point.parent() == Some(self.config.shared_pool_dir.as_path())
            })
            .map(|m| m.mount_point.clone())
    }

    /// Unmounts the pool mount at `path` if no other mount of it is left.
    pub(super) async fn release_pool_mount(&self, path: &Path) -> Result<(), NodeError> {
        let _pool = self.pool_locks.lock(path).await;
        self.release_locked(path).await
    }

    async fn release_locked(&self, path: &Path) -> Result<(), NodeError> {
        let table = self.mounter.mount_table()?;
        let Some(top) = top_of(&table, path).filter(|m| m.is_glusterfs()) else {
            return Ok(());
        };
        let users = table
            .iter()
            .filter(|m| m.device == top.device && m.id != top.id)
            .count();
        if users > 0 {
            return Ok(());
        }
        self.mounter.unmount(path).await?;
        // The directory the pool was mounted on, if empty.
        if let Err(e) = std::fs::remove_dir(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!(path = %path.display(), error = %e, "pool mount directory left");
        }
        tracing::info!(path = %path.display(), "shared pool mount released (no volume of it is staged here)");
        Ok(())
    }

    /// Releases pool mounts nothing uses: left by a plugin that died
    /// between mounting a pool and binding from it.
    pub async fn release_idle_pool_mounts(&self) {
        let table = match self.mounter.mount_table() {
            Ok(table) => table,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the mount table for idle pool mounts");
                return;
            }
        };
        let pools: Vec<PathBuf> = table
            .iter()
            .filter(|m| {
                m.is_glusterfs()
                    && m.root == Path::new("/")
                    && m.mount_point.parent() == Some(self.config.shared_pool_dir.as_path())
            })
            .map(|m| m.mount_point.clone())
            .collect();
        for path in pools {
            if let Err(e) = self.release_pool_mount(&path).await {
                tracing::warn!(path = %path.display(), error = %e, "releasing an idle pool mount");
            }
        }
    }
}

//! Pools of subdirectory mode: gluster volumes holding one directory per
//! CSI volume. A pool is the driver's to make directories in when it
//! carries the `user.csi.pool` mark: set by the driver on a pool it made on
//! first use, or by the operator on a volume of their own. Nothing marks a
//! pool for deletion: the driver never stops or deletes one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{ControllerError, CreateRequest, Provisioner};
use crate::gluster::{GlusterError, NewVolume, VolumeInfo, VolumeStatus};
use crate::names::VolumeName;
use crate::ownership::OPT_CSI_POOL;

/// One pool change at a time per pool in this controller: the first
/// requests of a new class all find the pool missing at once.
#[derive(Default)]
pub struct PoolLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PoolLocks {
    async fn hold(&self, pool: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(pool.to_string()).or_default())
        };
        lock.lock_owned().await
    }
}

impl Provisioner {
    pub(super) async fn read_pool(
        &self,
        pool: &str,
    ) -> Result<Option<VolumeInfo>, ControllerError> {
        self.glusterd
            .volume(pool)
            .await
            .map_err(ControllerError::gluster(format!("reading pool {pool}")))
    }

    /// A pool the driver may use: marked as a pool, and started.
    pub(super) fn require_pool(&self, pool: &VolumeInfo) -> Result<(), ControllerError> {
        if !pool.options.contains_key(OPT_CSI_POOL) {
            return Err(ControllerError::Pool(format!(
                "gluster volume {name} is not a pool of this driver (it has no {OPT_CSI_POOL} \
                 mark); name a pool the driver made, or give the driver this volume for \
                 subdirectory volumes with `gluster volume set {name} {OPT_CSI_POOL} adopted` \
                 (it then makes one directory per volume at its top and touches nothing else)",
                name = pool.name
            )));
        }
        if pool.status != VolumeStatus::Started {
            return Err(ControllerError::PoolNotStarted(pool.name.clone()));
        }
        Ok(())
    }

    /// The pool, made on first use and finished (marked, started, quota on
    /// when sizes are enforced). Read without a lock when it is ready.
    pub(super) async fn ready_pool(
        &self,
        pool: &str,
        request: &CreateRequest,
        quota: bool,
    ) -> Result<VolumeInfo, ControllerError> {
        let ready = |info: &VolumeInfo| {
            info.options.contains_key(OPT_CSI_POOL)
                && info.status == VolumeStatus::Started
                && (!quota || info.quota_enabled())
        };
        if let Some(info) = self.read_pool(pool).await?
            && ready(&info)
        {
            return Ok(info);
        }
        let _turn = self.pool_locks.hold(pool).await;
        let info = match self.read_pool(pool).await? {
            Some(info) => info,
            None => {
                self.create_pool(pool, request).await?;
                self.read_pool(pool).await?.ok_or_else(|| {
                    ControllerError::Pool(format!("pool {pool} vanished as it was made"))
                })?
            }
        };
        if ready(&info) {
            return Ok(info);
        }
        let ours = info.options.contains_key(OPT_CSI_POOL);
        if !ours && !is_half_made_pool(&info) {
            // Refused with the reason and the way to adopt it.
            self.require_pool(&info)?;
        }
        if !ours {
            self.set_pool_options(pool, &[(OPT_CSI_POOL.to_string(), "created".to_string())])
                .await?;
            let servers = super::directories::PoolAccess::of(&info).servers;
            let mut options = self.config.isolation.volume_options(&servers);
            if quota {
                options.extend(self.quota_tuning(&request.params.volume_options));
            }
            options.extend(request.params.volume_options.iter().cloned());
            if !options.is_empty() {
                self.set_pool_options(pool, &options).await?;
            }
        }
        match info.status {
            VolumeStatus::Started => {}
            // Never started: a pool being made (here, or by a create cut short).
            VolumeStatus::Created => self
                .glusterd
                .start_volume(pool, false)
                .await
                .map_err(ControllerError::gluster(format!("starting pool {pool}")))?,
            // Stopped by someone: theirs to start again.
            _ => return Err(ControllerError::PoolNotStarted(pool.to_string())),
        }
        if quota && !info.quota_enabled() {
            self.glusterd
                .enable_quota(pool)
                .await
                .map_err(ControllerError::gluster(format!(
                    "enabling quota on pool {pool}"
                )))?;
        }
        tracing::info!(pool, quota, "pool ready");
        self.read_pool(pool)
            .await?
            .ok_or_else(|| ControllerError::Pool(format!("pool {pool} vanished as it was made")))
    }

    /// `volume create` of a new pool with the StorageClass's replica,
    /// servers, zones and brick root; bricks at `<root>/<pool>`. Another
    /// controller making it at the same moment is fine.
    async fn create_pool(
        &self,
        pool: &str,
        request: &CreateRequest,
    ) -> Result<(), ControllerError> {
        let params = &request.params;
        // Placement spreads by a hash of the name; any stable name will do.
        let hashed = VolumeName::for_csi_name(pool)
            .or_else(|_| VolumeName::for_csi_name(&format!("pool-{pool}")))
            .map_err(|e| ControllerError::Pool(format!("pool {pool}: {e}")))?;
        let (servers, bricks, allow_root_filesystem) =
            self.place_bricks(&hashed, pool, request).await?;
        let new = NewVolume {
            name: pool.to_string(),
            replica: params.replica,
            arbiter: params.arbiter,
            bricks,
            force: allow_root_filesystem,
        };
        tracing::info!(pool, servers = ?servers, "making pool on first use");
        match self.glusterd.create_volume(&new).await {
            Ok(()) | Err(GlusterError::VolumeExists(_)) => Ok(()),
            Err(source) => Err(ControllerError::Gluster {
                action: format!("creating pool {pool}"),
                source,
            }),
        }
    }

    async fn set_pool_options(
        &self,
        pool: &str,
        options: &[(String, String)],
    ) -> Result<(), ControllerError> {
        self.glusterd
            .set_options(pool, options)
            .await
            .map_err(ControllerError::gluster(format!(
                "setting options on pool {pool}"
            )))
    }
}

/// A pool the driver's own `volume create` made and could not mark: never
/// started, no `user.*` options, every brick directory named after it.
fn is_half_made_pool(info: &VolumeInfo) -> bool {
    info.status == VolumeStatus::Created
        && !info.options.keys().any(|k| k.starts_with("user."))
        && !info.bricks.is_empty()
        && info
            .bricks
            .iter()
            .all(|b| b.path.rsplit('/').next() == Some(info.name.as_str()))
}

//! Sizes that hold: a gluster quota hard limit on `/` of every volume the
//! driver makes, equal to its provisioned size, and ControllerExpandVolume,
//! which raises it on the live volume.
//!
//! glusterd is the record: `features.quota` in `volume info` says whether
//! quota is on, `volume quota V list /` what the limit is, `user.csi.size`
//! what the CO was told. Every step reads first and writes only what
//! differs, so a retry after a failure at any step finishes the job.

use super::{CapacityRange, ControllerError, Provisioner};
use crate::gluster::VolumeInfo;
use crate::names::VolumeName;
use crate::ownership::{OPT_CSI_SIZE, Ownership};

/// Set on every enforced volume before its first start. gluster's defaults
/// (`soft-timeout` 60 s below 80% of the limit, `hard-timeout` 5 s above it)
/// let a writer on a fresh volume put 5x its limit before the bricks look at
/// the usage again; at 0 they check every write, and a writer overshoots by
/// under 1 MiB (measured; docs/storageclass.md). A StorageClass can trade
/// that back for throughput with its own values in `volumeOptions`.
pub const QUOTA_TUNING: [(&str, &str); 2] = [
    ("features.soft-timeout", "0"),
    ("features.hard-timeout", "0"),
];

/// The first op-version of glusterfs 11: from it on, quotad crashes under
/// volume churn (SIGSEGV in the client translator's lookup callback; seen
/// with 11.1 in this project's CI, upstream gluster/glusterfs#4095), and
/// every write to the bricks of that server then waits for a quotad that
/// only the next `quota enable` brings back.
const OP_VERSION_11: u32 = 110_000;

impl Provisioner {
    /// Whether this request's size becomes a quota limit: what the
    /// StorageClass says (`enforceCapacity`), else yes, unless every server
    /// of the pool runs glusterfs 11.x or later (its max op-version), where
    /// quotad is not safe to depend on, or the pool multiplexes bricks.
    /// Sizes of 0 (none asked) never are.
    ///
    /// Quota on multiplexed bricks is refused, asked or not: with both,
    /// glusterd 10.3 failed `volume stop` of such volumes in every run of 20
    /// parallel creates and deletes ("send_attach_req: not connected yet"),
    /// and a volume whose stop failed stayed unstoppable on that server.
    /// The same runs without quota passed.
    pub(super) async fn enforces(
        &self,
        request: &super::CreateRequest,
        size: u64,
    ) -> Result<bool, ControllerError> {
        if size == 0 || request.params.enforce_capacity == Some(false) {
            return Ok(false);
        }
        // Asked on every create (the SerialChanges seam keeps a reading
        // 10 s): an operator may turn it on at any time.
        let multiplexed = matches!(self.glusterd.brick_multiplex().await, Ok(Some(true)));
        if multiplexed {
            if request.params.enforce_capacity == Some(true) {
                return Err(ControllerError::QuotaUnsafe(format!(
                    "parameters.{}: \"true\" asks for a gluster quota, and this pool \
                     multiplexes bricks (cluster.brick-multiplex on), where glusterd fails to \
                     stop volumes with quota (glusterfs 10.x); drop enforceCapacity, or turn \
                     multiplexing off (`gluster volume set all cluster.brick-multiplex off`, \
                     for volumes started from then on)",
                    super::params::ENFORCE_CAPACITY
                )));
            }
            tracing::debug!(volume = %request.csi_name, "size recorded, not enforced: the pool multiplexes bricks");
            return Ok(false);
        }
        if let Some(asked) = request.params.enforce_capacity {
            return Ok(asked);
        }
        let by_default = self
            .enforce_by_default
            .get_or_try_init(|| async {
                match self.glusterd.op_versions().await {
                    Ok(Some(pool)) if pool.max >= OP_VERSION_11 => {
                        tracing::warn!(pool_max_op_version = pool.max, "sizes are not enforced by default on glusterfs 11.x pools (quotad crashes under volume churn there); a StorageClass can still ask with enforceCapacity: \"true\"");
                        Ok(false)
                    }
                    Ok(_) => Ok(true),
                    Err(e) => Err(e),
                }
            })
            .await;
        // A pool that cannot say now is asked again next time.
        Ok(by_default.copied().unwrap_or(true))
    }

    /// The options a new enforced volume gets before it starts, except
    /// those the StorageClass sets itself.
    pub(super) fn quota_tuning(
        &self,
        volume_options: &[(String, String)],
    ) -> Vec<(String, String)> {
        QUOTA_TUNING
            .iter()
            .filter(|(key, _)| !volume_options.iter().any(|(k, _)| k == key))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    /// Quota on (glusterd refuses it before the first start) and the hard
    /// limit on `/` at `size`. `quota_on`: what `volume info` said. The
    /// limit is written, never read back: `volume quota V list` leaves a
    /// mount of the volume on the server (glusterd keeps it until the
    /// volume stops), whose client DeleteVolume would count as a user. Setting
    /// the same limit again is harmless.
    pub(super) async fn enforce_size(
        &self,
        name: &VolumeName,
        size: u64,
        quota_on: bool,
    ) -> Result<(), ControllerError> {
        if !quota_on {
            self.glusterd
                .enable_quota(name.as_str())
                .await
                .map_err(ControllerError::gluster(format!(
                    "enabling quota on gluster volume {name}"
                )))?;
        }
        self.glusterd
            .set_quota_limit(name.as_str(), size)
            .await
            .map_err(ControllerError::gluster(format!(
                "setting the quota limit of gluster volume {name} to {size} bytes"
            )))
    }

    /// A volume being created, just given quota: waits (a while at most)
    /// until the FUSE clients glusterd started for it are gone, so the
    /// volume reaches the CO with no client but gluster's daemons. `quota
    /// enable` starts a crawl client per brick and `limit-usage` mounts the
    /// volume to set the limit; both end on their own, within the command
    /// on a quiet server, seconds later on a loaded one. Left there, they
    /// would count as users to a DeleteVolume that follows at once.
    pub(super) async fn await_quota_helpers(&self, name: &VolumeName) {
        let Ok(Some(volume)) = self.read(name).await else {
            return;
        };
        let patience = self.config.in_use_patience * 2;
        if let Ok(clients) = self.clients_once_settled(&volume, patience).await {
            let users = clients.users();
            if !users.is_empty() {
                tracing::warn!(volume = %name, clients = ?users, "gluster's quota helpers still connected; the volume is handed out anyway");
            }
        }
    }

    /// Grows a volume of ours to what `capacity` asks (never shrinks it)
    /// and returns its size. A volume with quota gets the new hard limit,
    /// which its mounts see at once; one without (made with
    /// `enforceCapacity: "false"`, or before the driver enforced sizes) only
    /// gets the new size recorded.
    pub async fn expand(
        &self,
        volume_id: &str,
        capacity: CapacityRange,
    ) -> Result<u64, ControllerError> {
        if let Some(id) = crate::names::PoolDirectory::parse(volume_id) {
            return self.expand_directory(&id, capacity).await;
        }
        let missing = || ControllerError::NotFound(format!("volume {volume_id} does not exist"));
        let name = VolumeName::parse(volume_id).ok_or_else(missing)?;
        let volume = self.read(&name).await?.ok_or_else(missing)?;
        let current = match Ownership::of(&volume) {
            Ownership::Ours {
                deleting: false,
                size_bytes,
                ..
            } => size_bytes,
            Ownership::Ours { deleting: true, .. } => return Err(missing()),
            Ownership::Unmarked | Ownership::Foreign => {
                return Err(ControllerError::NotOursToResize(name.to_string()));
            }
        };
        if capacity.limit_bytes > 0 && current > capacity.limit_bytes {
            return Err(ControllerError::OutOfRange(format!(
                "volume {name} is {current} bytes, more than capacity_range.limit_bytes {}; \
                 volumes can grow but never shrink",
                capacity.limit_bytes
            )));
        }
        let size = capacity.size().max(current);
        self.resize(&name, &volume, current, size).await?;
        Ok(size)
    }

    /// The limit first, then the record: the record is only ever behind
    /// the limit, so a size already recorded is already enforced, and a
    /// retry after a failure between them sets the same limit again.
    async fn resize(
        &self,
        name: &VolumeName,
        volume: &VolumeInfo,
        recorded: u64,
        size: u64,
    ) -> Result<(), ControllerError> {
        if recorded == size {
            return Ok(());
        }
        if volume.quota_enabled() {
            self.enforce_size(name, size, true).await?;
        }
        self.glusterd
            .set_options(
                name.as_str(),
                &[(OPT_CSI_SIZE.to_string(), size.to_string())],
            )
            .await
            .map_err(ControllerError::gluster(format!(
                "recording the new size of gluster volume {name}"
            )))
    }
}

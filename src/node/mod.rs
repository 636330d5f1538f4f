//! Node logic: one gluster FUSE mount per volume per node at the staging
//! path, bind mounts from there into pods. Idempotency is read from the
//! kernel's mount table, never remembered. What is remembered (on the host,
//! [`staged`]) is how each volume was staged, so that a dead staging mount
//! can be mounted again and put back wherever it was visible ([`heal`]),
//! by the watcher ([`watch`]) or before a publish.

mod heal;
pub mod logs;
pub mod options;
mod shared;
pub mod staged;
#[cfg(test)]
mod tests;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Code;

use crate::gluster::{VolumeLookup, VolumeStatus};
use crate::mount::{
    BrickLink, FsUsage, GlusterSource, MountEntry, MountError, Mounter, PathState, RepairReport,
};
use crate::names::{PoolDirectory, VolumeName};
use crate::volume_context::VolumeContext;
pub use heal::HealReport;
pub use options::MountOptions;
use staged::{StagedRecord, StagedVolumes};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: String,
    /// Where FUSE client logs go (one file per mount); gluster's default
    /// (/var/log/glusterfs) when unset.
    pub mount_log_dir: Option<PathBuf>,
    /// Where staging records live (on the host, across plugin restarts).
    pub state_dir: PathBuf,
    /// Where pools are mounted for volumes staged with `poolMount: shared`
    /// (one directory per pool mount; under the kubelet's directory, so
    /// the host sees the mounts and they outlive the plugin).
    pub shared_pool_dir: PathBuf,
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
            NodeError::Mount(MountError::UnsafePath { .. }) => Code::InvalidArgument,
            NodeError::Mount(_) => Code::Internal,
            NodeError::NotReady(_) => Code::FailedPrecondition,
        }
    }
}

pub struct StageRequest {
    pub volume_id: String,
    pub staging_path: PathBuf,
    pub context: VolumeContext,
    pub options: MountOptions,
}

pub struct PublishRequest {
    pub volume_id: String,
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
    /// Mounted and answering, but this node's client misses some bricks.
    Degraded(FsUsage, String),
    Abnormal(String),
}

/// How long NodeGetVolumeStats waits for the client's meta translator.
const CLIENT_VIEW_LIMIT: Duration = Duration::from_secs(5);

pub struct NodeVolumes {
    mounter: Arc<dyn Mounter>,
    lookup: Arc<dyn VolumeLookup>,
    config: NodeConfig,
    staged: StagedVolumes,
    /// Staging, unstaging and healing of one staging path, one at a time.
    staging_locks: PathLocks,
    /// Mounting, healing and releasing of one shared pool mount, one at a
    /// time; taken after a staging path's lock, never before.
    pool_locks: PathLocks,
    /// FUSE clients (by device) whose meta translator is being read: a
    /// hung client holds one blocked thread, never one per RPC.
    client_reads: Arc<Mutex<HashSet<String>>>,
}

impl NodeVolumes {
    /// Reads the staging records on the host; those whose staging path no
    /// longer holds a gluster mount (the node rebooted, say) are dropped.
    pub fn new(
        mounter: Arc<dyn Mounter>,
        lookup: Arc<dyn VolumeLookup>,
        config: NodeConfig,
    ) -> Result<Self, NodeError> {
        let staged = StagedVolumes::open(&config.state_dir)?;
        let table = mounter.mount_table()?;
        for record in staged.all() {
            let mounted = top_of(&table, &record.staging_path).is_some_and(|m| m.is_glusterfs());
            if !mounted && record.dead.is_empty() {
                staged.remove(&record.staging_path)?;
            }
        }
        Ok(NodeVolumes {
            mounter,
            lookup,
            config,
            staged,
            staging_locks: PathLocks::default(),
            pool_locks: PathLocks::default(),
            client_reads: Arc::default(),
        })
    }

    /// Staged volumes found mounted (adopted from an earlier run).
    pub fn staged_count(&self) -> usize {
        self.staged.all().len()
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    pub fn probe(&self) -> Result<(), NodeError> {
        self.mounter.check_ready().map_err(NodeError::NotReady)
    }

    /// Mounts the volume at the staging path, unless it already is. A dead
    /// mount there is healed (mounted again, and replaced wherever it was
    /// bound).
    pub async fn stage(&self, request: &StageRequest) -> Result<(), NodeError> {
        let staging = &request.staging_path;
        let _staging = self.staging_locks.lock(staging).await;
        // Dead mounts an earlier heal could not replace yet.
        let pending = self.staged.get(staging).map(|r| r.dead).unwrap_or_default();
        if let Some(top) = self.top_mount(staging)? {
            if self.mounter.path_state(staging) == PathState::Disconnected {
                tracing::warn!(volume = %request.context.volume, path = %staging.display(), "staging mount is dead (ENOTCONN); healing it");
                self.heal_locked(request, pending).await?;
                return Ok(());
            }
            if top.gluster_path().as_deref() == Some(request.context.volume.as_str())
                && top.is_read_only() == request.options.read_only()
            {
                // Mounted by an earlier run of the plugin (or this request
                // again): make sure it can be healed.
                if self.staged.get(staging).is_none() {
                    self.staged.save(StagedRecord::of(request))?;
                }
                if !pending.is_empty() {
                    self.heal_locked(request, pending).await?;
                }
                return Ok(());
            }
            return Err(NodeError::AlreadyExists(format!(
                "{} is already mounted from {} ({}, {})",
                staging.display(),
                top.source,
                top.fs_type,
                if top.is_read_only() { "ro" } else { "rw" }
            )));
        }
        self.mounter.prepare_dir(staging)?;
        self.staged
            .save(StagedRecord::of(request).with_dead(pending.clone()))?;
        match self.mount_staging(request).await {
            Err(e) => {
                if pending.is_empty() {
                    self.staged.remove(staging)?;
                }
                return Err(e);
            }
            // This stage found the shared pool mount dead and healed it
            // (logged there): counted as a heal of the volumes it put back.
            Ok(repair) if !repair.replaced.is_empty() || !repair.failures.is_empty() => {
                crate::metrics::record_mount_heal(if repair.failures.is_empty() {
                    crate::metrics::HealOutcome::Healed
                } else {
                    crate::metrics::HealOutcome::Partial
                });
            }
            Ok(_) => {}
        }
        if !pending.is_empty() {
            self.heal_locked(request, pending).await?;
        }
        Ok(())
    }

    /// Mounts the volume at the staging path: a FUSE mount of its own, or
    /// a bind of its directory from the node's shared mount of the pool
    /// (which may first be healed: what that put back is returned).
    async fn mount_staging(&self, request: &StageRequest) -> Result<RepairReport, NodeError> {
        if let Some(pool) = self.pool_mount_of(request) {
            return self.bind_from_pool(request, &pool).await;
        }
        let source = GlusterSource {
            servers: request.context.servers(),
            volume: request.context.volume.clone(),
        };
        self.mount_fuse(&source, &request.staging_path, request.options.as_slice())
            .await?;
        Ok(RepairReport::default())
    }

    /// A FUSE mount, with the client's log file and, when it fails, the
    /// reason from glusterd or the client's log.
    async fn mount_fuse(
        &self,
        source: &GlusterSource,
        target: &Path,
        options: &[String],
    ) -> Result<(), NodeError> {
        let mut options = options.to_vec();
        let log_file = match &self.config.mount_log_dir {
            Some(dir) => {
                let file = mount_log_file(dir, &source.volume, target);
                options.push(format!("log-file={}", file.display()));
                file
            }
            None => default_client_log(target),
        };
        match self.mounter.mount_glusterfs(source, target, &options).await {
            Err(MountError::MountFailed {
                source_desc,
                target,
                detail,
            }) => {
                self.explain_missing_volume(source).await?;
                Err(MountError::MountFailed {
                    source_desc,
                    target,
                    detail: with_client_errors(detail, &log_file),
                }
                .into())
            }
            other => {
                other?;
                self.check_mounted(source, target, &log_file).await
            }
        }
    }

    /// mount.glusterfs can report success for a client the servers refuse
    /// a moment later (measured with auth.allow): the staging path must
    /// hold a live mount of the volume, never a plain directory.
    async fn check_mounted(
        &self,
        source: &GlusterSource,
        staging: &Path,
        log_file: &Path,
    ) -> Result<(), NodeError> {
        let ours = self
            .top_mount(staging)?
            .is_some_and(|m| m.gluster_volume() == Some(source.volume.as_str()));
        if ours && self.mounter.path_state(staging) != PathState::Disconnected {
            return Ok(());
        }
        if ours {
            self.mounter.unmount(staging).await?;
        }
        Err(MountError::MountFailed {
            source_desc: source.volume.clone(),
            target: staging.to_path_buf(),
            detail: with_client_errors(
                "mount.glusterfs reported success, but no live mount of the volume is there".into(),
                log_file,
            ),
        }
        .into())
    }

    /// Unmounts the staging path, unless another volume of ours is mounted
    /// there (then this volume is not staged there: nothing to do).
    pub async fn unstage(&self, volume_id: &str, staging: &Path) -> Result<(), NodeError> {
        let _staging = self.staging_locks.lock(staging).await;
        if !self.nothing_foreign_at(volume_id, staging)? {
            return Ok(());
        }
        // Gone first, so nothing heals what is being unmounted.
        if self
            .staged
            .get(staging)
            .is_some_and(|r| r.volume_id == volume_id)
        {
            self.staged.remove(staging)?;
        }
        let table = self.mounter.mount_table()?;
        let pool = top_of(&table, staging).and_then(|top| self.pool_mount_behind(&table, top));
        self.unmount_volume(volume_id, staging).await?;
        match pool {
            Some(pool) => self.release_pool_mount(&pool).await,
            None => Ok(()),
        }
    }

    /// Bind-mounts the staged volume at the target path.
    pub async fn publish(&self, request: &PublishRequest) -> Result<(), NodeError> {
        let staging = &request.staging_path;
        let target = &request.target_path;
        // One read of the mount table serves every check below (a second
        // one only after a heal changed it).
        let mut table = self.mounter.mount_table()?;
        // A dead staging mount is never bound: it is healed first.
        let needs_heal = match top_of(&table, staging) {
            Some(top) if top.is_glusterfs() => {
                self.mounter.path_state(staging) == PathState::Disconnected
            }
            _ => self.staged.get(staging).is_some_and(|r| !r.dead.is_empty()),
        };
        if needs_heal {
            self.heal(staging).await?;
            table = self.mounter.mount_table()?;
        }
        let staged = top_of(&table, staging)
            .filter(|m| m.is_glusterfs())
            .ok_or_else(|| {
                NodeError::NotStaged(format!(
                    "volume is not staged at {} (NodeStageVolume first)",
                    staging.display()
                ))
            })?;
        if let Some(top) = top_of(&table, target) {
            if self.mounter.path_state(target) == PathState::Disconnected
                && self.is_volumes(top, &request.volume_id)
            {
                self.unmount_volume(&request.volume_id, target).await?;
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
        self.mounter.prepare_dir(target)?;
        self.mounter
            .bind(staging, target, request.read_only)
            .await?;
        Ok(())
    }

    /// Unmounts the target path and removes the directory publishing made.
    pub async fn unpublish(&self, volume_id: &str, target: &Path) -> Result<(), NodeError> {
        if !self.nothing_foreign_at(volume_id, target)? {
            return Ok(());
        }
        self.unmount_volume(volume_id, target).await?;
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
    pub async fn stats(&self, volume_id: &str, path: &Path) -> Result<VolumeHealth, NodeError> {
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
        let table = self.mounter.mount_table()?;
        let top = top_of(&table, path)
            .filter(|m| m.is_glusterfs())
            .cloned()
            .ok_or_else(not_found)?;
        // Our own ids name what is mounted; a static PV's id may not.
        if mount_path_of_id(volume_id).is_some_and(|id| top.gluster_path() != Some(id)) {
            return Err(not_found());
        }
        if state == PathState::Disconnected {
            return Ok(VolumeHealth::Abnormal(format!(
                "the gluster FUSE client serving {} is gone (transport endpoint is not \
                 connected); the node plugin mounts it again and puts it back in running \
                 pods within seconds (see its log)",
                path.display()
            )));
        }
        // statfs waits on the FUSE client (5 s for a directory's first one
        // after its pool's quota was turned on): never on a runtime thread.
        let usage = {
            let (mounter, path) = (Arc::clone(&self.mounter), path.to_path_buf());
            tokio::task::spawn_blocking(move || mounter.usage(&path)).await
        };
        let usage = match usage {
            Ok(Ok(usage)) => usage,
            Ok(Err(e)) => return Ok(VolumeHealth::Abnormal(e.to_string())),
            Err(e) => return Ok(VolumeHealth::Abnormal(format!("reading usage: {e}"))),
        };
        // A subdirectory mount (`vol/dir`) has the volume's translators.
        let Some(volume) = top.gluster_volume().and_then(|v| v.split('/').next()) else {
            return Ok(VolumeHealth::Healthy(usage));
        };
        // The meta translator is at the client's root: for a bind of a
        // directory from a shared pool mount, that is the pool mount.
        let client_root = table
            .iter()
            .find(|m| m.device == top.device && m.root == Path::new("/"))
            .map_or(path, |m| m.mount_point.as_path());
        Ok(
            match self.client_view(client_root, &top.device, volume).await {
                Some(message) => VolumeHealth::Degraded(usage, message),
                None => VolumeHealth::Healthy(usage),
            },
        )
    }

    /// What is wrong as this node's FUSE client sees the bricks, read from
    /// its meta translator off the async runtime; None when all is well or
    /// when the client cannot say (no meta translator, no answer in time).
    async fn client_view(&self, path: &Path, device: &str, volume: &str) -> Option<String> {
        let reads = Arc::clone(&self.client_reads);
        if !reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device.to_string())
        {
            tracing::debug!(path = %path.display(), "an earlier read of the gluster client's meta translator has not returned");
            return None;
        }
        let mounter = Arc::clone(&self.mounter);
        let (mount, device, name) = (path.to_path_buf(), device.to_string(), volume.to_string());
        let read = tokio::task::spawn_blocking(move || {
            let links = mounter.brick_links(&mount, &name);
            reads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&device);
            links
        });
        let links = match tokio::time::timeout(CLIENT_VIEW_LIMIT, read).await {
            Ok(Ok(Ok(links))) => links,
            Ok(Ok(Err(e))) => {
                tracing::debug!(path = %path.display(), error = %e, "no gluster client view");
                return None;
            }
            Ok(Err(e)) => {
                tracing::debug!(path = %path.display(), error = %e, "no gluster client view");
                return None;
            }
            Err(_) => {
                tracing::debug!(path = %path.display(), limit_s = CLIENT_VIEW_LIMIT.as_secs(), "the gluster client's meta translator did not answer");
                return None;
            }
        };
        disconnected_message(&links)
    }

    fn top_mount(&self, path: &Path) -> Result<Option<MountEntry>, NodeError> {
        Ok(top_of(&self.mounter.mount_table()?, path).cloned())
    }

    /// Whether `mount` belongs to the volume `volume_id`: a gluster FUSE
    /// mount (or a bind of one) of that volume. A driver-made id is the
    /// volume's name; a static PV's id is looked up in the staging records;
    /// without a record of it, a gluster mount is taken as its own unless
    /// a record gives that mount point to another id (staged by a plugin
    /// that kept no records).
    fn is_volumes(&self, mount: &MountEntry, volume_id: &str) -> bool {
        let Some(mounted) = mount.gluster_path() else {
            return false;
        };
        if let Some(path) = mount_path_of_id(volume_id) {
            return mounted == path;
        }
        let records = self.staged.all();
        match records.iter().find(|r| r.volume_id == volume_id) {
            Some(record) => record.volume == mounted,
            None => !records.iter().any(|r| r.staging_path == mount.mount_point),
        }
    }

    /// False when the top mount at `path` is not this volume's (another
    /// volume, a tmpfs, the root file system...): it is never touched, and
    /// per the spec the volume is simply not there.
    fn nothing_foreign_at(&self, volume_id: &str, path: &Path) -> Result<bool, NodeError> {
        match self.top_mount(path)? {
            Some(top) if !self.is_volumes(&top, volume_id) => {
                tracing::warn!(volume = volume_id, path = %path.display(), mounted = %top.source, fs_type = %top.fs_type, "not this volume's mount; leaving it");
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// Unmounts this volume's mounts stacked at `path`, down to the first
    /// one that is not its own (left in place); nothing mounted is fine.
    async fn unmount_volume(&self, volume_id: &str, path: &Path) -> Result<(), NodeError> {
        for _ in 0..16 {
            match self.top_mount(path)? {
                None => return Ok(()),
                Some(top) if !self.is_volumes(&top, volume_id) => return Ok(()),
                Some(_) => self.mounter.unmount(path).await?,
            }
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
            let volume = crate::volume_context::gluster_volume_of(&source.volume);
            match self.lookup.status(server, volume).await {
                Ok(None) => {
                    return Err(NodeError::NotFound(format!(
                        "gluster volume {volume} does not exist (asked {server})"
                    )));
                }
                Ok(Some(VolumeStatus::Started)) => return Ok(()),
                Ok(Some(status)) => {
                    return Err(NodeError::VolumeNotStarted(format!(
                        "gluster volume {volume} is not started ({status:?} on {server})"
                    )));
                }
                Err(e) => tracing::debug!(%server, error = %e, "cannot ask about the volume"),
            }
        }
        Ok(())
    }
}

/// One async lock per path, dropped from the map when nobody holds it.
#[derive(Default)]
struct PathLocks {
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

struct PathGuard<'a> {
    owner: &'a PathLocks,
    path: PathBuf,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl PathLocks {
    async fn lock(&self, path: &Path) -> PathGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(path.to_path_buf()).or_default())
        };
        PathGuard {
            owner: self,
            path: path.to_path_buf(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for PathGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        // Only the map's own reference left: nobody holds or waits for it.
        if locks
            .get(&self.path)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.path);
        }
    }
}

/// The mount on top at `path` (the last one mounted there), if any.
fn top_of<'a>(table: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    table.iter().rev().find(|m| m.mount_point == path)
}

/// What a mount of a volume with an id this driver hands out shows as its
/// source after `server:/`: the gluster volume, or `<pool>/<directory>`.
fn mount_path_of_id(volume_id: &str) -> Option<String> {
    if let Some(name) = VolumeName::parse(volume_id) {
        return Some(name.to_string());
    }
    PoolDirectory::parse(volume_id).map(|id| id.to_string())
}

fn mount_log_file(dir: &Path, volume: &str, staging: &Path) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(staging.as_os_str().as_encoded_bytes());
    let tag: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    // `<pool>/<directory>` gets `_` (a volume name character) for its `/`.
    dir.join(format!("{}-{tag}.log", volume.replace('/', "_")))
}

/// mount.glusterfs only says "Mount failed"; the reason is in the FUSE
/// client's log. Adds its last error lines.
fn with_client_errors(detail: String, log_file: &Path) -> String {
    let Some(text) = log_tail(log_file) else {
        return detail;
    };
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("] E ["))
        .map(|l| l.split_once("] E [").map_or(l, |(_, rest)| rest))
        // A call-stack dump adds nothing an operator can act on.
        .map(|l| l.split_once(" (--> ").map_or(l, |(head, _)| head))
        .collect();
    let last: Vec<&str> = errors.iter().rev().take(3).rev().copied().collect();
    let detail = match refusal_hint(&errors) {
        Some(hint) => format!("{detail} ({hint})"),
        None => detail,
    };
    if last.is_empty() {
        detail
    } else {
        format!("{detail}; client log: {}", last.join(" | "))
    }
}

/// The last [`LOG_TAIL_BYTES`] of a FUSE client log: what this mount
/// attempt wrote, without reading a log that grew for months.
fn log_tail(log_file: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log_file).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)))
        .ok()?;
    let mut tail = Vec::new();
    file.take(LOG_TAIL_BYTES).read_to_end(&mut tail).ok()?;
    Some(String::from_utf8_lossy(&tail).into_owned())
}

const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// What a client log's errors say about a refusal by the volume's
/// isolation settings, in words an operator can act on.
fn refusal_hint(errors: &[&str]) -> Option<&'static str> {
    let any = |text: &str| errors.iter().any(|e| e.contains(text));
    if any("could not load our cert") || any("could not load private key") {
        Some(
            "this node has no TLS certificate and key where the volume's ssl.own-cert and \
             ssl.private-key name them: mount the node certificate Secret there",
        )
    } else if any("remote-error=Authentication failed") {
        Some(
            "the servers refused this client: its address is not in the volume's auth.allow, \
             or its certificate's common name is not in auth.ssl-allow",
        )
    } else if any("alert unknown ca") {
        Some(
            "the servers do not trust this node's certificate: it is not signed by the CA in \
             their glusterfs.ca",
        )
    } else if any("certificate verify failed") {
        Some("this node does not trust the servers' certificate: check its CA (glusterfs.ca)")
    } else {
        None
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

/// The condition message when this node's client misses some bricks.
fn disconnected_message(links: &[BrickLink]) -> Option<String> {
    let missing: Vec<String> = links
        .iter()
        .filter(|l| !l.connected)
        .map(|l| format!("{}:{}", l.host, l.path))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let noun = if missing.len() == 1 {
        "brick"
    } else {
        "bricks"
    };
    let served = if missing.len() < links.len() {
        "data is served by the others"
    } else {
        "no brick answers this node"
    };
    Some(format!(
        "this node's gluster client is not connected to {noun} {} ({} of {}); {served}; \
         see docs/troubleshooting.md#volume-health",
        missing.join(", "),
        missing.len(),
        links.len()
    ))
}

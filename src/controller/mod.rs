//! Provisioning logic: gluster volumes for CSI volumes, with glusterd as the
//! only record of what exists (the controller keeps no state of its own).

pub mod bricks;
pub mod capacity;
pub mod directories;
pub mod error;
pub mod health;
#[cfg(test)]
mod health_tests;
pub mod isolation;
pub mod params;
pub mod placement;
pub mod pools;
pub mod quota;
pub mod survey;
#[cfg(test)]
mod tests;
pub mod zones;

use std::sync::Arc;

use futures_util::future::join_all;
use std::time::Duration;

use crate::gluster::{BrickAddress, GlusterError, Glusterd, NewVolume, VolumeInfo, VolumeStatus};
use crate::names::{PoolDirectory, VolumeName};
use crate::ownership::{
    INTERRUPTED_CREATE, OPT_CSI_DELETING, OPT_CSI_NAME, OPT_CSI_SIZE, Ownership,
};
use crate::volume_context::VolumeContext;
pub use bricks::{BrickAction, BrickError, BrickRootReport, BrickServers, RootCheck};
pub use capacity::Capacity;
pub use directories::{DirectoryError, DirectoryState, PoolAccess, PoolDirectories};
pub use error::ControllerError;
pub use health::VolumeHealth;
pub use isolation::Isolation;
pub use params::StorageClassParams;
pub use zones::{ServerZones, ZoneRule};

/// How long a delete waits for clients to go (a node that just unstaged)
/// before refusing, and for glusterd to answer who they are.
pub const IN_USE_PATIENCE: Duration = Duration::from_secs(5);

/// How long glfsheal may take for one volume before its answer is given up
/// (a server that drops packets can hold its connection attempts).
pub const HEAL_PATIENCE: Duration = Duration::from_secs(10);

/// Volumes whose health ListVolumes reads at once (two CLI reads each).
pub const HEALTH_PARALLELISM: usize = 4;

/// How long brick removal is retried while a server's glusterd still shows
/// the volume started: a stop commits on the peers one after another (and
/// an earlier attempt's stop may still be running).
pub const STOP_SETTLE: Duration = Duration::from_secs(10);

/// How long each server of a volume has to answer (its brick agent, or
/// ssh) before the volume is deleted: glusterd does not notice a server
/// whose packets are dropped for minutes, and would hold the volume's lock
/// waiting for it.
pub const PEER_PATIENCE: Duration = Duration::from_secs(5);

/// Extra `volume start force` attempts after glusterd fails a start.
const START_RETRIES: u32 = 2;

/// Extra `volume stop force` attempts after glusterd fails a stop's commit
/// (waits of 0.5, 1, 2 and 4 s).
const STOP_RETRIES: u32 = 4;

#[derive(Clone, Debug)]
pub struct ProvisionerConfig {
    /// Brick root when a StorageClass sets none.
    pub default_brick_root: String,
    /// Put bricks in `<root>/<server>/<volume>` instead of `<root>/<volume>`:
    /// for test clusters whose "servers" share one file system.
    pub brick_dir_per_server: bool,
    /// FUSE options every node adds when mounting (volume_context).
    pub mount_options: Vec<String>,
    /// Brick roots may be plain directories (of the root file system, say)
    /// for StorageClasses that do not say (`allowRootFilesystemBricks`).
    pub allow_root_filesystem_bricks: bool,
    /// How long a delete waits for clients to go (a node that unstaged a
    /// moment ago) and for glusterd to say who they are, before refusing.
    pub in_use_patience: Duration,
    /// How long brick removal is asked again while a server still shows
    /// the volume started ([`STOP_SETTLE`]).
    pub stop_settle: Duration,
    /// Who may connect to new volumes (`auth.allow`, TLS); off by default.
    pub isolation: Isolation,
    /// The zone of each server that has one (`--server-zone`), for spreading
    /// bricks over zones.
    pub server_zones: ServerZones,
}

/// Requested capacity; 0 means "not given" for either bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapacityRange {
    pub required_bytes: u64,
    pub limit_bytes: u64,
}

impl CapacityRange {
    /// The size recorded for a new volume.
    fn size(self) -> u64 {
        if self.required_bytes > 0 {
            self.required_bytes
        } else {
            self.limit_bytes
        }
    }

    fn admits(self, size: u64) -> bool {
        size >= self.required_bytes && (self.limit_bytes == 0 || size <= self.limit_bytes)
    }
}

#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub csi_name: String,
    pub capacity: CapacityRange,
    pub params: StorageClassParams,
}

/// A volume as the CO sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisionedVolume {
    /// A gluster volume's name, or `<pool>/<directory>`.
    pub id: String,
    pub capacity_bytes: u64,
    pub context: VolumeContext,
}

/// One page of ListVolumes.
#[derive(Debug)]
pub struct VolumePage {
    pub volumes: Vec<ProvisionedVolume>,
    /// Id to continue after, if more volumes follow.
    pub next: Option<String>,
}

pub struct Provisioner {
    glusterd: Arc<dyn Glusterd>,
    bricks: Arc<dyn BrickServers>,
    config: ProvisionerConfig,
    /// Whether sizes are enforced where the StorageClass does not say,
    /// read once from the pool (see [`Provisioner::enforces`]).
    enforce_by_default: tokio::sync::OnceCell<bool>,
    /// Subdirectory mode's reach into pools; `None`: not offered.
    directories: Option<Arc<dyn PoolDirectories>>,
    pool_locks: pools::PoolLocks,
}

impl Provisioner {
    pub fn new(
        glusterd: Arc<dyn Glusterd>,
        bricks: Arc<dyn BrickServers>,
        config: ProvisionerConfig,
    ) -> Self {
        Provisioner {
            glusterd,
            bricks,
            config,
            enforce_by_default: tokio::sync::OnceCell::new(),
            directories: None,
            pool_locks: pools::PoolLocks::default(),
        }
    }

    /// Offers subdirectory mode, reaching pools through `directories`.
    pub fn with_directories(mut self, directories: Arc<dyn PoolDirectories>) -> Self {
        self.directories = Some(directories);
        self
    }

    /// The glusterd this controller works through.
    pub fn glusterd(&self) -> Arc<dyn Glusterd> {
        Arc::clone(&self.glusterd)
    }

    /// What new volumes get to keep other clients out.
    pub fn isolation(&self) -> &Isolation {
        &self.config.isolation
    }

    /// glusterd answers (asked every time: nothing cached).
    pub async fn probe(&self) -> Result<(), ControllerError> {
        self.glusterd
            .peers()
            .await
            .map(drop)
            .map_err(ControllerError::gluster("asking glusterd for its peers"))
    }

    /// Creates the volume, or returns the existing one for a retry.
    pub async fn create(
        &self,
        request: &CreateRequest,
    ) -> Result<ProvisionedVolume, ControllerError> {
        let name = VolumeName::for_csi_name(&request.csi_name).map_err(|e| {
            ControllerError::Parameter(params::ParamError {
                key: "name".into(),
                reason: e.to_string(),
            })
        })?;
        self.config
            .isolation
            .check_volume_options(&request.params.volume_options)?;
        if !request.params.volume_options.is_empty() {
            let settable = self
                .glusterd
                .settable_options()
                .await
                .map_err(ControllerError::gluster("listing gluster volume options"))?;
            request.params.check_option_keys(&settable)?;
        }
        if let Some(pool) = &request.params.pool {
            return self.create_directory(request, pool).await;
        }
        match self.read(&name).await? {
            None => self.create_new(&name, request).await,
            Some(existing) => match Ownership::of(&existing) {
                Ownership::Foreign => Err(ControllerError::AlreadyExists(format!(
                    "gluster volume {name} exists but was not created by this driver"
                ))),
                Ownership::Ours { deleting: true, .. } => {
                    // A failed earlier attempt, or a delete cut short: finish
                    // removing it, then start over.
                    self.destroy(&existing).await?;
                    self.create_new(&name, request).await
                }
                Ownership::Ours {
                    csi_name,
                    size_bytes,
                    ..
                } => {
                    if csi_name != request.csi_name {
                        return Err(ControllerError::AlreadyExists(format!(
                            "gluster volume {name} belongs to CSI volume {csi_name:?}"
                        )));
                    }
                    self.check_compatible(&existing, request, size_bytes)?;
                    self.finish(&existing, request, size_bytes).await
                }
                Ownership::Unmarked => {
                    self.check_compatible(&existing, request, request.capacity.size())?;
                    self.finish(&existing, request, request.capacity.size())
                        .await
                }
            },
        }
    }

    /// Deletes a volume this driver made, with its brick directories.
    /// Ids the driver never hands out and volumes already gone are success.
    pub async fn delete(&self, volume_id: &str) -> Result<(), ControllerError> {
        if let Some(id) = PoolDirectory::parse(volume_id) {
            return self.delete_directory(&id).await;
        }
        let Some(name) = VolumeName::parse(volume_id) else {
            return Ok(());
        };
        let Some(existing) = self.read(&name).await? else {
            return Ok(());
        };
        let ownership = Ownership::of(&existing);
        if !ownership.is_ours() {
            return Err(ControllerError::NotOurs(name.to_string()));
        }
        self.require_all_peers().await?;
        self.require_answers_from(&existing).await?;
        // Once marked for deletion it is stopped: nobody can be using it.
        let deleting = matches!(ownership, Ownership::Ours { deleting: true, .. });
        if existing.status == VolumeStatus::Started && !deleting {
            self.refuse_if_in_use(&existing).await?;
        }
        self.destroy(&existing).await
    }

    /// A volume still mounted (a static PersistentVolume sharing it, a pod
    /// on a node that did not unstage) is not deleted: its data would go
    /// from under its users.
    async fn refuse_if_in_use(&self, volume: &VolumeInfo) -> Result<(), ControllerError> {
        let name = &volume.name;
        // A node that unstaged a moment ago may still show as a client, and
        // a peer that just came back may not answer yet: ask again a while.
        let clients = self
            .clients_once_settled(volume, self.config.in_use_patience)
            .await
            .map_err(ControllerError::gluster(format!(
                "asking which clients use gluster volume {name}"
            )))?;
        let users = clients.users();
        if users.is_empty() {
            return Ok(());
        }
        let kinds: Vec<String> = users.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let hosts: Vec<&str> = clients.hosts.iter().map(String::as_str).collect();
        Err(ControllerError::InUse(format!(
            "gluster volume {name} is still in use ({}; connections come from {}, the \
             servers' own daemons among them); unmount it there first (a static \
             PersistentVolume sharing the volume, or a node that has not unstaged it) and \
             the deletion is retried",
            kinds.join(", "),
            hosts.join(", ")
        )))
    }

    /// Asks glusterd who uses `volume` until nobody but gluster's own
    /// daemons does, the answer is final (an error other than busy or
    /// unreachable), or `patience` is over; returns the last answer.
    async fn clients_once_settled(
        &self,
        volume: &VolumeInfo,
        patience: Duration,
    ) -> Result<crate::gluster::VolumeClients, GlusterError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let asked = self.glusterd.volume_clients(volume).await;
            let settled = match &asked {
                Ok(clients) => clients.users().is_empty(),
                Err(e) => !matches!(e.code(), tonic::Code::Aborted | tonic::Code::Unavailable),
            };
            if settled || tokio::time::Instant::now() >= deadline {
                return asked;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The volume, if it exists and is this driver's (and not being deleted).
    pub async fn get(&self, volume_id: &str) -> Result<Option<ProvisionedVolume>, ControllerError> {
        if let Some(id) = PoolDirectory::parse(volume_id) {
            return Ok(self.get_directory(&id).await?.map(|(volume, _)| volume));
        }
        let Some(name) = VolumeName::parse(volume_id) else {
            return Ok(None);
        };
        Ok(self.read(&name).await?.and_then(|v| self.provisioned(&v)))
    }

    /// Volumes (and directories of pools) in id order, starting after `after`.
    pub async fn list(
        &self,
        after: Option<&str>,
        max_entries: usize,
    ) -> Result<VolumePage, ControllerError> {
        let (volumes, next) = self.page(after, max_entries).await?;
        Ok(VolumePage {
            volumes: volumes.into_iter().map(|(v, _)| v).collect(),
            next,
        })
    }

    /// [`Provisioner::list`] with each volume's health, asked for
    /// [`HEALTH_PARALLELISM`] volumes at a time (the external health monitor
    /// reads conditions from ListVolumes when a driver lists volumes). A
    /// volume whose health cannot be read carries the reason instead. The
    /// directories of one pool share its health, read once.
    pub async fn list_with_health(
        &self,
        after: Option<&str>,
        max_entries: usize,
    ) -> Result<(VolumePage, Vec<Result<VolumeHealth, String>>), ControllerError> {
        let (volumes, next) = self.page(after, max_entries).await?;
        let mut distinct: Vec<&VolumeInfo> = Vec::new();
        for (_, info) in &volumes {
            if !distinct.iter().any(|d| d.name == info.name) {
                distinct.push(info);
            }
        }
        let slots = tokio::sync::Semaphore::new(HEALTH_PARALLELISM);
        let read = join_all(distinct.iter().map(|info| async {
            let _slot = slots.acquire().await.ok();
            self.health_of(info).await.map_err(|e| e.to_string())
        }))
        .await;
        let health = volumes
            .iter()
            .map(|(_, info)| {
                let at = distinct.iter().position(|d| d.name == info.name);
                at.map_or_else(|| Err("not read".to_string()), |i| read[i].clone())
            })
            .collect();
        let volumes = volumes.into_iter().map(|(v, _)| v).collect();
        Ok((VolumePage { volumes, next }, health))
    }

    async fn page(
        &self,
        after: Option<&str>,
        max_entries: usize,
    ) -> Result<(Vec<(ProvisionedVolume, VolumeInfo)>, Option<String>), ControllerError> {
        let infos = self
            .glusterd
            .volumes()
            .await
            .map_err(ControllerError::gluster("listing gluster volumes"))?;
        let mut volumes: Vec<(ProvisionedVolume, VolumeInfo)> = Vec::new();
        for info in infos {
            if let Some(volume) = self.listed(&info) {
                volumes.push((volume, info));
            } else {
                volumes.extend(self.listed_directories(&info).await?);
            }
        }
        volumes.retain(|(v, _)| after.is_none_or(|after| v.id.as_str() > after));
        volumes.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let limit = if max_entries == 0 {
            usize::MAX
        } else {
            max_entries
        };
        let next = (volumes.len() > limit).then(|| volumes[limit - 1].0.id.clone());
        volumes.truncate(limit);
        Ok((volumes, next))
    }

    /// A volume of this driver and its health; `None`: no such volume.
    pub async fn health(
        &self,
        volume_id: &str,
    ) -> Result<Option<(ProvisionedVolume, VolumeHealth)>, ControllerError> {
        if let Some(id) = PoolDirectory::parse(volume_id) {
            // A directory is as healthy as its pool.
            let Some((volume, pool)) = self.get_directory(&id).await? else {
                return Ok(None);
            };
            return Ok(Some((volume, self.health_of(&pool).await?)));
        }
        let Some(name) = VolumeName::parse(volume_id) else {
            return Ok(None);
        };
        let Some(info) = self.read(&name).await? else {
            return Ok(None);
        };
        let Some(volume) = self.provisioned(&info) else {
            return Ok(None);
        };
        Ok(Some((volume, self.health_of(&info).await?)))
    }

    /// What gluster says of a volume's bricks and self-heal backlog: two
    /// reads, asked at once. A heal summary that fails or takes longer than
    /// [`HEAL_PATIENCE`] leaves the backlog unknown (and the volume abnormal).
    pub async fn health_of(&self, volume: &VolumeInfo) -> Result<VolumeHealth, ControllerError> {
        if volume.status != VolumeStatus::Started {
            return Ok(VolumeHealth::assess(volume, None, None));
        }
        let name = volume.name.as_str();
        let heal = async {
            if volume.replica_count <= 1 {
                return None;
            }
            let asked = tokio::time::timeout(HEAL_PATIENCE, self.glusterd.heal_summary(name));
            Some(match asked.await {
                Ok(Ok(bricks)) => Ok(bricks),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "glfsheal did not answer within {}s",
                    HEAL_PATIENCE.as_secs()
                )),
            })
        };
        let (states, heal) = tokio::join!(self.glusterd.brick_states(name), heal);
        let states = states.map_err(ControllerError::gluster(format!(
            "asking glusterd for the bricks of {name}"
        )))?;
        let heal = match (&states, &heal) {
            (Some(_), Some(Ok(bricks))) => Some(Ok(bricks.as_slice())),
            (Some(_), Some(Err(why))) => Some(Err(why.clone())),
            (None, _) | (_, None) => None,
        };
        Ok(VolumeHealth::assess(volume, states.as_deref(), heal))
    }

    async fn read(&self, name: &VolumeName) -> Result<Option<VolumeInfo>, ControllerError> {
        self.glusterd
            .volume(name.as_str())
            .await
            .map_err(ControllerError::gluster(format!(
                "reading gluster volume {name}"
            )))
    }

    /// A volume of ours, not being deleted, as the CO sees it.
    fn provisioned(&self, volume: &VolumeInfo) -> Option<ProvisionedVolume> {
        match Ownership::of(volume) {
            Ownership::Ours {
                deleting: false, ..
            } => self.as_provisioned(volume),
            _ => None,
        }
    }

    /// What ListVolumes shows: every volume of ours that exists, those
    /// being deleted too (a delete that never finishes must not hide its
    /// volume; their condition says so), each logged.
    fn listed(&self, volume: &VolumeInfo) -> Option<ProvisionedVolume> {
        match Ownership::of(volume) {
            Ownership::Ours {
                deleting: true,
                csi_name,
                ..
            } => {
                tracing::warn!(
                    volume = %volume.name,
                    csi_name = %csi_name,
                    since = volume.options.get(OPT_CSI_DELETING).map(String::as_str).unwrap_or(""),
                    "listed volume is being deleted; a DeleteVolume retry finishes it"
                );
                self.as_provisioned(volume)
            }
            Ownership::Unmarked => {
                tracing::warn!(
                    volume = %volume.name,
                    "listed volume was left by a CreateVolume cut short before it was marked; \
                     the CreateVolume retry finishes it"
                );
                self.as_provisioned(volume)
            }
            Ownership::Ours { .. } => self.as_provisioned(volume),
            Ownership::Foreign => None,
        }
    }

    fn as_provisioned(&self, volume: &VolumeInfo) -> Option<ProvisionedVolume> {
        let size_bytes = match Ownership::of(volume) {
            Ownership::Ours { size_bytes, .. } => size_bytes,
            Ownership::Unmarked => 0,
            Ownership::Foreign => return None,
        };
        let servers: Vec<String> = volume.bricks.iter().map(|b| b.host.clone()).collect();
        Some(ProvisionedVolume {
            id: VolumeName::parse(&volume.name)?.to_string(),
            capacity_bytes: size_bytes,
            context: VolumeContext::new(&volume.name, &servers, self.config.mount_options.clone())?,
        })
    }

    fn brick_dir(&self, root: &str, server: &str, name: &str) -> String {
        if self.config.brick_dir_per_server {
            format!("{root}/{server}/{name}")
        } else {
            format!("{root}/{name}")
        }
    }

    fn brick_root<'a>(&'a self, request: &'a CreateRequest) -> &'a str {
        request
            .params
            .brick_root
            .as_deref()
            .unwrap_or(&self.config.default_brick_root)
    }

    async fn create_new(
        &self,
        name: &VolumeName,
        request: &CreateRequest,
    ) -> Result<ProvisionedVolume, ControllerError> {
        let params = &request.params;
        let (servers, bricks, allow_root_filesystem) =
            self.place_bricks(name, name.as_str(), request).await?;
        let new = NewVolume {
            name: name.to_string(),
            replica: params.replica,
            arbiter: params.arbiter,
            bricks,
            force: allow_root_filesystem,
        };
        let size = request.capacity.size();
        let enforced = self.enforces(request, size).await?;
        self.create_in_glusterd(name, &new).await?;
        let finished = async {
            self.mark(name, request, size).await?;
            self.isolate(name, &self.config.isolation.volume_options(&servers))
                .await?;
            self.apply_options(name, request, enforced).await?;
            self.start(name).await?;
            // Only now: glusterd refuses quota on a volume never started.
            if enforced {
                self.enforce_size(name, size, false).await?;
                self.await_quota_helpers(name).await;
            }
            Ok(())
        }
        .await;
        if let Err(error) = finished {
            return Err(self.roll_back(name, error).await);
        }
        Ok(ProvisionedVolume {
            id: name.to_string(),
            capacity_bytes: size,
            context: VolumeContext::new(name.as_str(), &servers, self.config.mount_options.clone())
                .expect("placement returns at least one server"),
        })
    }

    /// Where a new gluster volume's bricks go: `replica` connected servers
    /// chosen by `hashed`'s hash (and the zones), each brick root checked
    /// there, brick directories named `directory`; and whether brick roots
    /// may be on the root file system (`volume create ... force`).
    async fn place_bricks(
        &self,
        hashed: &VolumeName,
        directory: &str,
        request: &CreateRequest,
    ) -> Result<(Vec<String>, Vec<BrickAddress>, bool), ControllerError> {
        let peers = self
            .glusterd
            .peers()
            .await
            .map_err(ControllerError::gluster("listing gluster peers"))?;
        let params = &request.params;
        let servers = placement::BrickPlacement {
            replica: params.replica,
            allowed: params.servers.as_deref(),
            zones: &self.config.server_zones,
            rule: params.zones,
        }
        .place(hashed, &peers)?;
        let root = self.brick_root(request);
        let allow_root_filesystem = params
            .allow_root_filesystem_bricks
            .unwrap_or(self.config.allow_root_filesystem_bricks);
        self.check_brick_roots(&servers, root, allow_root_filesystem)
            .await?;
        let bricks = servers
            .iter()
            .map(|server| BrickAddress {
                host: server.clone(),
                path: self.brick_dir(root, server, directory),
            })
            .collect();
        Ok((servers, bricks, allow_root_filesystem))
    }

    /// Asks every server that gets a brick what the brick root is there, in
    /// parallel; refuses (before anything is made) if it is missing or, unless
    /// allowed, not a file system of its own.
    async fn check_brick_roots(
        &self,
        servers: &[String],
        root: &str,
        allow_root_filesystem: bool,
    ) -> Result<(), ControllerError> {
        let checks = servers.iter().map(|s| self.bricks.check_root(s, root));
        let answers = join_all(checks).await;
        let mut problems = Vec::new();
        let mut failures = Vec::new();
        for (server, answer) in servers.iter().zip(answers) {
            let report = match answer {
                Ok(RootCheck::Checked(report)) => report,
                Ok(RootCheck::NotChecked) => continue,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            tracing::debug!(
                server = %server,
                root,
                own_file_system = report.own_file_system,
                total_bytes = report.total_bytes,
                available_bytes = report.available_bytes,
                "brick root checked"
            );
            if let Some(problem) = BrickRootProblem::of(&report, allow_root_filesystem) {
                problems.push((server.clone(), problem, report));
            }
        }
        let count = failures.len();
        if let Some(first) = failures.into_iter().next() {
            return Err(ControllerError::BrickRootUnchecked {
                count,
                plural: if count == 1 { "" } else { "s" },
                first: Box::new(first),
            });
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(ControllerError::BrickRoot(describe_root_problems(
            root, &problems,
        )))
    }

    /// `volume create`. A retry after a failed create can meet brick
    /// directories glusterd marked then; they are removed and the create runs
    /// once more (without `force`, glusterd refuses to reuse them).
    async fn create_in_glusterd(
        &self,
        name: &VolumeName,
        new: &NewVolume,
    ) -> Result<(), ControllerError> {
        let mut reused = false;
        loop {
            let source = match self.glusterd.create_volume(new).await {
                Ok(()) => return Ok(()),
                Err(GlusterError::VolumeExists(_)) => {
                    return Err(ControllerError::CreateRace(name.to_string()));
                }
                // A command the server's allowlist refused never reached glusterd.
                Err(source @ GlusterError::Refused { .. }) => {
                    return Err(ControllerError::Gluster {
                        action: format!("creating gluster volume {name}"),
                        source,
                    });
                }
                Err(source) => source,
            };
            // glusterd leaves brick directories behind on the servers that
            // accepted theirs before one refused.
            self.remove_half_made(name, &new.bricks).await;
            match source {
                GlusterError::BrickInUse { .. } if !reused => reused = true,
                GlusterError::RootPartition { .. } => {
                    return Err(ControllerError::RootFilesystem {
                        volume: name.to_string(),
                        source,
                    });
                }
                source => {
                    return Err(ControllerError::Gluster {
                        action: format!("creating gluster volume {name}"),
                        source,
                    });
                }
            }
        }
    }

    /// Completes an existing volume of ours: marks, options, started.
    async fn finish(
        &self,
        existing: &VolumeInfo,
        request: &CreateRequest,
        size: u64,
    ) -> Result<ProvisionedVolume, ControllerError> {
        let name = VolumeName::parse(&existing.name)
            .ok_or_else(|| ControllerError::NotOurs(existing.name.clone()))?;
        if !existing.options.contains_key(OPT_CSI_NAME) {
            self.mark(&name, request, size).await?;
        }
        let enforced = self.enforces(request, size).await?;
        let tuning = if enforced {
            self.quota_tuning(&request.params.volume_options)
        } else {
            Vec::new()
        };
        let missing: Vec<(String, String)> = tuning
            .iter()
            .chain(&request.params.volume_options)
            .filter(|(key, _)| !existing.options.contains_key(key))
            .cloned()
            .collect();
        if !missing.is_empty() {
            self.set_options(&name, &missing).await?;
        }
        let servers: Vec<String> = existing.bricks.iter().map(|b| b.host.clone()).collect();
        let isolation: Vec<(String, String)> = self
            .config
            .isolation
            .volume_options(&servers)
            .into_iter()
            .filter(|(key, value)| existing.options.get(key) != Some(value))
            .collect();
        if existing.status != VolumeStatus::Started {
            self.isolate(&name, &isolation).await?;
            self.start(&name).await?;
        } else if !isolation.is_empty() {
            // TLS cannot be turned on under running bricks; a volume made
            // under other settings keeps them (docs: existing volumes).
            tracing::warn!(volume = %name, differing = ?isolation, "volume was started before the current isolation settings; left as it is");
        }
        if enforced {
            self.enforce_size(&name, size, existing.quota_enabled())
                .await?;
            self.await_quota_helpers(&name).await;
        }
        Ok(ProvisionedVolume {
            capacity_bytes: size,
            context: VolumeContext::new(name.as_str(), &servers, self.config.mount_options.clone())
                .ok_or_else(|| ControllerError::NotOurs(name.to_string()))?,
            id: name.to_string(),
        })
    }

    /// Same name, compatible request: everything the new request asks for
    /// is what the existing volume is.
    fn check_compatible(
        &self,
        existing: &VolumeInfo,
        request: &CreateRequest,
        size: u64,
    ) -> Result<(), ControllerError> {
        let name = &existing.name;
        let params = &request.params;
        let incompatible = |what: String| {
            Err(ControllerError::AlreadyExists(format!(
                "volume {:?} already exists as gluster volume {name} with {what}",
                request.csi_name
            )))
        };
        if !request.capacity.admits(size) {
            return incompatible(format!(
                "capacity {size} bytes, outside the requested range (required {}, limit {})",
                request.capacity.required_bytes, request.capacity.limit_bytes
            ));
        }
        if existing.replica_count != params.replica
            || (existing.arbiter_count > 0) != params.arbiter
        {
            return incompatible(format!(
                "replica {} arbiter {}",
                existing.replica_count, existing.arbiter_count
            ));
        }
        let root = self.brick_root(request);
        if let Some(brick) = existing.bricks.iter().find(|b| {
            let name = VolumeName::parse(name);
            name.is_none_or(|n| b.path != self.brick_dir(root, &b.host, n.as_str()))
        }) {
            return incompatible(format!(
                "brick {}:{} outside brickRoot {root}",
                brick.host, brick.path
            ));
        }
        let outside = |b: &&crate::gluster::Brick| {
            params
                .servers
                .as_ref()
                .is_some_and(|allowed| !allowed.contains(&b.host))
        };
        if let Some(brick) = existing.bricks.iter().find(outside) {
            return incompatible(format!(
                "a brick on {}, outside parameters.servers",
                brick.host
            ));
        }
        // Zones are the controller's flags, not the request's: the same PVC's
        // retry is never refused because the zone map changed since.
        if params.zones == ZoneRule::Distinct {
            let mut zones: Vec<Option<&str>> = existing
                .bricks
                .iter()
                .map(|b| self.config.server_zones.zone_of(&b.host))
                .collect();
            zones.sort_unstable();
            zones.dedup();
            if zones.len() != existing.bricks.len() || zones.contains(&None) {
                tracing::warn!(
                    volume = %name,
                    bricks = ?existing.bricks.iter().map(|b| &b.host).collect::<Vec<_>>(),
                    "volume's bricks are not in distinct zones under the current --server-zone \
                     map; kept as it is"
                );
            }
        }
        for (key, value) in &params.volume_options {
            match existing.options.get(key) {
                Some(current) if current != value => {
                    return incompatible(format!("option {key}={current}, not {value}"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn mark(
        &self,
        name: &VolumeName,
        request: &CreateRequest,
        size: u64,
    ) -> Result<(), ControllerError> {
        self.glusterd
            .set_options(
                name.as_str(),
                &[
                    (OPT_CSI_NAME.to_string(), request.csi_name.clone()),
                    (OPT_CSI_SIZE.to_string(), size.to_string()),
                ],
            )
            .await
            .map_err(ControllerError::gluster(format!(
                "marking gluster volume {name} as ours"
            )))
    }

    /// The StorageClass's `volumeOptions`, after the quota tuning of an
    /// enforced volume: one transaction.
    async fn apply_options(
        &self,
        name: &VolumeName,
        request: &CreateRequest,
        enforced: bool,
    ) -> Result<(), ControllerError> {
        let mut options = if enforced {
            self.quota_tuning(&request.params.volume_options)
        } else {
            Vec::new()
        };
        options.extend(request.params.volume_options.iter().cloned());
        if options.is_empty() {
            return Ok(());
        }
        self.set_options(name, &options).await
    }

    /// Sets the isolation options, before the first start: bricks started
    /// without `server.ssl` stay plaintext.
    async fn isolate(
        &self,
        name: &VolumeName,
        options: &[(String, String)],
    ) -> Result<(), ControllerError> {
        if options.is_empty() {
            return Ok(());
        }
        self.glusterd
            .set_options(name.as_str(), options)
            .await
            .map_err(ControllerError::gluster(format!(
                "setting the tenant isolation options (--client-addresses, --tls) on gluster \
                 volume {name}"
            )))
    }

    async fn set_options(
        &self,
        name: &VolumeName,
        options: &[(String, String)],
    ) -> Result<(), ControllerError> {
        match self.glusterd.set_options(name.as_str(), options).await {
            Ok(()) => Ok(()),
            // glusterd validates values; its refusal is the user's input.
            Err(GlusterError::Rejected { message, .. }) => {
                Err(ControllerError::Parameter(params::ParamError {
                    key: params::VOLUME_OPTIONS.into(),
                    reason: format!("glusterd refused them: {message}"),
                }))
            }
            Err(source) => Err(ControllerError::Gluster {
                action: format!("setting options on gluster volume {name}"),
                source,
            }),
        }
    }

    /// Starts the volume. glusterd sometimes fails a start under load
    /// ("Commit failed on <peer>": a brick or the self-heal daemon did not
    /// come up there); `start force` finishes such a half-done start.
    async fn start(&self, name: &VolumeName) -> Result<(), ControllerError> {
        let start = |force| self.glusterd.start_volume(name.as_str(), force);
        let mut result = start(false).await;
        for attempt in 1..=START_RETRIES {
            match &result {
                Err(GlusterError::Rejected { message, .. }) => {
                    tracing::warn!(volume = %name, attempt, %message, "volume start failed; retrying with force");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    result = start(true).await;
                }
                _ => break,
            }
        }
        result.map_err(ControllerError::gluster(format!(
            "starting gluster volume {name}"
        )))
    }

    /// `volume stop force`, asked again while glusterd fails its commit
    /// (with multiplexed bricks a server fails it, "Failed to send detach
    /// request", while its connection to the shared brick process is down).
    async fn stop(&self, name: &VolumeName) -> Result<(), ControllerError> {
        let stop = || self.glusterd.stop_volume(name.as_str(), true);
        let mut result = stop().await;
        for attempt in 1..=STOP_RETRIES {
            match &result {
                Err(GlusterError::Rejected { message, .. }) => {
                    tracing::warn!(volume = %name, attempt, %message, "volume stop failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                    result = stop().await;
                }
                _ => break,
            }
        }
        result.map_err(ControllerError::gluster(format!(
            "stopping gluster volume {name}"
        )))
    }

    /// Undoes a create that failed after `volume create` succeeded.
    async fn roll_back(&self, name: &VolumeName, error: ControllerError) -> ControllerError {
        let cleanup = async {
            match self.read(name).await? {
                Some(volume) => self.destroy(&volume).await,
                None => Ok(()),
            }
        }
        .await;
        match cleanup {
            Ok(()) => error,
            Err(cleanup) => ControllerError::CleanupFailed {
                error: Box::new(error),
                cleanup: Box::new(cleanup),
            },
        }
    }

    /// Removes a volume of ours for good: marked as being deleted (from here
    /// on it is never handed out again), stopped, bricks removed, deleted.
    /// Every step is idempotent, so a retry after any failure completes it.
    async fn destroy(&self, volume: &VolumeInfo) -> Result<(), ControllerError> {
        let name = VolumeName::parse(&volume.name)
            .ok_or_else(|| ControllerError::NotOurs(volume.name.clone()))?;
        if !volume.options.contains_key(OPT_CSI_DELETING) {
            let mut marks = vec![(OPT_CSI_DELETING.to_string(), unix_now().to_string())];
            if !volume.options.contains_key(OPT_CSI_NAME) {
                // An unmarked half-made volume: claim it so the brick agents
                // accept removing its bricks.
                marks.push((OPT_CSI_NAME.to_string(), INTERRUPTED_CREATE.to_string()));
            }
            self.glusterd
                .set_options(name.as_str(), &marks)
                .await
                .map_err(ControllerError::gluster(format!(
                    "marking {name} for deletion"
                )))?;
        }
        // Asked even when the volume reads as stopped: that reading comes
        // from one glusterd, which may have committed an earlier attempt's
        // stop while its peers had not. glusterd answers a stop (or "not
        // started") only under the pool-wide lock, after every peer
        // committed; a stop still running elsewhere makes it busy (ABORTED,
        // retried). Forced: after a failed start, peers can disagree on
        // whether the volume runs, and a plain stop is refused where it does
        // not.
        self.stop(&name).await?;
        self.remove_bricks(&name, volume).await?;
        self.glusterd
            .delete_volume(name.as_str())
            .await
            .map_err(ControllerError::gluster(format!(
                "deleting gluster volume {name}"
            )))
    }

    /// Has every brick directory removed by its server's agent, which reads
    /// the volume from its own glusterd first. Bricks whose glusterd still
    /// shows the volume started (ABORTED) are asked again for
    /// `stop_settle`; any other refusal is returned at once.
    async fn remove_bricks(
        &self,
        name: &VolumeName,
        volume: &VolumeInfo,
    ) -> Result<(), ControllerError> {
        let settle_by = tokio::time::Instant::now() + self.config.stop_settle;
        let mut pending: Vec<&crate::gluster::Brick> = volume.bricks.iter().collect();
        loop {
            let removals = pending
                .iter()
                .map(|brick| self.bricks.remove(&brick.host, name, &brick.path));
            let answers = join_all(removals).await;
            let mut failed = Vec::new();
            let mut errors = Vec::new();
            for (brick, answer) in pending.iter().zip(answers) {
                if let Err(e) = answer {
                    failed.push(*brick);
                    errors.push(e);
                }
            }
            if errors.is_empty() {
                return Ok(());
            }
            let settling = errors.iter().all(|e| e.code == tonic::Code::Aborted);
            if !settling || tokio::time::Instant::now() >= settle_by {
                let count = errors.len();
                return Err(ControllerError::Bricks {
                    volume: name.to_string(),
                    count,
                    plural: if count == 1 { "y" } else { "ies" },
                    first: Box::new(errors.swap_remove(0)),
                });
            }
            tracing::debug!(volume = %name, bricks = failed.len(), "a server still shows the volume started; asking again");
            pending = failed;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// After a failed `volume create`: ask every server to drop the brick
    /// directory glusterd may have made. Best effort; the agents refuse
    /// anything that holds data or belongs to a volume.
    async fn remove_half_made(&self, name: &VolumeName, bricks: &[BrickAddress]) {
        let removals = bricks
            .iter()
            .map(|b| self.bricks.remove(&b.host, name, &b.path));
        for result in join_all(removals).await {
            if let Err(e) = result {
                tracing::warn!(volume = %name, error = %e, "half-made brick directory left behind");
            }
        }
    }

    /// Every server with a brick of `volume` answers within
    /// [`PEER_PATIENCE`] (any answer: it is reachable), or the delete is
    /// UNAVAILABLE naming the silent ones, before glusterd is asked anything
    /// that would wait on them.
    async fn require_answers_from(&self, volume: &VolumeInfo) -> Result<(), ControllerError> {
        let mut asked: Vec<(&str, &str)> = Vec::new();
        for brick in &volume.bricks {
            if asked.iter().all(|(host, _)| *host != brick.host) {
                let root = brick.path.rsplit_once('/').map_or("/", |(root, _)| root);
                asked.push((
                    brick.host.as_str(),
                    if root.is_empty() { "/" } else { root },
                ));
            }
        }
        let answers = join_all(asked.iter().map(|(host, root)| {
            tokio::time::timeout(PEER_PATIENCE, self.bricks.check_root(host, root))
        }))
        .await;
        let silent: Vec<String> = asked
            .iter()
            .zip(answers)
            .filter_map(|((host, _), answer)| match answer {
                Err(_) => Some(format!(
                    "{host} (no answer within {} s)",
                    PEER_PATIENCE.as_secs()
                )),
                Ok(Err(e))
                    if matches!(
                        e.code,
                        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                    ) =>
                {
                    Some(format!("{host} ({})", e.message))
                }
                Ok(_) => None,
            })
            .collect();
        if silent.is_empty() {
            return Ok(());
        }
        Err(ControllerError::PeersDown(format!(
            "gluster server{} {} of volume {} did not answer: down, or cut off from the network; \
             nothing was changed (glusterd would wait on a silent server for minutes), retry \
             once {} reachable",
            if silent.len() == 1 { "" } else { "s" },
            silent.join(", "),
            volume.name,
            if silent.len() == 1 {
                "it is"
            } else {
                "they are"
            },
        )))
    }

    async fn require_all_peers(&self) -> Result<(), ControllerError> {
        let peers = self
            .glusterd
            .peers()
            .await
            .map_err(ControllerError::gluster("listing gluster peers"))?;
        let down: Vec<String> = peers
            .iter()
            .filter(|p| !p.usable())
            .map(|p| format!("{} ({})", p.hostname, p.condition()))
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        Err(ControllerError::PeersDown(format!(
            "gluster peer{} {} {} not available, and glusterd refuses to delete volumes unless \
             every peer is; retry once {} back in the pool",
            if down.len() == 1 { "" } else { "s" },
            down.join(", "),
            if down.len() == 1 { "is" } else { "are" },
            if down.len() == 1 { "it is" } else { "they are" },
        )))
    }
}

/// What is wrong with a brick root on one server: the rule CreateVolume
/// applies to what each server reports (and `doctor` to what it sees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrickRootProblem {
    Missing,
    NotADirectory,
    NotOwnFileSystem,
}

impl BrickRootProblem {
    pub fn of(report: &BrickRootReport, allow_root_filesystem: bool) -> Option<BrickRootProblem> {
        if !report.exists {
            Some(BrickRootProblem::Missing)
        } else if !report.is_directory {
            Some(BrickRootProblem::NotADirectory)
        } else if !report.own_file_system && !allow_root_filesystem {
            Some(BrickRootProblem::NotOwnFileSystem)
        } else {
            None
        }
    }
}

/// One sentence per server, then what to do about each kind of problem.
fn describe_root_problems(
    root: &str,
    problems: &[(String, BrickRootProblem, BrickRootReport)],
) -> String {
    let mut text: Vec<String> = problems
        .iter()
        .map(|(server, problem, report)| match problem {
            BrickRootProblem::Missing => {
                format!("brick root {root} does not exist on {server}")
            }
            BrickRootProblem::NotADirectory => {
                format!("brick root {root} on {server} is not a directory")
            }
            BrickRootProblem::NotOwnFileSystem => format!(
                "brick root {root} on {server} is not a mount point of its own (it is {})",
                report.whereabouts()
            ),
        })
        .collect();
    let has = |kind| problems.iter().any(|(_, p, _)| *p == kind);
    if has(BrickRootProblem::Missing) || has(BrickRootProblem::NotADirectory) {
        text.push(format!(
            "create it there, or mount the brick disk at {root}; in Kubernetes the node plugin \
             must see it too (chart values storageClasses[].parameters.brickRoot or \
             node.extraBrickRoots)"
        ));
    }
    if has(BrickRootProblem::NotOwnFileSystem) {
        text.push(format!(
            "mount the brick disk at {root}, or {}",
            error::ALLOW_ROOT_FILESYSTEM_HINT
        ));
    }
    text.join("; ")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

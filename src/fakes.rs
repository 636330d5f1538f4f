//! In-memory stand-ins for glusterd, the brick agents and the mount table,
//! for logic tests. They keep a log of every call so tests can check what a
//! request did (and did not do), and can be told to fail in the ways the
//! real systems do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tonic::Code;

use crate::controller::{
    BrickError, BrickRootReport, BrickServers, DirectoryError, DirectoryState, Isolation,
    PoolAccess, PoolDirectories, Provisioner, ProvisionerConfig, RootCheck, ServerZones,
};
use crate::gluster::transport::CliArg;
use crate::gluster::volume_set_words;
use crate::gluster::{
    Brick, BrickHeal, BrickState, GlusterError, Glusterd, NewVolume, Peer, VolumeClients,
    VolumeInfo, VolumeLookup, VolumeStatus,
};
use crate::mount::{
    BrickLink, DeadFileSystem, FsUsage, GlusterSource, MountEntry, MountError, Mounter, PathState,
    RepairReport, ReplacedMount,
};
use crate::names::VolumeName;

#[derive(Default)]
pub struct FakeGlusterd {
    state: Mutex<GlusterState>,
}

#[derive(Default)]
struct GlusterState {
    peers: Vec<Peer>,
    volumes: BTreeMap<String, VolumeInfo>,
    /// Every write, as the CLI would spell it.
    writes: Vec<String>,
    /// Starts to fail with "Commit failed" before one succeeds.
    failing_starts: u32,
    /// Fails `volume create` as glusterd does when a peer is down.
    refuse_create: Option<GlusterError>,
    /// Clients connected to each volume.
    clients: BTreeMap<String, VolumeClients>,
    /// `volume set` of this key fails as glusterd refuses a value.
    refused_key: Option<String>,
    /// Quota hard limits on `/`, by volume.
    quota_limits: BTreeMap<String, u64>,
    /// What `volume get all cluster.op-version` says; `None`: glusterd
    /// cannot say (as the trait's default).
    op_versions: Option<crate::gluster::version::OpVersions>,
    /// What `volume get all cluster.brick-multiplex` says; `None`: glusterd
    /// cannot say (as the trait's default).
    brick_multiplex: Option<bool>,
    /// `volume quota V enable` fails this many times.
    failing_quota_enables: u32,
    /// Bricks (`host:path`) whose process is not running.
    down_bricks: BTreeSet<String>,
    /// Hosts whose glusterd does not answer (`volume status` leaves them out).
    silent_hosts: BTreeSet<String>,
    /// Pending and split-brain entries glfsheal reports on every brick.
    heal: BTreeMap<String, (u64, u64)>,
    /// glfsheal fails.
    heal_broken: bool,
}

impl FakeGlusterd {
    /// A pool of three connected servers `a`, `b`, `c` (`a` is local).
    pub fn three_servers() -> Arc<FakeGlusterd> {
        FakeGlusterd::with_servers(&["a", "b", "c"])
    }

    /// A pool of these connected servers (the first is local).
    pub fn with_servers(hosts: &[&str]) -> Arc<FakeGlusterd> {
        let fake = FakeGlusterd::default();
        fake.state.lock().unwrap().peers = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| Peer {
                uuid: format!("uuid-{host}"),
                hostname: host.to_string(),
                connected: true,
                in_cluster: true,
                state: "Peer in Cluster".into(),
                is_local: i == 0,
            })
            .collect();
        Arc::new(fake)
    }

    pub fn disconnect(&self, host: &str) {
        for peer in self.state.lock().unwrap().peers.iter_mut() {
            if peer.hostname == host {
                peer.connected = false;
            }
        }
    }

    pub fn fail_next_starts(&self, count: u32) {
        self.state.lock().unwrap().failing_starts = count;
    }

    pub fn refuse_next_create(&self, error: GlusterError) {
        self.state.lock().unwrap().refuse_create = Some(error);
    }

    /// Every `volume set` of `key` fails, as glusterd refuses a bad value.
    pub fn refuse_option(&self, key: &str) {
        self.state.lock().unwrap().refused_key = Some(key.to_string());
    }

    /// The pool's op-versions from now on.
    pub fn set_op_versions(&self, current: u32, max: u32) {
        self.state.lock().unwrap().op_versions =
            Some(crate::gluster::version::OpVersions { current, max });
    }

    /// The pool's brick multiplexing from now on.
    pub fn multiplex_bricks(&self, on: bool) {
        self.state.lock().unwrap().brick_multiplex = Some(on);
    }

    pub fn fail_next_quota_enables(&self, count: u32) {
        self.state.lock().unwrap().failing_quota_enables = count;
    }

    /// The hard limit on `/` of a volume, if one is set.
    pub fn quota_limit_of(&self, volume: &str) -> Option<u64> {
        self.state.lock().unwrap().quota_limits.get(volume).copied()
    }

    pub fn set_clients(&self, volume: &str, clients: VolumeClients) {
        self.state
            .lock()
            .unwrap()
            .clients
            .insert(volume.to_string(), clients);
    }

    /// The brick process of `host:path` dies (or, with `false`, runs again).
    pub fn set_brick_down(&self, brick: &str, down: bool) {
        let mut state = self.state.lock().unwrap();
        if down {
            state.down_bricks.insert(brick.to_string());
        } else {
            state.down_bricks.remove(brick);
        }
    }

    /// glusterd on `host` stops answering `volume status`.
    pub fn silence(&self, host: &str) {
        self.state
            .lock()
            .unwrap()
            .silent_hosts
            .insert(host.to_string());
    }

    /// glfsheal reports this backlog for `volume`.
    pub fn set_heal(&self, volume: &str, pending: u64, split_brain: u64) {
        self.state
            .lock()
            .unwrap()
            .heal
            .insert(volume.to_string(), (pending, split_brain));
    }

    pub fn break_heal(&self) {
        self.state.lock().unwrap().heal_broken = true;
    }

    pub fn writes(&self) -> Vec<String> {
        self.state.lock().unwrap().writes.clone()
    }

    pub fn clear_writes(&self) {
        self.state.lock().unwrap().writes.clear();
    }

    pub fn get(&self, name: &str) -> Option<VolumeInfo> {
        self.state.lock().unwrap().volumes.get(name).cloned()
    }

    /// Puts a volume in place as if made outside the driver.
    pub fn insert(&self, volume: VolumeInfo) {
        self.state
            .lock()
            .unwrap()
            .volumes
            .insert(volume.name.clone(), volume);
    }

    /// Records a write; like the real CLI transport, refuses any word that
    /// is not a plain CLI word.
    fn write(&self, words: &[&str]) -> Result<(), GlusterError> {
        for word in words {
            CliArg::new(*word)?;
        }
        self.state.lock().unwrap().writes.push(words.join(" "));
        Ok(())
    }
}

/// A replica 3 volume as `volume info` would show it.
pub fn volume_info(name: &str, status: VolumeStatus, options: &[(&str, &str)]) -> VolumeInfo {
    VolumeInfo {
        name: name.to_string(),
        id: format!("id-{name}"),
        status,
        replica_count: 3,
        arbiter_count: 0,
        type_name: "Replicate".into(),
        bricks: ["a", "b", "c"]
            .iter()
            .map(|h| Brick {
                host: h.to_string(),
                path: format!("/bricks/{name}"),
                host_uuid: format!("uuid-{h}"),
                is_arbiter: false,
            })
            .collect(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[async_trait]
impl Glusterd for FakeGlusterd {
    async fn op_versions(
        &self,
    ) -> Result<Option<crate::gluster::version::OpVersions>, GlusterError> {
        Ok(self.state.lock().unwrap().op_versions)
    }

    async fn brick_multiplex(&self) -> Result<Option<bool>, GlusterError> {
        Ok(self.state.lock().unwrap().brick_multiplex)
    }

    async fn peers(&self) -> Result<Vec<Peer>, GlusterError> {
        Ok(self.state.lock().unwrap().peers.clone())
    }

    async fn local_uuid(&self) -> Result<String, GlusterError> {
        Ok("uuid-a".into())
    }

    async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, GlusterError> {
        Ok(self.get(name))
    }

    async fn volumes(&self) -> Result<Vec<VolumeInfo>, GlusterError> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .volumes
            .values()
            .cloned()
            .collect())
    }

    async fn create_volume(&self, volume: &NewVolume) -> Result<(), GlusterError> {
        let force = if volume.force { &["force"][..] } else { &[] };
        self.write(&[&["volume", "create", volume.name.as_str()][..], force].concat())?;
        let mut state = self.state.lock().unwrap();
        if let Some(error) = state.refuse_create.take() {
            return Err(error);
        }
        if state.volumes.contains_key(&volume.name) {
            return Err(GlusterError::VolumeExists(volume.name.clone()));
        }
        let bricks = volume
            .bricks
            .iter()
            .enumerate()
            .map(|(i, b)| Brick {
                host: b.host.clone(),
                path: b.path.clone(),
                host_uuid: format!("uuid-{}", b.host),
                is_arbiter: volume.arbiter && i == volume.bricks.len() - 1,
            })
            .collect();
        let info = VolumeInfo {
            name: volume.name.clone(),
            id: format!("id-{}", volume.name),
            status: VolumeStatus::Created,
            replica_count: volume.replica,
            arbiter_count: u32::from(volume.arbiter),
            type_name: "Replicate".into(),
            bricks,
            options: BTreeMap::from([("nfs.disable".to_string(), "on".to_string())]),
        };
        state.volumes.insert(volume.name.clone(), info);
        Ok(())
    }

    async fn set_options(
        &self,
        volume: &str,
        options: &[(String, String)],
    ) -> Result<(), GlusterError> {
        self.write(&volume_set_words(volume, options))?;
        let mut state = self.state.lock().unwrap();
        let refused = state.refused_key.clone();
        let info = state
            .volumes
            .get_mut(volume)
            .ok_or_else(|| GlusterError::NoSuchVolume(volume.into()))?;
        // glusterd validates values; sizes must be numbers.
        if let Some((key, value)) = options.iter().find(|(k, v)| {
            (k.ends_with("cache-size") && !v.starts_with(|c: char| c.is_ascii_digit()))
                || refused.as_ref() == Some(k)
        }) {
            return Err(GlusterError::Rejected {
                command: "volume set".into(),
                errno: 30800,
                message: format!("invalid number format \"{value}\" in option \"{key}\""),
            });
        }
        info.options.extend(options.iter().cloned());
        Ok(())
    }

    async fn start_volume(&self, volume: &str, force: bool) -> Result<(), GlusterError> {
        let force = if force { &["force"][..] } else { &[] };
        self.write(&[&["volume", "start", volume][..], force].concat())?;
        let mut state = self.state.lock().unwrap();
        if state.failing_starts > 0 {
            state.failing_starts -= 1;
            return Err(GlusterError::Rejected {
                command: "volume start".into(),
                errno: 30800,
                message: "Commit failed on c. Please check log file for details.".into(),
            });
        }
        let info = state
            .volumes
            .get_mut(volume)
            .ok_or_else(|| GlusterError::NoSuchVolume(volume.into()))?;
        info.status = VolumeStatus::Started;
        Ok(())
    }

    async fn stop_volume(&self, volume: &str, force: bool) -> Result<(), GlusterError> {
        let force = if force { &["force"][..] } else { &[] };
        self.write(&[&["volume", "stop", volume][..], force].concat())?;
        let mut state = self.state.lock().unwrap();
        let info = state
            .volumes
            .get_mut(volume)
            .ok_or_else(|| GlusterError::NoSuchVolume(volume.into()))?;
        info.status = VolumeStatus::Stopped;
        Ok(())
    }

    async fn delete_volume(&self, volume: &str) -> Result<(), GlusterError> {
        self.write(&["volume", "delete", volume])?;
        let mut state = self.state.lock().unwrap();
        if state.peers.iter().any(|p| !p.connected) {
            return Err(GlusterError::PeerDown {
                message: "Some of the peers are down".into(),
            });
        }
        match state.volumes.get(volume) {
            Some(info) if info.status == VolumeStatus::Started => Err(GlusterError::Rejected {
                command: "volume delete".into(),
                errno: 30800,
                message: format!(
                    "Volume {volume} has been started.Volume needs to be stopped before deletion."
                ),
            }),
            _ => {
                state.volumes.remove(volume);
                state.quota_limits.remove(volume);
                Ok(())
            }
        }
    }

    async fn volume_clients(&self, volume: &VolumeInfo) -> Result<VolumeClients, GlusterError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .clients
            .get(&volume.name)
            .cloned()
            .unwrap_or_else(|| VolumeClients {
                kinds: BTreeMap::from([("glustershd".to_string(), 3)]),
                hosts: ["a", "b", "c"].iter().map(|h| h.to_string()).collect(),
            }))
    }

    // --- quota, as glusterd 10.3 and 11.1 answer -----------------------------
    async fn enable_quota(&self, volume: &str) -> Result<(), GlusterError> {
        self.write(&["volume", "quota", volume, "enable"])?;
        let mut state = self.state.lock().unwrap();
        let failing = state.failing_quota_enables > 0;
        state.failing_quota_enables = state.failing_quota_enables.saturating_sub(1);
        let info = state
            .volumes
            .get_mut(volume)
            .ok_or_else(|| GlusterError::NoSuchVolume(volume.into()))?;
        if info.status != VolumeStatus::Started || failing {
            return Err(GlusterError::Rejected {
                command: "volume quota".into(),
                errno: 30800,
                message: "Volume is stopped, start volume before executing quota command.".into(),
            });
        }
        for key in [
            "features.quota",
            "features.inode-quota",
            "features.quota-deem-statfs",
        ] {
            info.options.insert(key.into(), "on".into());
        }
        Ok(())
    }

    async fn set_quota_limit(&self, volume: &str, bytes: u64) -> Result<(), GlusterError> {
        self.write(&[
            "volume",
            "quota",
            volume,
            "limit-usage",
            "/",
            &bytes.to_string(),
        ])?;
        let mut state = self.state.lock().unwrap();
        let info = state
            .volumes
            .get(volume)
            .ok_or_else(|| GlusterError::NoSuchVolume(volume.into()))?;
        if !info.quota_enabled() {
            return Err(GlusterError::Rejected {
                command: "volume quota".into(),
                errno: 30800,
                message: "Quota is disabled, please enable quota".into(),
            });
        }
        state.quota_limits.insert(volume.to_string(), bytes);
        Ok(())
    }

    async fn set_directory_quota_limit(
        &self,
        volume: &str,
        directory: &str,
        bytes: u64,
    ) -> Result<(), GlusterError> {
        let path = format!("/{directory}");
        self.write(&[
            "volume",
            "quota",
            volume,
            "limit-usage",
            &path,
            &bytes.to_string(),
        ])?;
        let mut state = self.state.lock().unwrap();
        let info = state
            .volumes
            .get(volume)
            .ok_or_else(|| GlusterError::NoSuchVolume(volume.into()))?;
        if !info.quota_enabled() {
            return Err(GlusterError::Rejected {
                command: "volume quota".into(),
                errno: 30800,
                message: "Quota is disabled, please enable quota".into(),
            });
        }
        state.quota_limits.insert(format!("{volume}{path}"), bytes);
        Ok(())
    }

    async fn remove_directory_quota_limit(
        &self,
        volume: &str,
        directory: &str,
    ) -> Result<(), GlusterError> {
        let path = format!("/{directory}");
        self.write(&["volume", "quota", volume, "remove", &path])?;
        let mut state = self.state.lock().unwrap();
        state.quota_limits.remove(&format!("{volume}{path}"));
        Ok(())
    }

    async fn brick_states(&self, volume: &str) -> Result<Option<Vec<BrickState>>, GlusterError> {
        let state = self.state.lock().unwrap();
        let Some(info) = state.volumes.get(volume) else {
            return Err(GlusterError::NoSuchVolume(volume.to_string()));
        };
        if info.status != VolumeStatus::Started {
            return Ok(None);
        }
        Ok(Some(
            info.bricks
                .iter()
                .filter(|b| !state.silent_hosts.contains(&b.host))
                .map(|b| {
                    let online = !state
                        .down_bricks
                        .contains(&format!("{}:{}", b.host, b.path));
                    BrickState {
                        host: b.host.clone(),
                        path: b.path.clone(),
                        online,
                        pid: online.then_some(4242),
                    }
                })
                .collect(),
        ))
    }

    async fn heal_summary(&self, volume: &str) -> Result<Vec<BrickHeal>, GlusterError> {
        let state = self.state.lock().unwrap();
        if state.heal_broken {
            return Err(GlusterError::Timeout {
                command: "volume heal".into(),
                seconds: 30,
            });
        }
        let Some(info) = state.volumes.get(volume) else {
            return Err(GlusterError::NoSuchVolume(volume.to_string()));
        };
        let (pending, split_brain) = state.heal.get(volume).copied().unwrap_or_default();
        Ok(info
            .bricks
            .iter()
            .map(|b| {
                let up = !state
                    .down_bricks
                    .contains(&format!("{}:{}", b.host, b.path))
                    && !state.silent_hosts.contains(&b.host);
                BrickHeal {
                    host: b.host.clone(),
                    path: b.path.clone(),
                    status: if up {
                        "Connected".into()
                    } else {
                        "Transport endpoint is not connected".into()
                    },
                    pending: up.then_some(pending),
                    split_brain: up.then_some(split_brain),
                    possibly_healing: up.then_some(0),
                }
            })
            .collect())
    }

    async fn settable_options(&self) -> Result<Arc<BTreeSet<String>>, GlusterError> {
        Ok(Arc::new(
            [
                "performance.cache-size",
                "auth.allow",
                "features.soft-timeout",
                "features.hard-timeout",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ))
    }
}

/// Brick agents that succeed, or fail removals for hosts marked unreachable
/// (and root checks for hosts marked so: an agent can go away between the
/// check and the rollback). Brick roots are file systems of their own
/// unless a host is given another report.
#[derive(Default)]
pub struct FakeBricks {
    removed: Mutex<Vec<String>>,
    /// Hosts whose glusterd still shows volumes started for this many more
    /// removals.
    lagging: Mutex<BTreeMap<String, u32>>,
    unreachable: Mutex<BTreeSet<String>>,
    unchecked: Mutex<BTreeSet<String>>,
    roots: Mutex<BTreeMap<String, BrickRootReport>>,
    checked: Mutex<Vec<String>>,
}

/// A brick root as an agent reports it: a disk of its own, or a directory
/// of the root file system.
pub fn brick_root_report(own_file_system: bool) -> BrickRootReport {
    BrickRootReport {
        exists: true,
        is_directory: true,
        own_file_system,
        file_system_mount_point: Some(if own_file_system { "/bricks" } else { "/" }.into()),
        file_system_type: if own_file_system { "xfs" } else { "ext4" }.into(),
        file_system_source: if own_file_system {
            "/dev/vdb"
        } else {
            "/dev/vda"
        }
        .into(),
        total_bytes: 10 << 30,
        available_bytes: 9 << 30,
    }
}

impl FakeBricks {
    pub fn removed(&self) -> Vec<String> {
        self.removed.lock().unwrap().clone()
    }

    /// `host:root` of every brick root check so far.
    pub fn checked(&self) -> Vec<String> {
        self.checked.lock().unwrap().clone()
    }

    /// Root checks on `host` fail as if its agent did not answer.
    pub fn fail_root_checks(&self, host: &str) {
        self.unchecked.lock().unwrap().insert(host.to_string());
    }

    pub fn set_root(&self, host: &str, report: BrickRootReport) {
        self.roots.lock().unwrap().insert(host.to_string(), report);
    }

    /// The next `times` removals on `host` are refused as a brick agent
    /// whose glusterd has not committed the stop yet refuses them.
    pub fn lag(&self, host: &str, times: u32) {
        self.lagging.lock().unwrap().insert(host.into(), times);
    }

    pub fn set_unreachable(&self, host: &str, unreachable: bool) {
        let mut hosts = self.unreachable.lock().unwrap();
        if unreachable {
            hosts.insert(host.to_string());
        } else {
            hosts.remove(host);
        }
    }
}

#[async_trait]
impl BrickServers for FakeBricks {
    async fn remove(
        &self,
        host: &str,
        _volume: &VolumeName,
        path: &str,
    ) -> Result<bool, BrickError> {
        if self.unreachable.lock().unwrap().contains(host) {
            return Err(BrickError::at(host, path)(
                Code::Unavailable,
                format!("the brick agent on {host} did not answer"),
            ));
        }
        if let Some(left) = self
            .lagging
            .lock()
            .unwrap()
            .get_mut(host)
            .filter(|n| **n > 0)
        {
            *left -= 1;
            return Err(BrickError::at(host, path)(
                Code::Aborted,
                format!("{host} refused: the volume is still started on this server's glusterd"),
            ));
        }
        self.removed.lock().unwrap().push(format!("{host}:{path}"));
        Ok(true)
    }

    async fn check_root(&self, host: &str, root: &str) -> Result<RootCheck, BrickError> {
        if self.unchecked.lock().unwrap().contains(host) {
            return Err(BrickError::checking(host, root)(
                Code::Unavailable,
                format!("the brick agent on {host} did not answer"),
            ));
        }
        self.checked.lock().unwrap().push(format!("{host}:{root}"));
        let report = self.roots.lock().unwrap().get(host).cloned();
        Ok(RootCheck::Checked(
            report.unwrap_or_else(|| brick_root_report(true)),
        ))
    }
}

/// Directories of pools in memory: `<pool>/<directory>` to its state.
#[derive(Default)]
pub struct FakeDirectories {
    entries: Mutex<BTreeMap<String, DirectoryState>>,
    calls: Mutex<Vec<String>>,
}

impl FakeDirectories {
    pub fn put(&self, pool: &str, directory: &str, state: DirectoryState) {
        let key = format!("{pool}/{directory}");
        self.entries.lock().unwrap().insert(key, state);
    }

    pub fn get(&self, pool: &str, directory: &str) -> DirectoryState {
        let key = format!("{pool}/{directory}");
        let entries = self.entries.lock().unwrap();
        entries
            .get(&key)
            .cloned()
            .unwrap_or(DirectoryState::Missing)
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn call(&self, what: &str, pool: &PoolAccess, directory: &VolumeName) -> String {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{what} {}/{directory}", pool.pool));
        format!("{}/{directory}", pool.pool)
    }
}

#[async_trait]
impl PoolDirectories for FakeDirectories {
    async fn state(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
    ) -> Result<DirectoryState, DirectoryError> {
        Ok(self.get(&pool.pool, directory.as_str()))
    }

    async fn make(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
        csi_name: &str,
        size_bytes: u64,
        _owner: Option<(u32, u32)>,
    ) -> Result<(), DirectoryError> {
        let key = self.call("make", pool, directory);
        self.entries.lock().unwrap().insert(
            key,
            DirectoryState::Ours {
                csi_name: csi_name.to_string(),
                size_bytes,
                deleting: false,
            },
        );
        Ok(())
    }

    async fn record_size(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
        size: u64,
    ) -> Result<(), DirectoryError> {
        let key = self.call("record_size", pool, directory);
        if let Some(DirectoryState::Ours { size_bytes, .. }) =
            self.entries.lock().unwrap().get_mut(&key)
        {
            *size_bytes = size;
        }
        Ok(())
    }

    async fn mark_deleting(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
    ) -> Result<(), DirectoryError> {
        let key = self.call("mark_deleting", pool, directory);
        if let Some(DirectoryState::Ours { deleting, .. }) =
            self.entries.lock().unwrap().get_mut(&key)
        {
            *deleting = true;
        }
        Ok(())
    }

    async fn remove(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
    ) -> Result<(), DirectoryError> {
        let key = self.call("remove", pool, directory);
        self.entries.lock().unwrap().remove(&key);
        Ok(())
    }

    async fn list(
        &self,
        pool: &PoolAccess,
    ) -> Result<Vec<(VolumeName, DirectoryState)>, DirectoryError> {
        let prefix = format!("{}/", pool.pool);
        let entries = self.entries.lock().unwrap();
        Ok(entries
            .iter()
            .filter_map(|(key, state)| {
                let name = VolumeName::parse(key.strip_prefix(&prefix)?)?;
                Some((name, state.clone()))
            })
            .collect())
    }
}

/// A provisioner over fakes that offers subdirectory mode.
pub fn provisioner_with_pools() -> (Provisioner, Arc<FakeGlusterd>, Arc<FakeDirectories>) {
    let (provisioner, glusterd, _) = provisioner();
    let directories = Arc::new(FakeDirectories::default());
    let provisioner = provisioner.with_directories(directories.clone());
    (provisioner, glusterd, directories)
}

/// A provisioner over fakes, bricks at `/bricks/<volume>`.
pub fn provisioner() -> (Provisioner, Arc<FakeGlusterd>, Arc<FakeBricks>) {
    provisioner_allowing_root_filesystem(false)
}

/// [`provisioner`], run with or without `--allow-root-filesystem-bricks`.
pub fn provisioner_allowing_root_filesystem(
    allow: bool,
) -> (Provisioner, Arc<FakeGlusterd>, Arc<FakeBricks>) {
    provisioner_with(
        allow,
        Isolation::off(),
        FakeGlusterd::three_servers(),
        ServerZones::default(),
    )
}

/// [`provisioner`] over a pool of `hosts`, with `--server-zone`s.
pub fn provisioner_zoned(
    hosts: &[&str],
    zones: ServerZones,
) -> (Provisioner, Arc<FakeGlusterd>, Arc<FakeBricks>) {
    provisioner_with(
        false,
        Isolation::off(),
        FakeGlusterd::with_servers(hosts),
        zones,
    )
}

/// [`provisioner`] with tenant isolation.
pub fn provisioner_isolated(
    isolation: Isolation,
) -> (Provisioner, Arc<FakeGlusterd>, Arc<FakeBricks>) {
    provisioner_with(
        false,
        isolation,
        FakeGlusterd::three_servers(),
        ServerZones::default(),
    )
}

fn provisioner_with(
    allow: bool,
    isolation: Isolation,
    glusterd: Arc<FakeGlusterd>,
    server_zones: ServerZones,
) -> (Provisioner, Arc<FakeGlusterd>, Arc<FakeBricks>) {
    let bricks = Arc::new(FakeBricks::default());
    let provisioner = Provisioner::new(
        glusterd.clone(),
        bricks.clone(),
        ProvisionerConfig {
            default_brick_root: "/bricks".into(),
            brick_dir_per_server: false,
            mount_options: Vec::new(),
            allow_root_filesystem_bricks: allow,
            in_use_patience: std::time::Duration::from_millis(100),
            stop_settle: std::time::Duration::from_millis(300),
            isolation,
            server_zones,
        },
    );
    (provisioner, glusterd, bricks)
}

/// A kernel mount table in memory.
#[derive(Default)]
pub struct FakeMounter {
    state: Mutex<MountState>,
}

#[derive(Default)]
struct MountState {
    table: Vec<MountEntry>,
    dead: BTreeSet<PathBuf>,
    next_device: u32,
    next_id: u64,
    calls: Vec<String>,
    /// Mounts to refuse, as when no server answers.
    failing_mounts: u32,
    /// Mounts that report success but leave nothing mounted, as when the
    /// servers refuse the client just after mount.glusterfs returns.
    vanishing_mounts: u32,
    /// What every client says of its bricks; None: no meta translator.
    brick_links: Option<Vec<BrickLink>>,
    /// Reads of the meta translator wait for this lock, as on a hung client.
    meta_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    meta_reads: u32,
}

impl MountState {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        1000 + self.next_id
    }
}

impl FakeMounter {
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The FUSE client behind `path` dies: it and its bind mounts answer ENOTCONN.
    pub fn kill_client(&self, path: &Path) {
        let mut state = self.state.lock().unwrap();
        let device = state
            .table
            .iter()
            .find(|m| m.mount_point == path)
            .map(|m| m.device.clone());
        let dead: Vec<PathBuf> = state
            .table
            .iter()
            .filter(|m| Some(&m.device) == device.as_ref())
            .map(|m| m.mount_point.clone())
            .collect();
        state.dead.extend(dead);
    }

    /// The next `count` gluster mounts fail.
    pub fn fail_next_mounts(&self, count: u32) {
        self.state.lock().unwrap().failing_mounts = count;
    }

    /// The next `count` gluster mounts succeed but leave nothing mounted.
    pub fn vanish_next_mounts(&self, count: u32) {
        self.state.lock().unwrap().vanishing_mounts = count;
    }

    /// What the clients' meta translators say of their bricks from now on
    /// (None: they have no meta translator to ask).
    pub fn set_brick_links(&self, links: Option<Vec<BrickLink>>) {
        self.state.lock().unwrap().brick_links = links;
    }

    /// Reads of the meta translator hang while the returned lock is held.
    pub fn gate_meta_reads(&self) -> Arc<tokio::sync::Mutex<()>> {
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        self.state.lock().unwrap().meta_gate = Some(Arc::clone(&gate));
        gate
    }

    /// How many reads of the meta translator began.
    pub fn meta_reads(&self) -> u32 {
        self.state.lock().unwrap().meta_reads
    }

    pub fn mount_foreign(&self, path: &Path) {
        let mut state = self.state.lock().unwrap();
        let id = state.new_id();
        state.table.push(MountEntry {
            id,
            parent: 1,
            device: "8:1".into(),
            root: "/".into(),
            mount_point: path.to_path_buf(),
            mount_options: vec!["rw".into()],
            optional_fields: Vec::new(),
            fs_type: "ext4".into(),
            source: "/dev/sda1".into(),
        });
    }
}

#[async_trait]
impl Mounter for FakeMounter {
    async fn mount_glusterfs(
        &self,
        source: &GlusterSource,
        target: &Path,
        options: &[String],
    ) -> Result<(), MountError> {
        let mut state = self.state.lock().unwrap();
        if state.failing_mounts > 0 {
            state.failing_mounts -= 1;
            state
                .calls
                .push(format!("mount (refused) {}", target.display()));
            return Err(MountError::NoServer {
                volume: source.volume.clone(),
                servers: source.servers.join(", "),
            });
        }
        if state.vanishing_mounts > 0 {
            state.vanishing_mounts -= 1;
            state
                .calls
                .push(format!("mount (vanished) {}", target.display()));
            return Ok(());
        }
        state.next_device += 1;
        let device = format!("0:{}", 40 + state.next_device);
        state.calls.push(format!(
            "mount {}:/{} {}",
            source.servers[0],
            source.volume,
            target.display()
        ));
        let id = state.new_id();
        state.table.push(MountEntry {
            id,
            parent: 1,
            device,
            root: "/".into(),
            mount_point: target.to_path_buf(),
            mount_options: vec![
                if options.iter().any(|o| o == "ro") {
                    "ro"
                } else {
                    "rw"
                }
                .into(),
            ],
            optional_fields: Vec::new(),
            fs_type: "fuse.glusterfs".into(),
            source: format!("{}:/{}", source.servers[0], source.volume),
        });
        Ok(())
    }

    fn prepare_dir(&self, path: &Path) -> Result<(), MountError> {
        std::fs::create_dir_all(path).map_err(MountError::io("creating", path))
    }

    async fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<(), MountError> {
        let mut state = self.state.lock().unwrap();
        state
            .calls
            .push(format!("bind {} {}", source.display(), target.display()));
        // The mount the source lies in (the deepest above it), as the
        // kernel resolves it; a source inside it keeps its path as root.
        let from = crate::mount::mountinfo::containing(&state.table, source)
            .cloned()
            .expect("bind source is in a mount");
        if !source.exists() {
            return Err(MountError::io("opening", source)(
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let inside = source.strip_prefix(&from.mount_point).unwrap();
        let root = if inside.as_os_str().is_empty() {
            from.root.clone()
        } else {
            from.root.join(inside)
        };
        let id = state.new_id();
        state.table.push(MountEntry {
            id,
            root,
            mount_point: target.to_path_buf(),
            mount_options: vec![if read_only { "ro" } else { "rw" }.into()],
            ..from
        });
        Ok(())
    }

    async fn unmount(&self, target: &Path) -> Result<(), MountError> {
        let mut state = self.state.lock().unwrap();
        state.calls.push(format!("unmount {}", target.display()));
        if let Some(at) = state.table.iter().rposition(|m| m.mount_point == target) {
            state.table.remove(at);
        }
        if !state.table.iter().any(|m| m.mount_point == target) {
            state.dead.remove(target);
        }
        Ok(())
    }

    async fn replace_dead(
        &self,
        dead: &DeadFileSystem,
        fresh: &Path,
    ) -> Result<RepairReport, MountError> {
        let mut state = self.state.lock().unwrap();
        state
            .calls
            .push(format!("replace {} with {}", dead.device, fresh.display()));
        let live = state
            .table
            .iter()
            .rev()
            .find(|m| m.mount_point == fresh)
            .cloned()
            .expect("the fresh mount is there");
        let mut report = RepairReport::default();
        let mut replaced = Vec::new();
        for entry in state.table.iter_mut() {
            if entry.device == dead.device && entry.mount_point != fresh {
                entry.device = live.device.clone();
                replaced.push(entry.mount_point.clone());
                report.replaced.push(ReplacedMount {
                    pid: None,
                    processes: 1,
                    pod: None,
                    mount_point: entry.mount_point.clone(),
                });
            }
        }
        for path in replaced {
            state.dead.remove(&path);
        }
        Ok(report)
    }

    fn mount_table(&self) -> Result<Vec<MountEntry>, MountError> {
        Ok(self.state.lock().unwrap().table.clone())
    }

    fn path_state(&self, path: &Path) -> PathState {
        if self.state.lock().unwrap().dead.contains(path) {
            PathState::Disconnected
        } else if path.exists() {
            PathState::Present
        } else {
            PathState::Missing
        }
    }

    fn usage(&self, _path: &Path) -> Result<FsUsage, MountError> {
        Ok(FsUsage {
            total_bytes: 100,
            available_bytes: 60,
            used_bytes: 40,
            total_inodes: 10,
            free_inodes: 7,
            used_inodes: 3,
        })
    }

    fn brick_links(&self, mount: &Path, _: &str) -> Result<Vec<BrickLink>, MountError> {
        let gate = {
            let mut state = self.state.lock().unwrap();
            state.meta_reads += 1;
            state.meta_gate.clone()
        };
        if let Some(gate) = gate {
            drop(gate.blocking_lock());
        }
        self.state
            .lock()
            .unwrap()
            .brick_links
            .clone()
            .ok_or_else(|| MountError::io("listing", mount)(std::io::ErrorKind::NotFound.into()))
    }

    fn check_ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Answers volume lookups from a fixed table (missing: no such volume).
#[derive(Default)]
pub struct FakeLookup {
    volumes: Mutex<BTreeMap<String, VolumeStatus>>,
}

impl FakeLookup {
    pub fn set(&self, volume: &str, status: VolumeStatus) {
        self.volumes
            .lock()
            .unwrap()
            .insert(volume.to_string(), status);
    }
}

#[async_trait]
impl VolumeLookup for FakeLookup {
    async fn status(
        &self,
        _server: &str,
        volume: &str,
    ) -> Result<Option<VolumeStatus>, GlusterError> {
        Ok(self.volumes.lock().unwrap().get(volume).cloned())
    }
}

/// A mount that mount.glusterfs refuses, as for a volume it cannot fetch.
pub struct RefusingMounter;

#[async_trait]
impl Mounter for RefusingMounter {
    async fn mount_glusterfs(
        &self,
        source: &GlusterSource,
        target: &Path,
        _options: &[String],
    ) -> Result<(), MountError> {
        Err(MountError::MountFailed {
            source_desc: format!("{}:/{}", source.servers[0], source.volume),
            target: target.to_path_buf(),
            detail: "Mount failed. Check the log file  for more details.".into(),
        })
    }

    fn prepare_dir(&self, path: &Path) -> Result<(), MountError> {
        std::fs::create_dir_all(path).map_err(MountError::io("creating", path))
    }

    async fn bind(&self, _: &Path, _: &Path, _: bool) -> Result<(), MountError> {
        unreachable!("nothing is ever mounted")
    }

    async fn unmount(&self, _: &Path) -> Result<(), MountError> {
        Ok(())
    }

    async fn replace_dead(&self, _: &DeadFileSystem, _: &Path) -> Result<RepairReport, MountError> {
        unreachable!("nothing is ever mounted")
    }

    fn mount_table(&self) -> Result<Vec<MountEntry>, MountError> {
        Ok(Vec::new())
    }

    fn path_state(&self, _: &Path) -> PathState {
        PathState::Present
    }

    fn usage(&self, _: &Path) -> Result<FsUsage, MountError> {
        Ok(FsUsage::default())
    }

    fn brick_links(&self, mount: &Path, _: &str) -> Result<Vec<BrickLink>, MountError> {
        Err(MountError::io("listing", mount)(
            std::io::ErrorKind::NotFound.into(),
        ))
    }

    fn check_ready(&self) -> Result<(), String> {
        Ok(())
    }
}

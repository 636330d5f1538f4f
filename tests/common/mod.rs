//! Test harness: runs `glusterfs-csi dev` (a real 3-server glusterd cluster
//! on loopback aliases plus the driver) and plays the CSI sidecars over its
//! unix socket. Teardown goes through the driver's own SIGTERM path, also
//! when a test panics; if the test process itself dies, the dev process gets
//! SIGTERM from the kernel (PR_SET_PDEATHSIG).
#![allow(dead_code)]

pub mod churn;
pub mod controller;
pub mod drills;
pub mod netns;
pub mod pods;
pub mod runtime;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use glusterfs_csi::dev::ClusterDescription;
use glusterfs_csi::proto::csi::controller_client::ControllerClient;
use glusterfs_csi::proto::csi::identity_client::IdentityClient;
use glusterfs_csi::proto::csi::node_client::NodeClient;
use glusterfs_csi::proto::csi::volume_capability::access_mode::Mode;
use glusterfs_csi::proto::csi::volume_capability::{AccessMode, AccessType, MountVolume};
use glusterfs_csi::proto::csi::*;
use tonic::transport::Channel;

/// How many dev clusters one test binary runs at once (2 cores here).
const MAX_CLUSTERS: usize = 2;

static SLOTS: Mutex<usize> = Mutex::new(0);
static SLOT_FREED: Condvar = Condvar::new();

struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= MAX_CLUSTERS {
            used = SLOT_FREED.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        SLOT_FREED.notify_one();
    }
}

/// Whether this test binary's dev clusters multiplex bricks: only in the
/// binaries that run a suite again with it, named `<suite>_multiplexed`
/// (tests/integration_multiplexed.rs); the others run gluster's default,
/// one process per brick, where sizes are enforced.
pub fn suite_multiplexes() -> bool {
    env!("CARGO_CRATE_NAME").ends_with("_multiplexed")
}

/// A running `glusterfs-csi dev`.
pub struct DevDriver {
    child: Child,
    pub cluster: ClusterDescription,
    pub channel: Channel,
    /// Test-owned directory for kubelet-style paths.
    pub kubelet: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
    restarted: Vec<Child>,
    _state: Option<tempfile::TempDir>,
    _slot: Slot,
}

impl DevDriver {
    pub async fn start() -> DevDriver {
        DevDriver::start_with(&[]).await
    }

    /// Like [`DevDriver::start`], with extra `dev` flags (such as the
    /// isolation flags dev hands to its controller).
    pub async fn start_with(flags: &[String]) -> DevDriver {
        let state = tempfile::Builder::new()
            .prefix("glusterfs-csi-dev-")
            .tempdir()
            .unwrap();
        let mut driver = DevDriver::launch(&state.path().join("state"), flags).await;
        driver._state = Some(state);
        driver
    }

    /// Runs `glusterfs-csi dev --state-dir <state_dir>`.
    pub async fn start_in(state_dir: &Path) -> DevDriver {
        DevDriver::launch(state_dir, &[]).await
    }

    async fn launch(state_dir: &Path, flags: &[String]) -> DevDriver {
        let slot = tokio::task::spawn_blocking(Slot::take).await.unwrap();
        let state_dir = state_dir.to_path_buf();
        let mut command = Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"));
        command
            .args(["dev", "--state-dir"])
            .arg(&state_dir)
            .args(
                // A caller's own choice wins.
                (!flags.iter().any(|f| f.starts_with("--brick-multiplex")))
                    .then(|| format!("--brick-multiplex={}", suite_multiplexes())),
            )
            .args(flags)
            .env("GLUSTERFS_CSI_LOG", "info,glusterfs_csi=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only an async-signal-safe prctl between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().expect("start glusterfs-csi dev");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("dev cluster ready") {
                    let _ = ready_tx.send(Ok(()));
                } else if line.contains("ERROR") {
                    let _ = ready_tx.send(Err(line.clone()));
                }
                sink.lock().unwrap().push(line);
            }
            let _ = ready_tx.send(Err("dev exited".into()));
        });
        let ready =
            tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(90)))
                .await
                .unwrap();
        match ready {
            Ok(Ok(())) => {}
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dev {flags:?} did not become ready: {other:?}\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        }
        let cluster = ClusterDescription::load(&state_dir).unwrap();
        let channel = connect(&cluster.csi_socket).await;
        DevDriver {
            child,
            cluster,
            channel,
            kubelet: tempfile::Builder::new()
                .prefix("kubelet-")
                .tempdir()
                .unwrap(),
            log,
            restarted: Vec::new(),
            _state: None,
            _slot: slot,
        }
    }

    /// Process id of the driver: the dev process the reaper in front of it
    /// started (`src/reaper.rs`).
    pub fn pid(&self) -> u32 {
        let reaper = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{reaper}/task/{reaper}/children"))
            .unwrap_or_default();
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "glusterfs-csi")
            })
            .expect("the dev driver runs under its reaper")
    }

    /// Waits until the dev process (its reaper) has exited.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel.clone())
    }

    pub fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel.clone())
    }

    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Staging path as the kubelet makes it (the CO creates the directory).
    pub fn staging_path(&self, pv: &str) -> PathBuf {
        let path = self.kubelet.path().join(format!(
            "plugins/kubernetes.io/csi/glusterfs.csi.io/{pv}/globalmount"
        ));
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Target path as the kubelet makes it (the parent exists, not the path).
    pub fn target_path(&self, pod: &str, pv: &str) -> PathBuf {
        let parent = self
            .kubelet
            .path()
            .join(format!("pods/{pod}/volumes/kubernetes.io~csi/{pv}"));
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("mount")
    }

    /// Brick directory of `volume` on `server` (dev layout).
    pub fn brick_dir(&self, server: &str, volume: &str) -> PathBuf {
        self.cluster.brick_root.join(server).join(volume)
    }

    pub fn server(&self, address: &str) -> &glusterfs_csi::dev::cluster::ServerDescription {
        self.cluster
            .servers
            .iter()
            .find(|s| s.address == address)
            .unwrap_or_else(|| panic!("no dev server {address}"))
    }

    /// Stops a server's glusterd (bricks keep running, as after a glusterd
    /// crash) and waits until it is gone.
    pub fn stop_glusterd(&mut self, address: &str) {
        let pid = self.current_glusterd_pid(address);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        wait_until(Duration::from_secs(20), || {
            !Path::new(&format!("/proc/{pid}/cmdline")).exists() || is_zombie(pid)
        });
        wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&self.server(address).glusterd_socket).is_err()
        });
    }

    /// Starts a stopped server's glusterd again and waits until the pool
    /// sees every peer connected.
    pub fn start_glusterd(&mut self, address: &str) {
        let server = self.server(address).clone();
        let child = glusterfs_csi::dev::cluster::glusterd_command(Path::new("glusterd"), &server)
            .unwrap()
            .spawn()
            .unwrap();
        self.restarted.push(child);
        let sockets: Vec<PathBuf> = self
            .cluster
            .servers
            .iter()
            .map(|s| s.glusterd_socket.clone())
            .collect();
        wait_until(Duration::from_secs(60), || {
            sockets.iter().all(|socket| {
                gluster(socket, &["pool", "list"]).is_ok_and(|xml| {
                    xml.matches("<connected>1</connected>").count() == sockets.len()
                })
            })
        });
    }

    fn current_glusterd_pid(&self, address: &str) -> i32 {
        let pid_file = self
            .server(address)
            .glusterd_socket
            .with_file_name("glusterd.pid");
        std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Lines glusterd wrote to each server's command history so far.
    pub fn command_history(&self) -> Vec<Vec<String>> {
        self.cluster
            .servers
            .iter()
            .map(|s| {
                std::fs::read_to_string(s.log_dir.join("cmd_history.log"))
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    /// Runs a gluster CLI command against the first server.
    pub fn gluster(&self, words: &[&str]) -> String {
        gluster(&self.cluster.servers[0].glusterd_socket, words).unwrap()
    }

    /// The distinct brick process ids of every volume, by server: one per
    /// brick without multiplexing, shared with it.
    pub fn brick_processes(&self) -> BTreeMap<String, BTreeSet<u32>> {
        let mut processes = BTreeMap::<String, BTreeSet<u32>>::new();
        for volume in self.volume_names() {
            let xml = self.gluster(&["volume", "status", &volume]);
            let bricks = glusterfs_csi::gluster::xml::Envelope::parse("volume status", &xml)
                .and_then(|e| e.brick_states())
                .unwrap();
            for brick in bricks {
                let pids = processes.entry(brick.host).or_default();
                pids.extend(brick.pid);
            }
        }
        processes
    }

    pub fn volume_names(&self) -> Vec<String> {
        let xml = self.gluster(&["volume", "list"]);
        xml.split("<volume>")
            .skip(1)
            .filter_map(|s| s.split("</volume>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for DevDriver {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        // Once reaped (a test waited for it), its pid may be someone else's.
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        for child in &mut self.restarted {
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- glusterfs-csi dev log ---\n{}", self.log());
        }
    }
}

pub async fn connect(socket: &Path) -> Channel {
    try_connect(socket)
        .await
        .expect("connect to the CSI socket")
}

/// A channel to a server that was just started: the socket file appears
/// at bind, before the server listens, so its existence is not enough.
pub async fn connect_when_listening(socket: &Path, limit: Duration) -> Channel {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(channel) = try_connect(socket).await {
            return channel;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {} after {limit:?}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A channel to the socket, if something listens there.
pub async fn try_connect(socket: &Path) -> Option<Channel> {
    glusterfs_csi::csi::ping::channel(socket.to_path_buf())
        .await
        .ok()
}

/// CreateVolume of `name` through the driver, which must succeed.
pub async fn create_volume(driver: &DevDriver, name: &str) -> Volume {
    driver
        .controller()
        .create_volume(create_request(name, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

/// NodeStage then NodePublish (read-write), as the kubelet calls them.
pub async fn stage_and_publish(
    node: &mut NodeClient<Channel>,
    volume: &Volume,
    staging: &Path,
    target: &Path,
) {
    node.node_stage_volume(stage_request(volume, staging))
        .await
        .unwrap();
    node.node_publish_volume(publish_request(volume, staging, target, false))
        .await
        .unwrap();
}

/// NodeUnpublish then NodeUnstage, as the kubelet calls them.
pub async fn unpublish_and_unstage(
    node: &mut NodeClient<Channel>,
    volume: &Volume,
    staging: &Path,
    target: &Path,
) {
    node.node_unpublish_volume(unpublish_request(volume, target))
        .await
        .unwrap();
    node.node_unstage_volume(unstage_request(volume, staging))
        .await
        .unwrap();
}

pub fn unpublish_request(volume: &Volume, target: &Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        target_path: target.to_string_lossy().into_owned(),
    }
}

pub fn unstage_request(volume: &Volume, staging: &Path) -> NodeUnstageVolumeRequest {
    NodeUnstageVolumeRequest {
        volume_id: volume.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into_owned(),
    }
}

pub fn delete_volume_request(volume: &Volume) -> DeleteVolumeRequest {
    DeleteVolumeRequest {
        volume_id: volume.volume_id.clone(),
        ..Default::default()
    }
}

/// SIGKILL, as a crash or the OOM killer would.
pub fn sigkill(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Resident memory of a process, in KiB (0 if it is gone).
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Raw gluster CLI (XML), for checks beside the driver.
pub fn gluster(socket: &Path, words: &[&str]) -> Result<String, String> {
    let output = Command::new("gluster")
        .arg("--mode=script")
        .arg("--xml")
        .arg(format!("--glusterd-sock={}", socket.display()))
        .args(words)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if stdout.contains("<opRet>0</opRet>") || words.ends_with(&["help-xml"]) {
        Ok(stdout)
    } else {
        Err(stdout + &String::from_utf8_lossy(&output.stderr))
    }
}

/// Unmounts a test's own mount of `.0` when dropped, also when the test
/// fails before it would have.
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Polls a condition until it holds; panics after `limit`.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

pub fn pvc_name() -> String {
    format!("pvc-{}", uuid::Uuid::new_v4())
}

pub fn mount_capability(mode: Mode) -> VolumeCapability {
    mount_capability_with(mode, &[])
}

pub fn mount_capability_with(mode: Mode, flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: String::new(),
            mount_flags: flags.iter().map(|f| f.to_string()).collect(),
            volume_mount_group: String::new(),
        })),
    }
}

/// CreateVolume as the external-provisioner sends it.
pub fn create_request(name: &str, parameters: &[(&str, &str)]) -> CreateVolumeRequest {
    let mut params: HashMap<String, String> = parameters
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    params.insert("csi.storage.k8s.io/pvc/name".into(), "data".into());
    params.insert("csi.storage.k8s.io/pvc/namespace".into(), "default".into());
    params.insert("csi.storage.k8s.io/pv/name".into(), name.into());
    CreateVolumeRequest {
        name: name.to_string(),
        capacity_range: Some(CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_capability(Mode::MultiNodeMultiWriter)],
        parameters: params,
        ..Default::default()
    }
}

pub fn stage_request(volume: &Volume, staging: &Path) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: volume.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into_owned(),
        volume_capability: Some(mount_capability(Mode::MultiNodeMultiWriter)),
        volume_context: volume.volume_context.clone(),
        ..Default::default()
    }
}

pub fn publish_request(
    volume: &Volume,
    staging: &Path,
    target: &Path,
    readonly: bool,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into_owned(),
        target_path: target.to_string_lossy().into_owned(),
        volume_capability: Some(mount_capability(Mode::MultiNodeMultiWriter)),
        readonly,
        volume_context: volume.volume_context.clone(),
        ..Default::default()
    }
}

/// Mount entries at `path` from the kernel's table.
/// The names in a directory, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn mounts_at(path: &Path) -> Vec<glusterfs_csi::mount::MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    glusterfs_csi::mount::mountinfo::parse(&text)
        .into_iter()
        .filter(|m| m.mount_point == path)
        .collect()
}

/// The gluster release the tests run against: `glusterfs --version` of the
/// client on PATH (the servers come from the same packages).
pub async fn gluster_release() -> glusterfs_csi::gluster::version::Release {
    glusterfs_csi::gluster::version::Release::of_binary(Path::new("glusterfs"))
        .await
        .unwrap()
}

/// NodeGetVolumeStats of a volume at `path`, as the kubelet asks it.
pub async fn volume_stats(
    node: &mut NodeClient<Channel>,
    volume: &Volume,
    path: &Path,
) -> NodeGetVolumeStatsResponse {
    node.node_get_volume_stats(NodeGetVolumeStatsRequest {
        volume_id: volume.volume_id.clone(),
        volume_path: path.to_string_lossy().into_owned(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

/// DeleteVolume retried on FAILED_PRECONDITION for up to 30 s, as the
/// external-provisioner retries it: under load, glusterd can still list the
/// FUSE client of a volume unstaged a moment ago for longer than the
/// controller waits (seen with 11.1 in tests/gluster11.rs, and with 10.3
/// after the survival drill's heal, since volumes have quota).
pub async fn delete_as_the_provisioner_does(
    controller: &mut ControllerClient<Channel>,
    volume: &Volume,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match controller
            .delete_volume(delete_volume_request(volume))
            .await
        {
            Ok(_) => return,
            Err(e) if e.code() == tonic::Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("DeleteVolume {}: {e:?}", volume.volume_id),
        }
    }
}

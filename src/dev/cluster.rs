//! A throwaway Gluster cluster on one machine: N glusterd processes, each
//! bound to its own loopback alias with its own working directories, as
//! gluster's own test suite does it.
//!
//! Everything it makes is described in `<state>/cluster.json` before it is
//! made, so teardown (also of a run that crashed) knows exactly what to undo,
//! and touches nothing else: mounts from its servers' addresses, the gluster
//! processes whose pid file (`-p`, `--pid-file`) lies in its state directory
//! and holds their pid, its aliases, the files it made. It only ever uses a
//! state directory it made itself (marked with `.glusterfs-csi-dev`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::AppResult;
use crate::gluster::transport::{CliArg, CliCommand, CliTransport, OneShotCli};
use crate::gluster::xml::Envelope;
use crate::gluster::{BRICK_MULTIPLEX, GlusterdAddress};

const LOCK_DIR: &str = "/run/glusterfs-csi-dev";
const GLUSTER_FIXED_RUN_DIR: &str = "/var/run/gluster";
const DESCRIPTION: &str = "cluster.json";
/// Written in full, then renamed over [`DESCRIPTION`].
const DESCRIPTION_DRAFT: &str = "cluster.json.new";
/// In every state directory dev made; no other directory is ever used.
const MARKER: &str = ".glusterfs-csi-dev";
/// Where dev's controller mounts its pools (subdirectory mode).
pub const POOL_MOUNTS: &str = "pools";
/// What dev makes in its state directory, and so what teardown removes.
/// The description goes last: it is what a later run cleans up by.
const MADE: [&str; 9] = [
    "nodes",
    "node",
    "bricks",
    "logs",
    // Unmounted with the cluster's other mounts before anything is removed.
    POOL_MOUNTS,
    "csi.sock",
    DESCRIPTION_DRAFT,
    DESCRIPTION,
    ".lock",
];

/// What a dev cluster consists of; written to `<state>/cluster.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterDescription {
    pub state_dir: PathBuf,
    /// CSI endpoint socket.
    pub csi_socket: PathBuf,
    /// Default brick root; bricks live in `<brick_root>/<server>/<volume>`.
    pub brick_root: PathBuf,
    /// Where FUSE client logs go.
    pub mount_log_dir: PathBuf,
    pub brick_agent_port: u16,
    /// Shared secret of the brick agents (the file is readable by root only).
    pub brick_agent_token: String,
    pub servers: Vec<ServerDescription>,
    /// Whether the pool multiplexes bricks (`cluster.brick-multiplex`).
    #[serde(default)]
    pub brick_multiplex: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerDescription {
    pub address: String,
    pub glusterd_socket: PathBuf,
    pub log_dir: PathBuf,
    /// Full glusterd command line, to restart a stopped server.
    pub glusterd_command: Vec<String>,
    pub glusterd_pid: Option<u32>,
}

impl ServerDescription {
    /// What this server's glusterd and its daemons see at
    /// `/var/run/gluster` (see [`glusterd_command`]).
    pub fn gluster_run_dir(&self) -> PathBuf {
        self.log_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join("var-run-gluster")
    }
}

impl ClusterDescription {
    pub fn load(state_dir: &Path) -> std::io::Result<ClusterDescription> {
        let text = std::fs::read_to_string(state_dir.join(DESCRIPTION))?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }

    /// Replaces the description whole: a run killed at any moment leaves
    /// the previous one or this one, never a truncated file.
    fn save(&self) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let draft = self.state_dir.join(DESCRIPTION_DRAFT);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&draft)?;
        file.write_all(text.as_bytes())?;
        std::fs::rename(&draft, self.state_dir.join(DESCRIPTION))
    }

    pub fn addresses(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.address.clone()).collect()
    }

    /// The cluster's gluster processes and their command lines (see
    /// [`cluster_processes`]).
    pub fn processes(&self) -> Vec<(i32, Vec<String>)> {
        cluster_processes(&self.state_dir, &self.addresses())
    }
}

/// A running dev cluster. Call [`DevCluster::teardown`] when done.
pub struct DevCluster {
    pub description: ClusterDescription,
    glusterds: Vec<Child>,
    _block_lock: File,
    _state_lock: File,
}

impl DevCluster {
    /// Starts `nodes` glusterd servers under `state_dir` and joins them,
    /// with brick multiplexing on or off.
    pub async fn start(
        state_dir: &Path,
        nodes: usize,
        brick_multiplex: bool,
        glusterd: &Path,
        cli: &Path,
    ) -> AppResult<DevCluster> {
        check_prerequisites(glusterd)?;
        claim_state_dir(state_dir)?;
        let state_dir = state_dir.canonicalize()?;
        let state_lock = lock_exclusively(&state_dir.join(".lock")).map_err(|_| {
            format!(
                "{} is in use by another `glusterfs-csi dev`; give this one its own --state-dir",
                state_dir.display()
            )
        })?;
        // Holding the lock, anything made here is from a run that died.
        if let Some(stale) = earlier_run(&state_dir) {
            tracing::warn!(state_dir = %state_dir.display(), "cleaning up after an earlier dev run that did not finish");
            end_cluster(&stale, &mut []).await;
            // Before the description goes: without it nobody would find it.
            let _ = std::fs::remove_file(lock_path(&block_prefix(&stale)));
            remove_made(&stale.state_dir);
        }
        let (prefix, lock) = claim_address_block(nodes)?;
        let description = ClusterDescription {
            csi_socket: state_dir.join("csi.sock"),
            brick_root: state_dir.join("bricks"),
            mount_log_dir: state_dir.join("logs/mounts"),
            brick_agent_port: 0,
            brick_agent_token: random_token(),
            servers: (1..=nodes)
                .map(|n| server_description(&state_dir, &prefix, n))
                .collect(),
            state_dir: state_dir.clone(),
            brick_multiplex,
        };
        if let Err(e) = description.save() {
            let _ = std::fs::remove_file(lock_path(&prefix));
            return Err(e.into());
        }
        let mut cluster = DevCluster {
            description,
            glusterds: Vec::new(),
            _block_lock: lock,
            _state_lock: state_lock,
        };
        if let Err(e) = cluster.bring_up(glusterd, cli).await {
            cluster.teardown().await;
            return Err(e);
        }
        Ok(cluster)
    }

    async fn bring_up(&mut self, glusterd: &Path, cli: &Path) -> AppResult<()> {
        std::fs::create_dir_all(&self.description.mount_log_dir)?;
        for server in self.description.servers.clone() {
            add_alias(&server.address).await?;
            std::fs::create_dir_all(self.description.brick_root.join(&server.address))?;
            for dir in ["work", "run", "log"] {
                std::fs::create_dir_all(
                    server.log_dir.parent().unwrap_or(Path::new("/")).join(dir),
                )?;
            }
        }
        for index in 0..self.description.servers.len() {
            let child = spawn_glusterd(glusterd, &self.description.servers[index])?;
            self.description.servers[index].glusterd_pid = child.id();
            self.glusterds.push(child);
            self.description.save()?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (server, child) in self.description.servers.iter().zip(&mut self.glusterds) {
            wait_for_socket(&server.glusterd_socket, child, deadline).await?;
        }
        let first = &self.description.servers[0];
        for other in &self.description.servers[1..] {
            gluster(
                cli,
                &first.glusterd_socket,
                &["peer", "probe", &other.address],
            )
            .await?;
        }
        for server in &self.description.servers {
            wait_for_pool(
                cli,
                &server.glusterd_socket,
                self.description.servers.len(),
                deadline,
            )
            .await?;
        }
        if self.description.brick_multiplex {
            // Pool-wide, before any volume: bricks started later attach to
            // a running glusterfsd of their server when their options match.
            gluster(
                cli,
                &first.glusterd_socket,
                &["volume", "set", "all", BRICK_MULTIPLEX, "on"],
            )
            .await?;
        }
        Ok(())
    }

    /// Records the brick agent port once the agents listen.
    pub fn set_brick_agent_port(&mut self, port: u16) -> std::io::Result<()> {
        self.description.brick_agent_port = port;
        self.description.save()
    }

    pub async fn teardown(mut self) {
        end_cluster(&self.description, &mut self.glusterds).await;
        // Before the description goes: killed in between, the next run
        // still finds the block's lock file by it.
        let _ = std::fs::remove_file(lock_path(&block_prefix(&self.description)));
        let state = &self.description.state_dir;
        remove_made(state);
        let _ = std::fs::remove_file(state.join(".lock"));
        let _ = std::fs::remove_file(state.join(MARKER));
        // Only if nothing else was put there.
        let _ = std::fs::remove_dir(state);
    }
}

/// What an earlier run in `state_dir` (which we hold) left to clean up: its
/// description; or, when that cannot be read (a run killed while writing it,
/// before writes were atomic), what the state directory itself shows: its
/// daemons' files and, by the brick directory each server has, its
/// addresses, if no other run holds their block. Without this a rerun would
/// skip the cleanup and start glusterd on the old working directories.
fn earlier_run(state_dir: &Path) -> Option<ClusterDescription> {
    let error = match ClusterDescription::load(state_dir) {
        Ok(description) => return Some(description),
        Err(e) => e,
    };
    let made = MADE
        .iter()
        .filter(|m| !matches!(**m, ".lock" | DESCRIPTION))
        .any(|m| std::fs::symlink_metadata(state_dir.join(m)).is_ok());
    if error.kind() == std::io::ErrorKind::NotFound && !made {
        return None;
    }
    tracing::warn!(state_dir = %state_dir.display(), %error, "the earlier run's description is unreadable; cleaning up by what its state directory shows");
    let servers = recorded_servers(state_dir)
        .filter(|(prefix, _)| {
            // A block someone holds now is theirs, whatever is left here.
            lock_exclusively(&lock_path(prefix)).is_ok()
        })
        .map(|(prefix, numbers)| {
            numbers
                .into_iter()
                .map(|n| server_description(state_dir, &prefix, n))
                .collect()
        })
        .unwrap_or_default();
    Some(ClusterDescription {
        state_dir: state_dir.to_path_buf(),
        csi_socket: state_dir.join("csi.sock"),
        brick_root: state_dir.join("bricks"),
        mount_log_dir: state_dir.join("logs/mounts"),
        brick_agent_port: 0,
        brick_agent_token: String::new(),
        servers,
        brick_multiplex: false,
    })
}

/// The address block and server numbers named by `<state>/bricks/<address>`
/// (one directory per server, made before its alias).
fn recorded_servers(state_dir: &Path) -> Option<(String, Vec<usize>)> {
    let mut addresses: Vec<[u8; 4]> = std::fs::read_dir(state_dir.join("bricks"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<std::net::Ipv4Addr>().ok())
        .map(|a| a.octets())
        // Only what claim_address_block hands out: 127.(100..250).(1..=250).n
        .filter(|[a, b, c, _]| *a == 127 && *b >= 100 && *c >= 1)
        .collect();
    addresses.sort();
    let [a, b, c, _] = *addresses.first()?;
    let numbers = addresses
        .iter()
        .filter(|x| x[..3] == [a, b, c])
        .map(|x| usize::from(x[3]))
        .collect();
    Some((format!("{a}.{b}.{c}"), numbers))
}

/// Uses `path` as a state directory only if dev made it: a path that does
/// not exist is created and marked; an existing one must carry the mark.
fn claim_state_dir(path: &Path) -> AppResult<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::create_dir(path)?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path.join(MARKER))?;
            Ok(())
        }
        Err(e) => Err(e.into()),
        Ok(meta)
            if meta.is_dir()
                && std::fs::symlink_metadata(path.join(MARKER)).is_ok_and(|m| m.is_file()) =>
        {
            Ok(())
        }
        Ok(_) => Err(format!(
            "refusing --state-dir {}: it exists and was not made by glusterfs-csi dev (it has no \
             {MARKER}); dev only uses a directory it makes itself, so give a path that does not \
             exist yet",
            path.display()
        )
        .into()),
    }
}

/// A fresh secret for the dev cluster's brick agents.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut urandom) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = urandom.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_prerequisites(glusterd: &Path) -> AppResult<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err("dev mode needs root (loopback aliases, glusterd, FUSE mounts)".into());
    }
    let found = glusterd.is_absolute() && glusterd.exists()
        || std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(glusterd).exists())
        });
    if !found {
        return Err(format!(
            "{} not found: install glusterfs-server (apt-get install glusterfs-server)",
            glusterd.display()
        )
        .into());
    }
    Ok(())
}

fn server_description(state_dir: &Path, prefix: &str, n: usize) -> ServerDescription {
    let address = format!("{prefix}.{n}");
    let node_dir = state_dir.join(format!("nodes/n{n}"));
    let (work, run, log) = (
        node_dir.join("work"),
        node_dir.join("run"),
        node_dir.join("log"),
    );
    let socket = run.join("glusterd.socket");
    let option = |o: String| format!("--xlator-option=management.{o}");
    let glusterd_command = vec![
        "glusterd".to_string(),
        "--no-daemon".to_string(),
        option(format!("working-directory={}", work.display())),
        option(format!("transport.socket.bind-address={address}")),
        option(format!("run-directory={}", run.display())),
        option(format!("glusterd-sockfile={}", socket.display())),
        option(format!("cluster-test-mode={}", log.display())),
        format!("--log-file={}", log.join("glusterd.log").display()),
        format!("--pid-file={}", run.join("glusterd.pid").display()),
    ];
    ServerDescription {
        address,
        glusterd_socket: socket,
        log_dir: log,
        glusterd_command,
        glusterd_pid: None,
    }
}

/// Starts glusterd in the foreground as our child; it gets SIGTERM if this
/// process dies.
pub fn spawn_glusterd(program: &Path, server: &ServerDescription) -> std::io::Result<Child> {
    Command::from(glusterd_command(program, server)?).spawn()
}

/// The command that starts a server's glusterd as a host of its own.
///
/// Every gluster server keeps some state at fixed paths under
/// `/var/run/gluster`, whatever its run directory: the socket its bricks
/// ask quota sizes of (`quotad.socket`), the volume mounts glusterd makes
/// for quota commands and the quota crawl. On real hosts each server has
/// its own; on one machine several glusterd would share them (a brick
/// asking another cluster's quotad, which answers EINVAL, and gluster's
/// helper mounts copied into every mount namespace made meanwhile). So
/// each glusterd runs in a mount namespace of its own (a slave of the
/// host's: the host's mounts reach it, its own stay inside) with its
/// node's directory over `/var/run/gluster`. Its bricks and daemons
/// inherit it. What this cannot emulate: separate kernels and disks.
pub fn glusterd_command(
    program: &Path,
    server: &ServerDescription,
) -> std::io::Result<std::process::Command> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let own = server.gluster_run_dir();
    std::fs::create_dir_all(&own)?;
    std::fs::create_dir_all(GLUSTER_FIXED_RUN_DIR)?;
    let own = std::ffi::CString::new(own.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let target = std::ffi::CString::new(GLUSTER_FIXED_RUN_DIR).map_err(std::io::Error::other)?;
    let root = c"/";
    let mut glusterd = std::process::Command::new(program);
    glusterd
        .args(&server.glusterd_command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only prctl, unshare and mount between fork and exec, on
    // strings made before the fork.
    unsafe {
        glusterd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)?;
            let fail = |what: &str| {
                let e = std::io::Error::last_os_error();
                std::io::Error::new(e.kind(), format!("{what}: {e}"))
            };
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(fail("unshare(CLONE_NEWNS) for glusterd"));
            }
            let slave = (libc::MS_SLAVE | libc::MS_REC) as libc::c_ulong;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                slave,
                std::ptr::null(),
            ) != 0
            {
                return Err(fail("making / a slave mount for glusterd"));
            }
            if libc::mount(
                own.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND as libc::c_ulong,
                std::ptr::null(),
            ) != 0
            {
                return Err(fail("binding the node's directory over /var/run/gluster"));
            }
            Ok(())
        });
    }
    Ok(glusterd)
}

/// Picks a free `127.A.B` block: its lock file is ours and none of its
/// addresses is on `lo`.
fn claim_address_block(nodes: usize) -> AppResult<(String, File)> {
    std::fs::create_dir_all(LOCK_DIR)?;
    let existing = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()?;
    let existing = String::from_utf8_lossy(&existing.stdout).into_owned();
    let seed = std::process::id() as usize
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as usize)
            .unwrap_or(0);
    for attempt in 0..2000usize {
        let slot = (seed.wrapping_add(attempt.wrapping_mul(7919))) % (150 * 250);
        let prefix = format!("127.{}.{}", 100 + slot / 250, 1 + slot % 250);
        let Ok(lock) = lock_exclusively(&lock_path(&prefix)) else {
            continue;
        };
        let in_use = (1..=nodes).any(|n| existing.contains(&format!(" {prefix}.{n}/")));
        if !in_use {
            return Ok((prefix, lock));
        }
    }
    Err("no free 127.x.y.0 address block for a dev cluster".into())
}

/// Opens (creating) `path` and takes a non-blocking exclusive flock on it,
/// held until the file is closed.
fn lock_exclusively(path: &Path) -> std::io::Result<File> {
    let file = File::create(path)?;
    // SAFETY: flock on a valid descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

fn lock_path(prefix: &str) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("{prefix}.lock"))
}

fn block_prefix(description: &ClusterDescription) -> String {
    description
        .servers
        .first()
        .and_then(|s| s.address.rsplit_once('.'))
        .map(|(prefix, _)| prefix.to_string())
        .unwrap_or_default()
}

async fn add_alias(address: &str) -> AppResult<()> {
    let output = Command::new("ip")
        .args(["addr", "add", &format!("{address}/32"), "dev", "lo"])
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!(
            "ip addr add {address}/32 dev lo: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    Ok(())
}

async fn wait_for_socket(socket: &Path, child: &mut Child, deadline: Instant) -> AppResult<()> {
    loop {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("glusterd exited during start-up ({status}); see its log").into());
        }
        if Instant::now() > deadline {
            return Err(format!("glusterd did not open {} within 30s", socket.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a gluster command against a dev server, which must succeed.
pub async fn gluster(cli: &Path, socket: &Path, words: &[&str]) -> AppResult<Envelope> {
    let transport = OneShotCli::new(
        cli,
        GlusterdAddress::Socket(socket.to_path_buf()),
        Duration::from_secs(60),
    );
    let command = CliCommand::new(
        words
            .iter()
            .map(|w| CliArg::new(*w))
            .collect::<Result<_, _>>()?,
    );
    let envelope = Envelope::parse(&command.name, &transport.run(&command).await?)?;
    if envelope.failed() {
        return Err(format!("gluster {}: {}", words.join(" "), envelope.op_errstr.trim()).into());
    }
    Ok(envelope)
}

/// Waits until the server sees `size` connected members in its pool.
async fn wait_for_pool(cli: &Path, socket: &Path, size: usize, deadline: Instant) -> AppResult<()> {
    loop {
        let peers = gluster(cli, socket, &["pool", "list"]).await?.peers()?;
        if peers.len() == size && peers.iter().all(|p| p.connected) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the pool did not form within 30s: {peers:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ends everything a dev cluster runs: its mounts, its gluster processes
/// and its addresses. Safe on a half-started or crashed cluster; touches
/// only what the description names.
pub async fn end_cluster(description: &ClusterDescription, glusterds: &mut [Child]) {
    let addresses = description.addresses();
    unmount_cluster_mounts(&addresses);
    // A glusterd may start bricks while we end it: look again until nothing
    // of this cluster runs.
    for _ in 0..5 {
        let ours = cluster_processes(&description.state_dir, &addresses);
        // The glusterd processes this run started, by the pids it holds.
        let mut started: Vec<i32> = Vec::new();
        for child in glusterds.iter_mut() {
            if child.try_wait().is_ok_and(|status| status.is_none())
                && let Some(id) = child.id()
            {
                started.push(id as i32);
            }
        }
        if ours.is_empty() && started.is_empty() {
            break;
        }
        let mut pids: Vec<i32> = ours.iter().map(|(pid, _)| *pid).collect();
        for pid in started {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        end_processes(&pids).await;
        for child in glusterds.iter_mut() {
            let _ = child.try_wait();
        }
    }
    for child in glusterds.iter_mut() {
        let _ = child.wait().await;
    }
    for address in &addresses {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{address}/32"), "dev", "lo"])
            .output()
            .await;
    }
}

/// Unmounts every gluster FUSE mount served by one of `addresses` (bind
/// mounts of them included), deepest first.
fn unmount_cluster_mounts(addresses: &[String]) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut mounts: Vec<PathBuf> = crate::mount::mountinfo::parse(&text)
        .into_iter()
        .filter(|m| {
            m.is_glusterfs()
                && m.source
                    .split_once(':')
                    .is_some_and(|(host, _)| addresses.iter().any(|a| a == host))
        })
        .map(|m| m.mount_point)
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mount in mounts {
        if sys_mount::unmount(&mount, sys_mount::UnmountFlags::empty()).is_err() {
            let _ = sys_mount::unmount(&mount, sys_mount::UnmountFlags::DETACH);
        }
    }
}

/// The cluster's gluster daemons (glusterd, bricks, self-heal and other
/// daemons glusterd starts): gluster processes told to write their pid file
/// or log (`-p`, `--pid-file`, `-l`, `--log-file`) inside the state
/// directory, compared by path components. Nothing else is ever signalled:
/// not this process, not whoever started it, not a gluster process whose
/// arguments merely mention the state directory. (A pid file alone is not
/// enough: glusterd removes a self-heal daemon's when its volume goes.)
/// Also the quota crawl clients glusterd starts with neither, which fetch
/// their volfile from one of the cluster's servers (`-s`): its addresses
/// are this cluster's alone while it holds their block.
fn cluster_processes(state_dir: &Path, addresses: &[String]) -> Vec<(i32, Vec<String>)> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let program = argv.first()?.rsplit('/').next()?;
            if !matches!(program, "glusterd" | "glusterfsd" | "glusterfs") {
                return None;
            }
            let ours = own_files(&argv).iter().any(|f| f.starts_with(state_dir))
                || volfile_server(&argv).is_some_and(|s| addresses.iter().any(|a| a == s));
            ours.then_some((pid, argv))
        })
        .collect()
}

/// The files a gluster daemon was told to write: its pid file and its log.
fn own_files(argv: &[String]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (i, arg) in argv.iter().enumerate() {
        for option in ["--pid-file=", "--log-file="] {
            if let Some(path) = arg.strip_prefix(option) {
                files.push(PathBuf::from(path));
            }
        }
        if matches!(arg.as_str(), "-p" | "--pid-file" | "-l" | "--log-file")
            && let Some(path) = argv.get(i + 1)
        {
            files.push(PathBuf::from(path));
        }
    }
    files
}

/// The server a gluster daemon fetches its volfile from (`-s`).
fn volfile_server(argv: &[String]) -> Option<&str> {
    argv.windows(2)
        .find(|w| w[0] == "-s")
        .map(|w| w[1].as_str())
}

/// SIGTERM, then SIGKILL for what is still there after 10 s.
async fn end_processes(pids: &[i32]) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let alive = |pid: &&i32| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(**pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(&p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for pid in pids.iter().filter(alive) {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1.trim_start().to_string();
            after.chars().next()
        })
        == Some('Z')
}

/// Removes what dev made in its state directory (only ever a directory it
/// made and marked), keeping the directory, its mark and its lock.
fn remove_made(state: &Path) {
    if !std::fs::symlink_metadata(state.join(MARKER)).is_ok_and(|m| m.is_file()) {
        return;
    }
    for made in MADE.iter().filter(|m| **m != ".lock") {
        let path = state.join(made);
        let _ = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => Ok(()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_files_from_real_command_lines() {
        let argv = |line: &str| line.split(' ').map(str::to_string).collect::<Vec<_>>();
        let shd = argv(
            "/usr/sbin/glusterfs -s 127.213.13.1 --volfile-id shd/csi-pvc-1 -p /st/nodes/n1/run/shd/csi-pvc-1/csi-pvc-1-shd.pid -l /st/nodes/n1/log/glustershd.log -S /var/run/gluster/fdd783b2c28b4e86.socket --process-name glustershd",
        );
        assert_eq!(
            own_files(&shd),
            [
                PathBuf::from("/st/nodes/n1/run/shd/csi-pvc-1/csi-pvc-1-shd.pid"),
                PathBuf::from("/st/nodes/n1/log/glustershd.log")
            ]
        );
        let glusterd = argv(
            "glusterd --no-daemon --log-file=/st/l/glusterd.log --pid-file=/st/r/glusterd.pid",
        );
        assert_eq!(own_files(&glusterd).len(), 2);
        let crawl = argv(
            "/usr/sbin/glusterfs -s 127.232.232.3 --volfile-id client_per_brick/v.client.127.232.232.3.b.vol --use-readdirp=yes --client-pid -100 -l /var/log/glusterfs/quota_crawl/b.log /var/run/gluster/tmp/mntWhUd3a",
        );
        assert_eq!(volfile_server(&crawl), Some("127.232.232.3"));
        assert_eq!(volfile_server(&glusterd), None);
        // Naming the state directory in any other way does not count.
        let impostor = argv("/tmp/bin/glusterfs -f /st/cluster.json --pid=1");
        assert!(own_files(&impostor).is_empty());
        // Inside the state directory by components, not by text.
        assert!(!Path::new("/st-other/x.pid").starts_with("/st"));
    }

    #[test]
    fn state_directories_dev_did_not_make_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious"), "keep").unwrap();
        let err = claim_state_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("was not made by glusterfs-csi dev"), "{err}");
        let fresh = dir.path().join("state");
        claim_state_dir(&fresh).unwrap();
        assert!(fresh.join(MARKER).is_file());
        claim_state_dir(&fresh).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("precious")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn servers_are_read_back_from_their_brick_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded_servers(dir.path()), None);
        for name in [
            "127.130.7.2",
            "127.130.7.1",
            "127.0.0.1",
            "lost+found",
            "127.130.7.3",
        ] {
            std::fs::create_dir_all(dir.path().join("bricks").join(name)).unwrap();
        }
        assert_eq!(
            recorded_servers(dir.path()),
            Some(("127.130.7".to_string(), vec![1, 2, 3]))
        );
    }

    #[test]
    fn a_saved_description_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let description = ClusterDescription {
            state_dir: dir.path().to_path_buf(),
            csi_socket: dir.path().join("csi.sock"),
            brick_root: dir.path().join("bricks"),
            mount_log_dir: dir.path().join("logs/mounts"),
            brick_agent_port: 0,
            brick_agent_token: "t".into(),
            servers: vec![server_description(dir.path(), "127.130.7", 1)],
            brick_multiplex: true,
        };
        description.save().unwrap();
        description.save().unwrap();
        let read = ClusterDescription::load(dir.path()).unwrap();
        assert_eq!(read.addresses(), ["127.130.7.1"]);
        assert!(!dir.path().join(DESCRIPTION_DRAFT).exists());
    }

    #[test]
    fn server_layout() {
        let s = server_description(Path::new("/st"), "127.101.7", 2);
        assert_eq!(s.address, "127.101.7.2");
        assert_eq!(
            s.glusterd_socket,
            PathBuf::from("/st/nodes/n2/run/glusterd.socket")
        );
        assert!(s.glusterd_command.contains(&"--no-daemon".to_string()));
        assert!(s.glusterd_command.contains(
            &"--xlator-option=management.transport.socket.bind-address=127.101.7.2".to_string()
        ));
    }
}

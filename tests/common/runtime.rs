//! What a container runtime and the kubelet do to the node plugin, played
//! by the test: the kubelet's directory shared with the plugin's mount
//! namespace (Bidirectional propagation), the plugin in a cgroup of its own
//! (and, optionally, a PID namespace of its own), killed as runc kills a
//! container (SIGKILL to every process of its cgroup via `cgroup.kill`),
//! and a shim that reaps the FUSE clients left to it, as containerd's does.
//!
//! What this cannot prove: real systemd (a shim moves the mount into a
//! cgroup of its own and execs, as `systemd-run --scope` would), real runc
//! and containerd, a real kubelet's reconstruction after a restart.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use glusterfs_csi::proto::csi::ProbeRequest;
use glusterfs_csi::proto::csi::identity_client::IdentityClient;
use glusterfs_csi::proto::csi::node_client::NodeClient;
use tonic::transport::Channel;

use super::{try_connect, wait_until};

pub const SYSTEMD_RUN_SHIM: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/systemd-run");

/// A name no other test run uses (cgroups are machine-wide).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Every cgroup hierarchy mounted under /sys/fs/cgroup showing its whole
/// tree: v2, and each v1 hierarchy where the machine still has them.
pub fn hierarchies() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut devices = Vec::new();
    glusterfs_csi::mount::mountinfo::parse(&text)
        .into_iter()
        .filter(|m| {
            matches!(m.fs_type.as_str(), "cgroup" | "cgroup2")
                && m.root == Path::new("/")
                && m.mount_point.starts_with("/sys/fs/cgroup")
        })
        .filter(|m| {
            let new = !devices.contains(&m.device);
            devices.push(m.device.clone());
            new
        })
        .map(|m| m.mount_point)
        .collect()
}

/// The v2 hierarchy (the whole tree on a v2 machine, `unified` on hybrid).
pub fn unified() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    glusterfs_csi::mount::mountinfo::parse(&text)
        .into_iter()
        .find(|m| m.fs_type == "cgroup2" && m.mount_point.starts_with("/sys/fs/cgroup"))
        .expect("a cgroup2 hierarchy (cgroup.kill)")
        .mount_point
}

/// A cgroup at the same relative path in every hierarchy, removed (after
/// killing what is still in it, all of it started by the test) on drop.
pub struct TestCgroup {
    pub dirs: Vec<PathBuf>,
    relative: PathBuf,
}

impl TestCgroup {
    pub fn create(relative: &Path) -> TestCgroup {
        let mut dirs = Vec::new();
        for hierarchy in hierarchies() {
            let mut dir = hierarchy.clone();
            for part in relative.components() {
                let parent = dir.clone();
                dir.push(part);
                glusterfs_csi::mount::scope::create_cgroup(&parent, &dir).unwrap();
            }
            dirs.push(dir);
        }
        TestCgroup {
            dirs,
            relative: relative.to_path_buf(),
        }
    }

    /// The same cgroup in every hierarchy, without creating it.
    pub fn existing(relative: &Path) -> TestCgroup {
        TestCgroup {
            dirs: hierarchies().iter().map(|h| h.join(relative)).collect(),
            relative: relative.to_path_buf(),
        }
    }

    pub fn relative(&self) -> &Path {
        &self.relative
    }

    fn v2(&self) -> PathBuf {
        unified().join(&self.relative)
    }

    /// Processes in it (v2 view), its sub-cgroups included.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let mut dirs = vec![self.v2()];
        while let Some(dir) = dirs.pop() {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            if let Ok(entries) = std::fs::read_dir(&dir) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path()),
                );
            }
        }
        pids
    }

    /// SIGKILL to every process in it, as runc ends a container.
    pub fn kill(&self) {
        let file = self.v2().join("cgroup.kill");
        if file.exists() {
            std::fs::write(&file, "1").unwrap();
        } else {
            for pid in self.pids() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        wait_until(Duration::from_secs(20), || self.pids().is_empty());
    }

    /// Makes a command move itself here between fork and exec.
    pub fn enter_before_exec(&self, command: &mut Command) {
        let procs: Vec<CString> = self
            .dirs
            .iter()
            .map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).unwrap())
            .collect();
        // SAFETY: only open/write/close between fork and exec.
        unsafe {
            command.pre_exec(move || glusterfs_csi::mount::scope::move_self_into(&procs));
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if !self.pids().is_empty() {
            self.kill();
        }
        for dir in &self.dirs {
            remove_cgroup_tree(dir);
        }
    }
}

/// Removes a cgroup and its (empty) sub-cgroups, deepest first.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The kubelet's directory made a shared mount, so the plugin's mount
/// namespace and this one see each other's mounts (Bidirectional). On drop
/// everything mounted inside is unmounted, then the directory itself.
pub struct SharedKubeletDir {
    pub path: PathBuf,
}

impl SharedKubeletDir {
    pub fn new(path: &Path) -> SharedKubeletDir {
        for args in [
            vec!["--bind", path.to_str().unwrap(), path.to_str().unwrap()],
            vec!["--make-shared", path.to_str().unwrap()],
        ] {
            let status = Command::new("mount").args(&args).status().unwrap();
            assert!(status.success(), "mount {args:?}");
        }
        SharedKubeletDir {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for SharedKubeletDir {
    fn drop(&mut self) {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut inside: Vec<PathBuf> = glusterfs_csi::mount::mountinfo::parse(&text)
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(&self.path))
            .collect();
        inside.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        inside.dedup();
        for mount in inside {
            // The bind of the directory itself is last (fewest components).
            while sys_mount::unmount(&mount, sys_mount::UnmountFlags::empty()).is_ok() {}
            let _ = sys_mount::unmount(&mount, sys_mount::UnmountFlags::DETACH);
        }
    }
}

/// Makes this test process the subreaper of what it starts, and reaps the
/// gluster processes orphaned to it, as containerd's shim does for a
/// container. Only `glusterfs`, `glusterfsd` and `mount.glusterfs` are
/// reaped: the test never starts those itself, so no exit status a test
/// waits for is taken.
pub fn reap_orphaned_gluster_processes() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        std::thread::spawn(|| {
            let me = std::process::id() as i32;
            loop {
                for pid in zombies_of(me, &["glusterfs", "glusterfsd", "mount.glusterfs"]) {
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    });
}

/// Zombie children of `parent`, of any name if `names` is empty.
pub fn zombies_of(parent: i32, names: &[&str]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or("");
            let mut fields = rest.split(' ');
            fields.next() == Some("Z")
                && fields.next().and_then(|p| p.parse::<i32>().ok()) == Some(parent)
                && (names.is_empty() || names.contains(&comm))
        })
        .collect()
}

/// Parent pid of `pid`.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(1)?.parse().ok()
}

/// How the plugin is run.
#[derive(Clone, Debug)]
pub struct PluginSetup {
    /// `--mounter` value.
    pub mounter: &'static str,
    /// A PID namespace of its own (no hostPID).
    pub own_pid_namespace: bool,
    /// Extra flags and environment.
    pub flags: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl PluginSetup {
    /// A plugin whose FUSE clients go where `mounter` puts them: the cgroup
    /// `fuse` (cgroup mounter), or scopes under `scopes` made by the
    /// systemd-run shim (systemd mounter).
    pub fn for_mounter(
        mounter: &'static str,
        own_pid_namespace: bool,
        fuse: &TestCgroup,
        scopes: &TestCgroup,
    ) -> PluginSetup {
        let mut setup = PluginSetup {
            mounter,
            own_pid_namespace,
            flags: Vec::new(),
            env: Vec::new(),
        };
        match mounter {
            "cgroup" => setup
                .flags
                .push(format!("--fuse-cgroup={}", fuse.relative().display())),
            "systemd" => {
                setup
                    .flags
                    .push(format!("--systemd-run={SYSTEMD_RUN_SHIM}"));
                let parents: Vec<String> = scopes
                    .dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                setup
                    .env
                    .push(("GLUSTERFS_CSI_TEST_SCOPE_PARENTS".into(), parents.join(":")));
            }
            _ => {}
        }
        setup
    }
}

/// One incarnation of the node plugin, as a container: its own mount
/// namespace (sharing the kubelet directory), its own cgroup, optionally
/// its own PID namespace.
pub struct NodePlugin {
    child: Child,
    cgroup: Option<TestCgroup>,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub channel: Channel,
}

impl NodePlugin {
    /// Starts it with its state in `home` (kept across incarnations, as
    /// host paths are) and waits until it answers Probe.
    pub async fn start(
        home: &Path,
        setup: &PluginSetup,
        cgroup: TestCgroup,
        incarnation: usize,
    ) -> NodePlugin {
        let socket = home.join("csi.sock");
        let log = home.join(format!("plugin-{incarnation}.log"));
        let mut command = Command::new("unshare");
        if setup.own_pid_namespace {
            command.args(["--pid", "--fork", "--kill-child", "--mount-proc"]);
        }
        command
            .args(["--mount", "--propagation", "unchanged", "--"])
            .arg(env!("CARGO_BIN_EXE_glusterfs-csi"))
            .arg("node")
            .arg(format!("--endpoint=unix://{}", socket.display()))
            .arg("--node-id=drill-node")
            .arg(format!("--mounter={}", setup.mounter))
            .arg(format!("--state-dir={}", home.join("state").display()))
            .arg(format!("--mount-log-dir={}", home.join("logs").display()))
            .args(&setup.flags)
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .env("GLUSTERFS_CSI_LOG", "info,glusterfs_csi=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        std::fs::create_dir_all(home.join("logs")).unwrap();
        cgroup.enter_before_exec(&mut command);
        let child = command.spawn().expect("start the node plugin");
        let channel = connect_when_ready(&socket, &log).await;
        NodePlugin {
            child,
            cgroup: Some(cgroup),
            socket,
            log,
            channel,
        }
    }

    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Pid of the process `unshare` became or started (the plugin, or with
    /// a PID namespace the namespace's init).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Processes in the plugin's container (its cgroup).
    pub fn container_pids(&self) -> Vec<i32> {
        self.cgroup
            .as_ref()
            .map(TestCgroup::pids)
            .unwrap_or_default()
    }

    /// The process that is PID 1 of the plugin's PID namespace.
    pub fn namespace_init(&self) -> i32 {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
                .unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("unshare --fork started the namespace's init")
    }

    /// Ends it as runc ends a container, and waits until it is gone.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for NodePlugin {
    fn drop(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.kill();
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- node plugin log ---\n{}", self.log_text());
        }
    }
}

async fn connect_when_ready(socket: &Path, log: &Path) -> Channel {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(channel) = try_connect(socket).await
            && IdentityClient::new(channel.clone())
                .probe(ProbeRequest {})
                .await
                .is_ok()
        {
            return channel;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node plugin did not answer within 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

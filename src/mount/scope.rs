//! Where a FUSE client runs, which decides whether it outlives the node
//! plugin.
//!
//! mount.glusterfs daemonises the client, which stays in the cgroup the
//! `mount` command ran in. In the plugin's own cgroup it dies with the
//! container (runc kills the whole cgroup, or the whole PID namespace).
//! Moved out of it (into a systemd scope, or a cgroup of our own) and with
//! the host's PID namespace (hostPID), it survives a plugin restart, and the
//! restarted plugin finds its mounts in mountinfo.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;

use super::mountinfo;

/// Inode of the initial cgroup namespace (fixed by the kernel).
const INIT_CGROUP_NS_INO: u64 = 0xEFFF_FFFB;

/// Which placement was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeChoice {
    Auto,
    Systemd,
    Cgroup,
    Inline,
}

/// What the placements need to know about the host.
#[derive(Clone, Debug)]
pub struct ScopeSettings {
    pub systemd_run: PathBuf,
    pub cgroup_root: PathBuf,
    pub fuse_cgroup: String,
    /// This process has a PID namespace of its own (no hostPID): whatever
    /// it starts dies with it.
    pub own_pid_namespace: bool,
}

/// Where FUSE clients are started.
#[derive(Clone, Debug)]
pub enum FuseScope {
    /// In the plugin's own cgroup.
    Inline,
    /// In a transient systemd scope (`systemd-run --scope`), as the kubelet
    /// runs its own mounts.
    Systemd { systemd_run: PathBuf },
    /// In a cgroup of our own in every hierarchy.
    Cgroup(CgroupHome),
}

/// The chosen scope and why the others were passed over (for the log).
#[derive(Debug)]
pub struct Chosen {
    pub scope: FuseScope,
    pub passed_over: Vec<String>,
}

impl FuseScope {
    /// Picks the placement: an explicit choice must work; `Auto` takes the
    /// first that does of systemd, cgroup, inline.
    pub async fn choose(choice: ScopeChoice, settings: &ScopeSettings) -> Result<Chosen, String> {
        let mut passed_over = Vec::new();
        if matches!(choice, ScopeChoice::Auto | ScopeChoice::Systemd) {
            match systemd(settings, choice == ScopeChoice::Systemd).await {
                Ok(scope) => return Ok(Chosen { scope, passed_over }),
                Err(why) if choice == ScopeChoice::Systemd => {
                    return Err(format!("--mounter systemd: {why}"));
                }
                Err(why) => passed_over.push(format!("systemd: {why}")),
            }
        }
        if matches!(choice, ScopeChoice::Auto | ScopeChoice::Cgroup) {
            match cgroup(settings) {
                Ok(scope) => return Ok(Chosen { scope, passed_over }),
                Err(why) if choice == ScopeChoice::Cgroup => {
                    return Err(format!("--mounter cgroup: {why}"));
                }
                Err(why) => passed_over.push(format!("cgroup: {why}")),
            }
        }
        Ok(Chosen {
            scope: FuseScope::Inline,
            passed_over,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            FuseScope::Inline => "inline",
            FuseScope::Systemd { .. } => "systemd",
            FuseScope::Cgroup(_) => "cgroup",
        }
    }

    /// Where the clients end up, for the log.
    pub fn describe(&self) -> String {
        match self {
            FuseScope::Inline => "the node plugin's own cgroup".into(),
            FuseScope::Systemd { systemd_run } => {
                format!(
                    "transient systemd scopes ({} --scope)",
                    systemd_run.display()
                )
            }
            FuseScope::Cgroup(home) => home
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// A command that runs `mount_program` inside this scope; the caller
    /// adds mount's own arguments.
    pub fn mount_command(&self, mount_program: &Path, description: &str) -> Command {
        match self {
            FuseScope::Inline => Command::new(mount_program),
            FuseScope::Systemd { systemd_run } => {
                let mut command = Command::new(systemd_run);
                command
                    .args(systemd_run_args(description))
                    .arg(mount_program);
                command
            }
            FuseScope::Cgroup(home) => {
                let mut command = Command::new(mount_program);
                home.enter_before_exec(&mut command);
                command
            }
        }
    }
}

/// `systemd-run` arguments up to the command: a scope (the process stays
/// our child, only its cgroup changes), collected once empty.
fn systemd_run_args(description: &str) -> Vec<String> {
    vec![
        "--quiet".into(),
        "--collect".into(),
        "--scope".into(),
        format!("--description={description}"),
        "--".into(),
    ]
}

/// systemd-run that works; when not asked for explicitly, also systemd as
/// PID 1 (so nothing is probed on hosts without it).
async fn systemd(settings: &ScopeSettings, explicit: bool) -> Result<FuseScope, String> {
    if settings.own_pid_namespace {
        return Err("this process has its own PID namespace (run with hostPID)".into());
    }
    let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    if !explicit && init.trim() != "systemd" {
        return Err(format!(
            "PID 1 is {:?}, not systemd",
            init.trim().chars().take(32).collect::<String>()
        ));
    }
    let mut probe = Command::new(&settings.systemd_run);
    probe
        .args(systemd_run_args("glusterfs-csi probe"))
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(15), probe.output())
        .await
        .map_err(|_| {
            format!(
                "{} did not answer within 15 s",
                settings.systemd_run.display()
            )
        })?
        .map_err(|e| format!("cannot run {}: {e}", settings.systemd_run.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} --scope failed: {}",
            settings.systemd_run.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(FuseScope::Systemd {
        systemd_run: settings.systemd_run.clone(),
    })
}

fn cgroup(settings: &ScopeSettings) -> Result<FuseScope, String> {
    if settings.own_pid_namespace {
        return Err("this process has its own PID namespace (run with hostPID)".into());
    }
    CgroupHome::prepare(&settings.cgroup_root, &settings.fuse_cgroup).map(FuseScope::Cgroup)
}

/// A cgroup named `name` directly under the root of every cgroup hierarchy
/// mounted at or below the cgroup root (v2, and each v1 hierarchy where
/// they are still found).
#[derive(Clone, Debug)]
pub struct CgroupHome {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each of `dirs`, ready for use between fork and exec.
    procs: Arc<Vec<CString>>,
    /// The host's cgroup namespace, entered before moving when ours is
    /// private (a migration must be visible from the writer's namespace).
    host_namespace: Option<Arc<OwnedFd>>,
}

impl CgroupHome {
    pub fn prepare(root: &Path, name: &str) -> Result<CgroupHome, String> {
        if !is_plain_name(name) {
            return Err(format!(
                "--fuse-cgroup {name:?}: a plain name of letters, digits, '.', '_' and '-'"
            ));
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
        let mut devices = Vec::new();
        let mut dirs = Vec::new();
        for mount in mountinfo::parse(&text) {
            let whole_tree = mount.root == Path::new("/");
            let cgroupfs = matches!(mount.fs_type.as_str(), "cgroup" | "cgroup2");
            if !cgroupfs || !whole_tree || !mount.mount_point.starts_with(root) {
                continue;
            }
            if devices.contains(&mount.device) {
                continue;
            }
            devices.push(mount.device.clone());
            let dir = mount.mount_point.join(name);
            create_cgroup(&mount.mount_point, &dir)?;
            dirs.push(dir);
        }
        if dirs.is_empty() {
            return Err(format!(
                "no cgroup hierarchy showing its whole tree is mounted at or under {} \
                 (mount the host's /sys/fs/cgroup there)",
                root.display()
            ));
        }
        let procs = dirs
            .iter()
            .map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(CgroupHome {
            dirs,
            procs: Arc::new(procs),
            host_namespace: host_cgroup_namespace()?,
        })
    }

    /// The directories clients are moved into.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Moves the child into this cgroup between fork and exec, so mount,
    /// mount.glusterfs and the client they start all live there.
    fn enter_before_exec(&self, command: &mut Command) {
        let procs = Arc::clone(&self.procs);
        let namespace = self.host_namespace.clone();
        // SAFETY: only async-signal-safe calls (setns, then those of
        // `move_self_into`) on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if let Some(fd) = &namespace
                    && libc::setns(fd.as_raw_fd(), libc::CLONE_NEWCGROUP) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                move_self_into(&procs)
            });
        }
    }
}

/// Moves the calling process into the cgroups whose `cgroup.procs` files
/// are given. Only async-signal-safe calls (open, write, close): usable
/// between fork and exec.
pub fn move_self_into(procs: &[CString]) -> std::io::Result<()> {
    for path in procs {
        // SAFETY: open/write/close on a valid C string and our own buffer.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0": the writing process itself.
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            let error = std::io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Creates the cgroup `dir` under `parent` if needed. A v1 cpuset cgroup
/// takes no process until it has CPUs and memory nodes: it gets its parent's.
pub fn create_cgroup(parent: &Path, dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating cgroup {}: {e}", dir.display())),
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let Ok(inherited) = std::fs::read_to_string(parent.join(file)) else {
            continue; // not a v1 cpuset hierarchy
        };
        let own = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if own.trim().is_empty() {
            std::fs::write(dir.join(file), inherited.trim())
                .map_err(|e| format!("setting {}: {e}", dir.join(file).display()))?;
        }
    }
    Ok(())
}

fn host_cgroup_namespace() -> Result<Option<Arc<OwnedFd>>, String> {
    let own = std::fs::metadata("/proc/self/ns/cgroup")
        .map(|m| m.ino())
        .unwrap_or(INIT_CGROUP_NS_INO);
    if own == INIT_CGROUP_NS_INO {
        return Ok(None);
    }
    let host = std::fs::File::open("/proc/1/ns/cgroup").map_err(|e| {
        format!("this process has its own cgroup namespace and cannot enter the host's ({e})")
    })?;
    Ok(Some(Arc::new(OwnedFd::from(host))))
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_run_runs_a_collected_scope() {
        assert_eq!(
            systemd_run_args("FUSE client of v at /s"),
            [
                "--quiet",
                "--collect",
                "--scope",
                "--description=FUSE client of v at /s",
                "--"
            ]
        );
    }

    #[test]
    fn cgroup_names_are_plain() {
        assert!(is_plain_name("glusterfs-csi-fuse"));
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        let err = CgroupHome::prepare(Path::new("/sys/fs/cgroup"), "../escape").unwrap_err();
        assert!(err.contains("--fuse-cgroup"), "{err}");
    }

    #[test]
    fn no_hierarchy_under_the_root_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = CgroupHome::prepare(dir.path(), "x").unwrap_err();
        assert!(err.contains("no cgroup hierarchy"), "{err}");
    }

    #[tokio::test]
    async fn an_explicit_choice_that_cannot_work_is_an_error() {
        let settings = ScopeSettings {
            systemd_run: "/nonexistent/systemd-run".into(),
            cgroup_root: "/nonexistent".into(),
            fuse_cgroup: "x".into(),
            own_pid_namespace: true,
        };
        let err = FuseScope::choose(ScopeChoice::Cgroup, &settings)
            .await
            .unwrap_err();
        assert!(err.contains("own PID namespace"), "{err}");
        let err = FuseScope::choose(ScopeChoice::Systemd, &settings)
            .await
            .unwrap_err();
        assert!(err.starts_with("--mounter systemd"), "{err}");
        let auto = FuseScope::choose(ScopeChoice::Auto, &settings)
            .await
            .unwrap();
        assert_eq!(auto.scope.name(), "inline");
        assert_eq!(auto.passed_over.len(), 2, "{:?}", auto.passed_over);
    }
}

//! The real [`Mounter`]: `mount -t glusterfs` for FUSE mounts, syscalls for
//! bind mounts and unmounts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use std::os::fd::AsRawFd;

use super::fd::{attach, mount_setattr, open_tree};
use super::mountinfo::{self, MountEntry};
use super::paths::PathPolicy;
use super::repair::{self, DeadFileSystem, RepairReport};
use super::scope::FuseScope;
use super::servers::answering_first;
use super::{BrickLink, FsUsage, GlusterSource, MountError, Mounter, PathState};

/// The helper `mount -t glusterfs` runs.
pub const MOUNT_HELPER: &str = "/sbin/mount.glusterfs";
/// The FUSE device every gluster client opens.
pub const FUSE_DEVICE: &str = "/dev/fuse";

/// The node's readiness, part one (also `doctor`'s): the mount helper is there.
pub fn mount_helper_present(helper: &Path) -> Result<(), String> {
    if helper.exists() {
        Ok(())
    } else {
        Err(format!(
            "{} is missing: install the glusterfs client (glusterfs-client)",
            helper.display()
        ))
    }
}

/// The node's readiness, part two (also `doctor`'s): the FUSE device opens
/// for reading and writing, as the client will open it.
pub fn fuse_device_usable(device: &Path) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map(drop)
        .map_err(|e| format!("{} is not usable: {e}", device.display()))
}

pub struct SystemMounter {
    /// Where FUSE clients run.
    scope: FuseScope,
    /// Where staging and target paths may lead.
    paths: PathPolicy,
    mount_program: PathBuf,
    mount_helper: PathBuf,
    /// How long to wait for mount.glusterfs.
    timeout: Duration,
    /// How long to wait for servers to answer before ordering them.
    probe_patience: Duration,
}

impl SystemMounter {
    pub fn new(scope: FuseScope, paths: PathPolicy) -> Self {
        SystemMounter {
            scope,
            paths,
            mount_program: "mount".into(),
            mount_helper: MOUNT_HELPER.into(),
            timeout: Duration::from_secs(60),
            probe_patience: Duration::from_millis(500),
        }
    }
}

#[async_trait]
impl Mounter for SystemMounter {
    async fn mount_glusterfs(
        &self,
        source: &GlusterSource,
        target: &Path,
        options: &[String],
    ) -> Result<(), MountError> {
        // mount.glusterfs takes a path: it must be one that leads nowhere else.
        self.paths.open_dir(target, false)?;
        let order = answering_first(&source.servers, self.probe_patience).await;
        if !order.any_answered {
            return Err(MountError::NoServer {
                volume: source.volume.clone(),
                servers: order.servers.join(", "),
            });
        }
        let (primary, backups) =
            order
                .servers
                .split_first()
                .ok_or_else(|| MountError::MountFailed {
                    source_desc: source.volume.clone(),
                    target: target.to_path_buf(),
                    detail: "no server to mount from".into(),
                })?;
        let mut all_options: Vec<String> = Vec::new();
        if !backups.is_empty() {
            all_options.push(format!("backup-volfile-servers={}", backups.join(":")));
        }
        all_options.extend(options.iter().cloned());
        let spec = format!("{primary}:/{}", source.volume);
        let description = format!(
            "glusterfs-csi FUSE client of {} at {}",
            source.volume,
            target.display()
        );
        let mut mount = self.scope.mount_command(&self.mount_program, &description);
        mount.arg("-t").arg("glusterfs");
        if !all_options.is_empty() {
            mount.arg("-o").arg(all_options.join(","));
        }
        mount
            .arg(&spec)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        tracing::debug!(%spec, target = %target.display(), options = ?all_options, scope = self.scope.name(), "mount -t glusterfs");
        let output = tokio::time::timeout(self.timeout, mount.output())
            .await
            .map_err(|_| MountError::Timeout(self.timeout.as_secs()))?
            .map_err(|e| MountError::Io {
                action: "starting mount for",
                path: target.to_path_buf(),
                error: std::io::Error::other(format!(
                    "in the {} FUSE client scope: {e}",
                    self.scope.name()
                )),
            })?;
        if output.status.success() {
            return Ok(());
        }
        let detail = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Err(MountError::MountFailed {
            source_desc: spec,
            target: target.to_path_buf(),
            detail: detail.trim().to_string(),
        })
    }

    fn prepare_dir(&self, path: &Path) -> Result<(), MountError> {
        self.paths.open_dir(path, true).map(drop)
    }

    async fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<(), MountError> {
        let (source, target) = (source.to_path_buf(), target.to_path_buf());
        let paths = self.paths.clone();
        tokio::task::spawn_blocking(move || {
            // Both ends opened without following links; the clone is made
            // read-only before it is attached, so it is never writable.
            let from = paths.open_dir(&source, false)?;
            let onto = paths.open_dir(&target, true)?;
            let failed = |action| MountError::io(action, &target);
            let tree = open_tree(
                from.as_raw_fd(),
                c"",
                libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32,
            )
            .map_err(failed("cloning the staging mount for"))?;
            if read_only {
                let attr = libc::mount_attr {
                    attr_set: libc::MOUNT_ATTR_RDONLY,
                    attr_clr: 0,
                    propagation: 0,
                    userns_fd: 0,
                };
                mount_setattr(tree.as_raw_fd(), &attr).map_err(failed("making read-only"))?;
            }
            attach(&tree, &onto).map_err(failed("bind-mounting onto"))
        })
        .await
        .map_err(|e| MountError::io("bind mount task", Path::new(""))(std::io::Error::other(e)))?
    }

    async fn unmount(&self, target: &Path) -> Result<(), MountError> {
        let target = target.to_path_buf();
        tokio::task::spawn_blocking(move || match umount_nofollow(&target) {
            Ok(()) => Ok(()),
            // EINVAL: not a mount point (any more).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(MountError::io("unmounting", &target)(e)),
        })
        .await
        .map_err(|e| MountError::io("unmount task", Path::new(""))(std::io::Error::other(e)))?
    }

    async fn replace_dead(
        &self,
        dead: &DeadFileSystem,
        fresh: &Path,
    ) -> Result<RepairReport, MountError> {
        let (dead, fresh) = (dead.clone(), fresh.to_path_buf());
        tokio::task::spawn_blocking(move || repair::replace_dead_mounts(&dead, &fresh))
            .await
            .map_err(|e| MountError::io("repair task", Path::new(""))(std::io::Error::other(e)))
    }

    fn mount_table(&self) -> Result<Vec<MountEntry>, MountError> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(MountError::io("reading", Path::new("/proc/self/mountinfo")))?;
        Ok(mountinfo::parse(&text))
    }

    fn path_state(&self, path: &Path) -> PathState {
        match std::fs::metadata(path) {
            Ok(_) => PathState::Present,
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => PathState::Disconnected,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PathState::Missing,
            // Anything else (EACCES, EIO...) still means something is there.
            Err(_) => PathState::Present,
        }
    }

    fn usage(&self, path: &Path) -> Result<FsUsage, MountError> {
        let stats = nix::sys::statvfs::statvfs(path)
            .map_err(|e| MountError::io("statvfs", path)(e.into()))?;
        let block = stats.fragment_size();
        let total_bytes = stats.blocks() * block;
        let available_bytes = stats.blocks_available() * block;
        let free_bytes = stats.blocks_free() * block;
        Ok(FsUsage {
            total_bytes,
            available_bytes,
            used_bytes: total_bytes.saturating_sub(free_bytes),
            total_inodes: stats.files(),
            free_inodes: stats.files_free(),
            used_inodes: stats.files().saturating_sub(stats.files_free()),
        })
    }

    fn brick_links(&self, mount: &Path, volume: &str) -> Result<Vec<BrickLink>, MountError> {
        super::meta::brick_links(mount, volume)
    }

    fn check_ready(&self) -> Result<(), String> {
        mount_helper_present(&self.mount_helper)?;
        fuse_device_usable(Path::new(FUSE_DEVICE))
    }
}

/// `umount2(path, UMOUNT_NOFOLLOW)`: a symlink as the last component is not
/// followed. (sys-mount 3.1's `UnmountFlags::NOFOLLOW` is O_NOFOLLOW, a
/// value the kernel refuses, so the syscall is made directly.)
fn umount_nofollow(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: umount2 with a valid C string.
    if unsafe { libc::umount2(path.as_ptr(), libc::UMOUNT_NOFOLLOW) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

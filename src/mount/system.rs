//! The real [`Mounter`]: `mount -t glusterfs` for FUSE mounts, syscalls for
//! bind mounts and unmounts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use sys_mount::{Mount, MountFlags, UnmountFlags, unmount};

use super::mountinfo::{self, MountEntry};
use super::repair::{self, DeadFileSystem, RepairReport};
use super::scope::FuseScope;
use super::servers::answering_first;
use super::{FsUsage, GlusterSource, MountError, Mounter, PathState};

pub struct SystemMounter {
    /// Where FUSE clients run.
    scope: FuseScope,
    mount_program: PathBuf,
    mount_helper: PathBuf,
    /// How long to wait for mount.glusterfs.
    timeout: Duration,
    /// How long to wait for servers to answer before ordering them.
    probe_patience: Duration,
}

impl SystemMounter {
    pub fn new(scope: FuseScope) -> Self {
        SystemMounter {
            scope,
            mount_program: "mount".into(),
            mount_helper: "/sbin/mount.glusterfs".into(),
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

    async fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<(), MountError> {
        let (source, target) = (source.to_path_buf(), target.to_path_buf());
        tokio::task::spawn_blocking(move || {
            Mount::builder()
                .flags(MountFlags::BIND)
                .mount(&source, &target)
                .map_err(MountError::io("bind-mounting onto", &target))?;
            if read_only {
                // A bind mount only becomes read-only through a remount.
                let remounted = Mount::builder()
                    .flags(MountFlags::BIND | MountFlags::REMOUNT | MountFlags::RDONLY)
                    .mount("none", &target);
                if let Err(error) = remounted {
                    let _ = unmount(&target, UnmountFlags::empty());
                    return Err(MountError::io("making read-only", &target)(error));
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| MountError::io("bind mount task", Path::new(""))(std::io::Error::other(e)))?
    }

    async fn unmount(&self, target: &Path) -> Result<(), MountError> {
        let target = target.to_path_buf();
        tokio::task::spawn_blocking(move || match unmount(&target, UnmountFlags::empty()) {
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

    fn check_ready(&self) -> Result<(), String> {
        if !self.mount_helper.exists() {
            return Err(format!(
                "{} is missing: install the glusterfs client (glusterfs-client)",
                self.mount_helper.display()
            ));
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map(drop)
            .map_err(|e| format!("/dev/fuse is not usable: {e}"))
    }
}

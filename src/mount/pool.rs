//! The controller's mounts of subdirectory-mode pools, one FUSE client per
//! pool at `<pool mount dir>/<pool>`, mounted on first use and mounted
//! again when its client died. Directories at the top of a pool are made,
//! marked and removed through it with `*at` calls on a descriptor of the
//! pool's root, never following a symbolic link. Removal runs in the
//! `purge-pool-directory` child (the brick trash's walk: iterative, bounded,
//! never leaving the pool's mount), so a tenant's tree never costs the
//! controller process; it deletes in place, because a directory renamed to
//! another parent right after it was made can fail on one brick ("size key
//! not present in dict" from the quota translator, seen here under load),
//! which leaves the brick out of step until self-heal.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, mkdirat};
use tonic::Code;

use super::{GlusterSource, Mounter};
use crate::AppResult;
use crate::bricks::purge;
use crate::cli::PurgePoolDirectoryArgs;
use crate::controller::{DirectoryError, DirectoryState, PoolAccess, PoolDirectories};
use crate::names::VolumeName;

/// The CSI name a directory was made for.
pub const XATTR_NAME: &str = "trusted.csi.name";
/// Its size in bytes (what the CO was told).
pub const XATTR_SIZE: &str = "trusted.csi.size";
/// Set (to a Unix timestamp) once its deletion began.
pub const XATTR_DELETING: &str = "trusted.csi.deleting";
/// Longest mark value read.
const XATTR_MAX: usize = 256;
/// The running binary, even if it was replaced on disk since it started.
const SELF_EXE: &str = "/proc/self/exe";
/// Most of the purge child's output read (it prints one short line).
const OUTPUT_LIMIT: u64 = 64 * 1024;

/// The purge child's one line on stdout.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirectoryPurge {
    pub directories: u64,
    pub files: u64,
    pub elapsed_ms: u64,
    /// VmHWM of the purge process.
    pub peak_rss_kib: u64,
}

/// `glusterfs-csi purge-pool-directory <pool mount> <directory>`: deletes
/// the directory and everything in it, then prints a [`DirectoryPurge`]
/// line. Refuses a directory name the driver does not make, and a path that
/// is not a gluster mount point.
pub fn run_purge_directory(args: PurgePoolDirectoryArgs) -> AppResult<()> {
    let started = std::time::Instant::now();
    let name = VolumeName::parse(&args.directory)
        .ok_or_else(|| format!("{:?} is not a directory the driver makes", args.directory))?;
    let path = &args.pool_mount;
    if !path.is_absolute() {
        return Err(format!("{}: not an absolute path", path.display()).into());
    }
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounted = super::mountinfo::parse(&table)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == *path);
    if !mounted.is_some_and(|m| m.is_glusterfs()) {
        return Err(format!("{}: not a gluster mount point", path.display()).into());
    }
    let root = open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut pass = purge::Pass::default();
    let entry = CString::new(name.as_str()).map_err(|e| e.to_string())?;
    purge::purge_entry(root.as_fd(), &entry, &mut pass)
        .map_err(|e| format!("removing /{name} of {}: {e}", path.display()))?;
    let summary = DirectoryPurge {
        directories: pass.directories,
        files: pass.files,
        elapsed_ms: started.elapsed().as_millis() as u64,
        peak_rss_kib: crate::bricks::trash::peak_rss_kib().unwrap_or(0),
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

pub struct PoolMounts {
    dir: PathBuf,
    mounter: Arc<dyn Mounter>,
    mount_options: Vec<String>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PoolMounts {
    /// Pools get mounted under `dir` (made 0700 if missing) by `mounter`,
    /// with the FUSE options nodes use too.
    pub fn new(
        dir: PathBuf,
        mounter: Arc<dyn Mounter>,
        mount_options: Vec<String>,
    ) -> std::io::Result<PoolMounts> {
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        Ok(PoolMounts {
            dir,
            mounter,
            mount_options,
            locks: Mutex::new(HashMap::new()),
        })
    }

    fn lock_of(&self, pool: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(pool.to_string()).or_default())
    }

    fn mount_point(&self, pool: &str) -> PathBuf {
        self.dir.join(pool)
    }

    /// The live mount of `pool`, mounted now if there is none or its
    /// client is gone.
    async fn mounted(&self, pool: &PoolAccess) -> Result<PathBuf, DirectoryError> {
        let path = self.mount_point(&pool.pool);
        let lock = self.lock_of(&pool.pool);
        let _held = lock.lock().await;
        let unavailable = |what: String| DirectoryError::new(Code::Unavailable, what);
        for attempt in 0..2 {
            let table = self
                .mounter
                .mount_table()
                .map_err(|e| unavailable(e.to_string()))?;
            match table.iter().rev().find(|m| m.mount_point == path) {
                Some(top) if top.gluster_volume() == Some(pool.pool.as_str()) => {
                    // statfs reaches the client; a stat of the root can be
                    // answered from the kernel's cache after the client died.
                    if nix::sys::statvfs::statvfs(&path) != Err(Errno::ENOTCONN) {
                        return Ok(path);
                    }
                    tracing::warn!(pool = %pool.pool, path = %path.display(), "pool mount is dead (ENOTCONN); mounting it again");
                    self.mounter
                        .unmount(&path)
                        .await
                        .map_err(|e| unavailable(e.to_string()))?;
                }
                Some(top) => {
                    return Err(DirectoryError::new(
                        Code::Internal,
                        format!(
                            "{} holds a mount of {} ({}), not of pool {}; leaving it",
                            path.display(),
                            top.source,
                            top.fs_type,
                            pool.pool
                        ),
                    ));
                }
                None if attempt > 0 => break,
                None => {}
            }
            self.mounter
                .prepare_dir(&path)
                .map_err(|e| unavailable(e.to_string()))?;
            let mut options = self.mount_options.clone();
            options.push(format!(
                "log-file={}",
                self.dir.join(format!("{}.log", pool.pool)).display()
            ));
            let source = GlusterSource {
                servers: pool.servers.clone(),
                volume: pool.pool.clone(),
            };
            self.mounter
                .mount_glusterfs(&source, &path, &options)
                .await
                .map_err(|e| unavailable(format!("mounting pool {}: {e}", pool.pool)))?;
            tracing::info!(pool = %pool.pool, path = %path.display(), "pool mounted");
        }
        Err(unavailable(format!(
            "pool {} is not mounted at {} after mounting it",
            pool.pool,
            path.display()
        )))
    }

    /// Runs `work` on a descriptor of the pool's root, off the runtime.
    async fn at_root<T: Send + 'static>(
        &self,
        pool: &PoolAccess,
        work: impl FnOnce(BorrowedFd<'_>, &Path) -> Result<T, DirectoryError> + Send + 'static,
    ) -> Result<T, DirectoryError> {
        let path = self.mounted(pool).await?;
        tokio::task::spawn_blocking(move || {
            let root = open(
                &path,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_error(&format!("opening {}", path.display())))?;
            work(root.as_fd(), &path)
        })
        .await
        .map_err(|e| DirectoryError::new(Code::Internal, format!("pool task: {e}")))?
    }

    /// Unmounts every pool (at shutdown). The next controller mounts them again.
    async fn unmount_all(&self) {
        let Ok(table) = self.mounter.mount_table() else {
            return;
        };
        for mount in table.iter().rev() {
            if mount.mount_point.parent() == Some(self.dir.as_path())
                && mount.is_glusterfs()
                && let Err(e) = self.mounter.unmount(&mount.mount_point).await
            {
                tracing::warn!(path = %mount.mount_point.display(), error = %e, "pool mount left");
            }
        }
    }
}

fn io_error(action: &str) -> impl Fn(Errno) -> DirectoryError + '_ {
    move |e| {
        let code = match e {
            Errno::ENOTCONN | Errno::EIO | Errno::ETIMEDOUT => Code::Unavailable,
            Errno::ENOSPC | Errno::EDQUOT => Code::ResourceExhausted,
            _ => Code::Internal,
        };
        DirectoryError::new(code, format!("{action}: {e}"))
    }
}

/// The directory `name` of the pool root, opened without following a link.
fn open_directory(root: BorrowedFd<'_>, name: &VolumeName) -> Result<OwnedFd, Errno> {
    openat(
        root,
        name.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn get_mark(fd: BorrowedFd<'_>, key: &str) -> Result<Option<String>, Errno> {
    let key = CString::new(key).map_err(|_| Errno::EINVAL)?;
    let mut buffer = [0u8; XATTR_MAX];
    // SAFETY: the buffer outlives the call and its length is passed.
    let read = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            key.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    match Errno::result(read) {
        Ok(len) => Ok(Some(
            String::from_utf8_lossy(&buffer[..len as usize]).into_owned(),
        )),
        Err(Errno::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

fn set_mark(fd: BorrowedFd<'_>, key: &str, value: &str) -> Result<(), Errno> {
    let key = CString::new(key).map_err(|_| Errno::EINVAL)?;
    // SAFETY: key and value outlive the call; the value's length is passed.
    let done = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(done).map(drop)
}

/// Whether the open directory has no entry but `.` and `..`.
fn is_empty(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let mut dir = nix::dir::Dir::from_fd(nix::unistd::dup(fd)?)?;
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

fn read_state(root: BorrowedFd<'_>, name: &VolumeName) -> Result<DirectoryState, DirectoryError> {
    let shown = format!("/{name}");
    let fd = match open_directory(root, name) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(DirectoryState::Missing),
        Err(Errno::ENOTDIR | Errno::ELOOP) => {
            return Ok(DirectoryState::Foreign("not a directory".into()));
        }
        Err(e) => return Err(io_error(&format!("opening {shown}"))(e)),
    };
    let mark = |key: &str| {
        get_mark(fd.as_fd(), key).map_err(io_error(&format!("reading {key} of {shown}")))
    };
    let Some(csi_name) = mark(XATTR_NAME)? else {
        let empty = is_empty(fd.as_fd()).map_err(io_error(&format!("reading {shown}")))?;
        return Ok(if empty {
            DirectoryState::UnmarkedEmpty
        } else {
            DirectoryState::Foreign("a directory with files and without the driver's marks".into())
        });
    };
    let size_bytes = mark(XATTR_SIZE)?.and_then(|s| s.parse().ok()).unwrap_or(0);
    let deleting = mark(XATTR_DELETING)?.is_some();
    Ok(DirectoryState::Ours {
        csi_name,
        size_bytes,
        deleting,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[async_trait]
impl PoolDirectories for PoolMounts {
    async fn state(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
    ) -> Result<DirectoryState, DirectoryError> {
        let name = directory.clone();
        self.at_root(pool, move |root, _| read_state(root, &name))
            .await
    }

    async fn make(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
        csi_name: &str,
        size_bytes: u64,
        owner: Option<(u32, u32)>,
    ) -> Result<(), DirectoryError> {
        let name = directory.clone();
        let csi_name = csi_name.to_string();
        self.at_root(pool, move |root, _| {
            let shown = format!("/{name}");
            match mkdirat(root, name.as_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io_error(&format!("making {shown}"))(e)),
            }
            let fd = open_directory(root, &name).map_err(io_error(&format!("opening {shown}")))?;
            // Only before the marks: a volume handed out has its tenant's owner.
            let marked = get_mark(fd.as_fd(), XATTR_NAME)
                .map_err(io_error(&format!("reading {shown}")))?
                .is_some();
            if let (false, Some((uid, gid))) = (marked, owner) {
                nix::unistd::fchown(
                    &fd,
                    Some(nix::unistd::Uid::from_raw(uid)),
                    Some(nix::unistd::Gid::from_raw(gid)),
                )
                .map_err(io_error(&format!("giving {shown} to {uid}:{gid}")))?;
            }
            // The size first: a directory carrying its name is complete.
            set_mark(fd.as_fd(), XATTR_SIZE, &size_bytes.to_string())
                .and_then(|()| set_mark(fd.as_fd(), XATTR_NAME, &csi_name))
                .map_err(io_error(&format!("marking {shown}")))
        })
        .await
    }

    async fn record_size(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
        size_bytes: u64,
    ) -> Result<(), DirectoryError> {
        let name = directory.clone();
        self.at_root(pool, move |root, _| {
            let shown = format!("/{name}");
            let fd = open_directory(root, &name).map_err(io_error(&format!("opening {shown}")))?;
            set_mark(fd.as_fd(), XATTR_SIZE, &size_bytes.to_string())
                .map_err(io_error(&format!("recording the size of {shown}")))
        })
        .await
    }

    async fn mark_deleting(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
    ) -> Result<(), DirectoryError> {
        let name = directory.clone();
        self.at_root(pool, move |root, _| {
            let shown = format!("/{name}");
            let fd = match open_directory(root, &name) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(io_error(&format!("opening {shown}"))(e)),
            };
            if get_mark(fd.as_fd(), XATTR_DELETING)
                .map_err(io_error(&format!("reading {shown}")))?
                .is_some()
            {
                return Ok(());
            }
            set_mark(fd.as_fd(), XATTR_DELETING, &unix_now().to_string())
                .map_err(io_error(&format!("marking {shown} for deletion")))
        })
        .await
    }

    async fn remove(
        &self,
        pool: &PoolAccess,
        directory: &VolumeName,
    ) -> Result<(), DirectoryError> {
        let path = self.mounted(pool).await?;
        let failed = |message: String| {
            DirectoryError::new(
                Code::Internal,
                format!("purge-pool-directory {}: {message}", directory),
            )
        };
        let mut command = tokio::process::Command::new(SELF_EXE);
        command
            .arg0("glusterfs-csi")
            .arg("purge-pool-directory")
            .arg(&path)
            .arg(directory.as_str())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Logs like its parent; no other environment goes with it.
        if let Some(filter) = std::env::var_os("GLUSTERFS_CSI_LOG") {
            command.env("GLUSTERFS_CSI_LOG", filter);
        }
        let mut child = command.spawn().map_err(|e| failed(e.to_string()))?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let read = async {
            use tokio::io::AsyncReadExt;
            if let Some(stdout) = stdout {
                let _ = stdout.take(OUTPUT_LIMIT).read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            use tokio::io::AsyncReadExt;
            if let Some(stderr) = stderr {
                let _ = stderr.take(OUTPUT_LIMIT).read_to_end(&mut err).await;
            }
        };
        tokio::join!(read, read_err);
        let status = child.wait().await.map_err(|e| failed(e.to_string()))?;
        let line = String::from_utf8_lossy(&out);
        match serde_json::from_str::<DirectoryPurge>(line.trim()) {
            Ok(done) if status.success() => {
                tracing::info!(
                    pool = %pool.pool,
                    directory = %directory,
                    directories = done.directories,
                    files = done.files,
                    elapsed_ms = done.elapsed_ms,
                    peak_rss_kib = done.peak_rss_kib,
                    "volume directory removed"
                );
                Ok(())
            }
            _ => {
                let said = String::from_utf8_lossy(&err);
                let last = said
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                Err(failed(format!("{status}: {last}")))
            }
        }
    }

    async fn list(
        &self,
        pool: &PoolAccess,
    ) -> Result<Vec<(VolumeName, DirectoryState)>, DirectoryError> {
        self.at_root(pool, move |root, _| {
            let mut dir = nix::dir::Dir::from_fd(
                nix::unistd::dup(root).map_err(io_error("reading the pool's top"))?,
            )
            .map_err(io_error("reading the pool's top"))?;
            let mut found = Vec::new();
            for entry in dir.iter() {
                let entry = entry.map_err(io_error("reading the pool's top"))?;
                let Some(name) = entry.file_name().to_str().ok().and_then(VolumeName::parse) else {
                    continue;
                };
                let state = read_state(root, &name)?;
                found.push((name, state));
            }
            Ok(found)
        })
        .await
    }

    async fn release(&self) {
        self.unmount_all().await;
    }
}

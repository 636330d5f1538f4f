//! Brick trash: where removed brick directories wait to be purged.
//!
//! Brick removal renames a brick directory into `<brick root>/.glusterfs-csi-trash`
//! (one rename, done in the calling process) and starts
//! `glusterfs-csi purge-brick-trash <trash>` as a child process that deletes
//! it. However deep or wide a tenant made the tree, deleting it can only
//! cost that child, never the node plugin holding the node's FUSE mounts.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{FileStat, Mode, fstat, mkdirat};
use serde::{Deserialize, Serialize};

use super::purge;
use crate::AppResult;
use crate::cli::PurgeBrickTrashArgs;

/// Name of the trash directory in every brick root.
pub const TRASH_DIR: &str = ".glusterfs-csi-trash";
/// The running binary, even if it was replaced on disk since it started.
const SELF_EXE: &str = "/proc/self/exe";
/// Most of the purge child's stdout read (it prints one short line).
const SUMMARY_LIMIT: u64 = 64 * 1024;

/// The trash of the brick root holding `brick`.
pub fn trash_of(brick: &Path) -> Option<PathBuf> {
    Some(brick.parent()?.join(TRASH_DIR))
}

/// The trash to purge after a removal of `brick`: after a move, or when a
/// purge was cut short earlier (a restart of the node plugin) and left entries.
pub fn to_purge(brick: &Path, moved: bool) -> Option<PathBuf> {
    let trash = trash_of(brick)?;
    let leftovers = || std::fs::read_dir(&trash).is_ok_and(|mut d| d.next().is_some());
    (moved || leftovers()).then_some(trash)
}

/// Refusal to use a trash directory someone else could have prepared.
#[derive(Debug, thiserror::Error)]
pub enum TrashDirError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Opens the trash of the brick root open as `root` (at `root_path`),
/// creating it if missing.
pub fn open_in_root(root: BorrowedFd<'_>, root_path: &Path) -> Result<OwnedFd, TrashDirError> {
    let path = root_path.join(TRASH_DIR);
    match mkdirat(root, TRASH_DIR, Mode::S_IRWXU) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(std::io::Error::from(e).into()),
    }
    let fd = match openat(
        root,
        TRASH_DIR,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            return Err(TrashDirError::Refused(format!(
                "{} is not a directory (a symlink or a file); remove it so brick removal can \
                 make its trash there",
                path.display()
            )));
        }
        Err(e) => return Err(std::io::Error::from(e).into()),
    };
    let root_dev = fstat(root).map_err(std::io::Error::from)?.st_dev;
    check(
        &fstat(fd.as_fd()).map_err(std::io::Error::from)?,
        &path,
        Some(root_dev),
    )
    .map_err(TrashDirError::Refused)?;
    Ok(fd)
}

/// Owned by root, writable by nobody else, and on its brick root's file
/// system (when `root_dev` is given), so nobody else can plant entries in it.
fn check(stat: &FileStat, path: &Path, root_dev: Option<u64>) -> Result<(), String> {
    if stat.st_uid != 0 {
        return Err(format!(
            "{} is owned by uid {}, not root; refusing to use it as the brick trash",
            path.display(),
            stat.st_uid
        ));
    }
    if stat.st_mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o}); refusing to use it as the brick trash",
            path.display(),
            stat.st_mode & 0o7777
        ));
    }
    if root_dev.is_some_and(|dev| dev != stat.st_dev) {
        return Err(format!(
            "{} is on another file system than its brick root; refusing to use it as the brick \
             trash",
            path.display()
        ));
    }
    Ok(())
}

/// The purge child's one line on stdout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeSummary {
    /// Trash entries removed completely.
    pub purged: u64,
    pub directories: u64,
    pub files: u64,
    /// Entries left because brick removal does not make such entries.
    pub skipped: u64,
    /// Entries left after an error.
    pub errors: u64,
    pub elapsed_ms: u64,
    /// VmHWM of the purge process.
    pub peak_rss_kib: u64,
    /// Another purger held the trash; it takes over what is there.
    pub already_running: bool,
}

/// `glusterfs-csi purge-brick-trash <trash>`: purges until the trash holds
/// nothing it can remove, then prints a [`PurgeSummary`] line. Fails only on
/// an unusable argument.
pub fn run_purge(args: PurgeBrickTrashArgs) -> AppResult<()> {
    let trash = open_trash_argument(&args.trash)?;
    let summary = purge_trash(trash.as_fd(), &args.trash);
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// The purge child's argument, checked before anything is removed.
fn open_trash_argument(path: &Path) -> Result<OwnedFd, String> {
    let refuse = |why: &str| format!("{}: {why}", path.display());
    if !path.is_absolute() || path.file_name().and_then(|n| n.to_str()) != Some(TRASH_DIR) {
        return Err(refuse(&format!(
            "not an absolute path ending in {TRASH_DIR}"
        )));
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| refuse(&e.to_string()))?;
    if !meta.file_type().is_dir() {
        return Err(refuse("not a directory (a symlink or a file)"));
    }
    let fd = open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| refuse(&e.to_string()))?;
    let stat = fstat(fd.as_fd()).map_err(|e| refuse(&e.to_string()))?;
    if (stat.st_dev, stat.st_ino) != (meta.dev(), meta.ino()) {
        return Err(refuse("replaced while being opened"));
    }
    check(&stat, path, None)?;
    Ok(fd)
}

/// One purger per trash: rounds under an exclusive lock until nothing new
/// came in. A purger started while one runs finds the lock taken and
/// leaves its entries to it.
fn purge_trash(trash: BorrowedFd<'_>, path: &Path) -> PurgeSummary {
    let started = Instant::now();
    let mut summary = PurgeSummary::default();
    loop {
        match flock(trash, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {}
            Err(Errno::EWOULDBLOCK) => {
                summary.already_running = true;
                break;
            }
            Err(e) => {
                tracing::error!(trash = %path.display(), error = %e, "cannot lock the brick trash");
                summary.errors += 1;
                break;
            }
        }
        let round = purge::pass(trash, path).unwrap_or_else(|e| {
            tracing::error!(trash = %path.display(), error = %e, "cannot read the brick trash");
            purge::Pass {
                errors: 1,
                ..Default::default()
            }
        });
        summary.purged += round.purged;
        summary.directories += round.directories;
        summary.files += round.files;
        // What is left now, not what was left and then retried.
        summary.skipped = round.skipped;
        summary.errors = round.errors;
        let _ = flock(trash, libc::LOCK_UN);
        // A purger that found our lock taken left its new entry to us.
        match purge::count_entries(trash) {
            Ok(count) if count > round.left() => continue,
            _ => break,
        }
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    summary.peak_rss_kib = peak_rss_kib().unwrap_or(0);
    summary
}

fn flock(fd: BorrowedFd<'_>, operation: libc::c_int) -> Result<(), Errno> {
    loop {
        // SAFETY: flock on a valid descriptor.
        match Errno::result(unsafe { libc::flock(fd.as_raw_fd(), operation) }) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// Takes the exclusive lock on `fd`, waiting for whoever holds it.
pub fn lock_exclusive(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    flock(fd, libc::LOCK_EX).map_err(std::io::Error::from)
}

/// VmHWM of this process.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn purge_command(trash: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(SELF_EXE);
    std::os::unix::process::CommandExt::arg0(&mut command, "glusterfs-csi");
    command
        .arg("purge-brick-trash")
        .arg(trash)
        .env_clear()
        .stdin(Stdio::null());
    // Logs like its parent; no other environment (tokens) goes with it.
    if let Some(filter) = std::env::var_os("GLUSTERFS_CSI_LOG") {
        command.env("GLUSTERFS_CSI_LOG", filter);
    }
    command
}

/// Starts purging `trash` in a child process and logs its summary when it
/// ends (the brick agent, inside a tokio runtime). Never waits.
pub fn purge_in_child(trash: PathBuf) {
    let mut command = tokio::process::Command::from(purge_command(&trash));
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(trash = %trash.display(), error = %e,
                "cannot start the brick trash purge; the next removal in this brick root retries it");
            return;
        }
    };
    tokio::spawn(async move {
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            use tokio::io::AsyncReadExt;
            let _ = stdout.take(SUMMARY_LIMIT).read_to_end(&mut out).await;
        }
        let status = child.wait().await;
        let line = String::from_utf8_lossy(&out);
        match (status, serde_json::from_str::<PurgeSummary>(line.trim())) {
            (Ok(status), Ok(s)) if status.success() => tracing::info!(
                trash = %trash.display(),
                purged = s.purged,
                directories = s.directories,
                files = s.files,
                skipped = s.skipped,
                errors = s.errors,
                elapsed_ms = s.elapsed_ms,
                peak_rss_kib = s.peak_rss_kib,
                already_running = s.already_running,
                "brick trash purged"
            ),
            (status, _) => tracing::error!(
                trash = %trash.display(),
                status = ?status,
                output = %line.trim(),
                "brick trash purge failed"
            ),
        }
    });
}

/// Starts purging `trash` in a child of its own session with no stdio, and
/// does not wait: `ssh-command` ends at once, and so does the ssh session.
pub fn purge_detached(trash: &Path) -> std::io::Result<()> {
    let mut command = purge_command(trash);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: only the async-signal-safe setsid between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    command.spawn().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bricks::testing::{deep_chain, make_trash, scratch};
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn a_tree_ten_thousand_levels_deep_goes_on_a_small_stack() {
        let root = scratch();
        let trash = make_trash(root.path());
        let entry = trash.join("csi-pvc-1.1764480000000000000");
        fs::create_dir(&entry).unwrap();
        deep_chain(&entry, 10_000);
        let fd = open_trash_argument(&trash).unwrap();
        let path = trash.clone();
        // No recursion: 128 KiB of stack is plenty at any depth.
        let summary = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || purge_trash(fd.as_fd(), &path))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(summary.purged, 1, "{summary:?}");
        assert_eq!(summary.directories, 10_001);
        assert_eq!(summary.files, 10);
        assert_eq!((summary.skipped, summary.errors), (0, 0));
        assert!(!summary.already_running);
        assert!(summary.peak_rss_kib > 0);
        assert_eq!(fs::read_dir(&trash).unwrap().count(), 0);
    }

    #[test]
    fn one_purger_per_trash() {
        let root = scratch();
        let trash = make_trash(root.path());
        fs::create_dir(trash.join("csi-pvc-1.1")).unwrap();
        let held = open_trash_argument(&trash).unwrap();
        flock(held.as_fd(), libc::LOCK_EX).unwrap();
        let second = open_trash_argument(&trash).unwrap();
        let summary = purge_trash(second.as_fd(), &trash);
        assert!(summary.already_running);
        assert_eq!(summary.purged, 0);
        assert!(trash.join("csi-pvc-1.1").exists());
        flock(held.as_fd(), libc::LOCK_UN).unwrap();
        assert_eq!(purge_trash(second.as_fd(), &trash).purged, 1);
    }

    #[test]
    fn the_summary_is_one_json_line() {
        let summary = PurgeSummary {
            purged: 1,
            directories: 2,
            files: 3,
            peak_rss_kib: 2048,
            ..Default::default()
        };
        let line = serde_json::to_string(&summary).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            r#"{"purged":1,"directories":2,"files":3,"skipped":0,"errors":0,"elapsed_ms":0,"peak_rss_kib":2048,"already_running":false}"#
        );
    }

    #[test]
    fn the_purge_argument_must_be_a_root_owned_private_trash() {
        let root = scratch();
        for bad in ["relative/.glusterfs-csi-trash", "/tmp/not-a-trash"] {
            assert!(open_trash_argument(Path::new(bad)).is_err(), "{bad}");
        }
        let elsewhere = root.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let linked = root.path().join("linked");
        fs::create_dir(&linked).unwrap();
        symlink(&elsewhere, linked.join(TRASH_DIR)).unwrap();
        let err = open_trash_argument(&linked.join(TRASH_DIR)).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");

        let trash = make_trash(root.path());
        assert!(open_trash_argument(&trash).is_ok());
        fs::set_permissions(&trash, fs::Permissions::from_mode(0o770)).unwrap();
        let err = open_trash_argument(&trash).unwrap_err();
        assert!(err.contains("writable by group or others"), "{err}");
        fs::set_permissions(&trash, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&trash, Some(1000), None).unwrap();
        let err = open_trash_argument(&trash).unwrap_err();
        assert!(err.contains("owned by uid 1000"), "{err}");
    }

    #[test]
    fn the_rename_step_makes_a_private_trash_and_refuses_a_prepared_one() {
        let root = scratch();
        let root_fd = open(
            root.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let fd = open_in_root(root_fd.as_fd(), root.path()).unwrap();
        let stat = fstat(fd.as_fd()).unwrap();
        assert_eq!(stat.st_mode & 0o7777, 0o700);
        assert!(open_in_root(root_fd.as_fd(), root.path()).is_ok(), "reused");

        let trash = root.path().join(TRASH_DIR);
        fs::set_permissions(&trash, fs::Permissions::from_mode(0o722)).unwrap();
        let refused = |root_fd: &OwnedFd| match open_in_root(root_fd.as_fd(), root.path()) {
            Err(TrashDirError::Refused(why)) => why,
            other => panic!("not refused: {other:?}"),
        };
        assert!(refused(&root_fd).contains(&trash.display().to_string()));
        fs::set_permissions(&trash, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&trash, Some(1000), None).unwrap();
        assert!(refused(&root_fd).contains("owned by uid 1000"));
        fs::remove_dir(&trash).unwrap();
        let elsewhere = scratch();
        symlink(elsewhere.path(), &trash).unwrap();
        assert!(refused(&root_fd).contains("not a directory"));
    }
}

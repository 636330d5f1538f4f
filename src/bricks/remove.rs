//! Filesystem side of brick removal: inspecting a brick directory (bounded,
//! streaming) and moving it into its brick root's trash with one rename,
//! never following a symlink and never taking another file system or a mount
//! along. Deleting the tree is left to the purge child (see `trash`).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, open, openat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

use super::purge::{mount_at_or_under, path_of};
use super::trash::{self, TRASH_DIR, TrashDirError};
use super::walk::{Ascended, DT_DIR, DirStream, TreeCursor, WalkError};

/// Extended attribute glusterd puts on every brick root.
const VOLUME_ID_XATTR: &str = "trusted.glusterfs.volume-id";
/// Entries `inspect` reads before answering "holds data" (leaving the
/// directory to an admin) rather than reading on.
const INSPECT_MAX_ENTRIES: u64 = 10_000;
/// Levels of `.glusterfs` `inspect` goes down before answering "holds data".
const INSPECT_MAX_DEPTH: usize = 16;

/// What is at a would-be brick path.
#[derive(Debug, PartialEq, Eq)]
pub enum BrickDir {
    Missing,
    NotADirectory,
    /// A directory; whether glusterd marked it as a brick, and whether
    /// anything but gluster's empty `.glusterfs` skeleton is inside (or it
    /// is too big to tell cheaply).
    Directory {
        is_brick: bool,
        holds_data: bool,
    },
}

pub fn inspect(path: &Path) -> io::Result<BrickDir> {
    let (parent, name) = split(path)?;
    let parent_fd = open_dir(&parent)?;
    let Some(stat) = lstat_at(parent_fd.as_fd(), &name)? else {
        return Ok(BrickDir::Missing);
    };
    if !is_dir(&stat) {
        return Ok(BrickDir::NotADirectory);
    }
    let dir_fd = open_child_dir(&parent_fd, &name, stat.st_dev)?;
    let is_brick = has_xattr(&dir_fd, VOLUME_ID_XATTR)?;
    let holds_data = !holds_only_a_skeleton(dir_fd.as_fd())?;
    Ok(BrickDir::Directory {
        is_brick,
        holds_data,
    })
}

/// True if `brick` holds nothing, or only a `.glusterfs` of directories.
/// Stops at the first thing that is not, and at the caps.
fn holds_only_a_skeleton(brick: BorrowedFd<'_>) -> io::Result<bool> {
    let mut stream = DirStream::new();
    stream.seek(brick, 0)?;
    let mut seen = 0u64;
    let mut skeleton = false;
    while let Some(entry) = stream.next_entry(brick)? {
        seen += 1;
        if stream.name(&entry).to_bytes() != b".glusterfs" {
            return Ok(false);
        }
        skeleton = true;
    }
    if !skeleton {
        return Ok(true);
    }
    only_directories(brick, &mut seen)
}

fn only_directories(brick: BorrowedFd<'_>, seen: &mut u64) -> io::Result<bool> {
    let mut cursor = match TreeCursor::open(brick, c".glusterfs") {
        Ok(cursor) => cursor,
        Err(WalkError::Io(e)) if !matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
            return Err(e);
        }
        Err(_) => return Ok(false),
    };
    loop {
        let Some(entry) = cursor.next_entry()? else {
            if cursor.depth() == 0 {
                return Ok(true);
            }
            match cursor.ascend() {
                Ok(Ascended::Found(_)) => continue,
                // Changing while we read it: not an empty leftover.
                Ok(Ascended::Rewound) | Err(WalkError::Moved(_) | WalkError::Crossed(_)) => {
                    return Ok(false);
                }
                Err(WalkError::Io(e)) => return Err(e),
            }
        };
        *seen += 1;
        if *seen > INSPECT_MAX_ENTRIES || cursor.depth() >= INSPECT_MAX_DEPTH {
            return Ok(false);
        }
        match cursor.kind(&entry)? {
            None => continue,
            Some(DT_DIR) => {}
            Some(_) => return Ok(false),
        }
        match cursor.descend(&entry) {
            Ok(()) => {}
            Err(WalkError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(WalkError::Io(e))
                if !matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) =>
            {
                return Err(e);
            }
            Err(_) => return Ok(false),
        }
    }
}

/// Why a brick directory was not moved to the trash.
#[derive(Debug, thiserror::Error)]
pub enum TrashError {
    /// Something is there that brick removal must not take (an answer, not a failure).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
}

/// A brick directory now in the trash.
#[derive(Debug, PartialEq, Eq)]
pub struct Trashed {
    pub trash: PathBuf,
    /// Its name there: `<volume>.<nanoseconds since the epoch>`.
    pub entry: String,
}

/// Moves the directory at `path` into `<its parent>/.glusterfs-csi-trash`
/// with one rename. None if nothing was there. Refuses a symlink, a
/// non-directory, a directory on another file system than its parent, and
/// one with a mount point at or inside it.
pub fn move_to_trash(path: &Path) -> Result<Option<Trashed>, TrashError> {
    let io_error = |doing: &str, e: io::Error| TrashError::Io(format!("{doing}: {e}"));
    let (root_path, name) = split(path).map_err(|e| TrashError::Refused(e.to_string()))?;
    let root = open_dir(&root_path)
        .map_err(|e| io_error(&format!("opening {}", root_path.display()), e))?;
    // Across agent and ssh-command processes: a retry waits for a move in flight.
    trash::lock_exclusive(root.as_fd())
        .map_err(|e| io_error(&format!("locking {}", root_path.display()), e))?;
    let root_stat = fstat(root.as_fd()).map_err(|e| io_error("fstat", e.into()))?;
    let Some(stat) = lstat_at(root.as_fd(), &name)
        .map_err(|e| io_error(&format!("looking at {}", path.display()), e))?
    else {
        return Ok(None);
    };
    if !is_dir(&stat) {
        return Err(TrashError::Refused(format!(
            "{} is not a directory (a symlink or a file); leaving it",
            path.display()
        )));
    }
    if stat.st_dev != root_stat.st_dev {
        return Err(TrashError::Refused(format!(
            "{} is on another file system than {}; leaving it",
            path.display(),
            root_path.display()
        )));
    }
    let seen_by_kernel =
        path_of(root.as_fd()).map_or_else(|_| path.to_path_buf(), |r| r.join(&name));
    if let Some(mount) = mount_at_or_under(&seen_by_kernel)
        .map_err(|e| io_error("reading /proc/self/mountinfo", e))?
    {
        return Err(TrashError::Refused(format!(
            "{} is mounted at or inside {}; leaving it",
            mount.display(),
            path.display()
        )));
    }
    let trash = trash::open_in_root(root.as_fd(), &root_path).map_err(|e| match e {
        TrashDirError::Refused(why) => TrashError::Refused(why),
        TrashDirError::Io(e) => io_error(
            &format!("opening {}", root_path.join(TRASH_DIR).display()),
            e,
        ),
    })?;
    let mut suffix = 0u128;
    for _ in 0..100 {
        suffix = suffix.saturating_add(1).max(nanos_since_epoch());
        let entry = format!("{}.{suffix}", name.to_string_lossy());
        match renameat2(
            root.as_fd(),
            name.as_os_str(),
            trash.as_fd(),
            entry.as_str(),
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {
                return Ok(Some(Trashed {
                    trash: root_path.join(TRASH_DIR),
                    entry,
                }));
            }
            Err(Errno::EEXIST) => continue,
            // Gone since we looked only if the brick itself is gone (not the trash).
            Err(Errno::ENOENT) if matches!(lstat_at(root.as_fd(), &name), Ok(None)) => {
                return Ok(None);
            }
            Err(e) => {
                return Err(io_error(
                    &format!(
                        "moving {} into {}",
                        path.display(),
                        root_path.join(TRASH_DIR).display()
                    ),
                    e.into(),
                ));
            }
        }
    }
    Err(TrashError::Io(format!(
        "no free name in {} for {}",
        root_path.join(TRASH_DIR).display(),
        path.display()
    )))
}

fn nanos_since_epoch() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if path.is_absolute() => {
            Ok((parent.to_path_buf(), name.to_os_string()))
        }
        _ => Err(io::Error::other(format!(
            "{} is not an absolute path to a directory",
            path.display()
        ))),
    }
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

fn open_child_dir(parent: &OwnedFd, name: &OsStr, dev: u64) -> io::Result<OwnedFd> {
    let fd = openat(
        parent,
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    if fstat(&fd).map_err(io::Error::from)?.st_dev != dev {
        return Err(io::Error::other(format!(
            "{} is on another file system",
            name.to_string_lossy()
        )));
    }
    Ok(fd)
}

fn lstat_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileStat>> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn has_xattr(fd: &OwnedFd, name: &str) -> io::Result<bool> {
    let name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: size query (null buffer, size 0) on a valid descriptor.
    let size = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0) };
    if size >= 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENODATA) => Ok(false),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bricks::testing::{TestMount, deep_chain, scratch};
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn moves_the_brick_into_a_private_trash_once() {
        let root = scratch();
        let brick = root.path().join("csi-pvc-1");
        fs::create_dir_all(brick.join("a/b")).unwrap();
        fs::write(brick.join("a/b/file"), "x").unwrap();

        let trashed = move_to_trash(&brick).unwrap().unwrap();
        assert!(!brick.exists());
        assert_eq!(trashed.trash, root.path().join(TRASH_DIR));
        let (volume, suffix) = trashed.entry.rsplit_once('.').unwrap();
        assert_eq!(volume, "csi-pvc-1");
        assert!(suffix.parse::<u128>().unwrap() > 1_700_000_000_000_000_000);
        assert!(super::super::purge::is_trash_entry_name(
            trashed.entry.as_bytes()
        ));
        assert!(trashed.trash.join(&trashed.entry).join("a/b/file").exists());
        let mode = fs::metadata(&trashed.trash).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        assert_eq!(
            move_to_trash(&brick).unwrap(),
            None,
            "nothing there any more"
        );
    }

    #[test]
    fn concurrent_moves_of_one_brick_move_it_once() {
        let root = scratch();
        let brick = root.path().join("csi-pvc-1");
        fs::create_dir(&brick).unwrap();
        let movers: Vec<_> = (0..4)
            .map(|_| {
                let brick = brick.clone();
                std::thread::spawn(move || move_to_trash(&brick).unwrap())
            })
            .collect();
        let moved: Vec<_> = movers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(moved.iter().filter(|m| m.is_some()).count(), 1, "{moved:?}");
        assert_eq!(
            fs::read_dir(root.path().join(TRASH_DIR)).unwrap().count(),
            1
        );
    }

    #[test]
    fn symlinks_files_and_mounts_are_refused() {
        let outside = scratch();
        fs::write(outside.path().join("precious"), "keep").unwrap();
        let root = scratch();
        let link = root.path().join("csi-pvc-1");
        symlink(outside.path(), &link).unwrap();
        assert!(matches!(move_to_trash(&link), Err(TrashError::Refused(_))));
        assert!(outside.path().join("precious").exists());
        assert_eq!(inspect(&link).unwrap(), BrickDir::NotADirectory);

        let file = root.path().join("csi-pvc-2");
        fs::write(&file, "x").unwrap();
        assert!(matches!(move_to_trash(&file), Err(TrashError::Refused(_))));

        let brick = root.path().join("csi-pvc-3");
        fs::create_dir_all(brick.join("mnt")).unwrap();
        let mount = TestMount::bind(outside.path(), &brick.join("mnt"));
        match move_to_trash(&brick) {
            Err(TrashError::Refused(why)) => assert!(why.contains("mounted"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Reached through a symlinked root, the mount is still seen.
        let elsewhere = scratch();
        let linked_root = elsewhere.path().join("root");
        symlink(root.path(), &linked_root).unwrap();
        match move_to_trash(&linked_root.join("csi-pvc-3")) {
            Err(TrashError::Refused(why)) => assert!(why.contains("mounted"), "{why}"),
            other => panic!("{other:?}"),
        }
        drop(mount);
        let at = TestMount::tmpfs(&brick);
        assert!(matches!(move_to_trash(&brick), Err(TrashError::Refused(_))));
        drop(at);
        assert!(move_to_trash(&brick).unwrap().is_some());
    }

    #[test]
    fn a_prepared_trash_is_refused() {
        let root = scratch();
        let brick = root.path().join("csi-pvc-1");
        fs::create_dir(&brick).unwrap();
        let trash = root.path().join(TRASH_DIR);
        fs::create_dir(&trash).unwrap();
        fs::set_permissions(&trash, fs::Permissions::from_mode(0o777)).unwrap();
        match move_to_trash(&brick) {
            Err(TrashError::Refused(why)) => assert!(why.contains(TRASH_DIR), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(brick.exists());
    }

    #[test]
    fn relative_paths_are_refused() {
        assert!(move_to_trash(Path::new("relative/x")).is_err());
        assert!(move_to_trash(Path::new("/")).is_err());
    }

    #[test]
    fn inspect_tells_data_from_an_empty_skeleton() {
        let root = scratch();
        let brick = root.path().join("csi-pvc-1");
        assert_eq!(inspect(&brick).unwrap(), BrickDir::Missing);
        fs::write(&brick, "x").unwrap();
        assert_eq!(inspect(&brick).unwrap(), BrickDir::NotADirectory);
        fs::remove_file(&brick).unwrap();
        fs::create_dir(&brick).unwrap();
        let empty = BrickDir::Directory {
            is_brick: false,
            holds_data: false,
        };
        assert_eq!(inspect(&brick).unwrap(), empty);
        fs::create_dir_all(brick.join(".glusterfs/00/00")).unwrap();
        fs::create_dir_all(brick.join(".glusterfs/00/01")).unwrap();
        fs::create_dir_all(brick.join(".glusterfs/ff/ee/dd")).unwrap();
        assert_eq!(inspect(&brick).unwrap(), empty);
        let holds_data = |brick: &Path| {
            matches!(
                inspect(brick).unwrap(),
                BrickDir::Directory {
                    holds_data: true,
                    ..
                }
            )
        };
        fs::write(brick.join(".glusterfs/00/00/gfid"), "x").unwrap();
        assert!(holds_data(&brick));
        fs::remove_file(brick.join(".glusterfs/00/00/gfid")).unwrap();
        symlink("/etc", brick.join(".glusterfs/ff/ee/link")).unwrap();
        assert!(holds_data(&brick), "a symlink is data");
        fs::remove_file(brick.join(".glusterfs/ff/ee/link")).unwrap();
        fs::write(brick.join("user-file"), "x").unwrap();
        assert!(holds_data(&brick));
        fs::remove_file(brick.join("user-file")).unwrap();
        assert_eq!(inspect(&brick).unwrap(), empty);
    }

    #[test]
    fn inspect_answers_holds_data_past_its_caps() {
        let root = scratch();
        let deep = root.path().join("csi-pvc-1");
        fs::create_dir_all(deep.join(".glusterfs")).unwrap();
        deep_chain(&deep.join(".glusterfs"), INSPECT_MAX_DEPTH - 1);
        // deep_chain leaves a file at its top: take it away.
        fs::remove_file(deep.join(".glusterfs/f")).unwrap();
        assert!(matches!(
            inspect(&deep).unwrap(),
            BrickDir::Directory {
                holds_data: false,
                ..
            }
        ));
        let deeper = root.path().join("csi-pvc-2");
        fs::create_dir_all(deeper.join(".glusterfs")).unwrap();
        deep_chain(&deeper.join(".glusterfs"), 5_000);
        fs::remove_file(deeper.join(".glusterfs/f")).unwrap();
        assert!(matches!(
            inspect(&deeper).unwrap(),
            BrickDir::Directory {
                holds_data: true,
                ..
            }
        ));

        let wide = root.path().join("csi-pvc-3");
        let skeleton = wide.join(".glusterfs");
        fs::create_dir_all(&skeleton).unwrap();
        // `.glusterfs` itself is the first entry seen.
        for i in 1..INSPECT_MAX_ENTRIES {
            fs::create_dir(skeleton.join(i.to_string())).unwrap();
        }
        assert!(matches!(
            inspect(&wide).unwrap(),
            BrickDir::Directory {
                holds_data: false,
                ..
            }
        ));
        fs::create_dir(skeleton.join("one-more")).unwrap();
        assert!(matches!(
            inspect(&wide).unwrap(),
            BrickDir::Directory {
                holds_data: true,
                ..
            }
        ));
    }
}

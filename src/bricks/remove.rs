//! Filesystem side of brick removal: inspecting a brick directory and
//! removing it without ever following a symlink or leaving its file system.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Extended attribute glusterd puts on every brick root.
const VOLUME_ID_XATTR: &str = "trusted.glusterfs.volume-id";

/// What is at a would-be brick path.
#[derive(Debug, PartialEq, Eq)]
pub enum BrickDir {
    Missing,
    NotADirectory,
    /// A directory; whether glusterd marked it as a brick, and whether
    /// anything but gluster's empty `.glusterfs` skeleton is inside.
    Directory {
        is_brick: bool,
        holds_data: bool,
    },
}

pub fn inspect(path: &Path) -> io::Result<BrickDir> {
    let (parent, name) = split(path)?;
    let parent_fd = open_dir(&parent)?;
    let Some(stat) = lstat_at(&parent_fd, &name)? else {
        return Ok(BrickDir::Missing);
    };
    if !is_dir(&stat) {
        return Ok(BrickDir::NotADirectory);
    }
    let dir_fd = open_child_dir(&parent_fd, &name, stat.st_dev)?;
    let is_brick = has_xattr(&dir_fd, VOLUME_ID_XATTR)?;
    let mut holds_data = false;
    for entry in entries(&dir_fd)? {
        if entry.as_bytes() != b".glusterfs" {
            holds_data = true;
            break;
        }
        let skeleton = open_child_dir(&dir_fd, &entry, stat.st_dev)?;
        if !only_directories(&skeleton, stat.st_dev, 0)? {
            holds_data = true;
        }
    }
    Ok(BrickDir::Directory {
        is_brick,
        holds_data,
    })
}

/// Removes the directory at `path` and everything under it. Returns false if
/// nothing was there. Refuses (and removes nothing more) on finding another
/// file system inside.
pub fn remove_tree(path: &Path) -> io::Result<bool> {
    let (parent, name) = split(path)?;
    if let Some(mount) = mount_point_under(path)? {
        return Err(io::Error::other(format!(
            "{} is mounted inside {}; refusing to remove",
            mount.display(),
            path.display()
        )));
    }
    let parent_fd = open_dir(&parent)?;
    let Some(stat) = lstat_at(&parent_fd, &name)? else {
        return Ok(false);
    };
    if !is_dir(&stat) {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            path.display()
        )));
    }
    empty_dir(&parent_fd, &name, stat.st_dev)?;
    unlinkat(&parent_fd, name.as_os_str(), UnlinkatFlags::RemoveDir).map_err(io::Error::from)?;
    Ok(true)
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

fn lstat_at(parent: &OwnedFd, name: &OsStr) -> io::Result<Option<FileStat>> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn entries(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    // A fresh open of "." gets its own directory offset.
    let listing_fd = openat(
        dir,
        ".",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let mut listing = Dir::from_fd(listing_fd).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

fn only_directories(dir: &OwnedFd, dev: u64, depth: usize) -> io::Result<bool> {
    if depth > 16 {
        return Ok(false);
    }
    for name in entries(dir)? {
        let Some(stat) = lstat_at(dir, &name)? else {
            continue;
        };
        if !is_dir(&stat) {
            return Ok(false);
        }
        let child = open_child_dir(dir, &name, dev)?;
        if !only_directories(&child, dev, depth + 1)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn empty_dir(parent: &OwnedFd, name: &OsStr, dev: u64) -> io::Result<()> {
    let dir = open_child_dir(parent, name, dev)?;
    for entry in entries(&dir)? {
        let Some(stat) = lstat_at(&dir, &entry)? else {
            continue;
        };
        if is_dir(&stat) {
            empty_dir(&dir, &entry, dev)?;
            unlinkat(&dir, entry.as_os_str(), UnlinkatFlags::RemoveDir)
        } else {
            unlinkat(&dir, entry.as_os_str(), UnlinkatFlags::NoRemoveDir)
        }
        .map_err(io::Error::from)?;
    }
    Ok(())
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

/// A mount point strictly inside `path`, if any (from /proc/self/mountinfo).
fn mount_point_under(path: &Path) -> io::Result<Option<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(crate::mount::mountinfo::parse(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .find(|mp| mp != path && mp.starts_with(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn removes_a_tree_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), "keep").unwrap();
        let root = tempfile::tempdir().unwrap();
        let brick = root.path().join("csi-pvc-1");
        fs::create_dir_all(brick.join("a/b/c")).unwrap();
        fs::write(brick.join("a/b/c/file"), "x").unwrap();
        symlink(outside.path(), brick.join("a/link-to-outside")).unwrap();
        symlink(outside.path().join("precious"), brick.join("file-link")).unwrap();

        assert!(remove_tree(&brick).unwrap());
        assert!(!brick.exists());
        assert_eq!(
            fs::read_to_string(outside.path().join("precious")).unwrap(),
            "keep"
        );
        assert!(!remove_tree(&brick).unwrap(), "second call finds nothing");
    }

    #[test]
    fn a_symlinked_brick_is_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), "keep").unwrap();
        let root = tempfile::tempdir().unwrap();
        let brick = root.path().join("csi-pvc-1");
        symlink(outside.path(), &brick).unwrap();
        assert!(remove_tree(&brick).is_err());
        assert!(outside.path().join("precious").exists());
        assert_eq!(inspect(&brick).unwrap(), BrickDir::NotADirectory);
    }

    #[test]
    fn inspect_tells_data_from_an_empty_skeleton() {
        let root = tempfile::tempdir().unwrap();
        let brick = root.path().join("csi-pvc-1");
        assert_eq!(inspect(&brick).unwrap(), BrickDir::Missing);
        fs::create_dir_all(brick.join(".glusterfs/00/00")).unwrap();
        assert_eq!(
            inspect(&brick).unwrap(),
            BrickDir::Directory {
                is_brick: false,
                holds_data: false
            }
        );
        fs::write(brick.join(".glusterfs/00/00/gfid"), "x").unwrap();
        assert!(matches!(
            inspect(&brick).unwrap(),
            BrickDir::Directory {
                holds_data: true,
                ..
            }
        ));
        fs::remove_file(brick.join(".glusterfs/00/00/gfid")).unwrap();
        fs::write(brick.join("user-file"), "x").unwrap();
        assert!(matches!(
            inspect(&brick).unwrap(),
            BrickDir::Directory {
                holds_data: true,
                ..
            }
        ));
    }

    #[test]
    fn relative_paths_are_refused() {
        assert!(remove_tree(Path::new("relative/x")).is_err());
        assert!(remove_tree(Path::new("/")).is_err());
    }
}

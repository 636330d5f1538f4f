//! Purging a trash directory: every `<volume>.<digits>` directory brick
//! removal moved there is deleted depth-first with a [`TreeCursor`] (no
//! recursion, three descriptors, one buffer), never following a symlink and
//! never leaving the entry's mount. Runs in the `purge-brick-trash` child.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::walk::{Ascended, DT_DIR, DirStream, Entry, TreeCursor, WalkError};
use crate::names::VolumeName;

/// What one pass over the trash did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Trash entries removed completely.
    pub purged: u64,
    pub directories: u64,
    pub files: u64,
    /// Entries left because they are not what brick removal puts there.
    pub skipped: u64,
    /// Entries left after an error (logged).
    pub errors: u64,
}

impl Pass {
    /// Entries this pass saw and left in the trash.
    pub fn left(&self) -> u64 {
        self.skipped + self.errors
    }
}

/// `<volume>.<digits>`, with a volume name this driver makes: the only names
/// brick removal gives the trash's entries.
pub fn is_trash_entry_name(name: &[u8]) -> bool {
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    let Some((volume, digits)) = name.rsplit_once('.') else {
        return false;
    };
    !digits.is_empty()
        && digits.len() <= 39
        && digits.bytes().all(|b| b.is_ascii_digit())
        && VolumeName::parse(volume).is_some()
}

/// Purges every entry of the trash open as `trash` (at `path`) once.
pub fn pass(trash: BorrowedFd<'_>, path: &Path) -> io::Result<Pass> {
    let mut done = Pass::default();
    let seen_by_kernel = path_of(trash).unwrap_or_else(|_| path.to_path_buf());
    let mut stream = DirStream::new();
    stream.seek(trash, 0)?;
    while let Some(entry) = stream.next_entry(trash)? {
        let name = stream.name(&entry).to_owned();
        let shown = path.join(OsStr::from_bytes(name.to_bytes()));
        if !is_trash_entry_name(name.to_bytes()) {
            tracing::warn!(entry = %shown.display(), "not an entry brick removal makes; leaving it");
            done.skipped += 1;
            continue;
        }
        match fstatat(trash, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                tracing::error!(entry = %shown.display(), error = %e, "cannot look at trash entry");
                done.errors += 1;
                continue;
            }
            Ok(stat)
                if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR =>
            {
                tracing::warn!(entry = %shown.display(), "not a directory; leaving it");
                done.skipped += 1;
                continue;
            }
            Ok(_) => {}
        }
        let result =
            match mount_at_or_under(&seen_by_kernel.join(OsStr::from_bytes(name.to_bytes()))) {
                Ok(Some(mount)) => Err(WalkError::Crossed(format!(
                    "{} is mounted at or inside it; leaving it",
                    mount.display()
                ))),
                Ok(None) => purge_entry(trash, &name, &mut done),
                Err(e) => Err(e.into()),
            };
        match result {
            Ok(()) => done.purged += 1,
            Err(e) => {
                tracing::error!(entry = %shown.display(), error = %e, "trash entry not purged");
                done.errors += 1;
            }
        }
    }
    Ok(done)
}

/// Entries in the trash (streamed, nothing kept).
pub fn count_entries(trash: BorrowedFd<'_>) -> io::Result<u64> {
    let mut stream = DirStream::new();
    stream.seek(trash, 0)?;
    let mut count = 0;
    while stream.next_entry(trash)?.is_some() {
        count += 1;
    }
    Ok(count)
}

/// The path of an open file as the kernel (and so mountinfo) spells it,
/// whatever symlinks the path it was opened by went through.
pub fn path_of(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A mount point at `path` or inside it (from /proc/self/mountinfo).
pub fn mount_at_or_under(path: &Path) -> io::Result<Option<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(crate::mount::mountinfo::parse(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .find(|mp| mp.starts_with(path)))
}

/// How often one entry is walked again when it is still not empty after a
/// full walk (something keeps writing into it).
const ENTRY_WALKS: usize = 3;

/// Removes the directory `name` of the trash and everything under it.
pub fn purge_entry(trash: BorrowedFd<'_>, name: &CStr, done: &mut Pass) -> Result<(), WalkError> {
    let mut walks = 0;
    loop {
        match unlinkat(trash, name, UnlinkatFlags::RemoveDir) {
            Ok(()) => {
                done.directories += 1;
                return Ok(());
            }
            Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => {}
            Err(e) => return Err(io::Error::from(e).into()),
        }
        if walks == ENTRY_WALKS {
            return Err(WalkError::Moved(format!(
                "{} keeps filling up while being purged",
                name.to_string_lossy()
            )));
        }
        walks += 1;
        let mut cursor = TreeCursor::open(trash, name)?;
        empty(&mut cursor, done)?;
    }
}

/// Deletes everything below the cursor's top directory.
fn empty(cursor: &mut TreeCursor, done: &mut Pass) -> Result<(), WalkError> {
    // (inode, removals) at the last re-entry: the same again means it refills forever.
    let mut reentered: Option<(u64, u64)> = None;
    loop {
        let Some(entry) = cursor.next_entry()? else {
            if cursor.depth() == 0 {
                return Ok(());
            }
            if let Ascended::Found(child) = cursor.ascend()? {
                let removed = done.directories + done.files;
                if !remove_dir(cursor, &child, done)? {
                    if reentered == Some((child.ino, removed)) {
                        return Err(WalkError::Moved(format!(
                            "directory inode {} ({} levels down) keeps filling up while being \
                             purged",
                            child.ino,
                            cursor.depth()
                        )));
                    }
                    reentered = Some((child.ino, removed));
                }
            }
            continue;
        };
        match cursor.kind(&entry)? {
            None => {}
            Some(DT_DIR) => {
                remove_dir(cursor, &entry, done)?;
            }
            Some(_) => match unlinkat(
                cursor.dir(),
                cursor.name(&entry),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) => done.files += 1,
                Err(Errno::ENOENT) => {}
                // Replaced by a directory since getdents.
                Err(Errno::EISDIR) => {
                    remove_dir(cursor, &entry, done)?;
                }
                Err(e) => return Err(unlink_error(cursor, &entry, e)),
            },
        }
    }
}

/// Removes the empty directory `entry`, or makes it the current directory
/// when it is not empty (returns false then).
fn remove_dir(cursor: &mut TreeCursor, entry: &Entry, done: &mut Pass) -> Result<bool, WalkError> {
    match unlinkat(cursor.dir(), cursor.name(entry), UnlinkatFlags::RemoveDir) {
        Ok(()) => {
            done.directories += 1;
            Ok(true)
        }
        Err(Errno::ENOENT) => Ok(true),
        Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
            cursor.descend(entry)?;
            Ok(false)
        }
        Err(Errno::EBUSY) => Err(WalkError::Crossed(format!(
            "{} ({} levels down) is a mount point; not going in",
            cursor.name(entry).to_string_lossy(),
            cursor.depth()
        ))),
        // Replaced by a file since getdents.
        Err(Errno::ENOTDIR) => {
            match unlinkat(cursor.dir(), cursor.name(entry), UnlinkatFlags::NoRemoveDir) {
                Ok(()) => done.files += 1,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(unlink_error(cursor, entry, e)),
            }
            Ok(true)
        }
        Err(e) => Err(unlink_error(cursor, entry, e)),
    }
}

fn unlink_error(cursor: &TreeCursor, entry: &Entry, e: Errno) -> WalkError {
    WalkError::Io(io::Error::new(
        io::Error::from(e).kind(),
        format!(
            "removing {:?} ({} levels down): {e}",
            cursor.name(entry),
            cursor.depth()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bricks::testing::{TestMount, make_trash, scratch};
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::fs;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::fs::symlink;

    fn open_dir(path: &Path) -> OwnedFd {
        open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn trash_entry_names() {
        for good in [
            "csi-pvc-1.1",
            "csi-pvc-1.1764480000123456789",
            "csi_data_0123456789abcdef.7",
        ] {
            assert!(is_trash_entry_name(good.as_bytes()), "{good}");
        }
        for bad in [
            "csi-pvc-1",
            "csi-pvc-1.",
            "csi-pvc-1.12a",
            "csi-pvc-1.-1",
            ".csi-pvc-1.1",
            "other.123",
            "csi-PVC.1",
            "..",
            "csi-pvc-1.1.2",
        ] {
            assert!(!is_trash_entry_name(bad.as_bytes()), "{bad}");
        }
        assert!(!is_trash_entry_name(b"csi-pvc-\xff.1"));
    }

    #[test]
    fn symlinks_inside_are_removed_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), "keep").unwrap();
        fs::create_dir(outside.path().join("dir")).unwrap();
        fs::write(outside.path().join("dir/also"), "keep").unwrap();
        let root = scratch();
        let trash = make_trash(root.path());
        let entry = trash.join("csi-pvc-1.1");
        fs::create_dir_all(entry.join("a/b/c")).unwrap();
        fs::write(entry.join("a/b/c/file"), "x").unwrap();
        symlink(outside.path(), entry.join("a/link-to-outside")).unwrap();
        symlink(outside.path().join("dir"), entry.join("a/b/dir-link")).unwrap();
        symlink(outside.path().join("precious"), entry.join("file-link")).unwrap();

        let done = pass(open_dir(&trash).as_fd(), &trash).unwrap();
        assert_eq!(done.purged, 1);
        assert_eq!((done.skipped, done.errors), (0, 0));
        assert_eq!(done.files, 4, "three symlinks and one file: {done:?}");
        assert!(!entry.exists());
        assert_eq!(
            fs::read_to_string(outside.path().join("precious")).unwrap(),
            "keep"
        );
        assert_eq!(
            fs::read_to_string(outside.path().join("dir/also")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn entries_brick_removal_does_not_make_are_left() {
        let root = scratch();
        let trash = make_trash(root.path());
        for name in ["junk", "csi-pvc-1", "csi-pvc-1.12a", "other.123"] {
            fs::create_dir(trash.join(name)).unwrap();
            fs::write(trash.join(name).join("data"), "x").unwrap();
        }
        fs::write(trash.join("csi-pvc-2.5"), "a file").unwrap();
        fs::create_dir_all(trash.join("csi-pvc-3.7/x/y")).unwrap();

        let fd = open_dir(&trash);
        let done = pass(fd.as_fd(), &trash).unwrap();
        assert_eq!(done.purged, 1);
        assert_eq!(done.skipped, 5, "{done:?}");
        assert_eq!(done.left(), 5);
        assert_eq!(count_entries(fd.as_fd()).unwrap(), 5);
        assert!(!trash.join("csi-pvc-3.7").exists());
        assert!(trash.join("junk/data").exists());
        assert!(trash.join("csi-pvc-2.5").is_file());
    }

    #[test]
    fn a_bind_mount_inside_is_refused_and_nothing_outside_touched() {
        // On the same file system as the trash: only the mount tells them apart.
        let outside = scratch();
        fs::write(outside.path().join("precious"), "keep").unwrap();
        let root = scratch();
        let trash = make_trash(root.path());
        let entry = trash.join("csi-pvc-1.1");
        fs::create_dir_all(entry.join("a/mnt")).unwrap();
        fs::write(entry.join("a/file"), "x").unwrap();
        let _mount = TestMount::bind(outside.path(), &entry.join("a/mnt"));

        let fd = open_dir(&trash);
        let done = pass(fd.as_fd(), &trash).unwrap();
        assert_eq!((done.purged, done.errors), (0, 1), "{done:?}");
        assert!(
            entry.join("a/file").exists(),
            "refused before anything went"
        );
        assert_eq!(
            fs::read_to_string(outside.path().join("precious")).unwrap(),
            "keep"
        );

        // Without the mountinfo check, the walk itself stops at the mount.
        let mut done = Pass::default();
        let err = purge_entry(fd.as_fd(), c"csi-pvc-1.1", &mut done).unwrap_err();
        assert!(matches!(err, WalkError::Crossed(_)), "{err}");
        assert_eq!(
            fs::read_to_string(outside.path().join("precious")).unwrap(),
            "keep"
        );
        assert!(entry.join("a/mnt/precious").exists());
    }

    #[test]
    fn a_tmpfs_inside_is_refused() {
        let root = scratch();
        let trash = make_trash(root.path());
        let entry = trash.join("csi-pvc-1.1");
        fs::create_dir_all(entry.join("tmp")).unwrap();
        let _mount = TestMount::tmpfs(&entry.join("tmp"));
        fs::write(entry.join("tmp/inside"), "keep").unwrap();

        let fd = open_dir(&trash);
        let done = pass(fd.as_fd(), &trash).unwrap();
        assert_eq!((done.purged, done.errors), (0, 1), "{done:?}");
        let mut done = Pass::default();
        let err = purge_entry(fd.as_fd(), c"csi-pvc-1.1", &mut done).unwrap_err();
        assert!(matches!(err, WalkError::Crossed(_)), "{err}");
        assert_eq!(
            fs::read_to_string(entry.join("tmp/inside")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn wide_and_nested_trees_go_in_one_walk() {
        let root = scratch();
        let trash = make_trash(root.path());
        let entry = trash.join("csi-pvc-1.1");
        for a in 0..20 {
            for b in 0..20 {
                let dir = entry.join(format!(".glusterfs/{a:02x}/{b:02x}"));
                fs::create_dir_all(&dir).unwrap();
                fs::write(dir.join("gfid"), "").unwrap();
            }
            fs::create_dir(entry.join(format!("empty-{a}"))).unwrap();
        }
        for i in 0..3000 {
            fs::write(entry.join(format!("file-{i}")), "").unwrap();
        }
        let fd = open_dir(&trash);
        let done = pass(fd.as_fd(), &trash).unwrap();
        assert_eq!(done.purged, 1, "{done:?}");
        assert_eq!(done.files, 3000 + 400);
        assert_eq!(done.directories, 1 + 1 + 20 + 400 + 20);
        assert_eq!(count_entries(fd.as_fd()).unwrap(), 0);
    }
}

//! Staging and target paths come from the CO. They are opened one component
//! at a time, never following a symbolic link, and beneath the kubelet's
//! directory when one is configured, so that a mount can only land exactly
//! where it was asked for, and a path that leads elsewhere is refused.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::MountError;
use super::fd::open_path;

/// Where paths may lead.
#[derive(Clone, Debug, Default)]
pub struct PathPolicy {
    /// Every path must be beneath this directory (the kubelet's).
    pub beneath: Option<PathBuf>,
}

impl PathPolicy {
    /// An `O_PATH` descriptor of the directory at `path`; missing components
    /// are created (mode 0750) when `create`.
    pub fn open_dir(&self, path: &Path, create: bool) -> Result<OwnedFd, MountError> {
        let unsafe_path = |reason: String| MountError::UnsafePath {
            path: path.to_path_buf(),
            reason,
        };
        let base = self.beneath.as_deref().unwrap_or(Path::new("/"));
        let inside = path.strip_prefix(base).map_err(|_| {
            unsafe_path(format!(
                "is not under the kubelet directory {}",
                base.display()
            ))
        })?;
        let mut dir =
            open_path(base, libc::O_DIRECTORY).map_err(MountError::io("opening", base))?;
        let mut walked = base.to_path_buf();
        for component in inside.components() {
            let Component::Normal(name) = component else {
                return Err(unsafe_path("is not a plain absolute path".into()));
            };
            walked.push(name);
            dir = match open_dir_child(&dir, name) {
                Ok(child) => child,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    make_dir(&dir, name).map_err(MountError::io("creating", &walked))?;
                    open_dir_child(&dir, name).map_err(MountError::io("opening", &walked))?
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                    let what = if is_symlink(&dir, name) {
                        "is a symbolic link; links are never followed"
                    } else {
                        "is not a directory"
                    };
                    return Err(unsafe_path(format!("{} {what}", walked.display())));
                }
                Err(e) => return Err(MountError::io("opening", &walked)(e)),
            };
        }
        Ok(dir)
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(io::Error::other)
}

/// `name` in `parent`, a directory, not through a symlink.
fn open_dir_child(parent: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let name = c_name(name)?;
    // SAFETY: openat with a valid descriptor and C string.
    let fd = unsafe {
        libc::openat(
            parent.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn make_dir(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: mkdirat with a valid descriptor and C string.
    if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o750) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EEXIST) {
        Ok(())
    } else {
        Err(error)
    }
}

fn is_symlink(parent: &OwnedFd, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|s| {
        nix::sys::stat::SFlag::from_bits_truncate(s.st_mode) & nix::sys::stat::SFlag::S_IFMT
            == nix::sys::stat::SFlag::S_IFLNK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn reason(result: Result<OwnedFd, MountError>) -> String {
        match result {
            Err(MountError::UnsafePath { reason, .. }) => reason,
            other => panic!("expected an unsafe path, got {other:?}"),
        }
    }

    #[test]
    fn creates_plain_directories_and_refuses_symlinks_anywhere() {
        let kubelet = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let policy = PathPolicy {
            beneath: Some(kubelet.path().to_path_buf()),
        };
        let target = kubelet.path().join("pods/a/volumes/v/mount");
        policy.open_dir(&target, true).unwrap();
        assert!(target.is_dir());

        // A link as the last component, or as one in the middle.
        symlink(outside.path(), kubelet.path().join("pods/a/volumes/v/link")).unwrap();
        let why = reason(policy.open_dir(&kubelet.path().join("pods/a/volumes/v/link"), true));
        assert!(why.contains("symbolic link"), "{why}");
        symlink(outside.path(), kubelet.path().join("pods/b")).unwrap();
        let why = reason(policy.open_dir(&kubelet.path().join("pods/b/volumes/mount"), true));
        assert!(why.contains("pods/b is a symbolic link"), "{why}");
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "nothing was made through the links"
        );

        let why = reason(policy.open_dir(outside.path(), true));
        assert!(why.contains("not under the kubelet directory"), "{why}");
        std::fs::write(kubelet.path().join("file"), "x").unwrap();
        let why = reason(policy.open_dir(&kubelet.path().join("file/x"), true));
        assert!(why.contains("is not a directory"), "{why}");
        // Missing and not to be created: an I/O error, not a refusal.
        assert!(matches!(
            policy.open_dir(&kubelet.path().join("missing"), false),
            Err(MountError::Io { .. })
        ));
    }

    #[test]
    fn without_a_kubelet_directory_paths_start_at_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let policy = PathPolicy::default();
        policy.open_dir(&dir.path().join("x/y"), true).unwrap();
        symlink(dir.path().join("x"), dir.path().join("l")).unwrap();
        let why = reason(policy.open_dir(&dir.path().join("l/y"), false));
        assert!(why.contains("symbolic link"), "{why}");
    }
}

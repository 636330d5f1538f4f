//! Fixtures for the brick tests: trash layouts, deep trees, and mounts that
//! are undone even when a test fails. The mount tests need root.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, mkdirat};

use super::trash::TRASH_DIR;

/// A scratch directory on tmpfs when there is one: building trees there
/// takes microseconds per directory instead of a slow disk's milliseconds.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("bricks-test-")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// `<root>/.glusterfs-csi-trash`, as brick removal makes it.
pub fn make_trash(root: &Path) -> PathBuf {
    let trash = root.join(TRASH_DIR);
    std::fs::create_dir(&trash).unwrap();
    std::fs::set_permissions(&trash, std::fs::Permissions::from_mode(0o700)).unwrap();
    trash
}

/// A chain of `levels` directories named `d` under `top`, with a file every
/// 1,000 levels, made through descriptors (paths that long do not work).
pub fn deep_chain(top: &Path, levels: usize) {
    let mut fd = open(top, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    for level in 0..levels {
        if level % 1000 == 0 {
            drop(
                openat(
                    fd.as_fd(),
                    "f",
                    OFlag::O_CREAT | OFlag::O_WRONLY,
                    Mode::S_IRUSR,
                )
                .unwrap(),
            );
        }
        mkdirat(fd.as_fd(), "d", Mode::S_IRWXU).unwrap();
        fd = openat(
            fd.as_fd(),
            "d",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
    }
}

/// A mount made for a test, unmounted when dropped.
pub struct TestMount(PathBuf);

impl TestMount {
    pub fn bind(source: &Path, target: &Path) -> TestMount {
        mount(Some(source), target, None, libc::MS_BIND);
        TestMount(target.to_path_buf())
    }

    pub fn tmpfs(target: &Path) -> TestMount {
        mount(None, target, Some("tmpfs"), 0);
        TestMount(target.to_path_buf())
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        let target = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: umount2 with a valid C string.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount(source: Option<&Path>, target: &Path, fs_type: Option<&str>, flags: libc::c_ulong) {
    let c = |s: &[u8]| CString::new(s).unwrap();
    let source = c(source.map_or(b"none".as_slice(), |s| s.as_os_str().as_bytes()));
    let target = c(target.as_os_str().as_bytes());
    let fs_type = fs_type.map(|t| c(t.as_bytes()));
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fs_type.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    assert_eq!(
        rc,
        0,
        "mount on {target:?}: {}",
        std::io::Error::last_os_error()
    );
}
